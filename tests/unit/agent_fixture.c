/* agent_fixture: see agent_fixture.h. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_fixture.h"
#include "config.h"
#include "fdio.h"
#include "hostkey.h"
#include "log.h"
#include "plugins.h"
#include "rctime.h"
#include "resp.h"
#include "runtime.h"
#include "secret.h"
#include "worker.h"

int af_init(struct agent_fixture *f, const char *prefix, uint16_t port) {
    const char *tmp = getenv("REDIS_CREDS_TEST_TMP");
    *f = (struct agent_fixture){ .port = port };
    snprintf(f->root, sizeof f->root, "%s/%s-XXXXXX", tmp && strlen(tmp) < 120 ? tmp : "/tmp", prefix);
    if (!mkdtemp(f->root))
        return -1;
    snprintf(f->store, sizeof f->store, "%s/store", f->root);
    snprintf(f->run, sizeof f->run, "%s/run", f->root);
    snprintf(f->state, sizeof f->state, "%s/state", f->root);
    snprintf(f->conf, sizeof f->conf, "%s/agent.conf", f->root);
    return mkdir(f->store, 0700) < 0 || mkdir(f->state, 0700) < 0 ? -1 : 0;
}

/* text into path through a temporary file renamed into place (what a careful writer does:
 * a watcher never sees half a file). */
static void write_atomic(const char *path, const char *text, mode_t mode) {
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || fdio_write_all(fd, text, strlen(text)) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
        fprintf(stderr, "agent_fixture: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
}

/* text with every @ENDPOINT@ replaced by the fixture's server. */
static void expand(const struct agent_fixture *f, const char *text, char *out, size_t size) {
    char ep[32];
    size_t len = 0;
    snprintf(ep, sizeof ep, "127.0.0.1:%u", (unsigned)f->port);
    while (*text && len + 1 < size) {
        if (strncmp(text, "@ENDPOINT@", 10) == 0) {
            len += (size_t)snprintf(out + len, size - len, "%s", ep);
            text += 10;
        } else
            out[len++] = *text++;
    }
    out[len < size ? len : size - 1] = '\0';
}

void af_write_config(struct agent_fixture *f, const char *credentials) {
    char creds[8192], text[12288];
    expand(f, credentials, creds, sizeof creds);
    snprintf(text, sizeof text,
             "agent = { runtime_dir = \"%s\"; state_dir = \"%s\"; group = \"\";\n"
             "  plugin_dir = \"%s\"; control_socket = \"%s/control.sock\"; log_level = \"%s\";\n"
             "  workers = 2; startup_timeout = \"10s\"; };\n"
             "sources = ( { name = \"local\"; type = \"file\"; directory = \"%s\"; } );\n"
             "credentials = ( %s );\n",
             f->run, f->state, TEST_PLUGIN_DIR, f->root, getenv("AF_VERBOSE") ? "debug" : "warning",
             f->store, creds);
    write_atomic(f->conf, text, 0600);
}

const char *af_cred(char *buf, size_t size, const char *name, const char *extra) {
    snprintf(buf, size,
             "{ name = \"%s\"; source = \"local\"; path = \"%s.json\"; poll_interval = \"30s\";\n"
             "  redis = { endpoints = [\"@ENDPOINT@\"]; timeout = \"2s\"; }; %s }",
             name, name, extra);
    return buf;
}

void af_store_text(struct agent_fixture *f, const char *file, const char *text) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", f->store, file);
    write_atomic(path, text, 0600);
}

void af_store(struct agent_fixture *f, const char *file, const char *user, const char *pw) {
    json_t *o = json_pack("{s:s, s:s}", "username", user, "password", pw);
    char *dump = json_dumps(o, JSON_COMPACT);
    af_store_text(f, file, dump);
    free(dump);
    json_decref(o);
}

static void on_reload(void *ud, int result, const char *why) {
    struct agent_fixture *f = ud;
    f->reloads++;
    f->reload_result = result;
    snprintf(f->reload_why, sizeof f->reload_why, "%s", why);
}

int af_start(struct agent_fixture *f, bool once) {
    char err[1024];
    struct config *cfg = NULL;
    log_open("test-agent", LOG_TARGET_STDERR);
    if (!(f->plugins = plugins_new()) ||
        config_load(f->conf, plugins_schema_lookup, f->plugins, &cfg, err, sizeof err) < 0 ||
        plugins_check_rotation(f->plugins, cfg, err, sizeof err) < 0 ||
        runtime_open(cfg->agent.runtime_dir, &f->rt, err, sizeof err) < 0 ||
        hostkey_load_or_create(cfg->agent.state_dir, &f->hostkey, err, sizeof err) < 0) {
        fprintf(stderr, "agent_fixture: %s\n", err);
        config_free(cfg);
        return -1;
    }
    log_set_level(cfg->agent.log_level);
    if (sd_event_new(&f->e) < 0 || worker_pool_new(2, &f->pool) < 0 || worker_pool_attach(f->pool, f->e) < 0) {
        config_free(cfg);
        return -1;
    }
    struct agent_params p = { .event = f->e, .pool = f->pool, .runtime = f->rt, .hostkey = f->hostkey,
                              .plugins = f->plugins, .config_path = f->conf, .once = once };
    if (agent_start(&p, cfg, &f->a) < 0)   /* takes cfg */
        return -1;
    agent_set_reload_observer(f->a, on_reload, f);
    return 0;
}

bool af_run_until(struct agent_fixture *f, bool (*pred)(struct agent_fixture *f, void *ud), void *ud,
                  uint64_t timeout_usec) {
    uint64_t deadline = rctime_deadline(timeout_usec);
    while (!pred(f, ud)) {
        uint64_t now = rctime_mono_usec();
        if (now >= deadline || sd_event_get_state(f->e) == SD_EVENT_FINISHED)
            return false;
        uint64_t left = deadline - now;
        if (sd_event_run(f->e, left < 50000 ? left : 50000) < 0)
            return false;
    }
    return true;
}

json_t *af_status(struct agent_fixture *f, const char *name) {
    json_t *st = agent_status_json(f->a), *row = NULL, *v;
    size_t i;
    json_array_foreach(json_object_get(st, "credentials"), i, v)
        if (strcmp(af_str(v, "name"), name) == 0)
            row = json_incref(v);
    json_decref(st);
    return row;
}

json_t *af_published(struct agent_fixture *f, const char *name) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s.json", f->run, name);
    return json_load_file(path, 0, NULL);
}

const char *af_str(json_t *o, const char *path) {
    const char *dot = strchr(path, '.');
    if (dot) {
        char first[64];
        snprintf(first, sizeof first, "%.*s", (int)(dot - path), path);
        return af_str(json_object_get(o, first), dot + 1);
    }
    const char *s = json_string_value(json_object_get(o, path));
    return s ? s : "";
}

struct af_want {
    const char *name, *key, *value;
    bool is_not;
    json_t *(*get)(struct agent_fixture *f, const char *name);
};

static bool af_has(struct agent_fixture *f, void *ud) {
    const struct af_want *w = ud;
    json_t *doc = w->get(f, w->name);
    bool ok = doc && (strcmp(af_str(doc, w->key), w->value) == 0) != w->is_not;
    json_decref(doc);
    return ok;
}

static bool af_wait(struct agent_fixture *f, const struct af_want *w) {
    if (af_run_until(f, af_has, (void *)w, AF_WAIT))
        return true;
    json_t *doc = w->get(f, w->name);
    char *dump = doc ? json_dumps(doc, JSON_INDENT(1)) : NULL;
    fprintf(stderr, "agent_fixture: %s: %s is %s\"%s\" after %llu s; now: %s\n", w->name, w->key,
            w->is_not ? "still " : "not ", w->value, (unsigned long long)(AF_WAIT / RCTIME_USEC_PER_SEC),
            dump ? dump : "(none)");
    free(dump);
    json_decref(doc);
    return false;
}

bool af_wait_status(struct agent_fixture *f, const char *name, const char *key, const char *value) {
    return af_wait(f, &(struct af_want){ name, key, value, false, af_status });
}

bool af_wait_published(struct agent_fixture *f, const char *name, const char *password, bool is_not) {
    return af_wait(f, &(struct af_want){ name, "password", password, is_not, af_published });
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

void af_stop(struct agent_fixture *f) {
    if (f->a)
        agent_stop(f->a);
    if (f->pool)
        worker_pool_stop(f->pool, rctime_deadline(10 * RCTIME_USEC_PER_SEC));
    f->pool = NULL;
    f->a = agent_free(f->a);
    f->hostkey = secret_free(f->hostkey);
    f->rt = runtime_close(f->rt);
    f->e = sd_event_unref(f->e);
    f->plugins = plugins_free(f->plugins);
    if (f->root[0] && !getenv("AF_KEEP"))
        nftw(f->root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    f->root[0] = '\0';
}

/* A connection to the server at port, as the default user (no password). NULL on failure. */
static struct resp_conn *connect_port(uint16_t port) {
    struct endpoint ep = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = port };
    struct resp_conn *c = NULL;
    char err[256];
    if (resp_connect(&ep, 2 * RCTIME_USEC_PER_SEC, &c, err, sizeof err) < 0) {
        fprintf(stderr, "agent_fixture: 127.0.0.1:%u: %s\n", (unsigned)port, err);
        return NULL;
    }
    return c;
}

int af_acl_setuser(uint16_t port, const char *user, const char *const *rules, int n) {
    const char *argv[16] = { "ACL", "SETUSER", user };
    redisReply *reply = NULL;
    struct resp_conn *c = connect_port(port);
    int r = -1;
    if (!c || n > 13)
        goto out;
    for (int i = 0; i < n; i++)
        argv[3 + i] = rules[i];
    if (resp_command(c, 3 + n, argv, NULL, true, &reply) == 0 && reply->type == REDIS_REPLY_STATUS)
        r = 0;
    resp_reply_wipe_free(reply);
out:
    resp_close(c);
    return r;
}

bool af_can_login(uint16_t port, const char *user, const char *pw) {
    struct resp_conn *c = connect_port(port);
    struct secret *s = secret_new(pw, strlen(pw));
    char detail[256];
    bool ok = c && s && resp_auth(c, user, s, detail, sizeof detail) == RESP_AUTH_ACCEPTED;
    secret_free(s);
    resp_close(c);
    return ok;
}
