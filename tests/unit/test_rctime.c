/* rctime: the shared clocks (monotonic and real, saturating deadlines) and RFC 3339 as
 * the published file writes and reads it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "rctime.h"

static void test_clocks_are_the_system_clocks_in_usec(void **state) {
    struct timespec a, b;

    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t m = rctime_mono_usec();
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_true(m >= (uint64_t)a.tv_sec * 1000000u + (uint64_t)a.tv_nsec / 1000u);
    assert_true(m <= (uint64_t)b.tv_sec * 1000000u + (uint64_t)b.tv_nsec / 1000u);

    clock_gettime(CLOCK_REALTIME, &a);
    int64_t r = rctime_real_usec();
    clock_gettime(CLOCK_REALTIME, &b);
    assert_true(r >= (int64_t)a.tv_sec * 1000000 + a.tv_nsec / 1000);
    assert_true(r <= (int64_t)b.tv_sec * 1000000 + b.tv_nsec / 1000);
    assert_true(r > 1700000000LL * 1000000);   /* unix time, in usec */
}

static void test_deadlines_saturate(void **state) {
    (void)state;
    assert_true(rctime_add_sat(1, 2) == 3);
    assert_true(rctime_add_sat(UINT64_MAX - 1, 1) == UINT64_MAX);
    assert_true(rctime_add_sat(UINT64_MAX - 1, 2) == UINT64_MAX);
    assert_true(rctime_add_sat(UINT64_MAX, UINT64_MAX) == UINT64_MAX);
    assert_true(rctime_deadline(UINT64_MAX) == UINT64_MAX);
    uint64_t before = rctime_mono_usec();
    uint64_t d = rctime_deadline(5000000);
    assert_true(d >= before + 5000000 && d <= rctime_mono_usec() + 5000000);
}

static void test_rfc3339_format_and_parse(void **state) {
    (void)state;
    char buf[32];
    assert_string_equal(rctime_format(0, buf, sizeof(buf)), "1970-01-01T00:00:00Z");
    assert_string_equal(rctime_format(1795341600, buf, sizeof(buf)),
                        "2026-11-22T10:00:00Z");
    assert_string_equal(rctime_format(951782400, buf, sizeof(buf)),
                        "2000-02-29T00:00:00Z");
    char tiny[5];
    assert_string_equal(rctime_format(0, tiny, sizeof(tiny)), "");

    int64_t t = -1;
    assert_int_equal(rctime_parse("2026-11-22T10:00:00Z", &t), 0);
    assert_true(t == 1795341600);
    assert_int_equal(rctime_parse("2026-11-22t10:00:00z", &t), 0);
    assert_true(t == 1795341600);
    assert_int_equal(rctime_parse("2026-11-22T10:00:00.123456789Z", &t), 0);
    assert_true(t == 1795341600);
    assert_int_equal(rctime_parse("2026-11-22T12:30:00+02:30", &t), 0);
    assert_true(t == 1795341600);
    assert_int_equal(rctime_parse("2026-11-22T09:00:00-01:00", &t), 0);
    assert_true(t == 1795341600);
    assert_int_equal(rctime_parse("2000-02-29T00:00:00Z", &t), 0);
    assert_true(t == 951782400);
    /* what every reader of the published file accepts (tests/vectors): a space for 'T',
     * and a day past the month's end, which rolls over as timegm does */
    assert_int_equal(rctime_parse("2026-11-22 10:00:00Z", &t), 0);
    assert_true(t == 1795341600);
    assert_int_equal(rctime_parse("2026-02-29T00:00:00Z", &t), 0);
    assert_true(t == 1772323200);   /* 2026-03-01 */

    t = 42;
    static const char *const bad[] = {
        "", "2026-11-22", "2026-11-22T10:00:00", "2026-11-22_10:00:00Z",
        "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-04-32T00:00:00Z",
        "2026-04-00T00:00:00Z",
        "2026-11-22T24:00:00Z", "2026-11-22T10:60:00Z", "2026-11-22T10:00:00ZZ",
        "2026-11-22T10:00:00.Z", "2026-11-22T10:00:00+0200", "26-11-22T10:00:00Z",
        "2026-11-22T10:00:00+24:00", "x026-11-22T10:00:00Z",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (rctime_parse(bad[i], &t) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    assert_true(t == 42);
    assert_int_equal(rctime_parse(NULL, &t), -EINVAL);
}

static void test_no_expiry_is_the_abi_none(void **state) {
    char buf[32] = "x";

    (void)state;
    assert_true(RC_NO_EXPIRY == INT64_MIN);
    assert_string_equal(rctime_format(RC_NO_EXPIRY, buf, sizeof buf), "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clocks_are_the_system_clocks_in_usec),
        cmocka_unit_test(test_deadlines_saturate),
        cmocka_unit_test(test_rfc3339_format_and_parse),
        cmocka_unit_test(test_no_expiry_is_the_abi_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
