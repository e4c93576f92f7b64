/* vault_parse: see vault_parse.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "credfile.h"
#include "rctime.h"
#include "jsonload.h"
#include "vault_parse.h"

/* ---- helpers ------------------------------------------------------------------------ */

static json_t *load(const char *body, size_t len, const char *what, struct rc_error *err) {
    struct jsonload_error jerr;
    json_t *root = jsonload_buf(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        /* Position and a generic reason only: jansson's text may quote a secret. */
        rc_error_set(err, RC_ERR_INVALID, "%s: malformed JSON in the response (line %d, column %d: %s)",
                     what, jerr.line, jerr.column, jerr.reason);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        rc_error_set(err, RC_ERR_INVALID, "%s: the response is not a JSON object", what);
        return NULL;
    }
    return root;
}

/* Appends src to out (one line, control characters as spaces, runs of blanks squeezed). */
static void append_clean(char *out, size_t outlen, const char *src, size_t n) {
    size_t used = strlen(out);
    bool blank = used == 0 || out[used - 1] == ' ';
    for (size_t i = 0; i < n && used + 1 < outlen; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch < 0x20 || ch == 0x7f || ch == ' ') {
            if (!blank)
                out[used++] = ' ';
            blank = true;
            continue;
        }
        out[used++] = (char)ch;
        blank = false;
    }
    out[used] = '\0';
}

static void rtrim(char *out) {
    size_t used = strlen(out);
    while (used > 0 && out[used - 1] == ' ')
        out[--used] = '\0';
}

/* "; " between two errors. */
static void append_sep(char *out, size_t outlen) {
    rtrim(out);
    size_t used = strlen(out);
    if (used && used + 2 < outlen) {
        out[used] = ';';
        out[used + 1] = ' ';
        out[used + 2] = '\0';
    }
}

/* One errors[] string: a go-multierror text lists its items after "\n\t* ". */
static void append_error(char *out, size_t outlen, const char *e) {
    const char *item = strstr(e, "\n\t* ");
    bool multi = item && strstr(e, "occurred:") && strstr(e, "occurred:") < item;
    if (!multi) {
        append_sep(out, outlen);
        append_clean(out, outlen, e, strlen(e));
        return;
    }
    while (item) {
        item += 4;
        const char *end = strstr(item, "\n\t* ");
        size_t n = end ? (size_t)(end - item) : strlen(item);
        if (n)
            append_sep(out, outlen);
        append_clean(out, outlen, item, n);
        item = end;
    }
}

void vault_errors_text_whole(const char *body, size_t len, char *out, size_t outlen) {
    if (outlen == 0)
        return;
    out[0] = '\0';
    json_t *root = json_loadb(body ? body : "", len, 0, NULL);
    json_t *errs = root ? json_object_get(root, "errors") : NULL;
    size_t i;
    json_t *e;
    if (json_is_array(errs)) {
        json_array_foreach(errs, i, e) {
            if (json_is_string(e))
                append_error(out, outlen, json_string_value(e));
        }
    }
    json_decref(root);
    rtrim(out);
}

void vault_errors_cut(char *text) {
    if (strlen(text) >= VAULT_ERRTEXT_MAX)
        memcpy(text + VAULT_ERRTEXT_MAX - 4, "...", 4);
}

void vault_errors_text(const char *body, size_t len, char *out, size_t outlen) {
    char buf[VAULT_ERRTEXT_MAX + 4] = "";
    if (outlen == 0)
        return;
    vault_errors_text_whole(body, len, buf, sizeof buf);
    vault_errors_cut(buf);
    snprintf(out, outlen, "%s", buf);
}

bool vault_errors_has(const char *body, size_t len, const char *needle) {
    bool found = false;
    json_t *root = json_loadb(body ? body : "", len, 0, NULL);
    json_t *errs = root ? json_object_get(root, "errors") : NULL;
    size_t i;
    json_t *e;
    if (json_is_array(errs)) {
        json_array_foreach(errs, i, e) {
            if (json_is_string(e) && strcasestr(json_string_value(e), needle))
                found = true;
        }
    }
    json_decref(root);
    return found;
}

enum rc_err_class vault_status_class(long status) {
    switch (status) {
    case 400: return RC_ERR_FATAL;      /* the request is wrong: the configuration is */
    case 401:
    case 403: return RC_ERR_AUTH;
    case 404: return RC_ERR_NOT_FOUND;
    case 412:                           /* index state not yet replicated: retry */
    case 423:                           /* namespace locked by an operator */
    case 429: return RC_ERR_TRANSIENT;
    default: break;
    }
    if (status >= 500 && status <= 599)
        return RC_ERR_TRANSIENT;        /* 500, 502, 503 sealed / no active node, 504 */
    if (status >= 400 && status <= 499)
        return RC_ERR_FATAL;            /* 405, 413, 415: what we ask is wrong */
    return RC_ERR_INVALID;              /* 1xx, 3xx other than 307, odd 2xx */
}

/* ---- paths and URLs ------------------------------------------------------------------- */

static char *strip_slashes(const char *s, size_t n) {
    while (n && *s == '/') {
        s++;
        n--;
    }
    while (n && s[n - 1] == '/')
        n--;
    return strndup(s, n);
}

int vault_path_split(const char *path, const char *mount, char **ret_mount, char **ret_rest,
                     struct rc_error *err) {
    char *m = NULL, *r = NULL;
    if (!path || !path[0])
        return rc_error_set(err, RC_ERR_FATAL, "path is empty");
    char *p = strip_slashes(path, strlen(path));
    if (!p)
        return rc_error_oom(err);
    if (mount && mount[0]) {
        m = strip_slashes(mount, strlen(mount));
        size_t ml = m ? strlen(m) : 0;
        if (!m || ml == 0) {
            free(p);
            free(m);
            return rc_error_set(err, RC_ERR_FATAL, "mount \"%s\" is empty", mount);
        }
        if (strncmp(p, m, ml) != 0 || p[ml] != '/' || !p[ml + 1]) {
            rc_error_set(err, RC_ERR_FATAL, "path \"%s\" does not start with its mount \"%s/\" "
                         "followed by a secret name", path, m);
            free(p);
            free(m);
            return -1;
        }
        r = strip_slashes(p + ml + 1, strlen(p + ml + 1));
    } else {
        char *slash = strchr(p, '/');
        if (!slash || !slash[1]) {
            rc_error_set(err, RC_ERR_FATAL, "path \"%s\" needs a mount and a secret name "
                         "(\"secret/redis/cache\")", path);
            free(p);
            return -1;
        }
        m = strndup(p, (size_t)(slash - p));
        r = strip_slashes(slash + 1, strlen(slash + 1));
    }
    free(p);
    if (!m || !r || !r[0]) {
        bool oom = !m || !r;
        free(m);
        free(r);
        return oom ? rc_error_oom(err)
                   : rc_error_set(err, RC_ERR_FATAL, "path \"%s\" names no secret", path);
    }
    *ret_mount = m;
    *ret_rest = r;
    return 0;
}

int vault_path_encode(const char *path, char *out, size_t outlen) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    const char *seg = path;
    if (!path || !path[0] || outlen == 0)
        return -1;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return -1;
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)seg[i];
            if (ch < 0x20 || ch == 0x7f)
                return -1;
            if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
                if (o + 1 >= outlen)
                    return -1;
                out[o++] = (char)ch;
            } else {
                if (o + 3 >= outlen)
                    return -1;
                out[o++] = '%';
                out[o++] = hex[ch >> 4];
                out[o++] = hex[ch & 15];
            }
        }
        if (!end)
            break;
        if (o + 1 >= outlen)
            return -1;
        out[o++] = '/';
        seg = end + 1;
    }
    out[o] = '\0';
    return 0;
}

int vault_url_parts(const char *url, char *scheme, size_t slen, char *host, size_t hlen, long *port) {
    const char *sep = strstr(url, "://");
    if (!sep || sep == url || (size_t)(sep - url) >= slen)
        return -1;
    for (size_t i = 0; url + i < sep; i++)
        scheme[i] = (char)tolower((unsigned char)url[i]);
    scheme[sep - url] = '\0';
    const char *h = sep + 3, *hend;
    if (strchr(h, '@') && strchr(h, '@') < h + strcspn(h, "/?#"))
        return -1;   /* userinfo: never */
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend)
            return -1;
        hend++;
    } else
        hend = h + strcspn(h, ":/?#");
    if (hend == h || (size_t)(hend - h) >= hlen)
        return -1;
    for (size_t i = 0; h + i < hend; i++)
        host[i] = (char)tolower((unsigned char)h[i]);
    host[hend - h] = '\0';
    if (*hend == ':') {
        char *e;
        errno = 0;
        long p = strtol(hend + 1, &e, 10);
        if (errno || e == hend + 1 || p <= 0 || p > 65535 || (*e && !strchr("/?#", *e)))
            return -1;
        *port = p;
    } else if (*hend && !strchr("/?#", *hend))
        return -1;
    else
        *port = strcmp(scheme, "https") == 0 ? 443 : strcmp(scheme, "http") == 0 ? 80 : 0;
    return 0;
}

int vault_redirect_target(const char *base, const char *location, char *out, size_t outlen,
                          char *why, size_t whylen) {
    char bs[16], bh[256], ls[16], lh[256];
    long bp, lp;
    if (!location || !location[0]) {
        snprintf(why, whylen, "a redirect without a Location");
        return -1;
    }
    for (const char *c = location; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            snprintf(why, whylen, "a redirect to a malformed Location");
            return -1;
        }
    if (vault_url_parts(base, bs, sizeof bs, bh, sizeof bh, &bp) < 0) {
        snprintf(why, whylen, "the configured address is not a URL");
        return -1;
    }
    if (location[0] == '/' && location[1] != '/') {
        /* Relative: same origin as the configured address. */
        int n = snprintf(out, outlen, "%s://%s:%ld%s", bs, bh, bp, location);
        if (n < 0 || (size_t)n >= outlen) {
            snprintf(why, whylen, "a redirect to an overlong Location");
            return -1;
        }
        return 0;
    }
    if (vault_url_parts(location, ls, sizeof ls, lh, sizeof lh, &lp) < 0) {
        snprintf(why, whylen, "a redirect to a Location that is not a URL");
        return -1;
    }
    if (strcmp(ls, "https") != 0) {
        snprintf(why, whylen, "a redirect to %s (only https is followed)", ls);
        return -1;
    }
    if (strcmp(lh, bh) != 0) {
        snprintf(why, whylen, "a redirect to another host (%.100s; only %.100s is followed)", lh, bh);
        return -1;
    }
    if ((size_t)snprintf(out, outlen, "%s", location) >= outlen) {
        snprintf(why, whylen, "a redirect to an overlong Location");
        return -1;
    }
    return 0;
}

/* ---- credentials ------------------------------------------------------------------------ */

void vault_cred_clear(struct vault_cred *c) {
    if (!c)
        return;
    free(c->username);
    c->username = NULL;
    c->password = secret_free(c->password);
    c->rotated_at = 0;
}

/* The fields of a flat object of strings (KV data). */
static int cred_from_object(json_t *obj, const struct vault_fields *f, struct vault_cred *ret,
                            const char *what, struct rc_error *err) {
    json_t *u = json_object_get(obj, f->username);
    json_t *p = json_object_get(obj, f->password);
    if (!p)
        return rc_error_set(err, RC_ERR_NOT_FOUND, "%s: the secret has no field \"%s\" "
                            "(password_field)", what, f->password);
    if (!json_is_string(p))
        return rc_error_set(err, RC_ERR_INVALID, "%s: field \"%s\" is not a string", what, f->password);
    if (json_string_length(p) == 0)
        return rc_error_set(err, RC_ERR_INVALID, "%s: field \"%s\" is empty", what, f->password);
    if (!u && f->username_required)
        return rc_error_set(err, RC_ERR_NOT_FOUND, "%s: the secret has no field \"%s\" "
                            "(username_field)", what, f->username);
    if (u && !json_is_string(u) && !json_is_null(u))
        return rc_error_set(err, RC_ERR_INVALID, "%s: field \"%s\" is not a string (or null for "
                            "the default user)", what, f->username);
    if (json_is_string(u) && json_string_length(u) == 0)
        return rc_error_set(err, RC_ERR_INVALID, "%s: field \"%s\" is empty (use null for the "
                            "default user)", what, f->username);
    if (json_is_string(u) && strlen(json_string_value(u)) != json_string_length(u))
        return rc_error_set(err, RC_ERR_INVALID, "%s: field \"%s\" contains a NUL byte", what, f->username);
    struct vault_cred c = { 0 };
    c.password = secret_new(json_string_value(p), json_string_length(p));
    if (json_is_string(u))
        c.username = strdup(json_string_value(u));
    if (!c.password || (json_is_string(u) && !c.username)) {
        vault_cred_clear(&c);
        return rc_error_oom(err);
    }
    *ret = c;
    return 0;
}

static bool get_int(json_t *o, const char *key, int64_t *ret) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return false;
    *ret = (int64_t)json_integer_value(v);
    return true;
}

/* A JSON number (Vault writes some float64 seconds) as whole seconds. */
static bool get_seconds(json_t *o, const char *key, int64_t *ret) {
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        *ret = (int64_t)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) > -1e15 && json_real_value(v) < 1e15)
        *ret = (int64_t)(json_real_value(v) + (json_real_value(v) >= 0 ? 0.5 : -0.5));
    else
        return false;
    return true;
}

/* A KV v2 version entry (metadata's versions map, or data.metadata): gone for reading? */
static void version_state(json_t *v, int64_t now_unix, bool *deleted, bool *destroyed) {
    json_t *dt = json_object_get(v, "deletion_time");
    json_t *ds = json_object_get(v, "destroyed");
    int64_t t;
    *destroyed = json_is_true(ds);
    *deleted = false;
    if (json_is_string(dt) && json_string_length(dt) > 0) {
        /* A future deletion_time (delete_version_after) is still readable. An unparsable
         * one counts as deleted: Vault itself would not serve it. */
        *deleted = rctime_parse(json_string_value(dt), &t) < 0 || t <= now_unix;
    }
}

int vault_parse_kv2_metadata(const char *body, size_t len, int64_t now_unix,
                             struct vault_kv2_meta *ret, const char *what, struct rc_error *err) {
    json_t *root = load(body, len, what, err);
    if (!root)
        return -1;
    int r = -1;
    json_t *data = json_object_get(root, "data");
    struct vault_kv2_meta m = { 0 };
    if (!json_is_object(data)) {
        rc_error_set(err, RC_ERR_INVALID, "%s: the response has no \"data\" object", what);
        goto out;
    }
    if (!get_int(data, "current_version", &m.current_version) || m.current_version < 0) {
        rc_error_set(err, RC_ERR_INVALID, "%s: \"current_version\" is missing or not a non-negative "
                     "integer", what);
        goto out;
    }
    json_t *versions = json_object_get(data, "versions");
    if (json_is_object(versions)) {
        const char *k;
        json_t *v;
        json_object_foreach(versions, k, v) {
            char *end;
            errno = 0;
            long long n = strtoll(k, &end, 10);
            if (errno || *end || end == k || n <= 0 || !json_is_object(v))
                continue;
            bool del, des;
            version_state(v, now_unix, &del, &des);
            if (n == m.current_version) {
                m.current_deleted = del;
                m.current_destroyed = des;
            } else if (n < m.current_version && !del && !des && n > m.prior_version)
                m.prior_version = n;
        }
    }
    *ret = m;
    r = 0;
out:
    json_decref(root);
    return r;
}

int vault_parse_kv2_data(long status, const char *body, size_t len, const struct vault_fields *f,
                         struct vault_cred *ret, int64_t *ret_version, const char *what,
                         struct rc_error *err) {
    if (status == 404) {
        /* A deleted or destroyed version answers 404 with the whole envelope. */
        json_t *root = json_loadb(body ? body : "", len, 0, NULL);
        json_t *data = json_object_get(root, "data");
        json_t *meta = json_object_get(data, "metadata");
        int64_t v = 0;
        if (json_is_object(meta)) {
            bool del, des;
            version_state(meta, INT64_MAX, &del, &des);
            get_int(meta, "version", &v);
            json_decref(root);
            if (des)
                return rc_error_set(err, RC_ERR_INVALID, "%s: version %lld is destroyed; write a new "
                                    "version", what, (long long)v);
            return rc_error_set(err, RC_ERR_NOT_FOUND, "%s: version %lld is deleted; undelete it or "
                                "write a new version", what, (long long)v);
        }
        json_decref(root);
        return rc_error_set(err, RC_ERR_NOT_FOUND, "%s: 404 no such secret", what);
    }
    json_t *root = load(body, len, what, err);
    if (!root)
        return -1;
    int r = -1;
    json_t *data = json_object_get(root, "data");
    json_t *inner = json_object_get(data, "data");
    json_t *meta = json_object_get(data, "metadata");
    int64_t v = 0;
    if (!json_is_object(data))
        rc_error_set(err, RC_ERR_INVALID, "%s: the response has no \"data\" object", what);
    else if (json_is_null(inner))
        rc_error_set(err, RC_ERR_INVALID, "%s: the version holds no data (deleted or destroyed)", what);
    else if (!json_is_object(inner))
        rc_error_set(err, RC_ERR_INVALID, "%s: \"data.data\" is not an object (is this a KV v2 "
                     "mount? set engine = \"kv1\" for KV v1)", what);
    else if (!json_is_object(meta) || !get_int(meta, "version", &v) || v <= 0)
        rc_error_set(err, RC_ERR_INVALID, "%s: \"data.metadata.version\" is missing or not a "
                     "positive integer", what);
    else if (cred_from_object(inner, f, ret, what, err) == 0) {
        /* An agent's rotation made this version: the fleet's clock counts from when Vault
         * wrote it (its own clock, the same for every host). */
        json_t *ct = json_object_get(meta, "created_time");
        int64_t t;
        if (json_object_get(inner, VAULT_KEY_ROTATED_AT) && json_is_string(ct) &&
            rctime_parse(json_string_value(ct), &t) == 0 && t > 0)
            ret->rotated_at = t;
        *ret_version = v;
        r = 0;
    }
    json_decref(root);
    return r;
}

int vault_parse_kv1_data(const char *body, size_t len, const struct vault_fields *f,
                         struct vault_cred *ret, const char *what, struct rc_error *err) {
    json_t *root = load(body, len, what, err);
    if (!root)
        return -1;
    int r = -1;
    json_t *data = json_object_get(root, "data");
    if (!json_is_object(data))
        rc_error_set(err, RC_ERR_INVALID, "%s: the response has no \"data\" object", what);
    else if (json_is_object(json_object_get(data, "data")) && json_is_object(json_object_get(data, "metadata")) &&
             !json_object_get(data, f->password))
        rc_error_set(err, RC_ERR_INVALID, "%s: this looks like a KV v2 answer; set engine = \"kv2\"", what);
    else
        r = cred_from_object(data, f, ret, what, err);
    json_decref(root);
    return r;
}

int vault_parse_static_creds(const char *body, size_t len, struct vault_static_creds *ret,
                             const char *what, struct rc_error *err) {
    json_t *root = load(body, len, what, err);
    if (!root)
        return -1;
    int r = -1;
    struct vault_static_creds sc = { 0 };
    json_t *data = json_object_get(root, "data");
    json_t *lvr = json_object_get(data, "last_vault_rotation");
    json_t *sched = json_object_get(data, "rotation_schedule");
    static const struct vault_fields fields = { .username = "username", .password = "password",
                                                .username_required = true };
    if (!json_is_object(data)) {
        rc_error_set(err, RC_ERR_INVALID, "%s: the response has no \"data\" object", what);
        goto out;
    }
    if (!json_object_get(data, "password") && json_object_get(data, "rsa_private_key")) {
        rc_error_set(err, RC_ERR_INVALID, "%s: the role's credential_type is rsa_private_key, not a "
                     "password", what);
        goto out;
    }
    if (!json_is_string(lvr) || json_string_length(lvr) == 0 || json_string_length(lvr) >= RC_VERSION_MAX) {
        rc_error_set(err, RC_ERR_INVALID, "%s: \"last_vault_rotation\" is missing or not a time "
                     "(is this a static role?)", what);
        goto out;
    }
    for (const char *c = json_string_value(lvr); *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            rc_error_set(err, RC_ERR_INVALID, "%s: \"last_vault_rotation\" contains control characters", what);
            goto out;
        }
    if (!get_seconds(data, "ttl", &sc.ttl) || sc.ttl < 0) {
        rc_error_set(err, RC_ERR_INVALID, "%s: \"ttl\" is missing or not a non-negative number", what);
        goto out;
    }
    if (json_object_get(data, "rotation_period") &&
        (!get_seconds(data, "rotation_period", &sc.rotation_period) || sc.rotation_period < 0)) {
        rc_error_set(err, RC_ERR_INVALID, "%s: \"rotation_period\" is not a non-negative number", what);
        goto out;
    }
    if (json_is_string(sched))
        snprintf(sc.rotation_schedule, sizeof sc.rotation_schedule, "%s", json_string_value(sched));
    if (cred_from_object(data, &fields, &sc.cred, what, err) < 0)
        goto out;
    snprintf(sc.version, sizeof sc.version, "%s", json_string_value(lvr));
    *ret = sc;
    r = 0;
out:
    json_decref(root);
    return r;
}

/* ---- tokens -------------------------------------------------------------------------------- */

void vault_auth_clear(struct vault_auth *a) {
    if (a)
        a->client_token = secret_free(a->client_token);
}

int vault_parse_auth(const char *body, size_t len, struct vault_auth *ret, const char *what,
                     struct rc_error *err) {
    json_t *root = load(body, len, what, err);
    if (!root)
        return -1;
    int r = -1;
    struct vault_auth a = { 0 };
    json_t *auth = json_object_get(root, "auth");
    json_t *tok = json_object_get(auth, "client_token");
    json_t *ren = json_object_get(auth, "renewable");
    json_t *warnings = json_object_get(root, "warnings");
    if (!json_is_object(auth))
        rc_error_set(err, RC_ERR_INVALID, "%s: the response has no \"auth\" object", what);
    else if (!json_is_string(tok) || json_string_length(tok) == 0 ||
             strlen(json_string_value(tok)) != json_string_length(tok))
        rc_error_set(err, RC_ERR_INVALID, "%s: \"auth.client_token\" is missing or not a string", what);
    else if (!get_seconds(auth, "lease_duration", &a.lease_duration) || a.lease_duration < 0)
        rc_error_set(err, RC_ERR_INVALID, "%s: \"auth.lease_duration\" is missing or not a "
                     "non-negative number", what);
    else if (ren && !json_is_boolean(ren))
        rc_error_set(err, RC_ERR_INVALID, "%s: \"auth.renewable\" is not a boolean", what);
    else {
        for (const char *c = json_string_value(tok); *c; c++)
            if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
                rc_error_set(err, RC_ERR_INVALID, "%s: \"auth.client_token\" contains blanks or "
                             "control characters", what);
                goto out;
            }
        a.renewable = json_is_true(ren);
        size_t i;
        json_t *w;
        if (json_is_array(warnings))
            json_array_foreach(warnings, i, w) {
                if (json_is_string(w) && strcasestr(json_string_value(w), "max_ttl"))
                    a.ttl_capped_warning = true;
            }
        a.client_token = secret_new(json_string_value(tok), json_string_length(tok));
        if (!a.client_token)
            rc_error_oom(err);
        else {
            *ret = a;
            r = 0;
        }
    }
out:
    json_decref(root);
    return r;
}

int vault_parse_lookup(const char *body, size_t len, struct vault_lookup *ret, const char *what,
                       struct rc_error *err) {
    json_t *root = load(body, len, what, err);
    if (!root)
        return -1;
    int r = -1;
    struct vault_lookup l = { 0 };
    json_t *data = json_object_get(root, "data");
    json_t *ren = json_object_get(data, "renewable");
    json_t *type = json_object_get(data, "type");
    if (!json_is_object(data))
        rc_error_set(err, RC_ERR_INVALID, "%s: the response has no \"data\" object", what);
    else if (!get_seconds(data, "ttl", &l.ttl) || l.ttl < 0)
        rc_error_set(err, RC_ERR_INVALID, "%s: \"data.ttl\" is missing or not a non-negative number", what);
    else if (ren && !json_is_boolean(ren))
        rc_error_set(err, RC_ERR_INVALID, "%s: \"data.renewable\" is not a boolean", what);
    else {
        l.renewable = json_is_true(ren);
        if (!get_seconds(data, "creation_ttl", &l.creation_ttl) || l.creation_ttl < 0)
            l.creation_ttl = 0;
        if (json_is_string(type))
            snprintf(l.type, sizeof l.type, "%s", json_string_value(type));
        *ret = l;
        r = 0;
    }
    json_decref(root);
    return r;
}

/* ---- timing ---------------------------------------------------------------------------------- */

uint64_t vault_token_due(uint64_t now, int64_t ttl_s, uint64_t rnd) {
    if (ttl_s <= 0)
        return 0;
    uint64_t ttl = (uint64_t)ttl_s * VAULT_USEC_PER_SEC;
    uint64_t at = ttl / 3 * 2;
    uint64_t jitter = ttl / 10 ? rnd % (ttl / 10) : 0;
    at -= jitter < at ? jitter : at;
    if (at < VAULT_USEC_PER_SEC)
        at = ttl_s > 1 ? VAULT_USEC_PER_SEC : ttl / 2;
    return now + at;
}

uint64_t vault_rot_update(struct vault_rot *st, const char *version, int64_t ttl_s, uint64_t now,
                          bool *ret_changed) {
    bool changed = !st->have || strcmp(st->version, version) != 0;
    uint64_t ttl = ttl_s > 0 ? (uint64_t)ttl_s * VAULT_USEC_PER_SEC : 0;
    *ret_changed = changed;
    st->have = true;
    snprintf(st->version, sizeof st->version, "%s", version);

    if (!changed && st->awaiting) {
        if (now - st->await_start < VAULT_ROT_AWAIT_MAX_USEC)
            return now + VAULT_ROT_POLL_USEC;
        /* Vault has not rotated in time (its rotation may be failing): stop polling
         * fast; look again at the next TTL, or after a while when there is none. */
        st->awaiting = false;
        st->expected = ttl ? now + ttl : 0;
        return ttl > VAULT_ROT_LEAD_USEC + VAULT_ROT_POLL_USEC ? st->expected - VAULT_ROT_LEAD_USEC
                                                               : now + VAULT_ROT_STUCK_RETRY_USEC;
    }
    /* Due (or overdue) without a new version: poll until it appears. */
    bool due = ttl == 0 || (!changed && st->expected && now + VAULT_ROT_LEAD_USEC + VAULT_ROT_POLL_USEC / 4 >= st->expected);
    if (due) {
        st->awaiting = true;
        st->await_start = now;
        st->expected = now;
        return now + VAULT_ROT_POLL_USEC;
    }
    st->awaiting = false;
    st->expected = now + ttl;
    uint64_t next = st->expected - VAULT_ROT_LEAD_USEC;
    return next > now + VAULT_ROT_POLL_USEC ? next : now + VAULT_ROT_POLL_USEC;
}

/* JSON_COMPACT text of root into a malloc'd buffer (no NUL) the caller wipes and frees. */
static int dump_wiped(json_t *root, char **ret, size_t *ret_len) {
    size_t need = json_dumpb(root, NULL, 0, JSON_COMPACT);
    char *buf = need ? malloc(need) : NULL;
    if (!buf || json_dumpb(root, buf, need, JSON_COMPACT) != need) {
        if (buf)
            secret_wipe_free(buf, need);
        return -ENOMEM;
    }
    *ret = buf;
    *ret_len = need;
    return 0;
}

static int add_mark(json_t *data, const struct rc_rotation_mark *mark) {
    char at[32];
    if (!mark)
        return 0;
    if (!rctime_format(mark->rotated_at, at, sizeof at)[0] || !mark->rotated_by)
        return -EINVAL;
    if (json_object_set_new(data, VAULT_KEY_ROTATED_AT, json_string(at)) < 0 ||
        json_object_set_new(data, VAULT_KEY_ROTATED_BY, json_string(mark->rotated_by)) < 0)
        return -EINVAL;
    return 0;
}

int vault_kv2_write_body(const struct vault_fields *f, const char *username,
                         const struct secret *password, const struct rc_rotation_mark *mark,
                         int64_t cas, char **ret, size_t *ret_len) {
    json_t *pw = json_stringn(secret_data(password), secret_len(password));
    json_t *data = json_object(), *root = NULL;
    int r = -EINVAL;
    if (!pw || !data || json_object_set(data, f->password, pw) < 0)
        goto out;
    if (username && json_object_set_new(data, f->username, json_string(username)) < 0)
        goto out;
    if (add_mark(data, mark) < 0)
        goto out;
    root = json_pack("{s:{s:I}, s:O}", "options", "cas", (json_int_t)cas, "data", data);
    r = root ? dump_wiped(root, ret, ret_len) : -ENOMEM;
out:
    json_decref(root);   /* jansson's free wipes (secret_init) */
    json_decref(data);
    json_decref(pw);
    return r;
}

int vault_kv2_record_body(const struct secret *record, int64_t cas, char **ret, size_t *ret_len) {
    json_t *data = record ? jsonload_buf(secret_data(record), secret_len(record), JSON_REJECT_DUPLICATES, NULL)
                          : json_object();
    int r = -EINVAL;
    if (json_is_object(data)) {
        json_t *root = json_pack("{s:{s:I}, s:O}", "options", "cas", (json_int_t)cas, "data", data);
        r = root ? dump_wiped(root, ret, ret_len) : -ENOMEM;
        json_decref(root);
    }
    json_decref(data);
    return r;
}

/* data.data of a record read (200) as a secret, or NULL for {}; its version. */
static int record_from(json_t *root, struct secret **ret, int64_t *ret_version, const char *what,
                       struct rc_error *err) {
    json_t *data = json_object_get(root, "data");
    json_t *inner = json_object_get(data, "data");
    json_t *meta = json_object_get(data, "metadata");
    int64_t v = 0;
    char *buf = NULL;
    size_t len = 0;
    if (!json_is_object(meta) || !get_int(meta, "version", &v) || v <= 0)
        return rc_error_set(err, RC_ERR_INVALID, "%s: \"data.metadata.version\" is missing or not a "
                            "positive integer", what);
    *ret_version = v;
    if (json_is_null(inner) || (json_is_object(inner) && json_object_size(inner) == 0)) {
        *ret = NULL;   /* removed (written empty), or the version was deleted */
        return 0;
    }
    if (!json_is_object(inner))
        return rc_error_set(err, RC_ERR_INVALID, "%s: \"data.data\" is not an object (is this a KV v2 "
                            "mount?)", what);
    if (dump_wiped(inner, &buf, &len) < 0)
        return rc_error_oom(err);
    *ret = secret_new(buf, len);
    secret_wipe_free(buf, len);
    return *ret ? 0 : rc_error_oom(err);
}

int vault_parse_kv2_record(long status, const char *body, size_t len, struct secret **ret,
                           int64_t *ret_version, const char *what, struct rc_error *err) {
    if (status == 404) {
        json_t *root = json_loadb(body ? body : "", len, 0, NULL);
        bool envelope = json_is_object(json_object_get(json_object_get(root, "data"), "metadata"));
        int r = envelope ? record_from(root, ret, ret_version, what, err) : 0;
        json_decref(root);
        if (envelope)
            return r;
        char text[VAULT_ERRTEXT_MAX + 8];
        vault_errors_text(body, len, text, sizeof text);
        if (text[0])   /* "no handler for route": not a missing secret but a missing mount */
            return rc_error_set(err, RC_ERR_NOT_FOUND, "%s: 404 %s", what, text);
        *ret = NULL;
        *ret_version = 0;
        return 0;
    }
    json_t *root = load(body, len, what, err);
    if (!root)
        return -1;
    int r = record_from(root, ret, ret_version, what, err);
    json_decref(root);
    return r;
}

int vault_parse_kv2_write(const char *body, size_t len, int64_t *ret_version, const char *what,
                          struct rc_error *err) {
    json_t *root = load(body, len, what, err);
    if (!root)
        return -1;
    int64_t v = 0;
    json_t *data = json_object_get(root, "data");
    bool ok = json_is_object(data) && get_int(data, "version", &v) && v > 0;
    json_decref(root);
    if (!ok)
        return rc_error_set(err, RC_ERR_INVALID, "%s: the answer has no positive \"data.version\"", what);
    *ret_version = v;
    return 0;
}
