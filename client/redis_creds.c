/* libredis-creds: follows <runtime_dir>/<name>.json and hands out immutable snapshots.
 *
 * How the steady-state read stays free of system calls and locks:
 *
 * The current snapshot is an atomic pointer. A reader must take a reference on it, and
 * the danger is the instant between loading the pointer and incrementing the count: a
 * writer could swap the pointer and drop the last reference in between. Readers announce
 * themselves in one of two counters, chosen by an epoch; a writer swaps the pointer,
 * flips the epoch, and waits until the counter of the old epoch drains before it drops its
 * reference to the old snapshot (a tiny RCU grace period). New readers go to the other
 * counter, so the writer cannot be starved. A reader re-checks the epoch after announcing
 * itself, so it always sits in the counter that the next flip will wait for. Everything
 * uses sequentially consistent atomics: the argument is short only under a total order.
 *
 * Writers (the background thread, rc_process, rc_reload) are serialised by wlock; they do
 * the I/O, the parsing and the allocation, so readers never do.
 */
#include "redis_creds.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define RC_MAX_FILE (64 * 1024) /* docs/design.md §5.1: at most 64 KiB */
#define RC_MAX_NAME 64
#define RC_DEFAULT_DIR "/run/redis-creds"

#define DIR_MASK (IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | \
                  IN_MOVE_SELF | IN_ONLYDIR)
#define PARENT_MASK (IN_CREATE | IN_MOVED_TO | IN_ONLYDIR)

struct rc_snapshot {
    struct rc_creds pub; /* first: a struct rc_creds * is a struct rc_snapshot * */
    struct rc_credential prev;
    atomic_long refs;
    size_t size; /* of the whole allocation, to wipe it */
};

struct rc_handle {
    char *name;
    char *dir;
    char *parent;   /* dirname(dir) */
    char *dirbase;  /* basename(dir) */
    char *path;     /* dir/name.json */
    char *filename; /* name.json */
    unsigned flags;

    int ifd;       /* inotify, non-blocking; or, when polling, a timerfd */
    bool polling;  /* no inotify instance to be had: the file is read at each tick */
    int wd_dir;    /* watch on dir, -1 when it is gone */
    int wd_parent; /* watch on parent (to see dir recreated), -1 when none */
    int stopfd;    /* eventfd that stops the thread */
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t wlock;  /* writers: watches, load, install; guards next_gen */
    pthread_mutex_t cblock; /* serialises callbacks; guards cb, cb_arg, reported_seq */
    rc_change_fn cb;
    void *cb_arg;
    uint64_t next_gen;
    uint64_t change_seq;   /* under wlock: numbers the changes to report, in order */
    uint64_t reported_seq; /* under cblock: the last one reported */

    _Atomic(struct rc_snapshot *) cur;
    atomic_uint epoch;
    atomic_long readers[2];
    atomic_int last_error;
};

/* ------------------------------------------------------------------ snapshots */

static void snap_free(struct rc_snapshot *s) {
    size_t n = s->size;
    explicit_bzero(s, n);
    free(s);
}

static void snap_unref(struct rc_snapshot *s) {
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        snap_free(s);
}

const struct rc_creds *rc_creds_ref(const struct rc_creds *c) {
    if (c)
        atomic_fetch_add(&((struct rc_snapshot *)(uintptr_t)c)->refs, 1);
    return c;
}

const struct rc_creds *rc_creds_unref(const struct rc_creds *c) {
    snap_unref((struct rc_snapshot *)(uintptr_t)c);
    return NULL;
}

static bool str_eq(const char *a, const char *b) {
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool cred_eq(const struct rc_credential *a, const struct rc_credential *b) {
    return str_eq(a->username, b->username) && str_eq(a->version, b->version) &&
           a->password_len == b->password_len &&
           memcmp(a->password, b->password, a->password_len) == 0 &&
           a->expires_at == b->expires_at;
}

static bool snap_same(const struct rc_snapshot *a, const struct rc_snapshot *b) {
    if (!cred_eq(&a->pub.current, &b->pub.current) ||
        a->pub.previous_valid_until != b->pub.previous_valid_until)
        return false;
    if (!a->pub.previous || !b->pub.previous)
        return a->pub.previous == b->pub.previous;
    return cred_eq(a->pub.previous, b->pub.previous);
}

/* ------------------------------------------------------------------ parsing */

/* Days from 1970-01-01 to a proleptic Gregorian date; a day past the month's end rolls
 * over, as timegm does. Years 0-9999 (four digits), so nothing overflows. Not timegm
 * itself: its error value, -1, is also 1969-12-31T23:59:59Z. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* RFC 3339 date-time ("2026-11-22T10:00:00Z", optional fraction, Z or ±hh:mm) to Unix
 * seconds.
 * This library keeps its own copy of what common/rctime.c does for the agent (this parser
 * and now_ms() below), on purpose: libredis-creds is installed on application hosts
 * without the agent and links nothing of ours (client/CMakeLists.txt). Linking rc_common
 * would drag libconfig, OpenSSL and hiredis into every application, and its non-static
 * functions would join this library's exported ABI. The shared vectors in tests/vectors
 * hold both parsers to the same answers. */
static int parse_rfc3339(const char *s, int64_t *ret) {
    int v[6];
    static const int width[6] = {4, 2, 2, 2, 2, 2};
    static const char sep[6] = {'-', '-', 'T', ':', ':', 0};
    const char *p = s;
    for (int i = 0; i < 6; i++) {
        v[i] = 0;
        for (int k = 0; k < width[i]; k++, p++) {
            if (*p < '0' || *p > '9')
                return -EBADMSG;
            v[i] = v[i] * 10 + (*p - '0');
        }
        if (sep[i]) {
            if (!(*p == sep[i] || (sep[i] == 'T' && (*p == 't' || *p == ' '))))
                return -EBADMSG;
            p++;
        }
    }
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
        return -EBADMSG;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -EBADMSG;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        p++;
        if (!(p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' && p[2] == ':' &&
              p[3] >= '0' && p[3] <= '9' && p[4] >= '0' && p[4] <= '9'))
            return -EBADMSG;
        int oh = (p[0] - '0') * 10 + (p[1] - '0'), om = (p[3] - '0') * 10 + (p[4] - '0');
        if (oh > 23 || om > 59)
            return -EBADMSG;
        offset = sign * (oh * 3600 + om * 60);
        p += 5;
    } else {
        return -EBADMSG;
    }
    if (*p)
        return -EBADMSG;
    *ret = days_from_civil(v[0], v[1], v[2]) * 86400 + v[3] * 3600 + v[4] * 60 + v[5] -
           offset;
    return 0;
}

/* jansson has only a process-wide allocator hook, which a library must not take from its
 * application; so the secret strings in the tree are wiped in place before it is freed.
 * (The lexer's own scratch buffer is freed by jansson unwiped: documented in clients.md.) */
static void json_wipe(json_t *j) {
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_string(j)) {
        explicit_bzero((char *)(uintptr_t)json_string_value(j), json_string_length(j));
    } else if (json_is_object(j)) {
        json_object_foreach(j, k, v) json_wipe(v);
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) json_wipe(v);
    }
}

struct cred_fields {
    const char *username, *password, *version;
    size_t username_len, password_len, version_len;
    int64_t expires_at;
};

/* A string member without NUL bytes (required or optional/null). */
static int get_str(json_t *obj, const char *key, bool required, bool allow_nul,
                   const char **ret, size_t *ret_len) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required)
            return -EBADMSG;
        *ret = NULL;
        *ret_len = 0;
        return 0;
    }
    if (!json_is_string(v))
        return -EBADMSG;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (!allow_nul && memchr(s, 0, n))
        return -EBADMSG;
    *ret = s;
    *ret_len = n;
    return 0;
}

/* An optional RFC 3339 member (absent or null: 0). */
static int get_time(json_t *obj, const char *key, int64_t *ret) {
    const char *s;
    size_t n;
    *ret = 0;
    if (get_str(obj, key, false, false, &s, &n) < 0 || (s && parse_rfc3339(s, ret) < 0))
        return -EBADMSG;
    return 0;
}

static int get_cred(json_t *obj, struct cred_fields *f) {
    int r;
    if ((r = get_str(obj, "username", false, false, &f->username, &f->username_len)) < 0 ||
        (r = get_str(obj, "password", true, true, &f->password, &f->password_len)) < 0 ||
        (r = get_str(obj, "version", true, false, &f->version, &f->version_len)) < 0 ||
        (r = get_time(obj, "expires_at", &f->expires_at)) < 0)
        return r;
    if (f->password_len == 0)
        return -EBADMSG;
    if (f->username_len == 0)
        f->username = NULL; /* "" is the default user, as null */
    return 0;
}

static char *put(char **p, const char *s, size_t n) {
    char *d = *p;
    memcpy(d, s, n);
    d[n] = 0;
    *p += n + 1;
    return d;
}

static void put_cred(char **p, const struct cred_fields *f, struct rc_credential *c) {
    c->username = f->username ? put(p, f->username, f->username_len) : NULL;
    c->password = put(p, f->password, f->password_len);
    c->password_len = f->password_len;
    c->version = put(p, f->version, f->version_len);
    c->expires_at = f->expires_at;
}

static size_t cred_size(const struct cred_fields *f) {
    return (f->username ? f->username_len + 1 : 0) + f->password_len + 1 + f->version_len + 1;
}

/* Parses the file's bytes into a snapshot (refs = 1, generation unset). No I/O. */
static int parse_doc(const char *buf, size_t len, const char *name, struct rc_snapshot **ret) {
    /* No error record: jansson's error text quotes the input, which holds a password,
     * and the caller only needs to know the file is malformed. */
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (!root)
        return -EBADMSG;
    int r = -EBADMSG;
    struct cred_fields cur = {0}, prev = {0};
    bool has_prev = false;
    if (!json_is_object(root))
        goto out;
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_integer(fmt))
        goto out;
    if (json_integer_value(fmt) != 1) {
        r = -EPROTONOSUPPORT;
        goto out;
    }
    json_t *jname = json_object_get(root, "name");
    if (jname && !(json_is_string(jname) && json_string_length(jname) == strlen(name) &&
                   strcmp(json_string_value(jname), name) == 0))
        goto out;
    if ((r = get_cred(root, &cur)) < 0)
        goto out;
    json_t *jprev = json_object_get(root, "previous");
    r = -EBADMSG;
    if (jprev && !json_is_null(jprev)) {
        if (!json_is_object(jprev) || get_cred(jprev, &prev) < 0)
            goto out;
        has_prev = true;
    }
    int64_t valid_until;
    if (get_time(root, "previous_valid_until", &valid_until) < 0)
        goto out;
    size_t nlen = strlen(name);
    size_t size = sizeof(struct rc_snapshot) + nlen + 1 + cred_size(&cur) +
                  (has_prev ? cred_size(&prev) : 0);
    struct rc_snapshot *s = calloc(1, size);
    if (!s) {
        r = -ENOMEM;
        goto out;
    }
    s->size = size;
    atomic_init(&s->refs, 1);
    char *p = (char *)(s + 1);
    s->pub.name = put(&p, name, nlen);
    put_cred(&p, &cur, &s->pub.current);
    if (has_prev) {
        put_cred(&p, &prev, &s->prev);
        s->pub.previous = &s->prev;
    }
    s->pub.previous_valid_until = valid_until;
    *ret = s;
    r = 0;
out:
    json_wipe(root);
    json_decref(root);
    return r;
}

/* Reads and parses the file (at most 64 KiB). */
static int load_file(const char *path, const char *name, struct rc_snapshot **ret) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return -EBADMSG;
    }
    if (st.st_size > RC_MAX_FILE) {
        close(fd);
        return -EFBIG;
    }
    /* Sized from fstat (a few hundred bytes, not 64 KiB: a big buffer would be fresh
     * pages, i.e. page faults, at every reload); grown, wiped, if the file grew since. */
    size_t cap = (size_t)st.st_size + 1 < 4096 ? 4096 : (size_t)st.st_size + 1;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t len = 0;
    int r = 0;
    for (;;) {
        if (len == cap) {
            if (cap > RC_MAX_FILE) {
                r = -EFBIG;
                break;
            }
            char *bigger = malloc(RC_MAX_FILE + 1);
            if (!bigger) {
                r = -ENOMEM;
                break;
            }
            memcpy(bigger, buf, len);
            explicit_bzero(buf, len);
            free(buf);
            buf = bigger;
            cap = RC_MAX_FILE + 1;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (r == 0)
        r = parse_doc(buf, len, name, ret);
    explicit_bzero(buf, len);
    free(buf);
    return r;
}

/* ------------------------------------------------------------------ readers */

static struct rc_snapshot *snap_acquire(rc_handle *h) {
    unsigned e;
    for (;;) {
        e = atomic_load(&h->epoch) & 1u;
        atomic_fetch_add(&h->readers[e], 1);
        if ((atomic_load(&h->epoch) & 1u) == e)
            break;
        atomic_fetch_sub(&h->readers[e], 1); /* a writer flipped: announce again */
    }
    struct rc_snapshot *s = atomic_load(&h->cur);
    if (s)
        atomic_fetch_add(&s->refs, 1);
    atomic_fetch_sub(&h->readers[e], 1);
    return s;
}

int rc_get(rc_handle *h, const struct rc_creds **ret_creds) {
    if (!h || !ret_creds)
        return -EINVAL;
    struct rc_snapshot *s = snap_acquire(h);
    if (!s) {
        int e = atomic_load(&h->last_error);
        return e < 0 ? e : -ENOENT;
    }
    *ret_creds = &s->pub;
    return 0;
}

const struct rc_credential *rc_usable_previous(const struct rc_creds *c, int64_t now) {
    if (!c || !c->previous)
        return NULL;
    if (c->previous->expires_at != 0 && now >= c->previous->expires_at)
        return NULL;
    if (c->previous_valid_until != 0 && now >= c->previous_valid_until)
        return NULL;
    return c->previous;
}

uint64_t rc_generation(rc_handle *h) {
    if (!h)
        return 0;
    struct rc_snapshot *s = snap_acquire(h);
    uint64_t g = s ? s->pub.generation : 0;
    snap_unref(s); /* never the last reference while the handle holds one */
    return g;
}

int rc_last_error(rc_handle *h) {
    return h ? atomic_load(&h->last_error) : -EINVAL;
}

const char *rc_path(rc_handle *h) {
    return h ? h->path : NULL;
}

/* ------------------------------------------------------------------ writers (wlock held) */

/* Publishes s as the current snapshot; the old one is released after a grace period. */
static void install(rc_handle *h, struct rc_snapshot *s) {
    struct rc_snapshot *old = atomic_exchange(&h->cur, s);
    unsigned e = atomic_fetch_add(&h->epoch, 1) & 1u;
    for (unsigned spins = 0; atomic_load(&h->readers[e]) != 0; spins++) {
        if (spins > 64)
            sched_yield();
    }
    snap_unref(old);
}

static void add_watches(rc_handle *h) {
    if (h->polling)
        return;
    if (h->wd_parent < 0)
        h->wd_parent = inotify_add_watch(h->ifd, h->parent, PARENT_MASK);
    if (h->wd_dir < 0)
        h->wd_dir = inotify_add_watch(h->ifd, h->dir, DIR_MASK);
}

struct change {
    struct rc_snapshot *snap; /* referenced, for the callback */
    int err;
    bool report;
    uint64_t seq; /* h->change_seq when it happened */
};

/* Loads the file; installs it when it differs. Returns 1 changed, 0 same, -errno. */
static int reload_locked(rc_handle *h, struct change *ch) {
    struct rc_snapshot *s = NULL;
    int r = load_file(h->path, h->name, &s);
    struct rc_snapshot *cur = atomic_load(&h->cur);
    int prev_err = atomic_exchange(&h->last_error, r < 0 ? r : 0);
    if (r < 0) {
        /* report a failure once, not at every event that repeats it */
        if (r != prev_err) {
            ch->report = true;
            ch->seq = ++h->change_seq;
            ch->err = r;
            ch->snap = cur;
            if (cur)
                atomic_fetch_add(&cur->refs, 1);
        }
        return r;
    }
    if (cur && snap_same(cur, s)) {
        snap_free(s);
        return 0;
    }
    s->pub.generation = ++h->next_gen;
    atomic_fetch_add(&s->refs, 1); /* one for the handle, one for the callback */
    install(h, s);
    ch->report = true;
    ch->seq = ++h->change_seq;
    ch->err = 0;
    ch->snap = s;
    return 1;
}

static void report(rc_handle *h, struct change *ch) {
    if (!ch->report)
        return;
    pthread_mutex_lock(&h->cblock);
    /* Between wlock and cblock another writer (rc_reload on another thread) may overtake
     * this one: a change older than the last one reported is not reported, or the
     * callback would go back to a replaced credential. */
    if (ch->seq > h->reported_seq) {
        h->reported_seq = ch->seq;
        if (h->cb)
            h->cb(h, ch->snap ? &ch->snap->pub : NULL, ch->err, h->cb_arg);
    }
    pthread_mutex_unlock(&h->cblock);
    snap_unref(ch->snap);
    ch->snap = NULL;
    ch->report = false;
}

/* Polling: drains the timer's ticks, reads the file. */
static int tick_locked(rc_handle *h, struct change *ch) {
    uint64_t ticks;
    while (read(h->ifd, &ticks, sizeof ticks) < 0 && errno == EINTR) {
    }
    return reload_locked(h, ch);
}

/* After a queue overflow: the events lost may include the watched directory's removal
 * (IN_DELETE_SELF, IN_IGNORED), leaving a dead watch. A watch added again on the path is
 * the same for the same directory, and a new one for a new directory. */
static int rewatch(rc_handle *h, int wd, const char *path, uint32_t mask) {
    if (wd < 0)
        return wd;
    int now = inotify_add_watch(h->ifd, path, mask);
    if (now != wd)
        inotify_rm_watch(h->ifd, wd); /* EINVAL when the kernel removed it already */
    return now;
}

/* Drains the inotify queue; reloads when an event concerned our file or directory. */
static int process_locked(rc_handle *h, struct change *ch) {
    if (h->polling)
        return tick_locked(h, ch);
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool reload = false, overflow = false;
    int r = 0;
    for (;;) {
        ssize_t n = read(h->ifd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                r = -errno;
            break;
        }
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                reload = overflow = true;
                continue;
            }
            if (ev->wd == h->wd_dir && h->wd_dir >= 0) {
                if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
                    /* the directory went away (or was moved: the watch would follow it) */
                    if (!(ev->mask & IN_IGNORED))
                        inotify_rm_watch(h->ifd, h->wd_dir);
                    h->wd_dir = -1;
                    reload = true;
                } else if (ev->len && strcmp(ev->name, h->filename) == 0) {
                    reload = true;
                }
            } else if (ev->wd == h->wd_parent && h->wd_parent >= 0) {
                if (ev->mask & (IN_IGNORED | IN_UNMOUNT)) {
                    h->wd_parent = -1;
                } else if (ev->len && strcmp(ev->name, h->dirbase) == 0) {
                    reload = true; /* the directory was (re)created */
                }
            }
        }
    }
    if (overflow) {
        h->wd_parent = rewatch(h, h->wd_parent, h->parent, PARENT_MASK);
        h->wd_dir = rewatch(h, h->wd_dir, h->dir, DIR_MASK);
    }
    if (h->wd_dir < 0 || h->wd_parent < 0) {
        int before = h->wd_dir;
        add_watches(h);
        /* the directory is watched again (a change may have come before the watch), or it
         * still cannot be (gone, or inotify's watch limit reached: then the file is read
         * at each call, which the background thread makes every second) */
        if (before < 0)
            reload = true;
    }
    if (reload) {
        int lr = reload_locked(h, ch);
        if (r == 0)
            r = lr;
    }
    return r;
}

int rc_process(rc_handle *h) {
    if (!h)
        return -EINVAL;
    struct change ch = {0};
    pthread_mutex_lock(&h->wlock);
    int r = process_locked(h, &ch);
    pthread_mutex_unlock(&h->wlock);
    report(h, &ch);
    return r;
}

int rc_reload(rc_handle *h) {
    if (!h)
        return -EINVAL;
    struct change ch = {0};
    pthread_mutex_lock(&h->wlock);
    add_watches(h);
    int r = reload_locked(h, &ch);
    pthread_mutex_unlock(&h->wlock);
    report(h, &ch);
    return r;
}

int rc_fd(rc_handle *h) {
    if (!h || !(h->flags & RC_OPEN_NO_THREAD))
        return -EINVAL;
    return h->ifd;
}

int rc_on_change(rc_handle *h, rc_change_fn fn, void *arg) {
    if (!h)
        return -EINVAL;
    pthread_mutex_lock(&h->cblock);
    h->cb = fn;
    h->cb_arg = arg;
    pthread_mutex_unlock(&h->cblock);
    return 0;
}

static void *watch_thread(void *arg) {
    rc_handle *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->wlock);
        /* the directory unwatched (gone, or no watch to be had): look every second */
        int timeout = h->wd_dir < 0 && !h->polling ? 1000 : -1;
        pthread_mutex_unlock(&h->wlock);
        struct pollfd p[2] = {{.fd = h->ifd, .events = POLLIN}, {.fd = h->stopfd, .events = POLLIN}};
        int n = poll(p, 2, timeout);
        if (n < 0 && errno != EINTR)
            break; /* cannot happen with valid fds; the last good credential stays */
        if (p[1].revents)
            break;
        rc_process(h);
    }
    return NULL;
}

/* ------------------------------------------------------------------ open / close */

static bool name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > RC_MAX_NAME || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static char *join3(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

/* Splits dir (trailing slashes removed) into parent and base name. */
static int split_dir(rc_handle *h, const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    h->dir = strndup(dir, n);
    if (!h->dir)
        return -ENOMEM;
    char *slash = strrchr(h->dir, '/');
    if (!slash) {
        h->parent = strdup(".");
        h->dirbase = strdup(h->dir);
    } else if (slash == h->dir) {
        h->parent = strdup("/");
        h->dirbase = strdup(slash[1] ? slash + 1 : ".");
    } else {
        h->parent = strndup(h->dir, (size_t)(slash - h->dir));
        h->dirbase = strdup(slash + 1);
    }
    return h->parent && h->dirbase ? 0 : -ENOMEM;
}

rc_handle *rc_close(rc_handle *h) {
    if (!h)
        return NULL;
    if (h->thread_started) {
        uint64_t one = 1;
        while (write(h->stopfd, &one, sizeof one) < 0 && errno == EINTR) {
        }
        pthread_join(h->thread, NULL);
    }
    if (h->stopfd >= 0)
        close(h->stopfd);
    if (h->ifd >= 0)
        close(h->ifd);
    snap_unref(atomic_load(&h->cur));
    pthread_mutex_destroy(&h->wlock);
    pthread_mutex_destroy(&h->cblock);
    free(h->name);
    free(h->dir);
    free(h->parent);
    free(h->dirbase);
    free(h->path);
    free(h->filename);
    free(h);
    return NULL;
}

/* CLOCK_MONOTONIC in ms: this library's own (see parse_rfc3339 for why not rctime.h). */
static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* When inotify_init1 failed (EMFILE: fs.inotify.max_user_instances, 128 by default, is
 * per user, so many processes or handles of one user run out): a timerfd that ticks
 * every second in place of the inotify fd, each tick a read of the file. */
static int open_timer(rc_handle *h) {
    int e = -errno;
    struct itimerspec every_s = {.it_interval = {1, 0}, .it_value = {1, 0}};
    h->ifd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (h->ifd < 0 || timerfd_settime(h->ifd, 0, &every_s, NULL) < 0)
        return e;
    h->polling = true;
    return 0;
}

/* RC_OPEN_WAIT: waits on inotify until a good file is loaded or the time is up. */
static int wait_first(rc_handle *h, int wait_ms) {
    int64_t deadline = wait_ms < 0 ? -1 : now_ms() + wait_ms;
    while (!atomic_load(&h->cur)) {
        int timeout;
        if (deadline < 0) {
            timeout = 1000;
        } else {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                break;
            timeout = left > 1000 ? 1000 : (int)left;
        }
        if (h->wd_dir < 0 && h->wd_parent < 0 && !h->polling && timeout > 100)
            timeout = 100;
        struct pollfd p = {.fd = h->ifd, .events = POLLIN};
        int n = poll(&p, 1, timeout);
        if (n < 0 && errno != EINTR)
            return -errno;
        struct change ch = {0};
        pthread_mutex_lock(&h->wlock);
        int before = h->wd_dir;
        process_locked(h, &ch);
        if (!atomic_load(&h->cur) && (n == 0 || before < 0)) {
            /* a timeout tick (or a missing directory): look at the file itself too */
            reload_locked(h, &ch);
        }
        pthread_mutex_unlock(&h->wlock);
        report(h, &ch);
    }
    return atomic_load(&h->cur) ? 0 : atomic_load(&h->last_error);
}

int rc_open_ex(const char *name, const char *runtime_dir, unsigned flags, int wait_ms,
               rc_handle **ret_h) {
    if (!name || !ret_h || !name_ok(name) ||
        (flags & ~(RC_OPEN_NO_THREAD | RC_OPEN_WAIT | RC_OPEN_ALLOW_MISSING)))
        return -EINVAL;
    if (!runtime_dir || !*runtime_dir) {
        runtime_dir = secure_getenv("REDIS_CREDS_RUNTIME_DIR");
        if (!runtime_dir || !*runtime_dir)
            runtime_dir = RC_DEFAULT_DIR;
    }
    rc_handle *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->ifd = h->stopfd = h->wd_dir = h->wd_parent = -1;
    h->flags = flags;
    pthread_mutex_init(&h->wlock, NULL);
    pthread_mutex_init(&h->cblock, NULL);
    int r = split_dir(h, runtime_dir);
    if (r < 0)
        goto fail;
    h->name = strdup(name);
    h->filename = join3(name, ".json", "");
    h->path = join3(h->dir, "/", h->filename);
    if (!h->name || !h->filename || !h->path) {
        r = -ENOMEM;
        goto fail;
    }
    h->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (h->ifd < 0 && (r = open_timer(h)) < 0)
        goto fail;
    /* The watch first, then the read: a publication in between is not missed. No watch
     * (the directory missing, or ENOSPC at the watch limit) is no reason to fail: the
     * read says whether the file is there, and unwatched it is read every second. */
    add_watches(h);
    struct change ch = {0};
    pthread_mutex_lock(&h->wlock);
    r = reload_locked(h, &ch);
    pthread_mutex_unlock(&h->wlock);
    snap_unref(ch.snap); /* nobody to call back yet */
    if (r < 0 && (flags & RC_OPEN_WAIT))
        r = wait_first(h, wait_ms);
    if (r < 0 && !(flags & RC_OPEN_ALLOW_MISSING))
        goto fail;
    if (!(flags & RC_OPEN_NO_THREAD)) {
        h->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (h->stopfd < 0) {
            r = -errno;
            goto fail;
        }
        r = -pthread_create(&h->thread, NULL, watch_thread, h);
        if (r < 0)
            goto fail;
        h->thread_started = true;
    }
    *ret_h = h;
    return 0;
fail:
    rc_close(h);
    return r;
}

int rc_open(const char *name, const char *runtime_dir, rc_handle **ret_h) {
    return rc_open_ex(name, runtime_dir, 0, 0, ret_h);
}

/* ------------------------------------------------------------------ errors */

const char *rc_strerror(int err) {
    if (err > 0)
        err = -err;
    switch (err) {
    case 0:
        return "success";
    case -ENOENT:
        return "credential file not found (not published yet, or its directory is gone)";
    case -EBADMSG:
        return "credential file is malformed (not a redis-creds JSON credential)";
    case -EPROTONOSUPPORT:
        return "credential file has a format this library does not know";
    case -EFBIG:
        return "credential file is larger than 64 KiB";
    case -EINVAL:
        return "invalid argument (a credential name is [A-Za-z0-9_.-]{1,64}, not starting with '.')";
    case -EACCES:
        return "permission denied (is this user in the credential file's group?)";
    case -EKEYREJECTED:
        return "Redis refused the credential (current and previous)";
    case -EKEYEXPIRED:
        return "the credential has expired and no newer one was published";
    case -ECONNRESET:
        return "Redis connection error";
    case -EPROTO:
        return "unexpected reply from Redis";
    case -ETIMEDOUT:
        return "timed out";
    default: {
        const char *s = strerrordesc_np(-err);
        return s ? s : "unknown error";
    }
    }
}
