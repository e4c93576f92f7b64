/* redis-creds: the operator's command line (DESIGN §5).
 *
 * get and watch read the published files directly; they need no agent running. The
 * runtime directory comes from --runtime-dir, else $REDIS_CREDS_RUNTIME_DIR, else the
 * agent group of the config file (-c, default /etc/redis-creds/agent.conf) when that file
 * exists, else /run/redis-creds. A config file that exists but cannot be read is an
 * error, not a silent fallback. Exit codes: 0 success, 1 runtime failure, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <libconfig.h>

#include "config.h"
#include "credfile.h"
#include "secret.h"

static void usage(FILE *f) {
    fprintf(f,
            "Usage: redis-creds [-c FILE] [--runtime-dir DIR] COMMAND\n\n"
            "Commands:\n"
            "  get NAME [--field username|password|version]\n"
            "                print the published credential NAME (the whole JSON file, or one field)\n"
            "  watch NAME    print a line each time NAME is republished, until interrupted\n\n"
            "Options:\n"
            "  -c, --config FILE      agent config to find runtime_dir in (default %s)\n"
            "      --runtime-dir DIR  the runtime directory (default: $REDIS_CREDS_RUNTIME_DIR,\n"
            "                         the config's agent.runtime_dir, or %s)\n"
            "  -h, --help             this text\n",
            RC_DEFAULT_CONFIG_FILE, RC_DEFAULT_RUNTIME_DIR);
}

/* Finds the runtime directory as the contract orders it. Returns a malloc'd path. */
static char *find_runtime_dir(const char *opt_dir, const char *config_path, bool config_given) {
    if (opt_dir)
        return strdup(opt_dir);
    const char *env = secure_getenv("REDIS_CREDS_RUNTIME_DIR");
    if (env && env[0])
        return strdup(env);
    if (access(config_path, F_OK) == 0) {
        config_t lc;
        config_init(&lc);
        if (config_read_file(&lc, config_path) != CONFIG_TRUE) {
            fprintf(stderr, "redis-creds: %s:%d: %s\n", config_error_file(&lc) ? config_error_file(&lc) : config_path,
                    config_error_line(&lc), config_error_text(&lc));
            config_destroy(&lc);
            return NULL;
        }
        const char *dir = NULL;
        char *ret = strdup(config_lookup_string(&lc, "agent.runtime_dir", &dir) == CONFIG_TRUE
                               ? dir : RC_DEFAULT_RUNTIME_DIR);
        config_destroy(&lc);
        return ret;
    }
    if (config_given) {
        fprintf(stderr, "redis-creds: %s: %s\n", config_path, strerror(errno));
        return NULL;
    }
    return strdup(RC_DEFAULT_RUNTIME_DIR);
}

static int read_cred(const char *dir, const char *name, struct credfile *cf) {
    char fname[96], err[512];
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        fprintf(stderr, "redis-creds: %s: %s\n", dir, strerror(errno));
        return -errno;
    }
    snprintf(fname, sizeof fname, "%s.json", name);
    int r = credfile_read(dfd, fname, cf, err, sizeof err);
    close(dfd);
    if (r < 0)
        fprintf(stderr, "redis-creds: %s/%s: %s\n", dir, fname, r == -ENOENT ? "not published" : err);
    return r;
}

static int cmd_get(const char *dir, int argc, char **argv) {
    const char *field = NULL, *name = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--field") == 0 && i + 1 < argc)
            field = argv[++i];
        else if (strncmp(argv[i], "--field=", 8) == 0)
            field = argv[i] + 8;
        else if (!name && argv[i][0] != '-')
            name = argv[i];
        else {
            fprintf(stderr, "redis-creds get: unexpected argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    if (!name || !config_name_valid(name)) {
        fprintf(stderr, "redis-creds get: %s\n", name ? "invalid credential name" : "NAME is required");
        return 2;
    }
    if (field && strcmp(field, "username") && strcmp(field, "password") && strcmp(field, "version")) {
        fprintf(stderr, "redis-creds get: --field must be username, password or version\n");
        return 2;
    }
    struct credfile cf = { 0 };
    if (read_cred(dir, name, &cf) < 0)
        return 1;
    int rc = 0;
    if (!field) {
        struct secret *json = NULL;
        if (credfile_format_json(&cf, &json) == 0) {
            fwrite(secret_data(json), 1, secret_len(json), stdout);
            secret_free(json);
        } else
            rc = 1;
    } else if (strcmp(field, "password") == 0) {
        fwrite(secret_data(cf.cur.password), 1, secret_len(cf.cur.password), stdout);
        fputc('\n', stdout);
    } else if (strcmp(field, "username") == 0)
        printf("%s\n", cf.cur.username ? cf.cur.username : "");
    else
        printf("%s\n", cf.cur.version);
    credfile_clear(&cf);
    return rc;
}

static volatile sig_atomic_t stop_watch;
static void on_stop(int sig) {
    stop_watch = 1;
}

static int cmd_watch(const char *dir, int argc, char **argv) {
    if (argc != 1 || !config_name_valid(argv[0])) {
        fprintf(stderr, "redis-creds watch: %s\n", argc ? "invalid credential name" : "NAME is required");
        return 2;
    }
    const char *name = argv[0];
    char fname[96];
    snprintf(fname, sizeof fname, "%s.json", name);

    /* Watch the directory, not the file: a watch on the file is lost at the first rename. */
    int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0 || inotify_add_watch(fd, dir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
        fprintf(stderr, "redis-creds: cannot watch %s: %s\n", dir, strerror(errno));
        return 1;
    }
    struct sigaction sa = { .sa_handler = on_stop };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (!stop_watch) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        bool changed = false;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->len && strcmp(ev->name, fname) == 0)
                changed = true;
        }
        if (!changed)
            continue;
        struct credfile cf = { 0 };
        if (read_cred(dir, name, &cf) < 0)
            continue;
        char when[40];
        printf("%s %s version %s validated %s\n", credfile_time_format(cf.published_at, when, sizeof when),
               name, cf.cur.version, cf.validated ? cf.validated : "?");
        credfile_clear(&cf);
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "runtime-dir", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config_path = RC_DEFAULT_CONFIG_FILE, *opt_dir = NULL;
    bool config_given = false;
    int opt;
    /* '+': stop at the command, its own options follow it. */
    while ((opt = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; config_given = true; break;
        case 'r': opt_dir = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    secret_init(0);
    const char *cmd = argv[optind];
    int cargc = argc - optind - 1;
    char **cargv = argv + optind + 1;
    if (strcmp(cmd, "get") && strcmp(cmd, "watch")) {
        fprintf(stderr, "redis-creds: unknown command \"%s\"\n", cmd);
        usage(stderr);
        return 2;
    }
    char *dir = find_runtime_dir(opt_dir, config_path, config_given);
    if (!dir)
        return 2;
    int rc = strcmp(cmd, "get") == 0 ? cmd_get(dir, cargc, cargv) : cmd_watch(dir, cargc, cargv);
    free(dir);
    return rc;
}
