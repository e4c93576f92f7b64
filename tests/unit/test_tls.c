/* Unit tests for common/tls: the context's file errors, address literals, and
 * connections to a real redis-server with a TLS port and a CA made here by the openssl
 * command (redis_server.h): a verified connection, a name the certificate does not carry,
 * and an unknown CA, each told apart by its return code. Without /usr/bin/redis-server
 * or /usr/bin/openssl the server tests are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redis_server.h"
#include "resp.h"
#include "rnet.h"
#include "tls.h"

#define MS 1000ull

/* One server with a TLS port, its certificate signed by fx.ca */
static struct redis_fixture fx = { .prefix = "rc-test-tls", .n = 1, .spec = { { .tls = true } } };
static struct server *const srv = &fx.srv[0];
static const char *const ca = fx.ca;

REDIS_FIXTURE_GROUP(fx)

static void test_ip_literals(void **state) {
    (void)state;
    assert_true(tls_is_ip_literal("127.0.0.1"));
    assert_true(tls_is_ip_literal("::1"));
    assert_false(tls_is_ip_literal("localhost"));
    assert_false(tls_is_ip_literal("127.0.0.1:6379"));
    assert_false(tls_is_ip_literal(""));
    assert_false(tls_is_ip_literal(NULL));
}

static void test_ctx_names_the_missing_file(void **state) {
    struct tls_options o = { .ca_file = "/nonexistent/ca.pem" };
    struct tls_ctx *ctx = NULL;
    char err[256];

    (void)state;
    assert_int_equal(tls_ctx_new(&o, &ctx, err, sizeof err), -ENOENT);
    assert_null(ctx);
    assert_non_null(strstr(err, "ca_file /nonexistent/ca.pem"));
    o = (struct tls_options){ .key_file = "/nonexistent/key.pem" };
    assert_int_equal(tls_ctx_new(&o, &ctx, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "without cert_file"));
    assert_null(tls_ctx_free(NULL));
}

static int connect_with(const char *cafile, const char *name, char *err, size_t errlen) {
    struct tls_options o = { .ca_file = cafile };
    struct endpoint ep = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = srv->tls_port };
    struct tls_ctx *ctx = NULL;
    struct resp_conn *c = NULL;
    int rc;

    assert_int_equal(tls_ctx_new(&o, &ctx, err, errlen), 0);
    rc = tls_connect(ctx, &ep, name, 2000 * MS, &c, err, errlen);
    if (rc == 0) {
        static const char *ping[] = { "PING" };
        redisReply *r = NULL;
        assert_int_equal(resp_command(c, 1, ping, NULL, false, &r), 0);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        assert_string_equal(r->str, "PONG");
        freeReplyObject(r);
        resp_close(c);
    }
    tls_ctx_free(ctx);
    return rc;
}

static void test_verified_connection_by_ip_and_by_name(void **state) {
    char err[300];

    (void)state;
    NEED_REDIS(&fx);
    assert_int_equal(connect_with(ca, "127.0.0.1", err, sizeof err), 0);
    assert_int_equal(connect_with(ca, "localhost", err, sizeof err), 0);
}

static void test_wrong_name_is_a_certificate_error(void **state) {
    char err[300];

    (void)state;
    NEED_REDIS(&fx);
    assert_int_equal(connect_with(ca, "redis.example.org", err, sizeof err), -EKEYREJECTED);
    assert_non_null(strstr(err, "certificate verify failed"));
}

static void test_unknown_ca_is_a_certificate_error(void **state) {
    char err[300], other[200];

    (void)state;
    NEED_REDIS(&fx);
    /* the server's own certificate as the only trusted one: not a CA, so no chain */
    snprintf(other, sizeof other, "%s/server.crt", fx.dir);
    assert_int_equal(connect_with(other, "127.0.0.1", err, sizeof err), -EKEYREJECTED);
}

/* rnet reports the same as classes: RNET_CERT for a name the certificate does not carry,
 * RNET_OK (with a reply) for the right one. */
static int pong(void *ud, struct rnet_node *node, size_t cmd, redisReply *reply) {
    (void)cmd;
    (void)node;
    *(bool *)ud = reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
    freeReplyObject(reply);
    return RNET_STOP;
}

static void test_rnet_classes_certificate_failures(void **state) {
    static const struct rnet_cmd ping[] = { { .argc = 1, .argv = { "PING" } } };
    struct tls_options to = { .ca_file = ca };
    struct tls_ctx *ctx = NULL;
    bool ponged = false;
    struct rnet_opts o = { .timeout_usec = 2000 * MS, .on_reply = pong, .userdata = &ponged };
    struct rnet_node n[2] = { 0 };
    char err[256];

    (void)state;
    NEED_REDIS(&fx);
    assert_int_equal(tls_ctx_new(&to, &ctx, err, sizeof err), 0);
    o.tls = ctx;
    for (size_t i = 0; i < 2; i++) {
        n[i].ep.kind = ENDPOINT_TCP;
        snprintf(n[i].ep.host, sizeof n[i].ep.host, "127.0.0.1");
        n[i].ep.port = srv->tls_port;
        n[i].script = ping;
        n[i].nscript = 1;
    }
    n[1].verify_name = "redis.example.org";
    assert_int_equal(rnet_run(&o, n, 2), 0);
    assert_int_equal(n[0].cls, RNET_OK);
    assert_true(ponged);
    assert_int_equal(n[1].cls, RNET_CERT);
    assert_false(n[1].connected);
    assert_non_null(strstr(n[1].msg, "certificate verify failed"));
    tls_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_literals),
        cmocka_unit_test(test_ctx_names_the_missing_file),
        cmocka_unit_test(test_verified_connection_by_ip_and_by_name),
        cmocka_unit_test(test_wrong_name_is_a_certificate_error),
        cmocka_unit_test(test_unknown_ca_is_a_certificate_error),
        cmocka_unit_test(test_rnet_classes_certificate_failures),
    };
    return cmocka_run_group_tests(tests, redis_setup, redis_teardown);
}
