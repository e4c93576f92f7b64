/* Plugins whose tables the loader must read by their declared size (plugin.h: the method
 * table is append-only). Built twice: as shorttab.so, a table that ends at close() and is
 * followed by non-NULL words the host must not take for methods; with BADCAP as
 * badcap.so, a type that declares RC_CAP_ROTATE_WRITE without rotate_write(). */
#include <stddef.h>
#include "plugin.h"

static const struct rc_config_key no_keys[] = { { 0 } };

static int st_open(const struct rc_host *host, const struct rc_config_node *source,
                   const struct rc_credential *credentials, size_t n_credentials, void **ret_state,
                   struct rc_error *err) {
    (void)host, (void)source, (void)credentials, (void)n_credentials, (void)err;
    *ret_state = NULL;
    return 0;
}

static int st_fetch(void *state, const struct rc_credential *cred,
                    struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    (void)state, (void)cred, (void)ret;
    return rc_error_set(err, RC_ERR_FATAL, "test plugin");
}

static void st_close(void *state) {
    (void)state;
}

#ifndef BADCAP
/* The members of an ABI 3 table up to close(), then what an older or shorter build would
 * not have: the words after it belong to the next thing in memory, not to this table. */
struct short_type {
    const char *type;
    const struct rc_config_key *source_keys, *credential_keys;
    uint32_t caps;
    void *open, *fetch, *close;
    const void *after[5];
};

static const struct short_type shorttab_types[] = { {
    .type = "shorttab", .source_keys = no_keys, .credential_keys = no_keys,
    .open = (void *)st_open, .fetch = (void *)st_fetch, .close = (void *)st_close,
    .after = { no_keys, no_keys, no_keys, no_keys, no_keys },
} };

RC_PLUGIN_EXPORT const struct rc_plugin redis_creds_plugin = {
    .abi_version = RC_PLUGIN_ABI_VERSION,
    .type_size = offsetof(struct short_type, after),
    .name = "shorttab",
    .types = (const struct rc_source_type *)(const void *)shorttab_types,
    .n_types = 1,
};
#else
static const struct rc_source_type badcap_types[] = { {
    .type = "badcap", .source_keys = no_keys, .credential_keys = no_keys,
    .caps = RC_CAP_ROTATE_WRITE, .open = st_open, .fetch = st_fetch, .close = st_close,
} };

RC_PLUGIN_EXPORT const struct rc_plugin redis_creds_plugin = {
    RC_PLUGIN_HEADER,
    .name = "badcap",
    .types = badcap_types,
    .n_types = 1,
};
#endif
