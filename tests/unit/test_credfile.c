/* Unit tests for common/credfile.c (docs/design.md §5). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "credfile.h"
#include "secret.h"

#define PW "hunter2-T0PS3CRET"

/* ---- helpers ----------------------------------------------------------------------- */

struct tdir {
    char path[512];
    int fd;
};

static int tdir_setup(void **state) {
    struct tdir *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    const char *base = secure_getenv("REDIS_CREDS_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    snprintf(t->path, sizeof(t->path), "%s/test_credfile.XXXXXX", base);
    if (!mkdtemp(t->path)) {
        free(t);
        return -1;
    }
    t->fd = open(t->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->fd < 0) {
        rmdir(t->path);
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

/* Removes everything in the directory (one level; tests create no subdirectories except
 * where they remove them themselves) and the directory. */
static int tdir_teardown(void **state) {
    struct tdir *t = *state;
    int fd = fcntl(t->fd, F_DUPFD_CLOEXEC, 3);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d) {
        rewinddir(d);   /* the duplicate shares the offset other readers left at the end */
        struct dirent *de;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                if (unlinkat(t->fd, de->d_name, 0) < 0)
                    unlinkat(t->fd, de->d_name, AT_REMOVEDIR);
        closedir(d);
    }
    close(t->fd);
    rmdir(t->path);
    free(t);
    return 0;
}

static void write_file(int dirfd, const char *name, const char *data, size_t len) {
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static char *read_file(int dirfd, const char *name, size_t *ret_len) {
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *buf = calloc(1, (size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    if (ret_len)
        *ret_len = (size_t)st.st_size;
    return buf;
}

static size_t count_entries(int dirfd, const char *prefix) {
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
    assert_true(fd >= 0);
    DIR *d = fdopendir(fd);
    assert_non_null(d);
    rewinddir(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static void fill(struct credfile *cf, bool with_prev) {
    memset(cf, 0, sizeof(*cf));
    cf->name = strdup("cache");
    cf->source = strdup("vault:secret/redis/cache");
    cf->validated = strdup("all");
    cf->published_at = 1795341600;   /* 2026-11-22T10:00:00Z */
    cf->cur.username = strdup("app");
    cf->cur.password = secret_new_str("s3cr3t");
    cf->cur.version = strdup("7");
    cf->cur.expires_at = RC_NO_EXPIRY;
    cf->prev.expires_at = RC_NO_EXPIRY;
    if (with_prev) {
        cf->has_previous = true;
        cf->prev.username = strdup("app");
        cf->prev.password = secret_new_str("old");
        cf->prev.version = strdup("6");
    }
}

static void assert_value_equal(const struct cred_value *a, const struct cred_value *b) {
    if (a->username || b->username) {
        assert_non_null(a->username);
        assert_non_null(b->username);
        assert_string_equal(a->username, b->username);
    }
    assert_true(secret_equal(a->password, b->password));
    assert_string_equal(a->version, b->version);
    assert_true(a->expires_at == b->expires_at);
}

static void assert_credfile_equal(const struct credfile *a, const struct credfile *b) {
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->source, b->source);
    assert_string_equal(a->validated, b->validated);
    assert_true(a->published_at == b->published_at);
    assert_value_equal(&a->cur, &b->cur);
    assert_int_equal(a->has_previous, b->has_previous);
    if (a->has_previous)
        assert_value_equal(&a->prev, &b->prev);
    assert_int_equal(a->has_previous_valid_until, b->has_previous_valid_until);
    if (a->has_previous_valid_until)
        assert_true(a->previous_valid_until == b->previous_valid_until);
}

static void round_trip(const struct credfile *in) {
    struct secret *json = NULL;
    assert_int_equal(credfile_format_json(in, &json), 0);
    assert_non_null(json);
    const char *s = secret_data(json);
    size_t n = secret_len(json);
    assert_true(n > 0 && n <= CREDFILE_MAX_SIZE);
    assert_int_equal(s[n - 1], '\n');
    struct credfile out;
    char err[256] = "";
    int r = credfile_parse(s, n, &out, err, sizeof(err));
    if (r != 0)
        fail_msg("parse failed: %s", err);
    assert_credfile_equal(in, &out);
    credfile_clear(&out);
    secret_free(json);
}

/* Parses text expecting failure r; checks the message mentions `needle` (when given)
 * and never contains the password text. */
static void expect_parse_error(const char *text, int r, const char *needle) {
    struct credfile out;
    char err[256] = "";
    memset(&out, 0x5a, sizeof(out));   /* ret_* must stay untouched on failure */
    struct credfile before = out;
    assert_int_equal(credfile_parse(text, strlen(text), &out, err, sizeof(err)), r);
    assert_memory_equal(&out, &before, sizeof(out));
    assert_true(err[0] != '\0');
    if (needle && !strstr(err, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
    assert_null(strstr(err, "hunter"));
    assert_null(strstr(err, "T0PS3CRET"));
}

/* ---- format / parse ---------------------------------------------------------------- */

static void test_json_output_is_exactly_the_documented_layout(void **state) {
    struct credfile cf;
    fill(&cf, true);
    struct secret *json = NULL;
    assert_int_equal(credfile_format_json(&cf, &json), 0);
    static const char expect[] =
        "{\n"
        "  \"format\": 1,\n"
        "  \"name\": \"cache\",\n"
        "  \"username\": \"app\",\n"
        "  \"password\": \"s3cr3t\",\n"
        "  \"version\": \"7\",\n"
        "  \"source\": \"vault:secret/redis/cache\",\n"
        "  \"published_at\": \"2026-11-22T10:00:00Z\",\n"
        "  \"validated\": \"all\",\n"
        "  \"expires_at\": null,\n"
        "  \"previous\": {\n"
        "    \"username\": \"app\",\n"
        "    \"password\": \"old\",\n"
        "    \"version\": \"6\",\n"
        "    \"expires_at\": null\n"
        "  }\n"
        "}\n";
    assert_string_equal(secret_data(json), expect);
    assert_int_equal(secret_len(json), strlen(expect));
    secret_free(json);
    credfile_clear(&cf);
}

static void test_json_default_user_and_no_previous_are_null(void **state) {
    struct credfile cf;
    fill(&cf, false);
    free(cf.cur.username);
    cf.cur.username = NULL;
    cf.cur.expires_at = 1795345200;   /* 2026-11-22T11:00:00Z */
    struct secret *json = NULL;
    assert_int_equal(credfile_format_json(&cf, &json), 0);
    assert_non_null(strstr(secret_data(json), "\"username\": null,\n"));
    assert_non_null(strstr(secret_data(json), "\"expires_at\": \"2026-11-22T11:00:00Z\",\n"));
    assert_non_null(strstr(secret_data(json), "\"previous\": null\n}\n"));
    secret_free(json);
    credfile_clear(&cf);
}

static void test_round_trip_with_previous(void **state) {
    struct credfile cf;
    fill(&cf, true);
    cf.prev.expires_at = 1795341600;
    round_trip(&cf);
    credfile_clear(&cf);
}

/* An adopted file is written again (runtime_sync_formats): previous_valid_until survives,
 * after "previous"; a struct credfile built from { 0 } writes none. */
static void test_round_trip_previous_valid_until(void **state) {
    struct credfile cf;
    fill(&cf, true);
    struct secret *json = NULL;
    assert_int_equal(credfile_format_json(&cf, &json), 0);
    assert_null(strstr(secret_data(json), "previous_valid_until"));
    secret_free(json);
    cf.has_previous_valid_until = true;
    cf.previous_valid_until = 1795347000;   /* 2026-11-22T11:30:00Z */
    assert_int_equal(credfile_format_json(&cf, &json), 0);
    assert_non_null(strstr(secret_data(json),
                           "  },\n  \"previous_valid_until\": \"2026-11-22T11:30:00Z\"\n}\n"));
    secret_free(json);
    round_trip(&cf);
    credfile_clear(&cf);
}

static void test_round_trip_without_previous(void **state) {
    struct credfile cf;
    fill(&cf, false);
    round_trip(&cf);
    credfile_clear(&cf);
}

static void test_round_trip_default_user_and_expiry(void **state) {
    struct credfile cf;
    fill(&cf, true);
    free(cf.cur.username);
    cf.cur.username = NULL;
    free(cf.prev.username);
    cf.prev.username = NULL;
    cf.cur.expires_at = 1795345200;
    round_trip(&cf);
    credfile_clear(&cf);
}

static void test_round_trip_escapes_json_specials(void **state) {
    struct credfile cf;
    fill(&cf, false);
    secret_free(cf.cur.password);
    cf.cur.password = secret_new_str("quote\" back\\slash\nnewline\ttab \xc3\xa9");
    round_trip(&cf);
    credfile_clear(&cf);
}

static void test_format_refuses_unrepresentable_values(void **state) {
    struct credfile cf;
    struct secret *out = NULL;
    fill(&cf, false);
    secret_free(cf.cur.password);
    cf.cur.password = secret_new("", 0);
    assert_int_equal(credfile_format_json(&cf, &out), -EINVAL);
    secret_free(cf.cur.password);
    cf.cur.password = secret_new("a\0b", 3);
    assert_int_equal(credfile_format_json(&cf, &out), -EINVAL);
    secret_free(cf.cur.password);
    cf.cur.password = secret_new("\xff\xfe", 2);   /* not UTF-8 */
    assert_int_equal(credfile_format_json(&cf, &out), -EINVAL);
    secret_free(cf.cur.password);
    cf.cur.password = NULL;
    assert_int_equal(credfile_format_json(&cf, &out), -EINVAL);
    assert_null(out);
    credfile_clear(&cf);
}

static void test_format_refuses_output_over_64k(void **state) {
    struct credfile cf;
    fill(&cf, false);
    size_t n = CREDFILE_MAX_SIZE;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'p', n);
    secret_free(cf.cur.password);
    cf.cur.password = secret_new(big, n);
    struct secret *out = NULL;
    assert_int_equal(credfile_format_json(&cf, &out), -EFBIG);
    assert_null(out);
    free(big);
    credfile_clear(&cf);
}

static void test_parse_minimal_and_unknown_keys(void **state) {
    static const char text[] =
        "{\"format\":1,\"name\":\"n\",\"password\":\"pw\",\"version\":\"v1\","
        "\"future_key\":{\"x\":[1,2,3]}}";
    struct credfile cf;
    char err[256];
    assert_int_equal(credfile_parse(text, strlen(text), &cf, err, sizeof(err)), 0);
    assert_string_equal(cf.name, "n");
    assert_null(cf.cur.username);
    assert_string_equal(secret_data(cf.cur.password), "pw");
    assert_string_equal(cf.cur.version, "v1");
    assert_null(cf.source);
    assert_null(cf.validated);
    assert_true(cf.cur.expires_at == RC_NO_EXPIRY);
    assert_false(cf.has_previous);
    credfile_clear(&cf);
    credfile_clear(&cf);   /* clearing twice is harmless */
}

static void test_parse_accepts_not_nul_terminated_input(void **state) {
    static const char text[] =
        "{\"format\":1,\"name\":\"n\",\"password\":\"pw\",\"version\":\"v1\"}GARBAGE";
    struct credfile cf;
    char err[256];
    size_t n = strlen(text) - strlen("GARBAGE");
    assert_int_equal(credfile_parse(text, n, &cf, err, sizeof(err)), 0);
    credfile_clear(&cf);
    assert_int_equal(credfile_parse(text, strlen(text), &cf, err, sizeof(err)), -EINVAL);
}

static void test_parse_rejects_malformed_json(void **state) {
    expect_parse_error("", -EINVAL, "invalid JSON");
    expect_parse_error("{", -EINVAL, "line 1");
    expect_parse_error("{\"format\":1,}", -EINVAL, "invalid JSON");
    expect_parse_error("{\"format\":1} trailing", -EINVAL, "invalid JSON");
    expect_parse_error("{\"a\":1,\"a\":2}", -EINVAL, "duplicate");
}

static void test_parse_rejects_non_objects(void **state) {
    expect_parse_error("[1,2]", -EINVAL, "object");
    expect_parse_error("\"" PW "\"", -EINVAL, "object");
    expect_parse_error("42", -EINVAL, "object");
    expect_parse_error("null", -EINVAL, "object");
}

#define GOOD_REST "\"name\":\"n\",\"password\":\"" PW "\",\"version\":\"v\""

static void test_parse_rejects_bad_format(void **state) {
    expect_parse_error("{" GOOD_REST "}", -EINVAL, "format");
    expect_parse_error("{\"format\":2," GOOD_REST "}", -EPROTONOSUPPORT, "format");
    expect_parse_error("{\"format\":\"1\"," GOOD_REST "}", -EINVAL, "format");
    expect_parse_error("{\"format\":1.0," GOOD_REST "}", -EINVAL, "format");
    expect_parse_error("{\"format\":null," GOOD_REST "}", -EINVAL, "format");
}

static void test_parse_rejects_missing_or_empty_password(void **state) {
    expect_parse_error("{\"format\":1,\"name\":\"n\",\"version\":\"v\"}", -EINVAL, "password");
    expect_parse_error("{\"format\":1,\"name\":\"n\",\"password\":\"\",\"version\":\"v\"}",
                       -EINVAL, "password");
    expect_parse_error("{\"format\":1,\"name\":\"n\",\"password\":null,\"version\":\"v\"}",
                       -EINVAL, "password");
    expect_parse_error("{\"format\":1,\"name\":\"n\",\"password\":123,\"version\":\"v\"}",
                       -EINVAL, "password");
    expect_parse_error("{\"format\":1,\"name\":\"n\",\"password\":[\"" PW "\"],"
                       "\"version\":\"v\"}", -EINVAL, "password");
}

static void test_parse_rejects_wrong_types(void **state) {
    expect_parse_error("{\"format\":1,\"name\":7,\"password\":\"" PW "\",\"version\":\"v\"}",
                       -EINVAL, "name");
    expect_parse_error("{\"format\":1,\"password\":\"" PW "\",\"version\":\"v\"}", -EINVAL,
                       "name");
    expect_parse_error("{\"format\":1," GOOD_REST ",\"username\":5}", -EINVAL, "username");
    expect_parse_error("{\"format\":1,\"name\":\"n\",\"password\":\"" PW "\",\"version\":7}",
                       -EINVAL, "version");
    expect_parse_error("{\"format\":1,\"name\":\"n\",\"password\":\"" PW "\"}", -EINVAL,
                       "version");
    expect_parse_error("{\"format\":1," GOOD_REST ",\"source\":[]}", -EINVAL, "source");
    expect_parse_error("{\"format\":1," GOOD_REST ",\"expires_at\":12}", -EINVAL,
                       "expires_at");
    expect_parse_error("{\"format\":1," GOOD_REST ",\"expires_at\":\"tomorrow\"}", -EINVAL,
                       "expires_at");
    expect_parse_error("{\"format\":1," GOOD_REST ",\"published_at\":\"2026-02-32T00:00:00Z\"}",
                       -EINVAL, "published_at");
    expect_parse_error("{\"format\":1," GOOD_REST ",\"previous\":\"" PW "\"}", -EINVAL,
                       "previous");
    expect_parse_error("{\"format\":1," GOOD_REST ",\"previous\":{\"version\":\"5\"}}",
                       -EINVAL, "previous");
    expect_parse_error("{\"format\":1," GOOD_REST ",\"previous\":{\"password\":\"" PW "\"}}",
                       -EINVAL, "version");
}

static void test_parse_rejects_oversized_input(void **state) {
    size_t n = CREDFILE_MAX_SIZE + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    static const char obj[] = "{\"format\":1," GOOD_REST "}";
    memcpy(big, obj, sizeof(obj) - 1);   /* valid JSON followed by whitespace */
    struct credfile cf;
    char err[256];
    assert_int_equal(credfile_parse(big, n, &cf, err, sizeof(err)), -EFBIG);
    assert_non_null(strstr(err, "larger"));
    /* Exactly at the limit is fine. */
    assert_int_equal(credfile_parse(big, n - 1, &cf, err, sizeof(err)), 0);
    credfile_clear(&cf);
    free(big);
}

static void test_parse_errors_never_quote_the_password(void **state) {
    /* jansson's own messages would say "near 'hunter2...'" for several of these. */
    expect_parse_error("{\"format\":1,\"password\": " PW "}", -EINVAL, "line 1");
    expect_parse_error(PW, -EINVAL, "invalid JSON");
    expect_parse_error("{\"format\":1,\"password\":\"" PW "\" \"name\":\"n\"}", -EINVAL, NULL);
    expect_parse_error("{\"format\":1,\n\"password\":\"" PW, -EINVAL, "line 2");
    expect_parse_error("{\"format\":1,\"password\":\"" PW "\\x\"}", -EINVAL, NULL);
    expect_parse_error("{\"format\":1,\"password\":\"" PW "\x01\"}", -EINVAL, NULL);
    expect_parse_error("{\"format\":1,\"" PW "\":1,\"" PW "\":2}", -EINVAL, "duplicate");
    expect_parse_error("{\"format\":1,\"password\":\"" PW "\xff\"}", -EINVAL, "UTF-8");
    expect_parse_error("{\"format\":1,\"password\":\"" PW "\\u0000\"}", -EINVAL, NULL);
}

static void test_value_copy_and_clear(void **state) {
    struct credfile cf;
    fill(&cf, false);
    struct cred_value copy;
    assert_int_equal(cred_value_copy(&cf.cur, &copy), 0);
    assert_value_equal(&cf.cur, &copy);
    assert_ptr_not_equal(copy.password, cf.cur.password);
    cred_value_clear(&copy);
    assert_null(copy.password);
    assert_null(copy.username);
    cred_value_clear(&copy);
    cred_value_clear(NULL);
    credfile_clear(NULL);
    credfile_clear(&cf);
}

/* ---- env / password ---------------------------------------------------------------- */

static void test_env_format(void **state) {
    struct credfile cf;
    fill(&cf, false);
    struct secret *out = NULL;
    char err[256];
    assert_int_equal(credfile_format_env(&cf, &out, err, sizeof(err)), 0);
    assert_string_equal(secret_data(out), "REDIS_USERNAME='app'\nREDIS_PASSWORD='s3cr3t'\n");
    out = secret_free(out);
    free(cf.cur.username);
    cf.cur.username = NULL;
    assert_int_equal(credfile_format_env(&cf, &out, err, sizeof(err)), 0);
    assert_string_equal(secret_data(out), "REDIS_USERNAME=''\nREDIS_PASSWORD='s3cr3t'\n");
    secret_free(out);
    credfile_clear(&cf);
}

static void expect_env_refused(const char *password, const char *username) {
    struct credfile cf;
    fill(&cf, false);
    secret_free(cf.cur.password);
    cf.cur.password = secret_new_str(password);
    if (username) {
        free(cf.cur.username);
        cf.cur.username = strdup(username);
    }
    struct secret *out = NULL;
    char err[256] = "";
    assert_int_equal(credfile_format_env(&cf, &out, err, sizeof(err)), -EINVAL);
    assert_null(out);
    assert_non_null(strstr(err, "env format"));
    assert_null(strstr(err, "hunter"));
    assert_null(strstr(err, "T0PS3CRET"));
    credfile_clear(&cf);
}

static void test_env_refuses_quote_backslash_and_control(void **state) {
    expect_env_refused(PW "'", NULL);
    expect_env_refused(PW "\\", NULL);
    expect_env_refused(PW "\n", NULL);
    expect_env_refused(PW "\t", NULL);
    expect_env_refused(PW "\x7f", NULL);
    expect_env_refused("fine", "us'er");
    expect_env_refused("fine", "us\ner");
}

static void test_password_format_is_the_password_alone(void **state) {
    struct credfile cf;
    fill(&cf, false);
    struct secret *out = NULL;
    assert_int_equal(credfile_format_password(&cf, &out), 0);
    assert_int_equal(secret_len(out), 6);
    assert_memory_equal(secret_data(out), "s3cr3t", 6);
    secret_free(out);
    credfile_clear(&cf);
}

/* ---- files ------------------------------------------------------------------------- */

static void test_write_atomic_sets_mode_and_content(void **state) {
    struct tdir *t = *state;
    static const char data[] = "hello\n";
    assert_int_equal(credfile_write_atomic(t->fd, "cache.json", data, 6, 0640, getgid()), 0);
    struct stat st;
    assert_int_equal(fstatat(t->fd, "cache.json", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(st.st_gid, getgid());
    char *got = read_file(t->fd, "cache.json", NULL);
    assert_string_equal(got, data);
    free(got);

    /* Replace with a different mode; keep the group. */
    assert_int_equal(credfile_write_atomic(t->fd, "cache.json", "bye", 3, 0600, (gid_t)-1), 0);
    assert_int_equal(fstatat(t->fd, "cache.json", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    got = read_file(t->fd, "cache.json", NULL);
    assert_string_equal(got, "bye");
    free(got);
    assert_int_equal(count_entries(t->fd, "."), 2);   /* only "." and ".." */
    assert_int_equal(count_entries(t->fd, CREDFILE_TMP_PREFIX), 0);
}

static void test_write_atomic_replaces_symlink_without_following(void **state) {
    struct tdir *t = *state;
    write_file(t->fd, "victim", "untouched", 9);
    assert_int_equal(symlinkat("victim", t->fd, "cache.json"), 0);
    assert_int_equal(credfile_write_atomic(t->fd, "cache.json", "new", 3, 0640, (gid_t)-1), 0);
    struct stat st;
    assert_int_equal(fstatat(t->fd, "cache.json", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISREG(st.st_mode));
    char *got = read_file(t->fd, "victim", NULL);
    assert_string_equal(got, "untouched");
    free(got);
    got = read_file(t->fd, "cache.json", NULL);
    assert_string_equal(got, "new");
    free(got);
    assert_int_equal(count_entries(t->fd, CREDFILE_TMP_PREFIX), 0);
}

static void test_write_atomic_refuses_bad_names_and_cleans_up(void **state) {
    struct tdir *t = *state;
    assert_int_equal(credfile_write_atomic(t->fd, "a/b", "x", 1, 0600, (gid_t)-1), -EINVAL);
    assert_int_equal(credfile_write_atomic(t->fd, "..", "x", 1, 0600, (gid_t)-1), -EINVAL);
    assert_int_equal(credfile_write_atomic(t->fd, "", "x", 1, 0600, (gid_t)-1), -EINVAL);
    /* A directory at the target: rename fails, the temp file is removed. */
    assert_int_equal(mkdirat(t->fd, "dir.json", 0700), 0);
    int r = credfile_write_atomic(t->fd, "dir.json", "x", 1, 0600, (gid_t)-1);
    assert_true(r == -EISDIR || r == -ENOTEMPTY || r == -EEXIST);
    assert_int_equal(count_entries(t->fd, CREDFILE_TMP_PREFIX), 0);
    assert_int_equal(unlinkat(t->fd, "dir.json", AT_REMOVEDIR), 0);
}

static void test_remove_temps_removes_only_tmp_files(void **state) {
    struct tdir *t = *state;
    write_file(t->fd, ".tmp-cache.json-0123abcd", "x", 1);
    write_file(t->fd, ".tmp-other", "x", 1);
    write_file(t->fd, "cache.json", "x", 1);
    write_file(t->fd, ".hidden", "x", 1);
    write_file(t->fd, "tmp-cache.json", "x", 1);
    write_file(t->fd, ".tmp", "x", 1);
    assert_int_equal(credfile_remove_temps(t->fd), 2);
    assert_int_equal(count_entries(t->fd, CREDFILE_TMP_PREFIX), 0);
    struct stat st;
    assert_int_equal(fstatat(t->fd, "cache.json", &st, 0), 0);
    assert_int_equal(fstatat(t->fd, ".hidden", &st, 0), 0);
    assert_int_equal(fstatat(t->fd, "tmp-cache.json", &st, 0), 0);
    assert_int_equal(fstatat(t->fd, ".tmp", &st, 0), 0);
    assert_int_equal(credfile_remove_temps(t->fd), 0);
    assert_int_equal(credfile_remove_temps(-1), -EBADF);
}

static void test_read_round_trip(void **state) {
    struct tdir *t = *state;
    struct credfile cf, out;
    fill(&cf, true);
    struct secret *json = NULL;
    assert_int_equal(credfile_format_json(&cf, &json), 0);
    assert_int_equal(credfile_write_atomic(t->fd, "cache.json", secret_data(json),
                                           secret_len(json), 0640, (gid_t)-1), 0);
    char err[256] = "";
    assert_int_equal(credfile_read(t->fd, "cache.json", &out, err, sizeof(err)), 0);
    assert_credfile_equal(&cf, &out);
    credfile_clear(&out);
    secret_free(json);
    credfile_clear(&cf);
}

static void test_read_refuses_symlink_special_and_oversized(void **state) {
    struct tdir *t = *state;
    struct credfile out;
    char err[256] = "";
    static const char ok[] = "{\"format\":1," GOOD_REST "}";
    write_file(t->fd, "real.json", ok, strlen(ok));
    assert_int_equal(symlinkat("real.json", t->fd, "link.json"), 0);
    assert_int_equal(credfile_read(t->fd, "link.json", &out, err, sizeof(err)), -ELOOP);
    assert_non_null(strstr(err, "link.json"));

    assert_int_equal(credfile_read(t->fd, "missing.json", &out, err, sizeof(err)), -ENOENT);
    assert_int_equal(credfile_read(t->fd, "../real.json", &out, err, sizeof(err)), -EINVAL);

    assert_int_equal(mkfifoat(t->fd, "fifo.json", 0600), 0);
    assert_int_equal(credfile_read(t->fd, "fifo.json", &out, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "regular"));

    size_t n = CREDFILE_MAX_SIZE + 100;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, ok, strlen(ok));
    write_file(t->fd, "big.json", big, n);
    free(big);
    assert_int_equal(credfile_read(t->fd, "big.json", &out, err, sizeof(err)), -EFBIG);

    assert_int_equal(credfile_read(t->fd, "real.json", &out, err, sizeof(err)), 0);
    credfile_clear(&out);
}

static void test_read_error_never_quotes_the_password(void **state) {
    struct tdir *t = *state;
    static const char bad[] = "{\"format\":1,\"name\":\"n\",\n\"password\": " PW ",\"version\":\"v\"}\n";
    write_file(t->fd, "bad.json", bad, strlen(bad));
    struct credfile out;
    char err[256] = "";
    assert_int_equal(credfile_read(t->fd, "bad.json", &out, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "bad.json"));
    assert_non_null(strstr(err, "line 2"));
    assert_null(strstr(err, "hunter"));
    assert_null(strstr(err, "T0PS3CRET"));
}

static int group_setup(void **state) {
    return secret_init(0) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_output_is_exactly_the_documented_layout),
        cmocka_unit_test(test_json_default_user_and_no_previous_are_null),
        cmocka_unit_test(test_round_trip_with_previous),
        cmocka_unit_test(test_round_trip_without_previous),
        cmocka_unit_test(test_round_trip_previous_valid_until),
        cmocka_unit_test(test_round_trip_default_user_and_expiry),
        cmocka_unit_test(test_round_trip_escapes_json_specials),
        cmocka_unit_test(test_format_refuses_unrepresentable_values),
        cmocka_unit_test(test_format_refuses_output_over_64k),
        cmocka_unit_test(test_parse_minimal_and_unknown_keys),
        cmocka_unit_test(test_parse_accepts_not_nul_terminated_input),
        cmocka_unit_test(test_parse_rejects_malformed_json),
        cmocka_unit_test(test_parse_rejects_non_objects),
        cmocka_unit_test(test_parse_rejects_bad_format),
        cmocka_unit_test(test_parse_rejects_missing_or_empty_password),
        cmocka_unit_test(test_parse_rejects_wrong_types),
        cmocka_unit_test(test_parse_rejects_oversized_input),
        cmocka_unit_test(test_parse_errors_never_quote_the_password),
        cmocka_unit_test(test_value_copy_and_clear),
        cmocka_unit_test(test_env_format),
        cmocka_unit_test(test_env_refuses_quote_backslash_and_control),
        cmocka_unit_test(test_password_format_is_the_password_alone),
        cmocka_unit_test_setup_teardown(test_write_atomic_sets_mode_and_content, tdir_setup,
                                        tdir_teardown),
        cmocka_unit_test_setup_teardown(test_write_atomic_replaces_symlink_without_following,
                                        tdir_setup, tdir_teardown),
        cmocka_unit_test_setup_teardown(test_write_atomic_refuses_bad_names_and_cleans_up,
                                        tdir_setup, tdir_teardown),
        cmocka_unit_test_setup_teardown(test_remove_temps_removes_only_tmp_files, tdir_setup,
                                        tdir_teardown),
        cmocka_unit_test_setup_teardown(test_read_round_trip, tdir_setup, tdir_teardown),
        cmocka_unit_test_setup_teardown(test_read_refuses_symlink_special_and_oversized,
                                        tdir_setup, tdir_teardown),
        cmocka_unit_test_setup_teardown(test_read_error_never_quotes_the_password, tdir_setup,
                                        tdir_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
