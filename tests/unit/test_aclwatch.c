/* Unit tests for agent/aclwatch: a credential's nodes as an aclops target (the admin's
 * password read from its file), and the revocation watch's reads of ACL LOG, against two
 * real redis-servers (tests/unit/redis_server.h). Skipped without /usr/bin/redis-server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aclwatch.h"
#include "redis_server.h"
#include "resp.h"

#define MS 1000ull
#define ADMIN_PW "watch-admin-pw"

static struct redis_fixture fx = { .prefix = "rc-test-aclwatch", .n = 2 };
static struct server *const srv = fx.srv;
static char pwfile[200];

static void command(uint16_t port, int argc, const char **argv) {
    struct endpoint ep = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = port };
    struct resp_conn *c = NULL;
    redisReply *r = NULL;
    char err[256];

    assert_int_equal(resp_connect(&ep, 2000 * MS, &c, err, sizeof err), 0);
    assert_int_equal(resp_command(c, argc, argv, NULL, false, &r), 0);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    resp_close(c);
}

static void users(void) {
    for (size_t i = 0; i < 2; i++) {
        const char *admin[] = { "ACL", "SETUSER", "rc-admin", "reset", "on", ">" ADMIN_PW, "+@all", "~*" };
        const char *app[] = { "ACL", "SETUSER", "app", "reset", "on", ">new-pw", "+@all", "~*" };
        command(srv[i].port, 8, admin);
        command(srv[i].port, 8, app);
    }
}

static int setup(void **st) {
    int fd;

    (void)st;
    if (redis_fixture_start(&fx) < 0)
        return -1;
    if (!fx.up)
        return 0;
    snprintf(pwfile, sizeof pwfile, "%s/admin-pw", fx.dir);
    fd = open(pwfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, ADMIN_PW "\n", sizeof ADMIN_PW) != (ssize_t)sizeof ADMIN_PW)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **st) {
    (void)st;
    if (pwfile[0])
        (void)unlink(pwfile);
    redis_fixture_stop(&fx);
    return 0;
}

static int per_test(void **st) {
    (void)st;
    if (fx.up)
        users();
    return 0;
}


/* The credential: both servers (and a dead port when dead), the admin from its file. */
struct cred_buf {
    char eps[3][32];
    char *list[3];
    struct config_credential cc;
};

static void cred_init(struct cred_buf *b, bool dead, const char *admin_file) {
    uint16_t ports[3] = { srv[0].port, srv[1].port, free_port() };
    size_t n = dead ? 3 : 2;

    memset(b, 0, sizeof *b);
    for (size_t i = 0; i < n; i++) {
        snprintf(b->eps[i], sizeof b->eps[i], "127.0.0.1:%u", (unsigned)ports[i]);
        b->list[i] = b->eps[i];
    }
    b->cc.redis = (struct config_redis){ .endpoints = b->list, .n_endpoints = n,
                                         .timeout_usec = 2000 * MS };
    b->cc.rotation.strategy = ROTATION_REDIS_ACL;
    b->cc.rotation.admin_username = (char *)"rc-admin";
    b->cc.rotation.admin_password_file = (char *)admin_file;
}

static void fail_auth(uint16_t port, int n) {
    struct endpoint ep = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = port };
    struct resp_conn *c = NULL;
    struct secret *old = secret_new_str("old-pw");
    char err[256];

    assert_int_equal(resp_connect(&ep, 2000 * MS, &c, err, sizeof err), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(resp_auth(c, "app", old, err, sizeof err), RESP_AUTH_REFUSED);
    resp_close(c);
    secret_free(old);
}

static void test_watch_finds_new_failures_per_node(void **st) {
    struct cred_buf b;
    struct aclwatch_target t;
    struct aclwatch w = { 0 };
    const char *watched[] = { "app" };
    char err[256], what[512], problem[256], want[64];

    (void)st;
    NEED_REDIS(&fx);
    cred_init(&b, false, pwfile);
    fail_auth(srv[0].port, 1);   /* before the baseline: not the removal's */
    assert_int_equal(aclwatch_target_open(&b.cc, NULL, NULL, &t, err, sizeof err), 0);
    assert_string_equal(t.t.login_user, "rc-admin");
    assert_int_equal(t.t.n, 2);
    assert_int_equal(aclwatch_read(&w, &t.t, watched, 1, what, sizeof what, problem, sizeof problem), 0);
    assert_string_equal(what, "");
    fail_auth(srv[1].port, 2);
    assert_int_equal(aclwatch_read(&w, &t.t, watched, 1, what, sizeof what, problem, sizeof problem), 2);
    snprintf(want, sizeof want, "127.0.0.1:%u: 127.0.0.1:", (unsigned)srv[1].port);
    assert_non_null(strstr(what, want));
    assert_non_null(strstr(what, " x2 (app)"));
    assert_null(strstr(what, b.eps[0]));
    assert_string_equal(problem, "");
    /* nothing new since */
    assert_int_equal(aclwatch_read(&w, &t.t, watched, 1, what, sizeof what, problem, sizeof problem), 0);
    /* forgotten: the next read is a baseline again */
    fail_auth(srv[0].port, 1);
    aclwatch_clear(&w);
    assert_int_equal(aclwatch_read(&w, &t.t, watched, 1, what, sizeof what, problem, sizeof problem), 0);
    aclwatch_clear(&w);
    aclwatch_target_close(&t);
    aclwatch_target_close(&t);   /* twice: safe */
}

static void test_dead_node_is_named_and_the_others_still_read(void **st) {
    struct cred_buf b;
    struct aclwatch_target t;
    struct aclwatch w = { 0 };
    const char *watched[] = { "app" };
    char err[256], what[512], problem[256];

    (void)st;
    NEED_REDIS(&fx);
    cred_init(&b, true, pwfile);
    assert_int_equal(aclwatch_target_open(&b.cc, NULL, NULL, &t, err, sizeof err), 0);
    assert_int_equal(aclwatch_read(&w, &t.t, watched, 1, what, sizeof what, problem, sizeof problem), 0);
    assert_non_null(strstr(problem, b.eps[2]));
    fail_auth(srv[0].port, 1);
    assert_int_equal(aclwatch_read(&w, &t.t, watched, 1, what, sizeof what, problem, sizeof problem), 1);
    aclwatch_clear(&w);
    aclwatch_target_close(&t);
}

static void test_no_acl_log_permission_anywhere_is_an_error(void **st) {
    struct cred_buf b;
    struct aclwatch_target t;
    struct aclwatch w = { 0 };
    const char *watched[] = { "app" };
    const char *deny[] = { "ACL", "SETUSER", "rc-admin", "-acl|log" };
    char err[256], what[512], problem[512];

    (void)st;
    NEED_REDIS(&fx);
    command(srv[0].port, 4, deny);
    command(srv[1].port, 4, deny);
    cred_init(&b, false, pwfile);
    assert_int_equal(aclwatch_target_open(&b.cc, NULL, NULL, &t, err, sizeof err), 0);
    assert_int_equal(aclwatch_read(&w, &t.t, watched, 1, what, sizeof what, problem, sizeof problem),
                     -EACCES);
    assert_non_null(strstr(problem, "no acl|log permission"));
    aclwatch_clear(&w);
    aclwatch_target_close(&t);
}

static void test_missing_admin_file_names_it(void **st) {
    struct cred_buf b;
    struct aclwatch_target t;
    char err[256];

    (void)st;
    cred_init(&b, false, "/nonexistent/admin-pw");
    assert_true(aclwatch_target_open(&b.cc, NULL, NULL, &t, err, sizeof err) < 0);
    assert_non_null(strstr(err, "/nonexistent/admin-pw"));
    aclwatch_target_close(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_admin_file_names_it),
        cmocka_unit_test_setup(test_watch_finds_new_failures_per_node, per_test),
        cmocka_unit_test_setup(test_dead_node_is_named_and_the_others_still_read, per_test),
        cmocka_unit_test_setup(test_no_acl_log_permission_anywhere_is_an_error, per_test),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
