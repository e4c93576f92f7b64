/* host_services: how the in-tree plugins reach the host's services (plugin.h
 * struct rc_services) for config values, so no plugin carries a copy of config.c.
 *
 * Each plugin defines `const struct rc_services *rc_svc;` once and points its
 * rc_plugin.services at it; the host (agent/plugins.c, or tests/unit/mock_host.c) fills
 * it in when it loads the plugin, before anything else runs. The conf_*() wrappers
 * below read a config node (opaque, plugin.h) through the host.
 * Not installed: an out-of-tree plugin keeps its own pointer (docs/plugins.md).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin.h"

extern const struct rc_services *rc_svc;

static inline bool conf_has(const struct rc_config_node *n, const char *key) {
    return rc_svc->conf_has(n, key);
}
static inline const char *conf_string(const struct rc_config_node *n, const char *key) {
    return rc_svc->conf_string(n, key);
}
static inline int64_t conf_int(const struct rc_config_node *n, const char *key) {
    return rc_svc->conf_int(n, key);
}
static inline bool conf_bool(const struct rc_config_node *n, const char *key) {
    return rc_svc->conf_bool(n, key);
}
static inline double conf_float(const struct rc_config_node *n, const char *key) {
    return rc_svc->conf_float(n, key);
}
static inline uint64_t conf_duration(const struct rc_config_node *n, const char *key) {
    return rc_svc->conf_duration(n, key);
}
static inline size_t conf_list_len(const struct rc_config_node *n, const char *key) {
    return rc_svc->conf_list_len(n, key);
}
static inline const char *conf_list_get(const struct rc_config_node *n, const char *key, size_t i) {
    return rc_svc->conf_list_get(n, key, i);
}
static inline const struct rc_config_node *conf_group(const struct rc_config_node *n, const char *key) {
    return rc_svc->conf_group(n, key);
}
static inline int conf_line(const struct rc_config_node *n, const char *key) {
    return rc_svc->conf_line(n, key);
}
