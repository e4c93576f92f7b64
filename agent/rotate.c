/* rotate: see rotate.h. */
#include "rotate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "credfile.h"
#include "secretfile.h"
#include "validate.h"

static const char *const phase_names[] = {
    [ROTATE_IDLE] = "idle",
    [ROTATE_CLAIMED] = "claimed",
    [ROTATE_ADDED] = "added",
    [ROTATE_PUBLISHED] = "published",
};

const char *rotate_phase_to_string(enum rotate_phase p) {
    return (unsigned)p < sizeof phase_names / sizeof phase_names[0] ? phase_names[p] : "?";
}

/* ---- the phase record ---- */

int rotate_state_format(const struct rotate_state *st, char *buf, size_t size) {
    json_t *o = json_pack("{s:i, s:s, s:b, s:b, s:s, s:s, s:I, s:I, s:I, s:I, s:I}",
                          "format", ROTATE_STATE_FORMAT,
                          "phase", rotate_phase_to_string(st->phase),
                          "record", st->record, "revoke", st->revoke,
                          "old_version", st->old_version, "new_version", st->new_version,
                          "started_at", (json_int_t)st->started_at,
                          "grace_until", (json_int_t)st->grace_until,
                          "last_completed", (json_int_t)st->last_completed,
                          "baseline", (json_int_t)st->baseline,
                          "fleet_rotated_at", (json_int_t)st->fleet_rotated_at);
    if (o && st->fleet_mark)
        json_object_set_new(o, "fleet_mark", json_integer((json_int_t)st->fleet_mark));
    if (o && st->watch_until)
        json_object_set_new(o, "watch_until", json_integer((json_int_t)st->watch_until));
    if (o && st->watch_revoke)
        json_object_set_new(o, "watch_revoke", json_true());
    if (o && st->restored[0])
        json_object_set_new(o, "restored", json_string(st->restored));
    if (o && st->restore_until)
        json_object_set_new(o, "restore_until", json_integer((json_int_t)st->restore_until));
    if (o && st->restores)
        json_object_set_new(o, "restores", json_integer((json_int_t)st->restores));
    if (!o)
        return -ENOMEM;
    size_t n = json_dumpb(o, buf, size, JSON_COMPACT);
    json_decref(o);
    if (n == 0 || n + 1 >= size)
        return -ENOBUFS;
    buf[n] = '\n';
    buf[n + 1] = '\0';
    return (int)n + 1;
}

static int get_int(json_t *o, const char *key, int64_t *ret) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        *ret = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -EINVAL;
    *ret = (int64_t)json_integer_value(v);
    return 0;
}

static int get_bool(json_t *o, const char *key, bool *ret) {
    json_t *v = json_object_get(o, key);
    if (v && !json_is_boolean(v))
        return -EINVAL;
    *ret = json_is_true(v);
    return 0;
}

static int get_version(json_t *o, const char *key, char out[RC_VERSION_MAX]) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        out[0] = '\0';
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) >= RC_VERSION_MAX)
        return -EINVAL;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* A SHA-256 in hex (a restored password's), or absent. */
static int get_hash(json_t *o, const char *key, char out[65]) {
    json_t *v = json_object_get(o, key);
    const char *h = json_string_value(v);
    out[0] = '\0';
    if (!v)
        return 0;
    if (!h || strlen(h) != 64 || strspn(h, "0123456789abcdef") != 64)
        return -EINVAL;
    memcpy(out, h, 65);
    return 0;
}

int rotate_state_parse(const char *buf, size_t len, struct rotate_state *ret) {
    struct rotate_state st = { 0 };
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    int r = -EINVAL;

    if (!json_is_object(o))
        goto out;
    const char *ph = json_string_value(json_object_get(o, "phase"));
    if (!ph)
        goto out;
    size_t i;
    for (i = 0; i < sizeof phase_names / sizeof phase_names[0]; i++)
        if (strcmp(ph, phase_names[i]) == 0)
            break;
    if (i == sizeof phase_names / sizeof phase_names[0])
        goto out;
    st.phase = (enum rotate_phase)i;
    json_t *f = json_object_get(o, "format");
    st.format = f ? (json_is_integer(f) ? (int)json_integer_value(f) : -1) : 1;
    if (st.format < 1 || st.format > ROTATE_STATE_FORMAT || get_bool(o, "record", &st.record) < 0 ||
        get_bool(o, "revoke", &st.revoke) < 0 || get_int(o, "fleet_rotated_at", &st.fleet_rotated_at) < 0 ||
        get_int(o, "fleet_mark", &st.fleet_mark) < 0)
        goto out;
    if (get_version(o, "old_version", st.old_version) < 0 ||
        get_version(o, "new_version", st.new_version) < 0 ||
        get_int(o, "started_at", &st.started_at) < 0 ||
        get_int(o, "grace_until", &st.grace_until) < 0 ||
        get_int(o, "last_completed", &st.last_completed) < 0 ||
        get_int(o, "baseline", &st.baseline) < 0 || get_int(o, "watch_until", &st.watch_until) < 0 ||
        get_bool(o, "watch_revoke", &st.watch_revoke) < 0 || get_hash(o, "restored", st.restored) < 0 ||
        get_int(o, "restore_until", &st.restore_until) < 0 || get_int(o, "restores", &st.restores) < 0)
        goto out;
    /* A rotation under way must say which versions it moves between (one held in the
     * store's rotation record learns the new one when it writes it). */
    if (st.phase != ROTATE_IDLE && (!st.old_version[0] || (!st.new_version[0] && !st.record)))
        goto out;
    *ret = st;
    r = 0;
out:
    json_decref(o);
    return r;
}

static int state_file_name(const char *name, char *buf, size_t size) {
    int n = snprintf(buf, size, "rotation-%s.json", name);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int rotate_state_load(const char *state_dir, const char *name, struct rotate_state *ret,
                      char *err, size_t errlen) {
    char fname[128], buf[ROTATE_STATE_MAX + 1];
    size_t len = 0;
    int r;

    if ((r = state_file_name(name, fname, sizeof fname)) < 0) {
        snprintf(err, errlen, "%s: name too long", name);
        return r;
    }
    int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int fd = dfd < 0 ? -1 : openat(dfd, fname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        r = -errno;
        if (dfd >= 0)
            close(dfd);
        snprintf(err, errlen, "%s/%s: %s", state_dir, fname, strerror(-r));
        return r;
    }
    close(dfd);
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            close(fd);
            snprintf(err, errlen, "%s/%s: read: %s", state_dir, fname, strerror(-r));
            return r;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > ROTATE_STATE_MAX) {
            close(fd);
            snprintf(err, errlen, "%s/%s: larger than %d bytes", state_dir, fname, ROTATE_STATE_MAX);
            return -EFBIG;
        }
    }
    close(fd);
    if (rotate_state_parse(buf, len, ret) < 0) {
        snprintf(err, errlen, "%s/%s: not a rotation record this version understands", state_dir,
                 fname);
        return -EINVAL;
    }
    return 0;
}

int rotate_state_save(const char *state_dir, const char *name, const struct rotate_state *st,
                      char *err, size_t errlen) {
    char fname[128], buf[ROTATE_STATE_MAX];
    int r, n;

    if ((r = state_file_name(name, fname, sizeof fname)) < 0) {
        snprintf(err, errlen, "%s: name too long", name);
        return r;
    }
    if ((n = rotate_state_format(st, buf, sizeof buf)) < 0) {
        snprintf(err, errlen, "%s/%s: %s", state_dir, fname, strerror(-n));
        return n;
    }
    int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        r = -errno;
        snprintf(err, errlen, "%s: %s", state_dir, strerror(-r));
        return r;
    }
    r = credfile_write_atomic(dfd, fname, buf, (size_t)n, 0600, (gid_t)-1);
    close(dfd);
    if (r < 0)
        snprintf(err, errlen, "%s/%s: %s", state_dir, fname, strerror(-r));
    return r;
}

int64_t rotate_next_due(const struct rotate_state *st, uint64_t interval_usec, int64_t splay_s) {
    int64_t from = st->fleet_rotated_at ? st->fleet_rotated_at
                   : st->last_completed ? st->last_completed : st->baseline;
    return from + (int64_t)(interval_usec / 1000000) + splay_s;
}

int64_t rotate_clock_see(struct rotate_state *st, int64_t rotated_at, int64_t now) {
    /* (0 or less is no time a rotation ran: a plugin that left the field unset) */
    if (rotated_at <= 0 || rotated_at == st->fleet_mark || rotated_at <= st->fleet_rotated_at)
        return -1;
    st->fleet_mark = rotated_at;
    int64_t at = rotated_at < now ? rotated_at : now;
    if (at <= st->fleet_rotated_at)
        return -1;
    st->fleet_rotated_at = at;
    return rotated_at - at;
}

bool rotate_clock_sane(struct rotate_state *st, int64_t now) {
    bool changed = false;
    int64_t *times[] = { &st->fleet_rotated_at, &st->last_completed, &st->baseline };
    if (st->fleet_rotated_at > now && st->fleet_mark < st->fleet_rotated_at)
        st->fleet_mark = st->fleet_rotated_at;
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++)
        if (*times[i] > now) {
            *times[i] = now;
            changed = true;
        }
    return changed;
}

uint64_t rotate_splay_draw(uint64_t splay_usec) {
    uint64_t n = splay_usec / 1000, rnd;
    if (n == 0 || RAND_bytes((unsigned char *)&rnd, sizeof rnd) != 1)
        return 0;
    return rnd % (n + 1) * 1000;   /* n is far below 2^64: the bias is negligible */
}

/* ---- passwords ---- */

int rotate_generate_password(const char *alphabet, unsigned length, struct secret **ret) {
    size_t n = strlen(alphabet);
    if (n < 2 || n > 256 || length == 0)
        return -EINVAL;
    /* Bytes at or above `limit` would favour the first characters: drawn again. */
    unsigned limit = 256 - 256 % (unsigned)n;
    unsigned char *pw = malloc(length + 1), rnd[64];
    size_t have = 0, used = sizeof rnd;
    if (!pw)
        return -ENOMEM;
    int r = 0;
    while (have < length) {
        if (used == sizeof rnd) {
            if (RAND_bytes(rnd, sizeof rnd) != 1) {
                r = -EIO;
                break;
            }
            used = 0;
        }
        unsigned b = rnd[used++];
        if (b < limit)
            pw[have++] = (unsigned char)alphabet[b % n];
    }
    if (r == 0) {
        *ret = secret_new(pw, length);
        if (!*ret)
            r = -ENOMEM;
    }
    secret_wipe_free(pw, length + 1);
    explicit_bzero(rnd, sizeof rnd);
    return r;
}

/* ---- recovery ---- */

static bool same(const char *a, const char *b) {
    return a && b && strcmp(a, b) == 0;
}

enum rotate_resume rotate_resume_decide(const struct rotate_state *st,
                                        const char *published_version,
                                        const char *published_previous_version) {
    bool published_new = same(published_version, st->new_version) &&
                         same(published_previous_version, st->old_version);
    switch (st->phase) {
    case ROTATE_IDLE:
        return ROTATE_RESUME_NONE;
    case ROTATE_CLAIMED:
    case ROTATE_ADDED:
        /* Published already (a crash between publication and the record): remove. */
        if (published_new)
            return ROTATE_RESUME_REMOVE;
        return same(published_version, st->old_version) ? ROTATE_RESUME_ADD : ROTATE_RESUME_ABANDON;
    case ROTATE_PUBLISHED:
        return published_new ? ROTATE_RESUME_REMOVE : ROTATE_RESUME_ABANDON;
    }
    return ROTATE_RESUME_ABANDON;
}

/* ---- ACL commands ---- */

static void append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...) {
    size_t len = strlen(buf);
    va_list ap;
    if (len + 1 >= size)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}

/* ACL commands on every node at once, through rnet (one thread, one poll()). The script
 * per node, the same on all:
 *   0 AUTH login + 1 PING (pipelined), 2 ACL SETUSER user >new / <old, 3 ACL SAVE (when
 *   acl_save), 4 AUTH user old: only after REMOVE met "ERR" (see acl_reply).
 * Each node ends with its own result; nobody waits for a slow node but itself. */

enum { AS_LOGIN, AS_PING, AS_SETUSER, AS_SAVE, AS_CHECK, AS_COUNT };

struct acl_node {
    int r;                    /* 0 when done, else -errno */
    char why[256];
};

struct acl_run {
    struct rnet_cmd script[AS_COUNT];
    enum rotate_acl_op op;
    bool save;
    const char *login_user;
    struct acl_node *res;     /* per node */
    struct rnet_node *rn;     /* to find a node's index */
};

static int acl_fail(struct acl_node *an, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int acl_fail(struct acl_node *an, int r, const char *fmt, ...) {
    va_list ap;

    an->r = r;
    va_start(ap, fmt);
    (void)vsnprintf(an->why, sizeof an->why, fmt, ap);
    va_end(ap);
    return RNET_STOP;
}

static int acl_login(struct acl_run *a, struct acl_node *an, size_t cmd, redisReply *reply) {
    const struct rnet_cmd *c = &a->script[cmd];
    char detail[256];
    enum resp_auth_result ar = resp_auth_judge(reply, c->argc, c->argv, c->argvlen, detail,
                                               sizeof detail);

    if (cmd == AS_CHECK) {
        if (ar == RESP_AUTH_REFUSED)
            return acl_fail(an, 0, "%s", "");
        return acl_fail(an, -EIO, "ACL SETUSER: ERR (and the password still works)");
    }
    if (ar == RESP_AUTH_ACCEPTED)
        return AS_PING;
    if (ar == RESP_AUTH_NOPASS)
        return AS_SETUSER;
    return acl_fail(an, ar == RESP_AUTH_IO ? -EIO : -EACCES, "login as %s: %s",
                    a->login_user ? a->login_user : "default",
                    detail[0] ? detail : resp_auth_result_to_string(ar));
}

static int acl_setuser(struct acl_run *a, struct acl_node *an, redisReply *reply) {
    const struct rnet_cmd *c = &a->script[AS_SETUSER];
    char text[128];

    /* Redis echoes the argument in some errors: only the first word is kept. */
    resp_redact_error(reply, c->argc, c->argv, c->argvlen);
    if (reply->type != REDIS_REPLY_STATUS && a->op == ROTATE_ACL_REMOVE &&
        strncmp(reply->str ? reply->str : "", "ERR", 3) == 0) {
        /* Redis refuses to remove a password the user does not have, with an error that
         * echoes it (cut to "ERR" for us). Gone already (a removal that finished just
         * before a crash) is what we want: check that it no longer logs in. */
        resp_reply_wipe_free(reply);
        return AS_CHECK;
    }
    if (reply->type != REDIS_REPLY_STATUS) {
        resp_reply_text(reply, text, sizeof text);
        resp_reply_wipe_free(reply);
        /* NOPERM: the login lacks +acl|setuser. */
        return acl_fail(an, -EACCES, "ACL SETUSER: %s%s", text[0] ? text : "unexpected reply",
                        strncmp(text, "NOPERM", 6) == 0 ? " (the login needs +acl|setuser)"
                                                        : "");
    }
    resp_reply_wipe_free(reply);
    return a->save ? AS_SAVE : acl_fail(an, 0, "%s", "");
}

static int acl_reply(void *ud, struct rnet_node *rn, size_t cmd, redisReply *reply) {
    struct acl_run *a = ud;
    struct acl_node *an = &a->res[rn - a->rn];
    char text[128];

    switch (cmd) {
    case AS_LOGIN:
    case AS_CHECK:
        return acl_login(a, an, cmd, reply);
    case AS_PING:
        resp_reply_wipe_free(reply);   /* +OK came: any answer shows the link works */
        return AS_SETUSER;
    case AS_SETUSER:
        return acl_setuser(a, an, reply);
    case AS_SAVE:
        if (reply->type == REDIS_REPLY_STATUS) {
            freeReplyObject(reply);
            return acl_fail(an, 0, "%s", "");
        }
        resp_reply_text(reply, text, sizeof text);
        freeReplyObject(reply);
        return acl_fail(an, -EIO, "ACL SAVE: %s", text[0] ? text : "unexpected reply");
    }
    resp_reply_wipe_free(reply);
    return RNET_STOP;
}

/* A node rnet could not finish: why, in the words of the step it was in. */
static void acl_failed(const struct acl_run *a, const struct rnet_node *rn, struct acl_node *an) {
    static const int err[] = { [RNET_OK] = -EIO, [RNET_UNREACHABLE] = -EHOSTUNREACH,
                               [RNET_TLS] = -EPROTO, [RNET_CERT] = -EKEYREJECTED,
                               [RNET_PROTOCOL] = -EPROTO, [RNET_INTERNAL] = -ENOMEM };
    int r = err[rn->cls];

    if (!rn->connected)
        acl_fail(an, r, "%s", rn->msg);
    else if (rn->step <= AS_PING)
        acl_fail(an, -EIO, "login as %s: %s", a->login_user ? a->login_user : "default",
                 rn->msg);
    else
        acl_fail(an, r, "%s", rn->msg);
}

/* The script's commands; *arg is ">pw" or "<pw", a secret the caller wipes. */
static int acl_script(struct acl_run *a, const char *user, const struct secret *password,
                      const struct secret *login_password, char **arg) {
    struct rnet_cmd *s = a->script;
    size_t alen = secret_len(password) + 1;

    s[AS_LOGIN] = (struct rnet_cmd){ .label = "AUTH" };
    s[AS_LOGIN].argc = resp_auth_argv(a->login_user, login_password, s[AS_LOGIN].argv,
                                      s[AS_LOGIN].argvlen);
    s[AS_PING] = (struct rnet_cmd){ .label = "PING after AUTH", .argc = 1, .argv = { "PING" },
                                    .pipelined = true };
    s[AS_CHECK] = (struct rnet_cmd){ .label = "AUTH" };
    s[AS_CHECK].argc = resp_auth_argv(user ? user : "default", password, s[AS_CHECK].argv,
                                      s[AS_CHECK].argvlen);
    if (s[AS_LOGIN].argc < 0 || s[AS_CHECK].argc < 0)
        return -EINVAL;
    if (!(*arg = malloc(alen + 1)))
        return -ENOMEM;
    (*arg)[0] = a->op == ROTATE_ACL_ADD ? '>' : '<';
    memcpy(*arg + 1, secret_data(password), secret_len(password));
    (*arg)[alen] = '\0';
    s[AS_SETUSER] = (struct rnet_cmd){ .label = "ACL SETUSER", .argc = 4,
                                       .argv = { "ACL", "SETUSER", user ? user : "default",
                                                 *arg },
                                       .argvlen = { 3, 7, strlen(user ? user : "default"),
                                                    alen } };
    s[AS_SAVE] = (struct rnet_cmd){ .label = "ACL SAVE", .argc = 2, .argv = { "ACL", "SAVE" } };
    return 0;
}

/* Runs the script on every usable node of v at once; results in a->res. */
static int acl_run_all(const struct validate_nodes *v, struct acl_run *a) {
    size_t n = validate_nodes_count(v);
    struct rnet_opts o;
    int r;

    a->rn = calloc(n ? n : 1, sizeof *a->rn);
    a->res = calloc(n ? n : 1, sizeof *a->res);
    if (!a->rn || !a->res)
        return -ENOMEM;
    validate_nodes_rnet(v, a->rn, &o);
    o.on_reply = acl_reply;
    o.userdata = a;
    for (size_t i = 0; i < n; i++) {
        const char *problem = validate_nodes_problem(v, i);
        if (problem) {
            acl_fail(&a->res[i], -EINVAL, "%s", problem);
            continue;
        }
        a->rn[i].script = a->script;
        a->rn[i].nscript = AS_COUNT;
    }
    if ((r = rnet_run(&o, a->rn, n)) < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (a->rn[i].script && a->rn[i].cls != RNET_OK)
            acl_failed(a, &a->rn[i], &a->res[i]);
    return 0;
}

/* Tallies the nodes' results into res; the first failure's. */
static int acl_tally(const struct validate_nodes *v, const struct acl_run *a,
                     struct rotate_acl_result *res) {
    int first = 0;

    res->total = (unsigned)validate_nodes_count(v);
    for (size_t i = 0; i < validate_nodes_count(v); i++) {
        int r = a->res[i].r;
        append(res->nodes, sizeof res->nodes, "%s%s=%s", i ? "," : "", validate_nodes_name(v, i),
               r == 0 ? "ok" : "failed");
        if (r == 0)
            res->done++;
        else if (!first) {
            first = r;
            snprintf(res->detail, sizeof res->detail, "%s: %s", validate_nodes_name(v, i),
                     a->res[i].why);
        }
    }
    return first;
}

int rotate_acl_apply(const struct config_redis *redis, const struct config_rotation *ro,
                     const char *user, enum rotate_acl_op op, const struct secret *password,
                     const char *login_user, const struct secret *login_password,
                     struct rotate_acl_result *res) {
    struct acl_run a = { .op = op, .save = ro->acl_save };
    struct validate_nodes *v = NULL;
    struct secret *admin_pw = NULL;
    char *arg = NULL;
    int r;

    memset(res, 0, sizeof *res);
    if (ro->admin_username) {
        r = secretfile_read(ro->admin_password_file, "redis-admin", &admin_pw, res->detail,
                            sizeof res->detail);
        if (r < 0)
            return r;
        login_user = ro->admin_username;
        login_password = admin_pw;
    }
    a.login_user = login_user;
    r = validate_nodes_list(redis, true, login_user, login_password, NULL, NULL, &v,
                            res->detail, sizeof res->detail);
    if (r < 0)
        goto out;
    if ((r = acl_script(&a, user, password, login_password, &arg)) < 0 ||
        (r = acl_run_all(v, &a)) < 0) {
        snprintf(res->detail, sizeof res->detail, "%s",
                 r == -EINVAL ? "no password to log in with" : "out of memory");
        goto out;
    }
    r = acl_tally(v, &a, res);
out:
    explicit_bzero(a.script, sizeof a.script);
    if (arg)
        secret_wipe_free(arg, secret_len(password) + 2);
    free(a.rn);
    free(a.res);
    validate_nodes_free(v);
    secret_free(admin_pw);
    return r;
}
