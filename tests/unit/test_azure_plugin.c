/* Unit tests of the Azure plugin (azure.so) through the mock host, against a scripted
 * HTTP server thread on loopback and a fake clock: request shapes (IMDS, App Service,
 * Entra token endpoint, Key Vault, Resource Manager), error classes, the token cache
 * (sharing, refresh point, unchanged tokens, wall-clock jumps) and that no secret ends
 * up in a message. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "azure/azure.h"
#include "http.h"
#include "mock_host.h"
#include "stack_residue.h"

extern const struct rc_plugin redis_creds_plugin;

/* ---- fake clock ------------------------------------------------------------------ */

static int64_t fake_real;     /* usec */
static uint64_t fake_mono;    /* usec */
static int64_t clk_real(void) { return fake_real; }
static uint64_t clk_mono(void) { return fake_mono; }
static void advance(int64_t sec) {
    fake_real += sec * 1000000LL;
    fake_mono += (uint64_t)(sec * 1000000LL);
}
#define T0 1800000000LL   /* the fake clock's start, unix seconds */
static int64_t now_s(void) { return fake_real / 1000000; }

/* ---- tokens ------------------------------------------------------------------------ */

static void b64url(const char *in, size_t len, char *out) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | (unsigned char)in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = a[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

/* A JWT-shaped token with these claims; `tag` makes tokens with equal times differ. */
static void make_token(char *out, size_t outlen, const char *oid, int64_t iat, int64_t exp, int tag) {
    char claims[512], h[128], p[800];
    snprintf(claims, sizeof claims,
             "{\"aud\":\"https://redis.azure.com\",\"iat\":%" PRId64 ",\"nbf\":%" PRId64 ",\"exp\":%" PRId64
             ",\"oid\":\"%s\",\"uti\":\"u%d\"}", iat, iat, exp, oid, tag);
    b64url("{\"typ\":\"JWT\",\"alg\":\"RS256\"}", 27, h);
    b64url(claims, strlen(claims), p);
    snprintf(out, outlen, "%s.%s.c2lnLSVk%d", h, p, tag);
}

/* ---- scripted HTTP server ------------------------------------------------------------ */

struct req {
    char method[16];
    char target[2048];
    char headers[4096];
    char body[4096];
};

struct reply {
    int status;
    char headers[512];     /* extra header lines, each ending in \r\n */
    char body[8192];
};

struct server;
typedef void (*handler_fn)(struct server *s, const struct req *r, struct reply *out);

struct server {
    int lfd, port;
    pthread_t th;
    handler_fn fn;
    void *ud;
    pthread_mutex_t lock;     /* reqs, conns, and calls of fn */
    struct req reqs[64];
    int n_reqs;
    int conn_fd[64];
    pthread_t conn_th[64];
    int n_conns;
    volatile int stop;
};

struct conn {
    struct server *s;
    int fd;
};

/* One connection: requests in order, kept alive until the client closes it. */
static void *serve_conn(void *arg) {
    struct conn *c = arg;
    struct server *s = c->s;
    int fd = c->fd;
    char *buf = malloc(16384);
    free(c);
    for (;;) {
        size_t got = 0, need = 0;
        ssize_t n;
        char *eoh = NULL;
        while (got < 16383 && (n = read(fd, buf + got, 16383 - got)) > 0) {
            got += (size_t)n;
            buf[got] = '\0';
            if (!eoh && (eoh = strstr(buf, "\r\n\r\n"))) {
                char *cl = strcasestr(buf, "\r\nContent-Length:");
                need = (size_t)(eoh + 4 - buf) + (cl && cl < eoh ? strtoul(cl + 17, NULL, 10) : 0);
            }
            if (eoh && got >= need)
                break;
        }
        if (!eoh)
            break;
        struct req r = { 0 };
        sscanf(buf, "%15s %2047s", r.method, r.target);
        char *hs = strstr(buf, "\r\n") + 2;
        snprintf(r.headers, sizeof r.headers, "%.*s", (int)(eoh - hs), hs);
        snprintf(r.body, sizeof r.body, "%s", eoh + 4);
        struct reply rep = { .status = 500 };
        pthread_mutex_lock(&s->lock);
        s->fn(s, &r, &rep);
        if (s->n_reqs < 64)
            s->reqs[s->n_reqs++] = r;
        pthread_mutex_unlock(&s->lock);
        char head[1024];
        int hl = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", rep.status,
                          strlen(rep.body), rep.headers);
        if (write(fd, head, (size_t)hl) < 0 || write(fd, rep.body, strlen(rep.body)) < 0)
            break;
    }
    free(buf);
    return NULL;
}

static void *serve(void *arg) {
    struct server *s = arg;
    while (!s->stop) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (s->stop)
                break;
            continue;
        }
        struct conn *c = malloc(sizeof *c);
        c->s = s;
        c->fd = fd;
        pthread_mutex_lock(&s->lock);
        if (s->n_conns < 64 && pthread_create(&s->conn_th[s->n_conns], NULL, serve_conn, c) == 0)
            s->conn_fd[s->n_conns++] = fd;
        else {
            close(fd);
            free(c);
        }
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

static struct server *server_start(handler_fn fn, void *ud) {
    struct server *s = calloc(1, sizeof *s);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    s->fn = fn;
    s->ud = ud;
    pthread_mutex_init(&s->lock, NULL);
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
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->lfd);
    for (int i = 0; i < s->n_conns; i++) {
        shutdown(s->conn_fd[i], SHUT_RDWR);
        pthread_join(s->conn_th[i], NULL);
        close(s->conn_fd[i]);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* target has ?name=value or &name=value, ending there or at the next '&'. */
static bool has_param(const char *target, const char *name, const char *value) {
    char pat[512];
    snprintf(pat, sizeof pat, "%s=%s", name, value);
    for (const char *p = strstr(target, pat); p; p = strstr(p + 1, pat))
        if ((p[-1] == '?' || p[-1] == '&') && (p[strlen(pat)] == '\0' || p[strlen(pat)] == '&'))
            return true;
    return false;
}

static int count_reqs(struct server *s, const char *target_prefix) {
    int n = 0;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_reqs; i++)
        if (strncmp(s->reqs[i].target, target_prefix, strlen(target_prefix)) == 0)
            n++;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static const struct req *last_req(struct server *s, const char *target_prefix) {
    const struct req *r = NULL;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_reqs; i++)
        if (strncmp(s->reqs[i].target, target_prefix, strlen(target_prefix)) == 0)
            r = &s->reqs[i];
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* ---- a scriptable Azure ---------------------------------------------------------- */

/* What the handler answers; tests set these. */
struct script {
    /* token endpoint */
    int token_status;            /* 0 = 200 */
    char token_error[256];       /* body for a non-200 */
    char token_headers[256];
    int64_t lifetime;            /* seconds */
    bool same_token;             /* hand back the last token again */
    bool strings;                /* IMDS style numbers */
    char last_token[2048];
    int tag;
    /* key vault / arm */
    int data_status;             /* 0 = 200 */
    char data_body[4096];
    char data_headers[256];
    int unauthorized_left;       /* answer 401 this many times */
    /* versions listing: two pages, the second via nextLink */
    char next_origin[128];
    /* Azure Arc agent: challenge files go to arc_dir (not written when arc_no_file) */
    char arc_dir[256];
    char arc_key[64];            /* the content of the newest challenge file */
    char arc_challenge[256];     /* a WWW-Authenticate value instead of Basic realm=<file> */
    bool arc_no_file;
    mode_t arc_mode;             /* of a challenge file; 0 = 0640 */
    int arc_n;
    /* access keys (when keys[0][0]): listKeys, regenerateKey (202 + operation when lro) */
    char keys[2][64];            /* primary, secondary */
    char regens[16];             /* "P" / "S" per regeneration, in order */
    bool lro;
    int pending;                 /* the key the running operation regenerates */
    int polls_left;              /* InProgress answers before the final one */
    char op_final[16];           /* "" = Succeeded */
    char op_origin[128];         /* "" = this server */
    int regen_status;            /* 0: as above; else regenerateKey answers this (RBAC...) */
};

static struct script sc;

/* Like the Arc agent: a request without the newest challenge's key gets 401 and a fresh
 * challenge file. Runs on the server thread: no cmocka asserts here. */
static bool arc_challenge(const struct req *r, struct reply *out) {
    char want[128];
    snprintf(want, sizeof want, "\r\nAuthorization: Basic %s\r\n", sc.arc_key);
    char hdrs[4200];
    snprintf(hdrs, sizeof hdrs, "\r\n%s\r\n", r->headers);
    if (sc.arc_key[0] && strstr(hdrs, want))
        return false;
    char path[400];
    sc.arc_n++;
    snprintf(sc.arc_key, sizeof sc.arc_key, "arcKEY%d-0f9e8d7c6b5a", sc.arc_n);
    snprintf(path, sizeof path, "%s/c%d.key", sc.arc_dir, sc.arc_n);
    if (!sc.arc_no_file) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, sc.arc_mode ? sc.arc_mode : 0640);
        if (fd >= 0) {
            if (write(fd, sc.arc_key, strlen(sc.arc_key)) < 0 || write(fd, "\n", 1) < 0)
                sc.arc_key[0] = '\0';
            close(fd);
        }
    }
    out->status = 401;
    if (sc.arc_challenge[0])
        snprintf(out->headers, sizeof out->headers, "%s", sc.arc_challenge);
    else
        snprintf(out->headers, sizeof out->headers, "WWW-Authenticate: Basic realm=%s\r\n", path);
    return true;
}

static void keys_regenerate(int which) {
    size_t n = strlen(sc.regens);
    snprintf(sc.keys[which], sizeof sc.keys[which], "%cK-regen-%zu", which ? 'S' : 'P', n + 1);
    if (n + 1 < sizeof sc.regens)
        sc.regens[n] = which ? 'S' : 'P';
}

/* Like the management API (reference/azure.md §4): a classic cache regenerates at once
 * (200 + keys), a Managed Redis database answers 202 + Azure-AsyncOperation and
 * regenerates when the operation ends. */
static void keys_handler(const struct req *r, struct reply *out) {
    out->status = 200;
    if (strstr(r->target, "/operationsStatus/")) {
        const char *st = "InProgress";
        if (sc.polls_left-- <= 0) {
            st = sc.op_final[0] ? sc.op_final : "Succeeded";
            if (strcmp(st, "Succeeded") == 0)
                keys_regenerate(sc.pending);
        }
        snprintf(out->body, sizeof out->body, "{\"id\":\"/subscriptions/s1/providers/Microsoft.Cache/locations/"
                 "westus/operationsStatus/op1\",\"name\":\"op1\",\"startTime\":\"2027-01-01T13:13:13Z\","
                 "\"status\":\"%s\"%s}", st, strcmp(st, "Failed") == 0 ?
                 ",\"error\":{\"code\":\"InternalError\",\"message\":\"regeneration failed\"}" : "");
        return;
    }
    if (strstr(r->target, "/regenerateKey?") && sc.regen_status) {
        out->status = sc.regen_status;
        snprintf(out->body, sizeof out->body, "{\"error\":{\"code\":\"AuthorizationFailed\",\"message\":"
                 "\"The client does not have authorization to perform action "
                 "'Microsoft.Cache/redisEnterprise/databases/regenerateKey/action'\"}}");
        return;
    }
    if (strstr(r->target, "/regenerateKey?")) {
        int which = strstr(r->body, "\"keyType\":\"Secondary\"") ? 1 : strstr(r->body, "\"keyType\":\"Primary\"") ? 0 : -1;
        if (which < 0 || !strstr(r->headers, "Content-Type: application/json")) {
            out->status = 400;
            snprintf(out->body, sizeof out->body, "{\"error\":{\"code\":\"InvalidRequestContent\","
                     "\"message\":\"keyType must be Primary or Secondary.\"}}");
            return;
        }
        if (sc.lro) {
            sc.pending = which;
            out->status = 202;
            snprintf(out->headers, sizeof out->headers, "Azure-AsyncOperation: %s/subscriptions/s1/providers/"
                     "Microsoft.Cache/locations/westus/operationsStatus/op1?api-version=2025-04-01\r\n"
                     "Retry-After: 1\r\n", sc.op_origin[0] ? sc.op_origin : sc.next_origin);
            return;
        }
        keys_regenerate(which);
    }
    snprintf(out->body, sizeof out->body, "{\"primaryKey\":\"%s\",\"secondaryKey\":\"%s\"}", sc.keys[0], sc.keys[1]);
}

static void azure_handler(struct server *s, const struct req *r, struct reply *out) {
    if (strstr(r->target, "/metadata/identity/oauth2/token") || strstr(r->target, "/msi/token") ||
        strstr(r->target, "/oauth2/v2.0/token")) {
        if (sc.arc_dir[0] && strstr(r->target, "/metadata/identity/oauth2/token") && arc_challenge(r, out))
            return;
        if (sc.token_status && sc.token_status != 200) {
            out->status = sc.token_status;
            snprintf(out->body, sizeof out->body, "%s", sc.token_error);
            snprintf(out->headers, sizeof out->headers, "%s", sc.token_headers);
            return;
        }
        if (!sc.same_token || !sc.last_token[0])
            make_token(sc.last_token, sizeof sc.last_token, "oid-1234", now_s(), now_s() + sc.lifetime, ++sc.tag);
        out->status = 200;
        if (sc.strings)
            snprintf(out->body, sizeof out->body,
                     "{\"access_token\":\"%s\",\"expires_in\":\"%" PRId64 "\",\"expires_on\":\"%" PRId64
                     "\",\"token_type\":\"Bearer\",\"resource\":\"x\"}",
                     sc.last_token, sc.lifetime, now_s() + sc.lifetime);
        else
            snprintf(out->body, sizeof out->body,
                     "{\"token_type\":\"Bearer\",\"expires_in\":%" PRId64 ",\"access_token\":\"%s\"}",
                     sc.lifetime, sc.last_token);
        return;
    }
    if (sc.unauthorized_left > 0) {
        sc.unauthorized_left--;
        out->status = 401;
        snprintf(out->headers, sizeof out->headers,
                 "WWW-Authenticate: Bearer authorization=\"https://login.windows.net/t1\", resource=\"https://vault.azure.net\"\r\n");
        snprintf(out->body, sizeof out->body, "{\"error\":{\"code\":\"Unauthorized\",\"message\":\"AKV10000: no\"}}");
        return;
    }
    if (sc.keys[0][0] && (strstr(r->target, "/listKeys?") || strstr(r->target, "/regenerateKey?") ||
                          strstr(r->target, "/operationsStatus/"))) {
        keys_handler(r, out);
        return;
    }
    if (strstr(r->target, "/versions")) {
        out->status = 200;
        if (!strstr(r->target, "skiptoken"))
            snprintf(out->body, sizeof out->body,
                     "{\"value\":[{\"id\":\"https://v/secrets/s/bbb\",\"attributes\":{\"enabled\":true,\"created\":200}},"
                     "{\"id\":\"https://v/secrets/s/latest1\",\"attributes\":{\"enabled\":true,\"created\":400}},"
                     "{\"id\":\"https://v/secrets/s/ddd\",\"attributes\":{\"enabled\":false,\"created\":300}}],"
                     "\"nextLink\":\"%s/secrets/s/versions?api-version=7.6&$skiptoken=abc&maxresults=3\"}",
                     sc.next_origin);
        else
            snprintf(out->body, sizeof out->body,
                     "{\"value\":[{\"id\":\"https://v/secrets/s/ccc\",\"attributes\":{\"enabled\":true,\"created\":250}},"
                     "{\"id\":\"https://v/secrets/s/aaa\",\"attributes\":{\"enabled\":true,\"created\":100}}],\"nextLink\":null}");
        return;
    }
    if (strstr(r->target, "/secrets/s/ccc?") || strstr(r->target, "/secrets/s/bbb?")) {
        out->status = 200;
        snprintf(out->body, sizeof out->body,
                 "{\"value\":\"older-pw\",\"id\":\"https://v/secrets/s/%.3s\",\"attributes\":{\"enabled\":true}}",
                 strstr(r->target, "/secrets/s/") + 11);
        return;
    }
    out->status = sc.data_status ? sc.data_status : 200;
    snprintf(out->body, sizeof out->body, "%s", sc.data_body);
    snprintf(out->headers, sizeof out->headers, "%s", sc.data_headers);
}

/* ---- fixture ---------------------------------------------------------------------- */

struct fx {
    struct server *srv;
    struct mock_host m;
    void *state[4];
    const struct rc_source_type *type[4];
    struct rc_credential *creds[4];
    size_t n[4];
    size_t n_sources;
};

static const struct rc_source_type *type_named(const char *name) {
    for (size_t i = 0; i < redis_creds_plugin.n_types; i++)
        if (strcmp(redis_creds_plugin.types[i].type, name) == 0)
            return &redis_creds_plugin.types[i];
    return NULL;
}

/* Loads conf (with %PORT% replaced by the server's port) and opens every source. */
static int fx_open(struct fx *f, const char *conf_tmpl, struct rc_error *err) {
    char conf[8192], port[16];
    size_t o = 0;
    snprintf(port, sizeof port, "%d", f->srv->port);
    for (const char *p = conf_tmpl; *p && o < sizeof conf - 8;) {
        if (strncmp(p, "%PORT%", 6) == 0) {
            o += (size_t)snprintf(conf + o, sizeof conf - o, "%s", port);
            p += 6;
        } else
            conf[o++] = *p++;
    }
    conf[o] = '\0';
    assert_int_equal(mock_host_init(&f->m, &redis_creds_plugin, conf), 0);
    f->n_sources = f->m.cfg->n_sources;
    for (size_t i = 0; i < f->n_sources; i++) {
        f->type[i] = type_named(f->m.cfg->sources[i].type);
        assert_non_null(f->type[i]);
        f->creds[i] = mock_host_credentials(&f->m, i, &f->n[i]);
        memset(err, 0, sizeof *err);
        if (f->type[i]->open(&f->m.host, mock_host_source(&f->m, i), f->creds[i], f->n[i], &f->state[i], err) < 0) {
            f->state[i] = NULL;
            return -1;
        }
    }
    return 0;
}

static void fx_close(struct fx *f) {
    for (size_t i = 0; i < f->n_sources; i++) {
        if (f->state[i])
            f->type[i]->close(f->state[i]);
        free(f->creds[i]);
        f->state[i] = NULL;
        f->creds[i] = NULL;
    }
    f->n_sources = 0;
    mock_host_fini(&f->m);
}

static int setup(void **st) {
    struct fx *f = calloc(1, sizeof *f);
    memset(&sc, 0, sizeof sc);
    sc.lifetime = 1000;
    fake_real = T0 * 1000000LL;
    fake_mono = 5000ULL * 1000000ULL;
    az_clock_override(clk_real, clk_mono);
    f->srv = server_start(azure_handler, NULL);
    snprintf(sc.next_origin, sizeof sc.next_origin, "http://127.0.0.1:%d", f->srv->port);
    unsetenv("IDENTITY_ENDPOINT");
    unsetenv("IDENTITY_HEADER");
    unsetenv("IMDS_ENDPOINT");
    unsetenv("AZURE_CLIENT_ID");
    unsetenv("AZURE_TENANT_ID");
    unsetenv("AZURE_FEDERATED_TOKEN_FILE");
    unsetenv("AZURE_AUTHORITY_HOST");
    unsetenv("CREDENTIALS_DIRECTORY");
    *st = f;
    return 0;
}

static int teardown(void **st) {
    struct fx *f = *st;
    fx_close(f);
    server_stop(f->srv);
    az_clock_override(NULL, NULL);
    free(f);
    return 0;
}

static int fetch(struct fx *f, size_t src, size_t cred, struct rc_candidate c[2], struct rc_error *err) {
    memset(c, 0, 2 * sizeof *c);
    c[0].expires_at = c[1].expires_at = INT64_MIN;
    c[0].rotated_at = c[1].rotated_at = INT64_MIN;
    memset(err, 0, sizeof *err);
    int n = f->type[src]->fetch(f->state[src], &f->creds[src][cred], c, err);
    /* No Azure store records an agent's rotation: a candidate built anew must say
     * "unknown", never 0 (1970, which the fleet's schedule would count from). */
    for (int i = 0; i < n; i++)
        assert_true(c[i].rotated_at == INT64_MIN);
    return n;
}

static void cands_clear(struct rc_candidate *c, int n) {
    for (int i = 0; i < n; i++) {
        free(c[i].username);
        secret_free(c[i].password);
    }
}

#define REDIS "redis = { endpoints = [ \"127.0.0.1:6379\" ]; };"
#define IMDS_ID "identity = { type = \"managed\"; imds_url = \"http://127.0.0.1:%PORT%\"; };"

static const char *ENTRA_CONF =
    "sources = ( { name = \"entra\"; type = \"azure-entra\"; " IMDS_ID " } );\n"
    "credentials = ( { name = \"tok\"; source = \"entra\"; " REDIS " } );\n";

/* ---- the plugin object ------------------------------------------------------------ */

static void test_plugin_serves_the_three_types(void **st) {
    assert_int_equal(redis_creds_plugin.abi_version, RC_PLUGIN_ABI_VERSION);
    assert_string_equal(redis_creds_plugin.name, "azure");
    assert_int_equal(redis_creds_plugin.n_types, 3);
    const char *names[] = { "azure-keyvault", "azure-entra", "azure-redis-keys" };
    for (size_t i = 0; i < 3; i++) {
        const struct rc_source_type *t = type_named(names[i]);
        assert_non_null(t);
        assert_non_null(t->source_keys);
        assert_non_null(t->credential_keys);
        assert_non_null(t->open);
        assert_non_null(t->fetch);
        assert_non_null(t->close);
        t->close(NULL);   /* forgiving destructor */
    }
    assert_non_null(type_named("azure-entra")->next_check);
}

/* ---- pure parts ------------------------------------------------------------------ */

static void test_refresh_point_is_ratio_or_margin_whichever_first(void **st) {
    const uint64_t S = 1000000;
    struct az_refresh p = { .ratio = 0.7, .margin_usec = 180 * S };
    assert_int_equal(az_refresh_point(0, 1000 * S, &p), 700 * S);         /* ratio first */
    assert_int_equal(az_refresh_point(0, 86400 * S, &p), 60480 * S);
    p.ratio = 0.9;
    p.margin_usec = 600 * S;
    assert_int_equal(az_refresh_point(0, 3600 * S, &p), 3000 * S);        /* margin first */
    p.ratio = 0.7;
    p.margin_usec = 180 * S;
    assert_int_equal(az_refresh_point(100 * S, 200 * S, &p), 170 * S);    /* life < margin: ratio */
    assert_int_equal(az_refresh_point(5 * S, 5 * S, &p), 5 * S);
}

static void test_unchanged_token_gaps_grow_from_30s(void **st) {
    const uint64_t S = 1000000, now = 10000 * S, exp = now + 86400 * S, m = 180 * S;
    assert_int_equal(az_same_token_next_ask(now, 1, exp, m), now + 30 * S);
    assert_int_equal(az_same_token_next_ask(now, 2, exp, m), now + 60 * S);
    assert_int_equal(az_same_token_next_ask(now, 3, exp, m), now + 120 * S);
    assert_int_equal(az_same_token_next_ask(now, 30, exp, m), now + AZ_SAME_TOKEN_MAX_GAP);
    /* Not past exp - margin while that is ahead, but never less than 30 s. */
    assert_int_equal(az_same_token_next_ask(now, 4, now + 300 * S, m), now + 120 * S);
    assert_int_equal(az_same_token_next_ask(now, 1, now + 190 * S, m), now + 30 * S);
    /* Past exp - margin: 30 s steps at least, still no loop. */
    assert_int_equal(az_same_token_next_ask(now, 1, now + 100 * S, m), now + 30 * S);
}

static void test_token_parse_reads_imds_strings_and_v2_integers(void **st) {
    struct az_token t = { 0 };
    struct rc_error err = { 0 };
    int64_t iat = 0;
    const char *imds = "{\"access_token\":\"opaque-token\",\"expires_in\":\"3599\",\"expires_on\":\"1800003599\","
                       "\"not_before\":\"1800000000\",\"resource\":\"https://vault.azure.net/\",\"token_type\":\"Bearer\"}";
    assert_int_equal(az_token_parse(imds, strlen(imds), 1800000100, &t, &iat, &err), 0);
    assert_int_equal(t.exp, 1800003599);
    assert_int_equal(iat, 1800000000);   /* expires_on - expires_in */
    assert_string_equal(secret_data(t.value), "opaque-token");
    assert_string_equal(t.oid, "");
    az_token_clear(&t);

    const char *v2 = "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":3599,\"access_token\":\"x\"}";
    assert_int_equal(az_token_parse(v2, strlen(v2), 1800000000, &t, &iat, &err), 0);
    assert_int_equal(t.exp, 1800003599);
    assert_int_equal(iat, 1800000000);
    az_token_clear(&t);

    char jwt[2048], body[2400];
    make_token(jwt, sizeof jwt, "the-oid", 1799999000, 1800009000, 1);
    snprintf(body, sizeof body, "{\"access_token\":\"%s\",\"expires_in\":\"1\"}", jwt);
    assert_int_equal(az_token_parse(body, strlen(body), 1800000000, &t, &iat, &err), 0);
    assert_int_equal(t.exp, 1800009000);   /* the token's own exp wins */
    assert_int_equal(iat, 1799999000);
    assert_string_equal(t.oid, "the-oid");
    az_token_clear(&t);
}

static void test_token_parse_refuses_unusable_answers(void **st) {
    struct az_token t = { 0 };
    struct rc_error err = { 0 };
    int64_t iat;
    const char *bad[] = {
        "[]", "{\"expires_in\":5}", "{\"access_token\":\"\",\"expires_in\":5}",
        "{\"access_token\":\"no-expiry\"}", "{\"access_token\":\"a b\",\"expires_in\":5}",
        "{\"access_token\":\"a\\r\\nX-Evil: 1\",\"expires_in\":5}", "{\"access_token\":\"x\",\"expires_in\":\"5s\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(az_token_parse(bad[i], strlen(bad[i]), 1800000000, &t, &iat, &err), -1);
        assert_int_equal(err.cls, RC_ERR_INVALID);
        assert_null(t.value);
    }
}

static void test_urlencode_escapes_all_but_unreserved(void **st) {
    size_t n;
    char *e = az_urlencode("https://redis.azure.com/.default a+b~_-", 39, &n);
    assert_string_equal(e, "https%3A%2F%2Fredis.azure.com%2F.default%20a%2Bb~_-");
    assert_int_equal(n, strlen(e));
    az_wipe_free(e, n);
}

/* ---- entra -------------------------------------------------------------------------- */

static void test_entra_candidate_is_oid_token_and_exp(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    sc.strings = true;
    assert_int_equal(fx_open(f, ENTRA_CONF, &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    assert_string_equal(c[0].username, "oid-1234");
    assert_string_equal(secret_data(c[0].password), sc.last_token);
    assert_int_equal(c[0].expires_at, T0 + 1000);
    assert_string_equal(c[0].version, "1800001000");
    assert_int_equal(c[0].role, RC_CAND_CURRENT);
    cands_clear(c, 1);

    const struct req *r = last_req(f->srv, "/metadata/identity/oauth2/token");
    assert_non_null(r);
    assert_string_equal(r->method, "GET");
    assert_non_null(strstr(r->target, "api-version=2018-02-01"));
    assert_true(has_param(r->target, "resource", "https%3A%2F%2Fredis.azure.com"));
    assert_null(strstr(r->target, "default"));
    assert_non_null(strcasestr(r->headers, "Metadata: true"));
    /* The first look after open: the refresh point is 700 s ahead. */
    assert_int_equal(f->type[0]->next_check(f->state[0], &f->creds[0][0]), 700ULL * 1000000ULL);
}

static void test_entra_object_id_from_config_is_the_username(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    assert_int_equal(fx_open(f,
        "sources = ( { name = \"entra\"; type = \"azure-entra\"; identity = { type = \"managed\"; "
        "imds_url = \"http://127.0.0.1:%PORT%\"; object_id = \"cfg-oid\"; }; } );\n"
        "credentials = ( { name = \"tok\"; source = \"entra\"; " REDIS " } );\n", &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    assert_string_equal(c[0].username, "cfg-oid");
    cands_clear(c, 1);
    assert_non_null(strstr(last_req(f->srv, "/metadata")->target, "&object_id=cfg-oid"));
}

static void test_entra_asks_only_at_the_refresh_point(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    assert_int_equal(fx_open(f, ENTRA_CONF, &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    char first[16];
    snprintf(first, sizeof first, "%s", c[0].version);
    cands_clear(c, 1);
    advance(699);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);          /* cached: no request */
    assert_string_equal(c[0].version, first);
    cands_clear(c, 1);
    assert_int_equal(count_reqs(f->srv, "/metadata"), 1);
    assert_int_equal(f->type[0]->next_check(f->state[0], &f->creds[0][0]), 1000000ULL);
    advance(1);
    /* At (or a hair past) the point: the minimum, never 0 (0 would mean poll_interval). */
    assert_int_equal(f->type[0]->next_check(f->state[0], &f->creds[0][0]), 100000ULL);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);          /* at 70%: a new token */
    assert_int_equal(count_reqs(f->srv, "/metadata"), 2);
    assert_int_equal(c[0].expires_at, T0 + 700 + 1000);
    assert_string_not_equal(c[0].version, first);
    cands_clear(c, 1);
}

static void test_entra_unchanged_token_is_no_change_and_backs_off(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    const uint64_t S = 1000000;
    sc.same_token = true;      /* an IMDS that serves its cache */
    sc.lifetime = 3600;
    assert_int_equal(fx_open(f, ENTRA_CONF, &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    advance(2520);             /* 70% */
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    assert_string_equal(c[0].version, "1800003600");       /* same exp: no change */
    cands_clear(c, 1);
    assert_int_equal(count_reqs(f->srv, "/metadata"), 2);
    assert_int_equal(f->type[0]->next_check(f->state[0], &f->creds[0][0]), 30 * S);
    /* Looks before the gap ends make no request. */
    advance(29);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    assert_int_equal(count_reqs(f->srv, "/metadata"), 2);
    advance(1);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    assert_int_equal(count_reqs(f->srv, "/metadata"), 3);
    assert_int_equal(f->type[0]->next_check(f->state[0], &f->creds[0][0]), 60 * S);
    advance(60);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    assert_int_equal(f->type[0]->next_check(f->state[0], &f->creds[0][0]), 120 * S);
    /* The endpoint finally has a new token: published, gaps reset. */
    sc.same_token = false;
    advance(120);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    assert_int_equal(c[0].expires_at, T0 + 2520 + 30 + 60 + 120 + 3600);
    cands_clear(c, 1);
    assert_int_equal(f->type[0]->next_check(f->state[0], &f->creds[0][0]), 2520 * S);
}

static void test_entra_deadline_follows_a_wall_clock_jump(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    assert_int_equal(fx_open(f, ENTRA_CONF, &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    assert_int_equal(f->type[0]->next_check(f->state[0], &f->creds[0][0]), 700ULL * 1000000ULL);
    /* The wall clock steps 500 s ahead (NTP after a bad start, a resume): the token has
     * 500 s less to live than the monotonic clock says. */
    fake_real += 500LL * 1000000LL;
    assert_int_equal(f->type[0]->next_check(f->state[0], &f->creds[0][0]), 200ULL * 1000000ULL);
    assert_non_null(strstr(f->m.log, "wall clock moved by +500 s"));
    advance(200);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    assert_int_equal(count_reqs(f->srv, "/metadata"), 2);
    cands_clear(c, 1);
}

static void test_entra_failed_refresh_says_how_long_the_token_lasts(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    assert_int_equal(fx_open(f, ENTRA_CONF, &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    advance(700);
    sc.token_status = 503;
    snprintf(sc.token_error, sizeof sc.token_error, "{\"error\":\"unknown\",\"error_description\":\"busy\"}");
    snprintf(sc.token_headers, sizeof sc.token_headers, "Retry-After: 7\r\n");
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_TRANSIENT);
    assert_int_equal(err.retry_after_usec, 7000000ULL);
    assert_non_null(strstr(err.message, "503"));
    assert_non_null(strstr(err.message, "the current token expires in 5m 0s"));
    assert_null(strstr(err.message, "eyJ"));
}

static void test_entra_refuses_a_bad_refresh_ratio(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    assert_int_equal(fx_open(f,
        "sources = ( { name = \"entra\"; type = \"azure-entra\"; refresh_ratio = 1.5; " IMDS_ID " } );\n"
        "credentials = ( { name = \"tok\"; source = \"entra\"; " REDIS " } );\n", &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "refresh_ratio"));
}

/* ---- identity endpoints and their errors ---------------------------------------------- */

static void expect_token_error(struct fx *f, int status, const char *body, enum rc_err_class cls,
                               const char *needle) {
    struct rc_error err;
    struct rc_candidate c[2];
    sc.token_status = status;
    snprintf(sc.token_error, sizeof sc.token_error, "%s", body);
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, cls);
    if (needle)
        assert_non_null(strstr(err.message, needle));
}

static void test_imds_errors_map_to_classes(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    assert_int_equal(fx_open(f, ENTRA_CONF, &err), 0);
    expect_token_error(f, 400, "{\"error\":\"invalid_request\",\"error_description\":\"Identity not found\"}",
                       RC_ERR_FATAL, "Identity not found; assign the identity");
    expect_token_error(f, 404, "{}", RC_ERR_TRANSIENT, "404");
    expect_token_error(f, 429, "{}", RC_ERR_TRANSIENT, "429");
    expect_token_error(f, 500, "{\"error\":\"unknown\",\"error_description\":\"Failed to retrieve token\"}",
                       RC_ERR_TRANSIENT, "Failed to retrieve token");
    expect_token_error(f, 403, "{}", RC_ERR_AUTH, "403");
    struct rc_candidate c[2];
    sc.token_status = 410;
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_TRANSIENT);
    assert_true(err.retry_after_usec >= 10000000ULL);
}

static void test_app_service_endpoint_from_environment(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    char ep[128];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d/msi/token", f->srv->port);
    setenv("IDENTITY_ENDPOINT", ep, 1);
    setenv("IDENTITY_HEADER", "hdr-SECRET-1", 1);
    assert_int_equal(fx_open(f,
        "sources = ( { name = \"entra\"; type = \"azure-entra\"; identity = { type = \"managed\"; "
        "client_id = \"cid-9\"; }; } );\n"
        "credentials = ( { name = \"tok\"; source = \"entra\"; " REDIS " } );\n", &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    const struct req *r = last_req(f->srv, "/msi/token");
    assert_non_null(r);
    assert_non_null(strstr(r->target, "api-version=2019-08-01"));
    assert_non_null(strstr(r->target, "&client_id=cid-9"));
    assert_non_null(strcasestr(r->headers, "X-IDENTITY-HEADER: hdr-SECRET-1"));
    assert_int_equal(count_reqs(f->srv, "/metadata"), 0);
    unsetenv("IDENTITY_ENDPOINT");
    unsetenv("IDENTITY_HEADER");
}

static void test_configured_imds_url_wins_over_app_service_environment(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token", 1);
    setenv("IDENTITY_HEADER", "h", 1);
    assert_int_equal(fx_open(f, ENTRA_CONF, &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    assert_int_equal(count_reqs(f->srv, "/metadata"), 1);
    unsetenv("IDENTITY_ENDPOINT");
    unsetenv("IDENTITY_HEADER");
}

static void test_app_service_endpoint_off_loopback_is_refused(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    setenv("IDENTITY_ENDPOINT", "http://10.1.2.3:8081/msi/token", 1);
    setenv("IDENTITY_HEADER", "h", 1);
    assert_int_equal(fx_open(f,
        "sources = ( { name = \"entra\"; type = \"azure-entra\"; } );\n"
        "credentials = ( { name = \"tok\"; source = \"entra\"; " REDIS " } );\n", &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "IDENTITY_ENDPOINT"));
    unsetenv("IDENTITY_ENDPOINT");
    unsetenv("IDENTITY_HEADER");
}

static void write_file(const char *path, const char *content, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    fchmod(fd, mode);
    close(fd);
}

static void tmpdir(char *out, size_t len) {
    const char *tmp = getenv("REDIS_CREDS_TEST_TMP");
    snprintf(out, len, "%s/azure-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(out));
}

static void test_workload_identity_posts_the_federated_token_from_the_environment(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    char dir[256], file[320], auth[64];
    tmpdir(dir, sizeof dir);
    snprintf(file, sizeof file, "%s/token", dir);
    write_file(file, "sa.TOKEN-one.sig\n", 0644);   /* projected tokens are 0644: accepted */
    snprintf(auth, sizeof auth, "http://127.0.0.1:%d/", f->srv->port);
    setenv("AZURE_CLIENT_ID", "app-1", 1);
    setenv("AZURE_TENANT_ID", "env-tenant", 1);
    setenv("AZURE_FEDERATED_TOKEN_FILE", file, 1);
    setenv("AZURE_AUTHORITY_HOST", auth, 1);
    /* Config wins: the tenant comes from the config, the rest from the environment. */
    assert_int_equal(fx_open(f,
        "sources = ( { name = \"entra\"; type = \"azure-entra\"; identity = { type = \"workload\"; "
        "tenant_id = \"cfg-tenant\"; }; } );\n"
        "credentials = ( { name = \"tok\"; source = \"entra\"; " REDIS " } );\n", &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    const struct req *r = last_req(f->srv, "/cfg-tenant/oauth2/v2.0/token");
    assert_non_null(r);
    assert_string_equal(r->method, "POST");
    assert_non_null(strcasestr(r->headers, "Content-Type: application/x-www-form-urlencoded"));
    assert_non_null(strstr(r->body, "grant_type=client_credentials"));
    assert_non_null(strstr(r->body, "client_id=app-1"));
    assert_non_null(strstr(r->body, "scope=https%3A%2F%2Fredis.azure.com%2F.default"));
    assert_non_null(strstr(r->body, "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"));
    assert_non_null(strstr(r->body, "client_assertion=sa.TOKEN-one.sig"));
    /* kubelet rotates the file: the next request reads it again. */
    write_file(file, "sa.TOKEN-two.sig", 0644);
    advance(700);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    assert_non_null(strstr(last_req(f->srv, "/cfg-tenant/")->body, "client_assertion=sa.TOKEN-two.sig"));
    unlink(file);
    advance(700);
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
    rmdir(dir);
    unsetenv("AZURE_CLIENT_ID");
    unsetenv("AZURE_TENANT_ID");
    unsetenv("AZURE_FEDERATED_TOKEN_FILE");
    unsetenv("AZURE_AUTHORITY_HOST");
}

static void test_client_secret_from_credentials_directory(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    char dir[256], file[320];
    tmpdir(dir, sizeof dir);
    snprintf(file, sizeof file, "%s/" AZ_CLIENT_SECRET_CREDENTIAL, dir);
    write_file(file, "cs-SECRET-value\n", 0600);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    assert_int_equal(fx_open(f,
        "sources = ( { name = \"entra\"; type = \"azure-entra\"; identity = { type = \"client_secret\"; "
        "tenant_id = \"t1\"; client_id = \"app-2\"; authority_host = \"http://127.0.0.1:%PORT%\"; }; } );\n"
        "credentials = ( { name = \"tok\"; source = \"entra\"; " REDIS " } );\n", &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    assert_non_null(strstr(last_req(f->srv, "/t1/oauth2/v2.0/token")->body, "client_secret=cs-SECRET-value"));
    /* A secret readable by others is refused, and the message says so without the value. */
    chmod(file, 0644);
    advance(700);
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "accessible by group or others"));
    assert_null(strstr(err.message, "cs-SECRET"));
    /* Entra's refusal of the secret is the identity refused. */
    chmod(file, 0600);
    sc.token_status = 401;
    snprintf(sc.token_error, sizeof sc.token_error,
             "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid client secret provided. "
             "Trace ID: 1 Correlation ID: 2\",\"error_codes\":[7000215]}");
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);
    assert_non_null(strstr(err.message, "invalid_client: AADSTS7000215: Invalid client secret provided."));
    assert_null(strstr(err.message, "Trace ID"));
    unlink(file);
    rmdir(dir);
    unsetenv("CREDENTIALS_DIRECTORY");
}

static void test_identity_configuration_errors_are_fatal(void **st) {
    static const char *const bad[] = {
        "identity = { type = \"certificate\"; };",
        "identity = { type = \"managed\"; client_id = \"a\"; object_id = \"b\"; };",
        "identity = { type = \"managed\"; imds_url = \"http://10.0.0.1\"; };",
        "identity = { type = \"workload\"; client_id = \"a\"; federated_token_file = \"/x\"; };",
        "identity = { type = \"workload\"; client_id = \"a\"; tenant_id = \"t\"; };",
        "identity = { type = \"workload\"; client_id = \"a\"; tenant_id = \"t/../x\"; federated_token_file = \"/x\"; };",
        "identity = { type = \"client_secret\"; client_id = \"a\"; tenant_id = \"t\"; };",
        "identity = { type = \"client_secret\"; client_id = \"a\"; tenant_id = \"t\"; authority_host = \"http://login.example\"; client_secret_file = \"/x\"; };",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fx f = { 0 };
        struct rc_error err;
        char conf[1024];
        f.srv = ((struct fx *)*st)->srv;
        snprintf(conf, sizeof conf,
                 "sources = ( { name = \"entra\"; type = \"azure-entra\"; %s } );\n"
                 "credentials = ( { name = \"tok\"; source = \"entra\"; " REDIS " } );\n", bad[i]);
        assert_int_equal(fx_open(&f, conf, &err), -1);
        assert_int_equal(err.cls, RC_ERR_FATAL);
        assert_true(err.message[0] != '\0');
        fx_close(&f);
    }
}

/* ---- Azure Arc ------------------------------------------------------------------------- */

static void test_arc_realm_must_name_a_key_file_in_the_token_directory(void **st) {
    (void)st;
    const char *dir = "/var/opt/azcmagent/tokens";
    char path[512], why[400];
    static const char *const good[][2] = {
        { "Basic realm=/var/opt/azcmagent/tokens/5f1c2d3e-aaaa.key", "/var/opt/azcmagent/tokens/5f1c2d3e-aaaa.key" },
        { "basic  Realm=\"/var/opt/azcmagent/tokens/a.b_c.key\" ", "/var/opt/azcmagent/tokens/a.b_c.key" },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(az_arc_realm_path(good[i][0], dir, path, sizeof path, why, sizeof why), 0);
        assert_string_equal(path, good[i][1]);
    }
    static const char *const bad[] = {
        "Basic realm=/etc/shadow.key",                              /* outside the directory */
        "Basic realm=/var/opt/azcmagent/tokensX/a.key",             /* a sibling with the same prefix */
        "Basic realm=/var/opt/azcmagent/tokens/sub/a.key",          /* not directly in it */
        "Basic realm=/var/opt/azcmagent/tokens/../tokens/a.key",
        "Basic realm=/var/opt/azcmagent/tokens/a..key",
        "Basic realm=/var/opt/azcmagent/tokens/.key",
        "Basic realm=/var/opt/azcmagent/tokens/.hidden.key",
        "Basic realm=/var/opt/azcmagent/tokens/a.txt",              /* no .key */
        "Basic realm=/var/opt/azcmagent/tokens/a.key.bak",
        "Basic realm=/var/opt/azcmagent/tokens/a b.key",
        "Basic realm=/var/opt/azcmagent/tokens//a.key",
        "Basic realm=var/opt/azcmagent/tokens/a.key",
        "Bearer realm=/var/opt/azcmagent/tokens/a.key",             /* not Basic */
        "Basic realm=",
        "Basic",
        "",
        "Basic realm=\"/var/opt/azcmagent/tokens/a.key",           /* unterminated quote */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_int_equal(az_arc_realm_path(bad[i], dir, path, sizeof path, why, sizeof why), -EINVAL);
        assert_true(why[0] != '\0');
    }
    assert_int_equal(az_arc_realm_path(bad[0], dir, path, sizeof path, why, sizeof why), -EINVAL);
    assert_string_equal(why, "the challenge names \"/etc/shadow.key\", not a <name>.key file directly in "
                             "/var/opt/azcmagent/tokens");
    assert_int_equal(az_arc_realm_path(NULL, dir, path, sizeof path, why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "no WWW-Authenticate"));
    /* Too long for the caller's buffer: refused, not cut. */
    assert_int_equal(az_arc_realm_path(good[0][0], dir, path, 20, why, sizeof why), -EINVAL);
}

static void test_arc_key_file_must_be_a_small_regular_file(void **st) {
    (void)st;
    char dir[256], f[320], link[320], sub[320];
    struct secret *k = NULL;
    tmpdir(dir, sizeof dir);
    snprintf(f, sizeof f, "%s/a.key", dir);
    write_file(f, "k3y-VALUE\r\n", 0640);
    assert_int_equal(az_arc_read_key(f, &k), 0);
    assert_int_equal(secret_len(k), 9);
    assert_string_equal(secret_data(k), "k3y-VALUE");   /* trailing whitespace dropped */
    k = secret_free(k);
    snprintf(link, sizeof link, "%s/l.key", dir);
    assert_int_equal(symlink(f, link), 0);
    assert_int_equal(az_arc_read_key(link, &k), -ELOOP);
    snprintf(sub, sizeof sub, "%s/d.key", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(az_arc_read_key(sub, &k), -EINVAL);
    char *big = malloc(AZ_ARC_KEY_MAX + 2);
    memset(big, 'x', AZ_ARC_KEY_MAX + 1);
    big[AZ_ARC_KEY_MAX] = '\0';
    write_file(f, big, 0640);                          /* exactly the limit: accepted */
    assert_int_equal(az_arc_read_key(f, &k), 0);
    assert_int_equal(secret_len(k), AZ_ARC_KEY_MAX);
    k = secret_free(k);
    big[AZ_ARC_KEY_MAX] = 'x';
    big[AZ_ARC_KEY_MAX + 1] = '\0';
    write_file(f, big, 0640);
    assert_int_equal(az_arc_read_key(f, &k), -EFBIG);
    free(big);
    write_file(f, "two\nlines", 0640);                 /* would start a second header */
    assert_int_equal(az_arc_read_key(f, &k), -EBADMSG);
    write_file(f, " \n", 0640);
    assert_int_equal(az_arc_read_key(f, &k), -ENODATA);
    assert_null(k);
    if (geteuid() != 0) {
        write_file(f, "k", 0);
        assert_int_equal(az_arc_read_key(f, &k), -EACCES);
    }
    unlink(f);
    assert_int_equal(az_arc_read_key(f, &k), -ENOENT);
    unlink(link);
    rmdir(sub);
    rmdir(dir);
}

/* One azure-entra source with `id` (a string literal: the identity group, or nothing). */
#define ENTRA_WITH(id)                                                                   \
    "sources = ( { name = \"entra\"; type = \"azure-entra\"; " id " } );\n"              \
    "credentials = ( { name = \"tok\"; source = \"entra\"; " REDIS " } );\n"

/* Arc's environment pointing at the scripted server, challenge files in a new directory
 * (dir) that is also identity.arc_token_dir unless token_dir says otherwise. */
static int arc_open(struct fx *f, char *dir, size_t dirlen, const char *token_dir, const char *extra,
                    struct rc_error *err) {
    char ep[128], conf[2048];
    tmpdir(dir, dirlen);
    snprintf(sc.arc_dir, sizeof sc.arc_dir, "%s", dir);
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d/metadata/identity/oauth2/token", f->srv->port);
    setenv("IDENTITY_ENDPOINT", ep, 1);
    setenv("IMDS_ENDPOINT", "http://localhost:40342", 1);
    snprintf(conf, sizeof conf, ENTRA_WITH("identity = { type = \"managed\"; arc_token_dir = \"%s/\"; %s };"),
             token_dir ? token_dir : dir, extra ? extra : "");
    return fx_open(f, conf, err);
}

static void arc_cleanup(const char *dir) {
    char p[400];
    for (int i = 1; i <= sc.arc_n; i++) {
        snprintf(p, sizeof p, "%s/c%d.key", dir, i);
        unlink(p);
    }
    rmdir(dir);
    unsetenv("IDENTITY_ENDPOINT");
    unsetenv("IMDS_ENDPOINT");
}

static void test_arc_answers_the_challenge_with_the_key_file(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    char dir[256], auth[128];
    sc.strings = true;
    assert_int_equal(arc_open(f, dir, sizeof dir, NULL, NULL, &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    assert_string_equal(c[0].username, "oid-1234");
    cands_clear(c, 1);
    /* Two requests: the challenge, then the answer with the file's content. */
    assert_int_equal(count_reqs(f->srv, "/metadata/identity/oauth2/token"), 2);
    pthread_mutex_lock(&f->srv->lock);
    const struct req *first = &f->srv->reqs[0], *second = &f->srv->reqs[1];
    pthread_mutex_unlock(&f->srv->lock);
    assert_true(has_param(first->target, "api-version", "2020-06-01"));
    assert_true(has_param(first->target, "resource", "https%3A%2F%2Fredis.azure.com"));
    assert_string_equal(first->target, second->target);
    assert_non_null(strcasestr(first->headers, "Metadata: true"));
    assert_non_null(strcasestr(second->headers, "Metadata: true"));
    assert_null(strcasestr(first->headers, "Authorization"));
    snprintf(auth, sizeof auth, "Authorization: Basic %s", "arcKEY1-0f9e8d7c6b5a");
    assert_non_null(strstr(second->headers, auth));
    /* The next token needs a new challenge: the key is not kept. */
    advance(700);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    assert_int_equal(count_reqs(f->srv, "/metadata/identity/oauth2/token"), 4);
    assert_non_null(strstr(last_req(f->srv, "/metadata")->headers, "Authorization: Basic arcKEY2-0f9e8d7c6b5a"));
    assert_null(strstr(f->m.log, "arcKEY"));
    arc_cleanup(dir);
}

static void test_arc_refusals_are_auth_errors(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    char dir[256], other[256];
    tmpdir(other, sizeof other);
    /* The challenge files appear elsewhere than the token directory. */
    assert_int_equal(arc_open(f, dir, sizeof dir, other, NULL, &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);
    assert_non_null(strstr(err.message, "managed identity (Azure Arc): GET $IDENTITY_ENDPOINT: 401 without a usable challenge"));
    assert_non_null(strstr(err.message, other));
    assert_int_equal(count_reqs(f->srv, "/metadata"), 1);     /* no second request */
    fx_close(f);
    /* No challenge at all. */
    snprintf(sc.arc_challenge, sizeof sc.arc_challenge, "X-Nothing: 1\r\n");
    assert_int_equal(fx_open(f, ENTRA_WITH("identity = { type = \"managed\"; };"), &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);
    assert_non_null(strstr(err.message, "401 without a usable challenge: no WWW-Authenticate header"));
    fx_close(f);
    /* The challenge names a file in the right place that is not there. */
    sc.arc_challenge[0] = '\0';
    rmdir(other);
    sc.arc_no_file = true;
    char conf[1024];
    snprintf(conf, sizeof conf, ENTRA_WITH("identity = { type = \"managed\"; arc_token_dir = \"%s\"; };"), dir);
    assert_int_equal(fx_open(f, conf, &err), 0);
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);
    assert_non_null(strstr(err.message, "challenge file "));
    assert_non_null(strstr(err.message, "No such file or directory"));
    sc.arc_no_file = false;
    /* Not readable by us (root reads anything: checked only when not root). */
    if (geteuid() != 0) {
        sc.arc_mode = 0200;
        assert_int_equal(fetch(f, 0, 0, c, &err), -1);
        assert_int_equal(err.cls, RC_ERR_AUTH);
        assert_non_null(strstr(err.message, "Permission denied; the agent's user must be in the himds group"));
        sc.arc_mode = 0;
    }
    /* The agent refuses the answer (a second 401), or fails otherwise: as for IMDS. */
    sc.token_status = 401;
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);
    assert_non_null(strstr(err.message, ": 401"));
    sc.token_status = 404;
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_TRANSIENT);
    sc.token_status = 0;
    assert_null(strstr(err.message, "arcKEY"));
    assert_null(strstr(f->m.log, "arcKEY"));
    arc_cleanup(dir);
}

static void test_arc_configuration_errors_are_fatal(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char dir[256];
    assert_int_equal(arc_open(f, dir, sizeof dir, NULL, "client_id = \"cid-1\";", &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "identity.client_id: Azure Arc ($IDENTITY_ENDPOINT and $IMDS_ENDPOINT) "
                                        "offers only the machine's system-assigned identity"));
    fx_close(f);
    setenv("AZURE_CLIENT_ID", "cid-2", 1);
    assert_int_equal(fx_open(f, ENTRA_CONF, &err), 0);     /* imds_url configured: IMDS, not Arc */
    fx_close(f);
    assert_int_equal(fx_open(f, ENTRA_WITH(""), &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "$AZURE_CLIENT_ID is set"));
    fx_close(f);
    unsetenv("AZURE_CLIENT_ID");
    static const char *const off_loopback[] = {
        "http://10.0.0.5:40342/metadata/identity/oauth2/token",
        "https://arc.example.com/metadata/identity/oauth2/token",
        "http://localhost@10.0.0.5:40342/metadata/identity/oauth2/token",
        "http://169.254.169.254/metadata/identity/oauth2/token",
        "http://127.0.0.1:40342x/metadata/identity/oauth2/token",
        "https://localhost.example.com/metadata/identity/oauth2/token",   /* https passes the URL rule */
        "https://127.0.0.1.example.com:40342/metadata/identity/oauth2/token",
    };
    for (size_t i = 0; i < sizeof off_loopback / sizeof off_loopback[0]; i++) {
        setenv("IDENTITY_ENDPOINT", off_loopback[i], 1);
        assert_int_equal(fx_open(f, ENTRA_WITH(""), &err), -1);
        assert_int_equal(err.cls, RC_ERR_FATAL);
        assert_non_null(strstr(err.message, "IDENTITY_ENDPOINT refused for Azure Arc: "));
        fx_close(f);
    }
    static const char *const loopback[] = {
        "http://[::1]:40342/metadata/identity/oauth2/token",
        "http://LOCALHOST/metadata/identity/oauth2/token",
        "http://127.0.0.2:40342/metadata/identity/oauth2/token?x=1",
    };
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
        setenv("IDENTITY_ENDPOINT", loopback[i], 1);
        assert_int_equal(fx_open(f, ENTRA_WITH(""), &err), 0);
        fx_close(f);
    }
    setenv("IDENTITY_ENDPOINT", "http://localhost:40342/metadata/identity/oauth2/token", 1);
    assert_int_equal(fx_open(f, ENTRA_WITH("identity = { arc_token_dir = \"tokens\"; };"), &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "identity.arc_token_dir"));
    fx_close(f);
    /* With IDENTITY_HEADER as well it is App Service, whatever IMDS_ENDPOINT says. */
    setenv("IDENTITY_HEADER", "h", 1);
    assert_int_equal(fx_open(f, ENTRA_WITH("identity = { client_id = \"cid-3\"; };"), &err), 0);
    unsetenv("IDENTITY_HEADER");
    arc_cleanup(dir);
}

/* ---- key vault ---------------------------------------------------------------------- */

static const char *KV_CONF =
    "sources = ( { name = \"kv\"; type = \"azure-keyvault\"; vault_url = \"http://127.0.0.1:%PORT%/\"; "
    "api_version = \"7.6\"; " IMDS_ID " } );\n"
    "credentials = ( { name = \"cache\"; source = \"kv\"; path = \"s\"; username = \"app\"; " REDIS " },\n"
    "                { name = \"js\"; source = \"kv\"; path = \"j\"; value_format = \"json\"; " REDIS " } );\n";

static void test_keyvault_latest_version_and_startup_hint(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    assert_int_equal(fx_open(f, KV_CONF, &err), 0);
    snprintf(sc.data_body, sizeof sc.data_body,
             "{\"value\":\"pw-LATEST\",\"id\":\"https://v.vault.azure.net/secrets/s/latest1\","
             "\"attributes\":{\"enabled\":true,\"exp\":1900000000,\"created\":400}}");
    assert_int_equal(fetch(f, 0, 0, c, &err), 2);
    assert_string_equal(c[0].username, "app");
    assert_string_equal(secret_data(c[0].password), "pw-LATEST");
    assert_string_equal(c[0].version, "latest1");
    assert_int_equal(c[0].expires_at, 1900000000);
    /* Newest enabled other than the latest across both pages: ccc (created 250);
     * ddd (300) is disabled. */
    assert_int_equal(c[1].role, RC_CAND_HINT);
    assert_string_equal(c[1].version, "ccc");
    assert_string_equal(secret_data(c[1].password), "older-pw");
    assert_string_equal(c[1].username, "app");
    cands_clear(c, 2);
    const struct req *r = last_req(f->srv, "/secrets/s?");
    assert_non_null(r);
    assert_string_equal(r->target, "/secrets/s?api-version=7.6");
    assert_non_null(strcasestr(r->headers, "Authorization: Bearer eyJ"));
    assert_int_equal(count_reqs(f->srv, "/secrets/s/versions"), 2);
    /* Only the first look lists versions. */
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    assert_int_equal(count_reqs(f->srv, "/secrets/s/versions"), 2);
    /* One token for both looks. */
    assert_int_equal(count_reqs(f->srv, "/metadata"), 1);
    assert_true(has_param(last_req(f->srv, "/metadata")->target, "resource", "https%3A%2F%2Fvault.azure.net"));
}

static void test_keyvault_does_not_follow_a_foreign_next_link(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    snprintf(sc.next_origin, sizeof sc.next_origin, "http://127.0.0.2:%d", f->srv->port);
    assert_int_equal(fx_open(f, KV_CONF, &err), 0);
    snprintf(sc.data_body, sizeof sc.data_body,
             "{\"value\":\"pw\",\"id\":\"https://v/secrets/s/latest1\",\"attributes\":{\"enabled\":true}}");
    assert_int_equal(fetch(f, 0, 0, c, &err), 2);
    assert_string_equal(c[1].version, "bbb");   /* page one only */
    cands_clear(c, 2);
    assert_int_equal(count_reqs(f->srv, "/secrets/s/versions"), 1);
    assert_non_null(strstr(f->m.log, "nextLink points to another origin"));
}

static void test_keyvault_json_value(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    assert_int_equal(fx_open(f, KV_CONF, &err), 0);
    /* value_format = "json" on credential js; contentType decides for cache. */
    snprintf(sc.data_body, sizeof sc.data_body,
             "{\"value\":\"{\\\"username\\\":\\\"u1\\\",\\\"password\\\":\\\"p1\\\"}\",\"id\":\"https://v/secrets/j/v1\","
             "\"attributes\":{\"enabled\":true}}");
    f->type[0]->fetch(f->state[0], &f->creds[0][1], c, &err);   /* consume the hint look */
    cands_clear(c, 2);
    assert_int_equal(fetch(f, 0, 1, c, &err), 1);
    assert_string_equal(c[0].username, "u1");
    assert_string_equal(secret_data(c[0].password), "p1");
    cands_clear(c, 1);
    snprintf(sc.data_body, sizeof sc.data_body,
             "{\"value\":\"{\\\"username\\\":null,\\\"password\\\":\\\"p2\\\"}\",\"contentType\":\"application/json; charset=utf-8\","
             "\"id\":\"https://v/secrets/s/v2\",\"attributes\":{\"enabled\":true}}");
    f->type[0]->fetch(f->state[0], &f->creds[0][0], c, &err);
    cands_clear(c, 2);
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    assert_null(c[0].username);        /* null: the default user, over the config's "app" */
    assert_string_equal(secret_data(c[0].password), "p2");
    cands_clear(c, 1);
    /* Broken JSON: INVALID, and the message does not quote the value. */
    snprintf(sc.data_body, sizeof sc.data_body,
             "{\"value\":\"{\\\"password\\\": SECRET-p3\",\"contentType\":\"application/json\","
             "\"id\":\"https://v/secrets/s/v3\",\"attributes\":{\"enabled\":true}}");
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_null(strstr(err.message, "SECRET"));
}

static void expect_kv_error(struct fx *f, int status, const char *body, const char *headers,
                            enum rc_err_class cls, const char *needle) {
    struct rc_error err;
    struct rc_candidate c[2];
    sc.data_status = status;
    snprintf(sc.data_body, sizeof sc.data_body, "%s", body);
    snprintf(sc.data_headers, sizeof sc.data_headers, "%s", headers ? headers : "");
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, cls);
    if (needle)
        assert_non_null(strstr(err.message, needle));
}

static void test_keyvault_errors_map_to_classes(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    assert_int_equal(fx_open(f, KV_CONF, &err), 0);
    expect_kv_error(f, 403, "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Operation get is not allowed on a "
                    "disabled secret.\",\"innererror\":{\"code\":\"SecretDisabled\"}}}", NULL, RC_ERR_INVALID,
                    "GET secrets/s: 403 Forbidden/SecretDisabled: Operation get is not allowed");
    expect_kv_error(f, 403, "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Caller is not authorized\","
                    "\"innererror\":{\"code\":\"ForbiddenByRbac\"}}}", NULL, RC_ERR_AUTH, "ForbiddenByRbac");
    expect_kv_error(f, 404, "{\"error\":{\"code\":\"SecretNotFound\",\"message\":\"A secret with (name/id) s was "
                    "not found in this key vault.\"}}", NULL, RC_ERR_NOT_FOUND, "404 SecretNotFound");
    expect_kv_error(f, 429, "{\"error\":{\"code\":\"Throttled\",\"message\":\"Too many\"}}", "Retry-After: 12\r\n",
                    RC_ERR_TRANSIENT, "429");
    struct rc_candidate c[2];
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.retry_after_usec, 12000000ULL);
    expect_kv_error(f, 503, "", NULL, RC_ERR_TRANSIENT, "503");
    expect_kv_error(f, 400, "{\"error\":{\"code\":\"BadParameter\",\"message\":\"bad api-version\"}}", NULL,
                    RC_ERR_FATAL, "BadParameter");
    expect_kv_error(f, 302, "", "Location: https://elsewhere/\r\n", RC_ERR_FATAL, "redirects are not followed");
    expect_kv_error(f, 200, "{\"value\":\"x\",\"id\":\"https://v/secrets/s/bad version\"}", NULL, RC_ERR_INVALID, NULL);
    expect_kv_error(f, 200, "{\"id\":\"https://v/secrets/s/v1\"}", NULL, RC_ERR_INVALID, "no value");
}

static void test_keyvault_401_logs_in_again_once_then_is_auth(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    assert_int_equal(fx_open(f, KV_CONF, &err), 0);
    snprintf(sc.data_body, sizeof sc.data_body,
             "{\"value\":\"pw\",\"id\":\"https://v/secrets/s/latest1\",\"attributes\":{\"enabled\":true}}");
    assert_int_equal(fetch(f, 0, 0, c, &err), 2);
    cands_clear(c, 2);
    /* A revoked token: one 401, a new token, success. */
    sc.unauthorized_left = 1;
    assert_int_equal(fetch(f, 0, 0, c, &err), 1);
    cands_clear(c, 1);
    assert_int_equal(count_reqs(f->srv, "/metadata"), 2);
    /* Refused twice: AUTH, saying what the vault wants. */
    sc.unauthorized_left = 2;
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);
    assert_non_null(strstr(err.message, "401 Unauthorized"));
    assert_non_null(strstr(err.message, "wants a token for https://vault.azure.net from https://login.windows.net/t1"));
    assert_int_equal(count_reqs(f->srv, "/metadata"), 3);
}

static void test_keyvault_configuration_errors_are_fatal(void **st) {
    static const char *const bad[] = {
        "vault_url = \"http://vault.example.net\";",
        "vault_url = \"http://127.0.0.1:1\"; api_version = \"7.6&x=1\";",
    };
    static const char *const badcred[] = { "path = \"a/b\";", "path = \"s\"; value_format = \"yaml\";" };
    for (size_t i = 0; i < 4; i++) {
        struct fx f = { 0 };
        struct rc_error err;
        char conf[1024];
        f.srv = ((struct fx *)*st)->srv;
        snprintf(conf, sizeof conf,
                 "sources = ( { name = \"kv\"; type = \"azure-keyvault\"; %s %s } );\n"
                 "credentials = ( { name = \"c\"; source = \"kv\"; %s " REDIS " } );\n",
                 i < 2 ? bad[i] : "vault_url = \"http://127.0.0.1:1\";", IMDS_ID,
                 i < 2 ? "path = \"s\";" : badcred[i - 2]);
        assert_int_equal(fx_open(&f, conf, &err), -1);
        assert_int_equal(err.cls, RC_ERR_FATAL);
        fx_close(&f);
    }
}

/* ---- access keys ---------------------------------------------------------------------- */

#define RID_E "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Cache/redisEnterprise/c1/databases/default"
#define RID_C "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Cache/redis/c2"

static void test_redis_keys_both_keys_preferred_first(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    assert_int_equal(fx_open(f,
        "sources = ( { name = \"keys\"; type = \"azure-redis-keys\"; management_url = \"http://127.0.0.1:%PORT%\"; "
        IMDS_ID " } );\n"
        "credentials = ( { name = \"a\"; source = \"keys\"; path = \"" RID_E "\"; " REDIS " },\n"
        "                { name = \"b\"; source = \"keys\"; path = \"" RID_C "/\"; prefer = \"secondary\"; "
        "username = \"u\"; " REDIS " } );\n", &err), 0);
    snprintf(sc.data_body, sizeof sc.data_body, "{\"primaryKey\":\"PK-secret-1\",\"secondaryKey\":\"SK-secret-2\"}");
    assert_int_equal(fetch(f, 0, 0, c, &err), 2);
    assert_int_equal(c[0].role, RC_CAND_CURRENT);
    assert_int_equal(c[1].role, RC_CAND_PEER);
    assert_string_equal(secret_data(c[0].password), "PK-secret-1");
    assert_string_equal(secret_data(c[1].password), "SK-secret-2");
    assert_null(c[0].username);
    assert_int_equal(strncmp(c[0].version, "primary-h-", 10), 0);
    assert_int_equal(strncmp(c[1].version, "secondary-h-", 12), 0);
    assert_null(strstr(c[0].version, "PK"));
    char pv[RC_VERSION_MAX];
    snprintf(pv, sizeof pv, "%s", c[0].version);
    cands_clear(c, 2);
    const struct req *r = last_req(f->srv, "/subscriptions/");
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->target, RID_E "/listKeys?api-version=2025-04-01");
    assert_true(has_param(last_req(f->srv, "/metadata")->target, "resource", "https%3A%2F%2Fmanagement.azure.com"));

    assert_int_equal(fetch(f, 0, 1, c, &err), 2);
    assert_string_equal(secret_data(c[0].password), "SK-secret-2");
    assert_string_equal(c[0].username, "u");
    assert_int_equal(strncmp(c[0].version, "secondary-h-", 12), 0);
    assert_string_equal(c[1].version, pv);   /* same key, same version */
    cands_clear(c, 2);
    assert_string_equal(last_req(f->srv, "/subscriptions/")->target, RID_C "/listKeys?api-version=2024-11-01");
    assert_int_equal(count_reqs(f->srv, "/metadata"), 1);

    sc.data_status = 403;
    snprintf(sc.data_body, sizeof sc.data_body, "{\"error\":{\"code\":\"AuthorizationFailed\",\"message\":\"The client "
             "'x' with object id 'y' does not have authorization to perform action\"}}");
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);
    assert_non_null(strstr(err.message, "POST providers/Microsoft.Cache/redisEnterprise/c1/databases/default/listKeys: "
                                        "403 AuthorizationFailed"));
    sc.data_status = 200;
    snprintf(sc.data_body, sizeof sc.data_body, "{\"primaryKey\":\"PK-secret-1\",\"secondaryKey\":null}");
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_null(strstr(err.message, "PK-secret"));
}


static int rotate(struct fx *f, size_t cred, const char *expected, const char *pw, char *v, struct rc_error *err) {
    return mock_rotate(f->type[0], f->state[0], &f->creds[0][cred], expected, NULL, pw, v, err);
}

/* The versions fetch() reports for credential `cred` now: [0] primary, [1] secondary. */
static void key_versions(struct fx *f, size_t cred, char v[2][RC_VERSION_MAX]) {
    struct rc_candidate c[2];
    struct rc_error err;
    assert_int_equal(fetch(f, 0, cred, c, &err), 2);
    snprintf(v[0], RC_VERSION_MAX, "%s", c[0].version);
    snprintf(v[1], RC_VERSION_MAX, "%s", c[1].version);
    cands_clear(c, 2);
}

static void test_redis_keys_rotate_regenerates_the_key_not_published(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char v[RC_VERSION_MAX], before[2][RC_VERSION_MAX], after[2][RC_VERSION_MAX];
    assert_int_equal(fx_open(f,
        "sources = ( { name = \"keys\"; type = \"azure-redis-keys\"; management_url = \"http://127.0.0.1:%PORT%\"; "
        IMDS_ID " } );\n"
        "credentials = ( { name = \"e\"; source = \"keys\"; path = \"" RID_E "\"; " REDIS " },\n"
        "                { name = \"c\"; source = \"keys\"; path = \"" RID_C "\"; " REDIS " } );\n", &err), 0);
    snprintf(sc.keys[0], sizeof sc.keys[0], "PK-first-1");
    snprintf(sc.keys[1], sizeof sc.keys[1], "SK-first-2");

    /* Managed Redis: 202, the operation polled until Succeeded, then listKeys */
    sc.lro = true;
    sc.polls_left = 1;
    key_versions(f, 0, before);
    assert_int_equal(rotate(f, 0, before[0], NULL, v, &err), 0);
    assert_string_equal(sc.regens, "S");
    key_versions(f, 0, after);
    assert_string_equal(v, after[1]);                 /* what fetch() reports next */
    assert_string_not_equal(after[1], before[1]);
    assert_string_equal(after[0], before[0]);
    assert_int_equal(count_reqs(f->srv, "/subscriptions/s1/providers/Microsoft.Cache/locations/westus/operationsStatus/op1"), 2);
    const struct req *r = last_req(f->srv, RID_E "/regenerateKey");
    assert_non_null(r);
    assert_string_equal(r->body, "{\"keyType\":\"Secondary\"}");

    /* classic: 200 at once; the published key is the secondary now: the primary goes */
    sc.lro = false;
    key_versions(f, 1, before);
    assert_int_equal(rotate(f, 1, before[1], NULL, v, &err), 0);
    assert_string_equal(sc.regens, "SP");
    key_versions(f, 1, after);
    assert_string_equal(v, after[0]);
    assert_string_equal(after[1], before[1]);
    assert_string_equal(last_req(f->srv, RID_C "/regenerateKey")->target, RID_C "/regenerateKey?api-version=2024-11-01");

    /* a published key that is neither key any more: nothing regenerated */
    assert_int_equal(rotate(f, 1, before[0], NULL, v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    assert_string_equal(sc.regens, "SP");
    /* Azure makes keys: the type has no write of a password the agent made */
    assert_null(f->type[0]->rotate_write);
    assert_int_equal(f->type[0]->caps, RC_CAP_ROTATE_OTHER_KEY);
    assert_null(strstr(f->m.log, "PK-"));
    assert_null(strstr(f->m.log, "SK-"));
}

static void test_redis_keys_rotate_failures_are_reported(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char v[RC_VERSION_MAX], ver[2][RC_VERSION_MAX];
    assert_int_equal(fx_open(f,
        "sources = ( { name = \"keys\"; type = \"azure-redis-keys\"; management_url = \"http://127.0.0.1:%PORT%\"; "
        IMDS_ID " } );\n"
        "credentials = ( { name = \"e\"; source = \"keys\"; path = \"" RID_E "\"; " REDIS " } );\n", &err), 0);
    snprintf(sc.keys[0], sizeof sc.keys[0], "PK-first-1");
    snprintf(sc.keys[1], sizeof sc.keys[1], "SK-first-2");
    sc.lro = true;
    key_versions(f, 0, ver);

    /* the operation ends Failed: transient, with Azure's message; no key changed */
    snprintf(sc.op_final, sizeof sc.op_final, "Failed");
    assert_int_equal(rotate(f, 0, ver[0], NULL, v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_TRANSIENT);
    assert_non_null(strstr(err.message, "the operation ended Failed: regeneration failed"));
    assert_string_equal(sc.regens, "");

    /* an operation URL on another origin is not followed */
    sc.op_final[0] = '\0';
    snprintf(sc.op_origin, sizeof sc.op_origin, "http://127.0.0.2:%d", f->srv->port);
    int polls = count_reqs(f->srv, "/subscriptions/s1/providers/Microsoft.Cache/locations/");
    assert_int_equal(rotate(f, 0, ver[0], NULL, v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_non_null(strstr(err.message, "not following it"));
    assert_int_equal(count_reqs(f->srv, "/subscriptions/s1/providers/Microsoft.Cache/locations/"), polls);

    /* regenerateKey refused by RBAC (listKeys allowed): auth, naming the call */
    sc.regen_status = 403;
    assert_int_equal(rotate(f, 0, ver[0], NULL, v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);
    assert_non_null(strstr(err.message, "regenerateKey (Secondary): 403 AuthorizationFailed"));
    assert_string_equal(sc.regens, "");
}

static void test_redis_keys_path_must_be_a_cache(void **st) {
    static const char *const bad[] = {
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/x",
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/redis/x/../y",
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/redis/x?api-version=1",
        "subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/redis/x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fx f = { 0 };
        struct rc_error err;
        char conf[1024];
        f.srv = ((struct fx *)*st)->srv;
        snprintf(conf, sizeof conf,
                 "sources = ( { name = \"k\"; type = \"azure-redis-keys\"; management_url = \"http://127.0.0.1:1\"; "
                 "%s } );\ncredentials = ( { name = \"c\"; source = \"k\"; path = \"%s\"; " REDIS " } );\n",
                 IMDS_ID, bad[i]);
        assert_int_equal(fx_open(&f, conf, &err), -1);
        assert_int_equal(err.cls, RC_ERR_FATAL);
        fx_close(&f);
    }
}

/* ---- the shared cache ----------------------------------------------------------------- */

struct par {
    struct fx *f;
    size_t src;
    int r;
};

static void *par_fetch(void *arg) {
    struct par *p = arg;
    struct rc_candidate c[2];
    struct rc_error err;
    p->r = fetch(p->f, p->src, 0, c, &err);
    if (p->r > 0)
        cands_clear(c, p->r);
    return NULL;
}

static void test_sources_share_one_token_per_identity_and_scope(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    assert_int_equal(fx_open(f,
        "sources = ( { name = \"kv1\"; type = \"azure-keyvault\"; vault_url = \"http://127.0.0.1:%PORT%\"; " IMDS_ID " },\n"
        "            { name = \"kv2\"; type = \"azure-keyvault\"; vault_url = \"http://127.0.0.1:%PORT%\"; " IMDS_ID " },\n"
        "            { name = \"keys\"; type = \"azure-redis-keys\"; management_url = \"http://127.0.0.1:%PORT%\"; " IMDS_ID " } );\n"
        "credentials = ( { name = \"a\"; source = \"kv1\"; path = \"s\"; " REDIS " },\n"
        "                { name = \"b\"; source = \"kv2\"; path = \"s\"; " REDIS " },\n"
        "                { name = \"c\"; source = \"keys\"; path = \"" RID_C "\"; " REDIS " } );\n", &err), 0);
    snprintf(sc.data_body, sizeof sc.data_body,
             "{\"value\":\"pw\",\"id\":\"https://v/secrets/s/latest1\",\"attributes\":{\"enabled\":true},"
             "\"primaryKey\":\"p\",\"secondaryKey\":\"s\"}");
    /* Two Key Vault sources on different workers at once: one token request. */
    struct par p[2] = { { f, 0, 0 }, { f, 1, 0 } };
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, par_fetch, &p[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(p[0].r, 2);
    assert_int_equal(p[1].r, 2);
    assert_int_equal(count_reqs(f->srv, "/metadata"), 1);
    /* Another scope is another token. */
    p[0].src = 2;
    par_fetch(&p[0]);
    assert_int_equal(p[0].r, 2);
    assert_int_equal(count_reqs(f->srv, "/metadata"), 2);
}

static void test_no_secret_in_any_log_line(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    struct rc_candidate c[2];
    assert_int_equal(fx_open(f, KV_CONF, &err), 0);
    snprintf(sc.data_body, sizeof sc.data_body,
             "{\"value\":\"pw-SECRET\",\"id\":\"https://v/secrets/s/latest1\",\"attributes\":{\"enabled\":true}}");
    assert_int_equal(fetch(f, 0, 0, c, &err), 2);
    cands_clear(c, 2);
    sc.unauthorized_left = 2;
    assert_int_equal(fetch(f, 0, 0, c, &err), -1);
    assert_null(strstr(f->m.log, "pw-SECRET"));
    assert_null(strstr(f->m.log, "older-pw"));
    assert_null(strstr(f->m.log, "eyJ"));
    assert_null(strstr(err.message, "eyJ"));
}

/* D3: jansson's error text quotes the bytes near the error. A malformed token answer or
 * SecretBundle (outer, or the JSON inside its value) leaves no piece of the secret in the
 * message or in the dead stack below the caller. */
static void test_malformed_answers_leave_no_secret_fragment_in_message_or_stack(void **st) {
    struct az_token t = { 0 };
    struct rc_candidate c = { 0 };
    struct rc_error err = { 0 };
    int64_t iat;
    const char *tok = "{\"access_token\":\"eyJT0kFr4gment\x01\",\"expires_in\":\"3599\"}";
    assert_int_equal(az_token_parse(tok, strlen(tok), 1800000000, &t, &iat, &err), -1);
    assert_no_residue("eyJT0kFr4gment", &err);
    const char *outer = "{\"value\":\"Kv0uterFr4g\x01\",\"id\":\"https://v/secrets/s/0123abcd\"}";
    assert_int_equal(az_keyvault_parse_bundle(outer, strlen(outer), AZ_KV_PASSWORD, NULL, "GET secrets/s", &c,
                                              &err), -1);
    assert_no_residue("Kv0uterFr4g", &err);
    const char *inner = "{\"value\":\"{\\\"password\\\":\\\"KvInnerFr4g\\u0001\\\"}\","
                        "\"id\":\"https://v/secrets/s/0123abcd\",\"attributes\":{\"enabled\":true}}";
    assert_int_equal(az_keyvault_parse_bundle(inner, strlen(inner), AZ_KV_JSON, NULL, "GET secrets/s", &c,
                                              &err), -1);
    assert_no_residue("KvInnerFr4g", &err);
    json_t *root = NULL;
    const char *keys = "{\"primaryKey\":\"PrimKeyFr4g\x01\",\"secondaryKey\":\"x\"}";
    assert_int_equal(az_redis_keys_parse_list(keys, strlen(keys), "POST listKeys", &root, &err), -1);
    assert_no_residue("PrimKeyFr4g", &err);
}

int main(void) {
    secret_init(0);
    http_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plugin_serves_the_three_types),
        cmocka_unit_test(test_refresh_point_is_ratio_or_margin_whichever_first),
        cmocka_unit_test(test_unchanged_token_gaps_grow_from_30s),
        cmocka_unit_test(test_token_parse_reads_imds_strings_and_v2_integers),
        cmocka_unit_test(test_token_parse_refuses_unusable_answers),
        cmocka_unit_test(test_malformed_answers_leave_no_secret_fragment_in_message_or_stack),
        cmocka_unit_test(test_urlencode_escapes_all_but_unreserved),
        cmocka_unit_test_setup_teardown(test_entra_candidate_is_oid_token_and_exp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entra_object_id_from_config_is_the_username, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entra_asks_only_at_the_refresh_point, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entra_unchanged_token_is_no_change_and_backs_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entra_deadline_follows_a_wall_clock_jump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entra_failed_refresh_says_how_long_the_token_lasts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entra_refuses_a_bad_refresh_ratio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_imds_errors_map_to_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_app_service_endpoint_from_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configured_imds_url_wins_over_app_service_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_app_service_endpoint_off_loopback_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workload_identity_posts_the_federated_token_from_the_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_secret_from_credentials_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_configuration_errors_are_fatal, setup, teardown),
        cmocka_unit_test(test_arc_realm_must_name_a_key_file_in_the_token_directory),
        cmocka_unit_test(test_arc_key_file_must_be_a_small_regular_file),
        cmocka_unit_test_setup_teardown(test_arc_answers_the_challenge_with_the_key_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arc_refusals_are_auth_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arc_configuration_errors_are_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyvault_latest_version_and_startup_hint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyvault_does_not_follow_a_foreign_next_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyvault_json_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyvault_errors_map_to_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyvault_401_logs_in_again_once_then_is_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyvault_configuration_errors_are_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_keys_both_keys_preferred_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_keys_path_must_be_a_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_keys_rotate_regenerates_the_key_not_published, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_keys_rotate_failures_are_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sources_share_one_token_per_identity_and_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_secret_in_any_log_line, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
