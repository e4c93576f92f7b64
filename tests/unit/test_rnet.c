/* Unit tests for common/rnet: scripts of commands on many nodes at once, against real
 * redis-servers started by this program (tests/unit/redis_server.h), plus two tiny fakes
 * for what a real server never does: a listener that never answers, and one that
 * answers with bytes that are not RESP. When /usr/bin/redis-server is missing, the tests
 * that need it are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "redis_server.h"
#include "resp.h"
#include "rnet.h"
#include "tls.h"

#define MS 1000ull

/* srv_open: no password, a unix socket; srv_pass: requirepass */
static struct redis_fixture fx = {
    .prefix = "rc-test-rnet", .n = 2,
    .spec = { { .unixsock = true }, { .requirepass = "rnet-secret" } },
};
static struct server *const srv_open = &fx.srv[0];
static struct server *const srv_pass = &fx.srv[1];

REDIS_FIXTURE_GROUP(fx)

static void tcp_node(struct rnet_node *n, uint16_t port) {
    memset(n, 0, sizeof *n);
    n->ep.kind = ENDPOINT_TCP;
    snprintf(n->ep.host, sizeof n->ep.host, "127.0.0.1");
    n->ep.port = port;
}

/* What the callback saw, per node: the commands' indexes and the replies' text. */
struct seen {
    size_t cmds[8];
    char text[8][64];
    size_t n;
};

struct script_ud {
    int (*decide)(size_t cmd, const redisReply *r);   /* NULL: the next command */
    struct seen seen[16];
    struct rnet_node *base;
};

static int record_reply(void *ud, struct rnet_node *node, size_t cmd, redisReply *reply) {
    struct script_ud *u = ud;
    struct seen *s = &u->seen[node - u->base];
    int next = u->decide ? u->decide(cmd, reply) : (int)cmd + 1;

    if (s->n < 8) {
        s->cmds[s->n] = cmd;
        snprintf(s->text[s->n], sizeof s->text[s->n], "%.*s",
                 reply->str ? (int)reply->len : 0, reply->str ? reply->str : "");
        s->n++;
    }
    resp_reply_wipe_free(reply);
    return next;
}

static struct rnet_opts opts(struct script_ud *u, struct rnet_node *base, uint64_t timeout) {
    u->base = base;
    return (struct rnet_opts){ .timeout_usec = timeout, .on_reply = record_reply, .userdata = u };
}

static const struct rnet_cmd auth_ping[] = {
    { .label = "AUTH", .argc = 2, .argv = { "AUTH", "rnet-secret" } },
    { .label = "PING after AUTH", .argc = 1, .argv = { "PING" }, .pipelined = true },
};

/* ------------------------------------------------------------------------------------
 * Tests
 */

static void test_class_every_value_has_text(void **state) {
    (void)state;
    for (int c = RNET_OK; c <= RNET_INTERNAL; c++)
        assert_string_not_equal(rnet_class_to_string((enum rnet_class)c), "?");
    assert_string_equal(rnet_class_to_string((enum rnet_class)99), "?");
}

static void test_run_rejects_missing_callback(void **state) {
    struct rnet_opts o = { .timeout_usec = MS };
    struct rnet_node n;

    (void)state;
    tcp_node(&n, 1);
    assert_int_equal(rnet_run(NULL, &n, 1), -EINVAL);
    assert_int_equal(rnet_run(&o, &n, 1), -EINVAL);
}

static void test_pipelined_auth_and_ping_reply_in_order(void **state) {
    struct script_ud u = { 0 };
    struct rnet_node n;
    struct rnet_opts o = opts(&u, &n, 2000 * MS);

    (void)state;
    NEED_REDIS(&fx);
    tcp_node(&n, srv_pass->port);
    n.script = auth_ping;
    n.nscript = 2;
    assert_int_equal(rnet_run(&o, &n, 1), 0);
    assert_int_equal(n.cls, RNET_OK);
    assert_true(n.connected && n.answered);
    assert_int_equal(u.seen[0].n, 2);
    assert_int_equal(u.seen[0].cmds[0], 0);
    assert_string_equal(u.seen[0].text[0], "OK");
    assert_int_equal(u.seen[0].cmds[1], 1);
    assert_string_equal(u.seen[0].text[1], "PONG");
    assert_string_equal(n.msg, "");
}

/* Twelve nodes (the same servers several times), one refusing connections: each ends
 * with its own class, the dead one does not spoil the others. */
static void test_many_nodes_each_get_their_own_result(void **state) {
    struct script_ud u = { 0 };
    struct rnet_node n[12];
    struct rnet_opts o = opts(&u, n, 2000 * MS);
    uint16_t dead = free_port();

    (void)state;
    NEED_REDIS(&fx);
    for (size_t i = 0; i < 12; i++) {
        tcp_node(&n[i], i == 5 ? dead : srv_pass->port);
        n[i].script = auth_ping;
        n[i].nscript = 2;
    }
    assert_int_equal(rnet_run(&o, n, 12), 0);
    for (size_t i = 0; i < 12; i++) {
        if (i == 5)
            continue;
        assert_int_equal(n[i].cls, RNET_OK);
        assert_int_equal(u.seen[i].n, 2);
    }
    assert_int_equal(n[5].cls, RNET_UNREACHABLE);
    assert_false(n[5].connected);
    assert_int_equal(u.seen[5].n, 0);
    assert_non_null(strstr(n[5].msg, "connect 127.0.0.1:"));
    assert_non_null(strstr(n[5].msg, "Connection refused"));
}

/* A listener that never accepts: the kernel completes the TCP handshake, nobody answers.
 * The node times out on its own, reported in the words of the step it was in, while the
 * healthy node beside it finishes without waiting for it. */
static void test_silent_node_times_out_alone(void **state) {
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct script_ud u = { 0 };
    struct rnet_node n[2];
    struct rnet_opts o = opts(&u, n, 300 * MS);

    (void)state;
    NEED_REDIS(&fx);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    tcp_node(&n[0], ntohs(sa.sin_port));
    tcp_node(&n[1], srv_pass->port);
    n[0].script = n[1].script = auth_ping;
    n[0].nscript = n[1].nscript = 2;
    assert_int_equal(rnet_run(&o, n, 2), 0);
    close(lfd);
    assert_int_equal(n[0].cls, RNET_UNREACHABLE);
    assert_true(n[0].connected);
    assert_false(n[0].answered);
    assert_int_equal(n[0].step, 0);
    assert_string_equal(n[0].msg, "AUTH: read: timed out after 300 ms");
    assert_true(n[0].usec >= 300 * MS);
    assert_int_equal(n[1].cls, RNET_OK);
    assert_true(n[1].usec < 300 * MS);
}

/* on_reply jumps over a pipelined command: its reply is read and dropped unseen, and the
 * script goes on where the callback said. */
static int jump_over_one(size_t cmd, const redisReply *r) {
    (void)r;
    return cmd == 0 ? 2 : cmd == 2 ? RNET_STOP : (int)cmd + 1;
}

static void test_jump_drops_replies_of_skipped_commands(void **state) {
    static const struct rnet_cmd script[] = {
        { .argc = 2, .argv = { "ECHO", "first" } },
        { .argc = 2, .argv = { "ECHO", "skipped" }, .pipelined = true },
        { .argc = 2, .argv = { "ECHO", "third" } },
        { .argc = 2, .argv = { "ECHO", "never" } },
    };
    struct script_ud u = { .decide = jump_over_one };
    struct rnet_node n;
    struct rnet_opts o = opts(&u, &n, 2000 * MS);

    (void)state;
    NEED_REDIS(&fx);
    tcp_node(&n, srv_open->port);
    n.script = script;
    n.nscript = 4;
    assert_int_equal(rnet_run(&o, &n, 1), 0);
    assert_int_equal(n.cls, RNET_OK);
    assert_int_equal(u.seen[0].n, 2);
    assert_string_equal(u.seen[0].text[0], "first");
    assert_int_equal(u.seen[0].cmds[1], 2);
    assert_string_equal(u.seen[0].text[1], "third");
}

/* `first` starts the script part-way; a unix socket node is asked like a TCP one. */
static void test_first_command_and_unix_socket(void **state) {
    static const struct rnet_cmd script[] = {
        { .argc = 2, .argv = { "ECHO", "not-sent" } },
        { .argc = 2, .argv = { "ECHO", "sent" } },
    };
    struct script_ud u = { 0 };
    struct rnet_node n = { .ep = { .kind = ENDPOINT_UNIX } };
    struct rnet_opts o = opts(&u, &n, 2000 * MS);

    (void)state;
    NEED_REDIS(&fx);
    snprintf(n.ep.path, sizeof n.ep.path, "%s", srv_open->sock);
    n.script = script;
    n.nscript = 2;
    n.first = 1;
    assert_int_equal(rnet_run(&o, &n, 1), 0);
    assert_int_equal(n.cls, RNET_OK);
    assert_int_equal(u.seen[0].n, 1);
    assert_int_equal(u.seen[0].cmds[0], 1);
    assert_string_equal(u.seen[0].text[0], "sent");
}

/* A node without a script is not contacted and its fields are left alone. */
static void test_node_without_script_is_left_alone(void **state) {
    struct script_ud u = { 0 };
    struct rnet_node n[2];
    struct rnet_opts o = opts(&u, n, 2000 * MS);

    (void)state;
    NEED_REDIS(&fx);
    tcp_node(&n[0], srv_pass->port);
    tcp_node(&n[1], srv_pass->port);
    n[0].cls = RNET_INTERNAL;
    snprintf(n[0].msg, sizeof n[0].msg, "untouched");
    n[1].script = auth_ping;
    n[1].nscript = 2;
    assert_int_equal(rnet_run(&o, n, 2), 0);
    assert_int_equal(n[0].cls, RNET_INTERNAL);
    assert_string_equal(n[0].msg, "untouched");
    assert_int_equal(u.seen[0].n, 0);
    assert_int_equal(n[1].cls, RNET_OK);
}

/* A server that answers with bytes that are not RESP. */
static void *garbage_server(void *arg) {
    int lfd = *(int *)arg, fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    char buf[256];

    if (fd >= 0) {
        (void)recv(fd, buf, sizeof buf, 0);
        (void)send(fd, "hello\r\n", 7, MSG_NOSIGNAL);
        (void)recv(fd, buf, sizeof buf, 0);   /* until the client closes */
        close(fd);
    }
    return NULL;
}

struct garbage {
    int lfd;
    pthread_t th;
};

static uint16_t garbage_start(struct garbage *g) {
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;

    g->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(g->lfd >= 0);
    assert_int_equal(bind(g->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(g->lfd, 8), 0);
    assert_int_equal(getsockname(g->lfd, (struct sockaddr *)&sa, &len), 0);
    assert_int_equal(pthread_create(&g->th, NULL, garbage_server, &g->lfd), 0);
    return ntohs(sa.sin_port);
}

static void garbage_stop(struct garbage *g) {
    pthread_join(g->th, NULL);
    close(g->lfd);
}

static void test_non_resp_reply_is_a_protocol_error(void **state) {
    struct script_ud u = { 0 };
    struct rnet_node n;
    struct rnet_opts o = opts(&u, &n, 2000 * MS);
    struct garbage g;

    (void)state;
    tcp_node(&n, garbage_start(&g));
    n.script = auth_ping;
    n.nscript = 2;
    assert_int_equal(rnet_run(&o, &n, 1), 0);
    garbage_stop(&g);
    assert_int_equal(n.cls, RNET_PROTOCOL);
    assert_int_equal(n.step, 0);
    assert_int_equal(u.seen[0].n, 0);
    assert_non_null(strstr(n.msg, "AUTH: read: "));
    assert_null(strstr(n.msg, "rnet-secret"));
}

/* A handshake answered with bytes that are not TLS: a TLS failure, by class, not a
 * refused password nor an unreachable node. */
static void test_non_tls_answer_to_handshake_is_a_tls_error(void **state) {
    struct tls_options to = { .insecure_skip_verify = true };
    struct tls_ctx *ctx = NULL;
    struct script_ud u = { 0 };
    struct rnet_node n;
    struct rnet_opts o = opts(&u, &n, 2000 * MS);
    struct garbage g;
    char err[256];

    (void)state;
    assert_int_equal(tls_ctx_new(&to, &ctx, err, sizeof err), 0);
    o.tls = ctx;
    tcp_node(&n, garbage_start(&g));
    n.script = auth_ping;
    n.nscript = 2;
    assert_int_equal(rnet_run(&o, &n, 1), 0);
    garbage_stop(&g);
    assert_int_equal(n.cls, RNET_TLS);
    assert_false(n.connected);
    assert_non_null(strstr(n.msg, "connect 127.0.0.1:"));
    tls_ctx_free(ctx);
}

/* TLS to a Redis plaintext port: Redis waits for the rest of a "command", so the
 * handshake times out, within the node's own timeout, and says what it likely means. */
static void test_tls_to_plaintext_port_times_out_as_unreachable(void **state) {
    struct tls_options to = { .insecure_skip_verify = true };
    struct tls_ctx *ctx = NULL;
    struct script_ud u = { 0 };
    struct rnet_node n;
    struct rnet_opts o = opts(&u, &n, 300 * MS);
    char err[256];

    (void)state;
    NEED_REDIS(&fx);
    assert_int_equal(tls_ctx_new(&to, &ctx, err, sizeof err), 0);
    o.tls = ctx;
    tcp_node(&n, srv_pass->port);
    n.script = auth_ping;
    n.nscript = 2;
    assert_int_equal(rnet_run(&o, &n, 1), 0);
    assert_int_equal(n.cls, RNET_UNREACHABLE);
    assert_false(n.connected);
    assert_non_null(strstr(n.msg, "TLS handshake timed out after 300 ms"));
    tls_ctx_free(ctx);
}

/* The callback may stop after the first reply of a pipelined batch; the node is done. */
static int stop_at_once(size_t cmd, const redisReply *r) {
    (void)cmd;
    (void)r;
    return RNET_STOP;
}

static void test_stop_ends_the_node_after_one_reply(void **state) {
    static const struct rnet_cmd wrong[] = {
        { .label = "AUTH", .argc = 2, .argv = { "AUTH", "wrong-one" } },
        { .label = "PING after AUTH", .argc = 1, .argv = { "PING" }, .pipelined = true },
    };
    struct script_ud u = { .decide = stop_at_once };
    struct rnet_node n;
    struct rnet_opts o = opts(&u, &n, 2000 * MS);

    (void)state;
    NEED_REDIS(&fx);
    tcp_node(&n, srv_pass->port);
    n.script = wrong;
    n.nscript = 2;
    assert_int_equal(rnet_run(&o, &n, 1), 0);
    assert_int_equal(n.cls, RNET_OK);
    assert_int_equal(n.step, 0);
    assert_int_equal(u.seen[0].n, 1);
    assert_non_null(strstr(u.seen[0].text[0], "WRONGPASS"));
}

/* A reply over the default cap (4 MiB) is a protocol error with over_cap; a run whose
 * max_reply_bytes is larger reads it. */
static void test_reply_cap_is_per_run(void **state) {
    static const struct rnet_cmd script[] = {
        { .label = "SET", .argc = 4, .argv = { "SET", "big", "x", "" } },
        { .label = "GET", .argc = 2, .argv = { "GET", "big" } },
    };
    const size_t big = 5u * 1024 * 1024;
    struct rnet_cmd s[2] = { script[0], script[1] };
    char *value = malloc(big);
    struct script_ud u = { 0 };
    struct rnet_node n;
    struct rnet_opts o = opts(&u, &n, 5000 * MS);

    (void)state;
    NEED_REDIS(&fx);
    assert_non_null(value);
    memset(value, 'v', big);
    s[0].argc = 3;
    s[0].argv[2] = value;
    s[0].argvlen[0] = 3;
    s[0].argvlen[1] = 3;
    s[0].argvlen[2] = big;
    tcp_node(&n, srv_open->port);
    n.script = s;
    n.nscript = 2;
    assert_int_equal(rnet_run(&o, &n, 1), 0);
    assert_int_equal(n.cls, RNET_PROTOCOL);
    assert_true(n.over_cap);
    assert_int_equal(n.step, 1);
    assert_non_null(strstr(n.msg, "GET: read: reply exceeds the limit of 4194304 bytes"));
    memset(&u, 0, sizeof u);
    o = opts(&u, &n, 5000 * MS);
    o.max_reply_bytes = 8u * 1024 * 1024;
    n.first = 1;
    assert_int_equal(rnet_run(&o, &n, 1), 0);
    assert_int_equal(n.cls, RNET_OK);
    assert_false(n.over_cap);
    assert_int_equal(u.seen[0].n, 1);
    free(value);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_every_value_has_text),
        cmocka_unit_test(test_run_rejects_missing_callback),
        cmocka_unit_test(test_pipelined_auth_and_ping_reply_in_order),
        cmocka_unit_test(test_many_nodes_each_get_their_own_result),
        cmocka_unit_test(test_silent_node_times_out_alone),
        cmocka_unit_test(test_jump_drops_replies_of_skipped_commands),
        cmocka_unit_test(test_first_command_and_unix_socket),
        cmocka_unit_test(test_node_without_script_is_left_alone),
        cmocka_unit_test(test_non_resp_reply_is_a_protocol_error),
        cmocka_unit_test(test_non_tls_answer_to_handshake_is_a_tls_error),
        cmocka_unit_test(test_tls_to_plaintext_port_times_out_as_unreachable),
        cmocka_unit_test(test_stop_ends_the_node_after_one_reply),
        cmocka_unit_test(test_reply_cap_is_per_run),
    };
    return cmocka_run_group_tests(tests, redis_setup, redis_teardown);
}
