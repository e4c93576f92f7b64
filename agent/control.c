/* control: see control.h. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "control.h"
#include "log.h"

struct conn {
    struct control *ctl;
    int fd;
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
    int fd;
    sd_event_source *listen;
    struct conn *conns;
};

static void conn_free(struct conn *k) {
    struct control *c = k->ctl;
    for (struct conn **p = &c->conns; *p; p = &(*p)->next)
        if (*p == k) {
            *p = k->next;
            break;
        }
    sd_event_source_disable_unref(k->io);
    sd_event_source_disable_unref(k->timer);
    close(k->fd);
    free(k->out);
    free(k);
}

/* A reply as one malloc'd JSON line, or NULL. json_dumpb into our own buffer: json_dumps
 * would hand back memory from jansson's (wiping) allocator, which plain free() must not
 * release. Takes the reference. */
static char *reply_line(json_t *reply) {
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

/* Runs one parsed request; returns its JSON reply. */
static json_t *handle(struct control *c, const struct control_request *req) {
    char err[256] = "";
    if (req->verb == CONTROL_STATUS)
        return agent_status_json(c->agent);
    int r = req->verb == CONTROL_REFRESH ? agent_refresh(c->agent, req->name, err, sizeof err)
                                         : agent_rotate(c->agent, req->name, err, sizeof err);
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
    ssize_t n = write(k->fd, k->out + k->out_off, k->out_len - k->out_off);
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
    if (k->out)
        return conn_write(k), 0;
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
    conn_answer(k, r < 0 ? error_reply(why) : handle(k->ctl, &req));
    return 0;
}

static int on_conn_idle(sd_event_source *s, uint64_t usec, void *userdata) {
    conn_free(userdata);
    return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
    struct control *c = userdata;
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return 0;
    struct conn *k = calloc(1, sizeof *k);
    if (!k) {
        close(cfd);
        return 0;
    }
    k->ctl = c;
    k->fd = cfd;
    if (sd_event_add_io(c->event, &k->io, cfd, EPOLLIN, on_conn_io, k) < 0 ||
        sd_event_add_time_relative(c->event, &k->timer, CLOCK_MONOTONIC, CONTROL_IDLE_USEC, 0,
                                   on_conn_idle, k) < 0) {
        sd_event_source_disable_unref(k->io);
        close(cfd);
        free(k);
        return 0;
    }
    k->next = c->conns;
    c->conns = k;
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

    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    const char *dir = dirname(copy);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        int r = -errno;
        snprintf(err, errlen, "control_socket %s: cannot create %s: %s", path, dir, strerror(errno));
        free(copy);
        return r;
    }
    free(copy);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int r = -errno;
        snprintf(err, errlen, "control_socket: %s", strerror(errno));
        return r;
    }
    /* Only the agent holding the runtime lock gets here: a socket file left behind is stale. */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    mode_t old = umask(0117);   /* created 0660 */
    int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r < 0 || listen(fd, 16) < 0) {
        r = -errno;
        snprintf(err, errlen, "control_socket %s: %s", path, strerror(errno));
        close(fd);
        return r;
    }
    if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0)
        log_warning("control_socket %s: cannot set its group: %s", path, strerror(errno));

    struct control *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        close(fd);
        unlink(path);
        return -ENOMEM;
    }
    c->event = e;
    c->agent = a;
    c->fd = fd;
    r = sd_event_add_io(e, &c->listen, fd, EPOLLIN, on_accept, c);
    if (r < 0) {
        snprintf(err, errlen, "control_socket %s: %s", path, strerror(-r));
        control_close(c);
        return r;
    }
    *ret = c;
    return 0;
}

struct control *control_close(struct control *c) {
    if (!c)
        return NULL;
    while (c->conns)
        conn_free(c->conns);
    sd_event_source_disable_unref(c->listen);
    close(c->fd);
    unlink(c->path);
    free(c->path);
    free(c);
    return NULL;
}
