/* Unit tests for common/resp: the capped reader, endpoint parsing, AUTH judgement over a
 * scripted transport, and connections to a real redis-server started by this program.
 *
 * The redis-servers are children of this process: they get PR_SET_PDEATHSIG(SIGKILL), so
 * they die with us even if a sanitizer aborts the run, and they are stopped in the group
 * teardown and again from atexit(). When /usr/bin/redis-server is missing, the tests that
 * need it are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_server.h"
#include "rctime.h"
#include "resp.h"
#include "secret.h"

#define SEC 1000000ull

/* ------------------------------------------------------------------------------------
 * Helpers
 */

static redisReply *get_one(struct resp_reader *r, const char *bytes, size_t len) {
    redisReply *reply = NULL;

    assert_int_equal(resp_reader_feed(r, bytes, len), 0);
    assert_int_equal(resp_reader_get(r, &reply), 1);
    assert_non_null(reply);
    return reply;
}

static redisReply *parse_str(const char *bytes) {
    struct resp_reader *r = resp_reader_new(RESP_MAX_REPLY_BYTES, RESP_MAX_ELEMENTS);
    redisReply *reply;

    assert_non_null(r);
    reply = get_one(r, bytes, strlen(bytes));
    resp_reader_free(r);
    return reply;
}

/* ------------------------------------------------------------------------------------
 * Reader
 */

static void test_reader_simple_string(void **state) {
    redisReply *r = parse_str("+OK\r\n");

    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_int_equal(r->len, 2);
    assert_string_equal(r->str, "OK");
    freeReplyObject(r);
}

static void test_reader_error(void **state) {
    redisReply *r = parse_str("-WRONGPASS invalid username-password pair\r\n");

    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_string_equal(r->str, "WRONGPASS invalid username-password pair");
    freeReplyObject(r);
}

static void test_reader_integer(void **state) {
    redisReply *r = parse_str(":-9223372036854775808\r\n");

    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer == INT64_MIN);
    freeReplyObject(r);
    r = parse_str(":42\r\n");
    assert_int_equal(r->integer, 42);
    freeReplyObject(r);
}

static void test_reader_bulk_keeps_binary(void **state) {
    static const char bytes[] = "$7\r\na\r\nb\0cd\r\n";
    struct resp_reader *rd = resp_reader_new(0, 0);
    redisReply *r = get_one(rd, bytes, sizeof(bytes) - 1);

    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, 7);
    assert_memory_equal(r->str, "a\r\nb\0cd", 7);
    assert_int_equal(r->str[7], '\0');
    freeReplyObject(r);

    r = get_one(rd, "$0\r\n\r\n", 6);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, 0);
    assert_string_equal(r->str, "");
    freeReplyObject(r);
    resp_reader_free(rd);
}

static void test_reader_nil_bulk_and_nil_array(void **state) {
    redisReply *r = parse_str("$-1\r\n");

    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    r = parse_str("*-1\r\n");
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
}

static const char nested[] =
    "*4\r\n"
    "*2\r\n:1\r\n$3\r\nfoo\r\n"
    "*0\r\n"
    "$-1\r\n"
    "*2\r\n*1\r\n+deep\r\n-ERR inner\r\n";

static void check_nested(const redisReply *r) {
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[0]->elements, 2);
    assert_int_equal(r->element[0]->element[0]->integer, 1);
    assert_string_equal(r->element[0]->element[1]->str, "foo");
    assert_int_equal(r->element[1]->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[1]->elements, 0);
    assert_int_equal(r->element[2]->type, REDIS_REPLY_NIL);
    assert_int_equal(r->element[3]->elements, 2);
    assert_string_equal(r->element[3]->element[0]->element[0]->str, "deep");
    assert_int_equal(r->element[3]->element[1]->type, REDIS_REPLY_ERROR);
    assert_string_equal(r->element[3]->element[1]->str, "ERR inner");
}

static void test_reader_nested_arrays(void **state) {
    redisReply *r = parse_str(nested);

    check_nested(r);
    freeReplyObject(r);
}

static void test_reader_byte_by_byte(void **state) {
    struct resp_reader *rd = resp_reader_new(0, 0);
    size_t n = sizeof(nested) - 1;
    redisReply *r = NULL;

    for (size_t i = 0; i < n; i++) {
        assert_int_equal(resp_reader_get(rd, &r), 0);
        assert_null(r);
        assert_int_equal(resp_reader_feed(rd, nested + i, 1), 0);
    }
    assert_int_equal(resp_reader_get(rd, &r), 1);
    check_nested(r);
    freeReplyObject(r);
    r = NULL;
    assert_int_equal(resp_reader_get(rd, &r), 0);
    assert_null(r);
    resp_reader_free(rd);
}

static void test_reader_several_replies_in_one_feed(void **state) {
    static const char bytes[] = "+OK\r\n:7\r\n$2\r\nhi\r\n+PAR";
    struct resp_reader *rd = resp_reader_new(0, 0);
    redisReply *r = NULL;

    assert_int_equal(resp_reader_feed(rd, bytes, sizeof(bytes) - 1), 0);
    assert_int_equal(resp_reader_get(rd, &r), 1);
    assert_string_equal(r->str, "OK");
    freeReplyObject(r);
    assert_int_equal(resp_reader_get(rd, &r), 1);
    assert_int_equal(r->integer, 7);
    freeReplyObject(r);
    assert_int_equal(resp_reader_get(rd, &r), 1);
    assert_string_equal(r->str, "hi");
    freeReplyObject(r);
    assert_int_equal(resp_reader_get(rd, &r), 0);
    assert_int_equal(resp_reader_feed(rd, "TIAL\r\n", 6), 0);
    assert_int_equal(resp_reader_get(rd, &r), 1);
    assert_string_equal(r->str, "PARTIAL");
    freeReplyObject(r);
    resp_reader_free(rd);
}

static void test_reader_oversize_reply_is_error(void **state) {
    struct resp_reader *rd = resp_reader_new(64, 16);
    char body[100];
    redisReply *r = NULL;

    memset(body, 'x', sizeof(body));
    assert_int_equal(resp_reader_feed(rd, "$100\r\n", 6), 0);
    assert_int_equal(resp_reader_get(rd, &r), 0);
    assert_int_equal(resp_reader_feed(rd, body, sizeof(body)), -EMSGSIZE);
    assert_non_null(strstr(resp_reader_errstr(rd), "64 bytes"));
    /* sticky */
    assert_int_equal(resp_reader_feed(rd, "+OK\r\n", 5), -EMSGSIZE);
    assert_int_equal(resp_reader_get(rd, &r), -EMSGSIZE);
    assert_null(r);
    resp_reader_free(rd);
}

static void test_reader_cap_is_per_reply(void **state) {
    struct resp_reader *rd = resp_reader_new(16, 16);
    redisReply *r = NULL;

    /* 100 small replies, 500 bytes in all, through a 16-byte cap: each fits. */
    for (int i = 0; i < 100; i++) {
        r = get_one(rd, "+PONG\r\n", 7);
        assert_string_equal(r->str, "PONG");
        freeReplyObject(r);
    }
    /* Leftover bytes of the next reply count against it. */
    assert_int_equal(resp_reader_feed(rd, "+0123456789", 11), 0);
    assert_int_equal(resp_reader_get(rd, &r), 0);
    assert_int_equal(resp_reader_feed(rd, "abcdef\r\n", 8), -EMSGSIZE);
    resp_reader_free(rd);
}

static void test_reader_huge_array_count_is_error_without_allocation(void **state) {
    struct resp_reader *rd = resp_reader_new(0, 0);
    redisReply *r = NULL;

    /* hiredis 0.14's own createArray would calloc 800 MB here. */
    assert_int_equal(resp_reader_feed(rd, "*100000000\r\n", 12), 0);
    assert_int_equal(resp_reader_get(rd, &r), -EMSGSIZE);
    assert_null(r);
    assert_non_null(strstr(resp_reader_errstr(rd), "100000000"));
    assert_int_equal(resp_reader_get(rd, &r), -EMSGSIZE);
    resp_reader_free(rd);
}

static void test_reader_nested_array_over_cap_frees_partial(void **state) {
    struct resp_reader *rd = resp_reader_new(0, 3);
    redisReply *r = NULL;

    r = get_one(rd, "*3\r\n:1\r\n:2\r\n:3\r\n", 16);
    assert_int_equal(r->elements, 3);
    freeReplyObject(r);
    /* The root and its first children exist when the inner count is refused: ASan
     * checks that they are freed. */
    assert_int_equal(resp_reader_feed(rd, "*2\r\n$3\r\nabc\r\n*4\r\n", 17), 0);
    assert_int_equal(resp_reader_get(rd, &r), -EMSGSIZE);
    resp_reader_free(rd);
}

/* Feeds `arrays` arrays of `inner` integers, as one reply (an array of arrays), to a
 * reader with a byte cap of max_bytes; returns what resp_reader_get() says. */
static int feed_int_arrays(struct resp_reader *rd, size_t arrays, size_t inner) {
    char hdr[32], *chunk = malloc(inner * 4 + 32);
    redisReply *r = NULL;
    size_t cl;
    int n, rc = 0;

    assert_non_null(chunk);
    n = snprintf(hdr, sizeof hdr, "*%zu\r\n", arrays);
    assert_int_equal(resp_reader_feed(rd, hdr, (size_t)n), 0);
    cl = (size_t)snprintf(chunk, 32, "*%zu\r\n", inner);
    for (size_t i = 0; i < inner; i++, cl += 4)
        memcpy(chunk + cl, ":1\r\n", 4);
    for (size_t j = 0; j < arrays && rc == 0; j++)
        rc = resp_reader_feed(rd, chunk, cl);
    free(chunk);
    if (rc == 0)
        rc = resp_reader_get(rd, &r);
    if (r)
        freeReplyObject(r);
    return rc;
}

/* A reply of many tiny objects costs ~64 bytes of heap for each 4 bytes read: under the
 * 64 MiB cap CLIENT LIST gets, 16 million integers in nested arrays took 1.2 GiB of
 * memory. The objects of one reply are capped in total (RESP_MAX_OBJECTS), whatever the
 * byte cap; CLUSTER SLOTS of a cluster with every slot its own range stays well under. */
static void test_reader_caps_the_objects_of_one_reply(void **state) {
    struct resp_reader *rd = resp_reader_new(64u * 1024 * 1024, 0);

    (void)state;
    assert_int_equal(feed_int_arrays(rd, (RESP_MAX_OBJECTS / 60000) + 1, 60000), -EMSGSIZE);
    assert_non_null(strstr(resp_reader_errstr(rd), "objects"));
    resp_reader_free(rd);
    rd = resp_reader_new(64u * 1024 * 1024, 0);
    assert_int_equal(feed_int_arrays(rd, 16384, 15), 1);   /* 16384 slot ranges */
    /* the count is per reply: the next one starts from nothing */
    assert_int_equal(feed_int_arrays(rd, 16384, 15), 1);
    resp_reader_free(rd);
}

static void test_reader_garbage_is_sticky_protocol_error(void **state) {
    struct resp_reader *rd = resp_reader_new(0, 0);
    redisReply *r = NULL;

    assert_int_equal(resp_reader_feed(rd, "HTTP/1.1 400 Bad Request\r\n", 26), 0);
    assert_int_equal(resp_reader_get(rd, &r), -EPROTO);
    assert_null(r);
    assert_non_null(strstr(resp_reader_errstr(rd), "protocol error"));
    assert_int_equal(resp_reader_feed(rd, "+OK\r\n", 5), -EPROTO);
    assert_int_equal(resp_reader_get(rd, &r), -EPROTO);
    assert_null(r);
    resp_reader_free(rd);
}

static void test_reader_bad_lengths_are_protocol_errors(void **state) {
    static const char *bad[] = {
        ":12a\r\n", "$abc\r\n", "$-2\r\n", "*-5\r\n", "*x\r\n",
        "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",   /* depth > 7 */
        "%1\r\n",   /* RESP3 map: we only speak RESP2 */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct resp_reader *rd = resp_reader_new(0, 0);
        redisReply *r = NULL;

        assert_int_equal(resp_reader_feed(rd, bad[i], strlen(bad[i])), 0);
        assert_int_equal(resp_reader_get(rd, &r), -EPROTO);
        assert_null(r);
        resp_reader_free(rd);
    }
}

static void test_reader_errstr_empty_without_error_and_free_null(void **state) {
    struct resp_reader *rd = resp_reader_new(0, 0);

    assert_string_equal(resp_reader_errstr(rd), "");
    assert_null(resp_reader_free(rd));
    assert_null(resp_reader_free(NULL));
    assert_null(resp_close(NULL));
}

/* ------------------------------------------------------------------------------------
 * Endpoints
 */

static void test_endpoint_parse_good(void **state) {
    struct endpoint ep;
    char buf[300];

    assert_int_equal(endpoint_parse("127.0.0.1:6379", &ep, NULL), 0);
    assert_int_equal(ep.kind, ENDPOINT_TCP);
    assert_string_equal(ep.host, "127.0.0.1");
    assert_int_equal(ep.port, 6379);
    assert_string_equal(endpoint_format(&ep, buf, sizeof(buf)), "127.0.0.1:6379");

    assert_int_equal(endpoint_parse("redis-1.internal:65535", &ep, NULL), 0);
    assert_string_equal(ep.host, "redis-1.internal");
    assert_int_equal(ep.port, 65535);

    assert_int_equal(endpoint_parse("[::1]:1", &ep, NULL), 0);
    assert_string_equal(ep.host, "::1");
    assert_int_equal(ep.port, 1);
    assert_string_equal(endpoint_format(&ep, buf, sizeof(buf)), "[::1]:1");

    assert_int_equal(endpoint_parse("[2001:db8::7]:6380", &ep, NULL), 0);
    assert_string_equal(ep.host, "2001:db8::7");

    assert_int_equal(endpoint_parse("[fe80::1%eth0]:6379", &ep, NULL), 0);
    assert_string_equal(ep.host, "fe80::1%eth0");

    assert_int_equal(endpoint_parse("unix:/run/redis/redis.sock", &ep, NULL), 0);
    assert_int_equal(ep.kind, ENDPOINT_UNIX);
    assert_string_equal(ep.path, "/run/redis/redis.sock");
    assert_string_equal(endpoint_format(&ep, buf, sizeof(buf)), "unix:/run/redis/redis.sock");

    /* longest host and unix path that fit */
    char host[300];
    memset(host, 'a', 253);
    memcpy(host + 253, ":80", 4);
    assert_int_equal(endpoint_parse(host, &ep, NULL), 0);
    assert_int_equal(strlen(ep.host), 253);
    char path[200] = "unix:/";
    memset(path + 6, 'p', 106);
    path[112] = '\0';
    assert_int_equal(endpoint_parse(path, &ep, NULL), 0);
    assert_int_equal(strlen(ep.path), 107);
}

static void test_endpoint_parse_bad(void **state) {
    static const char *bad[] = {
        "", "host", "host:", ":6379", "host:0", "host:65536", "host:-1", "host:+1",
        "host:63 79", "host:6379x", "host:123456", "host:0x10", " host:1", "ho st:1",
        "host:1\n", "a:b:c", "::1:6379", "[::1]6379", "[::1]:", "[::1]", "[]:1",
        "[notv6]:1", "[1.2.3.4]:1", "[::1%]:1", "[::1]:99999", "::1", "[::1:6379",
        "unix:", "unix:relative.sock", "unix:./x", "unix", "unix:/a\nb", "tcp://h:1",
        "h\xc3\xa9:1",
    };
    struct endpoint ep, sentinel;

    memset(&sentinel, 0x5a, sizeof(sentinel));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ep = sentinel;
        if (endpoint_parse(bad[i], &ep, NULL) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_memory_equal(&ep, &sentinel, sizeof(ep));   /* untouched on failure */
    }
    assert_int_equal(endpoint_parse(NULL, &ep, NULL), -EINVAL);

    char host[300];
    memset(host, 'a', 254);
    memcpy(host + 254, ":80", 4);
    assert_int_equal(endpoint_parse(host, &ep, NULL), -EINVAL);
    char path[200] = "unix:/";
    memset(path + 6, 'p', 107);
    path[113] = '\0';   /* 108 bytes: no room for the NUL in sun_path */
    assert_int_equal(endpoint_parse(path, &ep, NULL), -EINVAL);
}

/* ------------------------------------------------------------------------------------
 * Scripted transport: resp_auth's judgement without a server
 */

struct script {
    struct resp_transport t;
    const char *out;      /* bytes the "server" sends */
    size_t out_len, out_pos;
    size_t chunk;         /* max bytes per read, to exercise partial reads */
    char in[4096];        /* bytes the client wrote */
    size_t in_len;
    bool *closed;
};

static ssize_t script_read(struct resp_transport *t, void *buf, size_t len, uint64_t deadline) {
    struct script *s = (struct script *)t;
    size_t n = s->out_len - s->out_pos;

    if (n > len)
        n = len;
    if (n > s->chunk)
        n = s->chunk;
    memcpy(buf, s->out + s->out_pos, n);
    s->out_pos += n;
    return (ssize_t)n;
}

static ssize_t script_write(struct resp_transport *t, const void *buf, size_t len,
                            uint64_t deadline) {
    struct script *s = (struct script *)t;

    if (len > 3)
        len = 3;   /* short writes: the caller must loop */
    assert_true(s->in_len + len <= sizeof(s->in));
    memcpy(s->in + s->in_len, buf, len);
    s->in_len += len;
    return (ssize_t)len;
}

static void script_close(struct resp_transport *t) {
    struct script *s = (struct script *)t;

    *s->closed = true;
    free(s);
}

static struct resp_conn *script_conn(const char *out, struct script **ret_s, bool *closed) {
    struct script *s = calloc(1, sizeof(*s));
    struct resp_conn *c;

    assert_non_null(s);
    s->t.read = script_read;
    s->t.write = script_write;
    s->t.close = script_close;
    s->out = out;
    s->out_len = strlen(out);
    s->chunk = 2;
    s->closed = closed;
    *closed = false;
    c = resp_conn_new(&s->t, SEC);
    assert_non_null(c);
    *ret_s = s;
    return c;
}

static enum resp_auth_result scripted_auth(const char *server_says, const char *user,
                                           const char *pw, char *detail, size_t dlen,
                                           char *ret_sent, size_t sent_len) {
    struct secret *secret = secret_new_str(pw);
    struct script *s;
    bool closed;
    struct resp_conn *c = script_conn(server_says, &s, &closed);
    enum resp_auth_result res = resp_auth(c, user, secret, detail, dlen);

    if (ret_sent) {
        assert_true(s->in_len < sent_len);
        memcpy(ret_sent, s->in, s->in_len);
        ret_sent[s->in_len] = '\0';
    }
    assert_null(resp_close(c));
    assert_true(closed);
    secret_free(secret);
    /* detail never carries the password */
    assert_null(strstr(detail, pw));
    return res;
}

static void test_auth_judgement_scripted(void **state) {
    char detail[200], sent[512];

    assert_int_equal(scripted_auth("+OK\r\n+PONG\r\n", "app", "s3cr3t-pw", detail,
                                   sizeof(detail), sent, sizeof(sent)),
                     RESP_AUTH_ACCEPTED);
    assert_string_equal(detail, "");
    assert_string_equal(sent, "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$9\r\ns3cr3t-pw\r\n"
                              "*1\r\n$4\r\nPING\r\n");

    assert_int_equal(scripted_auth("+OK\r\n+PONG\r\n", NULL, "s3cr3t-pw", detail,
                                   sizeof(detail), sent, sizeof(sent)),
                     RESP_AUTH_ACCEPTED);
    assert_string_equal(sent, "*2\r\n$4\r\nAUTH\r\n$9\r\ns3cr3t-pw\r\n*1\r\n$4\r\nPING\r\n");

    assert_int_equal(scripted_auth("+OK\r\n-NOPERM this user has no permissions to run the "
                                   "'ping' command\r\n",
                                   "app", "s3cr3t-pw", detail, sizeof(detail), NULL, 0),
                     RESP_AUTH_ACCEPTED);
    assert_non_null(strstr(detail, "NOPERM"));

    assert_int_equal(scripted_auth("+OK\r\n-LOADING Redis is loading\r\n", "app", "s3cr3t-pw",
                                   detail, sizeof(detail), NULL, 0),
                     RESP_AUTH_ACCEPTED);
    assert_non_null(strstr(detail, "LOADING"));
    assert_null(strstr(detail, "loading"));

    assert_int_equal(scripted_auth("+OK\r\n$4\r\nPONG\r\n", "app", "s3cr3t-pw", detail,
                                   sizeof(detail), NULL, 0),
                     RESP_AUTH_ACCEPTED);
    assert_non_null(strstr(detail, "unexpected"));

    assert_int_equal(scripted_auth("-WRONGPASS invalid username-password pair or user is "
                                   "disabled.\r\n",
                                   "app", "s3cr3t-pw", detail, sizeof(detail), NULL, 0),
                     RESP_AUTH_REFUSED);
    assert_non_null(strstr(detail, "WRONGPASS"));

    assert_int_equal(scripted_auth("-ERR invalid password\r\n", NULL, "s3cr3t-pw", detail,
                                   sizeof(detail), NULL, 0),
                     RESP_AUTH_REFUSED);
    assert_int_equal(scripted_auth("-ERR invalid username-password pair\r\n", "u", "s3cr3t-pw",
                                   detail, sizeof(detail), NULL, 0),
                     RESP_AUTH_REFUSED);

    assert_int_equal(scripted_auth("-ERR AUTH <password> called without any password "
                                   "configured for the default user. Are you sure your "
                                   "configuration is correct?\r\n",
                                   NULL, "s3cr3t-pw", detail, sizeof(detail), NULL, 0),
                     RESP_AUTH_NOPASS);
    assert_int_equal(scripted_auth("-ERR Client sent AUTH, but no password is set\r\n", NULL,
                                   "s3cr3t-pw", detail, sizeof(detail), NULL, 0),
                     RESP_AUTH_NOPASS);

    /* An error that echoes the password: only its first word reaches detail. */
    assert_int_equal(scripted_auth("-ERR something about s3cr3t-pw went wrong\r\n", "app",
                                   "s3cr3t-pw", detail, sizeof(detail), NULL, 0),
                     RESP_AUTH_UNEXPECTED);
    assert_string_equal(detail, "AUTH: unexpected error reply ERR");
    /* ... unless the first word is not an error code, or is the password itself. */
    assert_int_equal(scripted_auth("-s3cr3t-pw\r\n", "app", "s3cr3t-pw", detail,
                                   sizeof(detail), NULL, 0),
                     RESP_AUTH_UNEXPECTED);
    assert_string_equal(detail, "AUTH: unexpected error reply (redacted)");
    assert_int_equal(scripted_auth("-HUNTER22 is not it\r\n", "app", "HUNTER22", detail,
                                   sizeof(detail), NULL, 0),
                     RESP_AUTH_UNEXPECTED);
    assert_string_equal(detail, "AUTH: unexpected error reply (redacted)");
    assert_int_equal(scripted_auth("+HUNTER22\r\n", "app", "HUNTER22", detail,
                                   sizeof(detail), NULL, 0),
                     RESP_AUTH_UNEXPECTED);
    assert_string_equal(detail, "AUTH: unexpected status reply (redacted)");
    assert_int_equal(scripted_auth(":1\r\n", "app", "s3cr3t-pw", detail, sizeof(detail), NULL, 0),
                     RESP_AUTH_UNEXPECTED);
    assert_int_equal(scripted_auth("+QUEUED\r\n", "app", "s3cr3t-pw", detail, sizeof(detail),
                                   NULL, 0),
                     RESP_AUTH_UNEXPECTED);

    /* The server hangs up before answering, or mid-way, or speaks garbage. */
    assert_int_equal(scripted_auth("", "app", "s3cr3t-pw", detail, sizeof(detail), NULL, 0),
                     RESP_AUTH_IO);
    assert_non_null(strstr(detail, "closed"));
    assert_int_equal(scripted_auth("+OK\r\n", "app", "s3cr3t-pw", detail, sizeof(detail), NULL, 0),
                     RESP_AUTH_IO);
    assert_int_equal(scripted_auth("HTTP/1.0 200 OK\r\n", "app", "s3cr3t-pw", detail,
                                   sizeof(detail), NULL, 0),
                     RESP_AUTH_IO);
    assert_non_null(strstr(detail, "protocol error"));

    /* detail may be NULL / 0 */
    struct secret *pw = secret_new_str("x");
    struct script *s;
    bool closed;
    struct resp_conn *c = script_conn("+OK\r\n+PONG\r\n", &s, &closed);
    assert_int_equal(resp_auth(c, NULL, pw, NULL, 0), RESP_AUTH_ACCEPTED);
    resp_close(c);
    c = script_conn("", &s, &closed);
    assert_int_equal(resp_auth(c, NULL, NULL, detail, sizeof(detail)), RESP_AUTH_UNEXPECTED);
    resp_close(c);
    assert_int_equal(resp_auth(NULL, NULL, pw, detail, sizeof(detail)), RESP_AUTH_IO);
    secret_free(pw);
}

static void test_command_secret_error_keeps_first_word_scripted(void **state) {
    static const char *argv[] = {"ACL", "SETUSER", "app", "<hunter2"};
    struct script *s;
    bool closed;
    struct resp_conn *c = script_conn(
        "-ERR Error in ACL SETUSER modifier '<hunter2': no such password\r\n"
        "-ERR Error in ACL SETUSER modifier '<hunter2': no such password\r\n"
        "-<hunter2 echoed first\r\n",
        &s, &closed);
    redisReply *r = NULL;

    assert_int_equal(resp_command(c, 4, argv, NULL, true, &r), 0);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_int_equal(r->len, 3);
    assert_string_equal(r->str, "ERR");
    assert_null(memmem(r->str, strlen("ERR Error in ACL SETUSER modifier '<hunter2'"),
                       "hunter2", 7));
    freeReplyObject(r);
    /* without secret_args the reply is whole */
    assert_int_equal(resp_command(c, 4, argv, NULL, false, &r), 0);
    assert_non_null(strstr(r->str, "hunter2"));
    freeReplyObject(r);
    /* an error whose first word is the secret argument */
    assert_int_equal(resp_command(c, 4, argv, NULL, true, &r), 0);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_string_equal(r->str, "(redacted)");
    assert_int_equal(r->len, 10);
    freeReplyObject(r);
    /* the script is exhausted: EOF is sticky */
    assert_int_equal(resp_command(c, 1, argv, NULL, false, &r), -ECONNRESET);
    assert_int_equal(resp_command(c, 1, argv, NULL, false, &r), -ECONNRESET);
    assert_non_null(strstr(resp_errstr(c), "closed"));
    assert_int_equal(resp_command(c, 0, argv, NULL, false, &r), -EINVAL);
    resp_close(c);
}

/* ------------------------------------------------------------------------------------
 * Real redis-server
 */

/* srv_open: no password, ACL users, a unix socket, ::1 when there; srv_pass: requirepass */
static struct redis_fixture fx = {
    .prefix = "rc-test-resp", .n = 2,
    .spec = { { .ipv6 = true, .unixsock = true }, { .ipv6 = true, .requirepass = "sekret-default" } },
};
static struct server *const srv_open = &fx.srv[0];
static struct server *const srv_pass = &fx.srv[1];

REDIS_FIXTURE_GROUP(fx)

static struct resp_conn *connect_to(const char *endpoint, uint64_t timeout) {
    struct endpoint ep;
    struct resp_conn *c = NULL;
    char err[256];
    int rc;

    assert_int_equal(endpoint_parse(endpoint, &ep, NULL), 0);
    rc = resp_connect(&ep, timeout, &c, err, sizeof(err));
    if (rc < 0)
        fail_msg("%s", err);
    return c;
}

static struct resp_conn *connect_port(uint16_t port) {
    char ep[64];

    snprintf(ep, sizeof(ep), "127.0.0.1:%u", (unsigned)port);
    return connect_to(ep, 2 * SEC);
}

/* Runs a command whose reply must be +OK. */
static void must_ok(struct resp_conn *c, int argc, const char **argv, bool secret) {
    redisReply *r = NULL;

    assert_int_equal(resp_command(c, argc, argv, NULL, secret, &r), 0);
    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0)
        fail_msg("%s: unexpected reply type %d %s", argv[0], r->type, r->str ? r->str : "");
    freeReplyObject(r);
}

static enum resp_auth_result auth_on(uint16_t port, const char *user, const char *pw,
                                     char *detail, size_t dlen) {
    struct resp_conn *c = connect_port(port);
    struct secret *s = secret_new_str(pw);
    enum resp_auth_result res = resp_auth(c, user, s, detail, dlen);

    assert_null(strstr(detail, pw));
    secret_free(s);
    resp_close(c);
    return res;
}

static void test_redis_acl_user_accepted(void **state) {
    static const char *setuser[] = {"ACL", "SETUSER", "app", "on", ">app-pw-1", "~*", "+@all"};
    char detail[200];
    struct resp_conn *c;

    NEED_REDIS(&fx);
    c = connect_port(srv_open->port);
    must_ok(c, 7, setuser, true);
    resp_close(c);
    assert_int_equal(auth_on(srv_open->port, "app", "app-pw-1", detail, sizeof(detail)),
                     RESP_AUTH_ACCEPTED);
    assert_string_equal(detail, "");
}

static void test_redis_wrong_password_refused(void **state) {
    static const char *setuser[] = {"ACL", "SETUSER", "app2", "on", ">right-pw", "~*", "+@all"};
    static const char *disabled[] = {"ACL", "SETUSER", "off-user", "off", ">off-pw", "~*", "+@all"};
    char detail[200];
    struct resp_conn *c;

    NEED_REDIS(&fx);
    c = connect_port(srv_open->port);
    must_ok(c, 7, setuser, true);
    must_ok(c, 7, disabled, true);
    resp_close(c);
    assert_int_equal(auth_on(srv_open->port, "app2", "wrong-pw", detail, sizeof(detail)),
                     RESP_AUTH_REFUSED);
    assert_non_null(strstr(detail, "WRONGPASS"));
    assert_int_equal(auth_on(srv_open->port, "nosuchuser", "x-pw", detail, sizeof(detail)),
                     RESP_AUTH_REFUSED);
    assert_int_equal(auth_on(srv_open->port, "off-user", "off-pw", detail, sizeof(detail)),
                     RESP_AUTH_REFUSED);
}

static void test_redis_default_user_requirepass(void **state) {
    char detail[200];

    NEED_REDIS(&fx);
    assert_int_equal(auth_on(srv_pass->port, NULL, "sekret-default", detail, sizeof(detail)),
                     RESP_AUTH_ACCEPTED);
    assert_int_equal(auth_on(srv_pass->port, "default", "sekret-default", detail, sizeof(detail)),
                     RESP_AUTH_ACCEPTED);
    assert_int_equal(auth_on(srv_pass->port, NULL, "not-it", detail, sizeof(detail)),
                     RESP_AUTH_REFUSED);
}

static void test_redis_nopass_default_user(void **state) {
    char detail[200];

    NEED_REDIS(&fx);
    assert_int_equal(auth_on(srv_open->port, NULL, "some-pw", detail, sizeof(detail)),
                     RESP_AUTH_NOPASS);
    assert_non_null(strstr(detail, "no password configured"));
}

static void test_redis_noperm_ping_still_accepted(void **state) {
    static const char *setuser[] = {"ACL", "SETUSER", "noping", "on", ">np-pw", "~*", "+@all",
                                    "-ping"};
    char detail[200];
    struct resp_conn *c;

    NEED_REDIS(&fx);
    c = connect_port(srv_open->port);
    must_ok(c, 8, setuser, true);
    resp_close(c);
    assert_int_equal(auth_on(srv_open->port, "noping", "np-pw", detail, sizeof(detail)),
                     RESP_AUTH_ACCEPTED);
    assert_non_null(strstr(detail, "NOPERM"));
}

static void test_redis_secret_error_reply_keeps_first_word(void **state) {
    /* Redis 7.0 answers "-ERR Error in ACL SETUSER modifier '<hunter2-x': The password
     * you are trying to remove from the user does not exist". */
    static const char *argv[] = {"ACL", "SETUSER", "app", "<hunter2-x"};
    struct resp_conn *c;
    redisReply *r = NULL;

    NEED_REDIS(&fx);
    c = connect_port(srv_open->port);
    assert_int_equal(resp_command(c, 4, argv, NULL, false, &r), 0);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "hunter2-x"));   /* Redis does echo it */
    freeReplyObject(r);
    assert_int_equal(resp_command(c, 4, argv, NULL, true, &r), 0);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_string_equal(r->str, "ERR");
    assert_int_equal(r->len, 3);
    freeReplyObject(r);
    resp_close(c);
}

static void test_redis_command_error_reply_is_a_reply(void **state) {
    static const char *argv[] = {"NOSUCHCOMMAND", "a"};
    static const char *ping[] = {"PING"};
    struct resp_conn *c;
    redisReply *r = NULL;

    NEED_REDIS(&fx);
    c = connect_port(srv_open->port);
    assert_int_equal(resp_command(c, 2, argv, NULL, false, &r), 0);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_true(strncmp(r->str, "ERR unknown command", 19) == 0);
    freeReplyObject(r);
    assert_int_equal(resp_command(c, 1, ping, NULL, false, &r), 0);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    assert_string_equal(resp_errstr(c), "");
    resp_close(c);
}

static void test_redis_oversize_reply_is_error(void **state) {
    static const char *get[] = {"GET", "big"};
    const size_t big = RESP_MAX_REPLY_BYTES + 1;
    char *value = malloc(big);
    const char *set[] = {"SET", "big", value};
    size_t setlen[] = {3, 3, big};
    struct resp_conn *c;
    redisReply *r = NULL;

    NEED_REDIS(&fx);
    assert_non_null(value);
    memset(value, 'v', big);
    c = connect_port(srv_open->port);
    assert_int_equal(resp_command(c, 3, set, setlen, false, &r), 0);
    assert_string_equal(r->str, "OK");
    freeReplyObject(r);
    r = NULL;
    assert_int_equal(resp_command(c, 2, get, NULL, false, &r), -EMSGSIZE);
    assert_null(r);
    assert_non_null(strstr(resp_errstr(c), "exceeds"));
    resp_close(c);
    free(value);
}

static void test_redis_server_hangup_is_sticky_error(void **state) {
    static const char *quit[] = {"QUIT"};
    static const char *ping[] = {"PING"};
    struct resp_conn *c;
    redisReply *r = NULL;
    int rc;

    NEED_REDIS(&fx);
    c = connect_port(srv_open->port);
    must_ok(c, 1, quit, false);
    rc = resp_command(c, 1, ping, NULL, false, &r);
    assert_true(rc == -ECONNRESET || rc == -EPIPE);
    assert_int_equal(resp_command(c, 1, ping, NULL, false, &r), rc);
    assert_string_not_equal(resp_errstr(c), "");
    resp_close(c);
}

static void test_connect_closed_port_fails_fast(void **state) {
    struct endpoint ep = {.kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = free_port()};
    struct resp_conn *c = NULL;
    char err[256], want[64];
    uint64_t t0 = rctime_mono_usec();

    assert_int_equal(resp_connect(&ep, 2 * SEC, &c, err, sizeof(err)), -ECONNREFUSED);
    assert_null(c);
    assert_true(rctime_mono_usec() - t0 < SEC / 2);
    snprintf(want, sizeof(want), "connect 127.0.0.1:%u: Connection refused", (unsigned)ep.port);
    assert_string_equal(err, want);
}

static void test_connect_missing_unix_socket(void **state) {
    struct endpoint ep;
    struct resp_conn *c = NULL;
    char err[256];

    assert_int_equal(endpoint_parse("unix:/nonexistent/redis-creds-test.sock", &ep, NULL), 0);
    assert_int_equal(resp_connect(&ep, SEC, &c, err, sizeof(err)), -ENOENT);
    assert_null(c);
    assert_string_equal(err, "connect unix:/nonexistent/redis-creds-test.sock: "
                             "No such file or directory");
}

static void test_silent_server_times_out_within_deadline(void **state) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct endpoint ep = {.kind = ENDPOINT_TCP, .host = "127.0.0.1"};
    struct resp_conn *c = NULL;
    struct secret *pw = secret_new_str("pw-timeout");
    static const char *ping[] = {"PING"};
    redisReply *r = NULL;
    char err[256], detail[200];
    const uint64_t timeout = 500000;
    uint64_t t0, elapsed;

    /* Listens, never accepts or reads: the kernel completes the handshake. */
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    ep.port = ntohs(sa.sin_port);

    assert_int_equal(resp_connect(&ep, timeout, &c, err, sizeof(err)), 0);
    t0 = rctime_mono_usec();
    assert_int_equal(resp_auth(c, "u", pw, detail, sizeof(detail)), RESP_AUTH_IO);
    elapsed = rctime_mono_usec() - t0;
    assert_non_null(strstr(detail, "timed out after 500 ms"));
    assert_true(elapsed >= timeout - 10000);
    assert_true(elapsed < timeout + 300000);
    /* sticky, and immediate */
    t0 = rctime_mono_usec();
    assert_int_equal(resp_command(c, 1, ping, NULL, false, &r), -ETIMEDOUT);
    assert_true(rctime_mono_usec() - t0 < 50000);
    resp_close(c);
    secret_free(pw);
    close(lfd);
}

static void test_redis_unix_socket_endpoint(void **state) {
    static const char *ping[] = {"PING"};
    char ep[200];
    struct resp_conn *c;
    redisReply *r = NULL;

    NEED_REDIS(&fx);
    snprintf(ep, sizeof(ep), "unix:%s", srv_open->sock);
    c = connect_to(ep, 2 * SEC);
    assert_int_equal(resp_command(c, 1, ping, NULL, false, &r), 0);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    resp_close(c);

    c = connect_to(ep, 2 * SEC);
    struct secret *pw = secret_new_str("whatever");
    char detail[200];
    assert_int_equal(resp_auth(c, NULL, pw, detail, sizeof(detail)), RESP_AUTH_NOPASS);
    secret_free(pw);
    resp_close(c);
}

static void test_redis_ipv6_loopback(void **state) {
    static const char *ping[] = {"PING"};
    char ep[64];
    struct resp_conn *c;
    redisReply *r = NULL;

    NEED_REDIS(&fx);
    if (!fx.ipv6) {
        print_message("::1 not available: skipped\n");
        skip();
    }
    snprintf(ep, sizeof(ep), "[::1]:%u", (unsigned)srv_open->port);
    c = connect_to(ep, 2 * SEC);
    assert_int_equal(resp_command(c, 1, ping, NULL, false, &r), 0);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    resp_close(c);
}

static void test_redis_localhost_name_resolves(void **state) {
    static const char *ping[] = {"PING"};
    char ep[64];
    struct resp_conn *c;
    redisReply *r = NULL;

    NEED_REDIS(&fx);
    /* "localhost" may resolve to ::1 first; the server listens there too when it can,
     * and otherwise the next address is tried. */
    snprintf(ep, sizeof(ep), "localhost:%u", (unsigned)srv_open->port);
    c = connect_to(ep, 2 * SEC);
    assert_int_equal(resp_command(c, 1, ping, NULL, false, &r), 0);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    resp_close(c);
}

static void test_auth_result_strings(void **state) {
    for (int r = RESP_AUTH_ACCEPTED; r <= RESP_AUTH_IO; r++) {
        const char *s = resp_auth_result_to_string((enum resp_auth_result)r);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown");
    }
    assert_string_equal(resp_auth_result_to_string((enum resp_auth_result)99), "unknown");
}


/* ------------------------------------------------------------------------------------
 * Cluster topology parsers
 */

/* CLUSTER SHARDS from Redis 7.0 with tls-cluster yes: "port" is the plaintext port,
 * "tls-port" the TLS one; a primary, its replica, and a failed node. */
static const char shards_reply[] =
    "*1\r\n"
    "*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*3\r\n"
    "*16\r\n$2\r\nid\r\n$3\r\nabc\r\n$4\r\nport\r\n:7001\r\n$8\r\ntls-port\r\n:17001\r\n"
    "$2\r\nip\r\n$8\r\n10.0.0.1\r\n$8\r\nendpoint\r\n$11\r\nredis-1.lan\r\n"
    "$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:5\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n"
    "*12\r\n$2\r\nid\r\n$3\r\ndef\r\n$8\r\ntls-port\r\n:17002\r\n"
    "$2\r\nip\r\n$3\r\n::1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n"
    "$4\r\nrole\r\n$7\r\nreplica\r\n$6\r\nhealth\r\n$7\r\nloading\r\n"
    "*10\r\n$4\r\nport\r\n:7003\r\n$2\r\nip\r\n$0\r\n\r\n"
    "$4\r\nrole\r\n$7\r\nreplica\r\n$6\r\nhealth\r\n$6\r\nfailed\r\n$7\r\nunknown\r\n$1\r\nx\r\n";

static void test_cluster_parse_shards(void **state) {
    struct resp_cluster_node n[4];
    redisReply *r = parse_str(shards_reply);

    assert_int_equal(resp_cluster_parse_shards(r, n, 4), 3);
    assert_string_equal(n[0].host, "redis-1.lan");   /* "endpoint" wins over "ip" */
    assert_int_equal(n[0].port, 7001);
    assert_int_equal(n[0].tls_port, 17001);
    assert_true(n[0].primary);
    assert_false(n[0].failed);
    assert_string_equal(n[1].host, "::1");           /* endpoint "?": the ip */
    assert_int_equal(n[1].port, 0);
    assert_int_equal(n[1].tls_port, 17002);
    assert_false(n[1].primary);
    assert_false(n[1].failed);                        /* loading still counts */
    assert_string_equal(n[2].host, "");               /* knows no address at all */
    assert_true(n[2].failed);
    assert_int_equal(resp_cluster_parse_shards(r, n, 2), -E2BIG);
    freeReplyObject(r);
}

static void test_cluster_parse_shards_rejects_bad_shapes(void **state) {
    static const char *const bad[] = {
        "+OK\r\n",
        "*1\r\n:1\r\n",                                                    /* shard not a map */
        "*1\r\n*2\r\n$5\r\nslots\r\n*0\r\n",                               /* no nodes */
        "*1\r\n*2\r\n$5\r\nnodes\r\n*1\r\n*2\r\n$4\r\nport\r\n:1\r\n",     /* no role */
        "*1\r\n*2\r\n$5\r\nnodes\r\n*1\r\n*4\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
        "$4\r\nport\r\n:70000\r\n",                                        /* port range */
        "*1\r\n*2\r\n$5\r\nnodes\r\n*1\r\n*6\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
        "$4\r\nport\r\n:1\r\n$2\r\nip\r\n$7\r\nbad/ho!\r\n",               /* bad host */
        "*1\r\n*2\r\n$5\r\nnodes\r\n*1\r\n*4\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
        "$4\r\nport\r\n:0\r\n",                                            /* no port */
        "*1\r\n*2\r\n$5\r\nnodes\r\n*1\r\n*3\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$4\r\nport\r\n",
    };
    struct resp_cluster_node n[4];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = parse_str(bad[i]);
        if (resp_cluster_parse_shards(r, n, 4) != -EPROTO)
            fail_msg("bad shards reply %zu accepted", i);
        freeReplyObject(r);
    }
    assert_int_equal(resp_cluster_parse_shards(NULL, n, 4), -EPROTO);
}

static void test_cluster_parse_slots_dedups_and_marks_primaries(void **state) {
    /* two ranges on the same primary (one with the 7.0 metadata map), a replica */
    static const char reply[] =
        "*2\r\n"
        "*4\r\n:0\r\n:100\r\n*4\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n*0\r\n"
        "*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$2\r\nid\r\n"
        "*3\r\n:200\r\n:300\r\n*2\r\n$0\r\n\r\n:7001\r\n";
    static const char twice[] =
        "*2\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n*3\r\n:2\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n";
    struct resp_cluster_node n[4];
    redisReply *r = parse_str(reply);

    assert_int_equal(resp_cluster_parse_slots(r, n, 4), 3);
    assert_string_equal(n[0].host, "127.0.0.1");
    assert_int_equal(n[0].port, 7001);
    assert_int_equal(n[0].tls_port, 7001);
    assert_true(n[0].primary);
    assert_int_equal(n[1].port, 7004);
    assert_false(n[1].primary);
    assert_string_equal(n[2].host, "");   /* "" = the address that was asked */
    assert_true(n[2].primary);
    freeReplyObject(r);

    r = parse_str(twice);
    assert_int_equal(resp_cluster_parse_slots(r, n, 4), 1);
    assert_int_equal(resp_cluster_parse_slots(r, n, 1), 1);   /* duplicates do not count */
    freeReplyObject(r);

    r = parse_str("*1\r\n*2\r\n:0\r\n:1\r\n");                   /* a range without nodes */
    assert_int_equal(resp_cluster_parse_slots(r, n, 4), -EPROTO);
    freeReplyObject(r);
    r = parse_str("*0\r\n");
    assert_int_equal(resp_cluster_parse_slots(r, n, 4), 0);
    freeReplyObject(r);
}

/* For callers that read replies themselves (rnet): an error reply to a command carrying
 * a secret keeps only its first word; other replies are left alone. */
static void test_redact_error_keeps_only_the_first_word(void **state) {
    const char *argv[] = { "ACL", "SETUSER", "app", "<hunter2-secret" };
    redisReply *r = parse_str("-ERR Error in ACL SETUSER modifier '<hunter2-secret': no such "
                              "passwords\r\n");
    redisReply *ok = parse_str("+OK\r\n");
    redisReply *echo = parse_str("-hunter2-secret was wrong\r\n");

    (void)state;
    resp_redact_error(r, 4, argv, NULL);
    assert_int_equal(r->len, 3);
    assert_string_equal(r->str, "ERR");
    resp_reply_wipe_free(r);
    resp_redact_error(ok, 4, argv, NULL);
    assert_string_equal(ok->str, "OK");
    resp_reply_wipe_free(ok);
    /* a first word that is not an error code (here: the secret itself) is not shown */
    resp_redact_error(echo, 4, argv, NULL);
    assert_string_equal(echo->str, "(redacted)");
    resp_reply_wipe_free(echo);
    resp_reply_wipe_free(NULL);
    resp_redact_error(NULL, 4, argv, NULL);

    /* a long password shaped like an error code: its first 32 bytes are a "word" that
     * does not hold the whole argument, yet is a piece of it */
    const char *auth[] = { "AUTH", "app", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_LONG-PW" };
    redisReply *cut = parse_str("-ABCDEFGHIJKLMNOPQRSTUVWXYZ012345 is not valid\r\n");
    resp_redact_error(cut, 3, auth, NULL);
    assert_string_equal(cut->str, "(redacted)");
    resp_reply_wipe_free(cut);
    redisReply *code = parse_str("-WRONGPASS invalid username-password pair\r\n");
    resp_redact_error(code, 3, auth, NULL);
    assert_string_equal(code->str, "WRONGPASS");
    resp_reply_wipe_free(code);
}

/* A server (or a proxy in front of one) that answers a secret-carrying command with a
 * bulk string or a status echoing it: cut like an error, so no caller can quote it. */
static void test_reply_text_keeps_the_printable_start(void **state) {
    char buf[200];
    redisReply *r = parse_str("-ERR unknown subcommand\r\n");
    resp_reply_text(r, buf, sizeof buf);
    assert_string_equal(buf, "ERR unknown subcommand");
    resp_reply_text(r, buf, 4);
    assert_string_equal(buf, "ERR");   /* cut to the buffer */
    freeReplyObject(r);
    r = parse_str("$7\r\nab\x01" "cdef\r\n");
    resp_reply_text(r, buf, sizeof buf);
    assert_string_equal(buf, "ab");    /* up to the first unprintable byte */
    freeReplyObject(r);
    r = parse_str(":42\r\n");
    resp_reply_text(r, buf, sizeof buf);
    assert_string_equal(buf, "");      /* no text */
    freeReplyObject(r);
    char longer[300];
    memset(longer, 'x', 200);
    snprintf(longer + 200, sizeof longer - 200, "\r\n");
    char wire[320];
    snprintf(wire, sizeof wire, "+%s", longer);
    r = parse_str(wire);
    resp_reply_text(r, buf, sizeof buf);
    assert_int_equal(strlen(buf), 120);   /* at most 120 bytes */
    freeReplyObject(r);
    resp_reply_text(NULL, buf, sizeof buf);
    assert_string_equal(buf, "");
}

static void test_redact_error_also_cuts_bulk_and_status_echoes(void **state) {
    const char *argv[] = { "ACL", "SETUSER", "app", ">hunter2-secret" };
    redisReply *bulk = parse_str("$31\r\nACL SETUSER app >hunter2-secret\r\n");
    redisReply *status = parse_str("+>hunter2-secret\r\n");
    redisReply *ok = parse_str("+OK\r\n");

    (void)state;
    resp_redact_error(bulk, 4, argv, NULL);
    assert_int_equal(bulk->type, REDIS_REPLY_STRING);
    assert_null(memmem(bulk->str, bulk->len, "hunter2", 7));
    resp_reply_wipe_free(bulk);
    resp_redact_error(status, 4, argv, NULL);
    assert_null(strstr(status->str, "hunter2"));
    assert_string_equal(status->str, "(redacted)");
    resp_reply_wipe_free(status);
    resp_redact_error(ok, 4, argv, NULL);
    assert_int_equal(ok->type, REDIS_REPLY_STATUS);
    assert_string_equal(ok->str, "OK");
    resp_reply_wipe_free(ok);
}

/* PING is pipelined right after AUTH: a server that answers AUTH with +OK and then
 * echoes the password as PING's error (a desynchronised proxy) must not get it into the
 * detail. An error code (NOPERM, LOADING, ...) is still named. */
static void test_ping_judge_names_error_codes_only(void **state) {
    char detail[128];

    (void)state;
    resp_ping_judge(parse_str("-s3cret-pw-echoed is not a command\r\n"), detail, sizeof detail);
    assert_null(strstr(detail, "s3cret"));
    assert_non_null(strstr(detail, "PING after AUTH"));
    resp_ping_judge(parse_str("-LOADING Redis is loading the dataset in memory\r\n"), detail,
                    sizeof detail);
    assert_string_equal(detail, "PING after AUTH: LOADING");
    resp_ping_judge(parse_str("+PONG\r\n"), detail, sizeof detail);
    assert_string_equal(detail, "");
}

int main(void) {
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_reader_simple_string),
        cmocka_unit_test(test_redact_error_keeps_only_the_first_word),
        cmocka_unit_test(test_redact_error_also_cuts_bulk_and_status_echoes),
        cmocka_unit_test(test_reply_text_keeps_the_printable_start),
        cmocka_unit_test(test_reader_caps_the_objects_of_one_reply),
        cmocka_unit_test(test_ping_judge_names_error_codes_only),
        cmocka_unit_test(test_reader_error),
        cmocka_unit_test(test_reader_integer),
        cmocka_unit_test(test_reader_bulk_keeps_binary),
        cmocka_unit_test(test_reader_nil_bulk_and_nil_array),
        cmocka_unit_test(test_reader_nested_arrays),
        cmocka_unit_test(test_reader_byte_by_byte),
        cmocka_unit_test(test_reader_several_replies_in_one_feed),
        cmocka_unit_test(test_reader_oversize_reply_is_error),
        cmocka_unit_test(test_reader_cap_is_per_reply),
        cmocka_unit_test(test_reader_huge_array_count_is_error_without_allocation),
        cmocka_unit_test(test_reader_nested_array_over_cap_frees_partial),
        cmocka_unit_test(test_reader_garbage_is_sticky_protocol_error),
        cmocka_unit_test(test_reader_bad_lengths_are_protocol_errors),
        cmocka_unit_test(test_reader_errstr_empty_without_error_and_free_null),
        cmocka_unit_test(test_endpoint_parse_good),
        cmocka_unit_test(test_endpoint_parse_bad),
        cmocka_unit_test(test_auth_judgement_scripted),
        cmocka_unit_test(test_command_secret_error_keeps_first_word_scripted),
        cmocka_unit_test(test_auth_result_strings),
        cmocka_unit_test(test_cluster_parse_shards),
        cmocka_unit_test(test_cluster_parse_shards_rejects_bad_shapes),
        cmocka_unit_test(test_cluster_parse_slots_dedups_and_marks_primaries),
    };
    const struct CMUnitTest net[] = {
        cmocka_unit_test(test_connect_closed_port_fails_fast),
        cmocka_unit_test(test_connect_missing_unix_socket),
        cmocka_unit_test(test_silent_server_times_out_within_deadline),
        cmocka_unit_test(test_redis_acl_user_accepted),
        cmocka_unit_test(test_redis_wrong_password_refused),
        cmocka_unit_test(test_redis_default_user_requirepass),
        cmocka_unit_test(test_redis_nopass_default_user),
        cmocka_unit_test(test_redis_noperm_ping_still_accepted),
        cmocka_unit_test(test_redis_secret_error_reply_keeps_first_word),
        cmocka_unit_test(test_redis_command_error_reply_is_a_reply),
        cmocka_unit_test(test_redis_oversize_reply_is_error),
        cmocka_unit_test(test_redis_server_hangup_is_sticky_error),
        cmocka_unit_test(test_redis_unix_socket_endpoint),
        cmocka_unit_test(test_redis_ipv6_loopback),
        cmocka_unit_test(test_redis_localhost_name_resolves),
    };
    int failed = 0;

    failed += cmocka_run_group_tests_name("resp_pure", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("resp_net", net, redis_setup, redis_teardown);
    return failed ? 1 : 0;
}
