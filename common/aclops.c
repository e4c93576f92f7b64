/* aclops: see aclops.h.
 *
 * The pure half (replies in, text and numbers out) comes first; the network half is one
 * small engine over rnet_run (login, then the call's commands, each call a `step`
 * function fed the replies after the login) and one function per call that builds its
 * script.
 */
#include "aclops.h"

#include <errno.h>
#include <math.h>   /* isfinite */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rctime.h"

/* ------------------------------------------------------------------------------------
 * Results and text
 */

void aclops_result_clear(struct aclops_result *res) {
    if (!res)
        return;
    for (size_t i = 0; i < res->n && res->nodes; i++) {
        free(res->nodes[i].addrs);
        free(res->nodes[i].log);
    }
    free(res->nodes);
    memset(res, 0, sizeof *res);
}

const struct aclops_node *aclops_result_find(const struct aclops_result *res, const char *name) {
    for (size_t i = 0; res && name && i < res->n; i++)
        if (strcmp(res->nodes[i].name, name) == 0)
            return &res->nodes[i];
    return NULL;
}

void aclops_text_append(char *buf, size_t size, const char *fmt, ...) {
    size_t len = strnlen(buf, size);
    va_list ap;
    int n;

    if (size < 4 || len + 1 >= size)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= size - len)
        memcpy(buf + size - 4, "...", 4);
}

static bool reply_is_text(const redisReply *r) {
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->str;
}

static bool text_eq(const redisReply *r, const char *s) {
    return reply_is_text(r) && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* ------------------------------------------------------------------------------------
 * ACL GETUSER: the fields compared, as tokens
 *
 * Redis 7.0 answers commands, keys and channels as one string each ("~a ~b"), older
 * servers keys and channels as arrays; both are read as a list of tokens. The commands
 * string is Redis's own normal form, so two users with the same rules print the same.
 */

struct user_view {
    const redisReply *flags, *commands, *keys, *channels, *selectors;
};

struct toks {
    const redisReply *f;
    size_t el;             /* array: the next element */
    const char *p, *end;   /* string: what is left */
};

static void toks_start(struct toks *t, const redisReply *f) {
    memset(t, 0, sizeof *t);
    t->f = f;
    if (reply_is_text(f)) {
        t->p = f->str;
        t->end = f->str + f->len;
    }
}

static bool toks_next(struct toks *t, const char **ret, size_t *ret_len) {
    if (t->f && t->f->type == REDIS_REPLY_ARRAY) {
        while (t->el < t->f->elements) {
            const redisReply *e = t->f->element[t->el++];
            if (reply_is_text(e) && e->len) {
                *ret = e->str;
                *ret_len = e->len;
                return true;
            }
        }
        return false;
    }
    while (t->p && t->p < t->end && *t->p == ' ')
        t->p++;
    if (!t->p || t->p >= t->end)
        return false;
    const char *sp = memchr(t->p, ' ', (size_t)(t->end - t->p));
    *ret = t->p;
    *ret_len = (size_t)((sp ? sp : t->end) - t->p);
    t->p += *ret_len;
    return true;
}

static bool toks_has(const redisReply *f, const char *s, size_t len) {
    struct toks t;
    const char *x;
    size_t xl;

    toks_start(&t, f);
    while (toks_next(&t, &x, &xl))
        if (xl == len && memcmp(x, s, len) == 0)
            return true;
    return false;
}

/* on/off say whether the user may log in (the rotation sets them); nopass goes with
 * resetpass. Neither is a difference of rights. */
static bool flag_ignored(const char *s, size_t len) {
    return (len == 2 && memcmp(s, "on", 2) == 0) || (len == 3 && memcmp(s, "off", 3) == 0) ||
           (len == 6 && memcmp(s, "nopass", 6) == 0);
}

/* Where the differences go: "<node>: " before the first, "; " between them. */
struct diff_out {
    const char *node;
    char *buf;
    size_t size;
    unsigned n;
};

static void diff_emit(struct diff_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diff_emit(struct diff_out *o, const char *fmt, ...) {
    char item[600];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    if (o->n == 0 && o->node)
        aclops_text_append(o->buf, o->size, "%s%s: %s", o->buf[0] ? "; " : "", o->node, item);
    else
        aclops_text_append(o->buf, o->size, "%s%s", o->buf[0] ? "; " : "", item);
    o->n++;
}

/* Each token of `has` that `other` lacks: "<lacker> lacks <what><token>". */
static void diff_lacks(struct diff_out *o, const char *where, const char *what,
                       const char *lacker, const redisReply *has, const redisReply *other,
                       bool flags) {
    struct toks t;
    const char *x;
    size_t xl;

    toks_start(&t, has);
    while (toks_next(&t, &x, &xl))
        if (!(flags && flag_ignored(x, xl)) && !toks_has(other, x, xl))
            diff_emit(o, "%s%s lacks %s%.*s", where, lacker, what, (int)(xl > 200 ? 200 : xl), x);
}

/* The field as text, for "keys A vs B". */
static void field_text(const redisReply *f, char *buf, size_t size) {
    struct toks t;
    const char *x;
    size_t xl;

    buf[0] = '\0';
    toks_start(&t, f);
    while (toks_next(&t, &x, &xl))
        aclops_text_append(buf, size, "%s%.*s", buf[0] ? " " : "", (int)(xl > 200 ? 200 : xl), x);
    if (!buf[0])
        aclops_text_append(buf, size, "(none)");
}

/* Same tokens in the same order. */
static bool toks_same(const redisReply *a, const redisReply *b) {
    struct toks ta, tb;
    const char *x, *y;
    size_t xl, yl;

    toks_start(&ta, a);
    toks_start(&tb, b);
    for (;;) {
        bool ha = toks_next(&ta, &x, &xl), hb = toks_next(&tb, &y, &yl);
        if (!ha || !hb)
            return ha == hb;
        if (xl != yl || memcmp(x, y, xl) != 0)
            return false;
    }
}

/* Patterns (keys, channels): one difference naming both lists. */
static void diff_patterns(struct diff_out *o, const char *where, const char *field,
                          const redisReply *a, const redisReply *b) {
    char ta[256], tb[256];
    struct toks t;
    const char *x;
    size_t xl;
    bool same = true;

    toks_start(&t, a);
    while (same && toks_next(&t, &x, &xl))
        same = toks_has(b, x, xl);
    toks_start(&t, b);
    while (same && toks_next(&t, &x, &xl))
        same = toks_has(a, x, xl);
    if (same)
        return;
    field_text(a, ta, sizeof ta);
    field_text(b, tb, sizeof tb);
    diff_emit(o, "%s%s %s vs %s", where, field, ta, tb);
}

static void diff_commands(struct diff_out *o, const char *where, const char *name_a,
                          const redisReply *a, const char *name_b, const redisReply *b) {
    unsigned before = o->n;
    char ta[256], tb[256];

    diff_lacks(o, where, "", name_b, a, b, false);
    diff_lacks(o, where, "", name_a, b, a, false);
    if (o->n == before && !toks_same(a, b)) {
        /* Same rules in another order: later rules override earlier ones. */
        field_text(a, ta, sizeof ta);
        field_text(b, tb, sizeof tb);
        diff_emit(o, "%scommands in another order: %s vs %s", where, ta, tb);
    }
}

/* A user's (or a selector's) fields; flags only at the top. */
static int view_parse(const redisReply *r, bool top, struct user_view *v) {
    memset(v, 0, sizeof *v);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return -EPROTO;
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *k = r->element[i], *val = r->element[i + 1];
        if (!reply_is_text(k))
            return -EPROTO;
        if (text_eq(k, "flags"))
            v->flags = val;
        else if (text_eq(k, "commands"))
            v->commands = val;
        else if (text_eq(k, "keys"))
            v->keys = val;
        else if (text_eq(k, "channels"))
            v->channels = val;
        else if (text_eq(k, "selectors"))
            v->selectors = val;
    }
    if (!v->commands || (top && (!v->flags || v->flags->type != REDIS_REPLY_ARRAY)))
        return -EPROTO;
    if (v->selectors && v->selectors->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    return 0;
}

static void diff_rules(struct diff_out *o, const char *where, const char *name_a,
                       const struct user_view *a, const char *name_b,
                       const struct user_view *b) {
    diff_commands(o, where, name_a, a->commands, name_b, b->commands);
    diff_patterns(o, where, "keys", a->keys, b->keys);
    diff_patterns(o, where, "channels", a->channels, b->channels);
}

static int diff_selectors(struct diff_out *o, const char *name_a, const redisReply *a,
                          const char *name_b, const redisReply *b) {
    size_t na = a ? a->elements : 0, nb = b ? b->elements : 0;

    if (na != nb) {
        diff_emit(o, "%s has %zu selector%s, %s %zu", name_a, na, na == 1 ? "" : "s", name_b, nb);
        return 0;
    }
    for (size_t i = 0; i < na; i++) {
        struct user_view sa, sb;
        char where[32];
        if (view_parse(a->element[i], false, &sa) < 0 || view_parse(b->element[i], false, &sb) < 0)
            return -EPROTO;
        snprintf(where, sizeof where, "selector %zu: ", i + 1);
        diff_rules(o, where, name_a, &sa, name_b, &sb);
    }
    return 0;
}

int aclops_user_diff(const char *node, const char *name_a, const redisReply *a,
                     const char *name_b, const redisReply *b, char *diff, size_t size) {
    struct diff_out o = { .node = node, .buf = diff, .size = size };
    struct user_view va, vb;
    bool nil_a = a && a->type == REDIS_REPLY_NIL, nil_b = b && b->type == REDIS_REPLY_NIL;

    if (nil_a || nil_b) {
        if (nil_a)
            diff_emit(&o, "%s does not exist", name_a);
        if (nil_b)
            diff_emit(&o, "%s does not exist", name_b);
        return (int)o.n;
    }
    if (view_parse(a, true, &va) < 0 || view_parse(b, true, &vb) < 0)
        return -EPROTO;
    diff_lacks(&o, "", "flag ", name_b, va.flags, vb.flags, true);
    diff_lacks(&o, "", "flag ", name_a, vb.flags, va.flags, true);
    diff_rules(&o, "", name_a, &va, name_b, &vb);
    if (diff_selectors(&o, name_a, va.selectors, name_b, vb.selectors) < 0)
        return -EPROTO;
    return (int)o.n;
}

/* ------------------------------------------------------------------------------------
 * CLIENT LIST: one pass over the reply, no allocation
 */

/* The value of `key=` (key includes the '=') among the line's space-separated fields. */
static bool line_field(const char *line, const char *end, const char *key, size_t klen,
                       const char **ret, size_t *ret_len) {
    const char *p = line;

    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *fe = sp ? sp : end;
        if ((size_t)(fe - p) >= klen && memcmp(p, key, klen) == 0) {
            *ret = p + klen;
            *ret_len = (size_t)(fe - p) - klen;
            return true;
        }
        p = fe + 1;
    }
    return false;
}

static void copy_cut(char *dst, size_t size, const char *src, size_t len) {
    if (len >= size)
        len = size - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static bool parse_ll(const char *s, size_t len, long long *ret) {
    long long v = 0;

    if (len == 0 || len > 18)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return true;
}

int aclops_client_list_parse(const char *text, size_t len, const char *user,
                             long long skip_id, char (*addrs)[ACLOPS_ADDR_MAX],
                             size_t max_addrs, long long *ret_count, size_t *ret_naddrs) {
    const char *p = text, *end = text + len;
    size_t ulen = strlen(user), naddrs = 0;
    long long count = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *u, *a, *id;
        size_t ul, al, idl;
        long long idv;

        if (le > p && le[-1] == '\r')
            le--;
        if (le > p) {
            if (!line_field(p, le, "id=", 3, &id, &idl) || !parse_ll(id, idl, &idv) ||
                !line_field(p, le, "addr=", 5, &a, &al) ||
                !line_field(p, le, "user=", 5, &u, &ul))
                return -EPROTO;
            if (ul == ulen && memcmp(u, user, ul) == 0 && idv != skip_id) {
                if (naddrs < max_addrs)
                    copy_cut(addrs[naddrs++], ACLOPS_ADDR_MAX, a, al);
                count++;
            }
        }
        p = nl ? nl + 1 : end;
    }
    *ret_count = count;
    *ret_naddrs = naddrs;
    return 0;
}

/* ------------------------------------------------------------------------------------
 * ACL LOG
 */

static int log_entry_field(struct aclops_log_entry *e, const redisReply *k, const redisReply *v) {
    const char *a;
    size_t al;

    if (text_eq(k, "count") || text_eq(k, "entry-id")) {
        if (v->type != REDIS_REPLY_INTEGER)
            return -EPROTO;
        *(text_eq(k, "count") ? &e->count : &e->entry_id) = v->integer;
    } else if (text_eq(k, "age-seconds")) {
        char num[64], *endp;
        if (!reply_is_text(v))
            return -EPROTO;
        copy_cut(num, sizeof num, v->str ? v->str : "", v->str ? v->len : 0);
        e->age_seconds = strtod(num, &endp);
        if (endp == num || !isfinite(e->age_seconds))
            return -EPROTO;
    } else if (reply_is_text(v)) {
        if (text_eq(k, "reason"))
            copy_cut(e->reason, sizeof e->reason, v->str, v->len);
        else if (text_eq(k, "context"))
            copy_cut(e->context, sizeof e->context, v->str, v->len);
        else if (text_eq(k, "username"))
            copy_cut(e->username, sizeof e->username, v->str, v->len);
        else if (text_eq(k, "client-info") && line_field(v->str, v->str + v->len, "addr=", 5, &a, &al))
            copy_cut(e->addr, sizeof e->addr, a, al);
    }
    return 0;
}

int aclops_log_parse(const redisReply *r, struct aclops_log_entry *entries, size_t max) {
    size_t n = 0;

    if (!r || r->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    for (size_t i = 0; i < r->elements && n < max; i++) {
        const redisReply *er = r->element[i];
        struct aclops_log_entry *e = &entries[n];
        if (er->type != REDIS_REPLY_ARRAY || er->elements % 2)
            return -EPROTO;
        memset(e, 0, sizeof *e);
        e->entry_id = -1;
        e->count = -1;
        for (size_t j = 0; j < er->elements; j += 2)
            if (!reply_is_text(er->element[j]) ||
                log_entry_field(e, er->element[j], er->element[j + 1]) < 0)
                return -EPROTO;
        if (e->count < 0 || !e->reason[0])
            return -EPROTO;
        n++;
    }
    return (int)n;
}

#define LOG_AGE_SLACK 1.0   /* seconds: the two reads' times are ours, the ages Redis's */

static bool near(double a, double b) {
    return a - b <= LOG_AGE_SLACK && b - a <= LOG_AGE_SLACK;
}

static bool log_wanted(const struct aclops_log_entry *e, const char *const *users, size_t n) {
    if (strcmp(e->reason, "auth") != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(e->username, users[i]) == 0)
            return true;
    return false;
}

static bool log_same_key(const struct aclops_log_entry *a, const struct aclops_log_entry *b) {
    return a->entry_id < 0 && b->entry_id < 0 && strcmp(a->reason, b->reason) == 0 &&
           strcmp(a->context, b->context) == 0 && strcmp(a->username, b->username) == 0;
}

static void failure_add(struct aclops_failure *out, size_t max, size_t *n,
                        const struct aclops_log_entry *e, long long delta) {
    if (delta <= 0)
        return;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(out[i].username, e->username) == 0 && strcmp(out[i].addr, e->addr) == 0) {
            out[i].count += delta;
            return;
        }
    if (*n >= max)
        return;
    snprintf(out[*n].username, sizeof out[*n].username, "%s", e->username);
    snprintf(out[*n].addr, sizeof out[*n].addr, "%s", e->addr[0] ? e->addr : "?");
    out[(*n)++].count = delta;
}

/* 7.2+: entry-id names an entry for good. Returns the new failures' count in e. */
static long long log_delta_by_id(const struct aclops_node *prev, const struct aclops_log_entry *e) {
    for (size_t i = 0; i < prev->nlog; i++)
        if (prev->log[i].entry_id == e->entry_id)
            return e->count - prev->log[i].count;
    return e->count;
}

/* 7.0: pairs each wanted entry of now with one of prev; delta[] = the new failures. */
static void log_match_70(const struct aclops_node *prev, const struct aclops_node *now,
                         size_t nnow, const bool *wanted, bool *used, long long *delta) {
    double dt = now->read_usec > prev->read_usec
                    ? (double)(now->read_usec - prev->read_usec) / 1e6 : 0.0;
    bool done[ACLOPS_LOG_MAX] = { false };

    /* First the entries nothing happened to: same count, older by the time between. */
    for (size_t j = 0; j < nnow; j++)
        for (size_t i = 0; wanted[j] && !done[j] && i < prev->nlog; i++)
            if (!used[i] && log_same_key(&prev->log[i], &now->log[j]) &&
                prev->log[i].count == now->log[j].count &&
                near(now->log[j].age_seconds, prev->log[i].age_seconds + dt)) {
                used[i] = done[j] = true;
                delta[j] = 0;
            }
    /* Then the ones updated since: a larger count, the age reset since the last read.
     * Redis updates only the newest entry of a kind, so the youngest candidate. */
    for (size_t j = 0; j < nnow; j++) {
        size_t best = SIZE_MAX;
        if (!wanted[j] || done[j] || now->log[j].age_seconds > dt + LOG_AGE_SLACK)
            continue;
        for (size_t i = 0; i < prev->nlog; i++)
            if (!used[i] && log_same_key(&prev->log[i], &now->log[j]) &&
                prev->log[i].count < now->log[j].count &&
                (best == SIZE_MAX || prev->log[i].age_seconds < prev->log[best].age_seconds))
                best = i;
        if (best != SIZE_MAX) {
            used[best] = done[j] = true;
            delta[j] = now->log[j].count - prev->log[best].count;
        }
    }
}

size_t aclops_log_diff(const struct aclops_node *prev, const struct aclops_node *now,
                       const char *const *users, size_t nusers, struct aclops_failure *out,
                       size_t max) {
    bool wanted[ACLOPS_LOG_MAX] = { false }, used[ACLOPS_LOG_MAX] = { false };
    long long delta[ACLOPS_LOG_MAX];
    size_t n = 0, nnow;

    if (!prev || !now || now->r != 0 || prev->r != 0)
        return 0;
    nnow = now->nlog < ACLOPS_LOG_MAX ? now->nlog : ACLOPS_LOG_MAX;
    for (size_t j = 0; j < nnow; j++) {
        const struct aclops_log_entry *e = &now->log[j];
        wanted[j] = log_wanted(e, users, nusers);
        delta[j] = e->entry_id >= 0 ? log_delta_by_id(prev, e) : e->count;
        if (e->entry_id >= 0)
            wanted[j] = wanted[j] && delta[j] > 0;
    }
    if (prev->nlog <= ACLOPS_LOG_MAX)
        log_match_70(prev, now, nnow, wanted, used, delta);
    for (size_t j = 0; j < nnow; j++)
        if (wanted[j])
            failure_add(out, max, &n, &now->log[j], delta[j]);
    return n;
}

/* ------------------------------------------------------------------------------------
 * The engine: every node at once, the login first
 *
 * Script: 0 AUTH, 1 PING (pipelined), then the call's commands from OP0. A call's step()
 * gets the replies after the login with k = command - OP0, owns them, and returns the
 * next command (an index into the script) or RNET_STOP after node_done / node_fail.
 */

enum { S_AUTH, S_PING, OP0, SCRIPT_MAX = OP0 + 4 };

struct run;
typedef int (*step_fn)(struct run *u, size_t i, size_t k, redisReply *reply);

struct run {
    const struct aclops_target *t;
    struct rnet_cmd script[SCRIPT_MAX];
    size_t nscript;
    step_fn step;
    size_t cap;                  /* the reply cap; 0: rnet's default */
    struct aclops_result *res;
    struct rnet_node *rn;
    /* per call */
    const char *user;
    redisReply **held;           /* compare: per node, both replies */
    long long *self_id;          /* client list: per node, our connection's id */
    size_t max_addrs;
    const char *hash;
    bool save;
};

static int node_fail(struct aclops_node *n, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int node_fail(struct aclops_node *n, int r, const char *fmt, ...) {
    va_list ap;

    n->r = r;
    va_start(ap, fmt);
    (void)vsnprintf(n->why, sizeof n->why, fmt, ap);
    va_end(ap);
    return RNET_STOP;
}

static int node_done(struct aclops_node *n) {
    n->r = 0;
    n->why[0] = '\0';
    return RNET_STOP;
}

/* An error (or unexpected) reply to `step`; NOPERM names the permission the login needs.
 * Only an error reply's text is quoted (already cut to its first word when the command
 * carried a password); any other reply is named by its type: a server (or a proxy) that
 * answers ACL SETUSER with a bulk string may be echoing the password. */
static int reply_failed(struct aclops_node *n, const char *step, const char *perm,
                        redisReply *reply) {
    char text[128] = "";
    bool is_error = reply->type == REDIS_REPLY_ERROR;
    int type = reply->type;
    bool noperm;

    if (is_error)
        resp_reply_text(reply, text, sizeof text);
    noperm = is_error && strncmp(text, "NOPERM", 6) == 0;
    resp_reply_wipe_free(reply);
    if (noperm) {
        node_fail(n, -EACCES, "%s: NOPERM (the login needs +%s)", step, perm);
        n->noperm = true;
        return RNET_STOP;
    }
    if (!is_error)
        return node_fail(n, -EIO, "%s: unexpected %s reply", step, resp_reply_type_name(type));
    return node_fail(n, -EIO, "%s: %s", step, text[0] ? text : "unexpected reply");
}

static int login_reply(struct run *u, struct aclops_node *n, redisReply *reply) {
    const struct rnet_cmd *c = &u->script[S_AUTH];
    char detail[200];
    enum resp_auth_result ar = resp_auth_judge(reply, c->argc, c->argv, c->argvlen, detail,
                                               sizeof detail);

    if (ar == RESP_AUTH_ACCEPTED)
        return S_PING;
    if (ar == RESP_AUTH_NOPASS)
        return OP0;
    return node_fail(n, ar == RESP_AUTH_IO ? -EIO : -EACCES, "login as %s: %s",
                     u->t->login_user ? u->t->login_user : "default",
                     detail[0] ? detail : resp_auth_result_to_string(ar));
}

static int on_reply(void *ud, struct rnet_node *rn, size_t cmd, redisReply *reply) {
    struct run *u = ud;
    size_t i = (size_t)(rn - u->rn);

    if (cmd == S_AUTH)
        return login_reply(u, &u->res->nodes[i], reply);
    if (cmd == S_PING) {
        resp_reply_wipe_free(reply);   /* +OK came before it: any answer will do */
        return OP0;
    }
    return u->step(u, i, cmd - OP0, reply);
}

/* A node rnet ended before the call's step did: why, as rnet said it. */
static void node_unfinished(const struct run *u, const struct rnet_node *rn,
                            struct aclops_node *n) {
    static const int err[] = { [RNET_OK] = -EIO, [RNET_UNREACHABLE] = -EHOSTUNREACH,
                               [RNET_TLS] = -EPROTO, [RNET_CERT] = -EKEYREJECTED,
                               [RNET_PROTOCOL] = -EPROTO, [RNET_INTERNAL] = -ENOMEM };
    const struct rnet_cmd *c = &rn->script[rn->step < u->nscript ? rn->step : 0];

    if (rn->over_objects)
        node_fail(n, -EMSGSIZE, "%s: reply of more than %d objects",
                  c->label ? c->label : c->argv[0], RESP_MAX_OBJECTS);
    else if (rn->over_cap)
        node_fail(n, -EMSGSIZE, "%s: reply over %zu bytes", c->label ? c->label : c->argv[0],
                  u->cap ? u->cap : (size_t)RESP_MAX_REPLY_BYTES);
    else if (rn->cls == RNET_OK)
        node_fail(n, -EIO, "%s: no reply", c->label ? c->label : c->argv[0]);
    else
        node_fail(n, err[rn->cls], "%s", rn->msg);
}

static int tally(struct aclops_result *res) {
    int first = 0;

    for (size_t i = 0; i < res->n; i++) {
        if (res->nodes[i].r == 0)
            res->ok++;
        else {
            res->failed++;
            if (!first)
                first = res->nodes[i].r;
        }
    }
    return first;
}

/* Runs u->script on every node of the target; fills u->res. */
static int run_all(struct run *u) {
    const struct aclops_target *t = u->t;
    struct rnet_opts o = { .tls = t->tls, .timeout_usec = t->timeout_usec,
                           .on_reply = on_reply, .userdata = u, .max_reply_bytes = u->cap };
    int r;

    u->rn = calloc(t->n ? t->n : 1, sizeof *u->rn);
    u->res->nodes = calloc(t->n ? t->n : 1, sizeof *u->res->nodes);
    if (!u->rn || !u->res->nodes) {
        free(u->rn);
        return -ENOMEM;
    }
    u->res->n = t->n;
    for (size_t i = 0; i < t->n; i++) {
        struct aclops_node *n = &u->res->nodes[i];
        u->rn[i] = (struct rnet_node){ .ep = t->nodes[i].ep, .verify_name = t->nodes[i].verify_name };
        endpoint_format(&u->rn[i].ep, n->name, sizeof n->name);
        n->r = -EINPROGRESS;
        if (t->problems && t->problems[i]) {
            node_fail(n, -EINVAL, "%s", t->problems[i]);
            continue;
        }
        u->rn[i].script = u->script;
        u->rn[i].nscript = u->nscript;
        u->rn[i].first = t->login_password ? S_AUTH : OP0;
    }
    r = rnet_run(&o, u->rn, t->n);
    for (size_t i = 0; r == 0 && i < t->n; i++)
        if (u->res->nodes[i].r == -EINPROGRESS)
            node_unfinished(u, &u->rn[i], &u->res->nodes[i]);
    free(u->rn);
    u->rn = NULL;
    return r < 0 ? r : tally(u->res);
}

/* Sets up the login commands and the result; the call adds its commands from OP0. */
static int run_init(struct run *u, const struct aclops_target *t, struct aclops_result *res) {
    memset(res, 0, sizeof *res);
    memset(u, 0, sizeof *u);
    if (!t || (t->n && !t->nodes))
        return -EINVAL;
    u->t = t;
    u->res = res;
    u->script[S_AUTH] = (struct rnet_cmd){ .label = "AUTH" };
    if (t->login_password) {
        u->script[S_AUTH].argc = resp_auth_argv(t->login_user, t->login_password,
                                                u->script[S_AUTH].argv, u->script[S_AUTH].argvlen);
        if (u->script[S_AUTH].argc < 0)
            return -EINVAL;
    }
    u->script[S_PING] = (struct rnet_cmd){ .label = "PING after AUTH", .argc = 1,
                                           .argv = { "PING" }, .pipelined = true };
    u->nscript = OP0;
    return 0;
}

static void add_cmd(struct run *u, const char *label, bool pipelined, int argc, ...) {
    struct rnet_cmd *c = &u->script[u->nscript++];
    va_list ap;

    *c = (struct rnet_cmd){ .label = label, .argc = argc, .pipelined = pipelined };
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        c->argv[i] = va_arg(ap, const char *);
    va_end(ap);
}

/* Ends a call: the script's secrets wiped, the result cleared when nothing was asked. */
static int run_end(struct run *u, int r) {
    explicit_bzero(u->script, sizeof u->script);
    if (r == -ENOMEM || r == -EINVAL)
        if (!u->res->ok && !u->res->failed)
            aclops_result_clear(u->res);
    return r;
}

/* ------------------------------------------------------------------------------------
 * The calls
 */

static int compare_step(struct run *u, size_t i, size_t k, redisReply *reply) {
    struct aclops_node *n = &u->res->nodes[i];

    if (reply->type != REDIS_REPLY_ARRAY && reply->type != REDIS_REPLY_NIL) {
        u->held[2 * i + k] = NULL;
        return reply_failed(n, "ACL GETUSER", "acl|getuser", reply);
    }
    u->held[2 * i + k] = reply;
    return k == 0 ? (int)(OP0 + 1) : node_done(n);
}

/* Both users' replies, compared in node order (the text does not depend on timing). */
static void compare_all(struct run *u, const char *a, const char *b) {
    for (size_t i = 0; i < u->res->n; i++) {
        struct aclops_node *n = &u->res->nodes[i];
        redisReply *ra = u->held[2 * i], *rb = u->held[2 * i + 1];
        if (n->r == 0) {
            int d = aclops_user_diff(n->name, a, ra, b, rb, u->res->diff, sizeof u->res->diff);
            if (d < 0)
                node_fail(n, -EPROTO, "ACL GETUSER: a reply that is not a user's rules");
            else
                n->differences = (unsigned)d;
        }
        if (ra)
            resp_reply_wipe_free(ra);
        if (rb)
            resp_reply_wipe_free(rb);
    }
}

int aclops_compare_users(const struct aclops_target *t, const char *a, const char *b,
                         struct aclops_result *res) {
    struct run u;
    int r = run_init(&u, t, res);

    if (r < 0 || !a || !b)
        return run_end(&u, r < 0 ? r : -EINVAL);
    add_cmd(&u, "ACL GETUSER", false, 3, "ACL", "GETUSER", a);
    add_cmd(&u, "ACL GETUSER", true, 3, "ACL", "GETUSER", b);
    u.step = compare_step;
    if (!(u.held = calloc(2 * (t->n ? t->n : 1), sizeof *u.held)))
        return run_end(&u, -ENOMEM);
    r = run_all(&u);
    compare_all(&u, a, b);
    free(u.held);
    /* A node whose diff could not be read fails now. */
    res->ok = res->failed = 0;
    return run_end(&u, r == -ENOMEM ? r : tally(res));
}

static int client_list_step(struct run *u, size_t i, size_t k, redisReply *reply) {
    struct aclops_node *n = &u->res->nodes[i];
    int r;

    if (k == 0) {
        if (reply->type != REDIS_REPLY_INTEGER)
            return reply_failed(n, "CLIENT ID", "client|id", reply);
        u->self_id[i] = reply->integer;
        freeReplyObject(reply);
        return OP0 + 1;
    }
    if (!reply_is_text(reply) || reply->type == REDIS_REPLY_STATUS)
        return reply_failed(n, "CLIENT LIST", "client|list", reply);
    if (u->max_addrs && !(n->addrs = calloc(u->max_addrs, sizeof *n->addrs))) {
        freeReplyObject(reply);
        return node_fail(n, -ENOMEM, "CLIENT LIST: out of memory");
    }
    r = aclops_client_list_parse(reply->str, reply->len, u->user, u->self_id[i], n->addrs,
                                 u->max_addrs, &n->count, &n->naddrs);
    freeReplyObject(reply);   /* addresses and names, no secret */
    if (r < 0)
        return node_fail(n, r, "CLIENT LIST: a line without id=, addr= or user=");
    return node_done(n);
}

int aclops_client_list(const struct aclops_target *t, const char *user, size_t cap_bytes,
                       size_t max_addrs, struct aclops_result *res) {
    struct run u;
    int r = run_init(&u, t, res);

    if (r < 0 || !user)
        return run_end(&u, r < 0 ? r : -EINVAL);
    /* Our own connection is left out by its id, in case we log in as that user. Not
     * pipelined: a reply over the cap must be CLIENT LIST's in the message. */
    add_cmd(&u, "CLIENT ID", false, 2, "CLIENT", "ID");
    add_cmd(&u, "CLIENT LIST", false, 2, "CLIENT", "LIST");
    u.step = client_list_step;
    u.user = user;
    u.max_addrs = max_addrs;
    u.cap = cap_bytes ? cap_bytes : ACLOPS_CLIENT_LIST_CAP;
    if (!(u.self_id = calloc(t->n ? t->n : 1, sizeof *u.self_id)))
        return run_end(&u, -ENOMEM);
    r = run_all(&u);
    free(u.self_id);
    return run_end(&u, r);
}

static int kill_step(struct run *u, size_t i, size_t k, redisReply *reply) {
    struct aclops_node *n = &u->res->nodes[i];

    (void)k;
    if (reply->type != REDIS_REPLY_INTEGER)
        return reply_failed(n, "CLIENT KILL USER", "client|kill", reply);
    n->count = reply->integer;
    freeReplyObject(reply);
    return node_done(n);
}

int aclops_client_kill_user(const struct aclops_target *t, const char *user,
                            struct aclops_result *res) {
    struct run u;
    int r = run_init(&u, t, res);

    if (r < 0 || !user)
        return run_end(&u, r < 0 ? r : -EINVAL);
    /* SKIPME is yes by default: our own connection stays. */
    add_cmd(&u, "CLIENT KILL USER", false, 4, "CLIENT", "KILL", "USER", user);
    u.step = kill_step;
    return run_end(&u, run_all(&u));
}

/* setuser script: OP0 ACL SETUSER, OP0+1 ACL SAVE, OP0+2 ACL GETUSER (the check of an
 * ERR to `!hash`: Redis refuses to forget a hash the user does not have). */
static bool hash_gone(const redisReply *r, const char *hash) {
    if (r->type == REDIS_REPLY_NIL)
        return true;   /* no such user: no such password either */
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return false;
    for (size_t i = 0; i < r->elements; i += 2)
        if (text_eq(r->element[i], "passwords"))
            return !toks_has(r->element[i + 1], hash, strlen(hash));
    return false;
}

static int setuser_step(struct run *u, size_t i, size_t k, redisReply *reply) {
    struct aclops_node *n = &u->res->nodes[i];
    const struct rnet_cmd *c = &u->script[OP0];
    bool ok = reply->type == REDIS_REPLY_STATUS;

    switch (k) {
    case 0:
        /* Redis echoes the argument (the password) in some errors: first word only. */
        resp_redact_error(reply, c->argc, c->argv, c->argvlen);
        if (!ok && u->hash && reply->type == REDIS_REPLY_ERROR &&
            strncmp(reply->str ? reply->str : "", "ERR", 3) == 0) {
            resp_reply_wipe_free(reply);
            return OP0 + 2;
        }
        if (!ok)
            return reply_failed(n, "ACL SETUSER", "acl|setuser", reply);
        break;
    case 1:
        if (!ok)
            return reply_failed(n, "ACL SAVE", "acl|save", reply);
        resp_reply_wipe_free(reply);
        return node_done(n);
    default:
        if (reply->type == REDIS_REPLY_ERROR)
            return reply_failed(n, "ACL GETUSER", "acl|getuser", reply);
        ok = hash_gone(reply, u->hash);
        if (!ok) {
            resp_reply_wipe_free(reply);
            return node_fail(n, -EIO, "ACL SETUSER: ERR (and the password hash is still there)");
        }
        break;
    }
    resp_reply_wipe_free(reply);
    return u->save ? (int)(OP0 + 1) : node_done(n);
}

static bool is_sha256_hex(const char *s) {
    size_t i = 0;

    for (; s && s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == 64;
}

/* The rule carrying the password or hash ("<c>value"), a secret the caller wipes. */
static char *setuser_arg(char c, const char *value, size_t len) {
    char *arg = malloc(len + 2);

    if (!arg)
        return NULL;
    arg[0] = c;
    memcpy(arg + 1, value, len);
    arg[len + 1] = '\0';
    return arg;
}

int aclops_setuser(const struct aclops_target *t, const char *user, enum aclops_setuser_op op,
                   const struct secret *password, const char *hash, bool save,
                   struct aclops_result *res) {
    struct run u;
    char *arg = NULL;
    size_t alen = 0;
    int r = run_init(&u, t, res);

    bool with_pw = op == ACLOPS_ENABLE || op == ACLOPS_RESTORE;
    if (r == 0 && (!user || (with_pw && !password) ||
                   (op == ACLOPS_FORGET_HASH && !is_sha256_hex(hash))))
        r = -EINVAL;
    if (r == 0 && op != ACLOPS_DISABLE) {
        arg = with_pw ? setuser_arg('>', secret_data(password), secret_len(password))
                      : setuser_arg('!', hash, 64);
        alen = with_pw ? secret_len(password) + 1 : 65;
        r = arg ? 0 : -ENOMEM;
    }
    if (r < 0)
        return run_end(&u, r);
    if (op == ACLOPS_ENABLE)
        add_cmd(&u, "ACL SETUSER", false, 6, "ACL", "SETUSER", user, "on", "resetpass", arg);
    else if (op == ACLOPS_RESTORE)
        add_cmd(&u, "ACL SETUSER", false, 5, "ACL", "SETUSER", user, "on", arg);
    else if (op == ACLOPS_DISABLE)
        add_cmd(&u, "ACL SETUSER", false, 5, "ACL", "SETUSER", user, "off", "resetpass");
    else
        add_cmd(&u, "ACL SETUSER", false, 4, "ACL", "SETUSER", user, arg);
    if (arg)   /* a password may hold any byte */
        u.script[OP0].argvlen[u.script[OP0].argc - 1] = alen;
    for (int j = 0; arg && j < u.script[OP0].argc - 1; j++)
        u.script[OP0].argvlen[j] = strlen(u.script[OP0].argv[j]);
    add_cmd(&u, "ACL SAVE", false, 2, "ACL", "SAVE");
    add_cmd(&u, "ACL GETUSER", false, 3, "ACL", "GETUSER", user);
    u.step = setuser_step;
    u.hash = op == ACLOPS_FORGET_HASH ? hash : NULL;
    u.save = save;
    r = run_all(&u);
    if (arg)
        secret_wipe_free(arg, alen + 1);
    return run_end(&u, r);
}

static int log_step(struct run *u, size_t i, size_t k, redisReply *reply) {
    struct aclops_node *n = &u->res->nodes[i];
    int r;

    (void)k;
    n->read_usec = rctime_mono_usec();
    if (reply->type == REDIS_REPLY_ERROR) {
        reply_failed(n, "ACL LOG", "acl|log", reply);
        if (n->noperm)
            snprintf(n->why, sizeof n->why, "no acl|log permission");
        return RNET_STOP;
    }
    if (!(n->log = calloc(ACLOPS_LOG_MAX, sizeof *n->log))) {
        resp_reply_wipe_free(reply);
        return node_fail(n, -ENOMEM, "ACL LOG: out of memory");
    }
    r = aclops_log_parse(reply, n->log, ACLOPS_LOG_MAX);
    resp_reply_wipe_free(reply);
    if (r < 0)
        return node_fail(n, r, "ACL LOG: a reply that is not a list of entries");
    n->nlog = (size_t)r;
    return node_done(n);
}

int aclops_acl_log(const struct aclops_target *t, struct aclops_result *res) {
    struct run u;
    int r = run_init(&u, t, res);

    if (r < 0)
        return run_end(&u, r);
    _Static_assert(ACLOPS_LOG_MAX == 128, "the count asked of ACL LOG");
    add_cmd(&u, "ACL LOG", false, 3, "ACL", "LOG", "128");
    u.step = log_step;
    return run_end(&u, run_all(&u));
}
