/* Unit tests for common/aclops: the pure parsers and diffs on replies written here, and
 * every network call against two real redis-servers started by this program
 * (tests/unit/redis_server.h). When /usr/bin/redis-server is missing, the tests that need
 * it are skipped.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "aclops.h"
#include "redis_server.h"
#include "resp.h"

#define MS 1000ull
#define TIMEOUT (3000 * MS)
#define ADMIN_PW "admin-secret"

static struct redis_fixture fx = { .prefix = "rc-test-aclops", .n = 2 };
static struct server *const srv = fx.srv;

/* ------------------------------------------------------------------------------------
 * Helpers
 */

/* A reply from RESP text (the pure tests' input). */
static redisReply *parse(const char *text) {
    struct resp_reader *rd = resp_reader_new(0, 0);
    redisReply *r = NULL;

    assert_non_null(rd);
    assert_int_equal(resp_reader_feed(rd, text, strlen(text)), 0);
    assert_int_equal(resp_reader_get(rd, &r), 1);
    resp_reader_free(rd);
    return r;
}

static struct resp_conn *connect_to(uint16_t port) {
    struct endpoint ep = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = port };
    struct resp_conn *c = NULL;
    char err[256];

    assert_int_equal(resp_connect(&ep, TIMEOUT, &c, err, sizeof err), 0);
    return c;
}

/* Runs a command on a fresh connection as the default user (no password); returns the
 * reply's text or integer as text. */
static void cmdv(uint16_t port, char *out, size_t size, int argc, const char **argv) {
    struct resp_conn *c = connect_to(port);
    redisReply *r = NULL;

    assert_int_equal(resp_command(c, argc, argv, NULL, false, &r), 0);
    if (r->type == REDIS_REPLY_INTEGER)
        snprintf(out, size, "%lld", r->integer);
    else
        snprintf(out, size, "%.*s", r->str ? (int)r->len : 0, r->str ? r->str : "");
    freeReplyObject(r);
    resp_close(c);
}

#define CMD(port, ...)                                                         \
    do {                                                                       \
        const char *argv_[] = { __VA_ARGS__ };                                 \
        char out_[512];                                                        \
        cmdv(port, out_, sizeof out_, (int)(sizeof argv_ / sizeof argv_[0]), argv_); \
        assert_string_equal(out_, "OK");                                       \
    } while (0)

/* Each test starts from the same users on both servers. */
static void reset_users(void) {
    for (size_t i = 0; i < 2; i++) {
        CMD(srv[i].port, "ACL", "SETUSER", "admin", "reset", "on", ">" ADMIN_PW, "~*", "&*", "+@all");
        CMD(srv[i].port, "ACL", "SETUSER", "app_a", "reset", "on", ">pw-a", "~cache:*", "+@read", "+@write");
        CMD(srv[i].port, "ACL", "SETUSER", "app_b", "reset", "off", "~cache:*", "+@read", "+@write");
        CMD(srv[i].port, "ACL", "SETUSER", "weak", "reset", "on", ">weak-pw", "+ping");
    }
}

REDIS_FIXTURE_GROUP(fx)

/* Each test starts from the same users, and no connection of an earlier one. */
static int per_test(void **state) {
    (void)state;
    if (!fx.up)
        return 0;
    reset_users();
    for (size_t i = 0; i < 2; i++) {
        const char *kill[] = { "CLIENT", "KILL", "USER", "app_a" };
        char out[64];
        cmdv(srv[i].port, out, sizeof out, 4, kill);
    }
    return 0;
}


/* Both servers as the target, logged in as `user` with `pw` (NULL: admin). */
struct target_buf {
    struct rnet_node nodes[3];
    struct secret *pw;
    struct aclops_target t;
};

static void target_init(struct target_buf *b, size_t n, const char *user, const char *pw) {
    memset(b, 0, sizeof *b);
    for (size_t i = 0; i < n; i++) {
        b->nodes[i].ep.kind = ENDPOINT_TCP;
        snprintf(b->nodes[i].ep.host, sizeof b->nodes[i].ep.host, "127.0.0.1");
        b->nodes[i].ep.port = i < 2 ? srv[i].port : free_port();
    }
    b->pw = secret_new_str(pw ? pw : ADMIN_PW);
    b->t = (struct aclops_target){ .nodes = b->nodes, .n = n, .timeout_usec = TIMEOUT,
                                   .login_user = user ? user : "admin", .login_password = b->pw };
}

static void target_free(struct target_buf *b) {
    b->pw = secret_free(b->pw);
}

/* n connections logged in as user. */
static void open_as(struct resp_conn **cs, size_t n, uint16_t port, const char *user,
                    const char *pw) {
    struct secret *s = secret_new_str(pw);
    char detail[128];

    for (size_t i = 0; i < n; i++) {
        cs[i] = connect_to(port);
        assert_int_equal(resp_auth(cs[i], user, s, detail, sizeof detail), RESP_AUTH_ACCEPTED);
    }
    secret_free(s);
}

static void close_all(struct resp_conn **cs, size_t n) {
    for (size_t i = 0; i < n; i++)
        cs[i] = resp_close(cs[i]);
}

/* This connection's addr= as the server sees it. */
static void conn_addr(struct resp_conn *c, char *buf, size_t size) {
    static const char *argv[] = { "CLIENT", "INFO" };
    redisReply *r = NULL;
    const char *a, *e;

    assert_int_equal(resp_command(c, 2, argv, NULL, false, &r), 0);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    a = strstr(r->str, "addr=");
    assert_non_null(a);
    a += 5;
    e = strchr(a, ' ');
    snprintf(buf, size, "%.*s", (int)(e - a), a);
    freeReplyObject(r);
}

/* ------------------------------------------------------------------------------------
 * ACL GETUSER diff (pure)
 */

#define USER_RESP(flags, cmds, keys, chans, sels)                                      \
    "*12\r\n$5\r\nflags\r\n" flags "$9\r\npasswords\r\n*0\r\n$8\r\ncommands\r\n" cmds \
    "$4\r\nkeys\r\n" keys "$8\r\nchannels\r\n" chans "$9\r\nselectors\r\n" sels

static void test_user_diff_same_rules_but_on_off_and_passwords(void **state) {
    redisReply *a = parse(USER_RESP("*1\r\n$2\r\non\r\n", "$11\r\n+@all -keys\r\n",
                                    "$2\r\n~*\r\n", "$0\r\n\r\n", "*0\r\n"));
    redisReply *b = parse("*12\r\n$5\r\nflags\r\n*2\r\n$3\r\noff\r\n$6\r\nnopass\r\n"
                          "$9\r\npasswords\r\n*1\r\n$4\r\nabcd\r\n$8\r\ncommands\r\n"
                          "$11\r\n+@all -keys\r\n$4\r\nkeys\r\n$2\r\n~*\r\n$8\r\nchannels\r\n"
                          "$0\r\n\r\n$9\r\nselectors\r\n*0\r\n");
    char diff[256] = "";

    (void)state;
    assert_int_equal(aclops_user_diff("n1", "app_a", a, "app_b", b, diff, sizeof diff), 0);
    assert_string_equal(diff, "");
    freeReplyObject(a);
    freeReplyObject(b);
}

static void test_user_diff_names_what_each_lacks(void **state) {
    redisReply *a = parse(USER_RESP("*2\r\n$2\r\non\r\n$16\r\nsanitize-payload\r\n",
                                    "$20\r\n-@all +@read +@write\r\n", "$8\r\n~cache:*\r\n",
                                    "$7\r\n&chan:*\r\n", "*0\r\n"));
    redisReply *b = parse(USER_RESP("*1\r\n$3\r\noff\r\n", "$17\r\n-@all +@read +get\r\n",
                                    "$2\r\n~*\r\n", "$7\r\n&chan:*\r\n", "*0\r\n"));
    char diff[512] = "";

    (void)state;
    assert_int_equal(aclops_user_diff("127.0.0.1:7001", "app_a", a, "app_b", b, diff, sizeof diff), 4);
    assert_string_equal(diff, "127.0.0.1:7001: app_b lacks flag sanitize-payload; app_b lacks "
                              "+@write; app_a lacks +get; keys ~cache:* vs ~*");
    freeReplyObject(a);
    freeReplyObject(b);
}

static void test_user_diff_commands_order_matters(void **state) {
    redisReply *a = parse(USER_RESP("*0\r\n", "$10\r\n+@all -get\r\n", "$0\r\n\r\n", "$0\r\n\r\n", "*0\r\n"));
    redisReply *b = parse(USER_RESP("*0\r\n", "$10\r\n-get +@all\r\n", "$0\r\n\r\n", "$0\r\n\r\n", "*0\r\n"));
    char diff[256] = "";

    (void)state;
    assert_int_equal(aclops_user_diff(NULL, "a", a, "b", b, diff, sizeof diff), 1);
    assert_string_equal(diff, "commands in another order: +@all -get vs -get +@all");
    freeReplyObject(a);
    freeReplyObject(b);
}

static void test_user_diff_selectors_and_missing_user(void **state) {
    redisReply *a = parse(USER_RESP("*0\r\n", "$5\r\n+@all\r\n", "$2\r\n~*\r\n", "$0\r\n\r\n",
                                    "*1\r\n*6\r\n$8\r\ncommands\r\n$10\r\n-@all +get\r\n"
                                    "$4\r\nkeys\r\n$5\r\n~foo*\r\n$8\r\nchannels\r\n$0\r\n\r\n"));
    redisReply *b = parse(USER_RESP("*0\r\n", "$5\r\n+@all\r\n", "$2\r\n~*\r\n", "$0\r\n\r\n",
                                    "*1\r\n*6\r\n$8\r\ncommands\r\n$10\r\n-@all +get\r\n"
                                    "$4\r\nkeys\r\n$5\r\n~bar*\r\n$8\r\nchannels\r\n$0\r\n\r\n"));
    redisReply *none = parse("*0\r\n"), *nil = parse("$-1\r\n");
    redisReply *c = parse(USER_RESP("*0\r\n", "$5\r\n+@all\r\n", "$2\r\n~*\r\n", "$0\r\n\r\n", "*0\r\n"));
    char diff[256] = "";

    (void)state;
    assert_int_equal(aclops_user_diff(NULL, "a", a, "b", b, diff, sizeof diff), 1);
    assert_string_equal(diff, "selector 1: keys ~foo* vs ~bar*");
    diff[0] = '\0';
    assert_int_equal(aclops_user_diff(NULL, "a", a, "c", c, diff, sizeof diff), 1);
    assert_string_equal(diff, "a has 1 selector, c 0");
    diff[0] = '\0';
    assert_int_equal(aclops_user_diff("n", "a", a, "b", nil, diff, sizeof diff), 1);
    assert_string_equal(diff, "n: b does not exist");
    assert_int_equal(aclops_user_diff("n", "a", a, "b", none, diff, sizeof diff), -EPROTO);
    freeReplyObject(a);
    freeReplyObject(b);
    freeReplyObject(c);
    freeReplyObject(none);
    freeReplyObject(nil);
}

static void test_user_diff_text_is_cut_with_dots(void **state) {
    redisReply *a = parse(USER_RESP("*0\r\n", "$29\r\n+get +set +del +incr +decr +x\r\n",
                                    "$0\r\n\r\n", "$0\r\n\r\n", "*0\r\n"));
    redisReply *b = parse(USER_RESP("*0\r\n", "$5\r\n-@all\r\n", "$0\r\n\r\n", "$0\r\n\r\n", "*0\r\n"));
    char diff[40] = "";

    (void)state;
    assert_int_equal(aclops_user_diff("node", "a", a, "b", b, diff, sizeof diff), 7);
    assert_int_equal(strlen(diff), sizeof diff - 1);
    assert_string_equal(diff + sizeof diff - 4, "...");
    freeReplyObject(a);
    freeReplyObject(b);
}

/* ------------------------------------------------------------------------------------
 * CLIENT LIST parsing (pure)
 */

static const char client_list[] =
    "id=3 addr=127.0.0.1:40001 laddr=127.0.0.1:6379 fd=8 name= cmd=get user=app_a redir=-1 resp=2\n"
    "id=4 addr=127.0.0.1:40002 laddr=127.0.0.1:6379 fd=9 name=user=app_a cmd=get user=app_b\n"
    "id=5 addr=[::1]:40003 laddr=[::1]:6379 fd=10 name=x cmd=client|list user=app_a\n"
    "id=6 addr=127.0.0.1:40004 laddr=127.0.0.1:6379 fd=11 name= cmd=auth user=app_aa\n"
    "id=7 addr=127.0.0.1:40005 laddr=127.0.0.1:6379 fd=12 name= cmd=get user=app_a\n";

static void test_client_list_counts_user_and_keeps_first_addresses(void **state) {
    char addrs[2][ACLOPS_ADDR_MAX];
    long long count = -1;
    size_t naddrs = 9;

    (void)state;
    assert_int_equal(aclops_client_list_parse(client_list, strlen(client_list), "app_a", -1,
                                              addrs, 2, &count, &naddrs), 0);
    assert_int_equal(count, 3);
    assert_int_equal(naddrs, 2);
    assert_string_equal(addrs[0], "127.0.0.1:40001");
    assert_string_equal(addrs[1], "[::1]:40003");
    /* our own connection (id 5) is left out */
    assert_int_equal(aclops_client_list_parse(client_list, strlen(client_list), "app_a", 5,
                                              addrs, 2, &count, &naddrs), 0);
    assert_int_equal(count, 2);
    assert_string_equal(addrs[1], "127.0.0.1:40005");
    assert_int_equal(aclops_client_list_parse(client_list, strlen(client_list), "nobody", -1,
                                              addrs, 2, &count, &naddrs), 0);
    assert_int_equal(count, 0);
    assert_int_equal(naddrs, 0);
    /* no addresses kept at all: only the count */
    assert_int_equal(aclops_client_list_parse(client_list, strlen(client_list), "app_b", -1,
                                              NULL, 0, &count, &naddrs), 0);
    assert_int_equal(count, 1);
}

static void test_client_list_line_without_user_is_a_protocol_error(void **state) {
    static const char bad[] = "id=3 addr=127.0.0.1:1 user=a\nid=4 addr=127.0.0.1:2 name=x\n";
    long long count = 7;
    size_t naddrs = 7;

    (void)state;
    assert_int_equal(aclops_client_list_parse(bad, strlen(bad), "a", -1, NULL, 0, &count,
                                              &naddrs), -EPROTO);
    assert_int_equal(count, 7);   /* untouched on failure */
    assert_int_equal(aclops_client_list_parse("", 0, "a", -1, NULL, 0, &count, &naddrs), 0);
    assert_int_equal(count, 0);
}

/* ------------------------------------------------------------------------------------
 * ACL LOG parsing and diff (pure)
 */

static struct aclops_log_entry entry(const char *reason, const char *user, const char *addr,
                                     long long count, double age, long long id) {
    struct aclops_log_entry e = { .count = count, .age_seconds = age, .entry_id = id };

    snprintf(e.reason, sizeof e.reason, "%s", reason);
    snprintf(e.context, sizeof e.context, "toplevel");
    snprintf(e.username, sizeof e.username, "%s", user);
    snprintf(e.addr, sizeof e.addr, "%s", addr);
    return e;
}

static void test_log_parse_reads_70_and_72_entries(void **state) {
    redisReply *r = parse(
        "*2\r\n"
        "*14\r\n$5\r\ncount\r\n:3\r\n$6\r\nreason\r\n$4\r\nauth\r\n$7\r\ncontext\r\n$8\r\ntoplevel\r\n"
        "$6\r\nobject\r\n$4\r\nAUTH\r\n$8\r\nusername\r\n$5\r\napp_a\r\n$11\r\nage-seconds\r\n"
        "$5\r\n1.234\r\n$11\r\nclient-info\r\n$32\r\nid=7 addr=127.0.0.1:35172 user=x\r\n"
        "*8\r\n$5\r\ncount\r\n:1\r\n$6\r\nreason\r\n$7\r\ncommand\r\n$8\r\nusername\r\n$1\r\nb\r\n"
        "$8\r\nentry-id\r\n:42\r\n");
    struct aclops_log_entry e[4];
    redisReply *bad = parse("*1\r\n*2\r\n$6\r\nreason\r\n$4\r\nauth\r\n");   /* no count */

    (void)state;
    assert_int_equal(aclops_log_parse(r, e, 4), 2);
    assert_string_equal(e[0].reason, "auth");
    assert_string_equal(e[0].context, "toplevel");
    assert_string_equal(e[0].username, "app_a");
    assert_string_equal(e[0].addr, "127.0.0.1:35172");
    assert_int_equal(e[0].count, 3);
    assert_true(e[0].age_seconds > 1.23 && e[0].age_seconds < 1.24);
    assert_int_equal(e[0].entry_id, -1);
    assert_int_equal(e[1].entry_id, 42);
    assert_int_equal(aclops_log_parse(r, e, 1), 1);
    assert_int_equal(aclops_log_parse(bad, e, 4), -EPROTO);
    freeReplyObject(r);
    freeReplyObject(bad);
}

static void test_log_diff_70_counts_only_what_is_new(void **state) {
    struct aclops_log_entry p[3], n[5], later_log[5];
    struct aclops_node prev = { .log = p, .nlog = 3, .read_usec = 100000000 };
    struct aclops_node now = { .log = n, .nlog = 5, .read_usec = 110000000 };   /* 10 s on */
    struct aclops_node later = { .log = later_log, .nlog = 5, .read_usec = 111000000 };
    const char *users[] = { "app_a", "app_b" };
    struct aclops_failure f[8];

    (void)state;
    p[0] = entry("auth", "app_a", "10.0.0.1:1", 2, 5.0, -1);     /* updated since: 2 -> 5 */
    p[1] = entry("auth", "app_a", "10.0.0.2:1", 4, 80.0, -1);    /* too old to be updated */
    p[2] = entry("auth", "app_b", "10.0.0.3:1", 1, 30.0, -1);    /* untouched */
    n[0] = entry("auth", "app_b", "10.0.0.4:1", 2, 0.5, -1);     /* new entry (count 2) */
    n[1] = entry("auth", "app_a", "10.0.0.5:1", 5, 1.0, -1);
    n[2] = entry("command", "app_a", "10.0.0.6:1", 9, 1.0, -1);  /* not an AUTH failure */
    n[3] = entry("auth", "other", "10.0.0.7:1", 9, 1.0, -1);     /* not our user */
    n[4] = entry("auth", "app_b", "10.0.0.3:1", 1, 40.2, -1);
    /* p[1] went out of the newest 128 meanwhile: it is simply gone */
    assert_int_equal(aclops_log_diff(&prev, &now, users, 2, f, 8), 2);
    assert_string_equal(f[0].username, "app_b");
    assert_string_equal(f[0].addr, "10.0.0.4:1");
    assert_int_equal(f[0].count, 2);
    assert_string_equal(f[1].username, "app_a");
    assert_string_equal(f[1].addr, "10.0.0.5:1");
    assert_int_equal(f[1].count, 3);
    /* the same entries read again 1 s later, each 1 s older: nothing new */
    for (size_t i = 0; i < 5; i++) {
        later_log[i] = n[i];
        later_log[i].age_seconds += 1.0;
    }
    assert_int_equal(aclops_log_diff(&now, &later, users, 2, f, 8), 0);
    /* but one that did not age was updated: with the count unchanged that cannot be,
     * so a count one higher is one new failure */
    later_log[1].count++;
    later_log[1].age_seconds = 0.2;
    assert_int_equal(aclops_log_diff(&now, &later, users, 2, f, 8), 1);
    assert_int_equal(f[0].count, 1);
    /* the first read only sets the baseline */
    assert_int_equal(aclops_log_diff(NULL, &now, users, 2, f, 8), 0);
}

static void test_log_diff_sums_one_addr_and_uses_entry_id(void **state) {
    struct aclops_log_entry p[2], n[3];
    struct aclops_node prev = { .log = p, .nlog = 2, .read_usec = 1000000 };
    struct aclops_node now = { .log = n, .nlog = 3, .read_usec = 2000000 };
    const char *users[] = { "app" };
    struct aclops_failure f[4];

    (void)state;
    p[0] = entry("auth", "app", "10.0.0.1:1", 3, 100.0, 7);
    p[1] = entry("auth", "app", "10.0.0.1:1", 1, 0.0, 8);
    n[0] = entry("auth", "app", "10.0.0.1:1", 3, 101.0, 7);   /* same id, same count */
    n[1] = entry("auth", "app", "10.0.0.1:1", 4, 0.1, 8);     /* id 8: 1 -> 4 */
    n[2] = entry("auth", "app", "10.0.0.1:1", 2, 0.1, 9);     /* new id */
    assert_int_equal(aclops_log_diff(&prev, &now, users, 1, f, 4), 1);
    assert_string_equal(f[0].addr, "10.0.0.1:1");
    assert_int_equal(f[0].count, 5);
}

/* ------------------------------------------------------------------------------------
 * On real servers
 */

static void test_compare_users_on_every_node(void **state) {
    struct target_buf b;
    struct aclops_result res = { 0 };
    char expect[256];

    (void)state;
    NEED_REDIS(&fx);
    target_init(&b, 2, NULL, NULL);
    assert_int_equal(aclops_compare_users(&b.t, "app_a", "app_b", &res), 0);
    assert_int_equal(res.ok, 2);
    assert_int_equal(res.nodes[0].differences + res.nodes[1].differences, 0);
    assert_string_equal(res.diff, "");
    aclops_result_clear(&res);
    /* one node drifts */
    CMD(srv[1].port, "ACL", "SETUSER", "app_b", "-@write", "resetkeys", "~*");
    assert_int_equal(aclops_compare_users(&b.t, "app_a", "app_b", &res), 0);
    assert_int_equal(res.nodes[0].differences, 0);
    assert_true(res.nodes[1].differences >= 2);
    snprintf(expect, sizeof expect, "127.0.0.1:%u: app_b lacks +@write", (unsigned)srv[1].port);
    assert_non_null(strstr(res.diff, expect));
    assert_non_null(strstr(res.diff, "keys ~cache:* vs ~*"));
    assert_null(strstr(res.diff, "pw-a"));
    aclops_result_clear(&res);
    aclops_result_clear(&res);   /* twice: safe */
    target_free(&b);
}

static void test_unreachable_node_and_problem_node_fail_alone(void **state) {
    struct target_buf b;
    struct aclops_result res = { 0 };
    const char *problems[3] = { NULL, "a unix socket path too long", NULL };

    (void)state;
    NEED_REDIS(&fx);
    target_init(&b, 3, NULL, NULL);   /* the third: a port nobody listens on */
    b.t.problems = problems;
    assert_int_equal(aclops_compare_users(&b.t, "app_a", "app_b", &res), -EINVAL);
    assert_int_equal(res.ok, 1);
    assert_int_equal(res.failed, 2);
    assert_string_equal(res.nodes[1].why, "a unix socket path too long");
    assert_int_equal(res.nodes[2].r, -EHOSTUNREACH);
    assert_non_null(strstr(res.nodes[2].why, "Connection refused"));
    aclops_result_clear(&res);
    target_free(&b);
}

static void test_wrong_login_names_the_user_not_the_password(void **state) {
    struct target_buf b;
    struct aclops_result res = { 0 };

    (void)state;
    NEED_REDIS(&fx);
    target_init(&b, 1, "admin", "not-the-admin-password");
    assert_int_equal(aclops_client_list(&b.t, "app_a", 0, 4, &res), -EACCES);
    assert_non_null(strstr(res.nodes[0].why, "login as admin: "));
    assert_non_null(strstr(res.nodes[0].why, "WRONGPASS"));
    assert_null(strstr(res.nodes[0].why, "not-the-admin"));
    aclops_result_clear(&res);
    target_free(&b);
}

static void test_client_list_finds_the_users_connections(void **state) {
    struct resp_conn *cs[5];
    struct target_buf b;
    struct aclops_result res = { 0 };
    char addr[ACLOPS_ADDR_MAX];

    (void)state;
    NEED_REDIS(&fx);
    CMD(srv[0].port, "ACL", "SETUSER", "app_a", "+client");
    CMD(srv[1].port, "ACL", "SETUSER", "app_a", "+client");
    open_as(cs, 3, srv[0].port, "app_a", "pw-a");
    open_as(cs + 3, 2, srv[1].port, "app_a", "pw-a");
    conn_addr(cs[0], addr, sizeof addr);
    target_init(&b, 2, "app_a", "pw-a");   /* logged in as the user: our own is left out */
    assert_int_equal(aclops_client_list(&b.t, "app_a", 0, 2, &res), 0);
    assert_int_equal(res.nodes[0].count, 3);
    assert_int_equal(res.nodes[0].naddrs, 2);
    assert_string_equal(res.nodes[0].addrs[0], addr);
    assert_int_equal(res.nodes[1].count, 2);
    aclops_result_clear(&res);
    close_all(cs, 5);
    target_free(&b);
}

static void test_client_list_over_the_cap_is_an_error_not_no_clients(void **state) {
    struct resp_conn *cs[40];
    struct target_buf b;
    struct aclops_result res = { 0 };

    (void)state;
    NEED_REDIS(&fx);
    open_as(cs, 40, srv[0].port, "app_a", "pw-a");   /* ~40 lines of ~250 bytes */
    target_init(&b, 1, NULL, NULL);
    assert_int_equal(aclops_client_list(&b.t, "app_a", 4096, 8, &res), -EMSGSIZE);
    assert_int_equal(res.failed, 1);
    assert_int_equal(res.nodes[0].count, 0);
    assert_string_equal(res.nodes[0].why, "CLIENT LIST: reply over 4096 bytes");
    aclops_result_clear(&res);
    assert_int_equal(aclops_client_list(&b.t, "app_a", 0, 8, &res), 0);
    assert_int_equal(res.nodes[0].count, 40);
    aclops_result_clear(&res);
    close_all(cs, 40);
    target_free(&b);
}

static void test_kill_user_closes_them_and_then_none_are_listed(void **state) {
    struct resp_conn *cs[4];
    struct target_buf b;
    struct aclops_result res = { 0 };

    (void)state;
    NEED_REDIS(&fx);
    open_as(cs, 3, srv[0].port, "app_a", "pw-a");
    open_as(cs + 3, 1, srv[1].port, "app_a", "pw-a");
    target_init(&b, 2, NULL, NULL);
    assert_int_equal(aclops_client_kill_user(&b.t, "app_a", &res), 0);
    assert_int_equal(res.nodes[0].count, 3);
    assert_int_equal(res.nodes[1].count, 1);
    aclops_result_clear(&res);
    assert_int_equal(aclops_client_list(&b.t, "app_a", 0, 8, &res), 0);
    assert_int_equal(res.nodes[0].count + res.nodes[1].count, 0);
    aclops_result_clear(&res);
    close_all(cs, 4);
    target_free(&b);
}

static void test_noperm_is_flagged_and_names_the_permission(void **state) {
    struct target_buf b;
    struct aclops_result res = { 0 };
    struct secret *pw = secret_new_str("pw-new-never-shown");

    (void)state;
    NEED_REDIS(&fx);
    target_init(&b, 2, "weak", "weak-pw");
    assert_int_equal(aclops_acl_log(&b.t, &res), -EACCES);
    assert_true(res.nodes[0].noperm && res.nodes[1].noperm);
    assert_string_equal(res.nodes[0].why, "no acl|log permission");
    aclops_result_clear(&res);
    assert_int_equal(aclops_setuser(&b.t, "app_b", ACLOPS_ENABLE, pw, NULL, false, &res), -EACCES);
    assert_true(res.nodes[0].noperm);
    assert_string_equal(res.nodes[0].why, "ACL SETUSER: NOPERM (the login needs +acl|setuser)");
    aclops_result_clear(&res);
    assert_int_equal(aclops_client_list(&b.t, "app_b", 0, 1, &res), -EACCES);
    assert_non_null(strstr(res.nodes[0].why, "+client|"));
    aclops_result_clear(&res);
    secret_free(pw);
    target_free(&b);
}

static enum resp_auth_result try_auth(uint16_t port, const char *user, const char *pw) {
    struct resp_conn *c = connect_to(port);
    struct secret *s = secret_new_str(pw);
    char detail[128];
    enum resp_auth_result r = resp_auth(c, user, s, detail, sizeof detail);

    secret_free(s);
    resp_close(c);
    return r;
}

static void test_enable_disable_and_forget_hash(void **state) {
    struct target_buf b;
    struct aclops_result res = { 0 };
    struct secret *pw = secret_new_str("new\x01pass word");
    unsigned char md[SHA256_DIGEST_LENGTH];
    char hex[65];

    (void)state;
    NEED_REDIS(&fx);
    target_init(&b, 2, NULL, NULL);
    assert_int_equal(aclops_setuser(&b.t, "app_b", ACLOPS_ENABLE, pw, NULL, false, &res), 0);
    assert_int_equal(res.ok, 2);
    aclops_result_clear(&res);
    assert_int_equal(try_auth(srv[0].port, "app_b", "new\x01pass word"), RESP_AUTH_ACCEPTED);
    assert_int_equal(try_auth(srv[1].port, "app_b", "new\x01pass word"), RESP_AUTH_ACCEPTED);
    /* resetpass: an earlier password of the idle user is gone */
    CMD(srv[0].port, "ACL", "SETUSER", "app_a", ">second");
    assert_int_equal(aclops_setuser(&b.t, "app_a", ACLOPS_ENABLE, pw, NULL, false, &res), 0);
    aclops_result_clear(&res);
    assert_int_equal(try_auth(srv[0].port, "app_a", "second"), RESP_AUTH_REFUSED);
    assert_int_equal(try_auth(srv[0].port, "app_a", "pw-a"), RESP_AUTH_REFUSED);
    /* off resetpass: refused */
    assert_int_equal(aclops_setuser(&b.t, "app_b", ACLOPS_DISABLE, NULL, NULL, false, &res), 0);
    aclops_result_clear(&res);
    assert_int_equal(try_auth(srv[0].port, "app_b", "new\x01pass word"), RESP_AUTH_REFUSED);
    /* !hash removes one password, twice is fine */
    CMD(srv[0].port, "ACL", "SETUSER", "app_b", "on", ">restored");
    CMD(srv[1].port, "ACL", "SETUSER", "app_b", "on", ">restored");
    SHA256((const unsigned char *)"restored", 8, md);
    for (size_t i = 0; i < sizeof md; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(aclops_setuser(&b.t, "app_b", ACLOPS_FORGET_HASH, NULL, hex, false, &res), 0);
        assert_int_equal(res.ok, 2);
        aclops_result_clear(&res);
    }
    assert_int_equal(try_auth(srv[1].port, "app_b", "restored"), RESP_AUTH_REFUSED);
    /* on >pw puts a password back beside the others (and the user on) */
    CMD(srv[0].port, "ACL", "SETUSER", "app_b", "off", ">kept");
    assert_int_equal(aclops_setuser(&b.t, "app_b", ACLOPS_RESTORE, pw, NULL, false, &res), 0);
    aclops_result_clear(&res);
    assert_int_equal(try_auth(srv[0].port, "app_b", "new\x01pass word"), RESP_AUTH_ACCEPTED);
    assert_int_equal(try_auth(srv[0].port, "app_b", "kept"), RESP_AUTH_ACCEPTED);
    assert_int_equal(aclops_setuser(&b.t, "app_b", ACLOPS_FORGET_HASH, NULL, "abc", false, &res),
                     -EINVAL);
    assert_int_equal(res.n, 0);
    assert_int_equal(aclops_setuser(&b.t, "app_b", ACLOPS_ENABLE, NULL, NULL, false, &res), -EINVAL);
    secret_free(pw);
    target_free(&b);
}

static void test_save_without_acl_file_is_reported(void **state) {
    struct target_buf b;
    struct aclops_result res = { 0 };

    (void)state;
    NEED_REDIS(&fx);
    target_init(&b, 1, NULL, NULL);
    /* these servers run without an aclfile: ACL SAVE refuses, and says so */
    assert_int_equal(aclops_setuser(&b.t, "app_b", ACLOPS_DISABLE, NULL, NULL, true, &res), -EIO);
    assert_non_null(strstr(res.nodes[0].why, "ACL SAVE: ERR"));
    aclops_result_clear(&res);
    target_free(&b);
}

/* Redis 7.0's own log: failures after the baseline read are found with their addr, and a
 * read with no new failure finds none. */
static void test_acl_log_watch_finds_new_auth_failures(void **state) {
    struct target_buf b;
    struct aclops_result base = { 0 }, next = { 0 }, again = { 0 };
    const char *users[] = { "app_a" };
    struct aclops_failure f[4];
    struct resp_conn *c;
    char addr[ACLOPS_ADDR_MAX];

    (void)state;
    NEED_REDIS(&fx);
    target_init(&b, 2, NULL, NULL);
    assert_int_equal(try_auth(srv[0].port, "app_a", "old-1"), RESP_AUTH_REFUSED);   /* before */
    assert_int_equal(aclops_acl_log(&b.t, &base), 0);
    assert_true(base.nodes[0].nlog >= 1);
    c = connect_to(srv[0].port);
    conn_addr(c, addr, sizeof addr);
    for (int i = 0; i < 3; i++) {
        struct secret *s = secret_new_str("old-password");
        char detail[128];
        assert_int_equal(resp_auth(c, "app_a", s, detail, sizeof detail), RESP_AUTH_REFUSED);
        secret_free(s);
    }
    assert_int_equal(aclops_acl_log(&b.t, &next), 0);
    assert_int_equal(aclops_log_diff(&base.nodes[0], &next.nodes[0], users, 1, f, 4), 1);
    assert_string_equal(f[0].addr, addr);
    assert_int_equal(f[0].count, 3);
    assert_int_equal(aclops_log_diff(&base.nodes[1], &next.nodes[1], users, 1, f, 4), 0);
    assert_int_equal(aclops_acl_log(&b.t, &again), 0);
    assert_int_equal(aclops_log_diff(&next.nodes[0], &again.nodes[0], users, 1, f, 4), 0);
    resp_close(c);
    aclops_result_clear(&base);
    aclops_result_clear(&next);
    aclops_result_clear(&again);
    target_free(&b);
}

/* ------------------------------------------------------------------------------------
 * A scripted server: what a real Redis never answers (a proxy or a look-alike may). It
 * accepts one connection and answers each chunk it reads with the next canned reply.
 */

struct scripted {
    int lfd;
    pthread_t th;
    const char *const *replies;   /* NULL-terminated */
};

static void *scripted_main(void *arg) {
    struct scripted *s = arg;
    int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
    char buf[4096];

    if (fd < 0)
        return NULL;
    for (size_t i = 0; recv(fd, buf, sizeof buf, 0) > 0;)
        if (s->replies[i]) {
            (void)send(fd, s->replies[i], strlen(s->replies[i]), MSG_NOSIGNAL);
            i++;
        }
    close(fd);
    return NULL;
}

static uint16_t scripted_start(struct scripted *s, const char *const *replies) {
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;

    s->replies = replies;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &len), 0);
    assert_int_equal(pthread_create(&s->th, NULL, scripted_main, s), 0);
    return ntohs(sa.sin_port);
}

static void scripted_stop(struct scripted *s) {
    pthread_join(s->th, NULL);
    close(s->lfd);
}

/* One node on the scripted server, no login (the server has no password). */
static void scripted_target(struct rnet_node *node, struct aclops_target *t, uint16_t port) {
    memset(node, 0, sizeof *node);
    node->ep.kind = ENDPOINT_TCP;
    snprintf(node->ep.host, sizeof node->ep.host, "127.0.0.1");
    node->ep.port = port;
    *t = (struct aclops_target){ .nodes = node, .n = 1, .timeout_usec = TIMEOUT };
}

/* ACL SETUSER answered with a bulk string (or a status, or an array) that echoes the
 * command, password included: the node fails, and its `why` names the reply's type but
 * never quotes it. */
static void test_setuser_reply_of_another_type_is_not_quoted(void **state) {
    static const char *const bulk[] = { "$32\r\nACL SETUSER app on >s3cret-pw-77\r\n", NULL };
    static const char *const arr[] = { "*2\r\n$3\r\nERR\r\n$15\r\n>s3cret-pw-77 x\r\n", NULL };
    static const char *const *const cases[] = { bulk, arr };
    struct secret *pw = secret_new_str("s3cret-pw-77");

    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct scripted s;
        struct rnet_node node;
        struct aclops_target t;
        struct aclops_result res = { 0 };

        scripted_target(&node, &t, scripted_start(&s, cases[k]));
        assert_int_equal(aclops_setuser(&t, "app", ACLOPS_ENABLE, pw, NULL, false, &res), -EIO);
        scripted_stop(&s);
        assert_int_equal(res.failed, 1);
        assert_null(strstr(res.nodes[0].why, "s3cret"));
        assert_non_null(strstr(res.nodes[0].why, "ACL SETUSER: unexpected"));
        aclops_result_clear(&res);
    }
    secret_free(pw);
}

/* ACL LOG answered with 2 MB of tiny integers: within the byte cap, over the objects cap
 * of one reply. The node's error says which cap, not "reply over 4194304 bytes". */
static void test_reply_over_the_objects_cap_says_so(void **state) {
    size_t inner = 60000, arrays = RESP_MAX_OBJECTS / inner + 1, len = 0;
    size_t size = arrays * (inner * 4 + 16) + 16;
    char *big = malloc(size);
    const char *replies[2] = { big, NULL };
    struct scripted s;
    struct rnet_node node;
    struct aclops_target t;
    struct aclops_result res = { 0 };

    (void)state;
    assert_non_null(big);
    len += (size_t)snprintf(big + len, size - len, "*%zu\r\n", arrays);
    for (size_t j = 0; j < arrays; j++) {
        len += (size_t)snprintf(big + len, size - len, "*%zu\r\n", inner);
        for (size_t i = 0; i < inner; i++, len += 4)
            memcpy(big + len, ":1\r\n", 4);
    }
    big[len] = '\0';
    scripted_target(&node, &t, scripted_start(&s, replies));
    assert_int_equal(aclops_acl_log(&t, &res), -EMSGSIZE);
    scripted_stop(&s);
    assert_string_equal(res.nodes[0].why, "ACL LOG: reply of more than 524288 objects");
    aclops_result_clear(&res);
    free(big);
}

static void test_result_clear_and_find_accept_empty(void **state) {
    struct aclops_result res = { 0 };

    (void)state;
    aclops_result_clear(NULL);
    aclops_result_clear(&res);
    assert_null(aclops_result_find(&res, "x"));
    assert_null(aclops_result_find(NULL, "x"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_diff_same_rules_but_on_off_and_passwords),
        cmocka_unit_test(test_user_diff_names_what_each_lacks),
        cmocka_unit_test(test_user_diff_commands_order_matters),
        cmocka_unit_test(test_user_diff_selectors_and_missing_user),
        cmocka_unit_test(test_user_diff_text_is_cut_with_dots),
        cmocka_unit_test(test_client_list_counts_user_and_keeps_first_addresses),
        cmocka_unit_test(test_client_list_line_without_user_is_a_protocol_error),
        cmocka_unit_test(test_log_parse_reads_70_and_72_entries),
        cmocka_unit_test(test_log_diff_70_counts_only_what_is_new),
        cmocka_unit_test(test_log_diff_sums_one_addr_and_uses_entry_id),
        cmocka_unit_test(test_result_clear_and_find_accept_empty),
        cmocka_unit_test(test_setuser_reply_of_another_type_is_not_quoted),
        cmocka_unit_test(test_reply_over_the_objects_cap_says_so),
        cmocka_unit_test_setup(test_compare_users_on_every_node, per_test),
        cmocka_unit_test_setup(test_unreachable_node_and_problem_node_fail_alone, per_test),
        cmocka_unit_test_setup(test_wrong_login_names_the_user_not_the_password, per_test),
        cmocka_unit_test_setup(test_client_list_finds_the_users_connections, per_test),
        cmocka_unit_test_setup(test_client_list_over_the_cap_is_an_error_not_no_clients, per_test),
        cmocka_unit_test_setup(test_kill_user_closes_them_and_then_none_are_listed, per_test),
        cmocka_unit_test_setup(test_noperm_is_flagged_and_names_the_permission, per_test),
        cmocka_unit_test_setup(test_enable_disable_and_forget_hash, per_test),
        cmocka_unit_test_setup(test_save_without_acl_file_is_reported, per_test),
        cmocka_unit_test_setup(test_acl_log_watch_finds_new_auth_failures, per_test),
    };
    return cmocka_run_group_tests(tests, redis_setup, redis_teardown);
}
