/* Unit tests for common/secret.c. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
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

/* ---- the registry and secret_scrub() ---- */

static void test_scrub_replaces_a_live_secret(void **state) {
    struct secret *s = secret_new_str("hunter2-horse");
    char text[128] = "AUTH: unexpected reply hunter2-horse (node a:1)";
    assert_int_equal(secret_scrub(text, sizeof text), 1);
    assert_string_equal(text, "AUTH: unexpected reply [redacted] (node a:1)");
    /* A text without it is left alone. */
    char other[64] = "nothing to see hunter2 here";
    assert_int_equal(secret_scrub(other, sizeof other), 0);
    assert_string_equal(other, "nothing to see hunter2 here");
    secret_free(s);
}

static void test_scrub_every_occurrence_and_several_secrets(void **state) {
    struct secret *a = secret_new_str("alpha-pw-1");
    struct secret *b = secret_new_str("bravo-pw-2");
    char text[128] = "alpha-pw-1,bravo-pw-2;alpha-pw-1";
    assert_int_equal(secret_scrub(text, sizeof text), 3);
    assert_string_equal(text, "[redacted],[redacted];[redacted]");
    assert_null(strstr(text, "alpha-pw-1"));
    assert_null(strstr(text, "bravo-pw-2"));
    secret_free(a);
    secret_free(b);
}

static void test_scrub_ignores_secrets_under_six_bytes(void **state) {
    struct secret *s = secret_new_str("short");
    char text[32] = "a short one";
    assert_int_equal(secret_scrub(text, sizeof text), 0);
    assert_string_equal(text, "a short one");
    secret_free(s);
}

static void test_scrub_overlapping_secrets_leave_no_byte(void **state) {
    struct secret *a = secret_new_str("abcdefgh");
    struct secret *b = secret_new_str("efghijklmn");
    struct secret *c = secret_new_str("abcdefghXYZ");   /* a is its beginning */
    char text[64] = "x abcdefghijklmn y abcdefghXYZ z";
    assert_int_equal(secret_scrub(text, sizeof text), 2);
    assert_string_equal(text, "x [redacted] y [redacted] z");
    secret_free(a);
    secret_free(b);
    secret_free(c);
}

static void test_scrub_secret_at_the_end_of_text_and_buffer(void **state) {
    struct secret *s = secret_new_str("tail-secret-42");
    char text[32] = "ends with tail-secret-42";
    assert_int_equal(secret_scrub(text, sizeof text), 1);
    assert_string_equal(text, "ends with [redacted]");
    /* A text cut short keeps only the secret's beginning: found at the end. */
    char cut[32] = "cut at tail-se";
    assert_int_equal(secret_scrub(cut, sizeof cut), 1);
    assert_string_equal(cut, "cut at [redacted]");
    /* The marker is longer than the secret and the buffer is full: the text ends with as
     * much of the marker as fits, never past cap. */
    struct secret *six = secret_new_str("6bytes");
    char full[12] = "abcd6bytes!";   /* 11 bytes + NUL: exactly full */
    assert_int_equal(secret_scrub(full, sizeof full), 1);
    assert_string_equal(full, "abcd[redact");
    secret_free(six);
    secret_free(s);
}

static void test_scrub_finds_an_echo_cut_short(void **state) {
    struct secret *s = secret_new_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    char text[96] = "AUTH: unexpected error reply ABCDEFGHIJKLMNOPQRSTUVWXYZ012345 (a:1)";
    assert_int_equal(secret_scrub(text, sizeof text), 1);
    assert_string_equal(text, "AUTH: unexpected error reply [redacted] (a:1)");
    /* Under SECRET_SCRUB_PREFIX bytes in the middle of a text: not a match. */
    char word[64] = "ABCDEFGHI and more";
    assert_int_equal(secret_scrub(word, sizeof word), 0);
    secret_free(s);
}

static void test_scrub_finds_the_json_escaped_form(void **state) {
    struct secret *s = secret_new("plainx\"q\\b/s\n", 13);
    char text[96] = "{\"error\":\"bad password plainx\\\"q\\\\b\\/s\\n here\"}";
    assert_int_equal(secret_scrub(text, sizeof text), 1);
    assert_string_equal(text, "{\"error\":\"bad password [redacted] here\"}");
    char u[96] = "x plainx\\u0022q\\u005Cb/s\\u000a y";
    assert_int_equal(secret_scrub(u, sizeof u), 1);
    assert_string_equal(u, "x [redacted] y");
    secret_free(s);
}

static void test_scrub_forgets_a_freed_secret(void **state) {
    struct secret *s = secret_new_str("soon-freed-pw");
    struct secret *keep = secret_new_str("kept-secret-pw");
    char text[64] = "soon-freed-pw kept-secret-pw";
    s = secret_free(s);
    assert_int_equal(secret_scrub(text, sizeof text), 1);
    assert_string_equal(text, "soon-freed-pw [redacted]");
    secret_free(keep);
    assert_int_equal(secret_scrub(text, sizeof text), 0);
}

static void test_scrub_of_null_and_empty(void **state) {
    assert_int_equal(secret_scrub(NULL, 10), 0);
    char e[1] = "";
    assert_int_equal(secret_scrub(e, 0), 0);
    assert_int_equal(secret_scrub(e, sizeof e), 0);
}

/* Smoke: threads make and free secrets while others scrub (run under ASan/TSan in CI). */
#define SMOKE_ROUNDS 2000
static void *smoke_maker(void *arg) {
    char pw[32];
    for (int i = 0; i < SMOKE_ROUNDS; i++) {
        snprintf(pw, sizeof pw, "thread-%p-%d", arg, i);
        struct secret *s = secret_new_str(pw);
        char text[96];
        snprintf(text, sizeof text, "echo %s end", pw);
        if (!s || secret_scrub(text, sizeof text) != 1 || strstr(text, pw))
            return (void *)1;
        secret_free(s);
    }
    return NULL;
}

static void test_scrub_thread_safety_smoke(void **state) {
    pthread_t t[4];
    void *ret[4];
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, smoke_maker, (void *)(uintptr_t)(i + 1)), 0);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], &ret[i]), 0);
        assert_null(ret[i]);
    }
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
        cmocka_unit_test(test_scrub_replaces_a_live_secret),
        cmocka_unit_test(test_scrub_every_occurrence_and_several_secrets),
        cmocka_unit_test(test_scrub_ignores_secrets_under_six_bytes),
        cmocka_unit_test(test_scrub_overlapping_secrets_leave_no_byte),
        cmocka_unit_test(test_scrub_secret_at_the_end_of_text_and_buffer),
        cmocka_unit_test(test_scrub_finds_an_echo_cut_short),
        cmocka_unit_test(test_scrub_finds_the_json_escaped_form),
        cmocka_unit_test(test_scrub_forgets_a_freed_secret),
        cmocka_unit_test(test_scrub_of_null_and_empty),
        cmocka_unit_test(test_scrub_thread_safety_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
