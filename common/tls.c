/* tls: TLS transport for resp over OpenSSL 3. See tls.h for the contract.
 *
 * Notes:
 * - The socket stays non-blocking throughout; SSL_connect/SSL_read/SSL_write are retried
 *   after poll() says the fd is ready for what OpenSSL asked (WANT_READ / WANT_WRITE), so
 *   every step honours the caller's deadline and many connections can run side by side
 *   on their own threads.
 * - Verification uses OpenSSL's own host/IP matching (SSL_set1_host, X509_VERIFY_PARAM
 *   IP), partial wildcards off. The name comes from configuration only (tls.h).
 * - OpenSSL's default passphrase callback prompts on the controlling terminal; a daemon
 *   must never block on that, so an encrypted key simply fails to load, and says so.
 * - A failed session is not shut down (OpenSSL forbids SSL_shutdown after a fatal error);
 *   a healthy one gets one non-blocking close_notify attempt, nothing waited for.
 */
#include "tls.h"

#include "rctime.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct tls_ctx {
    SSL_CTX *ssl_ctx;
    bool verify;
};

static void fmt_msg(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt_msg(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;

    if (!buf || size == 0)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

/* The reason of the most recent OpenSSL error ("wrong version number"), or fallback.
 * Reasons are fixed library phrases: no peer data, no secrets. Clears the queue. */
static const char *ssl_reason(const char *fallback) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return r ? r : fallback;
}

bool tls_is_ip_literal(const char *s) {
    unsigned char buf[sizeof(struct in6_addr)];

    return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

/* ------------------------------------------------------------------------------------
 * Context
 */

static int no_passphrase(char *buf, int size, int rwflag, void *userdata) {
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return 0;
}

static bool set(const char *s) {
    return s && *s;
}

struct tls_ctx *tls_ctx_free(struct tls_ctx *ctx) {
    if (!ctx)
        return NULL;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
    return NULL;
}

/* Which certificates the peer's must chain to: ca_file and/or ca_path, else the system's.
 * 0, or -ENOENT with err. */
static int load_trust(SSL_CTX *sc, const struct tls_options *o, char *err, size_t errlen) {
    if (!set(o->ca_file) && !set(o->ca_path)) {
        if (SSL_CTX_set_default_verify_paths(sc) == 1)
            return 0;
        fmt_msg(err, errlen, "TLS: cannot load the system CA certificates: %s",
                ssl_reason("unknown error"));
        return -ENOENT;
    }
    if (SSL_CTX_load_verify_locations(sc, set(o->ca_file) ? o->ca_file : NULL,
                                      set(o->ca_path) ? o->ca_path : NULL) == 1)
        return 0;
    if (set(o->ca_file))
        fmt_msg(err, errlen, "TLS: cannot load ca_file %s: %s", o->ca_file,
                ssl_reason("unreadable or not PEM"));
    else
        fmt_msg(err, errlen, "TLS: cannot use ca_path %s: %s", o->ca_path, ssl_reason("unreadable"));
    return -ENOENT;
}

/* Our own certificate and key (cert_file, key_file defaulting to it), when configured.
 * 0; -ENOENT when a file does not load; -EINVAL when they do not belong together or a
 * key comes without a certificate. err names the file. */
static int load_identity(SSL_CTX *sc, const struct tls_options *o, char *err, size_t errlen) {
    if (!set(o->cert_file)) {
        if (!set(o->key_file))
            return 0;
        fmt_msg(err, errlen, "TLS: key_file %s is set without cert_file", o->key_file);
        return -EINVAL;
    }
    const char *key = set(o->key_file) ? o->key_file : o->cert_file;
    if (SSL_CTX_use_certificate_chain_file(sc, o->cert_file) != 1) {
        fmt_msg(err, errlen, "TLS: cannot load cert_file %s: %s", o->cert_file,
                ssl_reason("unreadable or not PEM"));
        return -ENOENT;
    }
    if (SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1) {
        fmt_msg(err, errlen, "TLS: cannot load key_file %s: %s (an encrypted key is not "
                "supported)", key, ssl_reason("unreadable or not PEM"));
        return -ENOENT;
    }
    if (SSL_CTX_check_private_key(sc) != 1) {
        fmt_msg(err, errlen, "TLS: key_file %s does not match cert_file %s", key, o->cert_file);
        ERR_clear_error();
        return -EINVAL;
    }
    return 0;
}

int tls_ctx_new(const struct tls_options *o, struct tls_ctx **ret, char *err, size_t errlen) {
    struct tls_ctx *ctx;
    SSL_CTX *sc;
    int r;

    if (!o || !ret) {
        fmt_msg(err, errlen, "TLS: invalid arguments");
        return -EINVAL;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        fmt_msg(err, errlen, "TLS: out of memory");
        return -ENOMEM;
    }
    ERR_clear_error();
    sc = ctx->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!sc) {
        fmt_msg(err, errlen, "TLS: cannot create a context: %s", ssl_reason("out of memory"));
        free(ctx);
        return -ENOMEM;
    }
    ctx->verify = !o->insecure_skip_verify;
    if (SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) != 1) {
        fmt_msg(err, errlen, "TLS: cannot require TLS 1.2: %s", ssl_reason("unknown error"));
        tls_ctx_free(ctx);
        return -EINVAL;
    }
    SSL_CTX_set_options(sc, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_default_passwd_cb(sc, no_passphrase);
    SSL_CTX_set_verify(sc, ctx->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if ((ctx->verify && (r = load_trust(sc, o, err, errlen)) < 0) ||
        (r = load_identity(sc, o, err, errlen)) < 0) {
        tls_ctx_free(ctx);
        return r;
    }
    *ret = ctx;
    return 0;
}

/* ------------------------------------------------------------------------------------
 * Sessions and the transport
 */

struct tls_session {
    struct resp_transport t;   /* first, so the transport callbacks can cast back */
    SSL *ssl;
    int fd;
    bool verify;
    bool broken;               /* a fatal TLS error happened: no close_notify */
    char verify_name[256];
    char errstr[160];
};

/* Maps the outcome of an SSL_* call that returned r <= 0. Returns 1 when the call should
 * be retried (after waiting in *ret_events), 0 on a clean EOF, or -errno. */
static int ssl_status(struct tls_session *x, int r, short *ret_events) {
    int e = SSL_get_error(x->ssl, r);

    switch (e) {
    case SSL_ERROR_WANT_READ:
        *ret_events = POLLIN;
        return 1;
    case SSL_ERROR_WANT_WRITE:
        *ret_events = POLLOUT;
        return 1;
    case SSL_ERROR_ZERO_RETURN:   /* close_notify from the peer */
        return 0;
    case SSL_ERROR_SYSCALL: {
        int saved = errno;
        x->broken = true;
        if (ERR_peek_last_error()) {
            fmt_msg(x->errstr, sizeof(x->errstr), "TLS: %s", ssl_reason("error"));
            return -EPROTO;
        }
        ERR_clear_error();
        return saved ? -saved : -ECONNRESET;
    }
    default:
        x->broken = true;
        fmt_msg(x->errstr, sizeof(x->errstr), "TLS: %s", ssl_reason("protocol error"));
        return -EPROTO;
    }
}

ssize_t tls_session_read(struct tls_session *x, void *buf, size_t len, short *ret_events) {
    int n = len > INT_MAX ? INT_MAX : (int)len, r, rc;

    x->errstr[0] = '\0';
    ERR_clear_error();
    r = SSL_read(x->ssl, buf, n);
    if (r > 0)
        return r;
    rc = ssl_status(x, r, ret_events);
    return rc == 1 ? -EAGAIN : rc;
}

ssize_t tls_session_write(struct tls_session *x, const void *buf, size_t len,
                          short *ret_events) {
    int n = len > INT_MAX ? INT_MAX : (int)len, r, rc;

    x->errstr[0] = '\0';
    if (len == 0)
        return 0;
    ERR_clear_error();
    r = SSL_write(x->ssl, buf, n);
    if (r > 0)
        return r;
    rc = ssl_status(x, r, ret_events);
    return rc == 1 ? -EAGAIN : rc == 0 ? -EPIPE : rc;   /* 0: the peer closed the session */
}

const char *tls_session_errstr(const struct tls_session *x) {
    return x ? x->errstr : "";
}

static ssize_t tls_read(struct resp_transport *t, void *buf, size_t len, uint64_t deadline) {
    struct tls_session *x = (struct tls_session *)t;

    for (;;) {
        short events = 0;
        ssize_t n = tls_session_read(x, buf, len, &events);
        int rc;

        if (n != -EAGAIN)
            return n;
        rc = resp_wait_fd(x->fd, events, deadline);
        if (rc < 0)
            return rc;
    }
}

static ssize_t tls_write(struct resp_transport *t, const void *buf, size_t len,
                         uint64_t deadline) {
    struct tls_session *x = (struct tls_session *)t;

    for (;;) {
        short events = 0;
        ssize_t n = tls_session_write(x, buf, len, &events);
        int rc;

        if (n != -EAGAIN)
            return n;
        rc = resp_wait_fd(x->fd, events, deadline);
        if (rc < 0)
            return rc;
    }
}

static const char *tls_errstr(struct resp_transport *t) {
    return ((struct tls_session *)t)->errstr;
}

struct tls_session *tls_session_free(struct tls_session *x) {
    if (!x)
        return NULL;
    if (x->ssl) {
        if (!x->broken && SSL_is_init_finished(x->ssl))
            (void)SSL_shutdown(x->ssl);   /* one try, non-blocking: close_notify */
        SSL_free(x->ssl);
        ERR_clear_error();
    }
    if (x->fd >= 0)
        (void)close(x->fd);
    free(x);
    return NULL;
}

static void tls_close(struct resp_transport *t) {
    tls_session_free((struct tls_session *)t);
}

int tls_session_new(struct tls_ctx *ctx, int fd, const char *verify_name,
                    struct tls_session **ret, char *err, size_t errlen) {
    struct tls_session *x;
    bool ip;

    if (!ctx || fd < 0 || !ret || !set(verify_name) || strlen(verify_name) >= 256) {
        if (fd >= 0)
            (void)close(fd);
        fmt_msg(err, errlen, "TLS: invalid arguments");
        return -EINVAL;
    }
    ip = tls_is_ip_literal(verify_name);
    x = calloc(1, sizeof(*x));
    if (!x) {
        (void)close(fd);
        fmt_msg(err, errlen, "TLS: out of memory");
        return -ENOMEM;
    }
    x->fd = fd;
    x->verify = ctx->verify;
    memcpy(x->verify_name, verify_name, strlen(verify_name) + 1);
    x->t.read = tls_read;
    x->t.write = tls_write;
    x->t.close = tls_close;
    x->t.errstr = tls_errstr;

    ERR_clear_error();
    x->ssl = SSL_new(ctx->ssl_ctx);
    if (!x->ssl || SSL_set_fd(x->ssl, fd) != 1) {
        fmt_msg(err, errlen, "TLS: %s", ssl_reason("out of memory"));
        tls_session_free(x);
        return -ENOMEM;
    }
    /* SNI carries a name, never an address (RFC 6066 §3). */
    if (!ip && SSL_set_tlsext_host_name(x->ssl, verify_name) != 1) {
        fmt_msg(err, errlen, "TLS: cannot use %s as server name: %s", verify_name,
                ssl_reason("invalid"));
        tls_session_free(x);
        return -EINVAL;
    }
    if (ctx->verify) {
        int ok;
        if (ip)
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(x->ssl), verify_name);
        else {
            SSL_set_hostflags(x->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(x->ssl, verify_name);
        }
        if (ok != 1) {
            fmt_msg(err, errlen, "TLS: cannot verify against %s: %s", verify_name,
                    ssl_reason("invalid name"));
            tls_session_free(x);
            return -EINVAL;
        }
    }
    SSL_set_connect_state(x->ssl);
    *ret = x;
    return 0;
}

int tls_session_handshake(struct tls_session *x, short *ret_events) {
    int r, rc;

    ERR_clear_error();
    r = SSL_connect(x->ssl);
    if (r == 1)
        return 0;
    rc = ssl_status(x, r, ret_events);
    if (rc == 1)
        return 1;
    if (x->verify && SSL_get_verify_result(x->ssl) != X509_V_OK)
        return -EKEYREJECTED;
    return rc == 0 ? -ECONNRESET : rc;
}

/* Why verification failed, in the operator's terms. */
static void verify_message(long v, const char *verify_name, char *buf, size_t size) {
    switch (v) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        fmt_msg(buf, size, "certificate verify failed: the certificate is not for %s "
                "(name mismatch; set server_name to the name it carries)", verify_name);
        break;
    default:
        fmt_msg(buf, size, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        break;
    }
}

void tls_session_handshake_error(const struct tls_session *x, int rc, uint64_t timeout_usec,
                                 char *buf, size_t size) {
    char why[200];

    if (rc == -EKEYREJECTED) {
        verify_message(SSL_get_verify_result(x->ssl), x->verify_name, why, sizeof(why));
        fmt_msg(buf, size, "TLS: %s", why);
    } else if (rc == -ETIMEDOUT) {
        fmt_msg(buf, size, "TLS handshake timed out after %llu ms (no TLS answer: is this a "
                "TLS port?)", (unsigned long long)(timeout_usec / 1000));
    } else if (x->errstr[0]) {
        fmt_msg(buf, size, "%s handshake failed%s", x->errstr,
                strstr(x->errstr, "wrong version number") ? " (is this a TLS port?)" : "");
    } else {
        fmt_msg(buf, size, "TLS handshake failed: %s",
                rc == -ECONNRESET ? "connection closed by server"
                                  : strerror_r(-rc, why, sizeof(why)));
    }
}

int tls_connect(struct tls_ctx *ctx, const struct endpoint *ep, const char *verify_name,
                uint64_t timeout_usec, struct resp_conn **ret, char *err, size_t errlen) {
    uint64_t deadline = rctime_deadline(timeout_usec);
    struct tls_session *x = NULL;
    struct resp_conn *c;
    char epname[300], why[400];
    int fd = -1, rc;

    if (!ctx || !ep || !ret || !set(verify_name)) {
        fmt_msg(err, errlen, "TLS connect: invalid arguments");
        return -EINVAL;
    }
    endpoint_format(ep, epname, sizeof(epname));
    rc = resp_socket_connect(ep, timeout_usec, &fd, err, errlen);
    if (rc < 0)
        return rc;
    rc = tls_session_new(ctx, fd, verify_name, &x, why, sizeof(why));   /* owns fd */
    if (rc < 0) {
        fmt_msg(err, errlen, "connect %s: %s", epname, why);
        return rc;
    }
    for (;;) {
        short events = 0;

        rc = tls_session_handshake(x, &events);
        if (rc == 1)
            rc = resp_wait_fd(fd, events, deadline);
        else if (rc == 0)
            break;
        if (rc < 0) {
            tls_session_handshake_error(x, rc, timeout_usec, why, sizeof(why));
            fmt_msg(err, errlen, "connect %s: %s", epname, why);
            if (rc != -EKEYREJECTED && rc != -ETIMEDOUT && x->errstr[0])
                rc = -EPROTO;   /* a TLS failure, not a plain socket error */
            tls_session_free(x);
            return rc;
        }
    }

    c = resp_conn_new(&x->t, timeout_usec);   /* closes the session on failure */
    if (!c) {
        fmt_msg(err, errlen, "connect %s: out of memory", epname);
        return -ENOMEM;
    }
    *ret = c;
    return 0;
}
