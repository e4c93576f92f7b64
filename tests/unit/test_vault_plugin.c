/* Unit tests of the vault source plugin through the mock host, against the fake Vault
 * (tests/fakes/vault_fake.py, run by Debian's python3 as a child on a free port; its
 * controls are called over HTTP: POST /_fake/<method>). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "credfile.h"
#include "rctime.h"
#include "http.h"
#include "mock_host.h"

extern const struct rc_plugin redis_creds_plugin;

#define PYTHON "/usr/bin/python3"
#define ROOT_TOKEN "root-test-token-6d1f"

struct fx {
    pid_t pid;
    int to_child;                /* the fake's stdin: closing it stops the fake */
    int port;
    char url[64];
    struct http_client *admin;
    char dir[256];
    char token_file[300];
    struct mock_host m;
    bool host_up;
    void *state;
    struct rc_credential *creds;
    size_t n;
};

/* RC_TEST_SOURCE_DIR is tests/ (tests/CMakeLists.txt); __FILE__ is not a path a build
 * can count on (Debian's builds map it with -ffile-prefix-map). */
static const char *fake_path(void) {
    return RC_TEST_SOURCE_DIR "/fakes/vault_fake.py";
}

static void write_file(const char *path, const char *content, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    chmod(path, mode);
}

static void fake_start(struct fx *f, const char *tick) {
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl(PYTHON, PYTHON, fake_path(), "--exit-on-stdin-eof", "--root-token", ROOT_TOKEN, "--tick", tick,
              (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    f->to_child = in[1];
    char buf[128] = "";
    size_t got = 0;
    struct pollfd p = { .fd = out[0], .events = POLLIN };
    while (!strchr(buf, '\n') && got < sizeof buf - 1 && poll(&p, 1, 10000) == 1) {
        ssize_t n = read(out[0], buf + got, sizeof buf - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
    }
    close(out[0]);
    assert_int_equal(sscanf(buf, "PORT %d", &f->port), 1);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", f->port);
    char err[256];
    assert_int_equal(http_client_new(f->url, NULL, 5000000, &f->admin, err, sizeof err), 0);
}

static void fake_stop(struct fx *f) {
    f->admin = http_client_free(f->admin);
    if (f->pid > 0) {
        close(f->to_child);
        kill(f->pid, SIGTERM);
        waitpid(f->pid, NULL, 0);
        f->pid = 0;
    }
}

/* Calls a FakeVault method with keyword arguments (JSON text, printf-style). */
static json_t *fake_call(struct fx *f, const char *method, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static json_t *fake_call(struct fx *f, const char *method, const char *fmt, ...) {
    char body[4096], url[256], err[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    snprintf(url, sizeof url, "_fake/%s", method);
    struct http_request req = { .method = "POST", .url = url, .body = body, .body_len = strlen(body) };
    struct http_response resp;
    int r = http_request(f->admin, &req, &resp, err, sizeof err);
    assert_int_equal(r, 0);
    if (resp.status != 200)
        fprintf(stderr, "fake %s: %ld %s\n", method, resp.status, resp.body);
    assert_int_equal(resp.status, 200);
    json_t *root = json_loadb(resp.body, resp.body_len, 0, NULL);
    http_response_clear(&resp);
    assert_non_null(root);
    json_t *res = json_incref(json_object_get(root, "result"));
    json_decref(root);
    return res;
}

static long fake_count(struct fx *f, const char *path_regex) {
    json_t *r = fake_call(f, "count", "{\"path\": \"%s\"}", path_regex);
    long n = (long)json_integer_value(r);
    json_decref(r);
    return n;
}

static void fake_do(struct fx *f, const char *method, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fake_do(struct fx *f, const char *method, const char *fmt, ...) {
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    json_decref(fake_call(f, method, "%s", body));
}

static int setup_tick(void **st, const char *tick) {
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("REDIS_CREDS_TEST_TMP");
    snprintf(f->dir, sizeof f->dir, "%s/vaultpl-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->token_file, sizeof f->token_file, "%s/token", f->dir);
    write_file(f->token_file, ROOT_TOKEN "\n", 0600);
    fake_start(f, tick);
    *st = f;
    return 0;
}

static int setup(void **st) {
    return setup_tick(st, "5");
}

static int setup_fast_tick(void **st) {
    return setup_tick(st, "0.2");
}

static void close_source(struct fx *f) {
    if (f->state)
        redis_creds_plugin.types[0].close(f->state);
    f->state = NULL;
    free(f->creds);
    f->creds = NULL;
    if (f->host_up)
        mock_host_fini(&f->m);
    f->host_up = false;
}

static int teardown(void **st) {
    struct fx *f = *st;
    char cmd[600];
    close_source(f);
    fake_stop(f);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Opens the vault source with `auth` (a libconfig group body) and credentials (libconfig
 * group bodies, each without redis = ...). Returns open()'s result. */
static int open_source(struct fx *f, const char *source_extra, const char *auth, const char *const *creds,
                       struct rc_error *err) {
    char conf[8192];
    size_t len = (size_t)snprintf(conf, sizeof conf,
                                  "sources = ( { name = \"v\"; type = \"vault\"; address = \"%s\"; %s %s\n"
                                  "  auth = { %s }; } );\ncredentials = (\n",
                                  f->url, source_extra && strstr(source_extra, "timeout") ? "" : "timeout = \"2s\";",
                                  source_extra ? source_extra : "", auth);
    for (size_t i = 0; creds[i]; i++)
        len += (size_t)snprintf(conf + len, sizeof conf - len, "  { %s redis = { endpoints = [ \"127.0.0.1:6379\" ]; }; }%s\n",
                                creds[i], creds[i + 1] ? "," : "");
    snprintf(conf + len, sizeof conf - len, ");\n");
    assert_int_equal(mock_host_init(&f->m, &redis_creds_plugin, conf), 0);
    f->host_up = true;
    f->creds = mock_host_credentials(&f->m, 0, &f->n);
    memset(err, 0, sizeof *err);
    return redis_creds_plugin.types[0].open(&f->m.host, mock_host_source(&f->m, 0), f->creds, f->n, &f->state, err);
}

static char token_auth[400];

static const char *tok_auth(struct fx *f) {
    snprintf(token_auth, sizeof token_auth, "method = \"token\"; token_file = \"%s\";", f->token_file);
    return token_auth;
}

static int fetch(struct fx *f, size_t i, struct rc_candidate cs[RC_MAX_CANDIDATES], struct rc_error *err) {
    memset(cs, 0, sizeof(struct rc_candidate) * RC_MAX_CANDIDATES);
    cs[0].expires_at = cs[1].expires_at = INT64_MIN;
    memset(err, 0, sizeof *err);
    return redis_creds_plugin.types[0].fetch(f->state, &f->creds[i], cs, err);
}

static void cands_free(struct rc_candidate *cs, int n) {
    for (int i = 0; i < n; i++) {
        free(cs[i].username);
        secret_free(cs[i].password);
    }
}

static const char *const CACHE_KV2[] = { "name = \"cache\"; source = \"v\"; path = \"secret/redis/cache\";", NULL };

/* ---- tests ------------------------------------------------------------------------------ */

static void test_plugin_abi_and_schema(void **st) {
    assert_int_equal(redis_creds_plugin.abi_version, RC_PLUGIN_ABI_VERSION);
    assert_string_equal(redis_creds_plugin.name, "vault");
    const struct rc_source_type *t = &redis_creds_plugin.types[0];
    assert_string_equal(t->type, "vault");
    assert_non_null(t->next_check);
    const char *want[] = { "address", "namespace", "ca_file", "ca_path", "cert_file", "key_file", "server_name",
                           "tls_insecure_skip_verify", "timeout", "auth" };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        bool found = false;
        for (const struct rc_config_key *k = t->source_keys; k->name; k++)
            found |= strcmp(k->name, want[i]) == 0;
        assert_true(found);
    }
    redis_creds_plugin.types[0].close(NULL);
}

static void test_kv2_token_auth_reads_version_and_checks_metadata_only_when_unchanged(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"username\":\"app\",\"password\":\"p1\"}}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), CACHE_KV2, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    assert_string_equal(cs[0].version, "1");
    assert_string_equal(cs[0].username, "app");
    assert_string_equal(secret_data(cs[0].password), "p1");
    assert_int_equal(cs[0].role, RC_CAND_CURRENT);
    cands_free(cs, n);

    fake_do(f, "reset_counts", "{}");
    for (int i = 0; i < 5; i++) {
        n = fetch(f, 0, cs, &err);
        assert_int_equal(n, 1);
        assert_string_equal(cs[0].version, "1");
        assert_string_equal(secret_data(cs[0].password), "p1");
        cands_free(cs, n);
    }
    /* One metadata request per look, no data read, one connection kept alive. */
    assert_int_equal(fake_count(f, "/v1/secret/metadata/redis/cache"), 5);
    assert_int_equal(fake_count(f, "/v1/secret/data/"), 0);
    assert_int_equal(fake_count(f, "."), 5);
    json_t *stats = fake_call(f, "stats", "{}");
    assert_int_equal(json_integer_value(json_object_get(stats, "connections")), 0);
    json_decref(stats);

    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"username\":\"app\",\"password\":\"p2\"}}");
    n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);   /* no start-up hint after the first read */
    assert_string_equal(cs[0].version, "2");
    assert_string_equal(secret_data(cs[0].password), "p2");
    cands_free(cs, n);
    /* A root token has no TTL: the next look wanted is one poll_interval away (30 s by
     * default), asked for so that it happens on time. */
    uint64_t next = redis_creds_plugin.types[0].next_check(f->state, &f->creds[0]);
    assert_true(next > 29 * 1000000ULL && next <= 30 * 1000000ULL);
}

static void test_kv2_start_up_hint_skips_deleted_and_destroyed_versions(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    for (int i = 1; i <= 4; i++)
        fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"username\":\"app\",\"password\":\"p%d\"}}", i);
    fake_do(f, "kv2_delete", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"versions\":[3]}");
    fake_do(f, "kv2_destroy", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"versions\":[2]}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), CACHE_KV2, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 2);
    assert_string_equal(cs[0].version, "4");
    assert_int_equal(cs[1].role, RC_CAND_HINT);
    assert_string_equal(cs[1].version, "1");
    assert_string_equal(secret_data(cs[1].password), "p1");
    cands_free(cs, n);
    /* While the version stays, the same hint comes along (the host may retry validation). */
    n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 2);
    cands_free(cs, n);
}

static void test_kv2_metadata_denied_falls_back_to_data_reads_and_says_so_once(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"username\":\"app\",\"password\":\"p1\"}}");
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"username\":\"app\",\"password\":\"p2\"}}");
    fake_do(f, "policy", "{\"name\":\"data-only\",\"rules\":{\"secret/data/redis/*\":[\"read\"]}}");
    json_t *tok = fake_call(f, "token_create", "{\"policies\":[\"data-only\"]}");
    char tf[400];
    snprintf(tf, sizeof tf, "%s/t2", f->dir);
    write_file(tf, json_string_value(tok), 0600);
    json_decref(tok);
    char auth[600];
    snprintf(auth, sizeof auth, "method = \"token\"; token_file = \"%s\";", tf);
    assert_int_equal(open_source(f, NULL, auth, CACHE_KV2, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 2);   /* the hint came by probing data/?version=1 */
    assert_string_equal(cs[0].version, "2");
    assert_string_equal(cs[1].version, "1");
    cands_free(cs, n);
    assert_non_null(strstr(f->m.log, "reading secret/data/redis/cache at every check"));
    fake_do(f, "reset_counts", "{}");
    for (int i = 0; i < 3; i++) {
        n = fetch(f, 0, cs, &err);
        assert_true(n >= 1);
        cands_free(cs, n);
    }
    assert_int_equal(fake_count(f, "/v1/secret/metadata/"), 0);
    assert_int_equal(fake_count(f, "/v1/secret/data/redis/cache"), 3);
    const char *first = strstr(f->m.log, "at every check");
    assert_null(strstr(first + 1, "at every check"));
}

static void test_missing_field_and_gone_versions_are_classified(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    static const char *const creds[] = {
        "name = \"a\"; source = \"v\"; path = \"secret/redis/a\"; password_field = \"pw\";",
        "name = \"b\"; source = \"v\"; path = \"secret/redis/b\";",
        "name = \"c\"; source = \"v\"; path = \"secret/redis/c\";",
        "name = \"d\"; source = \"v\"; path = \"secret/redis/none\";",
        "name = \"e\"; source = \"v\"; path = \"nomount/redis/e\";",
        NULL };
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/a\",\"data\":{\"password\":\"p\"}}");
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/b\",\"data\":{\"password\":\"p\"}}");
    fake_do(f, "kv2_delete", "{\"mount\":\"secret\",\"path\":\"redis/b\"}");
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/c\",\"data\":{\"password\":\"p\"}}");
    fake_do(f, "kv2_destroy", "{\"mount\":\"secret\",\"path\":\"redis/c\",\"versions\":[1]}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), creds, &err), 0);
    assert_int_equal(fetch(f, 0, cs, &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "\"pw\""));
    assert_int_equal(fetch(f, 1, cs, &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "deleted"));
    assert_int_equal(fetch(f, 2, cs, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_non_null(strstr(err.message, "destroyed"));
    assert_int_equal(fetch(f, 3, cs, &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "GET secret/metadata/redis/none: 404"));
    assert_int_equal(fetch(f, 4, cs, &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "no handler for route"));
}

static void test_kv1_version_is_a_keyed_hash(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    static const char *const creds[] = { "name = \"k\"; source = \"v\"; path = \"kv/redis\"; engine = \"kv1\";", NULL };
    fake_do(f, "kv1_enable", "{\"mount\":\"kv\"}");
    fake_do(f, "kv1_put", "{\"mount\":\"kv\",\"path\":\"redis\",\"data\":{\"username\":\"app\",\"password\":\"p1\"}}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), creds, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    char v1[RC_VERSION_MAX];
    snprintf(v1, sizeof v1, "%s", cs[0].version);
    assert_int_equal(strncmp(v1, "h-", 2), 0);
    assert_int_equal(strlen(v1), 18);
    cands_free(cs, n);
    n = fetch(f, 0, cs, &err);
    assert_string_equal(cs[0].version, v1);
    cands_free(cs, n);
    fake_do(f, "kv1_put", "{\"mount\":\"kv\",\"path\":\"redis\",\"data\":{\"username\":\"app\",\"password\":\"p2\"}}");
    n = fetch(f, 0, cs, &err);
    assert_string_not_equal(cs[0].version, v1);
    cands_free(cs, n);
}

static void test_static_role_version_and_next_check_follow_ttl(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    static const char *const creds[] = { "name = \"s\"; source = \"v\"; path = \"database/static-creds/app\"; engine = \"database\";", NULL };
    fake_do(f, "database_enable", "{}");
    fake_do(f, "static_role", "{\"mount\":\"database\",\"name\":\"app\",\"username\":\"app\",\"rotation_period\":60}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), creds, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    assert_string_equal(cs[0].username, "app");
    assert_true(strlen(cs[0].version) > 19 && cs[0].version[4] == '-' && cs[0].version[10] == 'T');
    /* Each version of a static role is a rotation: dated by last_vault_rotation. */
    int64_t t = 0;
    char whole[32];
    snprintf(whole, sizeof whole, "%.19sZ", cs[0].version);
    assert_int_equal(rctime_parse(whole, &t), 0);
    assert_true(cs[0].rotated_at == t);
    cands_free(cs, n);
    uint64_t next = redis_creds_plugin.types[0].next_check(f->state, &f->creds[0]);
    assert_true(next > 55 * 1000000ULL && next <= 60 * 1000000ULL);
    /* Unknown role: 400 from Vault, a configuration error. */
    close_source(f);
    static const char *const bad[] = { "name = \"s\"; source = \"v\"; path = \"database/static-creds/nope\"; engine = \"database\";", NULL };
    assert_int_equal(open_source(f, NULL, tok_auth(f), bad, &err), 0);
    assert_int_equal(fetch(f, 0, cs, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "unknown role: nope"));
}

static void test_static_role_rotation_is_seen_within_a_poll_of_vaults_queue(void **st) {
    struct fx *f = *st;   /* tick 0.2 s */
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    static const char *const creds[] = { "name = \"s\"; source = \"v\"; path = \"database/static-creds/app\"; engine = \"database\";", NULL };
    fake_do(f, "database_enable", "{}");
    fake_do(f, "static_role", "{\"mount\":\"database\",\"name\":\"app\",\"username\":\"app\",\"rotation_period\":5}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), creds, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    char v1[RC_VERSION_MAX];
    snprintf(v1, sizeof v1, "%s", cs[0].version);
    cands_free(cs, n);
    /* Follow next_check like the host does, until the version changes. */
    for (int i = 0; i < 40; i++) {
        uint64_t next = redis_creds_plugin.types[0].next_check(f->state, &f->creds[0]);
        assert_true(next > 0 && next <= 5 * 1000000ULL);
        struct timespec ts = { .tv_sec = (time_t)(next / 1000000), .tv_nsec = (long)(next % 1000000) * 1000 };
        nanosleep(&ts, NULL);
        n = fetch(f, 0, cs, &err);
        assert_int_equal(n, 1);
        bool changed = strcmp(cs[0].version, v1) != 0;
        cands_free(cs, n);
        if (changed) {
            assert_true(fake_count(f, "static-creds") <= 12);
            return;
        }
    }
    fail_msg("the rotation was not seen");
}

static void test_approle_login_and_relogin_once_on_invalid_token(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    char rid[400], sid[400], auth[1200];
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"username\":\"app\",\"password\":\"p1\"}}");
    fake_do(f, "policy", "{\"name\":\"r\",\"rules\":{\"secret/data/*\":[\"read\"],\"secret/metadata/*\":[\"read\"]}}");
    fake_do(f, "approle_enable", "{}");
    json_t *role_id = fake_call(f, "approle_role", "{\"name\":\"rc\",\"policies\":[\"r\"],\"token_ttl\":600}");
    json_t *secret_id = fake_call(f, "approle_secret_id", "{\"role\":\"rc\"}");
    snprintf(rid, sizeof rid, "%s/role-id", f->dir);
    snprintf(sid, sizeof sid, "%s/secret-id", f->dir);
    write_file(rid, json_string_value(role_id), 0600);
    write_file(sid, json_string_value(secret_id), 0600);
    snprintf(auth, sizeof auth, "method = \"approle\"; role_id_file = \"%s\"; secret_id_file = \"%s\";", rid, sid);
    static const char *const creds[] = { "name = \"cache\"; source = \"v\"; path = \"secret/redis/cache\"; "
                                         "poll_interval = \"10m\";", NULL };
    assert_int_equal(open_source(f, NULL, auth, creds, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    cands_free(cs, n);
    assert_int_equal(fake_count(f, "/v1/auth/approle/login"), 1);
    /* The token's renewal point (about 2/3 of 600 s) comes before poll_interval (10 min). */
    uint64_t next = redis_creds_plugin.types[0].next_check(f->state, &f->creds[0]);
    assert_true(next > 340 * 1000000ULL && next <= 400 * 1000000ULL);

    fake_do(f, "expire_tokens", "{\"path_prefix\":\"auth/approle\"}");
    n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    cands_free(cs, n);
    assert_int_equal(fake_count(f, "/v1/auth/approle/login"), 2);

    /* A secret id Vault no longer accepts: log in fails once, then AUTH. */
    write_file(sid, "not-a-secret-id-0123", 0600);
    fake_do(f, "expire_tokens", "{\"path_prefix\":\"auth/approle\"}");
    assert_int_equal(fetch(f, 0, cs, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);
    assert_non_null(strstr(err.message, "invalid role or secret ID"));
    assert_null(strstr(err.message, "not-a-secret-id"));
    assert_null(strstr(f->m.log, "not-a-secret-id"));
    assert_null(strstr(f->m.log, json_string_value(secret_id)));
    json_decref(role_id);
    json_decref(secret_id);
}

static void test_policy_denial_with_valid_token_is_auth_without_login_storm(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    char rid[400], sid[400], auth[1200];
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"password\":\"p1\"}}");
    fake_do(f, "approle_enable", "{}");
    json_t *role_id = fake_call(f, "approle_role", "{\"name\":\"rc\",\"policies\":[],\"token_ttl\":600}");
    json_t *secret_id = fake_call(f, "approle_secret_id", "{\"role\":\"rc\"}");
    snprintf(rid, sizeof rid, "%s/role-id", f->dir);
    snprintf(sid, sizeof sid, "%s/secret-id", f->dir);
    write_file(rid, json_string_value(role_id), 0600);
    write_file(sid, json_string_value(secret_id), 0600);
    json_decref(role_id);
    json_decref(secret_id);
    snprintf(auth, sizeof auth, "method = \"approle\"; role_id_file = \"%s\"; secret_id_file = \"%s\";", rid, sid);
    assert_int_equal(open_source(f, NULL, auth, CACHE_KV2, &err), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fetch(f, 0, cs, &err), -1);
        assert_int_equal(err.cls, RC_ERR_AUTH);
        assert_non_null(strstr(err.message, "GET secret/data/redis/cache: 403 permission denied"));
        assert_non_null(strstr(err.message, "policy"));
    }
    assert_int_equal(fake_count(f, "/v1/auth/approle/login"), 1);
}

static void test_token_renewal_and_relogin_at_max_ttl(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    char rid[400], sid[400], auth[1200];
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"password\":\"p1\"}}");
    fake_do(f, "policy", "{\"name\":\"r\",\"rules\":{\"secret/*\":[\"read\"]}}");
    fake_do(f, "approle_enable", "{}");
    json_t *role_id = fake_call(f, "approle_role", "{\"name\":\"rc\",\"policies\":[\"r\"],\"token_ttl\":2,\"token_max_ttl\":3}");
    json_t *secret_id = fake_call(f, "approle_secret_id", "{\"role\":\"rc\"}");
    snprintf(rid, sizeof rid, "%s/role-id", f->dir);
    snprintf(sid, sizeof sid, "%s/secret-id", f->dir);
    write_file(rid, json_string_value(role_id), 0600);
    write_file(sid, json_string_value(secret_id), 0600);
    json_decref(role_id);
    json_decref(secret_id);
    snprintf(auth, sizeof auth, "method = \"approle\"; role_id_file = \"%s\"; secret_id_file = \"%s\";", rid, sid);
    assert_int_equal(open_source(f, NULL, auth, CACHE_KV2, &err), 0);
    int logins = 0, renewals = 0;
    for (int i = 0; i < 5; i++) {
        int n = fetch(f, 0, cs, &err);
        if (n < 0)
            fail_msg("fetch %d: %s", i, err.message);
        cands_free(cs, n);
        uint64_t next = redis_creds_plugin.types[0].next_check(f->state, &f->creds[0]);
        assert_true(next > 0 && next <= 2 * 1000000ULL);
        struct timespec ts = { .tv_sec = (time_t)(next / 1000000), .tv_nsec = (long)(next % 1000000) * 1000 };
        nanosleep(&ts, NULL);
    }
    logins = (int)fake_count(f, "/v1/auth/approle/login");
    renewals = (int)fake_count(f, "/v1/auth/token/renew-self");
    /* A 2 s TTL capped at 3 s: a renewal, then a fresh login at the cap, and so on. */
    assert_true(renewals >= 1);
    assert_true(logins >= 2);
    assert_non_null(strstr(f->m.log, "max TTL"));
    /* Every fetch succeeded: no token ever ran out under a request. */
}

static void test_error_injection_maps_to_classes(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"password\":\"p1\"}}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), CACHE_KV2, &err), 0);
    static const struct {
        const char *inject;
        enum rc_err_class cls;
        const char *text;
    } cases[] = {
        { "{\"path\":\"metadata\",\"kind\":\"429\",\"times\":1,\"retry_after\":7}", RC_ERR_TRANSIENT, "429 request path" },
        { "{\"path\":\"metadata\",\"kind\":\"503\",\"times\":1}", RC_ERR_TRANSIENT, "503 Vault is sealed" },
        { "{\"path\":\"metadata\",\"kind\":\"500\",\"times\":1}", RC_ERR_TRANSIENT, "500 internal error" },
        { "{\"path\":\"metadata\",\"kind\":\"412\",\"times\":1}", RC_ERR_TRANSIENT, "412" },
        { "{\"path\":\"metadata\",\"kind\":\"404\",\"times\":1}", RC_ERR_NOT_FOUND, "404" },
        { "{\"path\":\"metadata\",\"kind\":\"status\",\"status\":400,\"errors\":[\"bad thing\"],\"times\":1}", RC_ERR_FATAL, "400 bad thing" },
        { "{\"path\":\"metadata\",\"kind\":\"malformed\",\"times\":1}", RC_ERR_INVALID, "malformed JSON" },
        { "{\"path\":\"metadata\",\"kind\":\"truncated\",\"times\":1}", RC_ERR_INVALID, "malformed JSON" },
        { "{\"path\":\"metadata\",\"kind\":\"wrong_shape\",\"times\":1}", RC_ERR_INVALID, "\"data\"" },
        { "{\"path\":\"metadata\",\"kind\":\"oversized\",\"times\":1,\"chunked\":true}", RC_ERR_INVALID, "larger than" },
        { "{\"path\":\"metadata\",\"kind\":\"oversized\",\"times\":1,\"chunked\":false}", RC_ERR_INVALID, "larger than" },
        { "{\"path\":\"metadata\",\"kind\":\"cut\",\"times\":1}", RC_ERR_TRANSIENT, "GET" },
        /* curl retries a GET once on a reused connection that closed: close twice */
        { "{\"path\":\"metadata\",\"kind\":\"close\",\"times\":2}", RC_ERR_TRANSIENT, "GET" },
        { "{\"path\":\"metadata\",\"kind\":\"delay\",\"seconds\":3,\"times\":1}", RC_ERR_TRANSIENT, "imeout" },
        { "{\"path\":\"metadata\",\"kind\":\"redirect\",\"location\":\"http://127.0.0.1:1/v1/x\",\"times\":1}", RC_ERR_TRANSIENT, "307 from a standby: not following a redirect to http (only https" },
        { "{\"path\":\"metadata\",\"kind\":\"redirect\",\"location\":\"https://vault.evil.example/v1/x\",\"times\":1}", RC_ERR_TRANSIENT, "another host" },
        { "{\"path\":\"metadata\",\"kind\":\"redirect\",\"location\":\"/v1/secret/metadata/redis/cache\",\"times\":4}", RC_ERR_TRANSIENT, "more than 3 redirects" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_do(f, "inject", "%s", cases[i].inject);
        if (fetch(f, 0, cs, &err) != -1)
            fail_msg("case %zu (%s): fetch succeeded", i, cases[i].inject);
        if (err.cls != cases[i].cls || !strstr(err.message, cases[i].text))
            fail_msg("case %zu (%s): %s: %s", i, cases[i].inject, rc_err_class_to_string(err.cls), err.message);
        if (i == 0)
            assert_int_equal(err.retry_after_usec, 7 * 1000000ULL);
        fake_do(f, "clear_injections", "{}");
        /* And the next look works again. */
        int n = fetch(f, 0, cs, &err);
        if (n != 1)
            fail_msg("after case %zu: %s", i, err.message);
        cands_free(cs, n);
    }
    /* A relative 307 (a standby on the same address) is followed. */
    fake_do(f, "inject", "{\"path\":\"metadata\",\"kind\":\"redirect\",\"location\":\"/v1/secret/metadata/redis/cache\",\"times\":2}");
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    cands_free(cs, n);
}

static void test_server_text_echoing_the_token_is_scrubbed(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    assert_int_equal(open_source(f, NULL, tok_auth(f), CACHE_KV2, &err), 0);
    fake_do(f, "inject", "{\"path\":\"metadata\",\"kind\":\"status\",\"status\":500,\"errors\":[\"bad token " ROOT_TOKEN "\"]}");
    assert_int_equal(fetch(f, 0, cs, &err), -1);
    assert_null(strstr(err.message, ROOT_TOKEN));
    assert_non_null(strstr(err.message, "bad token ***"));
}

static void test_namespace_header_is_sent(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    fake_do(f, "namespace_create", "{\"ns\":\"team-a\"}");
    fake_do(f, "kv2_enable", "{\"mount\":\"kv\",\"namespace\":\"team-a\"}");
    fake_do(f, "kv2_put", "{\"mount\":\"kv\",\"path\":\"redis\",\"data\":{\"password\":\"nsp\"},\"namespace\":\"team-a\"}");
    static const char *const creds[] = { "name = \"n\"; source = \"v\"; path = \"kv/redis\";", NULL };
    assert_int_equal(open_source(f, "namespace = \"team-a\";", tok_auth(f), creds, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    assert_string_equal(secret_data(cs[0].password), "nsp");
    assert_null(cs[0].username);
    cands_free(cs, n);
}

static void test_token_from_credentials_directory(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    char p[400];
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"password\":\"p\"}}");
    snprintf(p, sizeof p, "%s/test.token", f->dir);   /* <source name>.token; the mock host's instance is "test" */
    write_file(p, ROOT_TOKEN, 0600);
    setenv("CREDENTIALS_DIRECTORY", f->dir, 1);
    assert_int_equal(open_source(f, NULL, "method = \"token\";", CACHE_KV2, &err), 0);
    int n = fetch(f, 0, cs, &err);
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_int_equal(n, 1);
    cands_free(cs, n);
    /* A token file others can read is refused, with a message that says so. */
    close_source(f);
    chmod(f->token_file, 0644);
    assert_int_equal(open_source(f, NULL, tok_auth(f), CACHE_KV2, &err), 0);
    assert_int_equal(fetch(f, 0, cs, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);
    assert_non_null(strstr(err.message, "group or others"));
}

static void test_config_errors_are_fatal_at_open(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    static const struct {
        const char *source_extra, *auth, *cred, *text;
    } cases[] = {
        { NULL, "method = \"ldap\";", "path = \"secret/x\";", "auth.method" },
        { NULL, "method = \"token\"; role_id_file = \"/x\";", "path = \"secret/x\";", "does not apply" },
        { NULL, "method = \"kubernetes\";", "path = \"secret/x\";", "auth.role is required" },
        { NULL, "method = \"token\";", "path = \"secret/x\"; engine = \"kv3\";", "engine" },
        { NULL, "method = \"token\";", "path = \"database/creds/x\"; engine = \"database\";", "static-creds" },
        { NULL, "method = \"token\";", "path = \"secret\";", "needs a mount" },
        { NULL, "method = \"token\";", "path = \"secret/../x\";", "segment" },
        { "timeout = \"0s\";", "method = \"token\";", "path = \"secret/x\";", "timeout" },
        { "key_file = \"/k\";", "method = \"token\";", "path = \"secret/x\";", "key_file" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cred[300];
        snprintf(cred, sizeof cred, "name = \"c\"; source = \"v\"; %s", cases[i].cred);
        const char *creds[] = { cred, NULL };
        int r = open_source(f, cases[i].source_extra, cases[i].auth, creds, &err);
        if (r != -1 || err.cls != RC_ERR_FATAL || !strstr(err.message, cases[i].text))
            fail_msg("case %zu: %d %s", i, r, err.message);
        assert_null(f->state);
        close_source(f);
    }
}

static void test_plain_http_only_to_loopback_and_insecure_warns(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char saved[64];
    snprintf(saved, sizeof saved, "%s", f->url);
    snprintf(f->url, sizeof f->url, "http://vault.example.com:8200");
    assert_int_equal(open_source(f, NULL, tok_auth(f), CACHE_KV2, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "plain http"));
    close_source(f);
    snprintf(f->url, sizeof f->url, "https://vault.example.com:8200");
    assert_int_equal(open_source(f, "tls_insecure_skip_verify = true;", tok_auth(f), CACHE_KV2, &err), 0);
    assert_non_null(strstr(f->m.log, "tls_insecure_skip_verify is on"));
    snprintf(f->url, sizeof f->url, "%s", saved);
}


static int rotate(struct fx *f, size_t i, const char *expected, const char *user, const char *pw,
                  char *ret_version, struct rc_error *err) {
    return mock_rotate(&redis_creds_plugin.types[0], f->state, &f->creds[i], expected, user, pw,
                       ret_version, err);
}

static void test_kv2_rotate_writes_with_check_and_set(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    char v[RC_VERSION_MAX];
    /* cas_required on the mount: a write without options.cas would be refused */
    fake_do(f, "kv2_enable", "{\"mount\":\"secret\",\"cas_required\":true}");
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"cas\":0,"
            "\"data\":{\"username\":\"app\",\"password\":\"p1\"}}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), CACHE_KV2, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    cands_free(cs, n);

    assert_int_equal(rotate(f, 0, "1", "app", "rotated-pw-2", v, &err), 0);
    assert_string_equal(v, "2");
    n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    assert_string_equal(cs[0].version, "2");   /* what fetch() reports is what rotate() said */
    assert_string_equal(cs[0].username, "app");
    assert_string_equal(secret_data(cs[0].password), "rotated-pw-2");
    cands_free(cs, n);

    /* a writer that still expects version 1 loses, and nothing is written */
    assert_int_equal(rotate(f, 0, "1", "app", "loser-pw", v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    assert_non_null(strstr(err.message, "check-and-set parameter did not match the current version"));
    assert_null(strstr(err.message, "loser-pw"));
    json_t *cur = fake_call(f, "kv2_current_version", "{\"mount\":\"secret\",\"path\":\"redis/cache\"}");
    assert_int_equal(json_integer_value(cur), 2);
    json_decref(cur);
    /* a version that is not this secret's (published from elsewhere) cannot be a cas */
    assert_int_equal(rotate(f, 0, "h-0123456789abcdef", "app", "x-pw-xxxxxxxxxxxx", v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
}

static void test_rotation_needs_kv2_and_says_so_at_open(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    static const char *const kv1[] = { "name = \"cache\"; source = \"v\"; path = \"kv/redis\"; engine = "
                                       "\"kv1\"; rotation = { strategy = \"redis-acl\"; };", NULL };
    assert_int_equal(open_source(f, NULL, tok_auth(f), kv1, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "rotation needs engine = \"kv2\""));
}


#define DB_ROTATING "name = \"s\"; source = \"v\"; path = \"database/static-creds/app\"; engine = " \
                    "\"database\"; rotation = { strategy = \"vault-database\"; rotator = \"h\"; };"

static void test_database_rotate_asks_vault_and_returns_the_new_rotation(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    char v1[RC_VERSION_MAX], v[RC_VERSION_MAX] = "";
    static const char *const creds[] = { DB_ROTATING, NULL };
    fake_do(f, "database_enable", "{}");
    fake_do(f, "static_role", "{\"mount\":\"database\",\"name\":\"app\",\"username\":\"app\",\"rotation_period\":3600}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), creds, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    snprintf(v1, sizeof v1, "%s", cs[0].version);
    char *pw1 = strdup(secret_data(cs[0].password));
    cands_free(cs, n);

    assert_int_equal(rotate(f, 0, v1, NULL, NULL, v, &err), 0);
    assert_int_equal(fake_count(f, "rotate-role/app$"), 1);
    assert_string_not_equal(v, v1);
    n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    assert_string_equal(cs[0].version, v);   /* what fetch() reports is what rotate() said */
    assert_string_not_equal(secret_data(cs[0].password), pw1);
    cands_free(cs, n);
    free(pw1);

    /* a published version Vault has moved past: no second rotate-role */
    assert_int_equal(rotate(f, 0, v1, NULL, NULL, v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    assert_non_null(strstr(err.message, "not at the published"));
    assert_int_equal(fake_count(f, "rotate-role/app$"), 1);

    /* a failing rotate-role is the store's error class, nothing rotated */
    n = fetch(f, 0, cs, &err);
    snprintf(v1, sizeof v1, "%s", cs[0].version);
    cands_free(cs, n);
    fake_do(f, "inject", "{\"path\":\"rotate-role\",\"kind\":\"500\",\"times\":1}");
    assert_int_equal(rotate(f, 0, v1, NULL, NULL, v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_TRANSIENT);
    assert_non_null(strstr(err.message, "POST database/rotate-role/app: 500"));
    n = fetch(f, 0, cs, &err);
    assert_string_equal(cs[0].version, v1);
    cands_free(cs, n);

    /* Vault makes database passwords itself: one from the agent is refused */
    assert_int_equal(rotate(f, 0, v1, "app", "agent-made-pw", v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "needs engine = \"kv2\""));
}

static void test_kv2_rotate_without_a_password_is_refused(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char v[RC_VERSION_MAX];
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"password\":\"p1\"}}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), CACHE_KV2, &err), 0);
    assert_int_equal(rotate(f, 0, "1", NULL, NULL, v, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "only for engine = \"database\""));
    assert_int_equal(fake_count(f, "secret/data"), 0);
}

static void test_vault_database_strategy_needs_engine_database_at_open(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    static const char *const kv2[] = { "name = \"cache\"; source = \"v\"; path = \"secret/redis/cache\"; "
                                       "rotation = { strategy = \"vault-database\"; rotator = \"h\"; };", NULL };
    assert_int_equal(open_source(f, NULL, tok_auth(f), kv2, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "strategy vault-database needs engine = \"database\""));
}

/* ---- ABI 4: the rotation mark on a KV v2 write, the rotation record ---- */

/* GET /v1/<api_path> with the root token: the answer's "data" object (new reference). */
static json_t *vault_get_data(struct fx *f, const char *api_path) {
    char url[256], err[256];
    struct http_header h = { .name = "X-Vault-Token", .value = ROOT_TOKEN };
    snprintf(url, sizeof url, "v1/%s", api_path);
    struct http_request req = { .method = "GET", .url = url, .headers = &h, .n_headers = 1 };
    struct http_response resp;
    assert_int_equal(http_request(f->admin, &req, &resp, err, sizeof err), 0);
    assert_int_equal(resp.status, 200);
    json_t *root = json_loadb(resp.body, resp.body_len, 0, NULL);
    http_response_clear(&resp);
    assert_non_null(root);
    json_t *d = json_incref(json_object_get(root, "data"));
    json_decref(root);
    return d;
}

static const struct rc_source_type *T(void) {
    return &redis_creds_plugin.types[0];
}

static void test_kv2_rotate_with_mark_writes_two_fields_and_fetch_dates_it_by_created_time(void **st) {
    struct fx *f = *st;
    struct rc_candidate cs[RC_MAX_CANDIDATES];
    struct rc_error err;
    char v[RC_VERSION_MAX];
    static const char *const creds[] = {
        "name = \"cache\"; source = \"v\"; path = \"secret/redis/cache\"; username_field = \"user\"; "
        "password_field = \"secret\";", NULL };
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"user\":\"app\",\"secret\":\"p1\"}}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), creds, &err), 0);
    int n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    assert_true(cs[0].rotated_at == INT64_MIN);   /* written by hand */
    cands_free(cs, n);

    struct rc_rotation_mark mark = { .rotated_by = "host-a" };
    assert_int_equal(rctime_parse("2026-12-02T06:30:00Z", &mark.rotated_at), 0);
    int64_t before = (int64_t)time(NULL);
    assert_int_equal(mock_rotate_marked(T(), f->state, &f->creds[0], "1", "app", "marked-pw-2", &mark, v, &err), 0);
    int64_t after = (int64_t)time(NULL);
    assert_string_equal(v, "2");
    json_t *d = vault_get_data(f, "secret/data/redis/cache");
    json_t *data = json_object_get(d, "data");
    assert_string_equal(json_string_value(json_object_get(data, "user")), "app");
    assert_string_equal(json_string_value(json_object_get(data, "secret")), "marked-pw-2");
    assert_string_equal(json_string_value(json_object_get(data, "redis_creds_rotated_at")), "2026-12-02T06:30:00Z");
    assert_string_equal(json_string_value(json_object_get(data, "redis_creds_rotated_by")), "host-a");
    assert_int_equal(json_object_size(data), 4);
    json_decref(d);

    /* rotated_at is Vault's created_time of the version (one clock for the fleet), not the
     * writer's: the mark only says that a rotation made it. */
    n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    assert_string_equal(cs[0].version, "2");
    assert_true(cs[0].rotated_at >= before && cs[0].rotated_at <= after);
    cands_free(cs, n);

    /* A roll-back writes no mark; that version has no rotated_at. */
    assert_int_equal(mock_rotate_marked(T(), f->state, &f->creds[0], "2", "app", "rolled-back", NULL, v, &err), 0);
    d = vault_get_data(f, "secret/data/redis/cache");
    assert_int_equal(json_object_size(json_object_get(d, "data")), 2);
    json_decref(d);
    n = fetch(f, 0, cs, &err);
    assert_int_equal(n, 1);
    assert_string_equal(cs[0].version, "3");
    assert_true(cs[0].rotated_at == INT64_MIN);
    cands_free(cs, n);
}

static void assert_record(struct fx *f, const char *want_json, const char *want_rev) {
    struct rc_error err;
    char rev[RC_REVISION_MAX], *text = NULL;
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, rev, &err), 0);
    assert_string_equal(rev, want_rev);
    if (!want_json) {
        assert_null(text);
        return;
    }
    assert_non_null(text);
    json_t *got = json_loads(text, 0, NULL), *want = json_loads(want_json, 0, NULL);
    if (!json_equal(got, want))
        fail_msg("record %s, want %s", text, want_json);
    json_decref(got);
    json_decref(want);
    free(text);
}

static void test_kv2_record_create_conflict_update_remove_with_cas(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char rev[RC_REVISION_MAX];
    const char *a = "{\"format\":1,\"owner\":\"host-a\",\"epoch\":1,\"phase\":\"adding\",\"username\":null,"
                    "\"password\":\"Pend1ng-pw\",\"wait_until\":null}";
    const char *b = "{\"format\":1,\"owner\":\"host-a\",\"epoch\":1,\"phase\":\"removing\"}";
    fake_do(f, "kv2_put", "{\"mount\":\"secret\",\"path\":\"redis/cache\",\"data\":{\"username\":\"app\",\"password\":\"p1\"}}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), CACHE_KV2, &err), 0);
    assert_true(T()->caps & RC_CAP_ROTATION_RECORD);
    assert_record(f, NULL, "");

    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", a, rev, &err), 0);
    assert_string_equal(rev, "1");
    assert_int_equal(fake_count(f, "^/v1/secret/data/redis/cache[.]rotation$"), 2);
    assert_record(f, a, "1");
    /* The credential itself is untouched: observers see nothing of the claim. */
    json_t *cur = fake_call(f, "kv2_current_version", "{\"mount\":\"secret\",\"path\":\"redis/cache\"}");
    assert_int_equal(json_integer_value(cur), 1);
    json_decref(cur);

    /* A second claimant (expects none: cas 0) loses. */
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", b, rev, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    assert_non_null(strstr(err.message, "secret/data/redis/cache.rotation"));
    assert_null(strstr(err.message, "Pend1ng"));
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "1", b, rev, &err), 0);
    assert_string_equal(rev, "2");
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "1", a, rev, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    assert_record(f, b, "2");

    /* Remove: a CAS write of {}; then "no record" at that revision, which a new claim names. */
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "2", NULL, rev, &err), 0);
    assert_string_equal(rev, "3");
    json_t *d = vault_get_data(f, "secret/data/redis/cache.rotation");
    assert_int_equal(json_object_size(json_object_get(d, "data")), 0);
    json_decref(d);
    assert_record(f, NULL, "3");
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", a, rev, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "3", a, rev, &err), 0);
    assert_string_equal(rev, "4");

    /* A deleted version (by hand, or delete_version_after) is no record either. */
    fake_do(f, "kv2_delete", "{\"mount\":\"secret\",\"path\":\"redis/cache.rotation\",\"versions\":[4]}");
    assert_record(f, NULL, "4");
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "4", b, rev, &err), 0);
    assert_record(f, b, "5");

    /* A revision that is not a version number cannot be a cas. */
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "h-0123456789abcdef", b, rev, &err), -1);
    assert_int_equal(err.cls, RC_ERR_CONFLICT);
    /* Nor is a record that is not a JSON object sent. */
    fake_do(f, "reset_counts", "{}");
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "5", "[\"Pend1ng-pw\"]", rev, &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_null(strstr(err.message, "Pend1ng"));
    assert_int_equal(fake_count(f, "."), 0);
}

static void test_kv2_record_errors_take_the_classes_and_timeout_of_other_calls(void **st) {
    struct fx *f = *st;
    struct rc_error err;
    char rev[RC_REVISION_MAX], *text;
    static const char *const creds[] = {
        "name = \"cache\"; source = \"v\"; path = \"secret/redis/cache\";",
        "name = \"old\"; source = \"v\"; path = \"kv/redis\"; engine = \"kv1\";", NULL };
    fake_do(f, "kv1_enable", "{\"mount\":\"kv\"}");
    assert_int_equal(open_source(f, NULL, tok_auth(f), creds, &err), 0);

    fake_do(f, "inject", "{\"path\":\"cache\\\\.rotation\",\"kind\":\"503\",\"times\":2}");
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, rev, &err), -1);
    assert_int_equal(err.cls, RC_ERR_TRANSIENT);
    assert_non_null(strstr(err.message, "GET secret/data/redis/cache.rotation: 503"));
    assert_string_equal(rev, "?");
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[0], "", "{\"epoch\":1}", rev, &err), -1);
    assert_int_equal(err.cls, RC_ERR_TRANSIENT);

    /* A Vault that does not answer: the source's timeout (2 s here) bounds the call. */
    fake_do(f, "inject", "{\"path\":\"cache\\\\.rotation\",\"kind\":\"hang\",\"times\":1,\"seconds\":20}");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, rev, &err), -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fake_do(f, "release", "{}");
    assert_int_equal(err.cls, RC_ERR_TRANSIENT);
    assert_true(t1.tv_sec - t0.tv_sec < 10);

    fake_do(f, "inject", "{\"path\":\"cache\\\\.rotation\",\"kind\":\"403\",\"times\":1}");
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[0], &text, rev, &err), -1);
    assert_int_equal(err.cls, RC_ERR_AUTH);

    /* KV v1 has no check-and-set: no record there. */
    assert_int_equal(mock_record_read(T(), f->state, &f->creds[1], &text, rev, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_non_null(strstr(err.message, "needs engine = \"kv2\""));
    assert_int_equal(mock_record_write(T(), f->state, &f->creds[1], "", "{}", rev, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
}

int main(void) {
    secret_init(0);
    http_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plugin_abi_and_schema),
        cmocka_unit_test_setup_teardown(test_kv2_token_auth_reads_version_and_checks_metadata_only_when_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv2_rotate_writes_with_check_and_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_needs_kv2_and_says_so_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv2_rotate_with_mark_writes_two_fields_and_fetch_dates_it_by_created_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv2_record_create_conflict_update_remove_with_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv2_record_errors_take_the_classes_and_timeout_of_other_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_rotate_asks_vault_and_returns_the_new_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv2_rotate_without_a_password_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vault_database_strategy_needs_engine_database_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv2_start_up_hint_skips_deleted_and_destroyed_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv2_metadata_denied_falls_back_to_data_reads_and_says_so_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_field_and_gone_versions_are_classified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv1_version_is_a_keyed_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_role_version_and_next_check_follow_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_role_rotation_is_seen_within_a_poll_of_vaults_queue, setup_fast_tick, teardown),
        cmocka_unit_test_setup_teardown(test_approle_login_and_relogin_once_on_invalid_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_denial_with_valid_token_is_auth_without_login_storm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_renewal_and_relogin_at_max_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_injection_maps_to_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_text_echoing_the_token_is_scrubbed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespace_header_is_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_from_credentials_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors_are_fatal_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_http_only_to_loopback_and_insecure_warns, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
