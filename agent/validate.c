/* validate: see validate.h.
 *
 * Shape of one call:
 *   1. the node list: the configured endpoints, or (cluster) what a seed lists, asked
 *      through rnet with AUTH, PING, CLUSTER SHARDS (else SLOTS);
 *   2. every node: connect (+TLS), then AUTH candidate and PING pipelined (one write,
 *      two replies), all at once through rnet_run();
 *   3. the policy (validate_decide); under "all" with nodes down and the rest accepting,
 *      the current credential is tried on the reachable nodes, again all at once.
 * Nothing outlives the call: every connection is closed before it returns.
 */
#include "validate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rctime.h"
#include "tls.h"

const char *validate_outcome_to_string(enum validate_outcome o) {
    switch (o) {
    case VALIDATE_PUBLISH: return "accepted";
    case VALIDATE_REFUSED: return "refused";
    case VALIDATE_UNREACHABLE: return "unreachable";
    case VALIDATE_MISCONFIGURED: return "misconfigured";
    case VALIDATE_ERROR: return "error";
    }
    return "?";
}

const char *validate_node_to_string(enum validate_node s) {
    switch (s) {
    case VALIDATE_NODE_ACCEPTED: return "accepted";
    case VALIDATE_NODE_REFUSED: return "refused";
    case VALIDATE_NODE_NOPASS: return "no-password";
    case VALIDATE_NODE_UNEXPECTED: return "unexpected";
    case VALIDATE_NODE_UNREACHABLE: return "unreachable";
    case VALIDATE_NODE_TLS: return "tls-error";
    case VALIDATE_NODE_CERT: return "certificate-error";
    }
    return "?";
}

static bool unreachable(enum validate_node s) {
    return s == VALIDATE_NODE_UNREACHABLE || s == VALIDATE_NODE_TLS || s == VALIDATE_NODE_CERT;
}

/* ------------------------------------------------------------------------------------
 * The policy (pure)
 */

bool validate_blames(enum validate_blame b, enum validate_node s) {
    switch (b) {
    case VALIDATE_BLAME_PROBLEM: return s != VALIDATE_NODE_ACCEPTED;
    case VALIDATE_BLAME_REFUSED: return s == VALIDATE_NODE_REFUSED;
    case VALIDATE_BLAME_NOPASS: return s == VALIDATE_NODE_NOPASS;
    case VALIDATE_BLAME_UNEXPECTED: return s == VALIDATE_NODE_UNEXPECTED;
    case VALIDATE_BLAME_UNREACHABLE: return unreachable(s);
    }
    return false;
}

static struct validate_verdict verdict(enum validate_outcome o, enum validate_blame b) {
    return (struct validate_verdict){ .outcome = o, .blame = b };
}

/* "any": one accepting node is enough; else the most telling failure. */
static struct validate_verdict decide_any(unsigned accepted, unsigned refused, unsigned other) {
    if (accepted)
        return verdict(VALIDATE_PUBLISH, VALIDATE_BLAME_PROBLEM);
    if (refused)
        return verdict(VALIDATE_REFUSED, VALIDATE_BLAME_REFUSED);
    if (other)
        return verdict(VALIDATE_ERROR, VALIDATE_BLAME_UNEXPECTED);
    return verdict(VALIDATE_UNREACHABLE, VALIDATE_BLAME_UNREACHABLE);
}

struct validate_verdict validate_decide(enum validate_policy policy,
                                        const enum validate_node *states, size_t n,
                                        enum validate_current current) {
    unsigned accepted = 0, refused = 0, other = 0, down = 0, nopass = 0;
    struct validate_verdict v;

    for (size_t i = 0; i < n; i++) {
        accepted += states[i] == VALIDATE_NODE_ACCEPTED;
        refused += states[i] == VALIDATE_NODE_REFUSED;
        other += states[i] == VALIDATE_NODE_UNEXPECTED;
        nopass += states[i] == VALIDATE_NODE_NOPASS;
        down += unreachable(states[i]);
    }
    if (policy == VALIDATE_NONE)
        return verdict(VALIDATE_PUBLISH, VALIDATE_BLAME_PROBLEM);
    if (nopass)   /* reported as such whatever the other nodes said */
        return verdict(VALIDATE_MISCONFIGURED, VALIDATE_BLAME_NOPASS);
    if (policy == VALIDATE_ANY)
        return decide_any(accepted, refused, other);
    if (refused)
        return verdict(VALIDATE_REFUSED, VALIDATE_BLAME_REFUSED);
    if (other)
        return verdict(VALIDATE_ERROR, VALIDATE_BLAME_UNEXPECTED);
    if (!down)
        return verdict(VALIDATE_PUBLISH, VALIDATE_BLAME_PROBLEM);
    if (!accepted)
        return verdict(VALIDATE_UNREACHABLE, VALIDATE_BLAME_UNREACHABLE);
    /* Some nodes down, the rest accept. Publish only when the current credential works
     * nowhere any more among the reachable nodes (docs/design.md §7). */
    v = verdict(current == VALIDATE_CURRENT_GONE ? VALIDATE_PUBLISH : VALIDATE_UNREACHABLE,
                VALIDATE_BLAME_UNREACHABLE);
    v.ask_current = current == VALIDATE_CURRENT_UNKNOWN;
    return v;
}

/* ------------------------------------------------------------------------------------
 * Nodes
 */

struct vnode {
    struct endpoint ep;
    bool ep_ok;               /* ep usable; else the node fails with bad_ep/bad_state */
    const char *bad_ep;       /* why not (static text); NULL: not a valid endpoint */
    enum validate_node bad_state;
    bool replica;
    char name[300];           /* host:port, for messages */
    char verify_name[256];    /* TLS: the name its certificate must carry */
    /* results */
    enum validate_node state;
    char detail[256];
    uint64_t usec;
};

struct vrun {
    const struct config_redis *redis;
    struct tls_ctx *tls;      /* NULL: plain TCP */
};

/* The rnet side of a node (endpoint, TLS name; no script yet). */
static void rnet_node_of(const struct vnode *nd, struct rnet_node *rn) {
    memset(rn, 0, sizeof *rn);
    rn->ep = nd->ep;
    rn->verify_name = nd->verify_name;
}

static struct rnet_opts rnet_opts_of(const struct vrun *x, rnet_reply_fn fn, void *ud) {
    return (struct rnet_opts){ .tls = x->tls, .timeout_usec = x->redis->timeout_usec,
                               .on_reply = fn, .userdata = ud };
}

/* A node rnet could not finish: the state its class means. A reply that is not RESP is
 * unexpected while AUTH's is awaited, a failed link once it is in. */
static enum validate_node failed_state(const struct rnet_node *rn, size_t auth_step) {
    switch (rn->cls) {
    case RNET_OK: break;
    case RNET_UNREACHABLE: return VALIDATE_NODE_UNREACHABLE;
    case RNET_TLS: return VALIDATE_NODE_TLS;
    case RNET_CERT: return VALIDATE_NODE_CERT;
    case RNET_PROTOCOL:
        return rn->step == auth_step ? VALIDATE_NODE_UNEXPECTED : VALIDATE_NODE_UNREACHABLE;
    case RNET_INTERNAL: return VALIDATE_NODE_UNEXPECTED;
    }
    return VALIDATE_NODE_UNEXPECTED;
}

static enum validate_node auth_state(enum resp_auth_result r) {
    switch (r) {
    case RESP_AUTH_ACCEPTED: return VALIDATE_NODE_ACCEPTED;
    case RESP_AUTH_REFUSED: return VALIDATE_NODE_REFUSED;
    case RESP_AUTH_NOPASS: return VALIDATE_NODE_NOPASS;
    case RESP_AUTH_UNEXPECTED: return VALIDATE_NODE_UNEXPECTED;
    case RESP_AUTH_IO: return VALIDATE_NODE_UNREACHABLE;
    }
    return VALIDATE_NODE_UNEXPECTED;
}

/* ------------------------------------------------------------------------------------
 * All nodes at once: AUTH and PING pipelined on every node through rnet.
 *
 * AUTH's reply alone decides; PING's only checks the link after +OK (resp.c's judges, so
 * the words are the same as for one node). After any other AUTH verdict the node is done
 * at once: PING's reply (-NOAUTH, or +PONG for an open default user) would change nothing.
 */

enum { STEP_AUTH, STEP_PING };

struct probe_run {
    const char *argv[3];      /* AUTH's, pointing into the caller's secret */
    size_t argvlen[3];
    int argc;
};

static int probe_reply(void *ud, struct rnet_node *rn, size_t cmd, redisReply *reply) {
    struct probe_run *pr = ud;
    struct vnode *nd = rn->data;

    if (cmd == STEP_PING) {
        resp_ping_judge(reply, rn->msg, sizeof rn->msg);
        nd->state = VALIDATE_NODE_ACCEPTED;
        return RNET_STOP;
    }
    enum resp_auth_result r = resp_auth_judge(reply, pr->argc, pr->argv, pr->argvlen, rn->msg,
                                              sizeof rn->msg);
    nd->state = auth_state(r);
    return r == RESP_AUTH_ACCEPTED ? STEP_PING : RNET_STOP;
}

static void fail_nodes(struct vnode *nodes, size_t n, const bool *skip, const char *why) {
    for (size_t i = 0; i < n; i++)
        if (!skip || !skip[i]) {
            nodes[i].state = VALIDATE_NODE_UNEXPECTED;
            snprintf(nodes[i].detail, sizeof nodes[i].detail, "%s", why);
        }
}

/* The node's endpoint cannot be asked: its state says why, without connecting. */
static bool node_unusable(struct vnode *nd) {
    if (nd->ep_ok)
        return false;
    if (nd->bad_ep) {
        nd->state = nd->bad_state;
        snprintf(nd->detail, sizeof nd->detail, "%s: %s", nd->name, nd->bad_ep);
    } else {
        nd->state = VALIDATE_NODE_UNEXPECTED;
        snprintf(nd->detail, sizeof nd->detail, "not a valid endpoint");
    }
    nd->usec = 0;
    return true;
}

/* Asks every node (but those in skip) at once and returns when all have answered or
 * timed out. */
static void check_all(const struct vrun *x, struct vnode *nodes, size_t n, const bool *skip,
                      const char *username, const struct secret *password) {
    struct probe_run pr = { 0 };
    struct rnet_cmd script[2] = {
        { .label = "AUTH" },
        { .label = "PING after AUTH", .argc = 1, .argv = { "PING" }, .pipelined = true },
    };
    struct rnet_node *rn = calloc(n ? n : 1, sizeof *rn);
    struct rnet_opts o = rnet_opts_of(x, probe_reply, &pr);

    pr.argc = resp_auth_argv(username, password, pr.argv, pr.argvlen);
    if (!rn || pr.argc < 0) {
        fail_nodes(nodes, n, skip, !rn ? "out of memory" : "AUTH: no password given");
        free(rn);
        return;
    }
    script[0].argc = pr.argc;
    memcpy(script[0].argv, pr.argv, sizeof pr.argv);
    memcpy(script[0].argvlen, pr.argvlen, sizeof pr.argvlen);
    for (size_t i = 0; i < n; i++) {
        rnet_node_of(&nodes[i], &rn[i]);
        rn[i].data = &nodes[i];
        if ((skip && skip[i]) || node_unusable(&nodes[i]))
            continue;
        rn[i].script = script;
        rn[i].nscript = 2;
    }
    if (rnet_run(&o, rn, n) < 0)
        fail_nodes(nodes, n, skip, "out of memory");
    else
        for (size_t i = 0; i < n; i++) {
            if (!rn[i].script)
                continue;
            if (rn[i].cls != RNET_OK)
                nodes[i].state = failed_state(&rn[i], STEP_AUTH);
            snprintf(nodes[i].detail, sizeof nodes[i].detail, "%s", rn[i].msg);
            nodes[i].usec = rn[i].usec;
        }
    explicit_bzero(script, sizeof script);
    free(rn);
}

/* ------------------------------------------------------------------------------------
 * Node lists
 */


static void node_from_endpoint(const struct config_redis *redis, const char *endpoint,
                               struct vnode *nd) {
    memset(nd, 0, sizeof *nd);
    nd->ep_ok = endpoint_parse(endpoint, &nd->ep, NULL) == 0;
    if (nd->ep_ok)
        endpoint_format(&nd->ep, nd->name, sizeof nd->name);
    else
        snprintf(nd->name, sizeof nd->name, "%s", endpoint);
    snprintf(nd->verify_name, sizeof nd->verify_name, "%s",
             redis->tls.server_name ? redis->tls.server_name : nd->ep_ok ? nd->ep.host : "");
}

static struct vnode *configured_nodes(const struct config_redis *redis, size_t *ret_n) {
    struct vnode *nodes = calloc(redis->n_endpoints ? redis->n_endpoints : 1, sizeof *nodes);

    if (!nodes)
        return NULL;
    for (size_t i = 0; i < redis->n_endpoints; i++)
        node_from_endpoint(redis, redis->endpoints[i], &nodes[i]);
    *ret_n = redis->n_endpoints;
    return nodes;
}

/* Primaries first, then by name: a stable order for messages and REDIS_CREDS_NODES. */
static int node_cmp(const void *a, const void *b) {
    const struct vnode *x = a, *y = b;

    if (x->replica != y->replica)
        return x->replica ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* The required nodes of a topology a seed listed. host "" means "the address you asked";
 * the TLS name is server_name or the seed's host, never what the node advertised. */
static struct vnode *topology_nodes(const struct config_redis *redis, bool replicas,
                                    const struct vnode *seed,
                                    const struct resp_cluster_node *cn, size_t ncn,
                                    size_t *ret_n) {
    struct vnode *nodes = calloc(ncn ? ncn : 1, sizeof *nodes);
    size_t n = 0;

    if (!nodes)
        return NULL;
    for (size_t i = 0; i < ncn; i++) {
        struct vnode *nd = &nodes[n];
        uint16_t port;

        if (cn[i].failed || (!cn[i].primary && !replicas))
            continue;
        port = redis->tls.enabled ? cn[i].tls_port : cn[i].port;
        nd->ep.kind = ENDPOINT_TCP;
        snprintf(nd->ep.host, sizeof nd->ep.host, "%s",
                 cn[i].host[0] ? cn[i].host : seed->ep.kind == ENDPOINT_TCP ? seed->ep.host
                                                                           : "127.0.0.1");
        nd->ep.port = port;
        nd->replica = !cn[i].primary;
        nd->ep_ok = true;
        snprintf(nd->verify_name, sizeof nd->verify_name, "%s", seed->verify_name);
        if (port == 0) {
            /* The node advertises no port for the transport we were told to speak: only
             * a TLS port with tls = false; or, with tls = true, only its plaintext port
             * (a cluster without tls-cluster yes knows no TLS ports). Never try TLS on a
             * plaintext port, or the reverse: say which setting does not match. */
            nd->ep_ok = false;
            nd->ep.port = redis->tls.enabled ? cn[i].port : cn[i].tls_port;
            endpoint_format(&nd->ep, nd->name, sizeof nd->name);
            if (redis->tls.enabled) {
                nd->bad_state = VALIDATE_NODE_TLS;
                nd->bad_ep = "the cluster advertises no TLS port for this node, only a "
                             "plaintext one (the servers need tls-cluster yes for TLS "
                             "clients to find each other's TLS ports)";
            } else {
                nd->bad_state = VALIDATE_NODE_UNEXPECTED;
                nd->bad_ep = "the cluster advertises only a TLS port for this node: "
                             "set tls = true";
            }
        } else
            endpoint_format(&nd->ep, nd->name, sizeof nd->name);
        n++;
    }
    qsort(nodes, n, sizeof *nodes, node_cmp);
    *ret_n = n;
    return nodes;
}

/* The first word of an error reply, printable, for messages. */
static void reply_word(const redisReply *r, char *buf, size_t size) {
    size_t n = 0;

    if (r && r->type == REDIS_REPLY_ERROR && r->str)
        while (n < r->len && n + 1 < size && n < 32 && r->str[n] > 0x20 && r->str[n] < 0x7f) {
            buf[n] = r->str[n];
            n++;
        }
    buf[n] = '\0';
}

static bool reply_says(const redisReply *r, const char *phrase) {
    return r && r->type == REDIS_REPLY_ERROR && r->str && strcasestr(r->str, phrase);
}


/* ------------------------------------------------------------------------------------
 * Cluster discovery: one seed at a time (the first healthy one answers), through rnet.
 *
 * The script: AUTH current + PING, AUTH candidate + PING (the current credential first, so
 * discovery does not depend on the candidate; without one, the candidate only), then
 * CLUSTER SHARDS, and CLUSTER SLOTS when SHARDS is refused (Redis < 7.0, or a user
 * allowed SLOTS only). An open server (no password) needs no login to list its nodes.
 */

enum discovery {
    D_OK = 0,
    D_STANDALONE,     /* the seed has cluster support disabled: validate the seeds */
    D_FAILED,         /* this seed could not give a topology; seed->state says why */
};

enum dstep { DS_AUTH_CUR, DS_PING_CUR, DS_AUTH_CAND, DS_PING_CAND, DS_SHARDS, DS_SLOTS,
             DS_COUNT };

struct disc {
    struct rnet_cmd script[DS_COUNT];
    bool have_cur;
    struct vnode *seed;
    enum discovery d;
    struct resp_cluster_node *cn;
    size_t max, n;
    char w1[40];              /* SHARDS's error word */
};

static void set_auth(struct rnet_cmd *cmd, struct rnet_cmd *ping, const char *user,
                     const struct secret *pw) {
    const char *argv[3];
    size_t argvlen[3];

    cmd->label = "AUTH";
    cmd->argc = resp_auth_argv(user, pw, argv, argvlen);
    if (cmd->argc > 0) {
        memcpy(cmd->argv, argv, sizeof argv);
        memcpy(cmd->argvlen, argvlen, sizeof argvlen);
    }
    *ping = (struct rnet_cmd){ .label = "PING after AUTH", .argc = 1, .argv = { "PING" },
                               .pipelined = true };
}

static void disc_fail(struct disc *ds, enum validate_node st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void disc_fail(struct disc *ds, enum validate_node st, const char *fmt, ...) {
    va_list ap;

    ds->seed->state = st;
    va_start(ap, fmt);
    (void)vsnprintf(ds->seed->detail, sizeof ds->seed->detail, fmt, ap);
    va_end(ap);
    ds->d = D_FAILED;
}

/* A login's reply: on to the next step, or the seed's failure. */
static int disc_auth(struct disc *ds, size_t cmd, redisReply *reply) {
    const struct rnet_cmd *a = &ds->script[cmd];
    char detail[256];
    enum resp_auth_result r = resp_auth_judge(reply, a->argc, a->argv, a->argvlen, detail,
                                              sizeof detail);

    if (r == RESP_AUTH_ACCEPTED)
        return (int)cmd + 1;   /* its PING */
    if (r == RESP_AUTH_NOPASS)
        return DS_SHARDS;
    if (cmd == DS_AUTH_CUR)
        return DS_AUTH_CAND;
    disc_fail(ds, auth_state(r), "%s%s", detail,
              r == RESP_AUTH_REFUSED && ds->have_cur
                  ? " (cluster discovery: the current credential was refused too)" : "");
    return RNET_STOP;
}

static int disc_topology(struct disc *ds, bool slots, redisReply *reply) {
    int n = slots ? resp_cluster_parse_slots(reply, ds->cn, ds->max)
                  : resp_cluster_parse_shards(reply, ds->cn, ds->max);

    freeReplyObject(reply);
    if (n > 0) {
        ds->n = (size_t)n;
        ds->d = D_OK;
        return RNET_STOP;
    }
    disc_fail(ds, VALIDATE_NODE_UNEXPECTED, "cluster discovery: CLUSTER %s: %s",
              slots ? "SLOTS" : "SHARDS",
              n == 0 ? "no nodes listed (are slots assigned?)"
              : n == -E2BIG ? "more nodes than the limit" : "reply not understood");
    return RNET_STOP;
}

static int disc_cluster(struct disc *ds, size_t cmd, redisReply *reply) {
    char w2[40];

    if (reply->type != REDIS_REPLY_ERROR)
        return disc_topology(ds, cmd == DS_SLOTS, reply);
    if (reply_says(reply, "cluster support disabled")) {
        freeReplyObject(reply);
        ds->d = D_STANDALONE;
        return RNET_STOP;
    }
    if (cmd == DS_SHARDS) {
        reply_word(reply, ds->w1, sizeof ds->w1);
        freeReplyObject(reply);
        return DS_SLOTS;
    }
    reply_word(reply, w2, sizeof w2);
    freeReplyObject(reply);
    disc_fail(ds, VALIDATE_NODE_UNEXPECTED,
              "cluster discovery: CLUSTER SHARDS: %s, CLUSTER SLOTS: %s%s", ds->w1, w2,
              strcmp(w2, "NOPERM") == 0 ? " (the user needs +cluster|shards or "
                                          "+cluster|slots)" : "");
    return RNET_STOP;
}

static int disc_reply(void *ud, struct rnet_node *rn, size_t cmd, redisReply *reply) {
    struct disc *ds = ud;

    (void)rn;
    switch ((enum dstep)cmd) {
    case DS_AUTH_CUR:
    case DS_AUTH_CAND:
        return disc_auth(ds, cmd, reply);
    case DS_PING_CUR:
    case DS_PING_CAND:
        resp_reply_wipe_free(reply);   /* +OK came: any answer shows the link works */
        return DS_SHARDS;
    case DS_SHARDS:
    case DS_SLOTS:
        return disc_cluster(ds, cmd, reply);
    case DS_COUNT:
        break;
    }
    resp_reply_wipe_free(reply);
    return RNET_STOP;
}

/* The seed's rnet failure: its class decides the state; an I/O failure after the login
 * says it happened during discovery. */
static void disc_failed(struct disc *ds, const struct rnet_node *rn) {
    enum validate_node st = rn->cls == RNET_PROTOCOL ? VALIDATE_NODE_UNREACHABLE
                                                     : failed_state(rn, DS_COUNT);

    disc_fail(ds, st, "%s%s", rn->step >= DS_SHARDS ? "cluster discovery: " : "", rn->msg);
}

static enum discovery discover_from(const struct vrun *x, struct vnode *seed,
                                    const char *cand_user, const struct secret *cand_pw,
                                    const char *cur_user, const struct secret *cur_pw,
                                    struct resp_cluster_node *cn, size_t max, size_t *ret_n) {
    struct disc ds = { .seed = seed, .cn = cn, .max = max, .d = D_FAILED, .have_cur = !!cur_pw };
    struct rnet_opts o = rnet_opts_of(x, disc_reply, &ds);
    struct rnet_node rn;

    seed->detail[0] = '\0';
    if (node_unusable(seed))
        return D_FAILED;
    set_auth(&ds.script[DS_AUTH_CUR], &ds.script[DS_PING_CUR], cur_user, cur_pw);
    set_auth(&ds.script[DS_AUTH_CAND], &ds.script[DS_PING_CAND], cand_user, cand_pw);
    ds.script[DS_SHARDS] = (struct rnet_cmd){ .label = "CLUSTER SHARDS", .argc = 2,
                                              .argv = { "CLUSTER", "SHARDS" } };
    ds.script[DS_SLOTS] = (struct rnet_cmd){ .label = "CLUSTER SLOTS", .argc = 2,
                                             .argv = { "CLUSTER", "SLOTS" } };
    if (ds.script[DS_AUTH_CAND].argc < 0) {
        disc_fail(&ds, VALIDATE_NODE_UNEXPECTED, "AUTH: no password given");
        return D_FAILED;
    }
    rnet_node_of(seed, &rn);
    rn.script = ds.script;
    rn.nscript = DS_COUNT;
    rn.first = cur_pw ? DS_AUTH_CUR : DS_AUTH_CAND;
    if (rnet_run(&o, &rn, 1) < 0)
        disc_fail(&ds, VALIDATE_NODE_UNEXPECTED, "out of memory");
    else if (rn.cls != RNET_OK)
        disc_failed(&ds, &rn);
    explicit_bzero(ds.script, sizeof ds.script);
    if (ds.d == D_OK)
        *ret_n = ds.n;
    return ds.d;
}

/* ------------------------------------------------------------------------------------
 * Result
 */

static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...) {
    size_t used = strnlen(buf, size);
    va_list ap;

    if (used + 1 >= size)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
}

/* "a:1: reason" for one node, "a:1, b:2: reason-of-a" for several (at most 4 named). */
static void describe(const struct vnode *nodes, size_t n, enum validate_blame blame,
                     char *buf, size_t size) {
    const struct vnode *first = NULL;
    size_t named = 0, more = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!validate_blames(blame, nodes[i].state))
            continue;
        if (!first)
            first = &nodes[i];
        if (named < 4) {
            append(buf, size, "%s%s", named ? ", " : "", nodes[i].name);
            named++;
        } else
            more++;
    }
    if (!first)
        return;
    if (more)
        append(buf, size, " and %zu more", more);
    append(buf, size, ": %s",
           first->detail[0] ? first->detail : validate_node_to_string(first->state));
}

static void tally(const struct vnode *nodes, size_t n, struct validate_result *res) {
    res->total = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        enum validate_node s = nodes[i].state;
        append(res->nodes, sizeof res->nodes, "%s%s=%s", i ? "," : "", nodes[i].name,
               validate_node_to_string(s));
        if (nodes[i].usec > res->slowest_node_usec)
            res->slowest_node_usec = nodes[i].usec;
        res->accepted += s == VALIDATE_NODE_ACCEPTED;
        res->refused += s == VALIDATE_NODE_REFUSED;
        res->unreachable += unreachable(s);
        res->other += s == VALIDATE_NODE_NOPASS || s == VALIDATE_NODE_UNEXPECTED;
    }
}

/* Does the current credential still work on a node the candidate reached? Asked on all
 * of them at once. */
static enum validate_current current_on_reachable(const struct vrun *x,
                                                  const struct vnode *nodes, size_t n,
                                                  const char *user, const struct secret *pw) {
    struct vnode *cur = pw ? malloc(n * sizeof *cur) : NULL;
    bool *skip = pw ? calloc(n, sizeof *skip) : NULL;
    enum validate_current c = VALIDATE_CURRENT_GONE;

    if (!pw)
        return VALIDATE_CURRENT_GONE;
    if (!cur || !skip)
        c = VALIDATE_CURRENT_WORKS;   /* cannot tell: the safe side is to keep it */
    else {
        memcpy(cur, nodes, n * sizeof *cur);
        for (size_t i = 0; i < n; i++)
            skip[i] = unreachable(nodes[i].state);
        check_all(x, cur, n, skip, user, pw);
        for (size_t i = 0; i < n; i++)
            if (!skip[i] && cur[i].state == VALIDATE_NODE_ACCEPTED)
                c = VALIDATE_CURRENT_WORKS;
    }
    free(cur);
    free(skip);
    return c;
}

/* The policy over the nodes' states, asking the current credential when it must. */
static void decide(const struct vrun *x, const struct vnode *nodes, size_t n,
                   const char *current_username, const struct secret *current_password,
                   struct validate_result *res) {
    enum validate_node *states = calloc(n ? n : 1, sizeof *states);
    struct validate_verdict v;

    if (!states) {
        res->outcome = VALIDATE_ERROR;
        snprintf(res->detail, sizeof res->detail, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        states[i] = nodes[i].state;
    v = validate_decide(x->redis->validate, states, n, VALIDATE_CURRENT_UNKNOWN);
    if (v.ask_current)
        v = validate_decide(x->redis->validate, states, n,
                            current_on_reachable(x, nodes, n, current_username,
                                                 current_password));
    free(states);
    res->outcome = v.outcome;
    describe(nodes, n, v.blame, res->detail, sizeof res->detail);
}

/* ------------------------------------------------------------------------------------
 * Entry points
 */

static void fail_all(struct validate_result *res, enum validate_outcome o, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));
static void fail_all(struct validate_result *res, enum validate_outcome o, const char *fmt,
                     ...) {
    va_list ap;

    res->outcome = o;
    va_start(ap, fmt);
    (void)vsnprintf(res->detail, sizeof res->detail, fmt, ap);
    va_end(ap);
}

/* The TLS context of a credential's Redis settings; *ret stays NULL without TLS. */
static int vrun_tls(const struct config_redis *redis, struct vrun *x, char *err, size_t errlen) {
    if (!redis->tls.enabled)
        return 0;
    struct tls_options o = {
        .ca_file = redis->tls.ca_file, .ca_path = redis->tls.ca_path,
        .cert_file = redis->tls.cert_file, .key_file = redis->tls.key_file,
        .insecure_skip_verify = redis->tls.insecure_skip_verify,
    };
    return tls_ctx_new(&o, &x->tls, err, errlen);
}

/* Cluster discovery over the seeds, one after another (the first healthy one answers in
 * one round trip). D_OK: *ret_nodes (the required nodes; replicas too when asked);
 * D_STANDALONE: the seeds are the nodes; D_FAILED: each seed's state says why. */
static enum discovery discover(const struct vrun *x, bool replicas, struct vnode *seeds,
                               size_t nseeds, const char *user, const struct secret *pw,
                               const char *user2, const struct secret *pw2,
                               struct vnode **ret_nodes, size_t *ret_n) {
    struct resp_cluster_node *cn = calloc(VALIDATE_MAX_NODES, sizeof *cn);
    enum discovery d = D_FAILED;
    size_t ncn = 0, i;

    if (!cn)
        return D_FAILED;
    for (i = 0; i < nseeds; i++) {
        d = discover_from(x, &seeds[i], user, pw, user2, pw2, cn, VALIDATE_MAX_NODES, &ncn);
        if (d != D_FAILED)
            break;
    }
    if (d == D_OK) {
        *ret_nodes = topology_nodes(x->redis, replicas, &seeds[i], cn, ncn, ret_n);
        if (!*ret_nodes)
            d = D_FAILED;
    }
    free(cn);
    return d;
}

/* Our own TLS set-up is broken: no node can be asked. Retried like an unreachable Redis,
 * since the files may yet appear. */
static void tls_setup_failed(const struct config_redis *redis, const char *err,
                             struct validate_result *res) {
    res->total = (unsigned)redis->n_endpoints;
    res->unreachable = res->total;
    for (size_t i = 0; i < redis->n_endpoints; i++)
        append(res->nodes, sizeof res->nodes, "%s%s=tls-error", i ? "," : "",
               redis->endpoints[i]);
    fail_all(res, VALIDATE_UNREACHABLE, "%s", err);
}

/* The cluster's nodes, or NULL with *ret_done set when the seeds' answers decided the
 * result (or with neither: not a cluster after all, the endpoints are the nodes). */
static struct vnode *cluster_nodes(const struct vrun *x, const char *username,
                                   const struct secret *password, const char *current_username,
                                   const struct secret *current_password,
                                   struct validate_result *res, size_t *ret_n, bool *ret_done) {
    uint64_t d0 = rctime_mono_usec();
    struct vnode *nodes = NULL, *seeds;
    size_t nseeds = 0;

    seeds = configured_nodes(x->redis, &nseeds);
    if (!seeds) {
        fail_all(res, VALIDATE_ERROR, "out of memory");
        *ret_done = true;
        return NULL;
    }
    enum discovery d = discover(x, x->redis->validate_replicas, seeds, nseeds, username,
                                password, current_username, current_password, &nodes, ret_n);
    res->discovery_usec = rctime_mono_usec() - d0;
    res->discovered = d == D_OK;
    if (d == D_FAILED) {
        /* No seed gave a topology: the seeds' own answers decide. */
        tally(seeds, nseeds, res);
        decide(x, seeds, nseeds, NULL, NULL, res);
        if (res->outcome == VALIDATE_PUBLISH)   /* cannot happen: a seed failed */
            res->outcome = VALIDATE_ERROR;
        *ret_done = true;
    }
    free(seeds);
    return nodes;
}

void validate_candidate(const struct config_redis *redis,
                        const char *username, const struct secret *password,
                        const char *current_username, const struct secret *current_password,
                        struct validate_result *ret) {
    struct validate_result res = { .outcome = VALIDATE_PUBLISH };
    struct vrun x = { .redis = redis };
    struct vnode *nodes = NULL;
    uint64_t t0 = rctime_mono_usec();
    bool done = false;
    size_t n = 0;
    char err[400];

    if (vrun_tls(redis, &x, err, sizeof err) < 0) {
        tls_setup_failed(redis, err, &res);
        goto done;
    }
    if (redis->cluster)
        nodes = cluster_nodes(&x, username, password, current_username, current_password, &res,
                              &n, &done);
    if (done)
        goto done;
    if (!nodes && !(nodes = configured_nodes(redis, &n))) {
        fail_all(&res, VALIDATE_ERROR, "out of memory");
        goto done;
    }
    check_all(&x, nodes, n, NULL, username, password);
    tally(nodes, n, &res);
    decide(&x, nodes, n, current_username, current_password, &res);

done:
    res.elapsed_usec = rctime_mono_usec() - t0;
    free(nodes);
    tls_ctx_free(x.tls);
    *ret = res;
}

/* ------------------------------------------------------------------------------------
 * Node lists for other callers (rotation)
 */

struct validate_nodes {
    struct vrun x;
    struct vnode *nodes;
    size_t n;
};

struct validate_nodes *validate_nodes_free(struct validate_nodes *v) {
    if (!v)
        return NULL;
    free(v->nodes);
    tls_ctx_free(v->x.tls);
    free(v);
    return NULL;
}

/* The cluster's nodes into v, or -errno with err. */
static int nodes_discover(struct validate_nodes *v, bool replicas, const char *username,
                          const struct secret *password, const char *username2,
                          const struct secret *password2, char *err, size_t errlen) {
    size_t nseeds = 0;
    struct vnode *seeds = configured_nodes(v->x.redis, &nseeds);
    enum discovery d;

    if (!seeds)
        return -ENOMEM;
    /* discover() tries its second pair first: username/password go there. */
    d = password2 ? discover(&v->x, replicas, seeds, nseeds, username2, password2, username,
                             password, &v->nodes, &v->n)
                  : discover(&v->x, replicas, seeds, nseeds, username, password, NULL, NULL,
                             &v->nodes, &v->n);
    if (d == D_FAILED) {
        char detail[512];
        describe(seeds, nseeds, VALIDATE_BLAME_PROBLEM, detail, sizeof detail);
        snprintf(err, errlen, "cluster discovery failed: %s", detail);
    }
    free(seeds);
    return d == D_FAILED ? -EHOSTUNREACH : 0;
}

int validate_nodes_list(const struct config_redis *redis, bool replicas,
                        const char *username, const struct secret *password,
                        const char *username2, const struct secret *password2,
                        struct validate_nodes **ret, char *err, size_t errlen) {
    struct validate_nodes *v = calloc(1, sizeof *v);
    int r;

    if (!v)
        return -ENOMEM;
    v->x.redis = redis;
    if ((r = vrun_tls(redis, &v->x, err, errlen)) < 0)
        goto fail;
    if (redis->cluster &&
        (r = nodes_discover(v, replicas, username, password, username2, password2, err,
                            errlen)) < 0)
        goto fail;
    if (!v->nodes && !(v->nodes = configured_nodes(redis, &v->n))) {
        r = -ENOMEM;
        goto fail;
    }
    *ret = v;
    return 0;
fail:
    validate_nodes_free(v);
    return r;
}

size_t validate_nodes_count(const struct validate_nodes *v) {
    return v->n;
}

const char *validate_nodes_name(const struct validate_nodes *v, size_t i) {
    return v->nodes[i].name;
}

const char *validate_nodes_problem(const struct validate_nodes *v, size_t i) {
    const struct vnode *nd = &v->nodes[i];

    if (nd->ep_ok)
        return NULL;
    return nd->bad_ep ? nd->bad_ep : "not a valid endpoint";
}

void validate_nodes_rnet(const struct validate_nodes *v, struct rnet_node *nodes,
                         struct rnet_opts *o) {
    for (size_t i = 0; i < v->n; i++)
        rnet_node_of(&v->nodes[i], &nodes[i]);
    *o = rnet_opts_of(&v->x, NULL, NULL);
}

size_t validate_config_warnings(const struct config_redis *redis, const char **ret, size_t max) {
    size_t n = 0;

    if (redis->tls.enabled && redis->tls.insecure_skip_verify && n < max)
        ret[n++] = "redis.tls_insecure_skip_verify = true: the Redis servers' certificates "
                   "are not verified, so anyone on the network path can pose as Redis and "
                   "collect every candidate password; never use this in production";
    if (!redis->tls.enabled && (redis->tls.ca_file || redis->tls.ca_path ||
                                redis->tls.cert_file || redis->tls.key_file ||
                                redis->tls.server_name || redis->tls.insecure_skip_verify) &&
        n < max)
        ret[n++] = "redis: TLS settings (ca_file, ca_path, cert_file, key_file, server_name, "
                   "tls_insecure_skip_verify) are set but tls = false: connecting without TLS";
    return n;
}
