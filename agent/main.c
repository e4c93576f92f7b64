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
#include <time.h>
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

static uint64_t mono_usec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000ULL;
}

int main(int argc, char **argv) {
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
    no_core_dumps();   /* before anything reads a secret, --check-config included */
    const char *config_path = RC_DEFAULT_CONFIG_FILE, *as_user = NULL;
    bool check_only = false, once = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'C': check_only = true; break;
        case 'u': as_user = optarg; break;
        case 'o': once = true; break;
        case 'f': break;
        case 'V': printf("redis-creds-agent %s\n", RC_VERSION_STRING); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (as_user && !check_only) {
        fprintf(stderr, "redis-creds-agent: --as-user goes with --check-config\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "redis-creds-agent: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    /* Secure heap before anything allocates a secret; logging before anything logs. */
    int r = secret_init(0);
    log_open("redis-creds-agent", LOG_TARGET_AUTO);
    if (r < 0)
        log_notice("secure heap unavailable (%s): secrets use locked memory instead", strerror(-r));

    struct plugins *plugins = plugins_new();
    struct config *cfg = NULL;
    char err[1024];
    if (!plugins)
        return 1;
    r = config_load(config_path, plugins_schema_lookup, plugins, &cfg, err, sizeof err);
    if (r >= 0 && (r = plugins_check_rotation(plugins, cfg, err, sizeof err)) < 0)
        cfg = config_free(cfg);
    if (r < 0)
        fprintf(stderr, "redis-creds-agent: %s\n", err);
    if (r < 0 || check_host(cfg, check_only, as_user) < 0) {
        config_free(cfg);
        plugins_free(plugins);
        return 2;   /* a configuration error: systemd does not restart (RestartPreventExitStatus=2) */
    }
    if (check_only) {
        printf("%s: configuration OK (%zu source(s), %zu credential(s))\n", config_path,
               cfg->n_sources, cfg->n_credentials);
        config_free(cfg);
        plugins_free(plugins);
        return 0;
    }
    log_set_level(cfg->agent.log_level);

    /* Signals arrive through the loop; SIGCHLD too, for on_change hooks. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    int exit_code = 1;
    struct loop_ctx lc = { 0 };
    sd_event *event = NULL;
    struct runtime *rt = NULL;
    struct secret *hostkey = NULL;
    struct worker_pool *pool = NULL;
    struct control *control = NULL;
    char *control_path = NULL;
    gid_t control_gid = (gid_t)-1;
    bool pool_stopped = true;

    r = sd_event_default(&event);
    if (r < 0) {
        log_error("cannot create the event loop: %s", strerror(-r));
        goto out;
    }
    if (sd_event_add_signal(event, NULL, SIGTERM, on_sigterm, &lc) < 0 ||
        sd_event_add_signal(event, NULL, SIGINT, on_sigterm, &lc) < 0 ||
        sd_event_add_signal(event, NULL, SIGHUP, on_sighup, &lc) < 0) {
        log_error("cannot set up signal handling");
        goto out;
    }
    /* WATCHDOG=1 from the loop itself: a stuck loop stops sending it. */
    r = sd_event_set_watchdog(event, true);
    if (r < 0)
        log_warning("cannot enable the watchdog: %s", strerror(-r));

    r = runtime_open(cfg->agent.runtime_dir, &rt, err, sizeof err);
    if (r < 0) {
        log_error("%s", err);
        goto out;
    }
    r = hostkey_load_or_create(cfg->agent.state_dir, &hostkey, err, sizeof err);
    if (r < 0) {
        log_error("%s", err);
        goto out;
    }
    r = worker_pool_new(cfg->agent.workers, &pool);
    if (r < 0 || (r = worker_pool_attach(pool, event)) < 0) {
        log_error("cannot start worker threads: %s", strerror(-r));
        goto out;
    }
    pool_stopped = false;
    /* The control socket's group: agent.control_group (operators), else agent.group. */
    const char *control_group = cfg->agent.control_group ? cfg->agent.control_group : cfg->agent.group;
    if (!once && (!(control_path = strdup(cfg->agent.control_socket)) ||
                  runtime_resolve_group(control_group, &control_gid, err, sizeof err) < 0)) {
        log_error("%s", control_path ? err : "out of memory");
        goto out;
    }

    struct agent_params params = {
        .event = event, .pool = pool, .runtime = rt, .hostkey = hostkey,
        .plugins = plugins, .config_path = config_path, .once = once,
    };
    r = agent_start(&params, cfg, &lc.agent);
    cfg = NULL;   /* the agent owns it now, or freed it */
    if (r < 0)
        goto out;
    /* The control socket last: it answers about an agent that exists. --once has none. */
    if (!once && (r = control_open(event, control_path, control_gid, lc.agent, &control, err, sizeof err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    log_info("started (%s)%s", config_path, once ? ", one attempt per credential" : "");

    r = sd_event_loop(event);
    if (r < 0)
        log_error("event loop failed: %s", strerror(-r));
    exit_code = r < 0 ? 1 : once ? agent_exit_code(lc.agent) : 0;

out:
    control = control_close(control);
    free(control_path);
    if (!pool_stopped) {
        if (lc.agent)
            agent_stop(lc.agent);
        if (!worker_pool_stop(pool, mono_usec() + STOP_GRACE_USEC)) {
            /* A worker is stuck in a store or Redis call past its grace: abandon it.
             * Nothing is half-published (the loop is the only writer). */
            log_warning("abandoning in-flight work after %llus", STOP_GRACE_USEC / 1000000ULL);
            fflush(NULL);
            _exit(exit_code);
        }
    }
    agent_free(lc.agent);
    config_free(cfg);
    secret_free(hostkey);
    runtime_close(rt);
    sd_event_unref(event);
    plugins_free(plugins);
    return exit_code;
}
