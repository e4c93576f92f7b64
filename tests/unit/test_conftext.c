/* Unit tests for common/conftext.c: @include expansion, the line map, integer literals as
 * written (libconfig 1.5 would wrap them), quoting for messages. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conftext.h"

static char tmpdir[PATH_MAX];

static int expand(const char *text, struct conftext *t, char **out, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    *out = NULL;
    return conftext_expand(t, text, strlen(text), "main.conf", tmpdir, false, out, err, errlen);
}

static void test_integer_literals_are_kept_as_written(void **state) {
    struct conftext t;
    char *out, err[256];
    assert_int_equal(expand("a = 3000000000; b = \"7 in a string\"; # 8 in a comment\n"
                            "c = 1.5; d = 0640; e = 0x1FFFFFFFF; f = -12;\n"
                            "/* 9\n in a block */ g = 99999999999999999999; h = 1e3; name-2 = 5;\n",
                            &t, &out, err, sizeof err), 0);
    assert_int_equal(t.n_ints, 6);
    assert_true(t.ints[0].value == 3000000000LL);
    assert_false(t.ints[0].overflow);
    assert_true(t.ints[1].leading_zero && t.ints[1].octal);
    assert_true(t.ints[1].octal_value == 0640);
    assert_true(t.ints[2].hex && t.ints[2].value == 0x1FFFFFFFFLL);
    assert_true(t.ints[3].value == -12);
    assert_true(t.ints[4].overflow);
    assert_string_equal(t.ints[4].text, "99999999999999999999");
    assert_true(t.ints[5].value == 5);
    free(out);
    conftext_done(&t);
    assert_null(t.files);
}

static void write_file(const char *name, const char *text) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_includes_are_spliced_and_lines_map_back(void **state) {
    struct conftext t;
    char *out, err[256];
    unsigned f, l;
    write_file("inc.conf", "x = 1;\ny = 2;\n");
    assert_int_equal(expand("a = 1;\n@include \"inc.conf\"\nb = 3;\n", &t, &out, err, sizeof err), 0);
    assert_string_equal(out, "a = 1;\nx = 1;\ny = 2;\n\nb = 3;\n");
    assert_int_equal(t.n_files, 2);
    assert_string_equal(t.files[0], "main.conf");
    conftext_map_line(&t, 1, &f, &l);
    assert_int_equal(f, 0);
    assert_int_equal(l, 1);
    conftext_map_line(&t, 3, &f, &l);   /* y = 2 */
    assert_int_equal(f, 1);
    assert_int_equal(l, 2);
    conftext_map_line(&t, 5, &f, &l);   /* b = 3 */
    assert_int_equal(f, 0);
    assert_int_equal(l, 3);
    assert_int_equal(t.n_ints, 4);
    free(out);
    conftext_done(&t);
}

static void test_errors_name_file_and_line(void **state) {
    static const struct {
        const char *text, *want;
    } bad[] = {
        { "a = 1;\nb = \"open\n", "main.conf:2: unterminated string" },
        { "a = 1;\n/* open\n", "main.conf:2: unterminated /* comment" },
        { "a = 1; @x\n", "main.conf:1: syntax error: '@' outside an @include line" },
        { "@include \"no-such.conf\"\n", "main.conf:1: @include \"" },
        { "@include \"open\n", "main.conf:1: @include: missing closing '\"'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct conftext t;
        char *out, err[512] = "";
        assert_int_equal(expand(bad[i].text, &t, &out, err, sizeof err) < 0, 1);
        if (strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
            fail_msg("%s: got \"%s\"", bad[i].text, err);
        assert_null(out);
        conftext_done(&t);
    }
    write_file("loop.conf", "@include \"loop.conf\"\n");
    struct conftext t;
    char *out, err[512];
    assert_int_equal(expand("@include \"loop.conf\"\n", &t, &out, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "nested more than 10 deep"));
    conftext_done(&t);
}

static void test_quote(void **state) {
    char buf[16], big[64];
    assert_string_equal(conftext_quote("a\"b\n", big, sizeof big), "\"a\\x22b\\x0a\"");
    assert_string_equal(conftext_quote("abcdefghijklmnopqrstuvwxyz", buf, sizeof buf),
                        "\"abcdefg...\"");
}

static int setup(void **state) {
    const char *base = secure_getenv("REDIS_CREDS_TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_conftext.XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/inc.conf", tmpdir);
    unlink(path);
    snprintf(path, sizeof path, "%s/loop.conf", tmpdir);
    unlink(path);
    return rmdir(tmpdir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integer_literals_are_kept_as_written),
        cmocka_unit_test(test_includes_are_spliced_and_lines_map_back),
        cmocka_unit_test(test_errors_name_file_and_line),
        cmocka_unit_test(test_quote),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
