/* plugins: find, check and dlopen source plugins (docs/design.md §8.1).
 *
 * Type T is served by <plugin_dir>/<first word of T>.so ("azure-entra" -> azure.so).
 * The directory and the file must be owned by root or the agent's user and not be
 * writable by group or others; the plugin must export RC_PLUGIN_SYMBOL with our ABI
 * version and list the type. Each type is copied into a full-size host struct by the
 * plugin's type_size (members past it are NULL), its key tables are turned into the
 * host's schema (config.h), and every plugin with a `services`
 * slot gets the host's struct rc_services before anything else runs. A registry keeps
 * every plugin loaded until plugins_free(), so a type's schema and functions stay valid
 * across config reloads. Loop thread only.
 */
#pragma once
#include <stddef.h>
#include "config.h"
#include "plugin.h"
#include "secret.h"

struct plugins;

struct plugins *plugins_new(void);
struct plugins *plugins_free(struct plugins *p);   /* dlcloses; NULL accepted */

/* A plugin's key table (plugin.h struct rc_config_key) as the host's schema (config.h),
 * refusing unknown types and checks. 0 and *ret (free it with plugins_keys_free()), or
 * -errno with the reason in err. */
int plugins_keys_convert(const struct rc_config_key *keys, struct config_key **ret, char *err, size_t errlen);
void plugins_keys_free(struct config_key *keys);

/* The opaque node a plugin gets (rc_credential.node, open()) for a host node. */
static inline const struct rc_config_node *plugins_node(const struct config_node *n) {
    return (const struct rc_config_node *)n;
}

/* The services table every plugin gets (plugin.h struct rc_services). */
const struct rc_services *plugins_services(void);

/* Finds the type, loading its plugin when needed. 0 and *ret, or -errno with err. */
int plugins_find_type(struct plugins *p, const char *plugin_dir, const char *type,
                      const struct rc_source_type **ret, char *err, size_t errlen);

/* A config_schema_lookup (common/config.h) over a struct plugins* userdata. */
int plugins_schema_lookup(void *userdata, const char *plugin_dir, const char *type,
                          const struct config_key **ret_source_keys,
                          const struct config_key **ret_credential_keys, char *err, size_t errlen);

/* Every credential with `rotation` must use a source type whose capability flags
 * (plugin.h RC_CAP_*) include the one its strategy needs; no type name is involved.
 * 0, or -EINVAL with err ("FILE:LINE: credentials[N].rotation: strategy ... needs ..."). */
int plugins_check_rotation(struct plugins *p, const struct config *cfg, char *err, size_t errlen);
