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
    char in[CONTROL_MAX_REQUEST + 1];
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

/* Runs one request line; returns a malloc'd JSON line. */
static char *handle(struct control *c, char *line) {
    json_t *reply = NULL;
    char err[256] = "";
    char *verb = line, *arg = strchr(line, ' ');
    if (arg) {
        *arg++ = '\0';
        while (*arg == ' ')
            arg++;
    }
    if (strcmp(verb, "status") == 0 && !arg)
        reply = agent_status_json(c->agent);
    else if ((strcmp(verb, "refresh") == 0 || strcmp(verb, "rotate") == 0) && arg && *arg) {
        int r = strcmp(verb, "refresh") == 0 ? agent_refresh(c->agent, arg, err, sizeof err)
                                             : agent_rotate(c->agent, arg, err, sizeof err);
        reply = r < 0 ? json_pack("{s:b, s:s}", "ok", 0, "error", err) : json_pack("{s:b}", "ok", 1);
    } else
        reply = json_pack("{s:b, s:s}", "ok", 0, "error",
                          "unknown request (expected: status, refresh NAME, rotate NAME)");
    /* json_dumpb into our own buffer: json_dumps would hand back memory from jansson's
     * (wiping) allocator, which plain free() must not release. */
    size_t n = reply ? json_dumpb(reply, NULL, 0, JSON_COMPACT) : 0;
    char *line_out = n ? malloc(n + 2) : NULL;
    if (line_out && json_dumpb(reply, line_out, n, JSON_COMPACT) == n) {
        line_out[n] = '\n';
        line_out[n + 1] = '\0';
    } else {
        free(line_out);
        line_out = NULL;
    }
    json_decref(reply);
    return line_out;
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
    struct conn *k = userdata;
    if (k->out) {
        ssize_t n = write(fd, k->out + k->out_off, k->out_len - k->out_off);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (n <= 0 || (k->out_off += (size_t)n) == k->out_len)
            conn_free(k);
        return 0;
    }
    ssize_t n = read(fd, k->in + k->in_len, CONTROL_MAX_REQUEST - k->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        conn_free(k);
        return 0;
    }
    k->in_len += (size_t)n;
    k->in[k->in_len] = '\0';
    char *nl = strchr(k->in, '\n');
    if (!nl) {
        if (k->in_len >= CONTROL_MAX_REQUEST)
            conn_free(k);   /* a line that long is not ours */
        return 0;
    }
    *nl = '\0';
    if (nl > k->in && nl[-1] == '\r')
        nl[-1] = '\0';
    k->out = handle(k->ctl, k->in);
    if (!k->out) {
        conn_free(k);
        return 0;
    }
    k->out_len = strlen(k->out);
    k->out_off = 0;
    sd_event_source_set_io_events(k->io, EPOLLOUT);
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
