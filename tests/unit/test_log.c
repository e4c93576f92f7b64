/* Unit tests for common/log.c: stderr lines, level filter, journald native protocol. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "secret.h"

/* ---- helpers ----------------------------------------------------------------------- */

static const char *tmp_base(void) {
    const char *t = secure_getenv("REDIS_CREDS_TEST_TMP");
    return (t && *t) ? t : "/tmp";
}

/* Captures what is written to stderr between capture_begin() and capture_end(). */
struct capture {
    int saved_fd;
    int file_fd;
    char path[256];
};

static void capture_begin(struct capture *c) {
    int n = snprintf(c->path, sizeof(c->path), "%s/test_log.stderr.XXXXXX", tmp_base());
    assert_true(n > 0 && (size_t)n < sizeof(c->path));
    c->file_fd = mkostemp(c->path, O_CLOEXEC);
    assert_true(c->file_fd >= 0);
    fflush(stderr);
    c->saved_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    assert_true(c->saved_fd >= 0);
    assert_int_equal(dup2(c->file_fd, STDERR_FILENO), STDERR_FILENO);
}

/* Returns a malloc'd NUL-terminated copy of everything captured. */
static char *capture_end(struct capture *c) {
    assert_int_equal(dup2(c->saved_fd, STDERR_FILENO), STDERR_FILENO);
    close(c->saved_fd);
    off_t size = lseek(c->file_fd, 0, SEEK_END);
    assert_true(size >= 0);
    char *buf = calloc(1, (size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(c->file_fd, buf, (size_t)size, 0), size);
    close(c->file_fd);
    unlink(c->path);
    return buf;
}

static size_t count_lines(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* A datagram socket standing in for journald. */
struct fake_journal {
    char dir[256];
    char path[300];
    int fd;
};

static void fake_journal_open(struct fake_journal *j) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    const char *base = tmp_base();
    /* A socket path must fit sun_path; a deep build directory may not. */
    if (strlen(base) + sizeof("/test_log.XXXXXX/journal.sock") > sizeof(sa.sun_path))
        base = "/tmp";
    int n = snprintf(j->dir, sizeof(j->dir), "%s/test_log.XXXXXX", base);
    assert_true(n > 0 && (size_t)n < sizeof(j->dir));
    assert_non_null(mkdtemp(j->dir));
    n = snprintf(j->path, sizeof(j->path), "%s/journal.sock", j->dir);
    assert_true(n > 0 && (size_t)n < sizeof(j->path));
    assert_true(strlen(j->path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, j->path, strlen(j->path) + 1);
    j->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(j->fd >= 0);
    assert_int_equal(bind(j->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(setenv("REDIS_CREDS_JOURNAL_SOCKET", j->path, 1), 0);
}

static void fake_journal_close(struct fake_journal *j) {
    close(j->fd);
    unlink(j->path);
    rmdir(j->dir);
    unsetenv("REDIS_CREDS_JOURNAL_SOCKET");
}

/* Receives one datagram (waiting at most 2 s); returns its length or -1. */
static ssize_t fake_journal_recv(struct fake_journal *j, char *buf, size_t size, int wait_ms) {
    struct pollfd p = { .fd = j->fd, .events = POLLIN };
    if (poll(&p, 1, wait_ms) != 1)
        return -1;
    return recv(j->fd, buf, size, 0);
}

#define MAX_FIELDS 32
struct field {
    char key[64];
    char value[8192];
    size_t len;
    bool binary;
};

/* Parses a native-protocol datagram into fields; fails the test on malformed input. */
static size_t parse_fields(const char *d, size_t n, struct field *f, size_t max) {
    size_t count = 0, i = 0;
    while (i < n) {
        assert_true(count < max);
        struct field *x = &f[count++];
        memset(x, 0, sizeof(*x));
        size_t k = i;
        while (k < n && d[k] != '=' && d[k] != '\n')
            k++;
        assert_true(k < n);
        assert_true(k - i < sizeof(x->key));
        memcpy(x->key, d + i, k - i);
        if (d[k] == '=') {
            const char *nl = memchr(d + k + 1, '\n', n - k - 1);
            assert_non_null(nl);
            x->len = (size_t)(nl - (d + k + 1));
            assert_true(x->len < sizeof(x->value));
            memcpy(x->value, d + k + 1, x->len);
            i = (size_t)(nl - d) + 1;
        } else {
            x->binary = true;
            assert_true(k + 1 + 8 <= n);
            uint64_t len = 0;
            for (int b = 7; b >= 0; b--)
                len = (len << 8) | (unsigned char)d[k + 1 + b];
            size_t v = k + 1 + 8;
            assert_true(len < sizeof(x->value));
            assert_true(v + len + 1 <= n);
            memcpy(x->value, d + v, len);
            x->len = len;
            assert_int_equal(d[v + len], '\n');
            i = v + len + 1;
        }
    }
    return count;
}

static const struct field *find_field(const struct field *f, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i].key, key) == 0)
            return &f[i];
    return NULL;
}

static int reset_logging(void **state) {
    unsetenv("JOURNAL_STREAM");
    unsetenv("REDIS_CREDS_JOURNAL_SOCKET");
    log_open("test-log", LOG_TARGET_STDERR);
    log_set_level(LOG_INFO);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_level_names_round_trip(void **state) {
    assert_int_equal(log_level_from_string("debug"), LOG_DEBUG);
    assert_int_equal(log_level_from_string("info"), LOG_INFO);
    assert_int_equal(log_level_from_string("notice"), LOG_NOTICE);
    assert_int_equal(log_level_from_string("warning"), LOG_WARNING);
    assert_int_equal(log_level_from_string("err"), LOG_ERR);
    assert_int_equal(log_level_from_string("verbose"), -EINVAL);
    assert_int_equal(log_level_from_string(""), -EINVAL);
    assert_int_equal(log_level_from_string(NULL), -EINVAL);
    assert_string_equal(log_level_to_string(LOG_DEBUG), "debug");
    assert_string_equal(log_level_to_string(LOG_INFO), "info");
    assert_string_equal(log_level_to_string(LOG_NOTICE), "notice");
    assert_string_equal(log_level_to_string(LOG_WARNING), "warning");
    assert_string_equal(log_level_to_string(LOG_ERR), "err");
    assert_non_null(log_level_to_string(99));
}

static void test_set_and_get_level(void **state) {
    log_set_level(LOG_DEBUG);
    assert_int_equal(log_get_level(), LOG_DEBUG);
    log_set_level(LOG_WARNING);
    assert_int_equal(log_get_level(), LOG_WARNING);
}

static void test_stderr_line_format(void **state) {
    struct capture c;
    char expect[256];
    snprintf(expect, sizeof(expect), "test-log[%ld]: warning: store down: %s"
             " name=cache version=7 source=vault:secret/redis/cache nodes=r1:6379,r2:6379\n",
             (long)getpid(), "timeout");
    struct log_ctx ctx = {
        .message_id = LOG_MID_STORE_UNREACHABLE, .name = "cache", .version = "7",
        .source = "vault:secret/redis/cache", .nodes = "r1:6379,r2:6379",
    };
    capture_begin(&c);
    log_ctx_msg(LOG_WARNING, &ctx, "store down: %s", "timeout");
    char *out = capture_end(&c);
    assert_string_equal(out, expect);
    free(out);
}

static void test_stderr_omits_unset_fields(void **state) {
    struct capture c;
    char expect[256];
    snprintf(expect, sizeof(expect), "test-log[%ld]: info: published name=cache version=8\n",
             (long)getpid());
    struct log_ctx ctx = { .name = "cache", .version = "8" };
    capture_begin(&c);
    log_ctx_msg(LOG_INFO, &ctx, "published");
    char *out = capture_end(&c);
    assert_string_equal(out, expect);
    free(out);

    snprintf(expect, sizeof(expect), "test-log[%ld]: err: plain 42\n", (long)getpid());
    capture_begin(&c);
    log_error("plain %d", 42);
    out = capture_end(&c);
    assert_string_equal(out, expect);
    free(out);
}

static void test_stderr_multiline_message_stays_one_line(void **state) {
    struct capture c;
    capture_begin(&c);
    log_info("first\nsecond\r\nthird");
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "first second  third"));
    free(out);
}

static void test_level_filter_drops_messages_above_level(void **state) {
    struct capture c;
    log_set_level(LOG_NOTICE);
    capture_begin(&c);
    log_debug("dropped-debug");
    log_info("dropped-info");
    log_notice("kept-notice");
    log_warning("kept-warning");
    log_error("kept-err");
    char *out = capture_end(&c);
    assert_null(strstr(out, "dropped"));
    assert_non_null(strstr(out, "notice: kept-notice"));
    assert_non_null(strstr(out, "warning: kept-warning"));
    assert_non_null(strstr(out, "err: kept-err"));
    assert_int_equal(count_lines(out), 3);
    free(out);

    log_set_level(LOG_DEBUG);
    capture_begin(&c);
    log_debug("now-kept");
    out = capture_end(&c);
    assert_non_null(strstr(out, "debug: now-kept"));
    free(out);
}

static void test_errno_is_preserved(void **state) {
    struct capture c;
    capture_begin(&c);
    errno = ENOENT;
    log_error("open failed: %m");
    assert_int_equal(errno, ENOENT);
    char *out = capture_end(&c);
    assert_non_null(strstr(out, strerror(ENOENT)));
    free(out);
}

static void test_long_message_is_truncated_to_one_line(void **state) {
    size_t n = 20000;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = '\0';
    struct capture c;
    capture_begin(&c);
    log_info("%s", big);
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), 1);
    assert_true(strlen(out) < n);
    free(out);
    free(big);
}

static void test_journal_native_protocol(void **state) {
    struct fake_journal j;
    fake_journal_open(&j);
    log_open("test-journal", LOG_TARGET_JOURNAL);

    struct log_ctx ctx = {
        .message_id = LOG_MID_PUBLISHED, .name = "cache", .version = "7",
        .source = "vault:secret/redis/cache", .nodes = "r1:6379",
    };
    log_ctx_msg(LOG_NOTICE, &ctx, "published %s v%d", "cache", 7);

    static char buf[65536];
    ssize_t n = fake_journal_recv(&j, buf, sizeof(buf), 2000);
    assert_true(n > 0);
    static struct field f[MAX_FIELDS];
    size_t nf = parse_fields(buf, (size_t)n, f, MAX_FIELDS);
    const struct field *x;
    assert_non_null(x = find_field(f, nf, "PRIORITY"));
    assert_string_equal(x->value, "5");
    assert_non_null(x = find_field(f, nf, "SYSLOG_IDENTIFIER"));
    assert_string_equal(x->value, "test-journal");
    assert_non_null(x = find_field(f, nf, "MESSAGE"));
    assert_string_equal(x->value, "published cache v7");
    assert_false(x->binary);
    assert_non_null(x = find_field(f, nf, "MESSAGE_ID"));
    assert_string_equal(x->value, LOG_MID_PUBLISHED);
    assert_non_null(x = find_field(f, nf, "REDIS_CREDS_NAME"));
    assert_string_equal(x->value, "cache");
    assert_non_null(x = find_field(f, nf, "REDIS_CREDS_VERSION"));
    assert_string_equal(x->value, "7");
    assert_non_null(x = find_field(f, nf, "REDIS_CREDS_SOURCE"));
    assert_string_equal(x->value, "vault:secret/redis/cache");
    assert_non_null(x = find_field(f, nf, "REDIS_CREDS_NODES"));
    assert_string_equal(x->value, "r1:6379");

    /* A message without context carries no REDIS_CREDS_* fields. */
    log_warning("bare");
    n = fake_journal_recv(&j, buf, sizeof(buf), 2000);
    assert_true(n > 0);
    nf = parse_fields(buf, (size_t)n, f, MAX_FIELDS);
    assert_non_null(x = find_field(f, nf, "PRIORITY"));
    assert_string_equal(x->value, "4");
    assert_null(find_field(f, nf, "REDIS_CREDS_NAME"));
    assert_null(find_field(f, nf, "MESSAGE_ID"));

    fake_journal_close(&j);
}

static void test_journal_multiline_message_uses_binary_field(void **state) {
    struct fake_journal j;
    fake_journal_open(&j);
    log_open("test-journal", LOG_TARGET_JOURNAL);

    struct log_ctx ctx = { .name = "multi" };
    log_ctx_msg(LOG_ERR, &ctx, "line one\nline two\n= not a field");

    static char buf[65536];
    ssize_t n = fake_journal_recv(&j, buf, sizeof(buf), 2000);
    assert_true(n > 0);
    static struct field f[MAX_FIELDS];
    size_t nf = parse_fields(buf, (size_t)n, f, MAX_FIELDS);
    const struct field *x = find_field(f, nf, "MESSAGE");
    assert_non_null(x);
    assert_true(x->binary);
    assert_int_equal(x->len, strlen("line one\nline two\n= not a field"));
    assert_string_equal(x->value, "line one\nline two\n= not a field");
    assert_non_null(x = find_field(f, nf, "REDIS_CREDS_NAME"));
    assert_string_equal(x->value, "multi");
    assert_false(x->binary);
    assert_non_null(x = find_field(f, nf, "PRIORITY"));
    assert_string_equal(x->value, "3");

    fake_journal_close(&j);
}

static void test_journal_level_filter(void **state) {
    struct fake_journal j;
    fake_journal_open(&j);
    log_open("test-journal", LOG_TARGET_JOURNAL);
    log_set_level(LOG_WARNING);
    log_info("filtered");
    log_warning("passes");
    static char buf[65536];
    ssize_t n = fake_journal_recv(&j, buf, sizeof(buf), 2000);
    assert_true(n > 0);
    static struct field f[MAX_FIELDS];
    size_t nf = parse_fields(buf, (size_t)n, f, MAX_FIELDS);
    const struct field *x = find_field(f, nf, "MESSAGE");
    assert_non_null(x);
    assert_string_equal(x->value, "passes");
    assert_true(fake_journal_recv(&j, buf, sizeof(buf), 100) < 0);
    fake_journal_close(&j);
}

static void test_journal_failure_falls_back_to_stderr(void **state) {
    struct fake_journal j;
    fake_journal_open(&j);
    log_open("test-journal", LOG_TARGET_JOURNAL);
    /* The socket goes away: the event must still be seen, on stderr. */
    close(j.fd);
    unlink(j.path);
    struct capture c;
    capture_begin(&c);
    log_error("journal is gone");
    char *out = capture_end(&c);
    assert_non_null(strstr(out, "test-journal["));
    assert_non_null(strstr(out, "err: journal is gone\n"));
    free(out);
    rmdir(j.dir);
    unsetenv("REDIS_CREDS_JOURNAL_SOCKET");
}

static void test_auto_target_uses_journal_when_stream_matches_stderr(void **state) {
    struct fake_journal j;
    fake_journal_open(&j);
    struct stat st;
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    char js[64];
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    assert_int_equal(setenv("JOURNAL_STREAM", js, 1), 0);
    log_open("test-auto", LOG_TARGET_AUTO);
    log_notice("to the journal");
    static char buf[65536];
    ssize_t n = fake_journal_recv(&j, buf, sizeof(buf), 2000);
    assert_true(n > 0);
    static struct field f[MAX_FIELDS];
    size_t nf = parse_fields(buf, (size_t)n, f, MAX_FIELDS);
    const struct field *x = find_field(f, nf, "MESSAGE");
    assert_non_null(x);
    assert_string_equal(x->value, "to the journal");
    unsetenv("JOURNAL_STREAM");
    fake_journal_close(&j);
}

static void test_auto_target_uses_stderr_when_stream_differs(void **state) {
    struct fake_journal j;
    fake_journal_open(&j);
    struct stat st;
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    char js[64];
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino + 1);
    assert_int_equal(setenv("JOURNAL_STREAM", js, 1), 0);
    log_open("test-auto", LOG_TARGET_AUTO);
    struct capture c;
    capture_begin(&c);
    log_notice("to stderr");
    char *out = capture_end(&c);
    assert_non_null(strstr(out, "test-auto["));
    assert_non_null(strstr(out, "notice: to stderr\n"));
    free(out);
    static char buf[256];
    assert_true(fake_journal_recv(&j, buf, sizeof(buf), 100) < 0);

    /* Malformed values are not a match either. */
    assert_int_equal(setenv("JOURNAL_STREAM", "garbage", 1), 0);
    log_open("test-auto", LOG_TARGET_AUTO);
    capture_begin(&c);
    log_notice("still stderr");
    out = capture_end(&c);
    assert_non_null(strstr(out, "still stderr"));
    free(out);

    unsetenv("JOURNAL_STREAM");
    fake_journal_close(&j);
}

/* ---- the second line of defence: live secrets never leave through the log ---- */

static void test_stderr_scrubs_live_secrets_in_message_and_fields(void **state) {
    struct secret *pw = secret_new_str("Sw0rdfish-live-1");
    struct capture c;
    struct log_ctx ctx = { .name = "cache", .version = "v-Sw0rdfish-live-1",
                           .nodes = "r1:6379=Sw0rdfish-live-1", .source = "Sw0rdfish-live-1" };
    capture_begin(&c);
    log_ctx_msg(LOG_WARNING, &ctx, "AUTH: unexpected error reply %s (%s)", secret_data(pw), "r1");
    char *out = capture_end(&c);
    assert_null(strstr(out, "Sw0rdfish"));
    assert_non_null(strstr(out, "unexpected error reply [redacted] (r1)"));
    assert_non_null(strstr(out, "nodes=r1:6379=[redacted]"));
    free(out);
    secret_free(pw);
}

static void test_journal_scrubs_live_secrets_in_every_field(void **state) {
    struct secret *pw = secret_new_str("Sw0rdfish-live-2");
    struct fake_journal j;
    fake_journal_open(&j);
    log_open("test-journal", LOG_TARGET_JOURNAL);
    struct log_ctx ctx = { .message_id = LOG_MID_STORE_ERROR, .name = "cache",
                           .version = "Sw0rdfish-live-2", .nodes = "a:1 Sw0rdfish-live-2" };
    log_ctx_msg(LOG_ERR, &ctx, "store said:\n%s", "{\"pw\": \"Sw0rdfish-live-2\"}");
    static char buf[65536];
    ssize_t n = fake_journal_recv(&j, buf, sizeof(buf), 2000);
    assert_true(n > 0);
    assert_null(memmem(buf, (size_t)n, "Sw0rdfish", 9));
    static struct field f[MAX_FIELDS];
    size_t nf = parse_fields(buf, (size_t)n, f, MAX_FIELDS);
    const struct field *x;
    assert_non_null(x = find_field(f, nf, "MESSAGE"));
    assert_string_equal(x->value, "store said:\n{\"pw\": \"[redacted]\"}");
    assert_non_null(x = find_field(f, nf, "REDIS_CREDS_VERSION"));
    assert_string_equal(x->value, "[redacted]");
    fake_journal_close(&j);
    secret_free(pw);
}

/* A message cut at LOG_MSG_MAX in the middle of a secret keeps none of its beginning. */
static void test_message_cut_inside_a_secret_keeps_none_of_it(void **state) {
    static const char pw_text[] = "Sw0rdfish-cut-3-0123456789";
    struct secret *pw = secret_new_str(pw_text);
    char pad[4096 - 8];
    memset(pad, 'y', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    struct capture c;
    capture_begin(&c);
    log_info("%s%s", pad, pw_text);   /* the cut falls a few bytes into the secret */
    char *out = capture_end(&c);
    assert_null(strstr(out, "Sw0rd"));
    assert_non_null(strstr(out, "yyy[reda..."));   /* as much of the marker as fits */
    free(out);
    secret_free(pw);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_names_round_trip),
        cmocka_unit_test_setup_teardown(test_stderr_scrubs_live_secrets_in_message_and_fields,
                                        reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_journal_scrubs_live_secrets_in_every_field,
                                        reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_message_cut_inside_a_secret_keeps_none_of_it,
                                        reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_set_and_get_level, reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_stderr_line_format, reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_stderr_omits_unset_fields, reset_logging,
                                        reset_logging),
        cmocka_unit_test_setup_teardown(test_stderr_multiline_message_stays_one_line,
                                        reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_level_filter_drops_messages_above_level,
                                        reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_errno_is_preserved, reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_long_message_is_truncated_to_one_line,
                                        reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_journal_native_protocol, reset_logging,
                                        reset_logging),
        cmocka_unit_test_setup_teardown(test_journal_multiline_message_uses_binary_field,
                                        reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_journal_level_filter, reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_journal_failure_falls_back_to_stderr,
                                        reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_auto_target_uses_journal_when_stream_matches_stderr,
                                        reset_logging, reset_logging),
        cmocka_unit_test_setup_teardown(test_auto_target_uses_stderr_when_stream_differs,
                                        reset_logging, reset_logging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
