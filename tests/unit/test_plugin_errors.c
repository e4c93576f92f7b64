/* plugin.h's error helpers, which every plugin shares: the class of each error class's
 * name, out of memory, and the class of a failed request by its -errno (the HTTP client's
 * codes, common/http.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "plugin.h"

static void test_every_class_has_a_name(void **state) {
    (void)state;
    for (int c = RC_ERR_NONE; c < RC_ERR_CLASS_MAX_; c++)
        assert_non_null(rc_err_class_to_string((enum rc_err_class)c));
    assert_string_equal(rc_err_class_to_string(RC_ERR_TRANSIENT), "transient");
    assert_null(rc_err_class_to_string(RC_ERR_CLASS_MAX_));
}

static void test_oom_is_transient(void **state) {
    struct rc_error e = { .cls = RC_ERR_FATAL };

    (void)state;
    assert_int_equal(rc_error_oom(&e), -1);
    assert_int_equal(e.cls, RC_ERR_TRANSIENT);
    assert_string_equal(e.message, "out of memory");
}

static void test_transport_classes(void **state) {
    (void)state;
    assert_int_equal(rc_transport_class(-EINVAL), RC_ERR_FATAL);      /* a URL refused */
    assert_int_equal(rc_transport_class(-EMSGSIZE), RC_ERR_INVALID);  /* over the cap */
    static const int transient[] = { -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -EPROTO,
                                     -ENOMEM, -EIO };
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++)
        assert_int_equal(rc_transport_class(transient[i]), RC_ERR_TRANSIENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_class_has_a_name),
        cmocka_unit_test(test_oom_is_transient),
        cmocka_unit_test(test_transport_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
