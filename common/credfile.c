/* credfile: the published credential file (docs/design.md §5).
 *
 * Secrets: the password reaches jansson only as a json_t string (jansson's allocator,
 * set up by secret_init(), wipes every block it frees) and leaves it as a struct secret.
 * Formatted output is assembled in a buffer that is wiped before it is freed, and
 * returned as a secret. Parse errors name keys, lines and columns, never input bytes:
 * jansson's own error text may quote the input ("near 'hunter2'"), so it is not used.
 *
 * Env format (<name>.env), always two lines, each value in single quotes:
 *   REDIS_USERNAME='app'
 *   REDIS_PASSWORD='s3cr3t'
 * For the Redis default user (username NULL) the first line is REDIS_USERNAME='' so that
 * a shell that sources the file always sees both variables.
 */
#include "credfile.h"
#include "fdio.h"
#include "jsonload.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *xstrdup_or_null(const char *s, int *r) {
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *r = -ENOMEM;
    return d;
}

/* ---- values ------------------------------------------------------------------------ */

void cred_value_clear(struct cred_value *v) {
    if (!v)
        return;
    free(v->username);
    v->password = secret_free(v->password);
    free(v->version);
    *v = (struct cred_value){ .expires_at = RC_NO_EXPIRY };
}

int cred_value_copy(const struct cred_value *from, struct cred_value *to) {
    int r = 0;
    struct cred_value c = { .expires_at = from->expires_at };
    c.username = xstrdup_or_null(from->username, &r);
    c.version = xstrdup_or_null(from->version, &r);
    if (from->password) {
        c.password = secret_dup(from->password);
        if (!c.password)
            r = -ENOMEM;
    }
    if (r < 0) {
        cred_value_clear(&c);
        return r;
    }
    *to = c;
    return 0;
}

void credfile_clear(struct credfile *cf) {
    if (!cf)
        return;
    free(cf->name);
    free(cf->source);
    free(cf->validated);
    cred_value_clear(&cf->cur);
    cred_value_clear(&cf->prev);
    *cf = (struct credfile){
        .cur = { .expires_at = RC_NO_EXPIRY },
        .prev = { .expires_at = RC_NO_EXPIRY },
    };
}

/* ---- parse ------------------------------------------------------------------------- */

static const char *json_type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/* A string without embedded NULs (\u0000 is allowed in the JSON, as in every client, so
 * that keys we do not read may carry one; the values we read may not). */
static int get_string(json_t *obj, const char *ctx, const char *key, bool required,
                      bool allow_null, const char **ret, char *err, size_t errlen) {
    json_t *v = json_object_get(obj, key);
    if (!v || (allow_null && json_is_null(v))) {
        if (!v && required) {
            set_err(err, errlen, "%s\"%s\" is missing", ctx, key);
            return -EINVAL;
        }
        *ret = NULL;
        return 0;
    }
    if (!json_is_string(v)) {
        set_err(err, errlen, "%s\"%s\" must be a string%s, not %s", ctx, key,
                allow_null ? " or null" : "", json_type_name(v));
        return -EINVAL;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        set_err(err, errlen, "%s\"%s\" contains a NUL character", ctx, key);
        return -EINVAL;
    }
    *ret = json_string_value(v);
    return 0;
}

static int get_dup(json_t *obj, const char *ctx, const char *key, bool required,
                   bool allow_null, char **ret, char *err, size_t errlen) {
    const char *s = NULL;
    int r = get_string(obj, ctx, key, required, allow_null, &s, err, errlen);
    if (r < 0)
        return r;
    char *d = NULL;
    if (s) {
        d = strdup(s);
        if (!d) {
            set_err(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    *ret = d;
    return 0;
}

static int get_time(json_t *obj, const char *ctx, const char *key, bool allow_null,
                    int64_t dflt, int64_t *ret, char *err, size_t errlen) {
    const char *s = NULL;
    int r = get_string(obj, ctx, key, false, allow_null, &s, err, errlen);
    if (r < 0)
        return r;
    if (!s) {
        *ret = dflt;
        return 0;
    }
    if (rctime_parse(s, ret) < 0) {
        set_err(err, errlen, "%s\"%s\" is not an RFC 3339 time", ctx, key);
        return -EINVAL;
    }
    return 0;
}

/* Reads {username, password, version, expires_at} from obj. ctx prefixes messages. */
static int parse_value(json_t *obj, const char *ctx, struct cred_value *ret, char *err,
                       size_t errlen) {
    struct cred_value v = { .expires_at = RC_NO_EXPIRY };
    int r;

    if ((r = get_dup(obj, ctx, "username", false, true, &v.username, err, errlen)) < 0)
        goto fail;
    if (v.username && !v.username[0]) {   /* "" is the default user, as null */
        free(v.username);
        v.username = NULL;
    }
    json_t *pw = json_object_get(obj, "password");
    if (!pw) {
        set_err(err, errlen, "%s\"password\" is missing", ctx);
        r = -EINVAL;
        goto fail;
    }
    if (!json_is_string(pw)) {
        set_err(err, errlen, "%s\"password\" must be a string, not %s", ctx,
                json_type_name(pw));
        r = -EINVAL;
        goto fail;
    }
    size_t pwlen = json_string_length(pw);
    if (pwlen == 0) {
        set_err(err, errlen, "%s\"password\" is empty", ctx);
        r = -EINVAL;
        goto fail;
    }
    if (memchr(json_string_value(pw), '\0', pwlen)) {
        set_err(err, errlen, "%s\"password\" contains a NUL character", ctx);
        r = -EINVAL;
        goto fail;
    }
    v.password = secret_new(json_string_value(pw), pwlen);
    if (!v.password) {
        set_err(err, errlen, "out of memory");
        r = -ENOMEM;
        goto fail;
    }
    if ((r = get_dup(obj, ctx, "version", true, false, &v.version, err, errlen)) < 0)
        goto fail;
    if ((r = get_time(obj, ctx, "expires_at", true, RC_NO_EXPIRY, &v.expires_at, err,
                      errlen)) < 0)
        goto fail;
    *ret = v;
    return 0;
fail:
    cred_value_clear(&v);
    return r;
}

/* "previous" and "previous_valid_until" of the top-level object into cf. */
static int parse_previous(json_t *root, struct credfile *cf, char *err, size_t errlen) {
    json_t *prev = json_object_get(root, "previous");
    int r;
    if (prev && !json_is_null(prev)) {
        if (!json_is_object(prev)) {
            set_err(err, errlen, "\"previous\" must be an object or null, not %s",
                    json_type_name(prev));
            return -EINVAL;
        }
        if ((r = parse_value(prev, "previous: ", &cf->prev, err, errlen)) < 0)
            return r;
        cf->has_previous = true;
    }
    if ((r = get_time(root, "", "previous_valid_until", true, RC_NO_EXPIRY,
                      &cf->previous_valid_until, err, errlen)) < 0)
        return r;
    cf->has_previous_valid_until = cf->previous_valid_until != RC_NO_EXPIRY;
    return 0;
}

int credfile_parse(const char *data, size_t len, struct credfile *ret, char *err,
                   size_t errlen) {
    if (!data && len > 0) {
        set_err(err, errlen, "no data");
        return -EINVAL;
    }
    if (len > CREDFILE_MAX_SIZE) {
        set_err(err, errlen, "larger than %d bytes", CREDFILE_MAX_SIZE);
        return -EFBIG;
    }
    struct jsonload_error jerr;   /* jansson's own text may quote the input: never kept */
    json_t *root = jsonload_buf(data, len,
                                JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        set_err(err, errlen, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                jerr.reason);
        return jerr.code == json_error_out_of_memory ? -ENOMEM : -EINVAL;
    }

    struct credfile cf = {
        .cur = { .expires_at = RC_NO_EXPIRY },
        .prev = { .expires_at = RC_NO_EXPIRY },
    };
    int r = -EINVAL;

    if (!json_is_object(root)) {
        set_err(err, errlen, "the top level must be an object, not %s", json_type_name(root));
        goto fail;
    }
    json_t *fmt = json_object_get(root, "format");
    if (!fmt) {
        set_err(err, errlen, "\"format\" is missing");
        goto fail;
    }
    if (!json_is_integer(fmt)) {
        set_err(err, errlen, "\"format\" must be an integer, not %s", json_type_name(fmt));
        goto fail;
    }
    if (json_integer_value(fmt) != CREDFILE_FORMAT) {
        set_err(err, errlen, "unsupported \"format\" %" JSON_INTEGER_FORMAT " (expected %d)",
                json_integer_value(fmt), CREDFILE_FORMAT);
        r = -EPROTONOSUPPORT;
        goto fail;
    }
    if ((r = get_dup(root, "", "name", true, false, &cf.name, err, errlen)) < 0)
        goto fail;
    if ((r = get_dup(root, "", "source", false, true, &cf.source, err, errlen)) < 0)
        goto fail;
    if ((r = get_dup(root, "", "validated", false, true, &cf.validated, err, errlen)) < 0)
        goto fail;
    if ((r = get_time(root, "", "published_at", true, 0, &cf.published_at, err, errlen)) < 0)
        goto fail;
    if ((r = parse_value(root, "", &cf.cur, err, errlen)) < 0)
        goto fail;

    if ((r = parse_previous(root, &cf, err, errlen)) < 0)
        goto fail;

    json_decref(root);
    *ret = cf;
    return 0;
fail:
    json_decref(root);
    credfile_clear(&cf);
    return r;
}

/* One path component: nothing else is resolved through dirfd. */
static bool valid_filename(const char *f) {
    return f && *f && !strchr(f, '/') && strcmp(f, ".") != 0 && strcmp(f, "..") != 0;
}

int credfile_read(int dirfd, const char *filename, struct credfile *ret, char *err,
                  size_t errlen) {
    if (!valid_filename(filename)) {
        set_err(err, errlen, "invalid file name");
        return -EINVAL;
    }
    /* O_NONBLOCK: a FIFO planted at the name must not hang us; fstat refuses it. */
    int fd = openat(dirfd, filename, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            set_err(err, errlen, "%s: is a symbolic link", filename);
        else
            set_err(err, errlen, "%s: cannot open: %s", filename, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        set_err(err, errlen, "%s: cannot stat: %s", filename, strerror(e));
        close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", filename);
        close(fd);
        return -EINVAL;
    }
    if (st.st_size > CREDFILE_MAX_SIZE) {
        set_err(err, errlen, "%s: larger than %d bytes", filename, CREDFILE_MAX_SIZE);
        close(fd);
        return -EFBIG;
    }
    /* One byte more than allowed, so a file that grew since fstat is still caught. */
    size_t cap = CREDFILE_MAX_SIZE + 1;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t len = 0;
    int r = 0;
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            set_err(err, errlen, "%s: read failed: %s", filename, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (r == 0 && len > CREDFILE_MAX_SIZE) {
        set_err(err, errlen, "%s: larger than %d bytes", filename, CREDFILE_MAX_SIZE);
        r = -EFBIG;
    }
    if (r == 0) {
        char perr[200];
        r = credfile_parse(buf, len, ret, perr, sizeof(perr));
        if (r < 0)
            set_err(err, errlen, "%s: %s", filename, perr);
    }
    secret_wipe_free(buf, cap);
    return r;
}

/* ---- format ------------------------------------------------------------------------ */

/* A bounded output buffer that is wiped on free. */
struct obuf {
    char *p;
    size_t len, cap;
    bool overflow;
};

static int obuf_init(struct obuf *b, size_t cap) {
    *b = (struct obuf){ .p = malloc(cap), .cap = cap };
    return b->p ? 0 : -ENOMEM;
}

static void obuf_put(struct obuf *b, const void *data, size_t n) {
    if (b->overflow || n > b->cap - b->len) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void obuf_free(struct obuf *b) {
    secret_wipe_free(b->p, b->cap);
    b->p = NULL;
}

static int obuf_to_secret(struct obuf *b, struct secret **ret) {
    if (b->overflow)
        return -EFBIG;
    struct secret *s = secret_new(b->p, b->len);
    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}

static int dump_cb(const char *buffer, size_t size, void *data) {
    struct obuf *b = data;
    obuf_put(b, buffer, size);
    return b->overflow ? -1 : 0;
}

/* json_t for a string that may be NULL (-> null). Sets *r on failure (bad UTF-8, OOM). */
static json_t *str_or_null(const char *s, int *r) {
    if (!s)
        return json_null();
    json_t *j = json_string(s);
    if (!j)
        *r = -EINVAL;
    return j;
}

static json_t *time_or_null(int64_t t, int *r) {
    if (t == RC_NO_EXPIRY)
        return json_null();
    char buf[32];
    rctime_format(t, buf, sizeof(buf));
    if (!buf[0]) {
        *r = -EINVAL;
        return NULL;
    }
    return str_or_null(buf, r);
}

/* Length of the UTF-8 sequence at p (RFC 3629: no overlong form, no surrogate, at most
 * U+10FFFF), or 0 when there is none. */
static size_t utf8_seq(const unsigned char *p, size_t left) {
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else
        return 0;
    if (left < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

const char *credfile_value_problem(const char *data, size_t len, size_t *ret_offset) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < len;) {
        size_t n = p[i] ? utf8_seq(p + i, len - i) : 0;
        if (n == 0) {
            if (ret_offset)
                *ret_offset = i;
            return p[i] ? "is not valid UTF-8" : "contains a NUL byte";
        }
        i += n;
    }
    return NULL;
}

static json_t *password_json(const struct secret *pw, int *r) {
    if (!pw || secret_len(pw) == 0 || memchr(secret_data(pw), '\0', secret_len(pw))) {
        *r = -EINVAL;
        return NULL;
    }
    json_t *j = json_stringn(secret_data(pw), secret_len(pw));
    if (!j)
        *r = -EINVAL;   /* not UTF-8 */
    return j;
}

/* json_object_set_new() steals v even on failure; a NULL v is reported through *r. */
static void put(json_t *obj, const char *key, json_t *v, int *r) {
    if (!v) {
        if (*r == 0)
            *r = -ENOMEM;
        return;
    }
    if (json_object_set_new(obj, key, v) < 0 && *r == 0)
        *r = -ENOMEM;
}

/* Returns 0 or -EINVAL when a value cannot be represented (NULL name/version, a
 * password that is empty, has a NUL or is not UTF-8), -EFBIG over CREDFILE_MAX_SIZE. */
int credfile_format_json(const struct credfile *cf, struct secret **ret) {
    if (!cf || !cf->name || !cf->cur.version)
        return -EINVAL;
    if (cf->has_previous && !cf->prev.version)
        return -EINVAL;
    int r = 0;
    json_t *root = json_object();
    if (!root)
        return -ENOMEM;
    char ts[32];
    put(root, "format", json_integer(CREDFILE_FORMAT), &r);
    put(root, "name", str_or_null(cf->name, &r), &r);
    put(root, "username", str_or_null(cf->cur.username, &r), &r);
    put(root, "password", password_json(cf->cur.password, &r), &r);
    put(root, "version", str_or_null(cf->cur.version, &r), &r);
    put(root, "source", str_or_null(cf->source, &r), &r);
    rctime_format(cf->published_at, ts, sizeof(ts));
    if (!ts[0] && r == 0)
        r = -EINVAL;   /* a time that does not fit RFC 3339 */
    put(root, "published_at", ts[0] ? json_string(ts) : NULL, &r);
    put(root, "validated", str_or_null(cf->validated, &r), &r);
    put(root, "expires_at", time_or_null(cf->cur.expires_at, &r), &r);
    if (cf->has_previous) {
        json_t *p = json_object();
        if (p) {
            put(p, "username", str_or_null(cf->prev.username, &r), &r);
            put(p, "password", password_json(cf->prev.password, &r), &r);
            put(p, "version", str_or_null(cf->prev.version, &r), &r);
            put(p, "expires_at", time_or_null(cf->prev.expires_at, &r), &r);
        }
        put(root, "previous", p, &r);
    } else {
        put(root, "previous", json_null(), &r);
    }
    if (cf->has_previous_valid_until)
        put(root, "previous_valid_until", time_or_null(cf->previous_valid_until, &r), &r);
    if (r < 0) {
        json_decref(root);
        return r;
    }

    struct obuf b;
    if (obuf_init(&b, CREDFILE_MAX_SIZE) < 0) {
        json_decref(root);
        return -ENOMEM;
    }
    /* Insertion order is the documented key order (jansson >= 2.8 keeps it). */
    int d = json_dump_callback(root, dump_cb, &b, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (d < 0 && !b.overflow) {
        obuf_free(&b);
        return -ENOMEM;
    }
    obuf_put(&b, "\n", 1);
    r = obuf_to_secret(&b, ret);
    obuf_free(&b);
    return r;
}

/* A value the env format can carry between single quotes. */
static bool env_safe(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\'' || c == '\\' || c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

int credfile_format_env(const struct credfile *cf, struct secret **ret, char *err,
                        size_t errlen) {
    if (!cf || !cf->cur.password) {
        set_err(err, errlen, "no password");
        return -EINVAL;
    }
    const char *user = cf->cur.username ? cf->cur.username : "";
    const struct secret *pw = cf->cur.password;
    if (!env_safe(user, strlen(user))) {
        set_err(err, errlen, "the username contains a single quote, backslash or control "
                             "character, which the env format cannot carry");
        return -EINVAL;
    }
    if (!env_safe(secret_data(pw), secret_len(pw))) {
        set_err(err, errlen, "the password contains a single quote, backslash or control "
                             "character, which the env format cannot carry");
        return -EINVAL;
    }
    static const char l1[] = "REDIS_USERNAME='", l2[] = "'\nREDIS_PASSWORD='", l3[] = "'\n";
    struct obuf b;
    if (obuf_init(&b, CREDFILE_MAX_SIZE) < 0) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    obuf_put(&b, l1, sizeof(l1) - 1);
    obuf_put(&b, user, strlen(user));
    obuf_put(&b, l2, sizeof(l2) - 1);
    obuf_put(&b, secret_data(pw), secret_len(pw));
    obuf_put(&b, l3, sizeof(l3) - 1);
    int r = obuf_to_secret(&b, ret);
    obuf_free(&b);
    if (r == -EFBIG)
        set_err(err, errlen, "larger than %d bytes", CREDFILE_MAX_SIZE);
    else if (r < 0)
        set_err(err, errlen, "out of memory");
    return r;
}

int credfile_format_password(const struct credfile *cf, struct secret **ret) {
    if (!cf || !cf->cur.password)
        return -EINVAL;
    struct secret *s = secret_dup(cf->cur.password);
    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}

/* ---- files ------------------------------------------------------------------------- */

int credfile_write_atomic(int dirfd, const char *filename, const void *data, size_t len,
                          mode_t mode, gid_t gid) {
    if (!valid_filename(filename) || (!data && len > 0))
        return -EINVAL;
    size_t flen = strlen(filename);
    /* prefix + name + "-" + 8 hex */
    if (sizeof(CREDFILE_TMP_PREFIX) - 1 + flen + 1 + 8 > NAME_MAX)
        return -ENAMETOOLONG;

    char tmp[NAME_MAX + 1];
    int fd = -1;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        unsigned char rnd[4];
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            return errno ? -errno : -EIO;
        snprintf(tmp, sizeof(tmp), "%s%s-%02x%02x%02x%02x", CREDFILE_TMP_PREFIX, filename,
                 rnd[0], rnd[1], rnd[2], rnd[3]);
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return -errno;
    }
    if (fd < 0)
        return -EEXIST;

    int r = 0;
    if (fchmod(fd, mode & 07777) < 0)
        r = -errno;
    if (r == 0 && gid != (gid_t)-1 && fchown(fd, (uid_t)-1, gid) < 0)
        r = -errno;
    /* fchown may clear set-id bits; apply the mode again now that the group is right. */
    if (r == 0 && gid != (gid_t)-1 && fchmod(fd, mode & 07777) < 0)
        r = -errno;
    if (r == 0)
        r = fdio_write_all(fd, data, len);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && renameat(dirfd, tmp, dirfd, filename) < 0)
        r = -errno;
    if (r < 0) {
        (void)unlinkat(dirfd, tmp, 0);
        return r;
    }
    /* The rename is done; a failing directory fsync means it may not survive a crash. */
    if (fsync(dirfd) < 0)
        return -errno;
    return 0;
}

int credfile_remove_temps(int dirfd) {
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return -e;
    }
    rewinddir(d);   /* the duplicate shares the caller's file offset */
    int count = 0, r = 0;
    size_t plen = sizeof(CREDFILE_TMP_PREFIX) - 1;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno && r == 0)
                r = -errno;
            break;
        }
        if (strncmp(de->d_name, CREDFILE_TMP_PREFIX, plen) != 0)
            continue;
        if (unlinkat(dirfd, de->d_name, 0) == 0)
            count++;
        else if (errno != ENOENT && errno != EISDIR && r == 0)   /* not ours: a directory */
            r = -errno;
    }
    closedir(d);
    return r < 0 ? r : count;
}
