/* mock_host: see mock_host.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostkey.h"
#include "mock_host.h"
#include "plugins.h"

static void mock_log(void *h, int level, const char *credential, const char *fmt, ...) {
    struct mock_host *m = h;
    size_t used = strlen(m->log);
    va_list ap;
    va_start(ap, fmt);
    if (used < sizeof m->log)
        vsnprintf(m->log + used, sizeof m->log - used, fmt, ap);
    va_end(ap);
    used = strlen(m->log);
    if (used + 1 < sizeof m->log) {
        m->log[used] = '\n';
        m->log[used + 1] = '\0';
    }
}

static int mock_keyed_version(void *h, const void *data, size_t len, char *out) {
    struct mock_host *m = h;
    char v[HOSTKEY_VERSION_LEN];
    int r = hostkey_version(m->key, data, len, v);
    if (r == 0)
        snprintf(out, RC_VERSION_MAX, "%s", v);
    return r;
}

static void mock_wake(void *h, const char *credential) {
    struct mock_host *m = h;
    if (m->n_woken < 16)
        snprintf(m->woken[m->n_woken++], sizeof m->woken[0], "%s", credential);
}

int mock_host_lookup(void *ud, const char *plugin_dir, const char *type, const struct config_key **src,
                     const struct config_key **cred, char *err, size_t errlen) {
    const struct mock_host *m = ud;
    (void)plugin_dir;
    for (size_t i = 0; i < m->plugin->n_types; i++)
        if (strcmp(m->plugin->types[i].type, type) == 0) {
            *src = m->keys[2 * i];
            *cred = m->keys[2 * i + 1];
            return 0;
        }
    snprintf(err, errlen, "unknown type %s", type);
    return -2;
}

int mock_host_schema(struct mock_host *m, const struct rc_plugin *plugin) {
    char err[256];
    memset(m, 0, sizeof *m);
    m->plugin = plugin;
    if (plugin->n_types > MOCK_TYPES_MAX) {
        fprintf(stderr, "mock_host: %zu types\n", plugin->n_types);
        return -1;
    }
    for (size_t i = 0; i < 2 * plugin->n_types; i++) {
        const struct rc_source_type *t = &plugin->types[i / 2];
        if (plugins_keys_convert(i % 2 ? t->credential_keys : t->source_keys, &m->keys[i], err,
                                 sizeof err) < 0) {
            fprintf(stderr, "mock_host: type %s: %s\n", t->type, err);
            return -1;
        }
    }
    return 0;
}

int mock_host_init(struct mock_host *m, const struct rc_plugin *plugin, const char *config_text) {
    char err[1024];
    if (mock_host_schema(m, plugin) < 0)
        return -1;
    if (plugin->services)
        *plugin->services = plugins_services();   /* as the agent's loader does */
    m->host = (struct rc_host){ .h = m, .instance = "test", .log = mock_log,
                                .keyed_version = mock_keyed_version, .wake = mock_wake };
    m->key = secret_new("0123456789abcdef0123456789abcdef", 32);
    if (config_load_string(config_text, "test.conf", "/tmp", mock_host_lookup, m, &m->cfg, err, sizeof err) < 0) {
        fprintf(stderr, "mock_host: %s\n", err);
        return -1;
    }
    return 0;
}

void mock_host_fini(struct mock_host *m) {
    m->cfg = config_free(m->cfg);
    m->key = secret_free(m->key);
    for (size_t i = 0; i < 2 * MOCK_TYPES_MAX; i++)
        m->keys[i] = (plugins_keys_free(m->keys[i]), NULL);
}

const struct rc_config_node *mock_host_source(const struct mock_host *m, size_t i) {
    return plugins_node(&m->cfg->sources[i].node);
}

struct rc_credential *mock_host_credentials(struct mock_host *m, size_t source, size_t *n) {
    struct rc_credential *r = calloc(m->cfg->n_credentials + 1, sizeof *r);
    *n = 0;
    for (size_t i = 0; r && i < m->cfg->n_credentials; i++)
        if (m->cfg->credentials[i].source_index == source)
            r[(*n)++] = (struct rc_credential){ .name = m->cfg->credentials[i].name,
                                                .node = plugins_node(&m->cfg->credentials[i].node) };
    return r;
}

int mock_rotate_marked(const struct rc_source_type *t, void *state, const struct rc_credential *cred,
                       const char *expected_version, const char *username, const char *password,
                       const struct rc_rotation_mark *mark, char *ret_version, struct rc_error *err) {
    memset(err, 0, sizeof *err);
    struct secret *p = secret_new_str(password);
    int r = t->rotate_write(state, cred, expected_version, username, p, mark, ret_version, err);
    secret_free(p);
    return r;
}

int mock_rotate(const struct rc_source_type *t, void *state, const struct rc_credential *cred,
                const char *expected_version, const char *username, const char *password,
                char *ret_version, struct rc_error *err) {
    if (!password) {   /* the store makes one */
        memset(err, 0, sizeof *err);
        return t->rotate_self(state, cred, expected_version, ret_version, err);
    }
    return mock_rotate_marked(t, state, cred, expected_version, username, password, NULL, ret_version, err);
}

int mock_record_write(const struct rc_source_type *t, void *state, const struct rc_credential *cred,
                      const char *expected_revision, const char *record, char *ret_revision,
                      struct rc_error *err) {
    memset(err, 0, sizeof *err);
    struct secret *rec = record ? secret_new_str(record) : NULL;
    int r = t->record_write(state, cred, expected_revision, rec, ret_revision, err);
    secret_free(rec);
    return r;
}

int mock_record_read(const struct rc_source_type *t, void *state, const struct rc_credential *cred,
                     char **ret_text, char *ret_revision, struct rc_error *err) {
    struct secret *rec = NULL;
    memset(err, 0, sizeof *err);
    snprintf(ret_revision, RC_REVISION_MAX, "?");
    *ret_text = NULL;
    int r = t->record_read(state, cred, &rec, ret_revision, err);
    if (r == 0 && rec)
        *ret_text = strdup(secret_data(rec));
    secret_free(rec);
    return r;
}
