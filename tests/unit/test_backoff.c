/* Unit tests for common/backoff: equal jitter within [base/2, base], the cap, reset,
 * and no overflow however many attempts pile up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>

#include "backoff.h"

#define SEC UINT64_C(1000000)

/* A small deterministic generator, so the bounds are checked for many rnd values. */
static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t expected_base(uint64_t min, uint64_t max, unsigned n) {
    uint64_t base = min;

    for (unsigned i = 0; i < n && base < max; i++)
        base = base > max / 2 ? max : base * 2;
    return base < max ? base : max;
}

static void check_bounds(uint64_t min, uint64_t max, unsigned attempts) {
    uint64_t seed = 0x9e3779b97f4a7c15u;

    for (int round = 0; round < 50; round++) {
        struct backoff b;
        uint64_t fixed[] = {0, 1, UINT64_MAX, UINT64_MAX / 2};

        backoff_init(&b, min, max);
        for (unsigned n = 0; n < attempts; n++) {
            uint64_t rnd = round < 4 ? fixed[round] : xorshift(&seed);
            uint64_t base = expected_base(min, max, n);
            uint64_t d = backoff_next(&b, rnd);

            if (d < base / 2 || d > base)
                fail_msg("min %llu max %llu attempt %u: %llu not in [%llu, %llu]",
                         (unsigned long long)min, (unsigned long long)max, n,
                         (unsigned long long)d, (unsigned long long)(base / 2),
                         (unsigned long long)base);
            assert_int_equal(b.attempt, n + 1);
        }
    }
}

static void test_every_attempt_within_equal_jitter_bounds(void **state) {
    check_bounds(1 * SEC, 300 * SEC, 40);
    check_bounds(1, 1000, 20);
    check_bounds(3, 3, 5);
    check_bounds(7 * SEC, 5 * 60 * SEC, 64);
}

static void test_extremes_of_rnd_hit_both_ends(void **state) {
    struct backoff b;

    backoff_init(&b, 1000, 1000000);
    assert_int_equal(backoff_next(&b, 0), 500);           /* base 1000 */
    assert_int_equal(backoff_next(&b, 1000), 2000);       /* base 2000: span 1000 -> top */
    assert_int_equal(backoff_next(&b, 0), 2000);          /* base 4000: bottom */
}

static void test_capped_at_max(void **state) {
    struct backoff b;
    uint64_t seed = 42;

    backoff_init(&b, 1 * SEC, 300 * SEC);
    for (int i = 0; i < 1000; i++) {
        uint64_t d = backoff_next(&b, xorshift(&seed));
        assert_true(d <= 300 * SEC);
        if (i >= 9)   /* 2^9 s > 300 s: from here on base == max */
            assert_true(d >= 150 * SEC);
    }
}

static void test_reset_starts_over(void **state) {
    struct backoff b;

    backoff_init(&b, 1 * SEC, 300 * SEC);
    for (int i = 0; i < 20; i++)
        (void)backoff_next(&b, 0);
    backoff_reset(&b);
    assert_int_equal(b.attempt, 0);
    assert_true(backoff_next(&b, 0) == SEC / 2);   /* attempt 0: base 1 s, bottom */
    assert_true(backoff_next(&b, 0) == 1 * SEC);   /* attempt 1: base 2 s, bottom */
}

static void test_no_overflow_at_attempt_200(void **state) {
    struct backoff b;
    uint64_t d;

    backoff_init(&b, 1 * SEC, 300 * SEC);
    for (int i = 0; i < 200; i++)
        (void)backoff_next(&b, 0);
    assert_int_equal(b.attempt, 200);
    d = backoff_next(&b, UINT64_MAX);
    assert_true(d >= 150 * SEC && d <= 300 * SEC);

    /* A shift of 63, 64 or 200 must neither wrap nor be undefined (UBSan watches). */
    backoff_init(&b, 1, UINT64_MAX);
    b.attempt = 63;
    assert_true(backoff_next(&b, 0) == UINT64_C(1) << 62);
    b.attempt = 64;
    assert_true(backoff_next(&b, 0) == UINT64_MAX / 2);
    b.attempt = 200;
    assert_true(backoff_next(&b, UINT64_MAX) >= UINT64_MAX / 2);
    b.attempt = UINT_MAX;
    (void)backoff_next(&b, 0);
    assert_true(b.attempt == UINT_MAX);   /* saturates */

    backoff_init(&b, UINT64_MAX, UINT64_MAX);
    d = backoff_next(&b, UINT64_MAX);
    assert_true(d >= UINT64_MAX / 2);
}

static void test_odd_configurations(void **state) {
    struct backoff b;

    backoff_init(&b, 0, 100);   /* min 0: never grows */
    for (int i = 0; i < 10; i++)
        assert_int_equal(backoff_next(&b, UINT64_MAX), 0);
    backoff_init(&b, 500, 100);   /* min above max: max wins */
    for (int i = 0; i < 10; i++) {
        uint64_t d = backoff_next(&b, (uint64_t)i * 7);
        assert_true(d >= 50 && d <= 100);
    }
}

static void test_random_varies(void **state) {
    uint64_t a = backoff_random(), b = backoff_random(), c = backoff_random();

    /* 64 random bits: three equal draws in a row mean the source is broken. */
    assert_false(a == b && b == c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_attempt_within_equal_jitter_bounds),
        cmocka_unit_test(test_extremes_of_rnd_hit_both_ends),
        cmocka_unit_test(test_capped_at_max),
        cmocka_unit_test(test_reset_starts_over),
        cmocka_unit_test(test_no_overflow_at_attempt_200),
        cmocka_unit_test(test_odd_configurations),
        cmocka_unit_test(test_random_varies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
