/* Unit tests of common/http against a tiny HTTP/1.1 server thread on loopback. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"

/* The server answers each request on a connection with `reply` (kept alive unless the
 * reply says Connection: close), counts connections, and records the last request. */
struct server {
    int lfd;
    int port;
    pthread_t th;
    const char *reply;
    size_t reply_len;
    int silent;               /* accept, read, never answer */
    int connections;
    char last_request[8192];
    volatile int stop;
};

static void *serve(void *arg) {
    struct server *s = arg;
    while (!s->stop) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            if (s->stop)
                break;
            continue;
        }
        s->connections++;
        for (;;) {
            char buf[8192];
            size_t got = 0;
            ssize_t n;
            /* Read one request: headers, then Content-Length bytes. */
            while (got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0) {
                got += (size_t)n;
                buf[got] = '\0';
                char *eoh = strstr(buf, "\r\n\r\n");
                if (eoh) {
                    char *cl = strcasestr(buf, "Content-Length:");
                    size_t body = cl ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
                    if (got >= (size_t)(eoh + 4 - buf) + body)
                        break;
                }
            }
            if (got == 0)
                break;
            memcpy(s->last_request, buf, got + 1);
            if (s->silent) {
                for (int i = 0; i < 300 && !s->stop; i++)
                    usleep(10000);
                break;
            }
            if (write(fd, s->reply, s->reply_len) < 0 || strstr(s->reply, "Connection: close"))
                break;
        }
        close(fd);
    }
    return NULL;
}

static struct server *server_start(const char *reply) {
    struct server *s = calloc(1, sizeof *s);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    s->reply = reply;
    s->reply_len = strlen(reply);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, serve, s);
    return s;
}

static void server_stop(struct server *s) {
    s->stop = 1;
    /* shutdown() wakes a blocked accept(); the loop then sees stop. */
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->lfd);
    free(s);
}

static struct http_client *client_for(struct server *s, uint64_t timeout_usec) {
    char url[64], err[256];
    struct http_client *c = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s->port);
    assert_int_equal(http_client_new(url, NULL, timeout_usec, &c, err, sizeof err), 0);
    return c;
}

static void test_get_returns_status_body_and_headers(void **st) {
    struct server *s = server_start("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                    "X-Thing:  spaced value \r\nContent-Length: 11\r\n\r\n{\"a\":\"bcd\"}");
    struct http_client *c = client_for(s, 2000000);
    struct http_response r;
    char err[256];
    struct http_header h[] = { { "X-Vault-Token", "tok-SECRET", true } };
    struct http_request req = { .method = "GET", .url = "/v1/secret/data/x", .headers = h, .n_headers = 1 };
    assert_int_equal(http_request(c, &req, &r, err, sizeof err), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 11);
    assert_string_equal(r.body, "{\"a\":\"bcd\"}");
    assert_string_equal(http_response_header(&r, "content-type"), "application/json");
    assert_string_equal(http_response_header(&r, "X-THING"), "spaced value");
    assert_null(http_response_header(&r, "missing"));
    assert_non_null(strstr(s->last_request, "GET /v1/secret/data/x HTTP/1.1"));
    assert_non_null(strstr(s->last_request, "X-Vault-Token: tok-SECRET"));
    http_response_clear(&r);
    http_client_free(c);
    server_stop(s);
}

static void test_connection_is_reused_across_requests(void **st) {
    struct server *s = server_start("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    struct http_client *c = client_for(s, 2000000);
    char err[256];
    for (int i = 0; i < 5; i++) {
        struct http_response r;
        struct http_request req = { .url = "/ping" };
        assert_int_equal(http_request(c, &req, &r, err, sizeof err), 0);
        assert_int_equal(r.status, 200);
        http_response_clear(&r);
    }
    assert_int_equal(s->connections, 1);
    assert_int_equal(http_client_connections(c), 1);
    http_client_free(c);
    server_stop(s);
}

static void test_post_sends_body(void **st) {
    struct server *s = server_start("HTTP/1.1 204 No Content\r\n\r\n");
    struct http_client *c = client_for(s, 2000000);
    struct http_response r;
    char err[256];
    const char *body = "{\"role_id\":\"r\",\"secret_id\":\"s\"}";
    struct http_request req = { .method = "POST", .url = "/v1/auth/approle/login", .body = body,
                                .body_len = strlen(body) };
    assert_int_equal(http_request(c, &req, &r, err, sizeof err), 0);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    assert_non_null(r.body);
    assert_non_null(strstr(s->last_request, "POST /v1/auth/approle/login"));
    assert_non_null(strstr(s->last_request, body));
    assert_null(strstr(s->last_request, "Expect: 100"));
    http_response_clear(&r);
    http_client_free(c);
    server_stop(s);
}

static void test_redirect_is_not_followed(void **st) {
    struct server *s = server_start("HTTP/1.1 307 Temporary Redirect\r\nLocation: https://evil.example/v1/x\r\n"
                                    "Content-Length: 0\r\n\r\n");
    struct http_client *c = client_for(s, 2000000);
    struct http_response r;
    char err[256];
    struct http_request req = { .url = "/v1/x" };
    assert_int_equal(http_request(c, &req, &r, err, sizeof err), 0);
    assert_int_equal(r.status, 307);
    assert_string_equal(http_response_header(&r, "location"), "https://evil.example/v1/x");
    http_response_clear(&r);
    http_client_free(c);
    server_stop(s);
}

static void test_body_over_cap_is_an_error_even_when_chunked(void **st) {
    /* 3 chunks of 1000 bytes, cap 2500. */
    static char reply[4096];
    char chunk[1001];
    memset(chunk, 'x', 1000);
    chunk[1000] = '\0';
    int n = snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++)
        n += snprintf(reply + n, sizeof reply - (size_t)n, "3e8\r\n%s\r\n", chunk);
    snprintf(reply + n, sizeof reply - (size_t)n, "0\r\n\r\n");
    struct server *s = server_start(reply);
    struct http_client *c = client_for(s, 2000000);
    struct http_response r;
    char err[256];
    struct http_request req = { .url = "/big", .max_body = 2500 };
    assert_int_equal(http_request(c, &req, &r, err, sizeof err), -EMSGSIZE);
    assert_non_null(strstr(err, "larger than 2500"));
    /* Under the cap it works. */
    req.max_body = 3000;
    assert_int_equal(http_request(c, &req, &r, err, sizeof err), 0);
    assert_int_equal(r.body_len, 3000);
    http_response_clear(&r);
    http_client_free(c);
    server_stop(s);
}

static void test_silent_server_times_out(void **st) {
    struct server *s = server_start("");
    s->silent = 1;
    struct http_client *c = client_for(s, 300000);
    struct http_response r;
    char err[256];
    struct timespec a, b;
    struct http_request req = { .url = "/hang" };
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(http_request(c, &req, &r, err, sizeof err), -ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double el = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(el >= 0.25 && el < 2.0);
    http_client_free(c);
    server_stop(s);
}

static void test_closed_port_is_connection_refused(void **st) {
    struct server *s = server_start("");
    int port = s->port;
    server_stop(s);
    char url[64], err[256];
    struct http_client *c = NULL;
    struct http_response r;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    assert_int_equal(http_client_new(url, NULL, 1000000, &c, err, sizeof err), 0);
    struct http_request req = { .url = "/" };
    assert_int_equal(http_request(c, &req, &r, err, sizeof err), -ECONNREFUSED);
    http_client_free(c);
}

static void test_plain_http_only_to_loopback_or_imds(void **st) {
    char err[256];
    assert_int_equal(http_url_check("https://vault.example.com:8200", err, sizeof err), 0);
    assert_int_equal(http_url_check("http://127.0.0.1:8200", err, sizeof err), 0);
    assert_int_equal(http_url_check("http://127.9.9.9", err, sizeof err), 0);
    assert_int_equal(http_url_check("http://localhost:1234/x", err, sizeof err), 0);
    assert_int_equal(http_url_check("http://[::1]:8200", err, sizeof err), 0);
    assert_int_equal(http_url_check("http://169.254.169.254/metadata", err, sizeof err), 0);
    assert_int_equal(http_url_check("http://vault.example.com:8200", err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "plain http"));
    assert_int_equal(http_url_check("http://10.0.0.1", err, sizeof err), -EINVAL);
    assert_int_equal(http_url_check("http://127.0.0.1.evil.com", err, sizeof err), -EINVAL);
    assert_int_equal(http_url_check("ftp://127.0.0.1/", err, sizeof err), -EINVAL);
    assert_int_equal(http_url_check("not a url", err, sizeof err), -EINVAL);
    struct http_client *c = NULL;
    assert_int_equal(http_client_new("http://vault.internal", NULL, 0, &c, err, sizeof err), -EINVAL);
    assert_null(c);
    /* Link-local (App Service's identity endpoint on Linux) only with the explicit flag. */
    assert_int_equal(http_url_check("http://169.254.129.2:8081/msi/token", err, sizeof err), -EINVAL);
    assert_int_equal(http_url_check_flags("http://169.254.129.2:8081/msi/token", HTTP_ALLOW_LINK_LOCAL,
                                          err, sizeof err), 0);
    assert_int_equal(http_url_check_flags("http://169.255.0.1/", HTTP_ALLOW_LINK_LOCAL, err, sizeof err), -EINVAL);
    assert_int_equal(http_url_check_flags("http://10.0.0.1/", HTTP_ALLOW_LINK_LOCAL, err, sizeof err), -EINVAL);
    assert_int_equal(http_client_new_flags("http://169.254.129.2:8081", NULL, 0, HTTP_ALLOW_LINK_LOCAL, &c,
                                           err, sizeof err), 0);
    http_client_free(c);
}

static void test_absolute_url_to_plain_http_elsewhere_is_refused(void **st) {
    struct server *s = server_start("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    struct http_client *c = client_for(s, 1000000);
    struct http_response r;
    char err[256];
    struct http_request req = { .url = "http://vault.example.com/v1/x" };
    assert_int_equal(http_request(c, &req, &r, err, sizeof err), -EINVAL);
    http_client_free(c);
    server_stop(s);
}

static void test_same_origin(void **st) {
    assert_true(http_same_origin("https://v.example.com/a?x=1", "https://V.EXAMPLE.com:443/b"));
    assert_false(http_same_origin("https://v.example.com/a", "https://v.example.com:8443/a"));
    assert_false(http_same_origin("https://v.example.com/a", "http://v.example.com/a"));
    assert_false(http_same_origin("https://v.example.com/a", "https://evil.example.com/a"));
    assert_false(http_same_origin("https://v.example.com/a", "garbage"));
}

static void test_retry_after_parses_seconds_and_dates(void **st) {
    uint64_t u;
    assert_int_equal(http_retry_after_parse("120", &u), 0);
    assert_int_equal(u, 120000000ULL);
    assert_int_equal(http_retry_after_parse(" 0 ", &u), 0);
    assert_int_equal(u, 0);
    assert_int_equal(http_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", &u), 0);
    assert_int_equal(u, 0);   /* in the past */
    assert_int_equal(http_retry_after_parse("soon", &u), -EINVAL);
    assert_int_equal(http_retry_after_parse("-5", &u), -EINVAL);
    assert_int_equal(http_retry_after_parse("12abc", &u), -EINVAL);
}

static void test_free_of_null_is_null(void **st) {
    assert_null(http_client_free(NULL));
    http_response_clear(NULL);
}

int main(void) {
    http_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_returns_status_body_and_headers),
        cmocka_unit_test(test_connection_is_reused_across_requests),
        cmocka_unit_test(test_post_sends_body),
        cmocka_unit_test(test_redirect_is_not_followed),
        cmocka_unit_test(test_body_over_cap_is_an_error_even_when_chunked),
        cmocka_unit_test(test_silent_server_times_out),
        cmocka_unit_test(test_closed_port_is_connection_refused),
        cmocka_unit_test(test_plain_http_only_to_loopback_or_imds),
        cmocka_unit_test(test_absolute_url_to_plain_http_elsewhere_is_refused),
        cmocka_unit_test(test_same_origin),
        cmocka_unit_test(test_retry_after_parses_seconds_and_dates),
        cmocka_unit_test(test_free_of_null_is_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
