/* mock_host: a stand-in for the agent's host services, so a plugin can be unit-tested
 * without the agent. It records log lines and wake-ups and computes keyed versions with
 * a fixed test key. Also builds config nodes from config text through config.c, and
 * hands the plugin the agent's own struct rc_services (agent/plugins.c). */
#pragma once
#include <stddef.h>
#include "config.h"
#include "plugin.h"
#include "secret.h"

#define MOCK_TYPES_MAX 8

struct mock_host {
    struct rc_host host;
    char log[8192];            /* every log line, newline-separated */
    char woken[16][64];        /* credential names passed to wake() */
    size_t n_woken;
    struct secret *key;
    struct config *cfg;
    const struct rc_plugin *plugin;
    struct config_key *keys[2 * MOCK_TYPES_MAX];   /* per type: source, credential (host schema) */
};

/* Converts the plugin's key tables as the agent's loader does (0 or -1, printed); then
 * mock_host_lookup (userdata: m) gives them to config_load(). mock_host_fini() frees them. */
int mock_host_schema(struct mock_host *m, const struct rc_plugin *plugin);
int mock_host_lookup(void *ud, const char *plugin_dir, const char *type, const struct config_key **src,
                     const struct config_key **cred, char *err, size_t errlen);
/* The node of source i, as open() takes it. */
const struct rc_config_node *mock_host_source(const struct mock_host *m, size_t i);

/* Loads `config_text` (a whole agent config) with the plugin's schema. Returns 0 or -1
 * (the error is printed). */
int mock_host_init(struct mock_host *m, const struct rc_plugin *plugin, const char *config_text);
void mock_host_fini(struct mock_host *m);
/* The credentials of source i, as open() wants them; *n set. Caller frees the array. */
struct rc_credential *mock_host_credentials(struct mock_host *m, size_t source, size_t *n);

/* Calls t->rotate_write() with `password` as a fresh secret (freed after), or, when
 * password is NULL, t->rotate_self() (the store makes the password); err is zeroed first. */
int mock_rotate(const struct rc_source_type *t, void *state, const struct rc_credential *cred,
                const char *expected_version, const char *username, const char *password,
                char *ret_version, struct rc_error *err);
/* mock_rotate() of a password with a rotation mark (NULL: none, a roll-back). */
int mock_rotate_marked(const struct rc_source_type *t, void *state, const struct rc_credential *cred,
                       const char *expected_version, const char *username, const char *password,
                       const struct rc_rotation_mark *mark, char *ret_version, struct rc_error *err);
/* t->record_write() of `record` as a fresh secret (NULL: remove); err is zeroed first. */
int mock_record_write(const struct rc_source_type *t, void *state, const struct rc_credential *cred,
                      const char *expected_revision, const char *record, char *ret_revision,
                      struct rc_error *err);
/* t->record_read(); *ret_text is a malloc'd copy of the record (NULL when none); err is
 * zeroed first and ret_revision set to "?" so a test sees whether it was written. */
int mock_record_read(const struct rc_source_type *t, void *state, const struct rc_credential *cred,
                     char **ret_text, char *ret_revision, struct rc_error *err);
