/* Unit tests for common/confcheck.c: what a configuration names on this machine, for a
 * given user (files it must read, groups it must be in, paths the sandbox hides). */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "confcheck.h"
#include "config.h"

#define NO_GROUP "rc-confcheck-nosuchgroup"
#define OWN_GROUP "group = \"\";"   /* the agent's own: not looked up */

static char tmpdir[PATH_MAX];
static char found[16][1200];
static enum confcheck_level levels[16];
static size_t n_found;

static void collect(void *userdata, enum confcheck_level level, const char *msg) {
    (void)userdata;
    /* The files these tests make live in the build tree, which may itself be under /tmp
     * or /home (a CI clone): the sandbox warning about them is not what a test checks. */
    if (level == CONFCHECK_WARNING && strstr(msg, "sandbox hides") && strstr(msg, tmpdir))
        return;
    if (n_found < 16) {
        levels[n_found] = level;
        snprintf(found[n_found], sizeof found[0], "%s", msg);
    }
    n_found++;
}

/* A user that is nobody here: no file is its, no group its own. */
static struct confcheck_user stranger(void) {
    struct confcheck_user u = { .uid = 4242, .gid = 4242 };
    snprintf(u.name, sizeof u.name, "stranger");
    return u;
}

/* Loads a config with one credential whose redis group holds `redis_extra`. */
static struct config *load(const char *agent, const char *redis_extra) {
    char text[2048], err[1024];
    struct config *c = NULL;
    snprintf(text, sizeof text,
             "agent = { %s allow_no_credentials = true; };\n"
             "sources = ( { name = \"s\"; type = \"file\"; } );\n"
             "credentials = ( { name = \"c\"; source = \"s\";\n"
             "  redis = { endpoints = [ \"h:1\" ]; %s }; } );\n", agent, redis_extra);
    int r = config_load_string(text, "agent.conf", NULL, NULL, NULL, &c, err, sizeof err);
    if (r < 0)
        fail_msg("%s", err);
    return c;
}

static unsigned run(const char *agent, const char *redis_extra, const struct confcheck_user *u) {
    struct config *c = load(agent, redis_extra);
    n_found = 0;
    unsigned errors = confcheck_run(c, u, collect, NULL);
    config_free(c);
    return errors;
}

static void expect_one(enum confcheck_level level, const char *want) {
    assert_int_equal(n_found, 1);
    assert_int_equal(levels[0], level);
    if (!strstr(found[0], want))
        fail_msg("\"%s\" does not contain \"%s\"", found[0], want);
}

static void test_a_group_that_does_not_exist_is_an_error(void **state) {
    struct confcheck_user u = stranger();
    assert_int_equal(run("group = \"" NO_GROUP "\";", "", &u), 1);
    expect_one(CONFCHECK_ERROR, "agent.conf:1: agent.group: group \"" NO_GROUP "\" does not "
               "exist; create it (groupadd " NO_GROUP ") or name an existing group");
    /* "" is the agent's own group: nothing to look up */
    assert_int_equal(run("group = \"\"; control_group = \"" NO_GROUP "\";", "", &u), 1);
    expect_one(CONFCHECK_ERROR, "agent.conf:1: agent.control_group: group \"" NO_GROUP "\"");
}

static void test_a_group_the_user_is_not_in_names_both_fixes(void **state) {
    struct confcheck_user u = stranger();
    struct group *g = getgrgid(0);
    assert_non_null(g);
    char agent[128];
    snprintf(agent, sizeof agent, "group = \"%s\";", g->gr_name);
    /* the group database: a warning, the unit may add it */
    assert_int_equal(run(agent, "", &u), 0);
    expect_one(CONFCHECK_WARNING, "stranger is not in group");
    assert_non_null(strstr(found[0], "usermod -aG"));
    assert_non_null(strstr(found[0], "SupplementaryGroups="));
    /* the process's own groups at start: an error */
    u.process = true;
    assert_int_equal(run(agent, "", &u), 1);
    expect_one(CONFCHECK_ERROR, "the agent (stranger) is not in group");
    /* in it: nothing to say */
    u.groups[u.n_groups++] = 0;
    assert_int_equal(run(agent, "", &u), 0);
    assert_int_equal(n_found, 0);
}

static void write_file(const char *name, mode_t mode, char *path, size_t size) {
    snprintf(path, size, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x\n", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_files_must_exist_and_be_readable_by_the_user(void **state) {
    struct confcheck_user u = stranger();
    char path[PATH_MAX + 32], extra[PATH_MAX + 64];

    snprintf(extra, sizeof extra, "ca_file = \"%s/missing.pem\";", tmpdir);
    assert_int_equal(run(OWN_GROUP, extra, &u), 1);
    expect_one(CONFCHECK_ERROR, "agent.conf:4: credentials[0].redis.ca_file: \"");
    assert_non_null(strstr(found[0], "missing.pem\" does not exist; correct the path"));

    write_file("secret.pem", 0600, path, sizeof path);
    snprintf(extra, sizeof extra, "key_file = \"%s\";", path);
    assert_int_equal(run(OWN_GROUP, extra, &u), 1);
    expect_one(CONFCHECK_ERROR, "stranger cannot read it (owner ");
    assert_non_null(strstr(found[0], "mode 0600"));

    u.uid = getuid();   /* its owner reads it */
    assert_int_equal(run(OWN_GROUP, extra, &u), 0);
    u = stranger();
    u.uid = 0;          /* root reads everything */
    assert_int_equal(run(OWN_GROUP, extra, &u), 0);

    u = stranger();
    write_file("public.pem", 0644, path, sizeof path);
    snprintf(extra, sizeof extra, "cert_file = \"%s\";", path);
    assert_int_equal(run(OWN_GROUP, extra, &u), 0);
    assert_int_equal(chmod(tmpdir, 0700), 0);   /* the directory above stops it */
    assert_int_equal(run(OWN_GROUP, extra, &u), 1);
    expect_one(CONFCHECK_ERROR, "stranger cannot reach it: it may not search");
    assert_int_equal(chmod(tmpdir, 0755), 0);

    snprintf(extra, sizeof extra, "ca_path = \"%s\";", path);   /* a file, not a directory */
    assert_int_equal(run(OWN_GROUP, extra, &u), 1);
    expect_one(CONFCHECK_ERROR, "is not a directory");
    snprintf(extra, sizeof extra, "ca_path = \"%s\";", tmpdir);
    assert_int_equal(run(OWN_GROUP, extra, &u), 0);
}

/* rotation.rotators that does not list this host: its admin_password_file is not looked
 * for here (the host never rotates); listed, it is. */
static void test_admin_password_file_is_checked_only_on_rotators(void **state) {
    struct confcheck_user u = stranger();
    char extra[PATH_MAX + 256], host[256] = "";
    assert_int_equal(gethostname(host, sizeof host - 1), 0);
    /* (the redis group is closed here, and the rotation group by the template) */
    snprintf(extra, sizeof extra, "}; rotation = { strategy = \"redis-acl\"; admin_username = \"r\"; "
             "admin_password_file = \"%s/missing-admin\"; rotators = [ \"not-%s\" ];", tmpdir, host);
    assert_int_equal(run(OWN_GROUP, extra, &u), 0);
    snprintf(extra, sizeof extra, "}; rotation = { strategy = \"redis-acl\"; admin_username = \"r\"; "
             "admin_password_file = \"%s/missing-admin\"; rotators = [ \"x\", \"%s\" ];", tmpdir, host);
    assert_int_equal(run(OWN_GROUP, extra, &u), 1);
    expect_one(CONFCHECK_ERROR, "missing-admin\" does not exist");
}

static void test_paths_the_sandbox_hides_are_warned_about(void **state) {
    struct confcheck_user u = stranger();
    u.uid = 0;
    static const char *const hidden[] = { "/tmp/rc", "/var/tmp/rc", "/home/rc", "/root/rc",
                                          "/run/user/1000/rc" };
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
        char agent[128];
        snprintf(agent, sizeof agent, OWN_GROUP " state_dir = \"%s\";", hidden[i]);
        assert_int_equal(run(agent, "", &u), 0);
        expect_one(CONFCHECK_WARNING, "agent.state_dir: \"");
        assert_non_null(strstr(found[0], "the shipped unit's sandbox hides"));
    }
    /* similar names are not under them, and defaults are not the operator's */
    assert_int_equal(run(OWN_GROUP " state_dir = \"/tmpfoo/rc\"; runtime_dir = \"/run/username\";", "", &u), 0);
    assert_int_equal(n_found, 0);
}

static void test_user_lookup(void **state) {
    struct confcheck_user u;
    char err[256];
    assert_int_equal(confcheck_user_lookup("root", &u, err, sizeof err), 0);
    assert_int_equal(u.uid, 0);
    assert_false(u.process);
    assert_int_equal(confcheck_user_lookup("rc-no-such-user-x", &u, err, sizeof err), -ENOENT);
    assert_string_equal(err, "user \"rc-no-such-user-x\": no such user");
    assert_int_equal(confcheck_user_self(&u, err, sizeof err), 0);
    assert_true(u.process);
    assert_int_equal(u.uid, geteuid());
}

static void test_self_keeps_the_first_error_for_a_reload(void **state) {
    char err[1024] = "";
    struct config *c = load("group = \"" NO_GROUP "\";", "ca_file = \"/nonexistent/ca.pem\";");
    assert_int_equal(confcheck_self(c, err, sizeof err), -EINVAL);
    assert_string_equal(err, "agent.conf:1: agent.group: group \"" NO_GROUP "\" does not exist; "
                             "create it (groupadd " NO_GROUP ") or name an existing group");
    config_free(c);
    c = load(OWN_GROUP, "");
    assert_int_equal(confcheck_self(c, err, sizeof err), 0);
    config_free(c);
}

static int setup(void **state) {
    const char *base = secure_getenv("REDIS_CREDS_TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_confcheck.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    return chmod(tmpdir, 0755);
}

static int teardown(void **state) {
    static const char *const files[] = { "secret.pem", "public.pem" };
    char path[PATH_MAX + 32];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    return rmdir(tmpdir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_group_that_does_not_exist_is_an_error),
        cmocka_unit_test(test_a_group_the_user_is_not_in_names_both_fixes),
        cmocka_unit_test(test_files_must_exist_and_be_readable_by_the_user),
        cmocka_unit_test(test_admin_password_file_is_checked_only_on_rotators),
        cmocka_unit_test(test_paths_the_sandbox_hides_are_warned_about),
        cmocka_unit_test(test_user_lookup),
        cmocka_unit_test(test_self_keeps_the_first_error_for_a_reload),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
