/* Unit tests for common/enumstr.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "enumstr.h"

static const struct enumstr colours[] = {
    { "red", 1 }, { "green", 2 }, { "blue", 4 }, { NULL, 0 },
};

static void test_from_and_to(void **state) {
    int v = -1;
    assert_int_equal(enumstr_from(colours, "green", &v), 0);
    assert_int_equal(v, 2);
    v = -1;
    assert_int_equal(enumstr_from(colours, "Green", &v), -EINVAL);   /* exact match */
    assert_int_equal(enumstr_from(colours, "", &v), -EINVAL);
    assert_int_equal(enumstr_from(colours, NULL, &v), -EINVAL);
    assert_int_equal(v, -1);   /* untouched on failure */
    assert_string_equal(enumstr_to(colours, 4), "blue");
    assert_null(enumstr_to(colours, 3));
}

static void test_list_for_messages(void **state) {
    static const struct enumstr one[] = { { "only", 0 }, { NULL, 0 } };
    static const struct enumstr two[] = { { "a", 0 }, { "b", 1 }, { NULL, 0 } };
    char buf[64], tiny[8];
    assert_string_equal(enumstr_list(colours, false, buf, sizeof buf), "red, green or blue");
    assert_string_equal(enumstr_list(colours, true, buf, sizeof buf),
                        "\"red\", \"green\" or \"blue\"");
    assert_string_equal(enumstr_list(one, false, buf, sizeof buf), "only");
    assert_string_equal(enumstr_list(two, false, buf, sizeof buf), "a or b");
    assert_string_equal(enumstr_list(colours, false, tiny, sizeof tiny), "red, gr");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_and_to),
        cmocka_unit_test(test_list_for_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
