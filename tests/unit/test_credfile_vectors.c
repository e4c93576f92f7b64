/* The agent's own reader of the published file against the shared vectors (tests/vectors,
 * described in tests/vectors/README.md): what the agent adopts at start (runtime_adopt:
 * credfile_read through the runtime directory's fd, then the name check) must be what the
 * clients accept, with the same values, and what it refuses what they refuse, with the
 * same error (EBADMSG is the agent's -EINVAL).
 *
 * The few files the agent refuses although a client accepts them are listed in
 * agent_differs[] with the reason (the README says the same); every other vector must
 * agree. An adopted file is written again by the agent when it differs from what
 * credfile_format_json() produces (runtime_sync_formats), so each accepted vector also
 * goes through the writer and back, and must keep its values (previous_valid_until too). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "credfile.h"
#include "runtime.h"
#include "secret.h"

#define VECTORS_DIR RC_TEST_SOURCE_DIR "/vectors"

/* Files every client accepts and the agent deliberately refuses (with this error). */
static const struct {
    const char *id;
    int error;
    const char *why;
} agent_differs[] = {
    {"no-name", -EINVAL,
     "the agent adopts only a file that names its credential (every agent writes name); "
     "without one it publishes the credential again instead of adopting it"},
    {"password-nul", -EINVAL,
     "the agent never publishes a password containing \\u0000 (its writer refuses one, and "
     "neither the .env file nor redis-creds exec's environment could carry it)"},
};

struct fx {
    char dir[512];
    struct runtime rt;
    json_t *all;
};

static int setup(void **state) {
    if (secret_init(0) < 0)
        return -1;
    struct fx *f = calloc(1, sizeof *f);
    const char *base = secure_getenv("REDIS_CREDS_TEST_TMP");
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/test_credfile_vectors.XXXXXX",
             base && *base ? base : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    f->rt = (struct runtime){.dir = f->dir, .lockfd = -1};
    f->rt.dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    json_error_t jerr;
    /* JSON_ALLOW_NUL: the expected password of password-nul has one */
    f->all = json_load_file(VECTORS_DIR "/vectors.json", JSON_ALLOW_NUL, &jerr);
    *state = f;
    return f->rt.dirfd >= 0 && f->all ? 0 : -1;
}

static int teardown(void **state) {
    struct fx *f = *state;
    close(f->rt.dirfd);
    rmdir(f->dir);
    json_decref(f->all);
    free(f);
    return 0;
}

static json_t *vectors(struct fx *f) {
    return json_object_get(f->all, "vectors");
}

static const char *vstr(json_t *v, const char *key) {
    return json_string_value(json_object_get(v, key));
}

/* ---- expectations ------------------------------------------------------------------ */

static int agent_error(const char *name) {
    if (strcmp(name, "EPROTONOSUPPORT") == 0)
        return -EPROTONOSUPPORT;
    if (strcmp(name, "EFBIG") == 0)
        return -EFBIG;
    return -EINVAL;
}

/* 0 when the agent accepts the vector, else the -errno it must fail with. */
static int expected(json_t *v, const char **why) {
    *why = NULL;
    for (size_t i = 0; i < sizeof agent_differs / sizeof *agent_differs; i++)
        if (strcmp(vstr(v, "id"), agent_differs[i].id) == 0) {
            *why = agent_differs[i].why;
            return agent_differs[i].error;
        }
    if (strcmp(vstr(v, "result"), "ok") == 0)
        return 0;
    return agent_error(vstr(v, "error"));
}

static bool str_is(json_t *want, const char *got, size_t got_len) {
    if (!want || json_is_null(want))
        return got == NULL;
    return got && json_string_length(want) == got_len &&
           memcmp(json_string_value(want), got, got_len) == 0;
}

static bool time_is(json_t *want, int64_t got) {
    if (!want || json_is_null(want))
        return got == RC_NO_EXPIRY;
    return got == json_integer_value(want);
}

/* NULL when value matches want ({username, password, version, expires_at}), else the
 * field that differs. */
static const char *value_mismatch(json_t *want, const struct cred_value *c) {
    const char *u = c->username;
    if (!str_is(json_object_get(want, "username"), u, u ? strlen(u) : 0))
        return "username";
    if (!str_is(json_object_get(want, "password"), secret_data(c->password),
                secret_len(c->password)))
        return "password";
    if (!str_is(json_object_get(want, "version"), c->version, strlen(c->version)))
        return "version";
    if (!time_is(json_object_get(want, "expires_at"), c->expires_at))
        return "expires_at";
    return NULL;
}

static const char *mismatch(json_t *v, const struct credfile *cf) {
    const char *m = value_mismatch(json_object_get(v, "current"), &cf->cur);
    json_t *prev = json_object_get(v, "previous");
    if (!m && json_is_null(prev) != !cf->has_previous)
        m = "previous (present or not)";
    if (!m && cf->has_previous)
        m = value_mismatch(prev, &cf->prev);
    json_t *pvu = json_object_get(v, "previous_valid_until");
    if (!m && !time_is(pvu, cf->has_previous_valid_until ? cf->previous_valid_until
                                                         : RC_NO_EXPIRY))
        m = "previous_valid_until";
    return m;
}

/* ---- one vector -------------------------------------------------------------------- */

static char *read_vector(const char *file, size_t *len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", VECTORS_DIR, file);
    FILE *fp = fopen(path, "rbe");
    if (!fp)
        return NULL;
    char *buf = malloc(128 * 1024);
    *len = buf ? fread(buf, 1, 128 * 1024, fp) : 0;
    fclose(fp);
    return buf;
}

/* Publishes the vector's bytes as <name>.json, as the agent would find them at start. */
static void place(struct fx *f, const char *fname, const char *bytes, size_t len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", f->dir, fname);
    FILE *fp = fopen(path, "wbe");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* The adopted credential written by the agent's writer and read back: the same values. */
static const char *round_trip(json_t *v, const struct credfile *cf) {
    struct secret *out = NULL;
    if (credfile_format_json(cf, &out) < 0)
        return "credfile_format_json refused what was adopted";
    struct credfile again = {0};
    char err[256];
    int r = credfile_parse(secret_data(out), secret_len(out), &again, err, sizeof err);
    secret_free(out);
    const char *m = r < 0 ? "the written file does not parse" : mismatch(v, &again);
    credfile_clear(&again);
    return m;
}

/* NULL when the agent's reader did what it must with the vector, else why not. */
static const char *check(struct fx *f, json_t *v, char *why, size_t size) {
    size_t len;
    char *bytes = read_vector(vstr(v, "file"), &len);
    if (!bytes)
        return "cannot read the vector's file";
    char fname[96], err[512] = "";
    snprintf(fname, sizeof fname, "%s.json", vstr(v, "name"));
    place(f, fname, bytes, len);
    free(bytes);
    struct credfile cf = {0};
    int r = runtime_adopt(&f->rt, vstr(v, "name"), &cf, err, sizeof err);
    unlinkat(f->rt.dirfd, fname, 0);
    const char *reason, *res = NULL;
    int want = expected(v, &reason);
    if (r != want) {
        snprintf(why, size, "expected %d, got %d (%s)", want, r, err);
        res = why;
    } else if (r < 0 && (strstr(err, "s3cr3t") || strstr(err, "\"old\""))) {
        res = "the error quotes a password";
    } else if (r == 0 && (res = mismatch(v, &cf)) == NULL) {
        res = round_trip(v, &cf);
    }
    credfile_clear(&cf);
    return res;
}

static void test_the_agent_reads_every_vector_as_the_clients_do(void **state) {
    struct fx *f = *state;
    size_t i, n_ok = 0, n_reject = 0;
    json_t *v;
    int failed = 0;
    assert_true(json_array_size(vectors(f)) >= 60);
    json_array_foreach(vectors(f), i, v) {
        char why[700];
        const char *err = check(f, v, why, sizeof why);
        if (err) {
            print_message("FAIL %s %s: %s\n", vstr(v, "result"), vstr(v, "id"), err);
            failed++;
        }
        *(strcmp(vstr(v, "result"), "ok") == 0 ? &n_ok : &n_reject) += 1;
    }
    print_message("%zu vectors (%zu ok, %zu reject), %d failed\n", n_ok + n_reject, n_ok,
                  n_reject, failed);
    assert_int_equal(failed, 0);
}

/* Each deliberate difference names a vector that exists and that the clients accept, so
 * the list cannot outlive its reason. */
static void test_each_difference_is_a_vector_the_clients_accept(void **state) {
    struct fx *f = *state;
    for (size_t k = 0; k < sizeof agent_differs / sizeof *agent_differs; k++) {
        bool found = false;
        size_t i;
        json_t *v;
        json_array_foreach(vectors(f), i, v) {
            if (strcmp(vstr(v, "id"), agent_differs[k].id) == 0) {
                found = true;
                assert_string_equal(vstr(v, "result"), "ok");
            }
        }
        if (!found)
            fail_msg("agent_differs names %s, which is not a vector", agent_differs[k].id);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_agent_reads_every_vector_as_the_clients_do),
        cmocka_unit_test(test_each_difference_is_a_vector_the_clients_accept),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
