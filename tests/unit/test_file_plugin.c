/* Unit tests of the file source plugin, through the mock host. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "credfile.h"
#include "rctime.h"
#include "mock_host.h"
#include "stack_residue.h"

extern const struct rc_plugin redis_creds_plugin;

struct fx {
    char dir[256];
    struct mock_host m;
    void *state;
    struct rc_credential *creds;
    size_t n;
};

static void write_file(const char *dir, const char *name, const char *content, size_t len) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
}

static int setup(void **st) {
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("REDIS_CREDS_TEST_TMP");
    char conf[2048];
    snprintf(f->dir, sizeof f->dir, "%s/filepl-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(conf, sizeof conf,
             "sources = ( { name = \"local\"; type = \"file\"; directory = \"%s\"; } );\n"
             "credentials = (\n"
             "  { name = \"cache\"; source = \"local\"; path = \"cache.json\";\n"
             "    redis = { endpoints = [ \"127.0.0.1:6379\" ]; }; },\n"
             "  { name = \"bare\"; source = \"local\"; path = \"bare\";\n"
             "    redis = { endpoints = [ \"127.0.0.1:6379\" ]; }; } );\n",
             f->dir);
    assert_int_equal(mock_host_init(&f->m, &redis_creds_plugin, conf), 0);
    f->creds = mock_host_credentials(&f->m, 0, &f->n);
    assert_int_equal(f->n, 2);
    struct rc_error err = { 0 };
    const struct rc_source_type *t = &redis_creds_plugin.types[0];
    assert_int_equal(t->open(&f->m.host, mock_host_source(&f->m, 0), f->creds, f->n, &f->state, &err), 0);
    *st = f;
    return 0;
}

static int teardown(void **st) {
    struct fx *f = *st;
    char cmd[600];
    redis_creds_plugin.types[0].close(f->state);
    free(f->creds);
    mock_host_fini(&f->m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* One fetch; the file source always hands back exactly one CURRENT candidate. */
static int fetch(struct fx *f, size_t i, struct rc_candidate *c, struct rc_error *err) {
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    memset(cs, 0, sizeof cs);
    cs[0].expires_at = cs[1].expires_at = INT64_MIN;
    memset(err, 0, sizeof *err);
    int r = redis_creds_plugin.types[0].fetch(f->state, &f->creds[i], cs, err);
    if (r < 0)
        return r;
    assert_int_equal(r, 1);
    assert_int_equal(cs[0].role, RC_CAND_CURRENT);
    *c = cs[0];
    return 0;
}

static void cand_clear(struct rc_candidate *c) {
    free(c->username);
    secret_free(c->password);
    memset(c, 0, sizeof *c);
}

static void test_plugin_abi_and_error_class_texts(void **st) {
    assert_int_equal(redis_creds_plugin.abi_version, RC_PLUGIN_ABI_VERSION);
    for (int c = 0; c < RC_ERR_CLASS_MAX_; c++)
        assert_non_null(rc_err_class_to_string((enum rc_err_class)c));
    assert_null(rc_err_class_to_string(RC_ERR_CLASS_MAX_));
}

static void test_json_file_gives_username_password_and_keyed_version(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    const char *json = "{\"username\": \"app\", \"password\": \"s3cr3t-pw\"}\n";
    write_file(f->dir, "cache.json", json, strlen(json));
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    assert_string_equal(c.username, "app");
    assert_string_equal(secret_data(c.password), "s3cr3t-pw");
    assert_int_equal(strlen(c.version), 18);
    assert_memory_equal(c.version, "h-", 2);
    assert_null(strstr(c.version, "s3cr3t"));
    assert_true(c.expires_at == INT64_MIN || c.expires_at == 0);
    cand_clear(&c);
}

static void test_reformatted_json_keeps_version_and_new_password_changes_it(void **st) {
    struct fx *f = *st;
    struct rc_candidate a, b, d;
    struct rc_error err;
    const char *j1 = "{\"username\":\"app\",\"password\":\"pw1\"}";
    const char *j2 = "{\n  \"password\": \"pw1\",\n  \"username\": \"app\"\n}\n";
    const char *j3 = "{\"username\":\"app\",\"password\":\"pw2\"}";
    write_file(f->dir, "cache.json", j1, strlen(j1));
    assert_int_equal(fetch(f, 0, &a, &err), 0);
    write_file(f->dir, "cache.json", j2, strlen(j2));
    assert_int_equal(fetch(f, 0, &b, &err), 0);
    write_file(f->dir, "cache.json", j3, strlen(j3));
    assert_int_equal(fetch(f, 0, &d, &err), 0);
    assert_string_equal(a.version, b.version);
    assert_string_not_equal(a.version, d.version);
    cand_clear(&a);
    cand_clear(&b);
    cand_clear(&d);
}

static void test_bare_password_drops_one_newline_and_means_default_user(void **st) {
    struct fx *f = *st;
    struct rc_candidate c, d;
    struct rc_error err;
    write_file(f->dir, "bare", "hunter2\n", strlen("hunter2\n"));
    assert_int_equal(fetch(f, 1, &c, &err), 0);
    assert_null(c.username);
    assert_int_equal(secret_len(c.password), 7);
    assert_string_equal(secret_data(c.password), "hunter2");
    /* The same password for a named user is a different credential. */
    write_file(f->dir, "cache.json", "{\"username\":\"u\",\"password\":\"hunter2\"}", strlen("{\"username\":\"u\",\"password\":\"hunter2\"}"));
    assert_int_equal(fetch(f, 0, &d, &err), 0);
    assert_string_not_equal(c.version, d.version);
    cand_clear(&c);
    cand_clear(&d);
}

/* D6: the published files are JSON (and env), which cannot carry a NUL byte or bytes that
 * are not UTF-8. Such a password is refused when the file is read, with why and where,
 * not validated and then failing to publish forever. */
static void test_bare_password_with_nul_or_invalid_utf8_is_refused_saying_why(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    static const struct { const char *data; size_t len; const char *why; const char *where; } bad[] = {
        { "abc\0Nu1Secret\n", 14, "NUL byte", "byte 3" },
        { "Utf8S3cret\xff", 11, "not valid UTF-8", "byte 10" },
        { "Ov3rlong\xc0\xafx", 11, "not valid UTF-8", "byte 8" },      /* overlong '/' */
        { "Surr0gate\xed\xa0\x80", 12, "not valid UTF-8", "byte 9" },  /* U+D800 */
        { "Trunc4ted\xe2\x82", 11, "not valid UTF-8", "byte 9" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(f->dir, "bare", bad[i].data, bad[i].len);
        assert_int_equal(fetch(f, 1, &c, &err), -1);
        assert_int_equal(err.cls, RC_ERR_INVALID);
        assert_non_null(strstr(err.message, bad[i].why));
        assert_non_null(strstr(err.message, bad[i].where));
        assert_null(strstr(err.message, "Secret"));
        assert_null(strstr(err.message, "S3cret"));
    }
    /* UTF-8 beyond ASCII is fine, as is every 4-byte form up to U+10FFFF. */
    const char *ok = "p\xc3\xa4ss\xe2\x82\xac\xf0\x9f\x94\x91\xf4\x8f\xbf\xbf";
    write_file(f->dir, "bare", ok, strlen(ok));
    assert_int_equal(fetch(f, 1, &c, &err), 0);
    assert_memory_equal(secret_data(c.password), ok, strlen(ok));
    cand_clear(&c);
    /* In JSON, jansson refuses both before we see them, and says which. */
    const char *nul = "{\"password\":\"a\\u0000b\"}";
    write_file(f->dir, "cache.json", nul, strlen(nul));
    assert_int_equal(fetch(f, 0, &c, &err), -1);
    assert_non_null(strstr(err.message, "\\u0000"));
}

static void test_empty_password_is_refused(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    write_file(f->dir, "bare", "\n", strlen("\n"));
    assert_int_equal(fetch(f, 1, &c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_non_null(strstr(err.message, "empty password"));
    write_file(f->dir, "cache.json", "{\"username\":\"u\",\"password\":\"\"}", strlen("{\"username\":\"u\",\"password\":\"\"}"));
    assert_int_equal(fetch(f, 0, &c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
}

static void test_missing_file_is_not_found(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    assert_int_equal(fetch(f, 0, &c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
}

static void test_malformed_json_is_invalid_without_quoting_the_secret(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    const char *bad = "{\"username\":\"app\",\"password\":\"TOPSECRET\" oops}";
    write_file(f->dir, "cache.json", bad, strlen(bad));
    assert_int_equal(fetch(f, 0, &c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_null(strstr(err.message, "TOPSECRET"));
    assert_non_null(strstr(err.message, "malformed JSON"));
    /* D3: jansson quotes the string it was reading when it meets a control character;
     * neither the message nor the dead stack below the fetch may keep it. */
    const char *ctl = "{\"username\":\"app\",\"password\":\"F1leFr4gment\x01\"}";
    write_file(f->dir, "cache.json", ctl, strlen(ctl));
    assert_int_equal(fetch(f, 0, &c, &err), -1);
    assert_no_residue("F1leFr4gment", &err);
}

static void test_wrong_types_are_invalid(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    const char *cases[] = { "{\"password\": 42}", "{\"username\": 1, \"password\": \"x\"}", "{\"password\": null}",
                            "{\"username\": \"\", \"password\": \"x\"}" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(f->dir, "cache.json", cases[i], strlen(cases[i]));
        assert_int_equal(fetch(f, 0, &c, &err), -1);
        assert_int_equal(err.cls, RC_ERR_INVALID);
    }
    write_file(f->dir, "cache.json", "{\"username\": \"u\"}", strlen("{\"username\": \"u\"}"));
    assert_int_equal(fetch(f, 0, &c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "password"));
}

static void test_oversized_file_is_refused(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    size_t n = 70 * 1024;
    char *big = malloc(n);
    memset(big, 'a', n);
    write_file(f->dir, "bare", big, n);
    free(big);
    assert_int_equal(fetch(f, 1, &c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
}

static void test_symlink_and_fifo_are_refused_without_hanging(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    char p[512];
    snprintf(p, sizeof p, "%s/cache.json", f->dir);
    assert_int_equal(symlink("/etc/hostname", p), 0);
    assert_int_equal(fetch(f, 0, &c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    snprintf(p, sizeof p, "%s/bare", f->dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(fetch(f, 1, &c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
}

static void test_write_and_rename_wake_the_credential(void **st) {
    struct fx *f = *st;
    const struct rc_source_type *t = &redis_creds_plugin.types[0];
    int fd = t->watch_fd(f->state);
    assert_true(fd >= 0);

    write_file(f->dir, "cache.json", "{\"password\":\"a\"}", strlen("{\"password\":\"a\"}"));
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    t->watch_event(f->state);
    assert_int_equal(f->m.n_woken, 1);
    assert_string_equal(f->m.woken[0], "cache");

    /* A writer that renames a hidden temp file into place: IN_MOVED_TO wakes "bare". */
    write_file(f->dir, ".bare.tmp", "pw", strlen("pw"));
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/.bare.tmp", f->dir);
    snprintf(to, sizeof to, "%s/bare", f->dir);
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    t->watch_event(f->state);
    assert_int_equal(f->m.n_woken, 2);
    assert_string_equal(f->m.woken[1], "bare");

    /* Unrelated files wake nobody. */
    write_file(f->dir, "other", "x", strlen("x"));
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    t->watch_event(f->state);
    assert_int_equal(f->m.n_woken, 2);
}

/* The plugin's key table declares the checks, so the host refuses these at load (and
 * --check-config) without running plugin code. */
static void test_path_with_slash_and_relative_directory_are_refused_at_load(void **st) {
    static const struct {
        const char *dir, *path, *want;
    } cases[] = {
        { "/tmp", "../etc/passwd", "test.conf:2: credentials[0].path: \"../etc/passwd\" must be a "
          "file name in the directory (no '/', not starting with '.')" },
        { "/tmp", ".hidden", "test.conf:2: credentials[0].path: \".hidden\" must be a file name" },
        { "secrets", "app.json", "test.conf:1: sources[0].directory: \"secrets\" must be an "
          "absolute path" },
    };
    struct mock_host m;
    assert_int_equal(mock_host_schema(&m, &redis_creds_plugin), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char conf[1024], err[1024];
        struct config *c = NULL;
        snprintf(conf, sizeof conf,
                 "sources = ( { name = \"local\"; type = \"file\"; directory = \"%s\"; } );\n"
                 "credentials = ( { name = \"c\"; source = \"local\"; path = \"%s\";\n"
                 "    redis = { endpoints = [ \"127.0.0.1:6379\" ]; }; } );\n", cases[i].dir,
                 cases[i].path);
        assert_int_equal(config_load_string(conf, "test.conf", "/tmp", mock_host_lookup, &m, &c, err,
                                            sizeof err), -EINVAL);
        assert_null(c);
        if (strncmp(err, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg("\"%s\" does not start with \"%s\"", err, cases[i].want);
    }
    mock_host_fini(&m);
}

static void test_missing_directory_is_fatal_at_open(void **st) {
    struct mock_host m;
    const char *conf =
        "sources = ( { name = \"local\"; type = \"file\"; directory = \"/nonexistent/redis-creds\"; } );\n"
        "credentials = ( );\n"
        "agent = { allow_no_credentials = true; };\n";
    assert_int_equal(mock_host_init(&m, &redis_creds_plugin, conf), 0);
    void *state = NULL;
    struct rc_error err = { 0 };
    assert_int_equal(redis_creds_plugin.types[0].open(&m.host, mock_host_source(&m, 0), NULL, 0, &state, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "/nonexistent/redis-creds"));
    mock_host_fini(&m);
}


/* ---- rotate(): check-and-set write ---- */

static int rotate(struct fx *f, size_t i, const char *expected, const char *user, const char *pw,
                  char *ret_version, struct rc_error *err) {
    return mock_rotate(&redis_creds_plugin.types[0], f->state, &f->creds[i], expected, user, pw,
                       ret_version, err);
}

static void test_rotate_writes_next_version_when_expected_version_matches(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    char v[RC_VERSION_MAX], old[RC_VERSION_MAX];
    struct stat sb;

    write_file(f->dir, "cache.json", "{\"username\":\"app\",\"password\":\"old-pw\"}", 38);
    char p[512];
    snprintf(p, sizeof p, "%s/cache.json", f->dir);
    assert_int_equal(chmod(p, 0640), 0);
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    snprintf(old, sizeof old, "%s", c.version);
    cand_clear(&c);

    assert_int_equal(rotate(f, 0, old, "app", "new-pw-123", v, &err), 0);
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    assert_string_equal(c.username, "app");
    assert_string_equal(secret_data(c.password), "new-pw-123");
    assert_string_equal(c.version, v);        /* rotate() reports what fetch() will see */
    assert_string_not_equal(c.version, old);
    cand_clear(&c);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0640);   /* the file keeps its mode */

    /* A second writer that still expects the old version loses and writes nothing. */
    assert_int_equal(rotate(f, 0, old, "app", "other-pw", v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    assert_non_null(strstr(err.message, "cache.json"));
    assert_null(strstr(err.message, "other-pw"));
    assert_null(strstr(err.message, "new-pw-123"));
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    assert_string_equal(secret_data(c.password), "new-pw-123");
    cand_clear(&c);
}

static void test_rotate_default_user_and_bare_file(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    char v[RC_VERSION_MAX], old[RC_VERSION_MAX];

    write_file(f->dir, "bare", "pw-one\n", 7);
    assert_int_equal(fetch(f, 1, &c, &err), 0);
    snprintf(old, sizeof old, "%s", c.version);
    cand_clear(&c);
    assert_int_equal(rotate(f, 1, old, NULL, "pw-two-xyz", v, &err), 0);
    assert_int_equal(fetch(f, 1, &c, &err), 0);
    assert_null(c.username);
    assert_string_equal(secret_data(c.password), "pw-two-xyz");
    assert_string_equal(c.version, v);
    cand_clear(&c);
}

static void test_rotate_missing_file_and_unwritable_directory_are_errors(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    char v[RC_VERSION_MAX], old[RC_VERSION_MAX];

    assert_int_equal(rotate(f, 0, "h-0000000000000000", "app", "pw-new-new", v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);

    write_file(f->dir, "cache.json", "{\"username\":\"app\",\"password\":\"old-pw\"}", 38);
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    snprintf(old, sizeof old, "%s", c.version);
    cand_clear(&c);
    assert_int_equal(chmod(f->dir, 0555), 0);
    /* Root writes anywhere: show the permission case as an unprivileged child. */
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
            _exit(3);
        int r = rotate(f, 0, old, "app", "pw-new-new", v, &err);
        if (write(pipefd[1], &err, sizeof err) != (ssize_t)sizeof err)
            _exit(4);
        _exit(r == -1 ? 0 : 1);
    }
    close(pipefd[1]);
    int status = 0;
    memset(&err, 0, sizeof err);
    assert_int_equal(read(pipefd[0], &err, sizeof err), (ssize_t)sizeof err);
    close(pipefd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(chmod(f->dir, 0700), 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "cache.json"));
    assert_non_null(strstr(err.message, "writable by the agent"));
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    assert_string_equal(secret_data(c.password), "old-pw");
    cand_clear(&c);
}

/* ---- ABI 4: the rotation mark, the reserved keys, the rotation record ---- */

static char *read_text(const char *dir, const char *name) {
    char p[512], *buf = calloc(1, 128 * 1024);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        free(buf);
        return NULL;
    }
    assert_true(read(fd, buf, 128 * 1024 - 1) >= 0);
    close(fd);
    return buf;
}

static size_t count(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void test_rotate_with_mark_writes_reserved_keys_that_fetch_reports_and_rollback_drops(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    char v1[RC_VERSION_MAX], v2[RC_VERSION_MAX], old[RC_VERSION_MAX];
    int64_t t;
    assert_int_equal(rctime_parse("2026-12-02T06:30:00Z", &t), 0);

    write_file(f->dir, "cache.json", "{\"username\":\"app\",\"password\":\"old-pw\"}", 38);
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    assert_true(c.rotated_at == INT64_MIN);   /* written by hand: no mark */
    snprintf(old, sizeof old, "%s", c.version);
    cand_clear(&c);

    struct rc_rotation_mark mark = { .rotated_at = t, .rotated_by = "host-a" };
    assert_int_equal(mock_rotate_marked(&redis_creds_plugin.types[0], f->state, &f->creds[0], old, "app",
                                        "marked-pw-1", &mark, v1, &err), 0);
    char *text = read_text(f->dir, "cache.json");
    assert_non_null(strstr(text, "\"redis_creds_rotated_at\":\"2026-12-02T06:30:00Z\""));
    assert_non_null(strstr(text, "\"redis_creds_rotated_by\":\"host-a\""));
    free(text);
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    assert_true(c.rotated_at == t);
    assert_string_equal(c.version, v1);
    assert_string_equal(secret_data(c.password), "marked-pw-1");
    cand_clear(&c);

    /* The mark is no part of the version: the same credential written by hand has it. */
    const char *hand = "{\"username\":\"app\",\"password\":\"marked-pw-1\"}";
    write_file(f->dir, "cache.json", hand, strlen(hand));
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    assert_string_equal(c.version, v1);
    assert_true(c.rotated_at == INT64_MIN);
    cand_clear(&c);

    /* A roll-back (no mark) writes none. */
    assert_int_equal(mock_rotate_marked(&redis_creds_plugin.types[0], f->state, &f->creds[0], v1, "app",
                                        "rolled-back", NULL, v2, &err), 0);
    text = read_text(f->dir, "cache.json");
    assert_null(strstr(text, "redis_creds_"));
    free(text);
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    assert_true(c.rotated_at == INT64_MIN);
    assert_string_equal(c.version, v2);
    cand_clear(&c);
}

static void test_malformed_rotated_at_warns_once_naming_key_and_file_and_fetch_succeeds(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    const char *bad[] = {
        "{\"password\":\"pw-a\",\"redis_creds_rotated_at\":\"yesterday\"}",
        "{\"password\":\"pw-b\",\"redis_creds_rotated_at\":1795242600}",
        "{\"password\":\"pw-c\",\"redis_creds_rotated_at\":\"2026-13-02T06:30:00Z\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(f->dir, "cache.json", bad[i], strlen(bad[i]));
        for (int twice = 0; twice < 2; twice++) {
            assert_int_equal(fetch(f, 0, &c, &err), 0);
            assert_true(c.rotated_at == INT64_MIN);
            cand_clear(&c);
        }
        assert_int_equal(count(f->m.log, "`redis_creds_rotated_at` is not an RFC 3339 time"), i + 1);
    }
    assert_non_null(strstr(f->m.log, "cache.json"));
    assert_null(strstr(f->m.log, "pw-a"));
    /* null is "no mark", not a mistake. */
    const char *null_mark = "{\"password\":\"pw-d\",\"redis_creds_rotated_at\":null}";
    write_file(f->dir, "cache.json", null_mark, strlen(null_mark));
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    assert_true(c.rotated_at == INT64_MIN);
    cand_clear(&c);
    assert_int_equal(count(f->m.log, "is not an RFC 3339 time"), 3);
}

static void test_reserved_keys_are_accepted_and_never_change_the_version(void **st) {
    struct fx *f = *st;
    struct rc_candidate a, b;
    struct rc_error err;
    const char *plain = "{\"username\":\"app\",\"password\":\"pw-r\"}";
    const char *reserved = "{\"username\":\"app\",\"password\":\"pw-r\",\"redis_creds_future\":{\"x\":[1]},"
                           "\"redis_creds_rotated_by\":\"host-b\",\"redis_creds_rotated_at\":\"2026-12-02T06:30:00+01:00\"}";
    write_file(f->dir, "cache.json", plain, strlen(plain));
    assert_int_equal(fetch(f, 0, &a, &err), 0);
    write_file(f->dir, "cache.json", reserved, strlen(reserved));
    assert_int_equal(fetch(f, 0, &b, &err), 0);
    assert_string_equal(a.version, b.version);
    int64_t t;
    assert_int_equal(rctime_parse("2026-12-02T05:30:00Z", &t), 0);
    assert_true(b.rotated_at == t);
    cand_clear(&a);
    cand_clear(&b);
}

static void test_unknown_key_is_refused_naming_it_with_did_you_mean_and_no_password(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    static const struct { const char *json, *key, *mean; } cases[] = {
        { "{\"user\":\"app\",\"password\":\"TopS3cret-1\"}", "`user`", "did you mean `username`?" },
        { "{\"usernmae\":\"app\",\"password\":\"TopS3cret-1\"}", "`usernmae`", "did you mean `username`?" },
        { "{\"username\":\"app\",\"pasword\":\"TopS3cret-1\"}", "`pasword`", "did you mean `password`?" },
        { "{\"Password\":\"TopS3cret-1\"}", "`Password`", "did you mean `password`?" },
        { "{\"pass\":\"TopS3cret-1\"}", "`pass`", "did you mean `password`?" },
        { "{\"password\":\"TopS3cret-1\",\"token\":\"x\"}", "`token`", NULL },
        { "{\"password\":\"TopS3cret-1\",\"redis_cred_x\":1}", "`redis_cred_x`", NULL },
        { "{\"password\":\"TopS3cret-1\",\"xTopS3cret-1\":1}", "unknown key (not shown: it contains the password)", NULL },
        { "{\"password\":\"TopS3cret-1\",\"a\\nb\":1}", "`a?b`", NULL },
        { "{\"password\":\"TopS3cret-1\",\"k0123456789012345678901234567890123456789012345678901234567890123456789\":1}",
          "`k012345678901234567890123456789012345678901234567890123456789012...`", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(f->dir, "cache.json", cases[i].json, strlen(cases[i].json));
        assert_int_equal(fetch(f, 0, &c, &err), -1);
        assert_int_equal(err.cls, RC_ERR_INVALID);
        if (!strstr(err.message, cases[i].key) || !strstr(err.message, "unknown key") ||
            !strstr(err.message, "cache.json") || !strstr(err.message, "`redis_creds_`"))
            fail_msg("case %zu: %s", i, err.message);
        if (cases[i].mean ? !strstr(err.message, cases[i].mean) : !!strstr(err.message, "did you mean"))
            fail_msg("case %zu: %s", i, err.message);
        assert_null(strstr(err.message, "TopS3cret"));
    }
}

static const struct rc_source_type *T(void) {
    return &redis_creds_plugin.types[0];
}

static void test_record_create_conflict_update_remove(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char r0[RC_REVISION_MAX], r1[RC_REVISION_MAX], r2[RC_REVISION_MAX], *text;
    assert_true(T()->caps & RC_CAP_ROTATION_RECORD);

    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, r0, &err), 0);
    assert_null(text);
    assert_string_equal(r0, "");

    const char *a = "{\"format\":1,\"owner\":\"host-a\",\"epoch\":1,\"password\":\"Pend1ng-pw\"}";
    const char *b = "{\"format\":1,\"owner\":\"host-a\",\"epoch\":1,\"phase\":\"removing\"}";
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", a, r1, &err), 0);
    assert_memory_equal(r1, "h-", 2);
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, r0, &err), 0);
    assert_string_equal(text, a);
    assert_string_equal(r0, r1);
    free(text);

    /* A second claimant (expects none) loses and writes nothing. */
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", b, r2, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    assert_non_null(strstr(err.message, ".cache.json.rotation"));
    assert_null(strstr(err.message, "Pend1ng"));
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], r1, b, r2, &err), 0);
    assert_string_not_equal(r1, r2);
    /* The owner's stale revision loses too. */
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], r1, a, r0, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, r0, &err), 0);
    assert_string_equal(text, b);
    assert_string_equal(r0, r2);
    free(text);

    /* Remove: a stale revision cannot, the right one can; then nothing is there. */
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], r1, NULL, r0, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], r2, NULL, r0, &err), 0);
    assert_string_equal(r0, "");
    char *gone = read_text(f->dir, ".cache.json.rotation");
    assert_null(gone);
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, r0, &err), 0);
    assert_null(text);
    assert_string_equal(r0, "");
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], r2, NULL, r0, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    /* Each credential has its own record. */
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[1], "", a, r1, &err), 0);
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, r0, &err), 0);
    assert_null(text);
}

static void test_record_file_is_0600_whatever_the_umask(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char r1[RC_REVISION_MAX], p[512];
    struct stat sb;
    mode_t old = umask(0);
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", "{\"epoch\":1}", r1, &err), 0);
    umask(old);
    snprintf(p, sizeof p, "%s/.cache.json.rotation", f->dir);
    assert_int_equal(lstat(p, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 07777, 0600);
}

static void test_record_symlink_is_refused_and_its_target_untouched(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char r[RC_REVISION_MAX], p[512], *text;
    write_file(f->dir, "elsewhere", "{\"epoch\":9}", 11);
    snprintf(p, sizeof p, "%s/.cache.json.rotation", f->dir);
    assert_int_equal(symlink("elsewhere", p), 0);
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, r, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_non_null(strstr(err.message, "symlink"));
    assert_string_equal(r, "?");
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", "{\"epoch\":1}", r, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", NULL, r, &err), -1);
    char *target = read_text(f->dir, "elsewhere");
    assert_string_equal(target, "{\"epoch\":9}");
    free(target);
    struct stat sb;
    assert_int_equal(lstat(p, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
}

static void test_record_oversized_or_malformed_is_a_clear_error_without_its_text(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char r[RC_REVISION_MAX], *text;
    const char *bad = "{\"owner\":\"host-a\",\"password\":\"R3cordS3cret\" oops}";
    write_file(f->dir, ".cache.json.rotation", bad, strlen(bad));
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, r, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_non_null(strstr(err.message, ".cache.json.rotation"));
    assert_non_null(strstr(err.message, "malformed JSON"));
    assert_null(strstr(err.message, "R3cordS3cret"));
    const char *ctl = "{\"password\":\"R3cordFr4gment\x01\"}";
    write_file(f->dir, ".cache.json.rotation", ctl, strlen(ctl));
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, r, &err), -1);
    assert_no_residue("R3cordFr4gment", &err);
    write_file(f->dir, ".cache.json.rotation", "[1,2]", 5);
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, r, &err), -1);
    assert_non_null(strstr(err.message, "not a JSON object"));

    size_t n = 70 * 1024;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[0] = '{';
    memcpy(big + n - 1, "}", 2);
    write_file(f->dir, ".cache.json.rotation", big, n);
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, r, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_non_null(strstr(err.message, "larger than"));
    /* The host cannot store one over the cap, or one that is not an object, either. */
    char p[512];
    snprintf(p, sizeof p, "%s/.cache.json.rotation", f->dir);
    assert_int_equal(unlink(p), 0);
    char *huge = malloc(n + 1);
    memset(huge, ' ', n);
    huge[0] = '{';
    memcpy(huge + n - 1, "}", 2);
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", huge, r, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", "\"R3cordS3cret\"", r, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_null(strstr(err.message, "R3cordS3cret"));
    free(huge);
    free(big);
    assert_null(read_text(f->dir, ".cache.json.rotation"));
}

static void test_record_wakes_nobody_and_fetch_never_reads_it(void **st) {
    struct fx *f = *st;
    struct rc_candidate c;
    struct rc_error err;
    char r[RC_REVISION_MAX];
    int fd = T()->watch_fd(f->state);
    assert_true(fd >= 0);
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", "{\"epoch\":1}", r, &err), 0);
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 2000), 1);   /* the directory did change */
    T()->watch_event(f->state);
    assert_int_equal(f->m.n_woken, 0);
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], r, NULL, r, &err), 0);
    T()->watch_event(f->state);
    assert_int_equal(f->m.n_woken, 0);

    /* A broken record next to a good credential file changes nothing for fetch(). */
    write_file(f->dir, ".cache.json.rotation", "not json", 8);
    const char *good = "{\"username\":\"app\",\"password\":\"pw-g\"}";
    write_file(f->dir, "cache.json", good, strlen(good));
    assert_int_equal(fetch(f, 0, &c, &err), 0);
    assert_string_equal(secret_data(c.password), "pw-g");
    cand_clear(&c);
}

int main(void) {
    secret_init(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plugin_abi_and_error_class_texts),
        cmocka_unit_test_setup_teardown(test_json_file_gives_username_password_and_keyed_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reformatted_json_keeps_version_and_new_password_changes_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_password_drops_one_newline_and_means_default_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_password_with_nul_or_invalid_utf8_is_refused_saying_why, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_password_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_is_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_json_is_invalid_without_quoting_the_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types_are_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_file_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_and_fifo_are_refused_without_hanging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_and_rename_wake_the_credential, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_writes_next_version_when_expected_version_matches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_default_user_and_bare_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_missing_file_and_unwritable_directory_are_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_with_mark_writes_reserved_keys_that_fetch_reports_and_rollback_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_rotated_at_warns_once_naming_key_and_file_and_fetch_succeeds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reserved_keys_are_accepted_and_never_change_the_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_is_refused_naming_it_with_did_you_mean_and_no_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_create_conflict_update_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_file_is_0600_whatever_the_umask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_symlink_is_refused_and_its_target_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_oversized_or_malformed_is_a_clear_error_without_its_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_wakes_nobody_and_fetch_never_reads_it, setup, teardown),
        cmocka_unit_test(test_path_with_slash_and_relative_directory_are_refused_at_load),
        cmocka_unit_test(test_missing_directory_is_fatal_at_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
