/* fdio: a whole buffer through a pipe far smaller than it (partial writes, a reader on
 * another thread), interrupted by a signal (EINTR) on the way, and the errors that end it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fdio.h"

#define BIG (1024 * 1024 + 7)

struct drain {
    int fd;
    unsigned char *got;
    size_t len;
};

static void *drain(void *arg) {
    struct drain *d = arg;
    ssize_t n;

    /* Late and slowly, so the writer waits on a full pipe, with nothing written yet, when
     * the signals come: that write fails with EINTR (with bytes written it returns them). */
    usleep(50000);
    while ((n = read(d->fd, d->got + d->len, 4096)) > 0) {
        d->len += (size_t)n;
        if (d->len % (64 * 1024) < 4096)
            usleep(2000);
    }
    return NULL;
}

static void on_alarm(int sig) {
    (void)sig;
}

static void test_whole_buffer_through_partial_writes_and_eintr(void **state) {
    struct sigaction sa = { .sa_handler = on_alarm };   /* no SA_RESTART: write gets EINTR */
    unsigned char *buf = malloc(BIG);
    struct drain d = { .got = malloc(2 * BIG) };
    size_t pre = 0;
    pthread_t t;
    int p[2];

    (void)state;
    assert_non_null(buf);
    assert_non_null(d.got);
    for (size_t i = 0; i < BIG; i++)
        buf[i] = (unsigned char)(i * 31 + 7);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    (void)fcntl(p[1], F_SETPIPE_SZ, 4096);
    /* full before the call */
    assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
    while (write(p[1], "f", 1) == 1)
        pre++;
    assert_int_equal(fcntl(p[1], F_SETFL, 0), 0);
    d.fd = p[0];
    assert_int_equal(sigaction(SIGALRM, &sa, NULL), 0);
    assert_int_equal(pthread_create(&t, NULL, drain, &d), 0);
    ualarm(5000, 5000);   /* signals while the writer waits on the pipe */
    assert_int_equal(fdio_write_all(p[1], buf, BIG), 0);
    ualarm(0, 0);
    close(p[1]);
    assert_int_equal(pthread_join(t, NULL), 0);
    close(p[0]);
    assert_int_equal(d.len, pre + BIG);
    assert_memory_equal(d.got + pre, buf, BIG);
    free(buf);
    free(d.got);
}

static void test_errors_are_negative_errno(void **state) {
    int p[2];

    (void)state;
    assert_int_equal(fdio_write_all(-1, "x", 1), -EBADF);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(fdio_write_all(p[1], "x", 1), -EPIPE);
    assert_int_equal(fdio_write_all(p[1], "", 0), 0);   /* nothing to write: no call */
    close(p[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_buffer_through_partial_writes_and_eintr),
        cmocka_unit_test(test_errors_are_negative_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
