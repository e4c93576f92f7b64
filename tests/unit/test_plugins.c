/* Unit tests of the agent's plugin loader (agent/plugins.c). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "plugins.h"

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must name the build's plugin directory"
#endif

static char scratch[256];

static void copy_file(const char *from, const char *to, mode_t mode) {
    char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    ssize_t n;
    assert_true(in >= 0 && out >= 0);
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
    assert_int_equal(chmod(to, mode), 0);
}

static int setup(void **st) {
    const char *tmp = getenv("REDIS_CREDS_TEST_TMP");
    snprintf(scratch, sizeof scratch, "%s/plugins-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(scratch));
    assert_int_equal(chmod(scratch, 0755), 0);
    return 0;
}

static int teardown(void **st) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void test_file_type_loads_from_the_build_plugin_dir(void **st) {
    struct plugins *p = plugins_new();
    const struct rc_source_type *t = NULL;
    char err[512];
    assert_int_equal(plugins_find_type(p, TEST_PLUGIN_DIR, "file", &t, err, sizeof err), 0);
    assert_string_equal(t->type, "file");
    /* Loaded once: a second lookup gives the same table. */
    const struct rc_source_type *t2 = NULL;
    assert_int_equal(plugins_find_type(p, TEST_PLUGIN_DIR, "file", &t2, err, sizeof err), 0);
    assert_ptr_equal(t, t2);
    plugins_free(p);
}

/* Two plugins in one registry (a file source and a vault source in one config): each
 * lookup gets its own plugin's table, not the first one loaded again. */
static void test_two_plugins_load_side_by_side(void **st) {
    struct plugins *p = plugins_new();
    const struct rc_source_type *f = NULL, *v = NULL;
    char err[512];
    assert_int_equal(plugins_find_type(p, TEST_PLUGIN_DIR, "file", &f, err, sizeof err), 0);
    assert_int_equal(plugins_find_type(p, TEST_PLUGIN_DIR, "vault", &v, err, sizeof err), 0);
    assert_string_equal(f->type, "file");
    assert_string_equal(v->type, "vault");
    assert_ptr_not_equal(f->fetch, v->fetch);
    assert_non_null(f->rotate_write);   /* both can write a next version with a check-and-set */
    assert_non_null(v->rotate_write);
    assert_true(f->caps & RC_CAP_ROTATE_WRITE);
    assert_true(v->caps & RC_CAP_ROTATE_WRITE);
    assert_null(f->rotate_self);        /* a directory cannot make a password */
    assert_non_null(v->rotate_self);    /* vault-database: Vault makes it */
    plugins_free(p);
}

static void test_wrong_abi_version_is_refused_naming_file_and_versions(void **st) {
    struct plugins *p = plugins_new();
    const struct rc_source_type *t = NULL;
    char err[512], expect[64];
    assert_int_equal(plugins_find_type(p, TEST_PLUGIN_DIR, "badabi", &t, err, sizeof err), -ELIBBAD);
    assert_non_null(strstr(err, "badabi.so"));
    snprintf(expect, sizeof expect, "ABI version %d", RC_PLUGIN_ABI_VERSION + 41);
    assert_non_null(strstr(err, expect));
    snprintf(expect, sizeof expect, "needs version %d", RC_PLUGIN_ABI_VERSION);
    assert_non_null(strstr(err, expect));
    plugins_free(p);
}

/* The table is read by its declared size: members past it are absent, never the words
 * that follow the plugin's shorter table. */
static void test_short_method_table_has_no_trailing_methods(void **st) {
    struct plugins *p = plugins_new();
    const struct rc_source_type *t = NULL;
    char err[512];
    assert_int_equal(plugins_find_type(p, TEST_PLUGIN_DIR, "shorttab", &t, err, sizeof err), 0);
    assert_non_null(t->open);
    assert_non_null(t->fetch);
    assert_non_null(t->close);
    assert_null(t->next_check);
    assert_null(t->watch_fd);
    assert_null(t->watch_event);
    assert_null(t->rotate_write);
    assert_null(t->rotate_self);
    assert_int_equal(t->caps, 0);
    plugins_free(p);
}

static void test_capability_without_its_method_is_refused(void **st) {
    struct plugins *p = plugins_new();
    const struct rc_source_type *t = NULL;
    char err[512];
    assert_int_equal(plugins_find_type(p, TEST_PLUGIN_DIR, "badcap", &t, err, sizeof err), -ELIBBAD);
    assert_non_null(strstr(err, "badcap.so"));
    assert_non_null(strstr(err, "RC_CAP_ROTATE_WRITE without rotate_write()"));
    plugins_free(p);
}

static void test_unknown_type_and_missing_plugin_are_refused(void **st) {
    struct plugins *p = plugins_new();
    const struct rc_source_type *t = NULL;
    char err[512];
    assert_int_equal(plugins_find_type(p, TEST_PLUGIN_DIR, "file-extra", &t, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "file-extra"));
    assert_true(plugins_find_type(p, TEST_PLUGIN_DIR, "nosuch", &t, err, sizeof err) < 0);
    assert_non_null(strstr(err, "nosuch.so"));
    assert_int_equal(plugins_find_type(p, TEST_PLUGIN_DIR, "../etc", &t, err, sizeof err), -EINVAL);
    plugins_free(p);
}

static void test_group_writable_plugin_or_dir_is_refused(void **st) {
    char path[512], err[512];
    const struct rc_source_type *t = NULL;
    snprintf(path, sizeof path, "%s/file.so", scratch);
    copy_file(TEST_PLUGIN_DIR "/file.so", path, 0775);
    struct plugins *p = plugins_new();
    assert_int_equal(plugins_find_type(p, scratch, "file", &t, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "writable by group or others"));
    assert_non_null(strstr(err, "file.so"));
    assert_int_equal(chmod(path, 0755), 0);
    assert_int_equal(chmod(scratch, 0777), 0);
    assert_int_equal(plugins_find_type(p, scratch, "file", &t, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, scratch));
    assert_int_equal(chmod(scratch, 0755), 0);
    assert_int_equal(plugins_find_type(p, scratch, "file", &t, err, sizeof err), 0);
    plugins_free(p);
}

static void test_symlinked_plugin_is_refused(void **st) {
    char path[512], err[512];
    const struct rc_source_type *t = NULL;
    snprintf(path, sizeof path, "%s/file.so", scratch);
    assert_int_equal(symlink(TEST_PLUGIN_DIR "/file.so", path), 0);
    struct plugins *p = plugins_new();
    assert_true(plugins_find_type(p, scratch, "file", &t, err, sizeof err) < 0);
    plugins_free(p);
}

static void test_free_of_null_is_null(void **st) {
    assert_null(plugins_free(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_type_loads_from_the_build_plugin_dir),
        cmocka_unit_test(test_two_plugins_load_side_by_side),
        cmocka_unit_test(test_wrong_abi_version_is_refused_naming_file_and_versions),
        cmocka_unit_test(test_short_method_table_has_no_trailing_methods),
        cmocka_unit_test(test_capability_without_its_method_is_refused),
        cmocka_unit_test(test_unknown_type_and_missing_plugin_are_refused),
        cmocka_unit_test_setup_teardown(test_group_writable_plugin_or_dir_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinked_plugin_is_refused, setup, teardown),
        cmocka_unit_test(test_free_of_null_is_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
