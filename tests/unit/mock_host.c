/* mock_host: see mock_host.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostkey.h"
#include "mock_host.h"
#include "plugins.h"

static const struct rc_plugin *the_plugin;

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

static int lookup(void *ud, const char *plugin_dir, const char *type, const struct config_key **src,
                  const struct config_key **cred, char *err, size_t errlen) {
    for (size_t i = 0; i < the_plugin->n_types; i++)
        if (strcmp(the_plugin->types[i].type, type) == 0) {
            *src = the_plugin->types[i].source_keys;
            *cred = the_plugin->types[i].credential_keys;
            return 0;
        }
    snprintf(err, errlen, "unknown type %s", type);
    return -2;
}

int mock_host_init(struct mock_host *m, const struct rc_plugin *plugin, const char *config_text) {
    char err[1024];
    memset(m, 0, sizeof *m);
    the_plugin = plugin;
    if (plugin->services)
        *plugin->services = plugins_services();   /* as the agent's loader does */
    m->host = (struct rc_host){ .h = m, .instance = "test", .log = mock_log,
                                .keyed_version = mock_keyed_version, .wake = mock_wake };
    m->key = secret_new("0123456789abcdef0123456789abcdef", 32);
    if (config_load_string(config_text, "test.conf", "/tmp", lookup, NULL, &m->cfg, err, sizeof err) < 0) {
        fprintf(stderr, "mock_host: %s\n", err);
        return -1;
    }
    return 0;
}

void mock_host_fini(struct mock_host *m) {
    m->cfg = config_free(m->cfg);
    m->key = secret_free(m->key);
}

struct rc_credential *mock_host_credentials(struct mock_host *m, size_t source, size_t *n) {
    struct rc_credential *r = calloc(m->cfg->n_credentials + 1, sizeof *r);
    *n = 0;
    for (size_t i = 0; r && i < m->cfg->n_credentials; i++)
        if (m->cfg->credentials[i].source_index == source)
            r[(*n)++] = (struct rc_credential){ .name = m->cfg->credentials[i].name,
                                                .node = m->cfg->credentials[i].node };
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
