/* control: see control.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "control.h"
#include "log.h"
#include "secret.h"

struct conn {
    struct control *ctl;
    int fd;
    uid_t uid;             /* the peer's, from SO_PEERCRED */
    bool privileged;       /* root or the agent's own user */
    bool awaits_reload;    /* a `reload` answered when the agent's reload ends */
    sd_event_source *io, *timer;
    char in[CONTROL_MAX_REQUEST];
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    struct conn *next;
};

struct control {
    sd_event *event;
    struct agent *agent;
    char *path;
    int dirfd;             /* the socket's directory */
    char *name;            /* the socket's name in it */
    bool bound;            /* dev/ino: what we bound, the only thing we unlink at close */
    dev_t dev;
    ino_t ino;
    int fd;
    int reserve_fd;        /* /dev/null, given up at EMFILE to accept and answer one peer */
    uid_t agent_uid;
    sd_event_source *listen, *resume;
    struct conn *conns;
    unsigned n_unprivileged;
    unsigned refused;      /* since the last warning */
    uint64_t refused_logged_usec;
};

static void conn_free(struct conn *k) {
    struct control *c = k->ctl;
    for (struct conn **p = &c->conns; *p; p = &(*p)->next)
        if (*p == k) {
            *p = k->next;
            break;
        }
    if (!k->privileged)
        c->n_unprivileged--;
    sd_event_source_disable_unref(k->io);
    sd_event_source_disable_unref(k->timer);
    close(k->fd);
    free(k->out);
    free(k);
}

/* Second line of defence (secret.h): every string of an answer is scrubbed of the live
 * secrets as it leaves, whoever stored it (the agent, rotation, re-validation, a reload's
 * reason). A text the marker would make invalid UTF-8 becomes the marker alone. */
static void scrub_json(json_t *j) {
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach(j, key, v)
            scrub_json(v);
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            scrub_json(v);
    } else if (json_is_string(j)) {
        size_t n = json_string_length(j), cap = n + n / 2 + 16;
        char *buf = malloc(cap);
        if (!buf) {
            json_string_set(j, SECRET_SCRUB_MARKER);   /* unchecked: better nothing than a leak */
            return;
        }
        memcpy(buf, json_string_value(j), n + 1);
        if (secret_scrub(buf, cap) && json_string_set(j, buf) < 0)
            json_string_set(j, SECRET_SCRUB_MARKER);
        secret_wipe_free(buf, cap);
    }
}

/* A reply as one malloc'd JSON line, or NULL. json_dumpb into our own buffer: json_dumps
 * would hand back memory from jansson's (wiping) allocator, which plain free() must not
 * release. Takes the reference. */
static char *reply_line(json_t *reply) {
    scrub_json(reply);
    size_t n = reply ? json_dumpb(reply, NULL, 0, JSON_COMPACT) : 0;
    char *line = n ? malloc(n + 2) : NULL;
    if (line && json_dumpb(reply, line, n, JSON_COMPACT) == n) {
        line[n] = '\n';
        line[n + 1] = '\0';
    } else {
        free(line);
        line = NULL;
    }
    json_decref(reply);
    return line;
}

static json_t *error_reply(const char *msg) {
    return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static void conn_answer(struct conn *k, json_t *reply);

/* Errnos with which a reload failed for want of resources, not because of the config
 * (agent.h); every other rejection is a configuration error, and says so to the CLI
 * (`redis-creds reload` exits 2 on it, 1 on the rest). */
static bool reload_config_error(int result) {
    return result != -ENOMEM && result != -EMFILE && result != -ENFILE && result != -EIO &&
           result != -EAGAIN;
}

/* The agent's reload observer: answers every connection waiting on a reload. A reload
 * requested while another waited for its jobs is applied with it, so one outcome answers
 * them all. */
static void on_reload_done(void *ud, int result, const char *why) {
    struct control *c = ud;
    struct conn *next;
    for (struct conn *k = c->conns; k; k = next) {
        next = k->next;   /* conn_answer may free k */
        if (!k->awaits_reload)
            continue;
        k->awaits_reload = false;
        sd_event_source_set_enabled(k->io, SD_EVENT_ON);
        conn_answer(k, result < 0 ? json_pack("{s:b, s:s, s:b}", "ok", 0, "error", why, "config_error",
                                              reload_config_error(result))
                                  : json_pack("{s:b}", "ok", 1));
    }
}

/* `reload`: the answer waits for the reload's end (on_reload_done), up to
 * CONTROL_RELOAD_USEC. The connection reads nothing more meanwhile. */
static void start_reload(struct conn *k, const struct control_request *req) {
    k->awaits_reload = true;
    sd_event_source_set_enabled(k->io, SD_EVENT_OFF);
    sd_event_source_set_time_relative(k->timer, CONTROL_RELOAD_USEC);
    agent_request_reload(k->ctl->agent, req->allow_removals);   /* may answer at once */
}

/* Runs one parsed request for a peer; returns its JSON reply, or NULL when the answer
 * comes later (reload). */
static json_t *handle(struct control *c, struct conn *k, const struct control_request *req) {
    char err[256] = "";
    if (!control_allowed(req->verb, k->uid, c->agent_uid)) {
        snprintf(err, sizeof err, "permission denied: %s needs root or the agent's user (uid %u)",
                 control_verb_name(req->verb), (unsigned)c->agent_uid);
        return error_reply(err);
    }
    if (req->verb == CONTROL_STATUS)
        return agent_status_json(c->agent);
    if (req->verb == CONTROL_RELOAD) {
        start_reload(k, req);
        return NULL;
    }
    int r = req->verb == CONTROL_REFRESH ? agent_refresh(c->agent, req->name, err, sizeof err)
                                         : agent_rotate(c->agent, req->name, req->revoke, err, sizeof err);
    return r < 0 ? error_reply(err) : json_pack("{s:b}", "ok", 1);
}

/* Queues the answer and switches the connection to writing (or drops it when no answer
 * could be made). */
static void conn_answer(struct conn *k, json_t *reply) {
    k->out = reply_line(reply);
    if (!k->out) {
        conn_free(k);
        return;
    }
    k->out_len = strlen(k->out);
    k->out_off = 0;
    sd_event_source_set_io_events(k->io, EPOLLOUT);
}

/* After the answer: end our side and discard what the peer still sends until it closes
 * (or the idle timer fires). Closing with unread input would make the kernel reset the
 * connection, and the peer could lose the answer (a request that was too long). */
static void conn_write(struct conn *k) {
    if (k->out_off == k->out_len) {
        char sink[512];
        ssize_t n = read(k->fd, sink, sizeof sink);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            conn_free(k);
        return;
    }
    /* MSG_NOSIGNAL: a peer gone before its answer is an EPIPE here, not a SIGPIPE that
     * would end the agent unless someone remembered to ignore it */
    ssize_t n = send(k->fd, k->out + k->out_off, k->out_len - k->out_off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_free(k);
        return;
    }
    k->out_off += (size_t)n;
    if (k->out_off == k->out_len) {
        shutdown(k->fd, SHUT_WR);
        sd_event_source_set_io_events(k->io, EPOLLIN | EPOLLRDHUP);
    }
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
    struct conn *k = userdata;
    if (k->out) {
        conn_write(k);
        return 0;
    }
    ssize_t n = read(fd, k->in + k->in_len, sizeof k->in - k->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n < 0 || (n == 0 && k->in_len == 0)) {
        conn_free(k);
        return 0;
    }
    k->in_len += (size_t)n;
    struct control_request req;
    const char *why = NULL;
    int r = control_request_parse(k->in, k->in_len, n == 0, &req, &why);
    if (r == 0)
        return 0;
    if (r < 0)
        conn_answer(k, error_reply(why));
    else {
        json_t *reply = handle(k->ctl, k, &req);
        if (reply)
            conn_answer(k, reply);
    }
    return 0;
}

static int on_conn_idle(sd_event_source *s, uint64_t usec, void *userdata) {
    conn_free(userdata);
    return 0;
}

#define REFUSED_LOG_USEC (10ULL * 1000000ULL)
#define RESUME_USEC (100ULL * 1000ULL)

/* Counts a connection turned away; a warning at most every 10 s, with the count since
 * the last one: a flood must not flood the journal. */
static void note_refusal(struct control *c, const char *why) {
    uint64_t now = 0;
    c->refused++;
    sd_event_now(c->event, CLOCK_MONOTONIC, &now);
    if (!c->refused_logged_usec || now - c->refused_logged_usec >= REFUSED_LOG_USEC) {
        log_warning("control_socket %s: refused %u connection(s): %s", c->path, c->refused, why);
        c->refused = 0;
        c->refused_logged_usec = now;
    }
}

/* Answers a connection we will not serve with one error line, and closes it. The socket is
 * new and its buffer empty, so the short write does not block. A client usually sends its
 * request before we accept: closing with that request unread would make the kernel reset
 * the connection (ECONNRESET at the peer's next read, after our line), so what has
 * arrived is read first, a request's worth at most (the socket does not block). */
static void refuse(struct control *c, int fd, const char *why) {
    char line[256], sink[CONTROL_MAX_REQUEST];
    int n = snprintf(line, sizeof line, "{\"ok\":false,\"error\":\"%s\"}\n", why);
    if (n > 0 && (size_t)n < sizeof line && send(fd, line, (size_t)n, MSG_NOSIGNAL) < 0)
        log_debug("control_socket: cannot send the refusal: %s", strerror(errno));
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 4 && read(fd, sink, sizeof sink) > 0; i++)
        ;
    close(fd);
    note_refusal(c, why);
}

/* Caps, so that the control socket never takes the file descriptors that store reads and
 * Redis connections need: any one peer uid holds CONTROL_MAX_CONNS_PER_UID connections at
 * most, and unprivileged peers together CONTROL_MAX_CONNS, or a quarter of RLIMIT_NOFILE
 * when that is less. Root and the agent's user do not count against the shared cap, so an
 * operator's `status` still gets through a flood from the socket's group. */
static const char *over_cap(struct control *c, uid_t uid, bool privileged) {
    unsigned same = 0;
    for (const struct conn *k = c->conns; k; k = k->next)
        same += k->uid == uid;
    if (same >= CONTROL_MAX_CONNS_PER_UID)
        return "too many connections from this user; try again later";
    struct rlimit rl;
    rlim_t cap = CONTROL_MAX_CONNS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 4 < cap)
        cap = rl.rlim_cur / 4;
    if (!privileged && c->n_unprivileged >= cap)
        return "too many control connections; try again later";
    return NULL;
}

static int on_resume(sd_event_source *s, uint64_t usec, void *userdata) {
    struct control *c = userdata;
    c->resume = sd_event_source_disable_unref(c->resume);
    if (c->reserve_fd < 0)
        c->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    sd_event_source_set_enabled(c->listen, SD_EVENT_ON);
    return 0;
}

/* accept() failed for want of a file descriptor. The pending peer stays queued, and the
 * listening socket stays readable: accepting again at once would spin. Give up the
 * reserve fd, accept the peer into it, answer it, and take the reserve back. When even
 * that fails, stop accepting for RESUME_USEC. */
static void at_fd_limit(struct control *c) {
    if (c->reserve_fd >= 0) {
        close(c->reserve_fd);
        c->reserve_fd = -1;
        int cfd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0)
            refuse(c, cfd, "the agent is out of file descriptors; try again later");
        c->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (c->reserve_fd >= 0)
            return;
    }
    if (c->resume)
        return;
    sd_event_source_set_enabled(c->listen, SD_EVENT_OFF);
    if (sd_event_add_time_relative(c->event, &c->resume, CLOCK_MONOTONIC, RESUME_USEC, 0, on_resume, c) < 0)
        sd_event_source_set_enabled(c->listen, SD_EVENT_ON);   /* better busy than deaf */
    note_refusal(c, "out of file descriptors, even the reserve one; pausing accept for 100 ms");
}

static void conn_add(struct control *c, int cfd, uid_t uid, bool privileged) {
    struct conn *k = calloc(1, sizeof *k);
    if (!k) {
        close(cfd);
        return;
    }
    k->ctl = c;
    k->fd = cfd;
    k->uid = uid;
    k->privileged = privileged;
    if (sd_event_add_io(c->event, &k->io, cfd, EPOLLIN, on_conn_io, k) < 0 ||
        sd_event_add_time_relative(c->event, &k->timer, CLOCK_MONOTONIC, CONTROL_IDLE_USEC, 0,
                                   on_conn_idle, k) < 0) {
        sd_event_source_disable_unref(k->io);
        close(cfd);
        free(k);
        return;
    }
    k->next = c->conns;
    c->conns = k;
    if (!privileged)
        c->n_unprivileged++;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
    struct control *c = userdata;
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            at_fd_limit(c);
        return 0;   /* EAGAIN, or a peer that left before we got to it */
    }
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        refuse(c, cfd, "cannot identify the peer (SO_PEERCRED)");
        return 0;
    }
    bool privileged = cred.uid == 0 || cred.uid == c->agent_uid;
    const char *why = over_cap(c, cred.uid, privileged);
    if (why)
        refuse(c, cfd, why);
    else
        conn_add(c, cfd, cred.uid, privileged);
    return 0;
}

/* The socket's directory: created 0755 when missing. It must belong to root or to us and
 * not be writable by group or others (a root-owned sticky directory, like /tmp, is also
 * fine: others cannot rename or remove our entry there). The socket is handled by name
 * from here on, which is safe only when nobody else can change the directory's entries. */
static int open_socket_dir(const char *dir, int *ret, char *err, size_t errlen) {
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        int r = -errno;
        snprintf(err, errlen, "control_socket: cannot create %s: %s", dir, strerror(errno));
        return r;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (dfd < 0 || fstat(dfd, &st) < 0) {
        int r = -errno;
        snprintf(err, errlen, "control_socket: %s: %s", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return r;
    }
    bool owner_ok = st.st_uid == 0 || st.st_uid == geteuid();
    bool sticky_root = st.st_uid == 0 && (st.st_mode & S_ISVTX);
    if (!owner_ok || ((st.st_mode & (S_IWGRP | S_IWOTH)) && !sticky_root)) {
        snprintf(err, errlen,
                 "control_socket: directory %s is %s; use a directory owned by root or uid %u "
                 "and not writable by group or others (chmod go-w)",
                 dir, owner_ok ? "writable by group or others" : "owned by another user",
                 (unsigned)geteuid());
        close(dfd);
        return -EPERM;
    }
    *ret = dfd;
    return 0;
}

static const char *file_kind(mode_t m) {
    return S_ISSOCK(m) ? "a socket" : S_ISREG(m) ? "a regular file" : S_ISLNK(m) ? "a symlink"
         : S_ISDIR(m) ? "a directory" : "not a socket";
}

/* Only the agent holding the runtime lock gets here, so a socket of ours at the path is
 * stale and goes. Anything else (a regular file, a symlink, another user's socket) stays
 * and is an error: it is not ours to delete. */
static int remove_stale(int dfd, const char *name, const char *path, char *err, size_t errlen) {
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
        snprintf(err, errlen,
                 "control_socket %s: something else is there (%s, owner uid %u), not a stale "
                 "socket of this agent (uid %u); remove it or set agent.control_socket elsewhere",
                 path, file_kind(st.st_mode), (unsigned)st.st_uid, (unsigned)geteuid());
        return -EEXIST;
    }
    if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT) {
        int r = -errno;
        snprintf(err, errlen, "control_socket %s: cannot remove the stale socket: %s", path, strerror(errno));
        return r;
    }
    return 0;
}

/* Binds and gives the path its owner group and mode, then listens. Linux checks the
 * path's inode at connect(), and fchmod()/fchown() on an AF_UNIX socket fd change only the
 * socket's own inode, not that path. So the socket is bound under umask 0177 (0600: only
 * we could connect, and nobody can before listen() anyway), then chown/chmod-ed by name
 * (in a directory only we and root can change) right before listen(). */
static int bind_and_listen(struct control *c, const struct sockaddr_un *sa, gid_t gid, char *err,
                           size_t errlen) {
    mode_t old = umask(0177);
    int r = bind(c->fd, (const struct sockaddr *)sa, sizeof *sa);
    umask(old);
    if (r < 0) {
        r = -errno;
        snprintf(err, errlen, "control_socket %s: %s", c->path, strerror(errno));
        return r;
    }
    struct stat st;
    if (fstatat(c->dirfd, c->name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "control_socket %s: gone or replaced right after bind", c->path);
        return -EIO;
    }
    c->bound = true;
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    if (gid != (gid_t)-1 && fchownat(c->dirfd, c->name, (uid_t)-1, gid, AT_SYMLINK_NOFOLLOW) < 0)
        log_warning("control_socket %s: cannot give it group %u: %s (the agent's user must be in "
                    "that group)", c->path, (unsigned)gid, strerror(errno));
    if (fchmodat(c->dirfd, c->name, 0660, 0) < 0 || listen(c->fd, 64) < 0) {
        r = -errno;
        snprintf(err, errlen, "control_socket %s: %s", c->path, strerror(errno));
        return r;
    }
    return 0;
}

/* Allocates the control with its path split into directory fd and name. */
static int control_new(const char *path, struct control **ret, char *err, size_t errlen) {
    struct control *c = calloc(1, sizeof *c);
    char *copy = strdup(path);
    if (!c || !copy || !(c->path = strdup(path))) {
        free(c);
        free(copy);
        return -ENOMEM;
    }
    c->fd = c->dirfd = -1;
    c->agent_uid = geteuid();
    /* Opened before anything else can take the last fd; see at_fd_limit. */
    c->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char *slash = strrchr(copy, '/');   /* path is absolute: there is one */
    c->name = strdup(slash + 1);
    *slash = '\0';
    int r = c->name && c->name[0] ? open_socket_dir(copy[0] ? copy : "/", &c->dirfd, err, errlen) : -EINVAL;
    if (r == -EINVAL)
        snprintf(err, errlen, "control_socket \"%s\": must name a file", path);
    free(copy);
    if (r < 0) {
        control_close(c);
        return r;
    }
    *ret = c;
    return 0;
}

int control_open(sd_event *e, const char *path, gid_t gid, struct agent *a, struct control **ret,
                 char *err, size_t errlen) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (!path || path[0] != '/' || strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "control_socket \"%s\": must be an absolute path shorter than %zu bytes",
                 path ? path : "", sizeof sa.sun_path);
        return -EINVAL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);

    struct control *c = NULL;
    int r = control_new(path, &c, err, errlen);
    if (r < 0)
        return r;
    c->event = e;
    c->agent = a;
    agent_set_reload_observer(a, on_reload_done, c);
    if ((r = remove_stale(c->dirfd, c->name, path, err, errlen)) < 0)
        goto fail;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        r = -errno;
        snprintf(err, errlen, "control_socket: %s", strerror(errno));
        goto fail;
    }
    if ((r = bind_and_listen(c, &sa, gid, err, errlen)) < 0)
        goto fail;
    r = sd_event_add_io(e, &c->listen, c->fd, EPOLLIN, on_accept, c);
    if (r < 0) {
        snprintf(err, errlen, "control_socket %s: %s", path, strerror(-r));
        goto fail;
    }
    *ret = c;
    return 0;
fail:
    control_close(c);
    return r;
}

struct control *control_close(struct control *c) {
    if (!c)
        return NULL;
    while (c->conns)
        conn_free(c->conns);
    if (c->agent)
        agent_set_reload_observer(c->agent, NULL, NULL);
    sd_event_source_disable_unref(c->listen);
    sd_event_source_disable_unref(c->resume);
    if (c->fd >= 0)
        close(c->fd);
    if (c->reserve_fd >= 0)
        close(c->reserve_fd);
    /* Remove the path only while it is still the socket we bound. */
    struct stat st;
    if (c->bound && fstatat(c->dirfd, c->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == c->dev && st.st_ino == c->ino)
        unlinkat(c->dirfd, c->name, 0);
    if (c->dirfd >= 0)
        close(c->dirfd);
    free(c->name);
    free(c->path);
    free(c);
    return NULL;
}
