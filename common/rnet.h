/* rnet: the one Redis network engine. Connects to a set of nodes and runs a small script
 * of commands on each, every node at the same time, from the calling thread: non-blocking
 * sockets and one poll() over all of them (no threads: on two cores starting a dozen
 * threads costs more than the round trips). Used by validation (AUTH + PING), cluster
 * discovery (AUTH, CLUSTER SHARDS / SLOTS) and rotation (AUTH, ACL SETUSER, ACL SAVE).
 *
 * Per node: resolve (getaddrinfo, within the resolver's own timeouts) and connect to each
 * address in turn, then the TLS handshake (tls.h) when a tls_ctx is given and the node is
 * TCP (Redis has no TLS on unix sockets), all within one timeout; then the script. A
 * command is written together with the ones after it marked `pipelined` (one write); the
 * batch's write and its first reply are due within one timeout of the write, its k-th
 * reply within k timeouts. Replies are read with resp_reader's caps (the byte cap can be
 * raised per run: max_reply_bytes); a reply over them ends the node RNET_PROTOCOL with
 * over_cap set (and over_objects when it was the objects cap).
 *
 * Each reply goes to the caller's on_reply(), which owns it (free it, wiped when the
 * connection carried a secret: resp_reply_wipe_free) and says what comes next: the index
 * of the next command, or RNET_STOP (also any index past the script) when the node is
 * done. Replies to pipelined commands the caller jumped over are read and wiped unseen.
 * A node with script == NULL is left alone (its results are not touched).
 *
 * Results per node: an enum rnet_class and a short message naming the node and the step
 * ("connect 10.0.0.1:6379: Connection refused", "AUTH: read: timed out after 500 ms"),
 * never a secret: every formatted command is wiped once written or dropped (scripts carry
 * passwords), and so is every reply rnet drops unseen.
 * The class is decided where the failure happens and travels as the enum; callers never
 * read it back out of the message. On RNET_OK the message is what on_reply wrote (or "").
 *
 * Errors: rnet_run returns 0, or -ENOMEM / -EINVAL without touching any node. No logging,
 * no shared state; a run owns its sockets and closes them all before it returns.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp.h"
#include "tls.h"

enum rnet_class {
    RNET_OK = 0,          /* the script ran until on_reply said stop, or to its end */
    RNET_UNREACHABLE,     /* connect / resolve failed, the link failed, or a step timed out */
    RNET_TLS,             /* TLS failed other than by the certificate: a handshake error, an
                             alert, or the server dropping the link right after the handshake
                             (TLS 1.3 servers judge our client certificate only then) */
    RNET_CERT,            /* the server's certificate did not verify */
    RNET_PROTOCOL,        /* the server sent something that is not RESP, or over the caps */
    RNET_INTERNAL,        /* out of memory, a unix path too long */
};
const char *rnet_class_to_string(enum rnet_class c);

#define RNET_MAX_ARGS 6
#define RNET_STOP (-1)

struct rnet_cmd {
    const char *label;             /* the step in messages: "AUTH", "PING after AUTH" */
    int argc;
    const char *argv[RNET_MAX_ARGS];
    size_t argvlen[RNET_MAX_ARGS]; /* all 0: strlen of each argv */
    bool pipelined;                /* written in the same batch as the command before it */
};

struct rnet_node {
    /* in */
    struct endpoint ep;
    const char *verify_name;       /* the TLS name (tls.h); NULL or "": ep.host */
    const struct rnet_cmd *script; /* NULL: skip this node */
    size_t nscript;
    size_t first;                  /* the command to start with */
    void *data;                    /* the caller's */
    /* out */
    enum rnet_class cls;
    size_t step;                   /* the command under way when it ended */
    bool connected;                /* connected (and the TLS handshake done) */
    bool answered;                 /* at least one reply came on the connection */
    bool over_cap;                 /* RNET_PROTOCOL: a reply was over the reader's caps */
    bool over_objects;             /* ... its RESP_MAX_OBJECTS (else bytes or elements) */
    char msg[256];
    uint64_t usec;                 /* connect to done */
};

/* Called with each reply in order; owns it. Returns the next command's index or RNET_STOP.
 * May write node->msg (its text is kept when the node ends RNET_OK). */
typedef int (*rnet_reply_fn)(void *userdata, struct rnet_node *node, size_t cmd,
                             redisReply *reply);

struct rnet_opts {
    struct tls_ctx *tls;           /* NULL: no TLS */
    uint64_t timeout_usec;         /* connect + handshake; each batch (see above) */
    rnet_reply_fn on_reply;
    void *userdata;
    size_t max_open;               /* connections open at once; 0: 128 */
    size_t max_reply_bytes;        /* a reply's cap; 0: RESP_MAX_REPLY_BYTES (CLIENT LIST
                                      with many connections needs more) */
};

/* Runs every node's script at once and returns when each has finished or failed. */
int rnet_run(const struct rnet_opts *o, struct rnet_node *nodes, size_t n);
