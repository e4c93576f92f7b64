/* Unit tests of libredis-creds (redis_creds.h): parsing, change detection in both modes,
 * the last good credential kept on errors, directory recreation, snapshots that outlive
 * changes, and a torn-read stress test. Each test has its own scratch directory. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "client_fixture.h"

/* Waits until the handle's generation reaches g; returns the elapsed ns, or -1. */
static long long wait_gen(rc_handle *h, uint64_t g, long timeout_ms) {
    long long t0 = tu_now_ns();
    while (rc_generation(h) < g) {
        if (tu_now_ns() - t0 > timeout_ms * 1000000LL)
            return -1;
        tu_sleep_ms(1);
    }
    return tu_now_ns() - t0;
}

static void write_cache(struct fx *f, const char *text) {
    assert_int_equal(tu_publish(f->dir, "cache.json", text), 0);
}

#define GOOD_DOC                                                                         \
    "{\"format\":1,\"name\":\"cache\",\"username\":\"app\",\"password\":\"s3cr3t\","    \
    "\"version\":\"7\",\"source\":\"vault:x\",\"published_at\":\"2026-11-22T10:00:00Z\"," \
    "\"validated\":\"all\",\"expires_at\":\"2026-11-22T11:00:00Z\",\"future_key\":[1,2]," \
    "\"previous\":{\"username\":\"app\",\"password\":\"old\",\"version\":\"6\","         \
    "\"expires_at\":null}}\n"

/* ------------------------------------------------------------------ parsing */

static void test_get_returns_every_field_of_the_file(void **state) {
    struct fx *f = *state;
    write_cache(f, GOOD_DOC);
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    const struct rc_creds *c = NULL;
    assert_int_equal(rc_get(f->h, &c), 0);
    assert_string_equal(c->name, "cache");
    assert_string_equal(c->current.username, "app");
    assert_string_equal(c->current.password, "s3cr3t");
    assert_int_equal(c->current.password_len, 6);
    assert_string_equal(c->current.version, "7");
    assert_int_equal(c->current.expires_at, 1795345200); /* 2026-11-22T11:00:00Z */
    assert_non_null(c->previous);
    assert_string_equal(c->previous->username, "app");
    assert_string_equal(c->previous->password, "old");
    assert_string_equal(c->previous->version, "6");
    assert_int_equal(c->previous->expires_at, 0);
    assert_int_equal(c->generation, 1);
    assert_int_equal(rc_last_error(f->h), 0);
    rc_creds_unref(c);
}

static void test_null_username_is_the_default_user_and_previous_may_be_null(void **state) {
    struct fx *f = *state;
    write_cache(f, "{\"format\":1,\"username\":null,\"password\":\"p\",\"version\":\"h-1\","
                   "\"expires_at\":null,\"previous\":null}");
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    const struct rc_creds *c = NULL;
    assert_int_equal(rc_get(f->h, &c), 0);
    assert_null(c->current.username);
    assert_null(c->previous);
    assert_int_equal(c->current.expires_at, 0);
    rc_creds_unref(c);
}

static void test_password_may_hold_nul_bytes_and_offsets_are_converted(void **state) {
    struct fx *f = *state;
    write_cache(f, "{\"format\":1,\"username\":\"u\",\"password\":\"a\\u0000b\",\"version\":\"1\","
                   "\"expires_at\":\"2026-11-22T12:00:00.250+01:00\"}");
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    const struct rc_creds *c = NULL;
    assert_int_equal(rc_get(f->h, &c), 0);
    assert_int_equal(c->current.password_len, 3);
    assert_memory_equal(c->current.password, "a\0b", 3);
    assert_int_equal(c->current.expires_at, 1795345200);
    rc_creds_unref(c);
}

static void expect_open_error(struct fx *f, const char *doc, int err) {
    write_cache(f, doc);
    rc_handle *h = NULL;
    assert_int_equal(rc_open("cache", f->dir, &h), err);
    assert_null(h);
}

static void test_malformed_files_are_refused_at_open(void **state) {
    struct fx *f = *state;
    expect_open_error(f, "not json", -EBADMSG);
    expect_open_error(f, "[1,2]", -EBADMSG);
    expect_open_error(f, "{\"format\":1,\"password\":\"p\"}", -EBADMSG);             /* no version */
    expect_open_error(f, "{\"format\":1,\"version\":\"1\"}", -EBADMSG);              /* no password */
    expect_open_error(f, "{\"format\":1,\"password\":\"\",\"version\":\"1\"}", -EBADMSG);
    expect_open_error(f, "{\"format\":1,\"password\":7,\"version\":\"1\"}", -EBADMSG);
    expect_open_error(f, "{\"password\":\"p\",\"version\":\"1\"}", -EBADMSG);       /* no format */
    expect_open_error(f, "{\"format\":1,\"name\":\"other\",\"password\":\"p\",\"version\":\"1\"}",
                      -EBADMSG);
    expect_open_error(f, "{\"format\":1,\"password\":\"p\",\"version\":\"1\",\"expires_at\":\"soon\"}",
                      -EBADMSG);
    expect_open_error(f, "{\"format\":1,\"password\":\"p\",\"version\":\"1\",\"previous\":{}}",
                      -EBADMSG);
    expect_open_error(f, "{\"format\":1,\"password\":\"p\",\"password\":\"q\",\"version\":\"1\"}",
                      -EBADMSG);
    expect_open_error(f, "{\"format\":2,\"password\":\"p\",\"version\":\"1\"}", -EPROTONOSUPPORT);
}

static void test_file_over_64_kib_is_efbig(void **state) {
    struct fx *f = *state;
    size_t n = 70 * 1024;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    memcpy(big, "{\"format\":1,\"password\":\"p\",\"version\":\"1\"}", 41);
    big[n] = 0;
    expect_open_error(f, big, -EFBIG);
    free(big);
}

static void test_missing_file_is_enoent_and_bad_names_are_einval(void **state) {
    struct fx *f = *state;
    rc_handle *h = NULL;
    assert_int_equal(rc_open("cache", f->dir, &h), -ENOENT);
    assert_int_equal(rc_open(".hidden", f->dir, &h), -EINVAL);
    assert_int_equal(rc_open("a/b", f->dir, &h), -EINVAL);
    assert_int_equal(rc_open("", f->dir, &h), -EINVAL);
    assert_int_equal(rc_open("x", f->dir, NULL), -EINVAL);
    assert_int_equal(rc_open_ex("cache", f->dir, 0x100, 0, &h), -EINVAL);
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = 0;
    assert_int_equal(rc_open(long_name, f->dir, &h), -EINVAL);
    assert_null(h);
}

static void test_runtime_dir_defaults_to_the_environment(void **state) {
    struct fx *f = *state;
    write_cache(f, GOOD_DOC);
    setenv("REDIS_CREDS_RUNTIME_DIR", f->dir, 1);
    int r = rc_open("cache", NULL, &f->h);
    unsetenv("REDIS_CREDS_RUNTIME_DIR");
    assert_int_equal(r, 0);
    char want[600];
    snprintf(want, sizeof want, "%s/cache.json", f->dir);
    assert_string_equal(rc_path(f->h), want);
}

/* ------------------------------------------------------------------ changes */

static void test_background_thread_sees_a_rename_within_a_millisecond_or_so(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    long long worst = 0;
    for (unsigned n = 2; n <= 20; n++) {
        assert_int_equal(tu_publish_n(f->dir, "cache", n), 0);
        long long t0 = tu_now_ns();
        while (rc_generation(f->h) < n) {
            assert_true(tu_now_ns() - t0 < 2000000000LL);
        }
        long long dt = tu_now_ns() - t0;
        if (dt > worst)
            worst = dt;
        const struct rc_creds *c = NULL;
        assert_int_equal(rc_get(f->h, &c), 0);
        assert_int_equal(tu_check_password(c->current.password, n), 0);
        assert_int_equal(tu_check_password(c->previous->password, n - 1), 0);
        rc_creds_unref(c);
    }
    /* the 1 ms target is measured by bench/client_get_bench.c; here only a loose bound so
     * a loaded machine does not make the test flaky */
    assert_true(worst < 1000000000LL);
}

static void test_no_thread_mode_changes_through_rc_process(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_NO_THREAD, 0, &f->h), 0);
    int fd = rc_fd(f->h);
    assert_true(fd >= 0);
    assert_int_equal(rc_process(f->h), 0); /* nothing pending */
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_int_equal(rc_process(f->h), 1);
    assert_int_equal(rc_generation(f->h), 2);
    /* unrelated files in the directory do not count as changes */
    assert_int_equal(tu_publish(f->dir, "other.json", "{}"), 0);
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_int_equal(rc_process(f->h), 0);
    assert_int_equal(rc_generation(f->h), 2);
}

static void test_rc_fd_is_einval_with_the_background_thread(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    assert_int_equal(rc_fd(f->h), -EINVAL);
}

struct events {
    atomic_int changes, errors, last_err;
    atomic_ullong last_gen;
};

static void record_event(rc_handle *h, const struct rc_creds *c, int err, void *arg) {
    struct events *ev = arg;
    (void)h;
    if (err < 0) {
        atomic_store(&ev->last_err, err); /* before the count the test waits on */
        atomic_fetch_add(&ev->errors, 1);
    } else {
        atomic_store(&ev->last_gen, c->generation);
        atomic_fetch_add(&ev->changes, 1);
    }
}

static void test_malformed_file_keeps_the_last_good_credential_and_reports(void **state) {
    struct fx *f = *state;
    struct events ev = {0};
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    rc_on_change(f->h, record_event, &ev);
    write_cache(f, "{\"format\":1, \"password\": trunc");
    long long t0 = tu_now_ns();
    while (atomic_load(&ev.errors) == 0)
        assert_true(tu_now_ns() - t0 < 2000000000LL);
    assert_int_equal(atomic_load(&ev.last_err), -EBADMSG);
    assert_int_equal(rc_last_error(f->h), -EBADMSG);
    const struct rc_creds *c = NULL;
    assert_int_equal(rc_get(f->h, &c), 0);
    assert_int_equal(tu_check_password(c->current.password, 1), 0);
    c = rc_creds_unref(c);
    /* a good file again: taken, the error cleared */
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    assert_true(wait_gen(f->h, 2, 2000) >= 0);
    assert_int_equal(rc_last_error(f->h), 0);
    assert_int_equal(atomic_load(&ev.changes), 1);
    assert_int_equal(atomic_load(&ev.last_gen), 2);
}

static void test_removed_file_keeps_the_last_good_credential(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_NO_THREAD, 0, &f->h), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/cache.json", f->dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rc_process(f->h), -ENOENT);
    assert_int_equal(rc_last_error(f->h), -ENOENT);
    const struct rc_creds *c = NULL;
    assert_int_equal(rc_get(f->h, &c), 0);
    assert_string_equal(c->current.version, "v-1");
    rc_creds_unref(c);
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    assert_int_equal(rc_process(f->h), 1);
    assert_int_equal(rc_last_error(f->h), 0);
}

static void test_recreated_directory_is_followed(void **state) {
    struct fx *f = *state;
    char run[600], path[700];
    snprintf(run, sizeof run, "%s/run", f->dir);
    snprintf(path, sizeof path, "%s/cache.json", run);
    assert_int_equal(mkdir(run, 0750), 0);
    assert_int_equal(tu_publish_n(run, "cache", 1), 0);
    assert_int_equal(rc_open("cache", run, &f->h), 0);
    for (unsigned n = 2; n <= 4; n++) {
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(run), 0);
        long long t0 = tu_now_ns();
        while (rc_last_error(f->h) != -ENOENT)
            assert_true(tu_now_ns() - t0 < 2000000000LL);
        assert_int_equal(rc_generation(f->h), n - 1); /* last good kept */
        assert_int_equal(mkdir(run, 0750), 0);
        assert_int_equal(tu_publish_n(run, "cache", n), 0);
        assert_true(wait_gen(f->h, n, 2000) >= 0);
        assert_int_equal(rc_last_error(f->h), 0);
    }
    /* moved away and replaced: the new directory is the one followed */
    char moved[700];
    snprintf(moved, sizeof moved, "%s/run.old", f->dir);
    assert_int_equal(rename(run, moved), 0);
    assert_int_equal(mkdir(run, 0750), 0);
    assert_int_equal(tu_publish_n(run, "cache", 5), 0);
    assert_true(wait_gen(f->h, 5, 2000) >= 0);
    assert_int_equal(tu_publish_n(moved, "cache", 9), 0); /* the old one no longer counts */
    assert_int_equal(tu_publish_n(run, "cache", 6), 0);
    assert_true(wait_gen(f->h, 6, 2000) >= 0);
    const struct rc_creds *c = NULL;
    assert_int_equal(rc_get(f->h, &c), 0);
    assert_string_equal(c->current.version, "v-6");
    rc_creds_unref(c);
}

static void test_allow_missing_opens_and_picks_up_the_first_publication(void **state) {
    struct fx *f = *state;
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_ALLOW_MISSING, 0, &f->h), 0);
    const struct rc_creds *c = NULL;
    assert_int_equal(rc_get(f->h, &c), -ENOENT);
    assert_int_equal(rc_generation(f->h), 0);
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_true(wait_gen(f->h, 1, 2000) >= 0);
    assert_int_equal(rc_get(f->h, &c), 0);
    rc_creds_unref(c);
}

static void test_allow_missing_with_a_missing_directory(void **state) {
    struct fx *f = *state;
    char run[600];
    snprintf(run, sizeof run, "%s/run", f->dir);
    assert_int_equal(rc_open_ex("cache", run, RC_OPEN_ALLOW_MISSING, 0, &f->h), 0);
    assert_int_equal(mkdir(run, 0750), 0);
    assert_int_equal(tu_publish_n(run, "cache", 1), 0);
    assert_true(wait_gen(f->h, 1, 2000) >= 0);
}

static void *publish_later(void *arg) {
    const char *dir = arg;
    tu_sleep_ms(100);
    tu_publish_n(dir, "cache", 1);
    return NULL;
}

static void test_wait_mode_waits_for_the_first_publication(void **state) {
    struct fx *f = *state;
    pthread_t t;
    pthread_create(&t, NULL, publish_later, f->dir);
    long long t0 = tu_now_ns();
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_WAIT, 5000, &f->h), 0);
    pthread_join(t, NULL);
    assert_true(tu_now_ns() - t0 >= 90000000LL);
    assert_int_equal(rc_generation(f->h), 1);
}

static void test_wait_mode_times_out_with_enoent(void **state) {
    struct fx *f = *state;
    long long t0 = tu_now_ns();
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_WAIT, 150, &f->h), -ENOENT);
    long long dt = tu_now_ns() - t0;
    assert_true(dt >= 140000000LL && dt < 3000000000LL);
    assert_null(f->h);
}

static void test_same_content_republished_is_not_a_change(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_NO_THREAD, 0, &f->h), 0);
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_process(f->h), 0);
    assert_int_equal(rc_reload(f->h), 0);
    assert_int_equal(rc_generation(f->h), 1);
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    assert_int_equal(rc_reload(f->h), 1); /* without waiting for the event */
    assert_int_equal(rc_process(f->h), 0); /* the event then finds nothing new */
    assert_int_equal(rc_generation(f->h), 2);
}

static void test_snapshot_outlives_changes_and_the_handle(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    const struct rc_creds *held = NULL;
    assert_int_equal(rc_get(f->h, &held), 0);
    for (unsigned n = 2; n <= 5; n++) {
        assert_int_equal(tu_publish_n(f->dir, "cache", n), 0);
        assert_true(wait_gen(f->h, n, 2000) >= 0);
    }
    const struct rc_creds *kept = NULL;
    assert_int_equal(rc_get(f->h, &kept), 0);
    rc_creds_ref(kept);
    rc_creds_unref(kept);
    f->h = rc_close(f->h);
    /* ASan would catch a use after free here */
    assert_int_equal(tu_check_password(held->current.password, 1), 0);
    assert_int_equal(tu_check_password(kept->current.password, 5), 0);
    rc_creds_unref(held);
    rc_creds_unref(kept);
}

static void test_destructors_accept_null_and_strerror_has_text(void **state) {
    (void)state;
    assert_null(rc_close(NULL));
    assert_null(rc_creds_unref(NULL));
    assert_null(rc_creds_ref(NULL));
    const struct rc_creds *c = NULL;
    assert_int_equal(rc_get(NULL, &c), -EINVAL);
    assert_int_equal(rc_generation(NULL), 0);
    assert_int_equal(rc_reload(NULL), -EINVAL);
    assert_int_equal(rc_process(NULL), -EINVAL);
    assert_int_equal(rc_on_change(NULL, NULL, NULL), -EINVAL);
    static const int errs[] = {0, ENOENT, EBADMSG, EPROTONOSUPPORT, EFBIG, EINVAL, EACCES,
                               EKEYREJECTED, EKEYEXPIRED, ECONNRESET, EPROTO, ETIMEDOUT,
                               ENOMEM, 100000};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        assert_non_null(rc_strerror(-errs[i]));
        assert_true(strlen(rc_strerror(-errs[i])) > 0);
        assert_string_equal(rc_strerror(-errs[i]), rc_strerror(errs[i]));
    }
}

/* ------------------------------------------------------------------ torn reads */

struct torn {
    rc_handle *h;
    atomic_bool stop;
    atomic_long reads, bad;
};

static void *torn_reader(void *arg) {
    struct torn *t = arg;
    uint64_t last_gen = 0;
    while (!atomic_load(&t->stop)) {
        const struct rc_creds *c = NULL;
        if (rc_get(t->h, &c) != 0) {
            atomic_fetch_add(&t->bad, 1);
            continue;
        }
        unsigned n = (unsigned)strtoul(c->current.version + 2, NULL, 10);
        if (tu_check_password(c->current.password, n) != 0 || c->generation < last_gen ||
            (n > 1 && (!c->previous || tu_check_password(c->previous->password, n - 1) != 0 ||
                       strtoul(c->previous->version + 2, NULL, 10) != n - 1)))
            atomic_fetch_add(&t->bad, 1);
        last_gen = c->generation;
        rc_creds_unref(c);
        atomic_fetch_add(&t->reads, 1);
    }
    return NULL;
}

static void torn_run(struct fx *f, unsigned flags) {
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open_ex("cache", f->dir, flags, 0, &f->h), 0);
    struct torn t = {.h = f->h};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, torn_reader, &t);
    for (unsigned n = 2; n <= 1500; n++) {
        assert_int_equal(tu_publish_n(f->dir, "cache", n), 0);
        if (flags & RC_OPEN_NO_THREAD)
            rc_process(f->h);
    }
    if (flags & RC_OPEN_NO_THREAD)
        rc_reload(f->h);
    assert_true(wait_gen(f->h, 2, 2000) >= 0);
    long long t0 = tu_now_ns();
    const struct rc_creds *c = NULL;
    for (;;) { /* the last one is taken eventually */
        assert_int_equal(rc_get(f->h, &c), 0);
        int done = strcmp(c->current.version, "v-1500") == 0;
        c = rc_creds_unref(c);
        if (done)
            break;
        assert_true(tu_now_ns() - t0 < 5000000000LL);
        tu_sleep_ms(1);
    }
    atomic_store(&t.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    print_message("torn check: %ld reads, %llu generations, %ld bad\n", atomic_load(&t.reads),
                  (unsigned long long)rc_generation(f->h), atomic_load(&t.bad));
    assert_int_equal(atomic_load(&t.bad), 0);
    assert_true(atomic_load(&t.reads) > 0);
}

static void test_readers_never_see_a_torn_or_mixed_credential(void **state) {
    torn_run(*state, 0);
}

static void test_readers_never_see_a_torn_credential_in_no_thread_mode(void **state) {
    torn_run(*state, RC_OPEN_NO_THREAD);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_get_returns_every_field_of_the_file),
        T(test_null_username_is_the_default_user_and_previous_may_be_null),
        T(test_password_may_hold_nul_bytes_and_offsets_are_converted),
        T(test_malformed_files_are_refused_at_open),
        T(test_file_over_64_kib_is_efbig),
        T(test_missing_file_is_enoent_and_bad_names_are_einval),
        T(test_runtime_dir_defaults_to_the_environment),
        T(test_background_thread_sees_a_rename_within_a_millisecond_or_so),
        T(test_no_thread_mode_changes_through_rc_process),
        T(test_rc_fd_is_einval_with_the_background_thread),
        T(test_malformed_file_keeps_the_last_good_credential_and_reports),
        T(test_removed_file_keeps_the_last_good_credential),
        T(test_recreated_directory_is_followed),
        T(test_allow_missing_opens_and_picks_up_the_first_publication),
        T(test_allow_missing_with_a_missing_directory),
        T(test_wait_mode_waits_for_the_first_publication),
        T(test_wait_mode_times_out_with_enoent),
        T(test_same_content_republished_is_not_a_change),
        T(test_snapshot_outlives_changes_and_the_handle),
        T(test_destructors_accept_null_and_strerror_has_text),
        T(test_readers_never_see_a_torn_or_mixed_credential),
        T(test_readers_never_see_a_torn_credential_in_no_thread_mode),
#undef T
    };
    return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
