/* test_client_vectors: libredis-creds' parser against the shared vectors of the published
 * file (tests/vectors/vectors.json, described in tests/vectors/README.md).
 *
 * Usage: test_client_vectors VECTORS_DIR
 * Each vector's bytes are published as <name>.json in a scratch directory and opened with
 * rc_open_ex(RC_OPEN_NO_THREAD): a valid vector must load with the expected fields, an
 * invalid one must fail with the expected -errno. Vectors that need a field this library
 * does not implement yet (their "requires") are skipped, and said so. Prints one line per
 * vector; exits 1 when any failed. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_test_util.h"
#include "redis_creds.h"

/* Fields of the file this library does not expose yet (none today). */
static const char *const unimplemented[] = {NULL};

static bool is_unimplemented(const char *feature) {
    for (size_t i = 0; unimplemented[i]; i++)
        if (strcmp(feature, unimplemented[i]) == 0)
            return true;
    return false;
}

static int expected_errno(const char *name) {
    if (strcmp(name, "EPROTONOSUPPORT") == 0)
        return EPROTONOSUPPORT;
    if (strcmp(name, "EFBIG") == 0)
        return EFBIG;
    return EBADMSG;
}

static bool str_matches(json_t *want, const char *got, size_t got_len) {
    if (json_is_null(want))
        return got == NULL;
    return got && json_string_length(want) == got_len &&
           memcmp(json_string_value(want), got, got_len) == 0;
}

/* "" when c matches want, else the name of the first field that differs. */
static const char *cred_mismatch(json_t *want, const struct rc_credential *c) {
    if (json_is_null(want))
        return c ? "previous (expected none)" : "";
    if (!c)
        return "previous (expected one)";
    const char *u = c->username;
    json_t *exp = json_object_get(want, "expires_at");
    if (!str_matches(json_object_get(want, "username"), u, u ? strlen(u) : 0))
        return "username";
    if (!str_matches(json_object_get(want, "password"), c->password, c->password_len))
        return "password";
    if (!str_matches(json_object_get(want, "version"), c->version, strlen(c->version)))
        return "version";
    if (json_is_null(exp) ? c->expires_at != 0 : c->expires_at != json_integer_value(exp))
        return "expires_at";
    return "";
}

/* "" when rc_usable_previous offers previous until the earlier of its expires_at and
 * previous_valid_until, and not from then on. */
static const char *usable_mismatch(const struct rc_creds *c) {
    if (!c->previous)
        return rc_usable_previous(c, 0) ? "rc_usable_previous (no previous)" : "";
    int64_t exp = c->previous->expires_at, until = c->previous_valid_until;
    int64_t end = !exp ? until : !until ? exp : exp < until ? exp : until;
    if (rc_usable_previous(c, end ? end - 1 : INT64_MAX) != c->previous)
        return "rc_usable_previous (before the end)";
    if (end && rc_usable_previous(c, end) != NULL)
        return "rc_usable_previous (at the end)";
    return "";
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rbe");
    if (!f)
        return NULL;
    size_t cap = 128 * 1024;
    char *buf = malloc(cap);
    *len = buf ? fread(buf, 1, cap, f) : 0;
    fclose(f);
    return buf;
}

/* NULL when the vector passed, else why not (static text or a message in why[]). */
static const char *check(const char *vdir, json_t *v, char *why, size_t why_size) {
    char path[4096];
    const char *name = json_string_value(json_object_get(v, "name"));
    snprintf(path, sizeof path, "%s/%s", vdir, json_string_value(json_object_get(v, "file")));
    size_t len;
    char *bytes = read_all(path, &len);
    if (!bytes)
        return "cannot read the vector's file";
    char *dir = tu_mkdtemp();
    char file[256];
    snprintf(file, sizeof file, "%s.json", name);
    int r = dir ? tu_publish_raw(dir, file, bytes, len) : -ENOMEM;
    free(bytes);
    rc_handle *h = NULL;
    if (r == 0)
        r = rc_open_ex(name, dir, RC_OPEN_NO_THREAD, 0, &h);
    const char *res = NULL;
    bool want_ok = strcmp(json_string_value(json_object_get(v, "result")), "ok") == 0;
    if (!want_ok) {
        int e = expected_errno(json_string_value(json_object_get(v, "error")));
        if (r != -e) {
            snprintf(why, why_size, "expected -%d, got %d (%s)", e, r, rc_strerror(r));
            res = why;
        }
    } else if (r < 0) {
        snprintf(why, why_size, "refused: %s", rc_strerror(r));
        res = why;
    } else {
        const struct rc_creds *c = NULL;
        rc_get(h, &c);
        const char *m = cred_mismatch(json_object_get(v, "current"), &c->current);
        if (!*m)
            m = cred_mismatch(json_object_get(v, "previous"), c->previous);
        json_t *pvu = json_object_get(v, "previous_valid_until");
        if (!*m && pvu && (json_is_null(pvu) ? c->previous_valid_until != 0
                                             : c->previous_valid_until != json_integer_value(pvu)))
            m = "previous_valid_until";
        if (!*m)
            m = usable_mismatch(c);
        if (*m) {
            snprintf(why, why_size, "%s differs", m);
            res = why;
        }
        rc_creds_unref(c);
    }
    rc_close(h);
    if (dir) {
        snprintf(path, sizeof path, "%s/%s", dir, file);
        unlink(path);
        rmdir(dir);
        free(dir);
    }
    return res;
}

static bool skipped(json_t *v) {
    json_t *req = json_object_get(v, "requires"), *f;
    size_t i;
    json_array_foreach(req, i, f) if (is_unimplemented(json_string_value(f))) return true;
    return false;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTORS_DIR\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/vectors.json", argv[1]);
    json_error_t jerr;
    json_t *all = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    json_t *vectors = json_object_get(all, "vectors"), *v;
    if (!json_is_array(vectors) || json_array_size(vectors) == 0) {
        fprintf(stderr, "%s: no vectors (%s)\n", path, jerr.text);
        return 2;
    }
    int failed = 0, passed = 0;
    size_t i;
    json_array_foreach(vectors, i, v) {
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *result = json_string_value(json_object_get(v, "result"));
        char why[256];
        if (skipped(v)) {
            printf("skip %s %s: needs a field libredis-creds does not read yet\n", result, id);
            continue;
        }
        const char *err = check(argv[1], v, why, sizeof why);
        printf("%s %s %s%s%s\n", err ? "FAIL" : "ok", result, id, err ? ": " : "",
               err ? err : "");
        if (err)
            failed++;
        else
            passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    json_decref(all);
    return failed ? 1 : 0;
}
