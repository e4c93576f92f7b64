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

/* ABI 5: a plugin declares its keys in plugin.h's own table; the loader turns them into
 * the host's schema, member by member, nested groups included. */
static const struct rc_config_key inner_keys[] = {
    { .name = "method", .type = RC_CONF_T_STRING, .default_value = "token" },
    { .name = "ttl", .type = RC_CONF_T_DURATION, .default_value = "30s", .checks = RC_CONF_CHECK_POSITIVE },
    { .name = NULL },
};
static const struct rc_config_key outer_keys[] = {
    { .name = "path", .type = RC_CONF_T_STRING, .required = true, .checks = RC_CONF_CHECK_FILE_NAME },
    { .name = "tries", .type = RC_CONF_T_INT, .min = 1, .max = 9, .default_value = "3" },
    { .name = "auth", .type = RC_CONF_T_GROUP, .group_keys = inner_keys },
    { .name = "spare", .type = RC_CONF_T_GROUP, .group_keys = inner_keys },
    { .name = NULL },
};

static void test_plugin_key_table_becomes_the_host_schema(void **st) {
    struct config_key *k = NULL;
    char err[256];
    assert_int_equal(plugins_keys_convert(outer_keys, &k, err, sizeof err), 0);
    assert_string_equal(k[0].name, "path");
    assert_int_equal(k[0].type, CONFIG_T_STRING);
    assert_true(k[0].required);
    assert_int_equal(k[0].checks, CONFIG_CHECK_FILE_NAME);
    assert_int_equal(k[1].type, CONFIG_T_INT);
    assert_int_equal(k[1].min, 1);
    assert_int_equal(k[1].max, 9);
    assert_string_equal(k[1].default_value, "3");
    assert_int_equal(k[2].type, CONFIG_T_GROUP);
    assert_string_equal(k[2].group_keys[1].name, "ttl");
    assert_int_equal(k[2].group_keys[1].checks, CONFIG_CHECK_POSITIVE);
    assert_null(k[2].group_keys[2].name);
    for (int i = 0; i < 4; i++) {   /* the host-only members stay empty */
        assert_int_equal(k[i].store, CONFIG_STORE_NONE);
        assert_null(k[i].words);
    }
    assert_null(k[4].name);
    plugins_keys_free(k);
}

static const struct config_key *lookup_keys[2];
static int keys_lookup(void *ud, const char *dir, const char *type, const struct config_key **src,
                       const struct config_key **cred, char *err, size_t errlen) {
    (void)ud, (void)dir, (void)type, (void)err, (void)errlen;
    *src = lookup_keys[0];
    *cred = lookup_keys[1];
    return 0;
}

/* What a plugin reads through the services: opaque nodes, nested groups by pointer (with
 * their defaults when unset), dotted paths, and the converted table's checks applied by
 * the host's config_load(). */
static void test_plugin_reads_values_through_opaque_nodes(void **st) {
    static const struct rc_config_key none[] = { { .name = NULL } };
    struct config_key *src = NULL, *cred = NULL;
    struct config *c = NULL;
    char err[512];
    assert_int_equal(plugins_keys_convert(outer_keys, &src, err, sizeof err), 0);
    assert_int_equal(plugins_keys_convert(none, &cred, err, sizeof err), 0);
    lookup_keys[0] = src, lookup_keys[1] = cred;
    const char *conf = "sources = ( { name = \"s\"; type = \"t\"; path = \"p\";\n"
                       "    auth = { method = \"approle\"; }; } );\ncredentials = ( );\n"
                       "agent = { allow_no_credentials = true; };\n";
    assert_int_equal(config_load_string(conf, "t.conf", "/tmp", keys_lookup, NULL, &c, err, sizeof err), 0);
    const struct rc_services *svc = plugins_services();
    const struct rc_config_node *n = plugins_node(&c->sources[0].node);
    assert_string_equal(svc->conf_string(n, "path"), "p");
    assert_int_equal(svc->conf_int(n, "tries"), 3);
    const struct rc_config_node *auth = svc->conf_group(n, "auth");
    assert_non_null(auth);
    assert_ptr_equal(svc->conf_group(n, "auth"), auth);   /* the same node: it lives with n */
    assert_string_equal(svc->conf_string(auth, "method"), "approle");
    assert_int_equal(svc->conf_duration(auth, "ttl"), 30000000);
    assert_int_equal(svc->conf_line(auth, "method"), 2);
    assert_string_equal(svc->conf_string(n, "auth.method"), "approle");
    const struct rc_config_node *spare = svc->conf_group(n, "spare");   /* unset: defaults */
    assert_non_null(spare);
    assert_false(svc->conf_has(spare, "method"));
    assert_string_equal(svc->conf_string(spare, "method"), "token");
    assert_null(svc->conf_group(n, "path"));   /* not a group */
    assert_null(svc->conf_group(n, "nope"));
    assert_null(svc->conf_string(NULL, "path"));
    config_free(c);

    /* The host checks the plugin's declared checks before any plugin code runs. */
    conf = "sources = ( { name = \"s\"; type = \"t\"; path = \"a/b\"; auth = { ttl = \"0s\"; }; } );\n"
           "credentials = ( );\nagent = { allow_no_credentials = true; };\n";
    assert_int_equal(config_load_string(conf, "t.conf", "/tmp", keys_lookup, NULL, &c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "sources[0].path"));
    plugins_keys_free(src);
    plugins_keys_free(cred);
}

static void test_plugin_key_the_host_cannot_check_is_refused(void **st) {
    const struct rc_config_key bad_type[] = { { .name = "x", .type = (enum rc_conf_type)9 }, { .name = NULL } };
    const struct rc_config_key bad_check[] = {
        { .name = "y", .type = RC_CONF_T_STRING, .checks = RC_CONF_CHECK_WORDS_QUOTED }, { .name = NULL } };
    const struct rc_config_key group_without_keys[] = { { .name = "z", .type = RC_CONF_T_GROUP }, { .name = NULL } };
    const struct rc_config_key nested_bad[] = {
        { .name = "g", .type = RC_CONF_T_GROUP, .group_keys = bad_type }, { .name = NULL } };
    const struct { const struct rc_config_key *keys; const char *want; } cases[] = {
        { bad_type, "key \"x\": type 9" }, { bad_check, "key \"y\"" },
        { group_without_keys, "a GROUP needs group_keys" }, { nested_bad, "key \"x\"" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config_key *k = NULL;
        char err[256] = "";
        assert_int_equal(plugins_keys_convert(cases[i].keys, &k, err, sizeof err), -ELIBBAD);
        assert_null(k);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].want);
    }
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
        cmocka_unit_test(test_plugin_key_table_becomes_the_host_schema),
        cmocka_unit_test(test_plugin_reads_values_through_opaque_nodes),
        cmocka_unit_test(test_plugin_key_the_host_cannot_check_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
