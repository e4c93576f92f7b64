/* resp: a blocking-with-deadline connection to one Redis node, and the RESP reader.
 *
 * resp_reader wraps hiredis's I/O-free reader with our caps: a reply larger than
 * max_bytes, an array longer than max_elements, or a reply of more than RESP_MAX_OBJECTS
 * objects in all is an error, not an allocation.
 * resp_conn connects to "host:port", "[v6addr]:port" or "unix:/path", every connect,
 * read and write bounded by the timeout given at connect (poll() on a non-blocking fd).
 * The transport (plain socket now) sits behind struct resp_transport so TLS over OpenSSL
 * can slot in without touching the protocol code.
 *
 * resp_auth() judges AUTH as docs/design.md §7 says: +OK accepts (a following PING answered
 * -NOPERM still counts), WRONGPASS / "invalid password" / "invalid username-password
 * pair" refuse, "without any password configured" is its own outcome. Commands carrying
 * secrets are wiped after sending; error texts keep only the first word of replies to
 * such commands. A connection is used by one thread at a time; it has a sticky error.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>

#include "endpoint.h"

#include "secret.h"

#define RESP_MAX_REPLY_BYTES (4 * 1024 * 1024)
#define RESP_MAX_ELEMENTS (64 * 1024)
/* The objects (strings, integers, arrays, nils) of one reply, nested ones included: each
 * costs ~64 bytes of heap for as little as 4 bytes read, so the byte cap alone lets a
 * reply of tiny objects cost 16 times its size. CLUSTER SLOTS with every slot its own
 * range on 3 nodes is ~260 000. */
#define RESP_MAX_OBJECTS (512 * 1024)

/* Endpoints are endpoint.h's (the one parser of the grammar). */

/* --- reader (pure, fuzzable) --- */
struct resp_reader;
/* 0 for either cap means the RESP_MAX_* default. NULL on allocation failure. */
struct resp_reader *resp_reader_new(size_t max_bytes, size_t max_elements);
struct resp_reader *resp_reader_free(struct resp_reader *r);
int resp_reader_feed(struct resp_reader *r, const char *buf, size_t len);   /* 0 or -EMSGSIZE */
/* 1 and *ret when a whole reply is there, 0 when more bytes are needed, -EPROTO/-EMSGSIZE
 * on a protocol error or a cap exceeded (sticky). Free the reply with freeReplyObject(). */
int resp_reader_get(struct resp_reader *r, redisReply **ret);
const char *resp_reader_errstr(const struct resp_reader *r);
/* After -EMSGSIZE: true when the reply had more than RESP_MAX_OBJECTS objects (else it was
 * over the byte or the element cap). */
bool resp_reader_over_objects(const struct resp_reader *r);

/* --- transport --- */
struct resp_transport {
    /* Return bytes moved, 0 on EOF (read), or -errno. The deadline is CLOCK_MONOTONIC usec. */
    ssize_t (*read)(struct resp_transport *t, void *buf, size_t len, uint64_t deadline);
    ssize_t (*write)(struct resp_transport *t, const void *buf, size_t len, uint64_t deadline);
    void (*close)(struct resp_transport *t);   /* closes and frees */
    /* Optional (NULL: strerror of the -errno): why the last read or write failed, for
     * transports whose errors say more than an errno can (TLS alerts). Never secrets. */
    const char *(*errstr)(struct resp_transport *t);
};

/* Connects a non-blocking, close-on-exec stream socket to ep (TCP: every resolved address
 * in turn, TCP_NODELAY) within timeout_usec. Returns 0 and the fd, or -errno with
 * "connect <ep>: <why>" in err. For transports that wrap the socket (TLS). */
int resp_socket_connect(const struct endpoint *ep, uint64_t timeout_usec, int *ret_fd,
                        char *err, size_t errlen);
/* Waits until fd is ready for events (poll() flags), has an error or hangup, or the
 * deadline passes (-ETIMEDOUT). EINTR restarts with the time left. 0 or -errno. */
int resp_wait_fd(int fd, short events, uint64_t deadline);

/* --- connection --- */
struct resp_conn;

/* Connects (resolving names, trying each address) within timeout_usec.
 * Returns 0 or -errno (-ETIMEDOUT, -ECONNREFUSED, ...) with a message in err. */
int resp_connect(const struct endpoint *ep, uint64_t timeout_usec,
                 struct resp_conn **ret, char *err, size_t errlen);
/* Wraps an already connected transport (TLS will use this). Takes ownership of t even
 * when it fails (returns NULL and closes t). */
struct resp_conn *resp_conn_new(struct resp_transport *t, uint64_t timeout_usec);
struct resp_conn *resp_close(struct resp_conn *c);

/* Sends one command and reads its reply within the connection's timeout.
 * secret_args: the command carries a secret; its formatted bytes are wiped, and a text
 * reply (error, status, bulk string) is cut down to its first word (or "(redacted)" when
 * that word is not an error code or contains an argument), the rest wiped.
 * Returns 0 and *ret (any reply type, error replies included), or -errno; an I/O,
 * protocol or cap error is sticky and leaves its message in resp_errstr(). */
int resp_command(struct resp_conn *c, int argc, const char **argv, const size_t *argvlen,
                 bool secret_args, redisReply **ret);
const char *resp_errstr(const struct resp_conn *c);

/* For callers that read replies themselves (rnet.h): cuts a text reply (error, status or
 * bulk string: a proxy may echo the command in any of them) to a command carrying a
 * secret down to its first word, as resp_command() does (the rest wiped; "+OK" stays);
 * and frees a reply after wiping every string in it. */
void resp_redact_error(redisReply *r, int argc, const char *const *argv,
                       const size_t *argvlen);
void resp_reply_wipe_free(redisReply *r);
/* The printable start of a reply's text (at most 120 bytes, cut at the first byte that is
 * not printable ASCII) into buf, for messages; "" for a reply without text. Redact first
 * (resp_redact_error) when the command carried a secret. */
void resp_reply_text(const redisReply *r, char *buf, size_t size);
/* "bulk string", "array", "integer", "nil", "status", "error": a reply's type in messages. */
const char *resp_reply_type_name(int type);

enum resp_auth_result {
    RESP_AUTH_ACCEPTED = 0,
    RESP_AUTH_REFUSED,         /* wrong password / user */
    RESP_AUTH_NOPASS,          /* the server has no password configured */
    RESP_AUTH_UNEXPECTED,      /* some other reply */
    RESP_AUTH_IO,              /* I/O error or timeout */
};
const char *resp_auth_result_to_string(enum resp_auth_result r);

/* AUTH [username] password, then PING. detail gets a short reason (never the password). */
enum resp_auth_result resp_auth(struct resp_conn *c, const char *username,
                                const struct secret *password, char *detail, size_t detail_len);

/* The pieces of resp_auth(), for callers that drive many connections themselves:
 * resp_auth_argv() fills AUTH [username] password (argv[] points into password; returns
 * argc, or -EINVAL without a password). resp_auth_judge() judges the reply to it, and
 * consumes it (wiped, freed): ACCEPTED means +OK, and a PING should follow, whose reply
 * resp_ping_judge() consumes (any reply after +OK is acceptance; detail says why PING
 * was not PONG). Format the command with redisFormatCommandArgv() and wipe it after. */
int resp_auth_argv(const char *username, const struct secret *password, const char *argv[3],
                   size_t argvlen[3]);
enum resp_auth_result resp_auth_judge(redisReply *reply, int argc, const char *const *argv,
                                      const size_t *argvlen, char *detail, size_t detail_len);
void resp_ping_judge(redisReply *reply, char *detail, size_t detail_len);


/* --- cluster topology (pure parsers, fuzzable) ---
 * From replies to CLUSTER SHARDS (Redis >= 7.0) and CLUSTER SLOTS (older servers), as
 * RESP2 arrays. host is what the node advertises for clients to use ("endpoint", else
 * "ip"); "" when it advertises nothing usable ("?" or empty: the node does not know its
 * own address, a client then uses the address it asked). port is the plaintext port and
 * tls_port the TLS port as CLUSTER SHARDS tells them apart (0 = not advertised); CLUSTER
 * SLOTS gives one port, the one for the kind of connection that asked, which is stored
 * in both. A node appears once, however many slot ranges it serves. */
struct resp_cluster_node {
    char host[256];
    uint16_t port, tls_port;
    bool primary;
    bool failed;             /* SHARDS health "failed": serves nothing, no client goes there */
};
/* Return the number of nodes written, -E2BIG when there are more than max, or -EPROTO
 * when the reply does not have the documented shape. */
int resp_cluster_parse_shards(const redisReply *r, struct resp_cluster_node *nodes, size_t max);
int resp_cluster_parse_slots(const redisReply *r, struct resp_cluster_node *nodes, size_t max);
