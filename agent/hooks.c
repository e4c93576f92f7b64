/* hooks: see hooks.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "duration.h"
#include "hooks.h"
#include "log.h"
#include "secretfile.h"

extern char **environ;

struct hook {
    char *name;
    char *cmd;
    pid_t pid;              /* and its process group */
    uint64_t timeout;
    sd_event_source *child;
    sd_event_source *timer;
};

static void hook_free(struct hook *h) {
    sd_event_source_disable_unref(h->child);
    sd_event_source_disable_unref(h->timer);
    free(h->name);
    free(h->cmd);
    free(h);
}

static int on_exit_cb(sd_event_source *s, const siginfo_t *si, void *userdata) {
    struct hook *h = userdata;
    struct log_ctx ctx = { .name = h->name };
    if (si->si_code == CLD_EXITED && si->si_status == 0)
        log_ctx_msg(LOG_DEBUG, &ctx, "on_change %s exited 0", h->cmd);
    else if (si->si_code == CLD_EXITED)
        log_ctx_msg(LOG_WARNING, &ctx, "on_change %s exited with status %d", h->cmd, si->si_status);
    else
        log_ctx_msg(LOG_WARNING, &ctx, "on_change %s killed by signal %d", h->cmd, si->si_status);
    hook_free(h);
    return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
    struct hook *h = userdata;
    char took[64];
    duration_format(h->timeout, took, sizeof took);
    log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = h->name },
                "on_change %s still running after %s: killing it and its process group", h->cmd,
                took);
    /* The child is not reaped yet (its source is still here), so the group still exists
     * and its id cannot have been reused. */
    if (kill(-h->pid, SIGKILL) < 0)
        sd_event_source_send_child_signal(h->child, SIGKILL, NULL, 0);
    return 0;
}

/* The variables of the agent's environment that hold a secret the agent uses: they stay
 * out of a hook's (docs/design.md §14.2). IDENTITY_HEADER is the App Service managed
 * identity's shared secret (plugins/azure/identity.c keeps it as a struct secret). */
static bool env_is_secret(const char *entry) {
    static const char *const secret_vars[] = { "IDENTITY_HEADER=" };
    for (size_t i = 0; i < sizeof secret_vars / sizeof secret_vars[0]; i++)
        if (strncmp(entry, secret_vars[i], strlen(secret_vars[i])) == 0)
            return true;
    return false;
}

int hooks_run(sd_event *e, char *const *argv, uint64_t timeout, const char *name,
              const char *version, const char *file) {
    /* Checked at load too; again here, for a program replaced since. */
    char why[512];
    int r = secretfile_check_trusted(argv[0], NULL, why, sizeof why);
    if (r < 0) {
        log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = name, .version = version },
                    "on_change %s: not run: %s", argv[0], why);
        return r;
    }
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **envp = calloc(n_env + 4, sizeof *envp);
    char e_name[128], e_version[200], e_file[4200];
    if (!envp)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "REDIS_CREDS_", 12) != 0 && strncmp(environ[i], "NOTIFY_SOCKET=", 14) != 0 &&
            strncmp(environ[i], "WATCHDOG_", 9) != 0 && !env_is_secret(environ[i]))
            envp[k++] = environ[i];
    snprintf(e_name, sizeof e_name, "REDIS_CREDS_NAME=%s", name);
    snprintf(e_version, sizeof e_version, "REDIS_CREDS_VERSION=%s", version);
    snprintf(e_file, sizeof e_file, "REDIS_CREDS_FILE=%s", file);
    envp[k++] = e_name;
    envp[k++] = e_version;
    envp[k++] = e_file;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);   /* the agent blocks signals; the hook must not */
    /* The agent ignores SIGPIPE (main.c, and systemd's IgnoreSIGPIPE=), and an ignored
     * signal survives exec: a hook's `producer | head -1` would then never end its
     * producer by SIGPIPE, and a non-interactive shell may not even trap it back. */
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);        /* a group of its own, killed as one */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

    pid_t pid;
    r = posix_spawn(&pid, argv[0], &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(envp);
    struct log_ctx ctx = { .name = name, .version = version };
    if (r != 0) {
        log_ctx_msg(LOG_WARNING, &ctx, "on_change %s: cannot start: %s", argv[0], strerror(r));
        return -r;
    }

    struct hook *h = calloc(1, sizeof *h);
    if (h) {
        h->name = strdup(name);
        h->cmd = strdup(argv[0]);
        h->pid = pid;
        h->timeout = timeout;
    }
    if (!h || !h->name || !h->cmd ||
        sd_event_add_child(e, &h->child, pid, WEXITED, on_exit_cb, h) < 0 ||
        sd_event_add_time_relative(e, &h->timer, CLOCK_MONOTONIC, timeout, 0, on_timeout, h) < 0) {
        /* Cannot track it: let it run; it is reaped when we exit. */
        log_ctx_msg(LOG_WARNING, &ctx, "on_change %s started (pid %ld) but cannot be tracked",
                    argv[0], (long)pid);
        if (h)
            hook_free(h);
        return 0;
    }
    log_ctx_msg(LOG_DEBUG, &ctx, "on_change %s started (pid %ld)", argv[0], (long)pid);
    return 0;
}
