/* redis_server: real redis-server processes for unit tests (test_resp, test_rnet,
 * test_rotate, test_tls, ...).
 *
 * Most tests want a fixture: a set of servers in one fresh directory, started by the cmocka
 * group setup (redis_fixture_start), stopped by its teardown (redis_fixture_stop), and
 * NEED_REDIS(&fixture) at the top of each test that needs them, which skips the test when
 * /usr/bin/redis-server (or, for TLS, /usr/bin/openssl) is not installed.
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

/* ---- Fixture: the servers of one test program ---- */

#define REDIS_FIXTURE_MAX 4

/* The cmocka group setup and teardown of a program whose tests share the fixture `fx`:
 * static redis_setup() and redis_teardown(), for cmocka_run_group_tests(). */
#define REDIS_FIXTURE_GROUP(fx)                                                                 \
    static int redis_setup(void **state_) {                                                     \
        (void)state_;                                                                           \
        return redis_fixture_start(&(fx));                                                      \
    }                                                                                           \
    static int redis_teardown(void **state_) {                                                  \
        (void)state_;                                                                           \
        redis_fixture_stop(&(fx));                                                              \
        return 0;                                                                               \
    }

struct redis_fixture_server {
    bool ipv6;               /* listen on ::1 too, when this machine can (fixture.ipv6) */
    bool unixsock;           /* a unix socket in the fixture's dir, path in srv[i].sock */
    bool tls;                /* a TLS port (srv[i].tls_port) with certificates made in dir */
    const char *requirepass; /* NULL: none */
};

struct redis_fixture {
    const char *prefix;      /* the directory's name prefix, e.g. "rc-test-rnet" */
    size_t n;                /* servers to start, <= REDIS_FIXTURE_MAX */
    struct redis_fixture_server spec[REDIS_FIXTURE_MAX];
    /* Set by redis_fixture_start: */
    char dir[128];           /* the servers' files; with TLS, make_certs()'s files too */
    char ca[200];            /* with TLS: dir/ca.crt, the CA that signed the servers' cert */
    struct server srv[REDIS_FIXTURE_MAX];
    bool ipv6;               /* ::1 can be bound here (asked for by a spec) */
    bool up;                 /* every server answers; false: the tests skip */
};

/* Ignores SIGPIPE, registers an atexit() cleanup, makes f->dir and starts f->n servers.
 * 0 with f->up set; 0 with f->up false when redis-server (or openssl, when a spec asks for
 * TLS) is not installed; -1 when a server does not start (the group fails). */
int redis_fixture_start(struct redis_fixture *f);
/* Stops the servers, removes their files and the directory. Idempotent. */
void redis_fixture_stop(struct redis_fixture *f);

/* At the top of a test that needs the fixture's servers. */
#define NEED_REDIS(f)                                                                    \
    do {                                                                                 \
        if (!(f)->up) {                                                                  \
            print_message("redis-server%s not available: skipped\n",                    \
                          redis_fixture_wants_tls(f) ? " or openssl" : "");              \
            skip();                                                                      \
        }                                                                                \
    } while (0)
bool redis_fixture_wants_tls(const struct redis_fixture *f);
