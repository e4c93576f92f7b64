/* Unit tests for common/secret.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "secret.h"

/* Test hook in secret.c (not part of the public header). */
extern void (*secret_test_release_hook)(const void *p, size_t len);

static unsigned hook_calls;
static unsigned hook_dirty;   /* blocks released with a non-zero byte */

static void check_wiped(const void *p, size_t len) {
    const unsigned char *b = p;
    hook_calls++;
    for (size_t i = 0; i < len; i++)
        if (b[i] != 0) {
            hook_dirty++;
            return;
        }
}

static void hook_reset(void) {
    hook_calls = 0;
    hook_dirty = 0;
    secret_test_release_hook = check_wiped;
}

static int teardown_hook(void **state) {
    secret_test_release_hook = NULL;
    return 0;
}

/* Runs first, before secret_init(): allocations fall back to locked mappings. */
static void test_fallback_allocation_works_without_secure_heap(void **state) {
    assert_false(secret_secure_heap_active());
    struct secret *s = secret_new("fallback", 8);
    assert_non_null(s);
    assert_string_equal(secret_data(s), "fallback");
    hook_reset();
    s = secret_free(s);
    assert_null(s);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_dirty, 0);
}

static void test_init_sets_up_secure_heap(void **state) {
    assert_int_equal(secret_init(0), 0);
    assert_true(secret_secure_heap_active());
    /* A second call is harmless. */
    assert_int_equal(secret_init(0), 0);
    assert_true(secret_secure_heap_active());
}

static void test_round_trip(void **state) {
    static const char pw[] = "s3cr3t-p4ss";
    struct secret *s = secret_new(pw, sizeof(pw) - 1);
    assert_non_null(s);
    assert_int_equal(secret_len(s), sizeof(pw) - 1);
    assert_memory_equal(secret_data(s), pw, sizeof(pw) - 1);
    s = secret_free(s);
    assert_null(s);
}

static void test_data_is_nul_terminated(void **state) {
    const char raw[4] = { 'a', 'b', 'c', 'd' };   /* no NUL in the input */
    struct secret *s = secret_new(raw, 3);
    assert_non_null(s);
    assert_int_equal(secret_len(s), 3);
    assert_int_equal(secret_data(s)[3], '\0');
    assert_string_equal(secret_data(s), "abc");
    secret_free(s);

    struct secret *e = secret_new("", 0);
    assert_non_null(e);
    assert_int_equal(secret_len(e), 0);
    assert_string_equal(secret_data(e), "");
    secret_free(e);
}

static void test_new_str_and_embedded_nul(void **state) {
    struct secret *s = secret_new_str("hello");
    assert_non_null(s);
    assert_int_equal(secret_len(s), 5);
    secret_free(s);

    /* Length is explicit: bytes after an embedded NUL are kept. */
    s = secret_new("a\0b", 3);
    assert_non_null(s);
    assert_int_equal(secret_len(s), 3);
    assert_memory_equal(secret_data(s), "a\0b", 4);
    secret_free(s);

    errno = 0;
    assert_null(secret_new_str(NULL));
    assert_int_equal(errno, EINVAL);
}

static void test_dup_copies_contents(void **state) {
    struct secret *a = secret_new_str("dup-me");
    struct secret *b = secret_dup(a);
    assert_non_null(b);
    assert_ptr_not_equal(secret_data(a), secret_data(b));
    assert_true(secret_equal(a, b));
    a = secret_free(a);
    /* The copy outlives the original. */
    assert_string_equal(secret_data(b), "dup-me");
    secret_free(b);
    assert_null(secret_dup(NULL));
}

static void test_equal_and_unequal(void **state) {
    struct secret *a = secret_new_str("password1");
    struct secret *b = secret_new_str("password1");
    struct secret *c = secret_new_str("password2");
    struct secret *d = secret_new_str("password");   /* prefix of a */
    struct secret *e1 = secret_new("", 0);
    struct secret *e2 = secret_new("", 0);
    assert_true(secret_equal(a, b));
    assert_false(secret_equal(a, c));
    assert_false(secret_equal(a, d));
    assert_false(secret_equal(d, a));
    assert_true(secret_equal(e1, e2));
    assert_false(secret_equal(a, NULL));
    assert_false(secret_equal(NULL, a));
    assert_true(secret_equal(NULL, NULL));
    secret_free(a);
    secret_free(b);
    secret_free(c);
    secret_free(d);
    secret_free(e1);
    secret_free(e2);
}

static void test_free_null_returns_null(void **state) {
    assert_null(secret_free(NULL));
    secret_wipe_free(NULL, 10);   /* must not crash */
    _cleanup_secret_ struct secret *s = NULL;   /* cleanup of NULL is fine too */
    (void)s;
}

static void test_cleanup_attribute_frees(void **state) {
    hook_reset();
    {
        _cleanup_secret_ struct secret *s = secret_new_str("scoped");
        assert_non_null(s);
    }
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_dirty, 0);
}

static void test_large_secret_falls_back_when_heap_is_too_small(void **state) {
    /* Larger than the whole secure heap: must still work (mapping fallback). */
    size_t n = 512 * 1024;
    char *buf = malloc(n);
    assert_non_null(buf);
    memset(buf, 'x', n);
    struct secret *s = secret_new(buf, n);
    assert_non_null(s);
    assert_int_equal(secret_len(s), n);
    assert_memory_equal(secret_data(s), buf, n);
    assert_int_equal(secret_data(s)[n], '\0');
    hook_reset();
    secret_free(s);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_dirty, 0);
    free(buf);
}

static void test_secret_free_wipes(void **state) {
    struct secret *s = secret_new_str("wipe-me-please");
    hook_reset();
    secret_free(s);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_dirty, 0);
}

static void test_wipe_free_wipes(void **state) {
    char *p = malloc(64);
    assert_non_null(p);
    memset(p, 0xA5, 64);
    hook_reset();
    secret_wipe_free(p, 64);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_dirty, 0);
}

static void test_jansson_free_wipes_whole_block(void **state) {
    json_malloc_t mf = NULL;
    json_free_t ff = NULL;
    json_get_alloc_funcs(&mf, &ff);
    assert_non_null(mf);
    assert_non_null(ff);
    unsigned char *p = mf(100);
    assert_non_null(p);
    memset(p, 0x5A, 100);
    hook_reset();
    ff(p);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_dirty, 0);
    ff(NULL);   /* jansson may free NULL */
}

static void test_jansson_strings_are_wiped(void **state) {
    hook_reset();
    json_error_t jerr;
    json_t *j = json_loads("{\"password\": \"correct horse battery staple\"}", 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "password")),
                        "correct horse battery staple");
    json_decref(j);
    assert_true(hook_calls > 0);
    assert_int_equal(hook_dirty, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_fallback_allocation_works_without_secure_heap,
                                  teardown_hook),
        cmocka_unit_test(test_init_sets_up_secure_heap),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_data_is_nul_terminated),
        cmocka_unit_test(test_new_str_and_embedded_nul),
        cmocka_unit_test(test_dup_copies_contents),
        cmocka_unit_test(test_equal_and_unequal),
        cmocka_unit_test(test_free_null_returns_null),
        cmocka_unit_test_teardown(test_cleanup_attribute_frees, teardown_hook),
        cmocka_unit_test_teardown(test_large_secret_falls_back_when_heap_is_too_small,
                                  teardown_hook),
        cmocka_unit_test_teardown(test_secret_free_wipes, teardown_hook),
        cmocka_unit_test_teardown(test_wipe_free_wipes, teardown_hook),
        cmocka_unit_test_teardown(test_jansson_free_wipes_whole_block, teardown_hook),
        cmocka_unit_test_teardown(test_jansson_strings_are_wiped, teardown_hook),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
