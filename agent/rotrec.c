/* rotrec: see rotrec.h. Passwords reach jansson only as json_t strings (its allocator,
 * set up by secret_init(), wipes what it frees); the dump goes into a buffer wiped before
 * it is freed, and jansson's own error text (which quotes input) is never used. */
#include "rotrec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "credfile.h"
#include "jsonload.h"
#include "rctime.h"

static const char *const phase_names[] = { [ROTREC_ADDING] = "adding", [ROTREC_REMOVING] = "removing",
                                           [ROTREC_ROLLING_BACK] = "rolling_back" };

const char *rotrec_phase_to_string(enum rotrec_phase p) {
    return (unsigned)p < sizeof phase_names / sizeof phase_names[0] ? phase_names[p] : "?";
}

const char *rotrec_action_to_string(enum rotrec_action a) {
    static const char *const names[] = {
        [ROTREC_CLAIM] = "claim", [ROTREC_CONTINUE] = "continue", [ROTREC_RESUME] = "resume",
        [ROTREC_WAIT] = "wait", [ROTREC_TAKE_OVER] = "take-over", [ROTREC_LOST] = "lost",
    };
    return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}

void rotrec_clear(struct rotrec *r) {
    if (!r)
        return;
    free(r->username);
    free(r->old_username);
    secret_free(r->password);
    secret_free(r->old_password);
    *r = (struct rotrec){ 0 };
}

static int dup_or_null(const char *s, char **ret) {
    *ret = s ? strdup(s) : NULL;
    return s && !*ret ? -ENOMEM : 0;
}

int rotrec_copy(const struct rotrec *from, struct rotrec *to) {
    struct rotrec c = *from;
    c.username = c.old_username = NULL;
    c.password = secret_dup(from->password);
    c.old_password = secret_dup(from->old_password);
    int r = dup_or_null(from->username, &c.username);
    if (r == 0)
        r = dup_or_null(from->old_username, &c.old_username);
    if (r == 0 && ((from->password && !c.password) || (from->old_password && !c.old_password)))
        r = -ENOMEM;
    rotrec_clear(to);
    if (r < 0) {
        rotrec_clear(&c);
        return r;
    }
    *to = c;
    return 0;
}

/* ---- format ---- */

static void put(json_t *o, const char *key, json_t *v, int *r) {
    if (!v) {
        if (*r == 0)
            *r = -EINVAL;
        return;
    }
    if (json_object_set_new(o, key, v) < 0 && *r == 0)
        *r = -ENOMEM;
}

static json_t *str_or_null(const char *s) {
    return s ? json_string(s) : json_null();
}

static json_t *pw_json(const struct secret *pw) {
    if (!pw || secret_len(pw) == 0 || memchr(secret_data(pw), '\0', secret_len(pw)))
        return NULL;
    return json_stringn(secret_data(pw), secret_len(pw));   /* NULL: not UTF-8 */
}

static json_t *time_json(int64_t t, bool allow_none) {
    char buf[40];
    if (allow_none && t == 0)
        return json_null();
    return rctime_format(t, buf, sizeof buf)[0] ? json_string(buf) : NULL;
}

int rotrec_format(const struct rotrec *rec, struct secret **ret) {
    /* (an epoch json_int_t cannot hold would be written negative: unreadable, rotrec_parse) */
    if (!rec->owner[0] || !rec->base_version[0] || rec->epoch == 0 || rec->epoch > (uint64_t)INT64_MAX)
        return -EINVAL;
    json_t *o = json_object();
    int r = o ? 0 : -ENOMEM;
    if (!o)
        return r;
    put(o, "format", json_integer(ROTREC_FORMAT), &r);
    put(o, "owner", json_string(rec->owner), &r);
    put(o, "owner_id", json_string(rec->owner_id), &r);
    put(o, "epoch", json_integer((json_int_t)rec->epoch), &r);
    put(o, "phase", json_string(rotrec_phase_to_string(rec->phase)), &r);
    put(o, "base_version", json_string(rec->base_version), &r);
    put(o, "username", str_or_null(rec->username), &r);
    put(o, "password", pw_json(rec->password), &r);
    put(o, "old_username", str_or_null(rec->old_username), &r);
    put(o, "old_password", pw_json(rec->old_password), &r);
    put(o, "claimed_at", time_json(rec->claimed_at, false), &r);
    put(o, "updated_at", time_json(rec->updated_at, false), &r);
    put(o, "wait_until", time_json(rec->wait_until, true), &r);
    put(o, "revoke", json_boolean(rec->revoke), &r);
    char *buf = r == 0 ? malloc(ROTREC_TEXT_MAX) : NULL;
    if (r == 0 && !buf)
        r = -ENOMEM;
    if (r == 0) {
        size_t n = json_dumpb(o, buf, ROTREC_TEXT_MAX, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (n == 0 || n >= ROTREC_TEXT_MAX)
            r = -ENOBUFS;
        else if (!(*ret = secret_new(buf, n)))
            r = -ENOMEM;
    }
    if (buf)
        secret_wipe_free(buf, ROTREC_TEXT_MAX);
    json_decref(o);
    return r;
}

/* ---- parse ---- */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* A string member without NULs into *ret (NULL when null and allowed). */
static int get_str(json_t *o, const char *key, bool allow_null, const char **ret, char *err, size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (allow_null && (!v || json_is_null(v))) {
        *ret = NULL;
        return 0;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return fail(err, errlen, "rotation record: \"%s\" must be a string%s", key, allow_null ? " or null" : "");
    *ret = json_string_value(v);
    return 0;
}

static int get_buf(json_t *o, const char *key, char *out, size_t size, char *err, size_t errlen) {
    const char *s;
    if (get_str(o, key, false, &s, err, errlen) < 0)
        return -EINVAL;
    if (!s[0] || strlen(s) >= size)
        return fail(err, errlen, "rotation record: \"%s\" is empty or longer than %zu bytes", key, size - 1);
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int get_opt_buf(json_t *o, const char *key, char *out, size_t size, char *err, size_t errlen) {
    out[0] = '\0';
    return json_object_get(o, key) ? get_buf(o, key, out, size, err, errlen) : 0;
}

static int get_user(json_t *o, const char *key, char **ret, char *err, size_t errlen) {
    const char *s;
    if (get_str(o, key, true, &s, err, errlen) < 0)
        return -EINVAL;
    return dup_or_null(s, ret) < 0 ? fail(err, errlen, "out of memory") : 0;
}

static int get_pw(json_t *o, const char *key, struct secret **ret, char *err, size_t errlen) {
    const char *s;
    if (get_str(o, key, false, &s, err, errlen) < 0)
        return -EINVAL;
    if (!s[0])
        return fail(err, errlen, "rotation record: \"%s\" is empty", key);
    return (*ret = secret_new(s, strlen(s))) ? 0 : fail(err, errlen, "out of memory");
}

static int get_time(json_t *o, const char *key, bool allow_null, int64_t *ret, char *err, size_t errlen) {
    const char *s;
    if (get_str(o, key, allow_null, &s, err, errlen) < 0)
        return -EINVAL;
    *ret = 0;
    if (s && rctime_parse(s, ret) < 0)
        return fail(err, errlen, "rotation record: \"%s\" is not an RFC 3339 time", key);
    return 0;
}

static int get_head(json_t *o, struct rotrec *rec, char *err, size_t errlen) {
    json_t *f = json_object_get(o, "format"), *e = json_object_get(o, "epoch");
    if (!json_is_integer(f))
        return fail(err, errlen, "rotation record: \"format\" must be an integer");
    if (json_integer_value(f) != ROTREC_FORMAT) {
        fail(err, errlen, "rotation record: format %lld is not one this version reads (%d)",
             (long long)json_integer_value(f), ROTREC_FORMAT);
        return -EPROTONOSUPPORT;
    }
    if (!json_is_integer(e) || json_integer_value(e) < 1)
        return fail(err, errlen, "rotation record: \"epoch\" must be a positive integer");
    rec->epoch = (uint64_t)json_integer_value(e);
    const char *ph;
    if (get_str(o, "phase", false, &ph, err, errlen) < 0)
        return -EINVAL;
    if (strcmp(ph, "adding") == 0)
        rec->phase = ROTREC_ADDING;
    else if (strcmp(ph, "removing") == 0)
        rec->phase = ROTREC_REMOVING;
    else if (strcmp(ph, "rolling_back") == 0)
        rec->phase = ROTREC_ROLLING_BACK;
    else
        return fail(err, errlen, "rotation record: \"phase\" must be \"adding\", \"removing\" or "
                    "\"rolling_back\" (an unknown phase: a newer redis-creds may have written it)");
    json_t *rv = json_object_get(o, "revoke");
    if (rv && !json_is_boolean(rv))
        return fail(err, errlen, "rotation record: \"revoke\" must be true or false");
    rec->revoke = json_is_true(rv);
    return 0;
}

int rotrec_parse(const char *text, size_t len, struct rotrec *ret, char *err, size_t errlen) {
    struct jsonload_error je;
    struct rotrec rec = { 0 };
    if (len > ROTREC_TEXT_MAX)
        return fail(err, errlen, "rotation record: larger than %d bytes", ROTREC_TEXT_MAX);
    json_t *o = jsonload_buf(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return fail(err, errlen, "rotation record: not JSON (line %d, column %d: %s)", je.line, je.column,
                    je.reason);
    int r = json_is_object(o) ? 0 : fail(err, errlen, "rotation record: not a JSON object");
    if (r == 0)
        r = get_head(o, &rec, err, errlen);
    if (r == 0 && (get_buf(o, "owner", rec.owner, sizeof rec.owner, err, errlen) < 0 ||
                   get_opt_buf(o, "owner_id", rec.owner_id, sizeof rec.owner_id, err, errlen) < 0 ||
                   get_buf(o, "base_version", rec.base_version, sizeof rec.base_version, err, errlen) < 0 ||
                   get_user(o, "username", &rec.username, err, errlen) < 0 ||
                   get_pw(o, "password", &rec.password, err, errlen) < 0 ||
                   get_user(o, "old_username", &rec.old_username, err, errlen) < 0 ||
                   get_pw(o, "old_password", &rec.old_password, err, errlen) < 0 ||
                   get_time(o, "claimed_at", false, &rec.claimed_at, err, errlen) < 0 ||
                   get_time(o, "updated_at", false, &rec.updated_at, err, errlen) < 0 ||
                   get_time(o, "wait_until", true, &rec.wait_until, err, errlen) < 0))
        r = -EINVAL;
    json_decref(o);
    if (r < 0) {
        rotrec_clear(&rec);
        return r;
    }
    *ret = rec;
    return 0;
}

/* ---- decisions ---- */

int64_t rotrec_takeover_at(const struct rotrec *r, int64_t pending_timeout_s) {
    int64_t from = r->updated_at > r->wait_until ? r->updated_at : r->wait_until;
    return from + pending_timeout_s;
}

enum rotrec_action rotrec_decide(const struct rotrec *read, const char *host, const char *owner_id,
                                 uint64_t held_epoch, int64_t now, int64_t pending_timeout_s) {
    if (!read)
        return held_epoch ? ROTREC_LOST : ROTREC_CLAIM;
    bool mine = strcmp(read->owner, host) == 0 && strcmp(read->owner_id, owner_id) == 0;
    if (held_epoch)
        return mine && read->epoch == held_epoch ? ROTREC_CONTINUE : ROTREC_LOST;
    if (mine)
        return ROTREC_RESUME;
    return now > rotrec_takeover_at(read, pending_timeout_s) ? ROTREC_TAKE_OVER : ROTREC_WAIT;
}

enum rotrec_step rotrec_next_step(const struct rotrec *r) {
    switch (r->phase) {
    case ROTREC_REMOVING: return ROTREC_STEP_REMOVE;
    case ROTREC_ROLLING_BACK: return ROTREC_STEP_ROLL_BACK;
    case ROTREC_ADDING: break;
    }
    return ROTREC_STEP_ADD;
}

int rotrec_roll_back(struct rotrec *r, int64_t now) {
    if (r->phase == ROTREC_REMOVING)
        return -EPERM;
    r->phase = ROTREC_ROLLING_BACK;
    r->updated_at = now;
    return 0;
}

bool rotrec_rollback_complete(const struct rotrec *r, unsigned nodes, unsigned removed) {
    return r->phase == ROTREC_ROLLING_BACK && nodes > 0 && removed == nodes;
}

static bool same_user(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

enum rotrec_entry rotrec_entry_is(const struct rotrec *r, const char *username,
                                  const struct secret *password) {
    if (same_user(username, r->old_username) && secret_equal(password, r->old_password))
        return ROTREC_ENTRY_BASE;
    if (same_user(username, r->username) && secret_equal(password, r->password))
        return ROTREC_ENTRY_PENDING;
    return ROTREC_ENTRY_OTHER;
}
