/* The directory cannot be watched: inotify_add_watch on it fails with ENOSPC, as it does
 * when the user's inotify watch limit (fs.inotify.max_user_watches) is reached; or there
 * is no inotify instance at all: inotify_init1 fails with EMFILE, as it does at the
 * user's limit of instances (fs.inotify.max_user_instances, 128 by default). The library
 * must still follow the file (docs/design.md §5.4), by reading it every second.
 *
 * Both are interposed here (the library is linked statically into this program): while
 * fail_dir is set, a watch on that path fails with ENOSPC (every watch while
 * fail_all_watches is); while fail_init is set, inotify_init1 fails with EMFILE;
 * everything else goes to the kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "client_fixture.h"

static const char *fail_dir;
static bool fail_init;
static bool fail_all_watches;

int inotify_init1(int flags) {
    if (fail_init) {
        errno = EMFILE;
        return -1;
    }
    return (int)syscall(SYS_inotify_init1, flags);
}

int inotify_add_watch(int fd, const char *path, uint32_t mask) {
    if (fail_all_watches || (fail_dir && strcmp(path, fail_dir) == 0)) {
        errno = ENOSPC;
        return -1;
    }
    return (int)syscall(SYS_inotify_add_watch, fd, path, mask);
}

static int teardown_watchable(void **state) {
    fail_dir = NULL; /* it points into the fixture's directory name */
    fail_init = false;
    fail_all_watches = false;
    return teardown(state);
}

static bool reaches_gen(rc_handle *h, uint64_t g, long timeout_ms) {
    long long t0 = tu_now_ns();
    while (rc_generation(h) < g) {
        if (tu_now_ns() - t0 > timeout_ms * 1000000LL)
            return false;
        tu_sleep_ms(5);
    }
    return true;
}

static void test_thread_follows_a_directory_it_cannot_watch(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    fail_dir = f->dir;
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    assert_int_equal(rc_generation(f->h), 1);
    for (unsigned n = 2; n <= 3; n++) {
        assert_int_equal(tu_publish_n(f->dir, "cache", n), 0);
        assert_true(reaches_gen(f->h, n, 3000));
    }
    const struct rc_creds *c = NULL;
    assert_int_equal(rc_get(f->h, &c), 0);
    assert_int_equal(tu_check_password(c->current.password, 3), 0);
    rc_creds_unref(c);
}

static void test_open_succeeds_with_no_watch_at_all(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    fail_all_watches = true; /* the directory's and its parent's */
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    assert_int_equal(rc_generation(f->h), 1);
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    assert_true(reaches_gen(f->h, 2, 3000));
    rc_handle *h2 = NULL; /* a missing file is still -ENOENT, not the watch's error */
    assert_int_equal(rc_open("other", f->dir, &h2), -ENOENT);
}

static void test_thread_takes_the_watch_once_it_can(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    fail_dir = f->dir;
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    fail_dir = NULL; /* watches free again: the next tick takes one */
    tu_sleep_ms(1500);
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    assert_true(reaches_gen(f->h, 2, 500)); /* inotify now, not the next tick */
}

static void test_rc_process_reads_the_file_while_unwatched(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    fail_dir = f->dir;
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_NO_THREAD, 0, &f->h), 0);
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    assert_int_equal(rc_process(f->h), 1); /* an application's timer tick */
    assert_int_equal(rc_generation(f->h), 2);
    assert_int_equal(rc_process(f->h), 0);
}

static void test_thread_follows_the_file_without_an_inotify_instance(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    fail_init = true;
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    assert_int_equal(rc_generation(f->h), 1);
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    assert_true(reaches_gen(f->h, 2, 3000));
}

static void test_rc_fd_ticks_without_an_inotify_instance(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    fail_init = true;
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_NO_THREAD, 0, &f->h), 0);
    int fd = rc_fd(f->h);
    assert_true(fd >= 0);
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 3000), 1);
    assert_int_equal(rc_process(f->h), 1);
    assert_int_equal(rc_generation(f->h), 2);
    assert_int_equal(poll(&p, 1, 0), 0); /* the tick was consumed */
}

static void test_wait_mode_without_an_inotify_instance(void **state) {
    struct fx *f = *state;
    fail_init = true;
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_WAIT, 200, &f->h), -ENOENT);
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_WAIT, 3000, &f->h), 0);
    assert_int_equal(rc_generation(f->h), 1);
}

/* More events than inotify queues (fs.inotify.max_queued_events) while the application
 * does not call rc_process: the queue overflows, and the directory's removal (its
 * IN_DELETE_SELF and IN_IGNORED) is among the events dropped. */
static void test_directory_recreated_during_a_queue_overflow_is_followed(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_NO_THREAD, 0, &f->h), 0);
    FILE *q = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
    long max = 16384;
    if (q) {
        if (fscanf(q, "%ld", &max) != 1)
            max = 16384;
        fclose(q);
    }
    char path[512];
    for (long i = 0; i <= max / 2 + 1; i++) { /* IN_CLOSE_WRITE + IN_DELETE each */
        snprintf(path, sizeof path, "%s/x%ld", f->dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        unlink(path);
    }
    tu_rm_rf(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    rc_process(f->h); /* the overflow: the file is read again */
    assert_int_equal(rc_generation(f->h), 2);
    assert_int_equal(tu_publish_n(f->dir, "cache", 3), 0); /* in the new directory */
    struct pollfd p = {.fd = rc_fd(f->h), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_int_equal(rc_process(f->h), 1);
    assert_int_equal(rc_generation(f->h), 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thread_follows_a_directory_it_cannot_watch,
                                        setup, teardown_watchable),
        cmocka_unit_test_setup_teardown(test_open_succeeds_with_no_watch_at_all, setup,
                                        teardown_watchable),
        cmocka_unit_test_setup_teardown(test_thread_takes_the_watch_once_it_can, setup,
                                        teardown_watchable),
        cmocka_unit_test_setup_teardown(test_rc_process_reads_the_file_while_unwatched,
                                        setup, teardown_watchable),
        cmocka_unit_test_setup_teardown(
            test_thread_follows_the_file_without_an_inotify_instance, setup,
            teardown_watchable),
        cmocka_unit_test_setup_teardown(test_rc_fd_ticks_without_an_inotify_instance, setup,
                                        teardown_watchable),
        cmocka_unit_test_setup_teardown(test_wait_mode_without_an_inotify_instance, setup,
                                        teardown_watchable),
        cmocka_unit_test_setup_teardown(
            test_directory_recreated_during_a_queue_overflow_is_followed, setup,
            teardown_watchable),
    };
    return cmocka_run_group_tests_name("client_watchfail", tests, NULL, NULL);
}
