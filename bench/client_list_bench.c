/* client_list_bench: what CLIENT LIST costs the drain check of strategy redis-acl-users
 * when one node holds many connections (common/aclops.c).
 *
 *   client_list_bench --port P --connections N [--sources K] [--iterations I]
 *                     [--cap BYTES] [--replay-lines L] --user USER
 *
 * Opens N connections to 127.0.0.1:P, each logged in as USER (password from the
 * environment variable RC_BENCH_PASSWORD, never argv), spread over K source addresses
 * 127.0.0.2.. (one source address has only ~28,000 ephemeral ports). Then, I times:
 *   - aclops_client_list() on the node (connect, CLIENT ID, CLIENT LIST, parse), with
 *     the CPU time of this process;
 *   - aclops_client_list_parse() alone on the same reply, read once over a raw socket.
 * With --replay-lines L it then builds a reply of L lines out of the real one's (its lines
 * over again: the same bytes per line, the same user) and times both again against a
 * stand-in node in this process that answers CLIENT ID and CLIENT LIST with it: a node
 * with more connections than this machine's file descriptor limit lets a real server
 * hold. Prints one JSON line per measurement. The caller raises RLIMIT_NOFILE and redis `maxclients`
 * (bench/client_list.py does both). Results in docs/benchmarks.md.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aclops.h"
#include "rctime.h"
#include "resp.h"
#include "secret.h"

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static long maxrss_kb(void) {
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* This thread's: the stand-in node answers from another thread of this process. */
static uint64_t cpu_usec(void) {
    struct rusage ru;

    getrusage(RUSAGE_THREAD, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static bool write_all(int fd, const char *buf, size_t len) {
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* One connection from 127.0.0.<src>, logged in (blocking: the reply proves the server
 * accepted it, so the listen backlog never overflows). -1 on failure.
 * Tens of thousands of connections must not starve the machine's other programs of
 * ephemeral ports: IP_BIND_ADDRESS_NO_PORT lets the port be picked at connect() by the
 * whole address pair (a port taken by bind() is taken for every connect() on the host),
 * and SO_LINGER 0 closes with a reset, leaving no TIME_WAIT behind. */
static int open_one(uint16_t port, unsigned src, const char *auth, size_t auth_len) {
    struct sockaddr_in from = { .sin_family = AF_INET }, to = { .sin_family = AF_INET };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    int one = 1;
    char reply[64];

    from.sin_addr.s_addr = htonl(0x7f000000u | src);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(port);
    if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0 ||
        bind(fd, (struct sockaddr *)&from, sizeof from) < 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof to) < 0 || !write_all(fd, auth, auth_len) ||
        read(fd, reply, sizeof reply) < 3 || memcmp(reply, "+OK", 3) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The CLIENT LIST reply's text over a raw connection (not logged in as the user). */
static char *client_list_text(uint16_t port, size_t *ret_len) {
    struct sockaddr_in to = { .sin_family = AF_INET };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char head[32], c;
    size_t hl = 0, len, have = 0;
    char *buf;

    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(port);
    if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) < 0 ||
        !write_all(fd, "CLIENT LIST\r\n", 13))
        return NULL;
    while (hl + 1 < sizeof head && read(fd, &c, 1) == 1 && c != '\n')
        head[hl++] = c;
    head[hl] = '\0';
    if (head[0] != '$' || (len = strtoul(head + 1, NULL, 10)) == 0 || !(buf = malloc(len + 2))) {
        close(fd);
        return NULL;
    }
    while (have < len + 2) {
        ssize_t n = read(fd, buf + have, len + 2 - have);
        if (n <= 0) {
            free(buf);
            close(fd);
            return NULL;
        }
        have += (size_t)n;
    }
    close(fd);
    *ret_len = len;
    return buf;
}

struct opts {
    uint16_t port;
    unsigned long connections, sources, iterations;
    size_t cap;
    unsigned long replay_lines;
    const char *user;
};

static int usage(void) {
    fprintf(stderr, "usage: client_list_bench --port P --connections N [--sources K] "
                    "[--iterations I] [--cap BYTES] [--replay-lines L] --user USER (password from "
                    "$RC_BENCH_PASSWORD)\n");
    return 2;
}

static int parse_args(int argc, char **argv, struct opts *o) {
    *o = (struct opts){ .sources = 4, .iterations = 10 };
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        unsigned long n = strtoul(v, NULL, 10);
        if (strcmp(a, "--port") == 0 && n > 0 && n < 65536)
            o->port = (uint16_t)n;
        else if (strcmp(a, "--connections") == 0)
            o->connections = n;
        else if (strcmp(a, "--sources") == 0 && n > 0 && n < 250)
            o->sources = n;
        else if (strcmp(a, "--iterations") == 0 && n > 0 && n < 10000)
            o->iterations = n;
        else if (strcmp(a, "--cap") == 0)
            o->cap = n;
        else if (strcmp(a, "--replay-lines") == 0)
            o->replay_lines = n;
        else if (strcmp(a, "--user") == 0)
            o->user = v;
        else
            return -1;
    }
    return o->port && o->user ? 0 : -1;
}

/* The AUTH command, RESP-formatted, into buf. */
static size_t auth_command(const char *user, const char *pw, char *buf, size_t size) {
    int n = snprintf(buf, size, "*3\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(user),
                     user, strlen(pw), pw);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

static int open_all(const struct opts *o, const char *pw, int *fds) {
    char auth[512];
    size_t al = auth_command(o->user, pw, auth, sizeof auth);

    for (unsigned long i = 0; al && i < o->connections; i++) {
        fds[i] = open_one(o->port, 2 + (unsigned)(i % o->sources), auth, al);
        if (fds[i] < 0) {
            fprintf(stderr, "connection %lu: %s\n", i, strerror(errno));
            return -1;
        }
    }
    explicit_bzero(auth, sizeof auth);
    return al ? 0 : -1;
}

static void time_aclops(const struct opts *o, const struct aclops_target *t, uint64_t *wall,
                        uint64_t *cpu, long long *found) {
    for (unsigned long k = 0; k < o->iterations; k++) {
        struct aclops_result res = { 0 };
        uint64_t t0 = rctime_mono_usec(), c0 = cpu_usec();
        int r = aclops_client_list(t, o->user, o->cap, 16, &res);
        wall[k] = rctime_mono_usec() - t0;
        cpu[k] = cpu_usec() - c0;
        *found = r == 0 ? res.nodes[0].count : -1;
        if (r < 0)
            fprintf(stderr, "aclops_client_list: %s\n", res.n ? res.nodes[0].why : strerror(-r));
        aclops_result_clear(&res);
    }
}

static void time_parse(const struct opts *o, const char *text, size_t len, uint64_t *parse) {
    char addrs[16][ACLOPS_ADDR_MAX];
    long long count;
    size_t naddrs;

    for (unsigned long k = 0; k < o->iterations; k++) {
        uint64_t t0 = rctime_mono_usec();
        (void)aclops_client_list_parse(text, len, o->user, -1, addrs, 16, &count, &naddrs);
        parse[k] = rctime_mono_usec() - t0;
    }
}

#define MED(v, n) ((double)(v)[(n) / 2] / 1000.0)

/* Times aclops_client_list against port and the parse of text; one JSON line. */
static long long measure(const char *node, const struct opts *o, uint16_t port,
                         unsigned long lines, const char *text, size_t len) {
    struct rnet_node nd = { .ep = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = port } };
    struct aclops_target t = { .nodes = &nd, .n = 1, .timeout_usec = 10000000 };
    uint64_t *wall = calloc(o->iterations, 8), *cpu = calloc(o->iterations, 8),
             *parse = calloc(o->iterations, 8);
    long long found = -1;

    if (!wall || !cpu || !parse)
        exit(1);
    long rss0 = maxrss_kb();
    time_aclops(o, &t, wall, cpu, &found);
    long rss_growth = maxrss_kb() - rss0;   /* the peak of one call: reader + reply */
    time_parse(o, text, len, parse);
    qsort(wall, o->iterations, 8, cmp_u64);
    qsort(cpu, o->iterations, 8, cmp_u64);
    qsort(parse, o->iterations, 8, cmp_u64);
    printf("{\"node\":\"%s\",\"connections\":%lu,\"found\":%lld,\"reply_bytes\":%zu,"
           "\"client_list_ms\":{\"min\":%.1f,\"median\":%.1f,\"max\":%.1f},"
           "\"cpu_ms_median\":%.1f,\"peak_rss_growth_mb\":%.1f,"
           "\"parse_ms\":{\"min\":%.2f,\"median\":%.2f}}\n",
           node, lines, found, len, (double)wall[0] / 1000.0, MED(wall, o->iterations),
           (double)wall[o->iterations - 1] / 1000.0, MED(cpu, o->iterations),
           (double)rss_growth / 1024.0, (double)parse[0] / 1000.0, MED(parse, o->iterations));
    fflush(stdout);
    free(wall);
    free(cpu);
    free(parse);
    return found;
}

/* L lines made of the real reply's lines of the user, over again. */
static char *replay_text(const char *text, size_t len, const char *user, unsigned long lines,
                         size_t *ret_len) {
    size_t cap = len + 1, out = 0;
    const char *p = text;
    char *buf = NULL, field[160];

    snprintf(field, sizeof field, " user=%s ", user);
    for (unsigned long k = 0; k < lines;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t ll = nl ? (size_t)(nl - p) + 1 : (size_t)(text + len - p);
        const char *next = nl && nl + 1 < text + len ? nl + 1 : text;
        if (!memmem(p, ll, field, strlen(field))) {
            p = next;
            continue;
        }
        k++;
        if (!buf || out + ll > cap) {
            cap = cap * 2 + ll;
            if (!(buf = realloc(buf, cap)))
                exit(1);
        }
        memcpy(buf + out, p, ll);
        out += ll;
        p = next;
    }
    *ret_len = out;
    return buf;
}

struct standin {
    int lfd;
    const char *text;
    size_t len;
};

/* Answers CLIENT ID and CLIENT LIST on each connection, one connection at a time. */
static void *standin_main(void *arg) {
    struct standin *s = arg;
    char buf[4096], head[32];

    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        ssize_t n;
        if (fd < 0)
            return NULL;   /* the listener was shut down */
        while ((n = read(fd, buf, sizeof buf - 1)) > 0) {
            buf[n] = '\0';
            if (strstr(buf, "\r\nID\r\n"))
                (void)write_all(fd, ":0\r\n", 4);
            if (strstr(buf, "\r\nLIST\r\n")) {
                int hl = snprintf(head, sizeof head, "$%zu\r\n", s->len);
                if (!write_all(fd, head, (size_t)hl) || !write_all(fd, s->text, s->len) ||
                    !write_all(fd, "\r\n", 2))
                    break;
            }
        }
        close(fd);
    }
}

static long long replay(const struct opts *o, const char *text, size_t len) {
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t sl = sizeof sa;
    struct standin s = { .lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) };
    pthread_t th;
    long long found;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s.text = replay_text(text, len, o->user, o->replay_lines, &s.len);
    if (s.lfd < 0 || bind(s.lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(s.lfd, 16) < 0 || getsockname(s.lfd, (struct sockaddr *)&sa, &sl) < 0 ||
        pthread_create(&th, NULL, standin_main, &s) != 0)
        exit(1);
    found = measure("stand-in", o, ntohs(sa.sin_port), o->replay_lines, s.text, s.len);
    shutdown(s.lfd, SHUT_RDWR);
    pthread_join(th, NULL);
    close(s.lfd);
    free((void *)s.text);
    return found;
}

int main(int argc, char **argv) {
    const char *pw = secure_getenv("RC_BENCH_PASSWORD");
    struct opts o;
    size_t len = 0;

    if (parse_args(argc, argv, &o) < 0 || !pw)
        return usage();
    int *fds = calloc(o.connections ? o.connections : 1, sizeof *fds);
    if (!fds)
        return 1;
    uint64_t t0 = rctime_mono_usec();
    if (open_all(&o, pw, fds) < 0)
        return 1;
    fprintf(stderr, "opened %lu connections in %.1f s\n", o.connections,
            (double)(rctime_mono_usec() - t0) / 1e6);
    char *text = client_list_text(o.port, &len);
    if (!text)
        return 1;
    long long found = measure("redis-server", &o, o.port, o.connections, text, len);
    if (found != (long long)o.connections)
        return 1;
    if (o.replay_lines && replay(&o, text, len) != (long long)o.replay_lines)
        return 1;
    free(text);
    for (unsigned long i = 0; i < o.connections; i++)
        close(fds[i]);   /* resets: no TIME_WAIT */
    free(fds);
    return 0;
}
