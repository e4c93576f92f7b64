/* Unit tests for common/duration.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "duration.h"

#define SENTINEL 0xdeadbeefULL

static void expect_usec(const char *s, uint64_t want) {
    uint64_t v = SENTINEL;
    int r = duration_parse(s, &v);
    if (r != 0)
        print_error("duration_parse(\"%s\") = %d\n", s, r);
    assert_int_equal(r, 0);
    assert_true(v == want);
}

static void expect_error(const char *s, int err) {
    uint64_t v = SENTINEL;
    assert_int_equal(duration_parse(s, &v), err);
    assert_true(v == SENTINEL);   /* ret_* is written only on success */
}

static void test_parse_accepts_every_unit(void **state) {
    expect_usec("7us", 7);
    expect_usec("500ms", 500 * USEC_PER_MSEC);
    expect_usec("30s", 30 * USEC_PER_SEC);
    expect_usec("5m", 5 * 60 * USEC_PER_SEC);
    expect_usec("12h", 12ULL * 3600 * USEC_PER_SEC);
    expect_usec("30d", 30ULL * 86400 * USEC_PER_SEC);
}

static void test_parse_accepts_zero_and_leading_zeros(void **state) {
    expect_usec("0s", 0);
    expect_usec("0us", 0);
    expect_usec("0d", 0);
    expect_usec("007s", 7 * USEC_PER_SEC);
}

static void test_parse_rejects_missing_number_or_unit(void **state) {
    expect_error("", -EINVAL);
    expect_error("30", -EINVAL);
    expect_error("s", -EINVAL);
    expect_error("ms", -EINVAL);
    expect_error(NULL, -EINVAL);
}

static void test_parse_rejects_unknown_units_and_other_syntax(void **state) {
    expect_error("5x", -EINVAL);
    expect_error("5sec", -EINVAL);
    expect_error("5S", -EINVAL);
    expect_error("5 s", -EINVAL);
    expect_error(" 5s", -EINVAL);
    expect_error("5s ", -EINVAL);
    expect_error("1.5s", -EINVAL);
    expect_error("1h30m", -EINVAL);
    expect_error("-5s", -EINVAL);
    expect_error("+5s", -EINVAL);
    expect_error("5s\n", -EINVAL);
}

static void test_parse_reports_overflow_as_erange(void **state) {
    expect_usec("18446744073709551615us", UINT64_MAX);
    expect_error("18446744073709551616us", -ERANGE);
    expect_error("99999999999999999999999999s", -ERANGE);
    expect_usec("213503982d", 213503982ULL * 86400 * USEC_PER_SEC);
    expect_error("213503983d", -ERANGE);
    expect_error("18446744073709552s", -ERANGE);
}

static void test_parse_prefers_syntax_error_over_overflow(void **state) {
    expect_error("99999999999999999999999999x", -EINVAL);
}

static void test_format_uses_largest_exact_unit(void **state) {
    char buf[32];
    assert_string_equal(duration_format(0, buf, sizeof buf), "0s");
    assert_string_equal(duration_format(1, buf, sizeof buf), "1us");
    assert_string_equal(duration_format(1500, buf, sizeof buf), "1500us");
    assert_string_equal(duration_format(1500 * USEC_PER_MSEC, buf, sizeof buf), "1500ms");
    assert_string_equal(duration_format(90 * USEC_PER_SEC, buf, sizeof buf), "90s");
    assert_string_equal(duration_format(300000000, buf, sizeof buf), "5m");
    assert_string_equal(duration_format(36ULL * 3600 * USEC_PER_SEC, buf, sizeof buf), "36h");
    assert_string_equal(duration_format(30ULL * 86400 * USEC_PER_SEC, buf, sizeof buf), "30d");
    assert_string_equal(duration_format(UINT64_MAX, buf, sizeof buf), "18446744073709551615us");
}

static void test_format_round_trips_through_parse(void **state) {
    static const char *const texts[] = { "0s", "1us", "999ms", "59s", "61m", "25h", "400d" };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char buf[32];
        uint64_t v;
        assert_int_equal(duration_parse(texts[i], &v), 0);
        assert_string_equal(duration_format(v, buf, sizeof buf), texts[i]);
    }
}

static void test_format_never_writes_past_the_buffer(void **state) {
    char buf[8];
    memset(buf, 'X', sizeof buf);
    const char *s = duration_format(1234567, buf, 4);
    assert_ptr_equal(s, buf);
    assert_string_equal(buf, "123");
    assert_int_equal(buf[4], 'X');
    assert_ptr_equal(duration_format(5, buf, 0), buf);
    assert_int_equal(buf[4], 'X');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_accepts_every_unit),
        cmocka_unit_test(test_parse_accepts_zero_and_leading_zeros),
        cmocka_unit_test(test_parse_rejects_missing_number_or_unit),
        cmocka_unit_test(test_parse_rejects_unknown_units_and_other_syntax),
        cmocka_unit_test(test_parse_reports_overflow_as_erange),
        cmocka_unit_test(test_parse_prefers_syntax_error_over_overflow),
        cmocka_unit_test(test_format_uses_largest_exact_unit),
        cmocka_unit_test(test_format_round_trips_through_parse),
        cmocka_unit_test(test_format_never_writes_past_the_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
