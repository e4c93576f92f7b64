/* Unit tests of common/jsonload.c: parse failures give a position and a generic reason,
 * never the input, and leave no copy of the quoted input on the stack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonload.h"
#include "secret.h"
/* Deep documents put jansson's error text far down the stack: look far enough. */
#define STACK_RESIDUE_SCAN (512 * 1024)
#include "stack_residue.h"

static void test_good_input_parses_and_null_data_is_empty(void **st) {
    struct jsonload_error e = { .line = 99 };
    json_t *j = jsonload_buf("{\"a\":1}", 7, JSON_REJECT_DUPLICATES, &e);
    assert_non_null(j);
    assert_int_equal(e.line, 99);   /* untouched on success */
    json_decref(j);
    assert_null(jsonload_buf(NULL, 5, 0, &e));
    assert_int_equal(e.code, json_error_premature_end_of_input);
    assert_string_equal(e.reason, "unexpected end of input");
}

static void test_failure_gives_line_column_and_a_generic_reason(void **st) {
    struct jsonload_error e;
    const char *dup = "{\"a\":1,\n \"a\":2}";
    assert_null(jsonload_buf(dup, strlen(dup), JSON_REJECT_DUPLICATES, &e));
    assert_int_equal(e.line, 2);
    assert_int_equal(e.code, json_error_duplicate_key);
    assert_string_equal(e.reason, "duplicate key");
    const char *bad = "{\"password\": \"R3asonFr4g\xff\"}";
    assert_null(jsonload_buf(bad, strlen(bad), 0, &e));
    assert_string_equal(e.reason, "invalid UTF-8");
    assert_int_equal(e.line, 1);
    assert_true(e.position > 0 && e.position <= strlen(bad));
    assert_null(jsonload_buf("[", 1, 0, NULL));   /* NULL ret_err is fine */
    assert_string_equal(jsonload_reason(json_error_unknown), "invalid JSON");
}

/* jansson formats "... near '\"St4ckFr4gment'" on its stack and in json_error_t. */
static void test_failure_leaves_no_quoted_input_on_the_stack(void **st) {
    if (!stack_residue_supported())
        skip();
    struct jsonload_error e;
    const char *a = "{\"password\":\"St4ckFr4gment\x01\"}", *b = "{\"password\":\"Pl4inFr4gment\x01\"}";
    assert_null(jsonload_buf(a, strlen(a), 0, &e));
    assert_false(stack_residue_has("St4ckFr4gment"));
    /* The check itself can see what a plain json_loadb leaves behind. */
    json_error_t raw;
    assert_null(json_loadb(b, strlen(b), 0, &raw));
    assert_non_null(strstr(raw.text, "Pl4inFr4gment"));
    assert_true(stack_residue_has("Pl4inFr4gment"));
    explicit_bzero(&raw, sizeof raw);
}

/* The error is formatted at the deepest frame: 2000 levels down is far below a shallow
 * document's frames, and must be wiped too. */
static void test_failure_deep_in_nesting_leaves_nothing_either(void **st) {
    if (!stack_residue_supported())
        skip();
    static const size_t depths[] = { 10, 500, 1000, 2000 };
    for (size_t k = 0; k < sizeof depths / sizeof depths[0]; k++) {
        size_t d = depths[k];
        char *b = malloc(d + 32);
        assert_non_null(b);
        memset(b, '[', d);
        memcpy(b + d, "\"DeepFr4gment\x01\"", 16);
        assert_null(jsonload_buf(b, d + 16, 0, NULL));
        free(b);
        assert_false(stack_residue_has("DeepFr4gment"));
    }
}

int main(void) {
    secret_init(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_input_parses_and_null_data_is_empty),
        cmocka_unit_test(test_failure_gives_line_column_and_a_generic_reason),
        cmocka_unit_test(test_failure_leaves_no_quoted_input_on_the_stack),
        cmocka_unit_test(test_failure_deep_in_nesting_leaves_nothing_either),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
