/* tls: the TLS transport for resp connections, over OpenSSL 3.
 *
 * A tls_ctx is one configuration (CA bundle or directory, optional client certificate for
 * mutual TLS, TLS >= 1.2, peer verification on unless explicitly skipped). It is built
 * once per validation and shared read-only by the threads that connect with it; free it
 * after the last connection made from it is closed (OpenSSL keeps its own reference, so
 * closing in either order is safe).
 *
 * tls_connect() opens a socket (resp_socket_connect), runs the handshake non-blocking and
 * bounds both together by the timeout, then wraps the session as a resp_conn. The peer's
 * certificate must match verify_name: a DNS name (also sent as SNI) or an IP literal
 * (matched against the certificate's IP SANs; no SNI, as RFC 6066 forbids literals
 * there). verify_name is what the operator configured (server_name, or the configured
 * endpoint's host), never a name a server advertised: a candidate password is only sent
 * once the certificate proves the peer is a host somebody configured.
 *
 * Errors: 0 or -errno, with a message in err that never holds a secret. A certificate
 * that fails verification returns -EKEYREJECTED ("certificate verify failed: ..."), any
 * other handshake failure -EPROTO, a handshake that does not finish in time -ETIMEDOUT,
 * so callers can report a certificate problem as such, not as a refused password.
 * Any thread may call these; a connection is used by one thread at a time.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "resp.h"

struct tls_options {
    const char *ca_file;      /* PEM bundle; NULL/"" with ca_path unset: system default */
    const char *ca_path;      /* directory of hashed certificates (c_rehash) */
    const char *cert_file;    /* client certificate chain (PEM), for mutual TLS */
    const char *key_file;     /* its private key (PEM, unencrypted); NULL: in cert_file */
    bool insecure_skip_verify;
};

struct tls_ctx;

/* Loads the files now, so a missing CA or a key that does not match its certificate is
 * reported once, with the file's name. Returns 0 or -errno (-ENOENT, -EINVAL, -ENOMEM). */
int tls_ctx_new(const struct tls_options *o, struct tls_ctx **ret, char *err, size_t errlen);
struct tls_ctx *tls_ctx_free(struct tls_ctx *ctx);   /* NULL accepted; returns NULL */

/* Connect, handshake and verify within timeout_usec; then every command of the returned
 * connection is bounded by timeout_usec as with resp_connect(). */
int tls_connect(struct tls_ctx *ctx, const struct endpoint *ep, const char *verify_name,
                uint64_t timeout_usec, struct resp_conn **ret, char *err, size_t errlen);

/* --- the same, one step at a time, for callers that multiplex many connections ---
 * tls_session_new() takes a connected non-blocking socket (and owns it from then on, even
 * when it fails) and prepares verification against verify_name. tls_session_handshake()
 * returns 0 when done, 1 when it must be called again once the fd is ready for
 * *ret_events, or -errno (-EKEYREJECTED: the certificate did not verify);
 * tls_session_handshake_error() words such a failure (rc -ETIMEDOUT: the caller's
 * deadline passed). read/write return bytes moved, 0 on EOF (read), -EAGAIN with
 * *ret_events to wait for, or -errno with the reason in tls_session_errstr(). */
struct tls_session;
int tls_session_new(struct tls_ctx *ctx, int fd, const char *verify_name,
                    struct tls_session **ret, char *err, size_t errlen);
int tls_session_handshake(struct tls_session *s, short *ret_events);
void tls_session_handshake_error(const struct tls_session *s, int rc, uint64_t timeout_usec,
                                 char *buf, size_t size);
ssize_t tls_session_read(struct tls_session *s, void *buf, size_t len, short *ret_events);
ssize_t tls_session_write(struct tls_session *s, const void *buf, size_t len,
                          short *ret_events);
const char *tls_session_errstr(const struct tls_session *s);
struct tls_session *tls_session_free(struct tls_session *s);   /* closes the fd; NULL ok */

/* True when s is an IPv4 or IPv6 address literal (checked as an IP SAN, never sent as SNI). */
bool tls_is_ip_literal(const char *s);
