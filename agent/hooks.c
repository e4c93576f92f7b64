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

/* The run asked for while the credential's hook still runs: only the newest is kept. */
struct pending {
    sd_event *e;
    char **argv;
    uint64_t timeout;
    char *version;
    char *file;
};

struct hook {
    struct hook *next;      /* in `running` */
    char *name;
    char *cmd;
    pid_t pid;              /* and its process group */
    uint64_t timeout;
    sd_event_source *child;
    sd_event_source *timer;
    struct pending *pending;
};

/* The hooks being tracked, at most one per credential name. */
static struct hook *running;

static void pending_free(struct pending *p) {
    if (!p)
        return;
    for (size_t i = 0; p->argv && p->argv[i]; i++)
        free(p->argv[i]);
    free(p->argv);
    free(p->version);
    free(p->file);
    free(p);
}

static struct pending *pending_new(sd_event *e, char *const *argv, uint64_t timeout,
                                   const char *version, const char *file) {
    size_t n = 0;
    while (argv[n])
        n++;
    struct pending *p = calloc(1, sizeof *p);
    if (!p || !(p->argv = calloc(n + 1, sizeof *p->argv)))
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (!(p->argv[i] = strdup(argv[i])))
            goto fail;
    p->e = e;
    p->timeout = timeout;
    if (!(p->version = strdup(version)) || !(p->file = strdup(file)))
        goto fail;
    return p;
fail:
    pending_free(p);
    return NULL;
}

static void hook_free(struct hook *h) {
    for (struct hook **pp = &running; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    sd_event_source_disable_unref(h->child);
    sd_event_source_disable_unref(h->timer);
    pending_free(h->pending);
    free(h->name);
    free(h->cmd);
    free(h);
}

static int spawn_hook(sd_event *e, char *const *argv, uint64_t timeout, const char *name,
                      const char *version, const char *file);

static int on_exit_cb(sd_event_source *s, const siginfo_t *si, void *userdata) {
    struct hook *h = userdata;
    struct log_ctx ctx = { .name = h->name };
    if (si->si_code == CLD_EXITED && si->si_status == 0)
        log_ctx_msg(LOG_DEBUG, &ctx, "on_change %s exited 0", h->cmd);
    else if (si->si_code == CLD_EXITED)
        log_ctx_msg(LOG_WARNING, &ctx, "on_change %s exited with status %d", h->cmd, si->si_status);
    else
        log_ctx_msg(LOG_WARNING, &ctx, "on_change %s killed by signal %d", h->cmd, si->si_status);
    struct pending *p = h->pending;
    char *name = h->name;
    h->pending = NULL;
    h->name = NULL;
    hook_free(h);
    if (p)
        (void)spawn_hook(p->e, p->argv, p->timeout, name, p->version, p->file);
    pending_free(p);
    free(name);
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
    struct hook *h = running;
    while (h && strcmp(h->name, name) != 0)
        h = h->next;
    if (!h)
        return spawn_hook(e, argv, timeout, name, version, file);
    /* One at a time per credential: a hook slower than the publishes (a flapping store)
     * must not pile up processes and the agent's fds. The newest run waits for this one. */
    struct pending *p = pending_new(e, argv, timeout, version, file);
    if (!p)
        return -ENOMEM;
    pending_free(h->pending);
    h->pending = p;
    log_ctx_msg(LOG_DEBUG, &(struct log_ctx){ .name = name, .version = version },
                "on_change %s still running (pid %ld): runs again for version %s when it ends",
                h->cmd, (long)h->pid, version);
    return 0;
}

static int spawn_hook(sd_event *e, char *const *argv, uint64_t timeout, const char *name,
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
    h->next = running;
    running = h;
    log_ctx_msg(LOG_DEBUG, &ctx, "on_change %s started (pid %ld)", argv[0], (long)pid);
    return 0;
}
