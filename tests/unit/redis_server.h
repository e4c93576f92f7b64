/* redis_server: real redis-server processes for unit tests (test_resp, test_rnet).
 *
 * A server is a child of the test program with PR_SET_PDEATHSIG(SIGKILL), so it dies with
 * the test even if a sanitizer aborts the run; stop it in the group teardown (and from
 * atexit() for safety). It listens on 127.0.0.1 (and ::1 when asked) on a free port, with
 * no persistence, its files in `dir`. Set RESP_TEST_VERBOSE to see its output.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define REDIS_SERVER "/usr/bin/redis-server"

struct server {
    pid_t pid;
    uint16_t port;
    uint16_t tls_port;       /* with certdir: TLS here, plaintext on port */
    char sock[108];
    struct {                 /* the command line's strings */
        char port[8], tls_port[8], cert[256], key[256], ca[256];
    } args;
};

struct server_opts {
    bool ipv6;               /* listen on ::1 too */
    const char *unixsock;    /* NULL: none */
    const char *requirepass; /* NULL: none */
    const char *certdir;     /* make_certs()'s files: a TLS port too (no client certs) */
};

/* A loopback TCP port nobody listens on right now. */
uint16_t free_port(void);
bool can_bind_ipv6_loopback(void);
/* Starts a server (unixsock, requirepass: NULL for none) and waits until it answers.
 * 0, or -1 after three tries. */
int start_server(struct server *s, const char *dir, bool ipv6, const char *unixsock,
                 const char *requirepass);
int start_server_with(struct server *s, const char *dir, const struct server_opts *o);
/* A CA (ca.crt) and a server certificate it signed (server.crt, server.key) for
 * IP:127.0.0.1 and DNS:localhost, in dir, made with /usr/bin/openssl. 0, or -1 (no
 * openssl). remove_certs() deletes them again. */
int make_certs(const char *dir);
void remove_certs(const char *dir);
void stop_server(struct server *s);   /* NULL-safe: a server never started is left alone */
/* A fresh directory for the servers' files, under $REDIS_CREDS_TEST_TMP (when short
 * enough for unix socket paths) or /tmp. 0 or -1. */
int server_tmpdir(char *buf, size_t size, const char *prefix);

/* In a cmocka test: skips it, saying why, when the group setup found no redis-server. */
#define SKIP_WITHOUT_REDIS(have)                                      \
    do {                                                              \
        if (!(have)) {                                                \
            print_message("redis-server not available: skipped\n"); \
            skip();                                                   \
        }                                                             \
    } while (0)
