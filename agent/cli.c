/* redis-creds: the operator's command line (docs/design.md §10).
 *
 * get, watch and exec read the published files directly; they need no agent running.
 * status, refresh, rotate and reload ask the agent through its control socket. The
 * runtime directory comes from --runtime-dir, else $REDIS_CREDS_RUNTIME_DIR, else the
 * agent group of the config file (-c, default /etc/redis-creds/agent.conf) when that file
 * exists, else /run/redis-creds; the control socket likewise (--control-socket,
 * $REDIS_CREDS_CONTROL_SOCKET, agent.control_socket). The config is read only for the
 * path the command needs (so a user outside the agent's group gets by with
 * --runtime-dir); a config file that exists but cannot be read is then an error, not a
 * silent fallback, and the message names the way out. Exit codes: 0 success, 1 runtime
 * failure, 2 usage or configuration error (reload: the agent rejected the config).
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
#include <sys/stat.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <jansson.h>

#include "config.h"
#include "control_request.h"
#include "credfile.h"
#include "duration.h"
#include "exec.h"
#include "secret.h"

#ifndef RC_VERSION_STRING
#error "RC_VERSION_STRING comes from CMake (RC_VERSION_TEXT)"
#endif

/* A reload waits for a rotation step in flight (a store write or ACL commands, bounded by
 * the source's timeout, 10 s by default for vault and azure sources, and redis.timeout,
 * 2 s per node): 60 s covers the defaults, and stays under systemd's default 90 s for
 * ExecReload=. */
#define RELOAD_TIMEOUT_DEFAULT "60s"

static void usage(FILE *f) {
    fprintf(f,
            "Usage: redis-creds [-c FILE] [--runtime-dir DIR] COMMAND\n\n"
            "Commands:\n"
            "  get NAME [--field username|password|version]\n"
            "                print the published credential NAME (the whole JSON file, or one field)\n"
            "  watch NAME    print a line each time NAME is republished, until interrupted\n"
            "  status [--json]\n"
            "                ask the agent for each credential's state; exit 0 when all are current\n"
            "  refresh NAME  ask the agent to check the store for NAME now\n"
            "  rotate NAME [--revoke]\n"
            "                ask the agent to rotate NAME now; --revoke: no grace, the old\n"
            "                password is removed from Redis as soon as the new one is written\n"
            "  reload [--allow-removals] [--pid PID] [--timeout DURATION]\n"
            "                ask the agent to reload its config and wait for the outcome: exit 0 when\n"
            "                the new config is in force, 2 when it was rejected as a configuration\n"
            "                error, 1 otherwise (default timeout %s)\n"
            "  exec --credential NAME [--env-prefix REDIS_] [--restart | --signal SIGHUP]\n"
            "       [--splay 30s] [--stop-timeout 10s] [--wait 30s] -- PROGRAM [ARGS...]\n"
            "                run PROGRAM with REDIS_USERNAME, REDIS_PASSWORD and REDIS_CREDS_FILE in\n"
            "                its environment; restart it (default) or signal it at each new version\n\n"
            "Options:\n"
            "  -c, --config FILE      agent config to find runtime_dir in (default %s)\n"
            "      --runtime-dir DIR  the runtime directory (default: $REDIS_CREDS_RUNTIME_DIR,\n"
            "                         the config's agent.runtime_dir, or %s)\n"
            "      --control-socket P the agent's control socket (default: $REDIS_CREDS_CONTROL_SOCKET,\n"
            "                         the config's agent.control_socket, or %s)\n"
            "  -V, --version          print the version\n"
            "  -h, --help             this text\n",
            RELOAD_TIMEOUT_DEFAULT, RC_DEFAULT_CONFIG_FILE, RC_DEFAULT_RUNTIME_DIR,
            RC_DEFAULT_CONTROL_SOCKET);
}

struct cli_paths {
    char *runtime_dir;
    char *control_socket;
    struct config *cfg;    /* the config file, when it was read */
};

/* Says how a user who may not read a file of the agent's still gets what they asked for.
 * The group named is the file's own (the one to join), redis-creds when it cannot be
 * found. */
static void hint_way_out(const char *path) {
    const char *grp = exec_group_of(path);
    fprintf(stderr,
            "redis-creds: %s is not readable by this user; either name the runtime directory "
            "with --runtime-dir DIR or $REDIS_CREDS_RUNTIME_DIR (and the agent's socket with "
            "--control-socket or $REDIS_CREDS_CONTROL_SOCKET), or join the group %s "
            "(usermod -aG %s USER, then log in again)\n", path, grp, grp);
}

/* What to do when the agent's socket refused us (EACCES): the socket, or its directory
 * when that is what we may not pass, is open to a group; join it, or be root. */
static void hint_socket_access(const char *sock) {
    char dir[sizeof ((struct sockaddr_un *)0)->sun_path];
    snprintf(dir, sizeof dir, "%s", sock);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    struct stat st;
    bool dir_blocks = slash && stat(sock, &st) < 0 && errno == EACCES;
    const char *path = dir_blocks ? dir : sock, *grp = exec_group_of(path);
    fprintf(stderr,
            "redis-creds: %s is open only to root, its owner and the group %s; join that group "
            "(usermod -aG %s USER, then log in again) for status, or run the command as root or "
            "as the agent's user (refresh, rotate and reload need that)\n", path, grp, grp);
}

/* Reads the config for the CLI: no plugin lookup, the CLI needs only the agent group and
 * the credentials' names. 0 and *ret, or -errno (said on stderr). */
static int load_config(const char *config_path, struct config **ret) {
    char err[1024];
    int r = config_load(config_path, NULL, NULL, ret, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "redis-creds: %s\n", err);
        if (r == -EACCES)
            hint_way_out(config_path);
    }
    return r;
}

/* Finds the runtime directory and control socket as the contract orders them: option,
 * environment, the config's agent group when the file exists, the default. The config is
 * read only when a path the command needs (need_dir, need_sock) is still unknown; a config
 * file that exists but cannot be read or parsed is then an error, not a silent fallback. */
static int find_paths(const char *opt_dir, const char *opt_sock, const char *config_path,
                      bool config_given, bool need_dir, bool need_sock, struct cli_paths *ret) {
    const char *env_dir = secure_getenv("REDIS_CREDS_RUNTIME_DIR");
    const char *env_sock = secure_getenv("REDIS_CREDS_CONTROL_SOCKET");
    const char *dir = opt_dir ? opt_dir : env_dir && env_dir[0] ? env_dir : NULL;
    const char *sock = opt_sock ? opt_sock : env_sock && env_sock[0] ? env_sock : NULL;

    if (((need_dir && !dir) || (need_sock && !sock)) && (config_given || access(config_path, F_OK) == 0)) {
        if (load_config(config_path, &ret->cfg) < 0)
            return -EINVAL;
        if (!dir)
            dir = ret->cfg->agent.runtime_dir;
        if (!sock)
            sock = ret->cfg->agent.control_socket;
    }
    ret->runtime_dir = strdup(dir ? dir : RC_DEFAULT_RUNTIME_DIR);
    ret->control_socket = strdup(sock ? sock : RC_DEFAULT_CONTROL_SOCKET);
    return ret->runtime_dir && ret->control_socket ? 0 : -ENOMEM;
}

/* Connects to the agent's socket; connecting and each read wait up to timeout_usec. The
 * fd, or -1 (said). The connect needs its bound too: when the agent does not accept (its
 * loop stuck or stopped) and its backlog is full, connect() blocks until there is room,
 * and a health check of `redis-creds status` would hang instead of failing. */
static int connect_agent(const char *sock, uint64_t timeout_usec) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(sock) >= sizeof sa.sun_path) {
        fprintf(stderr, "redis-creds: control socket path too long\n");
        return -1;
    }
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = { .tv_sec = (time_t)(timeout_usec / 1000000),
                          .tv_usec = (suseconds_t)(timeout_usec % 1000000) };
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        fprintf(stderr, "redis-creds: cannot reach the agent at %s: %s%s\n", sock,
                e == EAGAIN ? "it accepts no connections (its queue is full)" : strerror(e),
                e == ENOENT || e == ECONNREFUSED ? " (is the agent running?)"
                : e == EAGAIN ? "; is it stuck or stopped? see journalctl -u redis-creds-agent" : "");
        if (e == EACCES)
            hint_socket_access(sock);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Reads the agent's answer until it closes; the bytes (malloc'd, *ret_len of them), or NULL
 * with errno set (0: it closed without a word, or said too much). A reset after some bytes
 * ends the answer: the agent may close with our request unread (a refusal), and the line
 * it sent before is still ours to read. */
static char *read_answer(int fd, size_t *ret_len) {
    size_t cap = 1 << 20, got = 0;   /* status of many credentials stays far below 1 MiB */
    char *buf = malloc(cap);
    ssize_t n = 0;
    while (buf && got < cap && (n = read(fd, buf + got, cap - got)) > 0)
        got += (size_t)n;
    if (n < 0 && errno == ECONNRESET && got > 0)
        n = 0;
    if (!buf || n < 0 || got == 0 || got == cap) {
        int e = n < 0 ? errno : 0;
        free(buf);
        errno = e;
        return NULL;
    }
    *ret_len = got;
    return buf;
}

/* Sends one request line on fd and reads the one-line JSON answer; closes fd. A failed
 * send is not the end: an agent that turns us away (too many connections) answers and
 * closes before it reads, so its answer may be waiting. MSG_NOSIGNAL: a closed peer must
 * not kill us with SIGPIPE before we have read it. */
static json_t *exchange(int fd, const char *sock, const char *request) {
    char line[CONTROL_MAX_REQUEST];
    int len = snprintf(line, sizeof line, "%s\n", request);   /* our own requests: short */
    ssize_t sent = len > 0 && (size_t)len < sizeof line ? send(fd, line, (size_t)len, MSG_NOSIGNAL) : -1;
    int send_errno = sent == len ? 0 : sent < 0 ? errno : EIO;
    size_t got = 0;
    char *buf = send_errno == 0 || send_errno == EPIPE || send_errno == ECONNRESET
                    ? read_answer(fd, &got) : NULL;
    int read_errno = errno;
    close(fd);
    if (!buf && send_errno) {
        fprintf(stderr, "redis-creds: %s: cannot send the request: %s\n", sock, strerror(send_errno));
        return NULL;
    }
    if (!buf) {
        bool timed_out = read_errno == EAGAIN || read_errno == EWOULDBLOCK;
        fprintf(stderr, "redis-creds: no answer from the agent at %s%s%s\n", sock,
                timed_out ? ": timed out" : read_errno ? ": " : " (it closed the connection)",
                timed_out || !read_errno ? "" : strerror(read_errno));
        return NULL;
    }
    json_t *j = json_loadb(buf, got, 0, NULL);   /* only "malformed" is reported */
    free(buf);
    if (!json_is_object(j)) {
        fprintf(stderr, "redis-creds: malformed answer from the agent\n");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* One request to the agent, its answer within 10 s. */
static json_t *ask_agent(const char *sock, const char *request) {
    int fd = connect_agent(sock, 10 * 1000000ULL);
    return fd < 0 ? NULL : exchange(fd, sock, request);
}

static const char *jstr(json_t *o, const char *key) {
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "-";
}

/* redis-acl-users' drain: per node, the previous user's connections still open. */
static void print_drain(const json_t *d) {
    size_t i;
    json_t *n;
    if (!json_is_object(d))
        return;
    printf("%-20s draining: user %s has %lld connection(s)%s\n", "",
           json_string_value(json_object_get(d, "user")),
           (long long)json_integer_value(json_object_get(d, "connections")),
           json_is_true(json_object_get(d, "past_max_grace")) ? ", past max_grace: it stays enabled" : "");
    json_array_foreach(json_object_get(d, "nodes"), i, n) {
        json_t *a;
        size_t k;
        if (json_integer_value(json_object_get(n, "connections")) == 0)
            continue;
        printf("%-20s   %s:", "", json_string_value(json_object_get(n, "node")));
        json_array_foreach(json_object_get(n, "addrs"), k, a)
            printf("%s %s", k ? "," : "", json_string_value(a));
        printf(" (%lld)\n", (long long)json_integer_value(json_object_get(n, "connections")));
    }
}

static int cmd_status(const char *sock, int argc, char **argv) {
    bool as_json = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = true;
        else {
            fprintf(stderr, "redis-creds status: unexpected argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    json_t *j = ask_agent(sock, "status");
    if (!j)
        return 1;
    if (json_is_false(json_object_get(j, "ok"))) {   /* refused, e.g. too many connections */
        fprintf(stderr, "redis-creds status: %s\n", jstr(j, "error"));
        json_decref(j);
        return 1;
    }
    json_t *creds = json_object_get(j, "credentials");
    bool all_current = json_is_array(creds);
    size_t i;
    json_t *c;
    json_array_foreach(creds, i, c)
        if (!json_is_true(json_object_get(c, "current")))
            all_current = false;
    if (as_json) {
        json_dumpf(j, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        printf("%-20s %-14s %-20s %-20s %-20s %-20s %-20s %s\n", "NAME", "STATE", "VERSION", "LAST CHECK",
               "LAST CHANGE", "NEXT CHECK", "EXPIRES", "NODES / LAST ERROR");
        json_array_foreach(creds, i, c) {
            const char *err = jstr(c, "last_error");
            printf("%-20s %-14s %-20s %-20s %-20s %-20s %-20s %s%s%s\n", jstr(c, "name"), jstr(c, "state"),
                   jstr(c, "version"), jstr(c, "last_check"), jstr(c, "last_change"), jstr(c, "next_check"),
                   jstr(c, "expires_at"), jstr(c, "nodes"), strcmp(err, "-") ? "; " : "",
                   strcmp(err, "-") ? err : "");
            json_t *ro = json_object_get(c, "rotation");
            json_t *rl = json_object_get(ro, "rotators");
            if (json_is_object(ro) && json_is_false(json_object_get(ro, "rotates_here")) && json_is_array(rl)) {
                char hosts[256] = "";
                size_t k;
                json_t *hn;
                json_array_foreach(rl, k, hn) {
                    size_t used = strlen(hosts);
                    snprintf(hosts + used, sizeof hosts - used, "%s%s", k ? ", " : "", json_string_value(hn));
                }
                printf("%-20s rotation: %s by the hosts of rotation.rotators (%s), not this one (it "
                       "publishes what they rotate to)\n", "", jstr(ro, "strategy"), hosts);
            } else if (json_is_object(ro) && json_is_false(json_object_get(ro, "rotates_here"))) {
                printf("%-20s rotation: %s by host %s, not this one (it publishes what that host "
                       "rotates to)\n", "", jstr(ro, "strategy"), jstr(ro, "rotator"));
            } else if (json_is_object(ro)) {
                const char *rerr = jstr(ro, "last_error"), *gone = jstr(ro, "old_removed_at");
                const char *retry = jstr(ro, "retry_at");
                /* azure-keys ends its grace by regenerating the old key, not removing it */
                const char *gone_what = strcmp(jstr(ro, "strategy"), "azure-keys") == 0
                                            ? ", old key regenerated at " : ", old password removed at ";
                printf("%-20s rotation: phase %s (%s), last %s, next %s%s%s%s%s%s%s\n", "",
                       jstr(ro, "phase"), jstr(ro, "step"), jstr(ro, "last_rotation"),
                       jstr(ro, "next_rotation"), strcmp(gone, "-") ? gone_what : "",
                       strcmp(gone, "-") ? gone : "", strcmp(retry, "-") ? ", retry at " : "",
                       strcmp(retry, "-") ? retry : "", strcmp(rerr, "-") ? "; " : "",
                       strcmp(rerr, "-") ? rerr : "");
                print_drain(json_object_get(ro, "drain"));
            }
        }
    }
    json_decref(j);
    return all_current ? 0 : 1;
}

static int cmd_request(const char *sock, const char *verb, int argc, char **argv) {
    /* rotate NAME --revoke: grace 0, the old password dies now (docs/operations.md) */
    bool revoke = strcmp(verb, "rotate") == 0 && argc == 2 && strcmp(argv[1], "--revoke") == 0;
    if ((argc != 1 && !revoke) || !config_name_valid(argv[0])) {
        fprintf(stderr, "redis-creds %s: %s\n", verb, argc == 0 ? "NAME is required"
                                                   : argc > 1 ? "unexpected argument (rotate takes NAME [--revoke])"
                                                              : CONTROL_NAME_INVALID);
        return 2;
    }
    char req[128];
    snprintf(req, sizeof req, "%s %s%s", verb, argv[0], revoke ? " revoke" : "");
    json_t *j = ask_agent(sock, req);
    if (!j)
        return 1;
    int rc = 0;
    if (!json_is_true(json_object_get(j, "ok"))) {
        fprintf(stderr, "redis-creds %s: %s\n", verb, jstr(j, "error"));
        rc = 1;
    }
    json_decref(j);
    return rc;
}

/* --pid: is the agent behind the socket that process? SO_PEERCRED on a connected socket
 * holds the pid of the process that listened, which is the agent's main process. */
static bool peer_is(int fd, pid_t want) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        fprintf(stderr, "redis-creds reload: cannot identify the agent (SO_PEERCRED): %s\n",
                strerror(errno));
        return false;
    }
    if (cred.pid != want) {
        fprintf(stderr, "redis-creds reload: the agent at this socket is pid %ld, not pid %ld "
                "(--pid); not reloading it\n", (long)cred.pid, (long)want);
        return false;
    }
    return true;
}

struct reload_opts {
    bool allow_removals;
    pid_t pid;                /* 0: any */
    uint64_t timeout_usec;
};

static int parse_reload_args(int argc, char **argv, struct reload_opts *o) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--allow-removals") == 0) {
            o->allow_removals = true;
            continue;
        }
        bool is_pid = strcmp(a, "--pid") == 0, is_timeout = strcmp(a, "--timeout") == 0;
        if ((!is_pid && !is_timeout) || !val) {
            fprintf(stderr, "redis-creds reload: %s \"%s\"\n",
                    is_pid || is_timeout ? "a value is needed after" : "unexpected argument", a);
            return -EINVAL;
        }
        i++;
        char *end = NULL;
        errno = 0;
        unsigned long v = is_pid ? strtoul(val, &end, 10) : 0;
        if (is_pid && (errno || end == val || *end || v == 0 || v > (unsigned long)INT32_MAX)) {
            fprintf(stderr, "redis-creds reload: --pid: not a process id\n");
            return -EINVAL;
        }
        if (is_pid)
            o->pid = (pid_t)v;
        else if (duration_parse(val, &o->timeout_usec) < 0 || o->timeout_usec < 1000) {
            fprintf(stderr, "redis-creds reload: --timeout: bad duration \"%s\" (e.g. 90s, 5m)\n", val);
            return -EINVAL;
        }
    }
    return 0;
}

/* reload: 0 when the new config is in force, 2 when the agent rejected it as a
 * configuration error, 1 otherwise (no agent, not ours by --pid, denied, timed out). */
static int cmd_reload(const char *sock, int argc, char **argv) {
    struct reload_opts o = { 0 };
    if (duration_parse(RELOAD_TIMEOUT_DEFAULT, &o.timeout_usec) < 0 ||
        parse_reload_args(argc, argv, &o) < 0)
        return 2;
    int fd = connect_agent(sock, o.timeout_usec);
    if (fd < 0)
        return 1;
    if (o.pid && !peer_is(fd, o.pid)) {
        close(fd);
        return 1;
    }
    json_t *j = exchange(fd, sock, o.allow_removals ? "reload allow-removals" : "reload");
    if (!j) {
        char t[32];
        fprintf(stderr, "redis-creds reload: no outcome (timeout %s); if the agent still runs, the "
                "reload may yet complete: see journalctl -u redis-creds-agent\n",
                duration_format(o.timeout_usec, t, sizeof t));
        return 1;
    }
    int rc = 0;
    if (!json_is_true(json_object_get(j, "ok"))) {
        bool config_error = json_is_true(json_object_get(j, "config_error"));
        fprintf(stderr, "redis-creds reload: %s%s\n", config_error ? "rejected, the running "
                "configuration stays in force: " : "", jstr(j, "error"));
        rc = config_error ? 2 : 1;
    }
    json_decref(j);
    return rc;
}

static int read_cred(const char *dir, const char *name, struct credfile *cf) {
    char fname[96], err[512] = "", path[4200];
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int r = -errno;
        fprintf(stderr, "redis-creds: %s: %s\n", dir, strerror(-r));
        if (r == -EACCES)
            hint_way_out(dir);
        return r;
    }
    snprintf(fname, sizeof fname, "%s.json", name);
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    int r = credfile_read(dfd, fname, cf, err, sizeof err);
    close(dfd);
    /* credfile's messages start with the file's name: the path replaces it */
    size_t skip = strncmp(err, fname, strlen(fname)) == 0 && err[strlen(fname)] == ':' ? strlen(fname) + 2 : 0;
    if (r < 0)
        fprintf(stderr, "redis-creds: %s: %s\n", path, r == -ENOENT ? "not published" : err + skip);
    if (r == -EACCES) {
        /* the directory let us in: the file's own group is the way */
        const char *grp = exec_group_of(path);
        fprintf(stderr, "redis-creds: %s is readable only by its owner and the group %s; join that "
                "group (usermod -aG %s USER, then log in again), or run the command as root\n",
                path, grp, grp);
    }
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
        fprintf(stderr, "redis-creds get: %s\n", name ? CONTROL_NAME_INVALID : "NAME is required");
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

/* One line about NAME's published version; false when it is not published (said). */
static bool print_version(const char *dir, const char *name) {
    struct credfile cf = { 0 };
    if (read_cred(dir, name, &cf) < 0)
        return false;
    char when[40];
    printf("%s %s version %s validated %s\n", rctime_format(cf.published_at, when, sizeof when),
           name, cf.cur.version, cf.validated ? cf.validated : "?");
    credfile_clear(&cf);
    return true;
}

static bool configured(const struct config *cfg, const char *name) {
    for (size_t i = 0; cfg && i < cfg->n_credentials; i++)
        if (strcmp(cfg->credentials[i].name, name) == 0)
            return true;
    return false;
}

/* Before watching: the current version at once. A name that is not published and that a
 * readable config does not list is unknown: -ENOENT (said). A name that is not published
 * yet but configured, or that no readable config can vouch for, is waited for (said). */
static int watch_start(const char *dir, const struct config *cfg, const char *config_path,
                       const char *name) {
    char fname[96];
    snprintf(fname, sizeof fname, "%s.json", name);
    struct stat st;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool exists = dfd >= 0 && fstatat(dfd, fname, &st, 0) == 0;
    if (dfd >= 0)
        close(dfd);
    if (exists)
        return print_version(dir, name) ? 0 : -EIO;
    if (cfg && !configured(cfg, name)) {
        fprintf(stderr, "redis-creds watch: no credential named \"%s\": not published in %s and "
                "not in %s\n", name, dir, config_path);
        return -ENOENT;
    }
    fprintf(stderr, "redis-creds watch: %s is not published in %s yet; waiting%s\n", name, dir,
            cfg ? "" : " (no readable config to tell whether it is configured)");
    return 0;
}

/* A directory that is not there: its watch was lost (deleted or moved away; the agent,
 * or systemd, makes it again and republishes there), or the agent has not made it yet.
 * Waits until the path is a directory, watches it, and prints the version it holds by
 * then (none yet: its rename comes as an event). `why` is said first unless NULL. The
 * new watch descriptor, or -1 when interrupted or on another error (said). */
static int watch_again(int fd, const char *dir, const char *name, const char *why) {
    if (why)
        fprintf(stderr, "redis-creds watch: %s %s\n", dir, why);
    while (!stop_watch) {
        int wd = inotify_add_watch(fd, dir, EXEC_DIR_WATCH_MASK);
        if (wd >= 0) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s.json", dir, name);
            if (access(path, F_OK) == 0)
                print_version(dir, name);
            return wd;
        }
        if (errno != ENOENT && errno != ENOTDIR) {
            fprintf(stderr, "redis-creds: cannot watch %s: %s\n", dir, strerror(errno));
            return -1;
        }
        poll(NULL, 0, 100);   /* a signal ends the wait early: stop_watch */
    }
    return -1;
}

/* Prints a line at each rename of NAME's file in dir (watch descriptor wd) until
 * interrupted (0), or until the directory cannot be watched again (1). Events of a watch
 * we left (wd differs) are stale and skipped. */
static int watch_loop(int fd, int wd, const char *dir, const char *name) {
    char fname[96];
    snprintf(fname, sizeof fname, "%s.json", name);
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (!stop_watch && wd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        bool changed = false, lost = false;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->wd != wd)
                continue;
            lost |= (ev->mask & EXEC_DIR_LOST_MASK) != 0;
            changed |= ev->len && strcmp(ev->name, fname) == 0;
        }
        if (lost) {
            inotify_rm_watch(fd, wd);   /* a directory moved away is still watched */
            wd = watch_again(fd, dir, name, "was removed or moved away; waiting for it to come back");
        } else if (changed)
            print_version(dir, name);
    }
    return wd < 0 && !stop_watch ? 1 : 0;
}

static int cmd_watch(const char *dir, const struct config *cfg, const char *config_path, int argc,
                     char **argv) {
    if (argc != 1 || !config_name_valid(argv[0])) {
        fprintf(stderr, "redis-creds watch: %s\n", argc ? CONTROL_NAME_INVALID : "NAME is required");
        return 2;
    }
    const char *name = argv[0];

    /* Watch the directory, not the file: a watch on the file is lost at the first rename.
     * Set up before the first look, so that nothing published in between is missed. */
    int fd = inotify_init1(IN_CLOEXEC);
    int wd = fd < 0 ? -1 : inotify_add_watch(fd, dir, EXEC_DIR_WATCH_MASK);
    bool no_dir_yet = wd < 0 && fd >= 0 && errno == ENOENT;   /* the agent makes it */
    if (wd < 0 && !no_dir_yet) {
        fprintf(stderr, "redis-creds: cannot watch %s: %s\n", dir, strerror(errno));
        if (errno == EACCES)
            hint_way_out(dir);
        if (fd >= 0)
            close(fd);
        return 1;
    }
    struct sigaction sa = { .sa_handler = on_stop };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (watch_start(dir, cfg, config_path, name) < 0) {
        close(fd);
        return 1;
    }
    if (no_dir_yet)   /* watch_start said that we wait */
        wd = watch_again(fd, dir, name, NULL);
    int rc = watch_loop(fd, wd, dir, name);
    close(fd);
    return rc;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "runtime-dir", required_argument, NULL, 'r' },
        { "control-socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *config_path = RC_DEFAULT_CONFIG_FILE, *opt_dir = NULL, *opt_sock = NULL;
    bool config_given = false;
    int opt;
    /* '+': stop at the command, its own options follow it. */
    while ((opt = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; config_given = true; break;
        case 'r': opt_dir = optarg; break;
        case 's': opt_sock = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("redis-creds %s\n", RC_VERSION_STRING); return 0;
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
    bool is_file_cmd = strcmp(cmd, "get") == 0 || strcmp(cmd, "watch") == 0 || strcmp(cmd, "exec") == 0;
    bool is_agent_cmd = strcmp(cmd, "status") == 0 || strcmp(cmd, "refresh") == 0 || strcmp(cmd, "rotate") == 0 ||
                        strcmp(cmd, "reload") == 0;
    if (!is_file_cmd && !is_agent_cmd) {
        fprintf(stderr, "redis-creds: unknown command \"%s\"\n", cmd);
        usage(stderr);
        return 2;
    }
    struct cli_paths paths = { 0 };
    int rc = 2;
    if (find_paths(opt_dir, opt_sock, config_path, config_given, is_file_cmd, is_agent_cmd, &paths) < 0)
        goto out;
    /* watch: the config also tells a name not published yet from an unknown one. */
    if (strcmp(cmd, "watch") == 0 && !paths.cfg && access(config_path, R_OK) == 0) {
        char err[1024];
        if (config_load(config_path, NULL, NULL, &paths.cfg, err, sizeof err) < 0)
            paths.cfg = NULL;
    }
    if (strcmp(cmd, "get") == 0)
        rc = cmd_get(paths.runtime_dir, cargc, cargv);
    else if (strcmp(cmd, "watch") == 0)
        rc = cmd_watch(paths.runtime_dir, paths.cfg, config_path, cargc, cargv);
    else if (strcmp(cmd, "exec") == 0)
        rc = exec_main(paths.runtime_dir, cargc + 1, cargv - 1);   /* argv[0] "exec" */
    else if (strcmp(cmd, "status") == 0)
        rc = cmd_status(paths.control_socket, cargc, cargv);
    else if (strcmp(cmd, "reload") == 0)
        rc = cmd_reload(paths.control_socket, cargc, cargv);
    else
        rc = cmd_request(paths.control_socket, cmd, cargc, cargv);
out:
    config_free(paths.cfg);
    free(paths.runtime_dir);
    free(paths.control_socket);
    return rc;
}
