/* Unit tests for the control protocol's pure parts (agent/control_request.c): the request
 * parser and the rights check. The socket itself is driven through the real agent in
 * tests/integration/test_control.py. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "control_request.h"

/* Parses buf[0..len) and returns the result; *req keeps a sentinel when nothing parsed. */
static int parse(const char *buf, size_t len, bool eof, struct control_request *req, const char **why) {
    memset(req, 0x5a, sizeof *req);
    *why = NULL;
    return control_request_parse(buf, len, eof, req, why);
}

#define PARSE(lit, eof, req, why) parse(lit, sizeof(lit) - 1, eof, req, why)

static void test_parse_accepts_the_three_verbs(void **state) {
    struct control_request req;
    const char *why;
    assert_int_equal(PARSE("status\n", false, &req, &why), 1);
    assert_int_equal(req.verb, CONTROL_STATUS);
    assert_string_equal(req.name, "");
    assert_int_equal(PARSE("refresh cache\n", false, &req, &why), 1);
    assert_int_equal(req.verb, CONTROL_REFRESH);
    assert_string_equal(req.name, "cache");
    assert_int_equal(PARSE("rotate  db-1.main\r\n", false, &req, &why), 1);
    assert_int_equal(req.verb, CONTROL_ROTATE);
    assert_string_equal(req.name, "db-1.main");
    assert_false(req.revoke);
    assert_string_equal(control_verb_name(CONTROL_ROTATE), "rotate");
    assert_int_equal(PARSE("rotate cache revoke\n", false, &req, &why), 1);   /* --revoke */
    assert_int_equal(req.verb, CONTROL_ROTATE);
    assert_string_equal(req.name, "cache");
    assert_true(req.revoke);
}

static void test_parse_reload_with_and_without_allow_removals(void **state) {
    struct control_request req;
    const char *why;
    assert_int_equal(PARSE("reload\n", false, &req, &why), 1);
    assert_int_equal(req.verb, CONTROL_RELOAD);
    assert_false(req.allow_removals);
    assert_string_equal(req.name, "");
    assert_int_equal(PARSE("reload allow-removals\r\n", false, &req, &why), 1);
    assert_int_equal(req.verb, CONTROL_RELOAD);
    assert_true(req.allow_removals);
    assert_int_equal(PARSE("reload", true, &req, &why), 1);
    assert_false(req.allow_removals);
    assert_string_equal(control_verb_name(CONTROL_RELOAD), "reload");
    /* the flag belongs to reload only, and a name never sets it */
    assert_int_equal(PARSE("refresh allow-removals\n", false, &req, &why), 1);
    assert_false(req.allow_removals);
    static const char *const bad[] = {
        "reload cache\n", "reload allow-removals x\n", "reload allow_removals\n",
        "reload --allow-removals\n", "status allow-removals\n", "RELOAD\n", "reloadallow-removals\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = parse(bad[i], strlen(bad[i]), false, &req, &why);
        if (r != -EINVAL)
            print_error("\"%s\" -> %d\n", bad[i], r);
        assert_int_equal(r, -EINVAL);
        assert_null(strstr(why, "cache"));
    }
}

static void test_parse_waits_for_the_newline(void **state) {
    struct control_request req;
    const char *why;
    assert_int_equal(PARSE("stat", false, &req, &why), 0);
    assert_int_equal(PARSE("", false, &req, &why), 0);
    assert_null(why);
    /* at end of input, the bytes so far are the request */
    assert_int_equal(PARSE("status", true, &req, &why), 1);
    assert_int_equal(req.verb, CONTROL_STATUS);
}

static void test_parse_answers_a_nul_byte_instead_of_waiting(void **state) {
    struct control_request req;
    const char *why;
    static const char nul_inside[] = "stat\0us\n";
    assert_int_equal(parse(nul_inside, sizeof nul_inside - 1, false, &req, &why), -EBADMSG);
    assert_non_null(strstr(why, "NUL"));
    static const char nul_after[] = "status\0\n";
    assert_int_equal(parse(nul_after, sizeof nul_after - 1, false, &req, &why), -EBADMSG);
    static const char nul_only[] = "\0";
    assert_int_equal(parse(nul_only, 1, true, &req, &why), -EBADMSG);
    assert_int_equal(PARSE("refresh ca\tche\n", false, &req, &why), -EBADMSG);
    assert_int_equal(PARSE("status\x7f\n", false, &req, &why), -EBADMSG);
}

static void test_parse_refuses_malformed_requests_without_quoting_them(void **state) {
    struct control_request req;
    const char *why;
    static const char *const bad[] = {
        "hello secret-word\n", "status now\n", "refresh\n", "refresh \n", "rotate ../x\n",
        "refresh a/b\n", "REFRESH cache\n", "statusx\n", " status\n", "rotate .hidden\n",
        "refresh cache revoke\n", "rotate cache secret-word\n", "rotate cache revoke x\n",
        "rotate ../x revoke\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = parse(bad[i], strlen(bad[i]), false, &req, &why);
        if (r != -EINVAL)
            print_error("\"%s\" -> %d\n", bad[i], r);
        assert_int_equal(r, -EINVAL);
        assert_non_null(why);
        assert_null(strstr(why, "secret-word"));
        assert_null(strstr(why, "../x"));
    }
    assert_int_equal(PARSE("\n", false, &req, &why), -EBADMSG);
    assert_int_equal(PARSE("\r\n", false, &req, &why), -EBADMSG);
}

static void test_parse_bounds_the_request_by_its_length(void **state) {
    struct control_request req;
    const char *why;
    char buf[CONTROL_MAX_REQUEST + 8];
    memset(buf, 'a', sizeof buf);
    assert_int_equal(parse(buf, CONTROL_MAX_REQUEST - 1, false, &req, &why), 0);
    assert_int_equal(parse(buf, CONTROL_MAX_REQUEST, false, &req, &why), -EMSGSIZE);
    assert_non_null(why);
    /* a newline past the cap does not count */
    buf[CONTROL_MAX_REQUEST] = '\n';
    assert_int_equal(parse(buf, CONTROL_MAX_REQUEST + 1, false, &req, &why), -EMSGSIZE);
    /* a name longer than any credential's */
    char line[128] = "refresh ";
    memset(line + 8, 'n', 65);
    line[8 + 65] = '\n';
    assert_int_equal(parse(line, 8 + 66, false, &req, &why), -EINVAL);
    line[8 + 64] = '\n';
    assert_int_equal(parse(line, 8 + 65, false, &req, &why), 1);
    assert_int_equal(strlen(req.name), 64);
}

static void test_parse_reads_only_the_first_line(void **state) {
    struct control_request req;
    const char *why;
    assert_int_equal(PARSE("refresh one\nrotate two\n", false, &req, &why), 1);
    assert_int_equal(req.verb, CONTROL_REFRESH);
    assert_string_equal(req.name, "one");
}

static void test_status_is_for_anyone_the_rest_for_root_and_the_agent(void **state) {
    const uid_t agent = 991, other = 1000;
    assert_true(control_allowed(CONTROL_STATUS, other, agent));
    assert_true(control_allowed(CONTROL_STATUS, 0, agent));
    for (enum control_verb v = CONTROL_REFRESH; v <= CONTROL_RELOAD; v++) {
        assert_false(control_allowed(v, other, agent));
        assert_true(control_allowed(v, 0, agent));
        assert_true(control_allowed(v, agent, agent));
    }
    /* an agent running as root: only root */
    assert_false(control_allowed(CONTROL_REFRESH, other, 0));
    assert_false(control_allowed(CONTROL_RELOAD, other, 0));
    assert_true(control_allowed(CONTROL_ROTATE, 0, 0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_accepts_the_three_verbs),
        cmocka_unit_test(test_parse_reload_with_and_without_allow_removals),
        cmocka_unit_test(test_parse_waits_for_the_newline),
        cmocka_unit_test(test_parse_answers_a_nul_byte_instead_of_waiting),
        cmocka_unit_test(test_parse_refuses_malformed_requests_without_quoting_them),
        cmocka_unit_test(test_parse_bounds_the_request_by_its_length),
        cmocka_unit_test(test_parse_reads_only_the_first_line),
        cmocka_unit_test(test_status_is_for_anyone_the_rest_for_root_and_the_agent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
