/* A plugin built for another ABI version: the loader must refuse it by name. */
#include "plugin.h"

static const struct rc_source_type badabi_types[] = { { .type = "badabi" } };

RC_PLUGIN_EXPORT const struct rc_plugin redis_creds_plugin = {
    .abi_version = RC_PLUGIN_ABI_VERSION + 41,
    .name = "badabi",
    .types = badabi_types,
    .n_types = 1,
};
