/* Unit tests for agent/validate: node lists, cluster discovery, concurrency, timeouts and
 * the policies, against fake Redis nodes run by this program on loopback.
 *
 * A fake node is one thread with a poll() loop over its listening socket and clients. It
 * parses commands with resp_reader and answers AUTH (from a list of accepted passwords),
 * PING, CLUSTER SHARDS and CLUSTER SLOTS (canned replies, or the errors real servers give),
 * optionally after a delay per reply, or never (silent). It records which passwords it
 * was sent. The real-server behaviour is covered by tests/integration/test_cluster*.py.
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
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rctime.h"
#include "resp.h"
#include "secret.h"
#include "validate.h"

#define MS 1000ull
#define MAX_CLIENTS 32

struct fake {
    int lfd, wake[2];
    uint16_t port;
    char endpoint[32];
    pthread_t th;
    /* behaviour, set before start */
    const char *accept[3];      /* accepted passwords */
    bool silent;                /* accept connections, never answer */
    bool nopass;                /* AUTH: no password configured */
    bool no_shards;             /* CLUSTER SHARDS: unknown subcommand (Redis < 7) */
    bool noperm_cluster;        /* CLUSTER *: NOPERM */
    unsigned delay_ms;          /* before every reply */
    bool hangup_after_auth;     /* close the connection right after AUTH's reply */
    bool mute_after_auth;       /* answer AUTH, never anything after it */
    char shards[8192];          /* raw RESP; "" = cluster support disabled */
    char slots[8192];
    /* observations */
    pthread_mutex_t mu;
    char seen[1024];            /* passwords sent with AUTH, comma separated */
    unsigned conns, auths;
    unsigned pipelined;         /* PINGs that came in the same recv() as an AUTH */
};

struct client {
    int fd;
    struct resp_reader *rd;
    bool muted;                 /* mute_after_auth and AUTH came */
};

static void reply(struct fake *f, int fd, const char *s) {
    size_t len = strlen(s), off = 0;

    if (f->delay_ms) {
        struct timespec ts = { .tv_sec = f->delay_ms / 1000,
                               .tv_nsec = (long)(f->delay_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    while (off < len) {
        ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        off += (size_t)n;
    }
}

static bool arg_is(const redisReply *r, size_t i, const char *s) {
    return i < r->elements && r->element[i]->str && strcasecmp(r->element[i]->str, s) == 0;
}

/* Returns false when the connection is to be closed. */
static bool handle(struct fake *f, int fd, const redisReply *cmd) {
    if (cmd->type != REDIS_REPLY_ARRAY || cmd->elements == 0) {
        reply(f, fd, "-ERR protocol\r\n");
    } else if (arg_is(cmd, 0, "AUTH")) {
        const char *pw = cmd->element[cmd->elements - 1]->str;
        bool ok = false;
        pthread_mutex_lock(&f->mu);
        f->auths++;
        size_t used = strlen(f->seen);
        snprintf(f->seen + used, sizeof f->seen - used, "%s%s", used ? "," : "", pw);
        pthread_mutex_unlock(&f->mu);
        for (size_t i = 0; i < 3 && f->accept[i]; i++)
            ok = ok || strcmp(f->accept[i], pw) == 0;
        if (f->nopass)
            reply(f, fd, "-ERR AUTH <password> called without any password configured for "
                         "the default user. Are you sure your configuration is correct?\r\n");
        else
            reply(f, fd, ok ? "+OK\r\n"
                            : "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
        return !f->hangup_after_auth;
    } else if (arg_is(cmd, 0, "PING")) {
        reply(f, fd, "+PONG\r\n");
    } else if (arg_is(cmd, 0, "CLUSTER") && f->noperm_cluster) {
        reply(f, fd, "-NOPERM this user has no permissions to run the 'cluster' command\r\n");
    } else if (arg_is(cmd, 0, "CLUSTER") && arg_is(cmd, 1, "SHARDS") && f->no_shards) {
        reply(f, fd, "-ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.\r\n");
    } else if (arg_is(cmd, 0, "CLUSTER") && arg_is(cmd, 1, "SHARDS") && f->shards[0]) {
        reply(f, fd, f->shards);
    } else if (arg_is(cmd, 0, "CLUSTER") && arg_is(cmd, 1, "SLOTS") && f->slots[0]) {
        reply(f, fd, f->slots);
    } else if (arg_is(cmd, 0, "CLUSTER")) {
        reply(f, fd, "-ERR This instance has cluster support disabled\r\n");
    } else {
        reply(f, fd, "-ERR unknown command\r\n");
    }
    return true;
}

static void *fake_run(void *arg) {
    struct fake *f = arg;
    struct client cl[MAX_CLIENTS];
    size_t ncl = 0;

    for (;;) {
        struct pollfd p[MAX_CLIENTS + 2];
        size_t np = 0;
        p[np++] = (struct pollfd){ .fd = f->wake[0], .events = POLLIN };
        p[np++] = (struct pollfd){ .fd = f->lfd, .events = POLLIN };
        for (size_t i = 0; i < ncl; i++)
            p[np++] = (struct pollfd){ .fd = cl[i].fd, .events = f->silent ? 0 : POLLIN };
        if (poll(p, np, -1) < 0)
            continue;
        if (p[0].revents)
            break;
        size_t polled = ncl;   /* clients accepted below were not in this poll */
        if (p[1].revents & POLLIN) {
            int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0 && ncl < MAX_CLIENTS) {
                cl[ncl].fd = fd;
                cl[ncl].rd = resp_reader_new(0, 0);
                cl[ncl].muted = false;
                ncl++;
                pthread_mutex_lock(&f->mu);
                f->conns++;
                pthread_mutex_unlock(&f->mu);
            } else if (fd >= 0)
                close(fd);
        }
        for (size_t i = 0; i < polled; i++) {
            char buf[4096];
            redisReply *cmd = NULL;
            bool gone = false;
            if (!(p[2 + i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = recv(cl[i].fd, buf, sizeof buf, 0);
            if (n <= 0 || resp_reader_feed(cl[i].rd, buf, (size_t)n) < 0)
                gone = true;
            bool auth_here = false;
            while (!gone && resp_reader_get(cl[i].rd, &cmd) == 1) {
                bool is_auth = cmd->type == REDIS_REPLY_ARRAY && arg_is(cmd, 0, "AUTH");
                if (!is_auth && arg_is(cmd, 0, "PING") && auth_here) {
                    pthread_mutex_lock(&f->mu);
                    f->pipelined++;
                    pthread_mutex_unlock(&f->mu);
                }
                auth_here = auth_here || is_auth;
                if (!cl[i].muted && !handle(f, cl[i].fd, cmd))
                    gone = true;
                cl[i].muted = cl[i].muted || (is_auth && f->mute_after_auth);
                freeReplyObject(cmd);
            }
            if (gone) {
                close(cl[i].fd);
                resp_reader_free(cl[i].rd);
                cl[i] = cl[--ncl];
                /* the pollfd array no longer matches: poll again */
                break;
            }
        }
    }
    for (size_t i = 0; i < ncl; i++) {
        close(cl[i].fd);
        resp_reader_free(cl[i].rd);
    }
    return NULL;
}

static struct fake *fake_new(const char *pw) {
    struct fake *f = calloc(1, sizeof *f);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;

    assert_non_null(f);
    f->accept[0] = pw;
    pthread_mutex_init(&f->mu, NULL);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->lfd, 64), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    snprintf(f->endpoint, sizeof f->endpoint, "127.0.0.1:%u", (unsigned)f->port);
    assert_int_equal(pipe2(f->wake, O_CLOEXEC), 0);
    return f;
}

static void fake_start(struct fake *f) {
    assert_int_equal(pthread_create(&f->th, NULL, fake_run, f), 0);
}

static void fake_free(struct fake *f) {
    if (!f)
        return;
    (void)!write(f->wake[1], "x", 1);
    pthread_join(f->th, NULL);
    close(f->wake[0]);
    close(f->wake[1]);
    close(f->lfd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* A loopback endpoint nobody listens on: bind, learn the port, close. */
static void closed_endpoint(char *buf, size_t size) {
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    snprintf(buf, size, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
}

static bool fake_saw(struct fake *f, const char *pw) {
    pthread_mutex_lock(&f->mu);
    bool r = strstr(f->seen, pw) != NULL;
    pthread_mutex_unlock(&f->mu);
    return r;
}

/* CLUSTER SHARDS as Redis 7.0 writes it (RESP2): one shard per primary, the replicas in
 * the primary's shard. host "" writes ip "" / endpoint "?" (a node that does not know
 * its address). */
struct topo_node {
    const char *host;
    uint16_t port;
    bool replica;
    const char *health;
};

static void append_str(char *buf, size_t size, const char *s) {
    size_t used = strlen(buf);
    snprintf(buf + used, size - used, "$%zu\r\n%s\r\n", strlen(s), s);
}

static void append_raw(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append_raw(char *buf, size_t size, const char *fmt, ...) {
    size_t used = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
}

/* nodes: primary, its replicas, next primary, ... */
static void build_shards(char *buf, size_t size, const struct topo_node *nodes, size_t n) {
    size_t nshards = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        nshards += !nodes[i].replica;
    append_raw(buf, size, "*%zu\r\n", nshards);
    for (size_t i = 0; i < n;) {
        size_t k = 1;
        while (i + k < n && nodes[i + k].replica)
            k++;
        append_raw(buf, size, "*4\r\n");
        append_str(buf, size, "slots");
        append_raw(buf, size, "*2\r\n:%zu\r\n:%zu\r\n", i * 100, i * 100 + 99);
        append_str(buf, size, "nodes");
        append_raw(buf, size, "*%zu\r\n", k);
        for (size_t j = i; j < i + k; j++) {
            char id[41];
            snprintf(id, sizeof id, "%040zu", j);
            append_raw(buf, size, "*14\r\n");
            append_str(buf, size, "id");
            append_str(buf, size, id);
            append_str(buf, size, "port");
            append_raw(buf, size, ":%u\r\n", (unsigned)nodes[j].port);
            append_str(buf, size, "ip");
            append_str(buf, size, nodes[j].host);
            append_str(buf, size, "endpoint");
            append_str(buf, size, nodes[j].host[0] ? nodes[j].host : "?");
            append_str(buf, size, "role");
            append_str(buf, size, nodes[j].replica ? "replica" : "master");
            append_str(buf, size, "replication-offset");
            append_raw(buf, size, ":0\r\n");
            append_str(buf, size, "health");
            append_str(buf, size, nodes[j].health ? nodes[j].health : "online");
        }
        i += k;
    }
}

/* CLUSTER SLOTS: [start, end, [ip, port, id], replicas...] per primary. */
static void build_slots(char *buf, size_t size, const struct topo_node *nodes, size_t n) {
    size_t nshards = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        nshards += !nodes[i].replica;
    append_raw(buf, size, "*%zu\r\n", nshards);
    for (size_t i = 0; i < n;) {
        size_t k = 1;
        while (i + k < n && nodes[i + k].replica)
            k++;
        append_raw(buf, size, "*%zu\r\n:%zu\r\n:%zu\r\n", 2 + k, i * 100, i * 100 + 99);
        for (size_t j = i; j < i + k; j++) {
            append_raw(buf, size, "*3\r\n");
            append_str(buf, size, nodes[j].host);
            append_raw(buf, size, ":%u\r\n", (unsigned)nodes[j].port);
            append_str(buf, size, "0123456789012345678901234567890123456789");
        }
        i += k;
    }
}

static struct config_redis redis_cfg(const char **endpoints, size_t n, uint64_t timeout) {
    struct config_redis r = { .endpoints = (char **)endpoints, .n_endpoints = n,
                              .validate = VALIDATE_ALL, .timeout_usec = timeout };
    return r;
}

static void run(const struct config_redis *r, const char *pw, const char *cur,
                struct validate_result *res) {
    struct secret *p = secret_new_str(pw), *c = cur ? secret_new_str(cur) : NULL;
    validate_candidate(r, "app", p, cur ? "app" : NULL, c, res);
    secret_free(p);
    secret_free(c);
    /* never a password in what the agent logs */
    assert_null(strstr(res->nodes, pw));
    assert_null(strstr(res->detail, pw));
}

/* ------------------------------------------------------------------------------------
 * Plain endpoints
 */

static void test_all_nodes_accept_publishes_and_names_each_node(void **state) {
    struct fake *f[3];
    const char *eps[3];
    struct validate_result res;
    for (int i = 0; i < 3; i++) {
        f[i] = fake_new("pw-new");
        fake_start(f[i]);
        eps[i] = f[i]->endpoint;
    }
    struct config_redis r = redis_cfg(eps, 3, 2000 * MS);
    run(&r, "pw-new", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    assert_int_equal(res.accepted, 3);
    assert_int_equal(res.total, 3);
    char want[200];
    snprintf(want, sizeof want, "%s=accepted,%s=accepted,%s=accepted", eps[0], eps[1], eps[2]);
    assert_string_equal(res.nodes, want);
    assert_false(res.discovered);
    for (int i = 0; i < 3; i++)
        fake_free(f[i]);
}

static void test_one_refusing_node_blocks_all_and_is_named(void **state) {
    struct fake *f[3];
    const char *eps[3];
    struct validate_result res;
    for (int i = 0; i < 3; i++) {
        f[i] = fake_new(i == 1 ? "pw-old" : "pw-new");
        fake_start(f[i]);
        eps[i] = f[i]->endpoint;
    }
    struct config_redis r = redis_cfg(eps, 3, 2000 * MS);
    run(&r, "pw-new", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_REFUSED);
    assert_int_equal(res.accepted, 2);
    assert_int_equal(res.refused, 1);
    char want[200];
    snprintf(want, sizeof want, "%s: AUTH refused: WRONGPASS", eps[1]);
    assert_string_equal(res.detail, want);
    snprintf(want, sizeof want, "%s=refused", eps[1]);
    assert_non_null(strstr(res.nodes, want));

    /* "any" is met by the two that accept */
    r.validate = VALIDATE_ANY;
    run(&r, "pw-new", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    for (int i = 0; i < 3; i++)
        fake_free(f[i]);
}

static void test_nodes_are_asked_concurrently(void **state) {
    enum { N = 12 };
    struct fake *f[N];
    const char *eps[N];
    struct validate_result res;
    for (int i = 0; i < N; i++) {
        f[i] = fake_new("pw");
        f[i]->delay_ms = 250;   /* AUTH + PING: 500 ms a node; one after another: 6 s */
        fake_start(f[i]);
        eps[i] = f[i]->endpoint;
    }
    struct config_redis r = redis_cfg(eps, N, 5000 * MS);
    run(&r, "pw", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    assert_int_equal(res.accepted, N);
    /* at once: 0.5 s; the bound leaves 1.4 s for a loaded machine (ctest -j, ASan) and
     * still fails when fewer than 4 nodes are asked at a time (3 rounds: 1.5 s, 4: 2 s) */
    assert_true(res.elapsed_usec >= 500 * MS);
    assert_true(res.elapsed_usec < 1900 * MS);
    for (int i = 0; i < N; i++)
        fake_free(f[i]);
}

static void test_silent_node_times_out_alone_and_delays_no_other(void **state) {
    struct fake *silent = fake_new("pw"), *good[3];
    const char *eps[4];
    struct validate_result res;
    silent->silent = true;
    fake_start(silent);
    eps[0] = silent->endpoint;
    for (int i = 0; i < 3; i++) {
        good[i] = fake_new("pw");
        fake_start(good[i]);
        eps[1 + i] = good[i]->endpoint;
    }
    struct config_redis r = redis_cfg(eps, 4, 800 * MS);
    r.validate = VALIDATE_ANY;
    uint64_t t0 = rctime_mono_usec();
    run(&r, "pw", NULL, &res);
    uint64_t took = rctime_mono_usec() - t0;
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    assert_int_equal(res.accepted, 3);
    assert_int_equal(res.unreachable, 1);
    /* the silent node's timeout is honoured: the whole call is one timeout, not more */
    assert_true(took >= 790 * MS);
    assert_true(took < 1550 * MS);   /* two timeouts would be 1.6 s */
    char want[100];
    snprintf(want, sizeof want, "%s=unreachable", eps[0]);
    assert_non_null(strstr(res.nodes, want));
    assert_non_null(strstr(res.detail, "timed out after 800 ms"));

    /* under "all", nothing is current: what the reachable nodes accept is published */
    r.validate = VALIDATE_ALL;
    run(&r, "pw", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    fake_free(silent);
    for (int i = 0; i < 3; i++)
        fake_free(good[i]);
}

static void test_auth_and_ping_are_sent_in_one_write(void **state) {
    struct fake *f[3];
    const char *eps[3];
    struct validate_result res;
    for (int i = 0; i < 3; i++) {
        f[i] = fake_new("pw");
        fake_start(f[i]);
        eps[i] = f[i]->endpoint;
    }
    struct config_redis r = redis_cfg(eps, 3, 2000 * MS);
    run(&r, "pw", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    run(&r, "wrong", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_REFUSED);
    for (int i = 0; i < 3; i++) {
        pthread_mutex_lock(&f[i]->mu);
        assert_int_equal(f[i]->auths, 2);
        assert_int_equal(f[i]->pipelined, 2);
        pthread_mutex_unlock(&f[i]->mu);
        fake_free(f[i]);
    }
}

/* AUTH's reply decides; what happens to the link after it only matters after +OK. */
static void test_link_lost_after_auth_reply(void **state) {
    struct fake *f = fake_new("pw");
    const char *eps[1] = { f->endpoint };
    struct validate_result res;
    char want[200];
    f->hangup_after_auth = true;
    fake_start(f);
    struct config_redis r = redis_cfg(eps, 1, 2000 * MS);

    run(&r, "wrong", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_REFUSED);
    snprintf(want, sizeof want, "%s: AUTH refused: WRONGPASS", eps[0]);
    assert_string_equal(res.detail, want);

    run(&r, "pw", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_UNREACHABLE);
    snprintf(want, sizeof want, "%s: PING after AUTH: read: connection closed by server", eps[0]);
    assert_string_equal(res.detail, want);
    fake_free(f);

    f = fake_new("pw");
    eps[0] = f->endpoint;
    f->hangup_after_auth = true;
    f->nopass = true;
    fake_start(f);
    run(&r, "pw", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_MISCONFIGURED);
    fake_free(f);
}

static void test_unanswered_ping(void **state) {
    struct fake *f = fake_new("pw");
    const char *eps[1] = { f->endpoint };
    struct validate_result res;
    char want[200];
    f->mute_after_auth = true;
    fake_start(f);
    struct config_redis r = redis_cfg(eps, 1, 200 * MS);

    /* PING's reply is due two timeouts after the write (AUTH's one, PING's one) */
    uint64_t t0 = rctime_mono_usec();
    run(&r, "pw", NULL, &res);
    uint64_t took = rctime_mono_usec() - t0;
    assert_int_equal(res.outcome, VALIDATE_UNREACHABLE);
    snprintf(want, sizeof want, "%s: PING after AUTH: read: timed out after 400 ms", eps[0]);
    assert_string_equal(res.detail, want);
    assert_true(took >= 390 * MS);
    assert_true(took < 900 * MS);

    /* refused stays refused, however the ignored PING fares */
    run(&r, "wrong", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_REFUSED);
    snprintf(want, sizeof want, "%s: AUTH refused: WRONGPASS", eps[0]);
    assert_string_equal(res.detail, want);
    fake_free(f);
}

static void test_unreachable_node_blocks_only_while_current_works(void **state) {
    struct fake *f = fake_new("pw-new");
    f->accept[1] = "pw-cur";
    fake_start(f);
    char closed[32];
    closed_endpoint(closed, sizeof closed);

    const char *eps[2] = { closed, f->endpoint };
    struct validate_result res;
    struct config_redis r = redis_cfg(eps, 2, 1000 * MS);
    run(&r, "pw-new", "pw-cur", &res);
    assert_int_equal(res.outcome, VALIDATE_UNREACHABLE);
    assert_int_equal(res.unreachable, 1);
    assert_non_null(strstr(res.detail, closed));
    assert_non_null(strstr(res.detail, "Connection refused"));

    f->accept[1] = NULL;   /* the current credential was revoked (RESETPASS) */
    run(&r, "pw-new", "pw-cur", &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    fake_free(f);
}

static void test_no_password_configured_is_misconfiguration(void **state) {
    struct fake *f = fake_new("pw"), *g = fake_new("pw");
    f->nopass = true;
    fake_start(f);
    fake_start(g);
    const char *eps[2] = { f->endpoint, g->endpoint };
    struct validate_result res;
    struct config_redis r = redis_cfg(eps, 2, 1000 * MS);
    run(&r, "pw", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_MISCONFIGURED);
    assert_non_null(strstr(res.nodes, "=no-password"));
    assert_non_null(strstr(res.detail, f->endpoint));
    fake_free(f);
    fake_free(g);
}

/* ------------------------------------------------------------------------------------
 * Cluster
 */

struct cluster {
    struct fake *n[6];
    size_t count;
    const char *seed[1];
};

/* 3 primaries, each with a replica: p0 r0 p1 r1 p2 r2 (n[0], n[1], ...). */
static void cluster_up(struct cluster *c, bool slots_only) {
    struct topo_node t[6];
    c->count = 6;
    for (size_t i = 0; i < 6; i++) {
        c->n[i] = fake_new("pw-new");
        c->n[i]->accept[1] = "pw-cur";
        t[i] = (struct topo_node){ .host = "127.0.0.1", .port = c->n[i]->port,
                                   .replica = i % 2 == 1 };
    }
    for (size_t i = 0; i < 6; i++) {
        build_shards(c->n[i]->shards, sizeof c->n[i]->shards, t, 6);
        build_slots(c->n[i]->slots, sizeof c->n[i]->slots, t, 6);
        c->n[i]->no_shards = slots_only;
    }
    c->seed[0] = c->n[1]->endpoint;   /* a replica as seed */
}

static void cluster_start(struct cluster *c) {
    for (size_t i = 0; i < c->count; i++)
        fake_start(c->n[i]);
}

static void cluster_down(struct cluster *c) {
    for (size_t i = 0; i < c->count; i++)
        fake_free(c->n[i]);
}

static void test_cluster_validates_every_primary_found_by_shards(void **state) {
    struct cluster c;
    struct validate_result res;
    cluster_up(&c, false);
    cluster_start(&c);
    struct config_redis r = redis_cfg(c.seed, 1, 2000 * MS);
    r.cluster = true;
    run(&r, "pw-new", "pw-cur", &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    assert_true(res.discovered);
    assert_int_equal(res.total, 3);
    assert_int_equal(res.accepted, 3);
    for (size_t i = 0; i < 6; i += 2)
        assert_true(fake_saw(c.n[i], "pw-new"));
    /* discovery logged in with the current credential; the replica seed is not required */
    assert_true(fake_saw(c.n[1], "pw-cur"));
    assert_false(fake_saw(c.n[1], "pw-new"));

    r.validate_replicas = true;
    run(&r, "pw-new", "pw-cur", &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    assert_int_equal(res.total, 6);
    assert_true(fake_saw(c.n[1], "pw-new"));
    cluster_down(&c);
}

static void test_cluster_one_refusing_primary_is_named(void **state) {
    struct cluster c;
    struct validate_result res;
    cluster_up(&c, false);
    c.n[4]->accept[0] = "other";   /* the third primary does not know the candidate */
    cluster_start(&c);
    struct config_redis r = redis_cfg(c.seed, 1, 2000 * MS);
    r.cluster = true;
    run(&r, "pw-new", "pw-cur", &res);
    assert_int_equal(res.outcome, VALIDATE_REFUSED);
    assert_int_equal(res.refused, 1);
    assert_int_equal(res.accepted, 2);
    char want[100];
    snprintf(want, sizeof want, "%s: AUTH refused", c.n[4]->endpoint);
    assert_non_null(strstr(res.detail, want));
    snprintf(want, sizeof want, "%s=refused", c.n[4]->endpoint);
    assert_non_null(strstr(res.nodes, want));
    cluster_down(&c);
}

static void test_cluster_falls_back_to_slots_on_older_servers(void **state) {
    struct cluster c;
    struct validate_result res;
    cluster_up(&c, true);
    cluster_start(&c);
    struct config_redis r = redis_cfg(c.seed, 1, 2000 * MS);
    r.cluster = true;
    run(&r, "pw-new", NULL, &res);   /* no current credential: discovery uses the candidate */
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    assert_true(res.discovered);
    assert_int_equal(res.total, 3);
    r.validate_replicas = true;
    run(&r, "pw-new", NULL, &res);
    assert_int_equal(res.total, 6);
    cluster_down(&c);
}

static void test_cluster_skips_failed_nodes_and_fills_unknown_host_from_seed(void **state) {
    struct fake *p = fake_new("pw");
    struct topo_node t[2] = {
        { .host = "", .port = p->port },                                   /* "?" */
        { .host = "127.0.0.1", .port = 1, .health = "failed" },
    };
    build_shards(p->shards, sizeof p->shards, t, 2);
    fake_start(p);
    const char *eps[1] = { p->endpoint };
    struct config_redis r = redis_cfg(eps, 1, 1000 * MS);
    r.cluster = true;
    struct validate_result res;
    run(&r, "pw", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    assert_int_equal(res.total, 1);
    char want[64];
    snprintf(want, sizeof want, "%s=accepted", p->endpoint);
    assert_string_equal(res.nodes, want);
    fake_free(p);
}

static void test_cluster_support_disabled_validates_the_seeds(void **state) {
    struct fake *f = fake_new("pw");
    fake_start(f);   /* no shards/slots: "cluster support disabled" */
    const char *eps[1] = { f->endpoint };
    struct config_redis r = redis_cfg(eps, 1, 1000 * MS);
    r.cluster = true;
    struct validate_result res;
    run(&r, "pw", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    assert_false(res.discovered);
    assert_int_equal(res.total, 1);
    fake_free(f);
}

static void test_cluster_discovery_noperm_is_an_error_that_says_what_to_grant(void **state) {
    struct fake *f = fake_new("pw");
    f->noperm_cluster = true;
    fake_start(f);
    const char *eps[1] = { f->endpoint };
    struct config_redis r = redis_cfg(eps, 1, 1000 * MS);
    r.cluster = true;
    struct validate_result res;
    run(&r, "pw", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_ERROR);
    assert_non_null(strstr(res.detail, "NOPERM"));
    assert_non_null(strstr(res.detail, "+cluster|slots"));
    fake_free(f);
}

static void test_cluster_seed_refusing_both_credentials_is_refused(void **state) {
    struct cluster c;
    struct validate_result res;
    cluster_up(&c, false);
    c.n[1]->accept[0] = "x";
    c.n[1]->accept[1] = "y";
    cluster_start(&c);
    struct config_redis r = redis_cfg(c.seed, 1, 1000 * MS);
    r.cluster = true;
    run(&r, "pw-new", "pw-cur", &res);
    assert_int_equal(res.outcome, VALIDATE_REFUSED);
    assert_non_null(strstr(res.detail, c.n[1]->endpoint));
    cluster_down(&c);
}

static void test_cluster_next_seed_is_tried_when_the_first_is_down(void **state) {
    struct cluster c;
    struct validate_result res;
    cluster_up(&c, false);
    cluster_start(&c);
    const char *eps[2] = { "127.0.0.1:1", c.n[0]->endpoint };
    struct config_redis r = redis_cfg(eps, 2, 1000 * MS);
    r.cluster = true;
    run(&r, "pw-new", "pw-cur", &res);
    assert_int_equal(res.outcome, VALIDATE_PUBLISH);
    assert_int_equal(res.total, 3);

    /* every seed down: unreachable, and the seeds are named */
    const char *none[2] = { "127.0.0.1:1", "127.0.0.1:2" };
    r = redis_cfg(none, 2, 1000 * MS);
    r.cluster = true;
    run(&r, "pw-new", "pw-cur", &res);
    assert_int_equal(res.outcome, VALIDATE_UNREACHABLE);
    assert_string_equal(res.nodes, "127.0.0.1:1=unreachable,127.0.0.1:2=unreachable");
    cluster_down(&c);
}

/* ------------------------------------------------------------------------------------
 * TLS set-up failures and warnings
 */

static void test_tls_setup_failure_is_unreachable_and_names_the_file(void **state) {
    const char *eps[1] = { "127.0.0.1:1" };
    struct config_redis r = redis_cfg(eps, 1, 1000 * MS);
    r.tls.enabled = true;
    r.tls.ca_file = "/nonexistent/ca.pem";
    struct validate_result res;
    run(&r, "pw", NULL, &res);
    assert_int_equal(res.outcome, VALIDATE_UNREACHABLE);
    assert_non_null(strstr(res.detail, "/nonexistent/ca.pem"));
    assert_string_equal(res.nodes, "127.0.0.1:1=tls-error");
}

static void test_config_warnings(void **state) {
    const char *eps[1] = { "127.0.0.1:1" };
    struct config_redis r = redis_cfg(eps, 1, 1000 * MS);
    const char *w[4];
    assert_int_equal(validate_config_warnings(&r, w, 4), 0);
    r.tls.enabled = true;
    r.tls.insecure_skip_verify = true;
    assert_int_equal(validate_config_warnings(&r, w, 4), 1);
    assert_non_null(strstr(w[0], "tls_insecure_skip_verify"));
    r.tls.enabled = false;
    r.tls.insecure_skip_verify = false;
    r.tls.ca_file = "/etc/ssl/ca.pem";
    assert_int_equal(validate_config_warnings(&r, w, 4), 1);
    assert_non_null(strstr(w[0], "tls = false"));
    assert_int_equal(validate_config_warnings(&r, w, 0), 0);
}

static void test_outcome_strings(void **state) {
    for (int o = VALIDATE_PUBLISH; o <= VALIDATE_ERROR; o++)
        assert_string_not_equal(validate_outcome_to_string((enum validate_outcome)o), "?");
}

/* ------------------------------------------------------------------------------------
 * The policy (validate_decide), pure: every combination of up to 4 node states under
 * every policy and every answer about the current credential, against the rules as the
 * documentation states them (docs/redis.md, "validate").
 */

static bool has(const enum validate_node *st, size_t n, enum validate_node s) {
    for (size_t i = 0; i < n; i++)
        if (st[i] == s)
            return true;
    return false;
}

static bool any_down(const enum validate_node *st, size_t n) {
    return has(st, n, VALIDATE_NODE_UNREACHABLE) || has(st, n, VALIDATE_NODE_TLS) ||
           has(st, n, VALIDATE_NODE_CERT);
}

/* The rules, written from the documentation, not from the code. */
static struct validate_verdict expected(enum validate_policy p, const enum validate_node *st,
                                        size_t n, enum validate_current cur) {
    struct validate_verdict v = { .outcome = VALIDATE_PUBLISH, .blame = VALIDATE_BLAME_PROBLEM };
    bool acc = has(st, n, VALIDATE_NODE_ACCEPTED), ref = has(st, n, VALIDATE_NODE_REFUSED);
    bool unx = has(st, n, VALIDATE_NODE_UNEXPECTED);

    if (p == VALIDATE_NONE)
        return v;   /* nothing is asked; the candidate is published */
    if (has(st, n, VALIDATE_NODE_NOPASS))
        v = (struct validate_verdict){ VALIDATE_MISCONFIGURED, VALIDATE_BLAME_NOPASS, false };
    else if (p == VALIDATE_ANY && acc)
        ;   /* one accepting node is enough */
    else if (ref)
        v = (struct validate_verdict){ VALIDATE_REFUSED, VALIDATE_BLAME_REFUSED, false };
    else if (unx)
        v = (struct validate_verdict){ VALIDATE_ERROR, VALIDATE_BLAME_UNEXPECTED, false };
    else if (p == VALIDATE_ANY || (any_down(st, n) && !acc))
        v = (struct validate_verdict){ VALIDATE_UNREACHABLE, VALIDATE_BLAME_UNREACHABLE, false };
    else if (any_down(st, n)) {
        /* all: nodes down, the rest accept: publish only once the current credential is
         * known to work nowhere reachable */
        v.blame = VALIDATE_BLAME_UNREACHABLE;
        v.outcome = cur == VALIDATE_CURRENT_GONE ? VALIDATE_PUBLISH : VALIDATE_UNREACHABLE;
        v.ask_current = cur == VALIDATE_CURRENT_UNKNOWN;
    }
    return v;
}

static void test_policy_every_combination(void **state) {
    enum validate_node st[4];
    unsigned checked = 0;

    (void)state;
    for (size_t n = 0; n <= 4; n++) {
        size_t combos = 1;
        for (size_t i = 0; i < n; i++)
            combos *= VALIDATE_NODE_COUNT;
        for (size_t c = 0; c < combos; c++) {
            size_t k = c;
            for (size_t i = 0; i < n; i++, k /= VALIDATE_NODE_COUNT)
                st[i] = (enum validate_node)(k % VALIDATE_NODE_COUNT);
            for (int p = VALIDATE_ALL; p <= VALIDATE_NONE; p++)
                for (int cur = VALIDATE_CURRENT_UNKNOWN; cur <= VALIDATE_CURRENT_GONE; cur++) {
                    struct validate_verdict want = expected(p, st, n, cur);
                    struct validate_verdict got = validate_decide(p, st, n, cur);
                    if (got.outcome != want.outcome || got.blame != want.blame ||
                        got.ask_current != want.ask_current)
                        fail_msg("policy %d, %zu nodes (combination %zu), current %d: got "
                                 "%s/%d/%d, want %s/%d/%d", p, n, c, cur,
                                 validate_outcome_to_string(got.outcome), got.blame,
                                 got.ask_current, validate_outcome_to_string(want.outcome),
                                 want.blame, want.ask_current);
                    checked++;
                }
        }
    }
    assert_int_equal(checked, (1 + 7 + 49 + 343 + 2401) * 3 * 3);
}

/* The cases the documentation spells out, by name. */
static void test_policy_named_cases(void **state) {
    const enum validate_node acc_down[] = { VALIDATE_NODE_ACCEPTED, VALIDATE_NODE_UNREACHABLE };
    const enum validate_node acc_ref[] = { VALIDATE_NODE_ACCEPTED, VALIDATE_NODE_REFUSED };
    const enum validate_node cert_nopass[] = { VALIDATE_NODE_CERT, VALIDATE_NODE_NOPASS };
    const enum validate_node tls_only[] = { VALIDATE_NODE_TLS };
    struct validate_verdict v;

    (void)state;
    v = validate_decide(VALIDATE_ALL, acc_down, 2, VALIDATE_CURRENT_UNKNOWN);
    assert_true(v.ask_current);
    assert_int_equal(v.outcome, VALIDATE_UNREACHABLE);
    v = validate_decide(VALIDATE_ALL, acc_down, 2, VALIDATE_CURRENT_WORKS);
    assert_false(v.ask_current);
    assert_int_equal(v.outcome, VALIDATE_UNREACHABLE);
    v = validate_decide(VALIDATE_ALL, acc_down, 2, VALIDATE_CURRENT_GONE);
    assert_int_equal(v.outcome, VALIDATE_PUBLISH);
    assert_int_equal(v.blame, VALIDATE_BLAME_UNREACHABLE);
    assert_int_equal(validate_decide(VALIDATE_ALL, acc_ref, 2, 0).outcome, VALIDATE_REFUSED);
    assert_int_equal(validate_decide(VALIDATE_ANY, acc_ref, 2, 0).outcome, VALIDATE_PUBLISH);
    assert_int_equal(validate_decide(VALIDATE_ANY, cert_nopass, 2, 0).outcome,
                     VALIDATE_MISCONFIGURED);
    assert_int_equal(validate_decide(VALIDATE_ALL, tls_only, 1, 0).outcome,
                     VALIDATE_UNREACHABLE);
    assert_int_equal(validate_decide(VALIDATE_NONE, acc_ref, 2, 0).outcome, VALIDATE_PUBLISH);
    assert_true(validate_blames(VALIDATE_BLAME_UNREACHABLE, VALIDATE_NODE_CERT));
    assert_false(validate_blames(VALIDATE_BLAME_PROBLEM, VALIDATE_NODE_ACCEPTED));
    for (int s = 0; s < VALIDATE_NODE_COUNT; s++)
        assert_string_not_equal(validate_node_to_string((enum validate_node)s), "?");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_nodes_accept_publishes_and_names_each_node),
        cmocka_unit_test(test_one_refusing_node_blocks_all_and_is_named),
        cmocka_unit_test(test_nodes_are_asked_concurrently),
        cmocka_unit_test(test_silent_node_times_out_alone_and_delays_no_other),
        cmocka_unit_test(test_auth_and_ping_are_sent_in_one_write),
        cmocka_unit_test(test_link_lost_after_auth_reply),
        cmocka_unit_test(test_unanswered_ping),
        cmocka_unit_test(test_unreachable_node_blocks_only_while_current_works),
        cmocka_unit_test(test_no_password_configured_is_misconfiguration),
        cmocka_unit_test(test_cluster_validates_every_primary_found_by_shards),
        cmocka_unit_test(test_cluster_one_refusing_primary_is_named),
        cmocka_unit_test(test_cluster_falls_back_to_slots_on_older_servers),
        cmocka_unit_test(test_cluster_skips_failed_nodes_and_fills_unknown_host_from_seed),
        cmocka_unit_test(test_cluster_support_disabled_validates_the_seeds),
        cmocka_unit_test(test_cluster_discovery_noperm_is_an_error_that_says_what_to_grant),
        cmocka_unit_test(test_cluster_seed_refusing_both_credentials_is_refused),
        cmocka_unit_test(test_cluster_next_seed_is_tried_when_the_first_is_down),
        cmocka_unit_test(test_tls_setup_failure_is_unreachable_and_names_the_file),
        cmocka_unit_test(test_config_warnings),
        cmocka_unit_test(test_outcome_strings),
        cmocka_unit_test(test_policy_every_combination),
        cmocka_unit_test(test_policy_named_cases),
    };
    secret_init(0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
