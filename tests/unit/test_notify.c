/* notify: what the agent tells systemd, read from a datagram socket that stands in for
 * $NOTIFY_SOCKET (the protocol is one datagram of NEWLINE-separated assignments). Each test
 * checks the exact message; without $NOTIFY_SOCKET nothing may be sent. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "notify.h"
#include "rctime.h"

static int sock = -1;
static char path[108];

static int setup(void **state) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    const char *base = getenv("REDIS_CREDS_TEST_TMP");

    (void)state;
    if (!base || strlen(base) > 60)
        base = "/tmp";
    snprintf(path, sizeof path, "%s/rc-notify-%ld.sock", base, (long)getpid());
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    (void)unlink(path);
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sock < 0 || bind(sock, (struct sockaddr *)&sa, sizeof sa) < 0)
        return -1;
    return setenv("NOTIFY_SOCKET", path, 1);
}

static int teardown(void **state) {
    (void)state;
    if (sock >= 0)
        close(sock);
    (void)unlink(path);
    return 0;
}

/* The next datagram, NUL-terminated, or "" when none is waiting. */
static const char *next_message(void) {
    static char buf[4096];
    ssize_t n = recv(sock, buf, sizeof buf - 1, 0);

    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void test_ready_stopping(void **state) {
    (void)state;
    notify_ready();
    assert_string_equal(next_message(), "READY=1");
    notify_stopping();
    assert_string_equal(next_message(), "STOPPING=1");
    assert_string_equal(next_message(), "");
}

static void test_status_is_one_line(void **state) {
    (void)state;
    notify_status("3 current\n1 failing\r\n");
    assert_string_equal(next_message(), "STATUS=3 current 1 failing  ");
}

static void test_status_too_long_is_cut_not_dropped(void **state) {
    char big[3000];

    (void)state;
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    notify_status(big);
    const char *m = next_message();
    assert_true(strncmp(m, "STATUS=xxx", 10) == 0);
    assert_int_equal(strlen(m), 2047);
}

static void test_reloading_carries_the_monotonic_clock(void **state) {
    unsigned long long t;
    uint64_t before, after;
    int end = 0;

    (void)state;
    before = rctime_mono_usec();
    notify_reloading();
    after = rctime_mono_usec();
    const char *m = next_message();
    assert_int_equal(sscanf(m, "RELOADING=1\nMONOTONIC_USEC=%llu%n", &t, &end), 1);
    assert_int_equal(m[end], '\0');
    assert_true(t >= before && t <= after);
}

static void test_extend_timeout(void **state) {
    (void)state;
    notify_extend_timeout(90000000);
    assert_string_equal(next_message(), "EXTEND_TIMEOUT_USEC=90000000");
}

static void test_nothing_without_notify_socket(void **state) {
    (void)state;
    assert_int_equal(unsetenv("NOTIFY_SOCKET"), 0);
    notify_ready();
    notify_status("x");
    notify_reloading();
    assert_string_equal(next_message(), "");
    assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
    notify_ready();   /* and back: the socket still works */
    assert_string_equal(next_message(), "READY=1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_stopping),
        cmocka_unit_test(test_status_is_one_line),
        cmocka_unit_test(test_status_too_long_is_cut_not_dropped),
        cmocka_unit_test(test_reloading_carries_the_monotonic_clock),
        cmocka_unit_test(test_extend_timeout),
        cmocka_unit_test(test_nothing_without_notify_socket),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
