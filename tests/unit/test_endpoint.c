/* Unit tests for common/endpoint.c: the one parser of the endpoint grammar. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "endpoint.h"

static void test_good_endpoints_parse_and_format_back(void **state) {
    static const struct {
        const char *in, *host, *path;
        unsigned port;
    } good[] = {
        { "127.0.0.1:6379", "127.0.0.1", NULL, 6379 },
        { "redis-1.internal:65535", "redis-1.internal", NULL, 65535 },
        { "h_1:1", "h_1", NULL, 1 },
        { "[::1]:1", "::1", NULL, 1 },
        { "[2001:db8::7]:6380", "2001:db8::7", NULL, 6380 },
        { "[fe80::1%eth0]:6379", "fe80::1%eth0", NULL, 6379 },
        { "unix:/run/redis/redis.sock", NULL, "/run/redis/redis.sock", 0 },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct endpoint ep;
        char buf[300];
        const char *why = NULL;
        assert_int_equal(endpoint_parse(good[i].in, &ep, &why), 0);
        assert_null(why);
        if (good[i].host) {
            assert_int_equal(ep.kind, ENDPOINT_TCP);
            assert_string_equal(ep.host, good[i].host);
            assert_int_equal(ep.port, good[i].port);
        } else {
            assert_int_equal(ep.kind, ENDPOINT_UNIX);
            assert_string_equal(ep.path, good[i].path);
        }
        assert_string_equal(endpoint_format(&ep, buf, sizeof buf), good[i].in);
    }
}

static void test_longest_host_and_path_that_fit(void **state) {
    struct endpoint ep;
    char host[300], path[200] = "unix:/";
    memset(host, 'a', 253);
    memcpy(host + 253, ":80", 4);
    assert_int_equal(endpoint_parse(host, &ep, NULL), 0);
    assert_int_equal(strlen(ep.host), 253);
    host[0] = 'b';
    memmove(host + 1, host, 257);   /* 254 characters of host */
    const char *why = NULL;
    assert_int_equal(endpoint_parse(host, &ep, &why), -EINVAL);
    assert_string_equal(why, "has a host name longer than 253 characters");
    memset(path + 6, 'p', 106);
    path[112] = '\0';
    assert_int_equal(endpoint_parse(path, &ep, NULL), 0);
    assert_int_equal(strlen(ep.path), 107);
    path[112] = 'p';
    path[113] = '\0';
    assert_int_equal(endpoint_parse(path, &ep, &why), -EINVAL);
    assert_string_equal(why, "has a socket path too long for a unix socket");
}

/* Each bad form with the reason the configuration check prints. */
static void test_bad_endpoints_say_why(void **state) {
    static const struct {
        const char *in, *why;
    } bad[] = {
        { "", "is empty" },
        { "h :1", "contains a space or control character" },
        { "host:1\n", "contains a space or control character" },
        { "unix:/a\nb", "contains a space or control character" },
        { "redis", "needs a port (host:port)" },
        { "unix", "needs a port (host:port)" },
        { "host:", "has a bad port (1..65535)" },
        { ":6379", "needs a host (host:port)" },
        { "h:0", "has a bad port (1..65535)" },
        { "h:65536", "has a bad port (1..65535)" },
        { "h:-1", "has a bad port (1..65535)" },
        { "h:+1", "has a bad port (1..65535)" },
        { "h:63x", "has a bad port (1..65535)" },
        { "h:123456", "has a bad port (1..65535)" },
        { "h:0x10", "has a bad port (1..65535)" },
        { "::1:6379", "has an IPv6 address without brackets (use [address]:port)" },
        { "a:b:c", "has an IPv6 address without brackets (use [address]:port)" },
        { "::1", "has an IPv6 address without brackets (use [address]:port)" },
        { "[::1]", "needs a port ([address]:port)" },
        { "[::1]6379", "needs a port ([address]:port)" },
        { "[::1]:", "has a bad port (1..65535)" },
        { "[::1]:99999", "has a bad port (1..65535)" },
        { "[]:1", "is not [address]:port" },
        { "[::1:6379", "is not [address]:port" },
        { "[notv6]:1", "has a bad IPv6 address in brackets" },
        { "[1.2.3.4]:1", "has a bad IPv6 address in brackets" },
        { "[::1%]:1", "has a bad IPv6 address in brackets" },
        { "h\xc3\xa9:1", "has a bad host name" },
        { "a/b:1", "has a bad host name" },
        { "unix:", "needs an absolute socket path (unix:/run/redis/redis.sock)" },
        { "unix:redis.sock", "needs an absolute socket path (unix:/run/redis/redis.sock)" },
        { "unix:./x", "needs an absolute socket path (unix:/run/redis/redis.sock)" },
        { "/run/redis/redis.sock",
          "needs unix: in front of a socket path (unix:/run/redis/redis.sock)" },
        /* A URL is not "an IPv6 address without brackets" (issue 14): say what to write. */
        { "redis://127.0.0.1:6379", "is a URL: write host:port without \"redis://\"" },
        { "rediss://cache.example:6380",
          "is a URL: write host:port without \"rediss://\", and set tls = true" },
        { "tcp://h:1", "is a URL: write host:port, [address]:port or unix:/path" },
    };
    struct endpoint ep, sentinel;
    memset(&sentinel, 0x5a, sizeof sentinel);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        ep = sentinel;
        if (endpoint_parse(bad[i].in, &ep, &why) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i].in);
        if (!why || strcmp(why, bad[i].why) != 0)
            fail_msg("\"%s\": said \"%s\", want \"%s\"", bad[i].in, why ? why : "(null)", bad[i].why);
        assert_memory_equal(&ep, &sentinel, sizeof ep);   /* untouched on failure */
    }
    assert_int_equal(endpoint_parse(NULL, &ep, NULL), -EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_endpoints_parse_and_format_back),
        cmocka_unit_test(test_longest_host_and_path_that_fit),
        cmocka_unit_test(test_bad_endpoints_say_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
