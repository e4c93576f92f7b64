/* exec: see exec.h for the contract. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "backoff.h"
#include "config.h"
#include "control_request.h"
#include "credfile.h"
#include "duration.h"
#include "secret.h"

#define EXEC_RETRY_USEC (100 * USEC_PER_MSEC)   /* re-try a missing runtime directory */
/* Timer accuracy: sd-event's default (accuracy 0) lets a timer fire up to 250 ms late. */
#define EXEC_ACCURACY_USEC 1

/* The signals handed on to the program: what systemd, a terminal or an operator sends. */
static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

struct exec_opts {
    const char *name;
    const char *runtime_dir;
    const char *prefix;
    int signal;                 /* 0: restart at a new version */
    uint64_t splay, stop_timeout, wait;
    char **argv;
};

struct exec_state {
    struct exec_opts o;
    sd_event *e;
    char fname[96];
    char *file_path;
    struct credfile cred;       /* the newest credential read; its password is a secret */
    char *child_version;        /* the version the program was started with or signalled for */
    pid_t pid;
    sd_event_source *child, *splay_timer, *kill_timer, *wait_timer, *retry_timer, *watch;
    bool restarting;            /* SIGTERM sent for a restart; respawn when it exits */
    bool quitting;              /* asked to stop: the program's exit ends us */
    bool watch_error_said;      /* the directory cannot be watched, and we said so */
};

int exec_parse_signal(const char *s) {
    if (!s || !*s)
        return -EINVAL;
    if (s[0] >= '0' && s[0] <= '9') {
        char *end;
        errno = 0;
        long n = strtol(s, &end, 10);
        return errno || *end || n < 1 || n >= SIGRTMIN ? -EINVAL : (int)n;
    }
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    for (int sig = 1; sig < SIGRTMIN; sig++) {
        const char *abbrev = sigabbrev_np(sig);
        if (abbrev && strcmp(abbrev, s) == 0)
            return sig;
    }
    return -EINVAL;
}

static char *env_entry(const char *prefix, const char *key, const char *value, size_t len) {
    size_t plen = strlen(prefix), klen = strlen(key), n = plen + klen + 1 + len + 1;
    char *p = malloc(n);
    if (!p)
        return NULL;
    memcpy(p, prefix, plen);
    memcpy(p + plen, key, klen);
    p[plen + klen] = '=';
    memcpy(p + plen + klen + 1, value, len);
    p[n - 1] = '\0';
    return p;
}

static bool env_is(const char *entry, const char *prefix, const char *key) {
    size_t plen = strlen(prefix), klen = strlen(key);
    return strncmp(entry, prefix, plen) == 0 && strncmp(entry + plen, key, klen) == 0 &&
           entry[plen + klen] == '=';
}

char **exec_build_env(char *const *environ_in, const char *prefix, const char *username,
                      const char *password, size_t password_len, const char *file) {
    size_t n = 0;
    while (environ_in && environ_in[n])
        n++;
    char **env = calloc(n + 4, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!env_is(environ_in[i], prefix, "USERNAME") && !env_is(environ_in[i], prefix, "PASSWORD") &&
            !env_is(environ_in[i], "", "REDIS_CREDS_FILE"))
            env[k++] = environ_in[i];
    const char *user = username ? username : "";
    env[k] = env_entry(prefix, "USERNAME", user, strlen(user));
    env[k + 1] = env_entry(prefix, "PASSWORD", password, password_len);
    env[k + 2] = env_entry("", "REDIS_CREDS_FILE", file, strlen(file));
    if (!env[k] || !env[k + 1] || !env[k + 2]) {
        free(env[k]);
        if (env[k + 1])
            secret_wipe_free(env[k + 1], strlen(env[k + 1]));
        free(env[k + 2]);
        free(env);
        return NULL;
    }
    return env;
}

char **exec_env_free(char **env) {
    if (!env)
        return NULL;
    size_t n = 0;
    while (env[n])
        n++;
    /* exec_build_env always ends with our three entries: username, password, file. */
    free(env[n - 3]);
    secret_wipe_free(env[n - 2], strlen(env[n - 2]));
    free(env[n - 1]);
    free(env);
    return NULL;
}

const char *exec_group_of(const char *path) {
    struct stat st;
    const struct group *g = stat(path, &st) == 0 ? getgrgid(st.st_gid) : NULL;
    return g && g->gr_gid != 0 ? g->gr_name : "redis-creds";
}

/* Permission denied on the runtime directory or the file: who may read it, and how to
 * become one of them. */
static void hint_join(const char *path) {
    const char *g = exec_group_of(path);
    fprintf(stderr, "redis-creds exec: %s is not readable by this user; join the group %s "
            "(usermod -aG %s USER, then log in again; in a unit: SupplementaryGroups=%s)\n",
            path, g, g, g);
}

/* Reads the published file into st->cred. 0, or -errno with the reason in err. */
static int read_file(struct exec_state *st, char *err, size_t errlen) {
    int dfd = open(st->o.runtime_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int r = -errno;
        snprintf(err, errlen, "%s: %s", st->o.runtime_dir, strerror(errno));
        return r;
    }
    struct credfile cf = { 0 };
    int r = credfile_read(dfd, st->fname, &cf, err, errlen);
    close(dfd);
    if (r == -ENOENT)
        snprintf(err, errlen, "%s: not published", st->file_path);
    if (r < 0)
        return r;
    credfile_clear(&st->cred);
    st->cred = cf;
    return 0;
}

static int on_child_exit(sd_event_source *s, const siginfo_t *si, void *userdata);

/* Starts the program with the newest credential. 0, or the exit status to end with. */
static int spawn_program(struct exec_state *st) {
    extern char **environ;
    const struct cred_value *c = &st->cred.cur;
    char **env = exec_build_env(environ, st->o.prefix, c->username, secret_data(c->password),
                                secret_len(c->password), st->file_path);
    char *version = strdup(c->version);
    if (!env || !version) {
        fprintf(stderr, "redis-creds exec: out of memory\n");
        exec_env_free(env);
        free(version);
        return 1;
    }
    posix_spawnattr_t attr;
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);   /* we block the forwarded signals; it must not */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    int r = posix_spawnp(&pid, st->o.argv[0], NULL, &attr, st->o.argv, env);
    posix_spawnattr_destroy(&attr);
    exec_env_free(env);
    if (r != 0) {
        fprintf(stderr, "redis-creds exec: cannot run %s: %s\n", st->o.argv[0], strerror(r));
        free(version);
        return r == ENOENT ? 127 : 126;
    }
    free(st->child_version);
    st->child_version = version;
    st->pid = pid;
    r = sd_event_add_child(st->e, &st->child, pid, WEXITED, on_child_exit, st);
    if (r < 0) {
        fprintf(stderr, "redis-creds exec: cannot watch pid %ld: %s\n", (long)pid, strerror(-r));
        kill(pid, SIGKILL);
        return 1;
    }
    return 0;
}

static void send_to_program(struct exec_state *st, int sig) {
    if (!st->child)
        return;
    int r = sd_event_source_send_child_signal(st->child, sig, NULL, 0);
    if (r < 0 && r != -ESRCH)
        fprintf(stderr, "redis-creds exec: cannot send %s to pid %ld: %s\n", sigabbrev_np(sig),
                (long)st->pid, strerror(-r));
}

static int on_kill_timer(sd_event_source *s, uint64_t usec, void *userdata) {
    struct exec_state *st = userdata;
    st->kill_timer = sd_event_source_disable_unref(s);
    fprintf(stderr, "redis-creds exec: pid %ld still running --stop-timeout after SIGTERM: sending SIGKILL\n",
            (long)st->pid);
    send_to_program(st, SIGKILL);
    return 0;
}

static int on_child_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
    struct exec_state *st = userdata;
    int status = si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
    st->child = sd_event_source_disable_unref(st->child);
    st->kill_timer = sd_event_source_disable_unref(st->kill_timer);
    st->pid = 0;
    if (st->restarting && !st->quitting) {
        st->restarting = false;
        int r = spawn_program(st);
        if (r == 0)
            fprintf(stderr, "redis-creds exec: %s restarted (pid %ld) with version %s\n", st->o.argv[0],
                    (long)st->pid, st->child_version);
        else
            sd_event_exit(st->e, r);
        return 0;
    }
    return sd_event_exit(st->e, status);
}

/* The splay has passed: act on the newest version unless the program already has it. */
static int on_splay(sd_event_source *s, uint64_t usec, void *userdata) {
    struct exec_state *st = userdata;
    st->splay_timer = sd_event_source_disable_unref(s);
    const char *v = st->cred.cur.version;
    if (!st->child || st->quitting || st->restarting || strcmp(v, st->child_version) == 0)
        return 0;   /* a restart under way starts the program with the newest credential */
    if (st->o.signal) {
        fprintf(stderr, "redis-creds exec: version %s: sending %s to pid %ld\n", v,
                sigabbrev_np(st->o.signal), (long)st->pid);
        char *nv = strdup(v);
        if (nv) {
            free(st->child_version);
            st->child_version = nv;
        }
        send_to_program(st, st->o.signal);
        return 0;
    }
    fprintf(stderr, "redis-creds exec: version %s: restarting pid %ld\n", v, (long)st->pid);
    st->restarting = true;
    send_to_program(st, SIGTERM);
    int r = sd_event_add_time_relative(st->e, &st->kill_timer, CLOCK_MONOTONIC, st->o.stop_timeout,
                                       EXEC_ACCURACY_USEC, on_kill_timer, st);
    if (r < 0) {
        fprintf(stderr, "redis-creds exec: cannot arm the stop timeout: %s\n", strerror(-r));
        send_to_program(st, SIGKILL);
    }
    return 0;
}

/* The file changed: remember the credential; a new version arms the splay (once). When
 * `may_be_missing` (the directory has just come back, the agent may not have republished
 * into it yet), a file not there is not worth a word: its rename will be seen. */
static void file_changed(struct exec_state *st, bool may_be_missing) {
    char err[512];
    int r = read_file(st, err, sizeof err);
    if (r < 0) {
        if (!(may_be_missing && r == -ENOENT))
            fprintf(stderr, "redis-creds exec: %s (keeping the program as it is)\n", err);
        return;
    }
    if (!st->child || st->splay_timer || strcmp(st->cred.cur.version, st->child_version) == 0)
        return;
    uint64_t delay = st->o.splay ? backoff_random() % (st->o.splay + 1) : 0;
    r = sd_event_add_time_relative(st->e, &st->splay_timer, CLOCK_MONOTONIC, delay,
                                   EXEC_ACCURACY_USEC, on_splay, st);
    if (r < 0)
        fprintf(stderr, "redis-creds exec: cannot arm the splay timer: %s\n", strerror(-r));
}

static int try_start(struct exec_state *st);

/* The watched directory is gone: deleted or moved away (rm -rf, a cleanup), after which
 * the agent, or systemd's RuntimeDirectory=, makes a new one at the path and republishes
 * there. A watch on the old inode would never see that: drop it and watch the path again,
 * once it is a directory again (try_start retries every EXEC_RETRY_USEC). */
static void dir_lost(struct exec_state *st) {
    st->watch = sd_event_source_disable_unref(st->watch);
    fprintf(stderr, "redis-creds exec: %s was removed or moved away; waiting for it to come back\n",
            st->o.runtime_dir);
    try_start(st);
}

static int on_inotify(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
    struct exec_state *st = userdata;
    if (ev->mask & EXEC_DIR_LOST_MASK) {
        dir_lost(st);
        return 0;
    }
    if (!(ev->mask & IN_Q_OVERFLOW) && !(ev->len && strcmp(ev->name, st->fname) == 0))
        return 0;
    if (st->child)
        file_changed(st, false);
    else if (!st->pid)
        try_start(st);
    return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
    struct exec_state *st = userdata;
    st->retry_timer = sd_event_source_disable_unref(s);
    return try_start(st);
}

/* Watches the runtime directory when it is not watched yet. 1 when it is watched, 0 when
 * it is not there (yet), or -errno for another failure (said once until it works). */
static int watch_dir(struct exec_state *st) {
    if (st->watch)
        return 1;
    int r = sd_event_add_inotify(st->e, &st->watch, st->o.runtime_dir,
                                 EXEC_DIR_WATCH_MASK, on_inotify, st);
    if (r == -ENOENT || r == -ENOTDIR)
        return 0;
    if (r < 0 && !st->watch_error_said) {
        fprintf(stderr, "redis-creds exec: cannot watch %s: %s\n", st->o.runtime_dir, strerror(-r));
        if (r == -EACCES)
            hint_join(st->o.runtime_dir);
    }
    st->watch_error_said = r < 0;
    return r < 0 ? r : 1;
}

/* Watch the directory (it may not exist yet), then read the file: before the program runs,
 * start it when the file is there; while it runs (the directory came back), act on a new
 * version. The watch comes first so no rename is missed. A directory that cannot be
 * watched ends us before the program runs, and is tried again while it runs. */
static int try_start(struct exec_state *st) {
    int w = watch_dir(st);
    if (w < 0 && !st->child)
        return sd_event_exit(st->e, 1);
    if (w <= 0) {
        if (!st->retry_timer)
            sd_event_add_time_relative(st->e, &st->retry_timer, CLOCK_MONOTONIC, EXEC_RETRY_USEC,
                                       EXEC_ACCURACY_USEC, on_retry, st);
        return 0;
    }
    st->retry_timer = sd_event_source_disable_unref(st->retry_timer);
    if (st->child) {
        file_changed(st, true);
        return 0;
    }
    char err[512];
    if (read_file(st, err, sizeof err) < 0)
        return 0;
    st->wait_timer = sd_event_source_disable_unref(st->wait_timer);
    int r = spawn_program(st);
    return r ? sd_event_exit(st->e, r) : 0;
}

static int on_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
    struct exec_state *st = userdata;
    st->wait_timer = sd_event_source_disable_unref(s);
    char err[512], when[32];
    int r = read_file(st, err, sizeof err);
    if (r == 0)
        return try_start(st);
    fprintf(stderr, "redis-creds exec: %s after waiting %s (--wait)", err,
            duration_format(st->o.wait, when, sizeof when));
    if (r == -EACCES) {
        fputc('\n', stderr);
        hint_join(st->file_path);
    } else
        fprintf(stderr, "; is the agent running and does it publish credential \"%s\" into %s?\n",
                st->o.name, st->o.runtime_dir);
    return sd_event_exit(st->e, 1);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
    struct exec_state *st = userdata;
    int sig = (int)si->ssi_signo;
    if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT)
        st->quitting = true;   /* the program's exit is ours; no restart after it */
    if (!st->child)
        return sd_event_exit(st->e, 128 + sig);   /* still waiting for the file */
    send_to_program(st, sig);
    return 0;
}

static void exec_usage(FILE *f) {
    fprintf(f, "Usage: redis-creds exec --credential NAME [--env-prefix REDIS_] [--restart | --signal SIG]\n"
               "                        [--splay 30s] [--stop-timeout 10s] [--wait 30s] -- PROGRAM [ARGS...]\n");
}

/* Longest --splay, --stop-timeout, --wait: far beyond use ("forever" is 3650d), and far
 * from what overflows a monotonic deadline (sd-event: EOVERFLOW) or the splay's draw
 * (a modulo by splay + 1, which is 0 at UINT64_MAX). */
#define EXEC_DURATION_MAX (3650ULL * 24 * 3600 * USEC_PER_SEC)

static int parse_duration_opt(const char *opt, const char *s, uint64_t *ret) {
    uint64_t v = 0;
    if (strcmp(s, "0") != 0 && duration_parse(s, &v) < 0) {   /* 0 needs no unit */
        fprintf(stderr, "redis-creds exec: %s: bad duration \"%s\" (use e.g. 500ms, 30s, 2m)\n", opt, s);
        return -EINVAL;
    }
    if (v > EXEC_DURATION_MAX) {
        fprintf(stderr, "redis-creds exec: %s: \"%s\" is too long (at most 3650d)\n", opt, s);
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

static bool prefix_valid(const char *p) {
    if (strlen(p) > 64 || (p[0] >= '0' && p[0] <= '9'))
        return false;
    for (; *p; p++)
        if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return false;
    return true;
}

/* Parses argv ("exec", options, program...). 0, or -EINVAL after printing why. */
static int parse_opts(int argc, char **argv, struct exec_opts *o) {
    static const struct option opts[] = {
        { "credential", required_argument, NULL, 'n' }, { "env-prefix", required_argument, NULL, 'p' },
        { "restart", no_argument, NULL, 'r' },          { "signal", required_argument, NULL, 'S' },
        { "splay", required_argument, NULL, 'y' },      { "stop-timeout", required_argument, NULL, 't' },
        { "wait", required_argument, NULL, 'w' },       { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool restart = false;
    int opt;
    optind = 0;   /* glibc: re-initialise; main() already ran getopt on the outer options */
    while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        int r = 0;
        switch (opt) {
        case 'n': o->name = optarg; break;
        case 'p': o->prefix = optarg; break;
        case 'r': restart = true; break;
        case 'S':
            if ((o->signal = exec_parse_signal(optarg)) < 0) {
                fprintf(stderr, "redis-creds exec: --signal: unknown signal \"%s\"\n", optarg);
                return -EINVAL;
            }
            break;
        case 'y': r = parse_duration_opt("--splay", optarg, &o->splay); break;
        case 't': r = parse_duration_opt("--stop-timeout", optarg, &o->stop_timeout); break;
        case 'w': r = parse_duration_opt("--wait", optarg, &o->wait); break;
        case 'h': exec_usage(stdout); exit(0);
        default: exec_usage(stderr); return -EINVAL;
        }
        if (r < 0)
            return r;
    }
    const char *why = !o->name ? "--credential NAME is required"
                      : !config_name_valid(o->name) ? CONTROL_NAME_INVALID
                      : !prefix_valid(o->prefix) ? "--env-prefix must be letters, digits and _"
                      : restart && o->signal ? "--restart and --signal exclude each other"
                      : optind >= argc ? "the program to run is missing (after --)"
                      : NULL;
    if (why) {
        fprintf(stderr, "redis-creds exec: %s\n", why);
        exec_usage(stderr);
        return -EINVAL;
    }
    o->argv = argv + optind;
    return 0;
}

/* Blocks the forwarded signals and SIGCHLD (they arrive through the loop) and adds one
 * source for each. */
static int setup_signals(struct exec_state *st) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaddset(&mask, forwarded[i]);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        return -errno;
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) {
        int r = sd_event_add_signal(st->e, NULL, forwarded[i], on_signal, st);
        if (r < 0)
            return r;
    }
    return 0;
}

static void state_clear(struct exec_state *st) {
    sd_event_source_disable_unref(st->child);
    sd_event_source_disable_unref(st->splay_timer);
    sd_event_source_disable_unref(st->kill_timer);
    sd_event_source_disable_unref(st->wait_timer);
    sd_event_source_disable_unref(st->retry_timer);
    sd_event_source_disable_unref(st->watch);
    sd_event_unref(st->e);
    credfile_clear(&st->cred);
    free(st->child_version);
    free(st->file_path);
}

int exec_main(const char *runtime_dir, int argc, char **argv) {
    struct exec_state st = {
        .o = { .runtime_dir = runtime_dir, .prefix = "REDIS_", .splay = 30 * USEC_PER_SEC,
               .stop_timeout = 10 * USEC_PER_SEC, .wait = 30 * USEC_PER_SEC },
    };
    if (parse_opts(argc, argv, &st.o) < 0)
        return 2;
    snprintf(st.fname, sizeof st.fname, "%s.json", st.o.name);
    if (asprintf(&st.file_path, "%s/%s", runtime_dir, st.fname) < 0) {
        st.file_path = NULL;
        return 1;
    }
    int r = sd_event_new(&st.e);
    if (r >= 0)
        r = setup_signals(&st);
    if (r >= 0)
        r = sd_event_add_time_relative(st.e, &st.wait_timer, CLOCK_MONOTONIC, st.o.wait, EXEC_ACCURACY_USEC,
                                       on_wait_timeout, &st);
    if (r < 0) {
        fprintf(stderr, "redis-creds exec: cannot set up the event loop: %s\n", strerror(-r));
        state_clear(&st);
        return 1;
    }
    try_start(&st);
    r = sd_event_loop(st.e);
    state_clear(&st);
    return r < 0 ? 1 : r;
}
