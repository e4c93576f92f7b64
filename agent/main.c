/* redis-creds-agent: start-up and shutdown in one visible sequence (undone in reverse).
 *
 *   no core dumps -> arguments -> secure heap, log -> config (plugins checked)
 *   -> [--check-config: exit]
 *   -> signals, loop, watchdog -> runtime_dir lock -> host key -> workers -> agent
 *   -> loop runs -> STOPPING -> workers stopped (5 s at most) -> everything freed.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "agent.h"
#include "confcheck.h"
#include "config.h"
#include "control.h"
#include "hostkey.h"
#include "log.h"
#include "notify.h"
#include "plugins.h"
#include "rctime.h"
#include "runtime.h"
#include "secret.h"
#include "worker.h"

#ifndef RC_VERSION_STRING
#define RC_VERSION_STRING "0.1.0"
#endif

#define STOP_GRACE_USEC (5ULL * 1000000ULL)

static void usage(FILE *f) {
    fprintf(f,
            "Usage: redis-creds-agent [-c FILE] [--check-config [--as-user USER]] [--once]\n"
            "                         [--foreground] [--version] [--help]\n"
            "Keeps Redis credentials current: watches a secret store, validates each new\n"
            "credential against Redis, publishes it to the runtime directory.\n\n"
            "  -c, --config FILE  configuration file (default %s)\n"
            "      --check-config load and check the config and its plugins, then exit\n"
            "                     (0 valid, 2 invalid)\n"
            "      --as-user USER with --check-config: check the files and groups for the\n"
            "                     user the agent runs as (default: the current user)\n"
            "      --once         one attempt per credential, then exit (0 when all are\n"
            "                     current afterwards, 1 otherwise)\n"
            "      --foreground   run in the foreground (the agent never forks; accepted so\n"
            "                     unit files and scripts can say so)\n"
            "      --version      print the version\n"
            "  -h, --help         this text\n",
            RC_DEFAULT_CONFIG_FILE);
}

struct loop_ctx {
    struct agent *agent;
};

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
    struct loop_ctx *lc = userdata;
    log_info("received %s: stopping", strsignal((int)si->ssi_signo));
    notify_stopping();
    if (lc->agent)
        agent_stop(lc->agent);
    return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
    struct loop_ctx *lc = userdata;
    if (lc->agent)
        agent_reload(lc->agent);
    return 0;
}

/* A core dump of the agent would hold every secret it has in memory (the secure heap is
 * no help there), readable by whoever collects cores. Not dumpable also keeps other
 * processes of our uid from ptrace-attaching or reading /proc/<pid>/mem. A failure is
 * reported but not fatal: the unit sets LimitCORE=0 as well. */
static void no_core_dumps(void) {
    /* Under the shipped unit, setrlimit() is filtered (~@resources) and LimitCORE=0 has
     * already done it: only a limit that is not 0 yet is worth a word. */
    const struct rlimit none = { 0, 0 };
    struct rlimit now;
    bool already = getrlimit(RLIMIT_CORE, &now) == 0 && now.rlim_cur == 0 && now.rlim_max == 0;
    if (!already && setrlimit(RLIMIT_CORE, &none) < 0)
        fprintf(stderr, "redis-creds-agent: cannot disable core dumps (RLIMIT_CORE): %s\n",
                strerror(errno));
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        fprintf(stderr, "redis-creds-agent: cannot mark the process not dumpable: %s\n",
                strerror(errno));
}

static void print_finding(void *userdata, enum confcheck_level level, const char *msg) {
    (void)userdata;
    fprintf(stderr, "redis-creds-agent: %s: %s\n", level == CONFCHECK_ERROR ? "error" : "warning",
            msg);
}

static void log_finding(void *userdata, enum confcheck_level level, const char *msg) {
    (void)userdata;
    if (level == CONFCHECK_ERROR)
        log_error("%s", msg);
}

/* What the configuration names on this machine (confcheck.h): for --check-config, the
 * files and groups of `as_user` (NULL: the current user) from the databases, warnings
 * included; at start, this process's own groups. 0, or -EINVAL when there are errors. */
static int check_host(const struct config *cfg, bool check_only, const char *as_user) {
    struct confcheck_user u;
    char err[256];
    int r = check_only ? confcheck_user_lookup(as_user, &u, err, sizeof err)
                       : confcheck_user_self(&u, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "redis-creds-agent: %s\n", err);
        return -EINVAL;
    }
    return confcheck_run(cfg, &u, check_only ? print_finding : log_finding, NULL) ? -EINVAL : 0;
}

struct options {
    const char *config_path, *as_user;
    bool check_only, once;
};

/* The command line into *o. -1 to go on, else the exit code (--help, --version: 0; a
 * usage error: 2). */
static int parse_args(int argc, char **argv, struct options *o) {
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, 'C' },
        { "as-user", required_argument, NULL, 'u' },
        { "once", no_argument, NULL, 'o' },
        { "foreground", no_argument, NULL, 'f' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int opt;

    *o = (struct options){ .config_path = RC_DEFAULT_CONFIG_FILE };
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': o->config_path = optarg; break;
        case 'C': o->check_only = true; break;
        case 'u': o->as_user = optarg; break;
        case 'o': o->once = true; break;
        case 'f': break;
        case 'V': printf("redis-creds-agent %s\n", RC_VERSION_STRING); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (o->as_user && !o->check_only) {
        fprintf(stderr, "redis-creds-agent: --as-user goes with --check-config\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "redis-creds-agent: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return -1;
}

/* Loads and checks the configuration (plugins' keys and rotation support, this host's
 * files and groups) into *ret. -1 to go on; else the exit code, *ret NULL: 2 for a
 * configuration error (systemd does not restart: RestartPreventExitStatus=2), 0 after
 * --check-config found it valid. */
static int load_config(const struct options *o, struct plugins *plugins, struct config **ret) {
    struct config *cfg = NULL;
    char err[1024];
    int r = config_load(o->config_path, plugins_schema_lookup, plugins, &cfg, err, sizeof err);

    *ret = NULL;
    if (r >= 0 && (r = plugins_check_rotation(plugins, cfg, err, sizeof err)) < 0)
        cfg = config_free(cfg);
    if (r < 0)
        fprintf(stderr, "redis-creds-agent: %s\n", err);
    if (r < 0 || check_host(cfg, o->check_only, o->as_user) < 0) {
        config_free(cfg);
        return 2;
    }
    if (o->check_only) {
        printf("%s: configuration OK (%zu source(s), %zu credential(s))\n", o->config_path,
               cfg->n_sources, cfg->n_credentials);
        config_free(cfg);
        return 0;
    }
    *ret = cfg;
    return -1;
}

/* Signals arrive through the loop; SIGCHLD too, for on_change hooks. */
static void block_signals(void) {
    sigset_t mask;

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* What the running agent holds, set up by daemon_start() and undone by daemon_stop(). */
struct daemon {
    struct loop_ctx lc;
    sd_event *event;
    struct runtime *rt;
    struct secret *hostkey;
    struct worker_pool *pool;
    struct control *control;
    char *control_path;
    gid_t control_gid;
    bool pool_started;
};

/* The event loop with its signal handlers and the watchdog. 0 or -1 (logged). */
static int loop_open(struct daemon *d) {
    int r = sd_event_default(&d->event);

    if (r < 0) {
        log_error("cannot create the event loop: %s", strerror(-r));
        return -1;
    }
    if (sd_event_add_signal(d->event, NULL, SIGTERM, on_sigterm, &d->lc) < 0 ||
        sd_event_add_signal(d->event, NULL, SIGINT, on_sigterm, &d->lc) < 0 ||
        sd_event_add_signal(d->event, NULL, SIGHUP, on_sighup, &d->lc) < 0) {
        log_error("cannot set up signal handling");
        return -1;
    }
    /* WATCHDOG=1 from the loop itself: a stuck loop stops sending it. */
    r = sd_event_set_watchdog(d->event, true);
    if (r < 0)
        log_warning("cannot enable the watchdog: %s", strerror(-r));
    return 0;
}

/* What the agent needs before it starts: the runtime directory (locked), the host key,
 * the worker threads, and (unless --once) the control socket's path and group. 0 or -1. */
static int resources_open(struct daemon *d, const struct config *cfg, bool once) {
    char err[1024];
    int r;

    if (runtime_open(cfg->agent.runtime_dir, &d->rt, err, sizeof err) < 0 ||
        hostkey_load_or_create(cfg->agent.state_dir, &d->hostkey, err, sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    r = worker_pool_new(cfg->agent.workers, &d->pool);
    if (r < 0 || (r = worker_pool_attach(d->pool, d->event)) < 0) {
        log_error("cannot start worker threads: %s", strerror(-r));
        return -1;
    }
    d->pool_started = true;
    if (once)
        return 0;
    /* The control socket's group: agent.control_group (operators), else agent.group. */
    const char *group = cfg->agent.control_group ? cfg->agent.control_group : cfg->agent.group;
    if (!(d->control_path = strdup(cfg->agent.control_socket)) ||
        runtime_resolve_group(group, &d->control_gid, err, sizeof err) < 0) {
        log_error("%s", d->control_path ? err : "out of memory");
        return -1;
    }
    return 0;
}

/* Starts everything and the agent, which takes cfg (freed on failure too). 0 or -1. */
static int daemon_start(struct daemon *d, const struct options *o, struct plugins *plugins,
                        struct config *cfg) {
    char err[1024];

    if (loop_open(d) < 0 || resources_open(d, cfg, o->once) < 0) {
        config_free(cfg);
        return -1;
    }
    struct agent_params params = {
        .event = d->event, .pool = d->pool, .runtime = d->rt, .hostkey = d->hostkey,
        .plugins = plugins, .config_path = o->config_path, .once = o->once,
    };
    if (agent_start(&params, cfg, &d->lc.agent) < 0)   /* owns cfg now, or freed it */
        return -1;
    /* The control socket last: it answers about an agent that exists. --once has none. */
    if (!o->once && control_open(d->event, d->control_path, d->control_gid, d->lc.agent,
                                 &d->control, err, sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    log_info("started (%s)%s", o->config_path, o->once ? ", one attempt per credential" : "");
    return 0;
}

/* Undoes daemon_start() in reverse. The workers get STOP_GRACE_USEC to finish; one stuck
 * in a store or Redis call past that is abandoned: the process exits with exit_code at
 * once (nothing is half-published: the loop is the only writer). */
static void daemon_stop(struct daemon *d, int exit_code) {
    d->control = control_close(d->control);
    free(d->control_path);
    if (d->pool_started) {
        if (d->lc.agent)
            agent_stop(d->lc.agent);
        if (!worker_pool_stop(d->pool, rctime_deadline(STOP_GRACE_USEC))) {
            log_warning("abandoning in-flight work after %llus", STOP_GRACE_USEC / 1000000ULL);
            fflush(NULL);
            _exit(exit_code);
        }
    }
    agent_free(d->lc.agent);
    secret_free(d->hostkey);
    runtime_close(d->rt);
    sd_event_unref(d->event);
}

int main(int argc, char **argv) {
    struct daemon d = { .control_gid = (gid_t)-1 };
    struct options o;
    struct config *cfg;
    int exit_code = 1;

    no_core_dumps();   /* before anything reads a secret, --check-config included */
    int r = parse_args(argc, argv, &o);
    if (r >= 0)
        return r;
    /* Secure heap before anything allocates a secret; logging before anything logs. */
    r = secret_init(0);
    log_open("redis-creds-agent", LOG_TARGET_AUTO);
    if (r < 0)
        log_notice("secure heap unavailable (%s): secrets use locked memory instead", strerror(-r));

    struct plugins *plugins = plugins_new();
    if (!plugins)
        return 1;
    if ((r = load_config(&o, plugins, &cfg)) >= 0) {
        plugins_free(plugins);
        return r;
    }
    log_set_level(cfg->agent.log_level);
    block_signals();
    if (daemon_start(&d, &o, plugins, cfg) == 0) {
        r = sd_event_loop(d.event);
        if (r < 0)
            log_error("event loop failed: %s", strerror(-r));
        exit_code = r < 0 ? 1 : o.once ? agent_exit_code(d.lc.agent) : 0;
    }
    daemon_stop(&d, exit_code);
    plugins_free(plugins);
    return exit_code;
}
