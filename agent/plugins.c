/* plugins: see plugins.h. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugins.h"

struct loaded {
    char *path;
    void *handle;
    int fd;          /* kept open while loaded: see plugins_load() */
    const struct rc_plugin *plugin;
    struct rc_source_type *types;   /* host copies, full size: see load_types() */
    struct config_key **keys;       /* per type: source keys, credential keys (host schema) */
    struct loaded *next;
};

struct plugins {
    struct loaded *list;
};

struct plugins *plugins_new(void) {
    return calloc(1, sizeof(struct plugins));
}

struct plugins *plugins_free(struct plugins *p) {
    if (!p)
        return NULL;
    for (struct loaded *l = p->list, *next; l; l = next) {
        next = l->next;
        for (size_t i = 0; l->keys && i < 2 * l->plugin->n_types; i++)
            plugins_keys_free(l->keys[i]);
        free(l->keys);
        free(l->types);
        dlclose(l->handle);
        close(l->fd);
        free(l->path);
        free(l);
    }
    free(p);
    return NULL;
}

/* Owned by root or us, not writable by group or others. */
static int check_owner_mode(const char *what, const struct stat *st, char *err, size_t errlen) {
    if (st->st_uid != 0 && st->st_uid != geteuid()) {
        snprintf(err, errlen, "%s: owned by uid %u, not by root or the agent's user (refused)",
                 what, (unsigned)st->st_uid);
        return -EPERM;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errlen, "%s: writable by group or others (mode %04o; refused)",
                 what, (unsigned)(st->st_mode & 07777));
        return -EPERM;
    }
    return 0;
}

static const struct rc_source_type *plugin_type(const struct loaded *l, const char *type, size_t *ret_i) {
    for (size_t i = 0; i < l->plugin->n_types; i++)
        if (strcmp(l->types[i].type, type) == 0) {
            if (ret_i)
                *ret_i = i;
            return &l->types[i];
        }
    return NULL;
}

/* plugin.h's key types are the plugin's own (ABI 5); the loader copies them into the
 * host's struct config_key, member by member, and relies on the numbers matching. */
_Static_assert(RC_PLUGIN_ABI_VERSION == 5, "check the conversions below for the new ABI version");
#define SAME_NUMBER(rc, host) _Static_assert((int)(rc) == (int)(host), #rc " differs from " #host)
SAME_NUMBER(RC_CONF_T_STRING, CONFIG_T_STRING);
SAME_NUMBER(RC_CONF_T_INT, CONFIG_T_INT);
SAME_NUMBER(RC_CONF_T_BOOL, CONFIG_T_BOOL);
SAME_NUMBER(RC_CONF_T_FLOAT, CONFIG_T_FLOAT);
SAME_NUMBER(RC_CONF_T_DURATION, CONFIG_T_DURATION);
SAME_NUMBER(RC_CONF_T_STRING_LIST, CONFIG_T_STRING_LIST);
SAME_NUMBER(RC_CONF_T_GROUP, CONFIG_T_GROUP);
SAME_NUMBER(RC_CONF_CHECK_ABSOLUTE, CONFIG_CHECK_ABSOLUTE);
SAME_NUMBER(RC_CONF_CHECK_EMPTY_OK, CONFIG_CHECK_EMPTY_OK);
SAME_NUMBER(RC_CONF_CHECK_FILE_NAME, CONFIG_CHECK_FILE_NAME);
SAME_NUMBER(RC_CONF_CHECK_POSITIVE, CONFIG_CHECK_POSITIVE);
SAME_NUMBER(RC_CONF_CHECK_ENDPOINT, CONFIG_CHECK_ENDPOINT);
SAME_NUMBER(RC_CONF_CHECK_WORDS_QUOTED, CONFIG_CHECK_WORDS_QUOTED);
SAME_NUMBER(RC_CONF_CHECK_FILE, CONFIG_CHECK_FILE);
SAME_NUMBER(RC_CONF_CHECK_DIR, CONFIG_CHECK_DIR);
SAME_NUMBER(RC_CONF_CHECK_GROUP, CONFIG_CHECK_GROUP);

/* The checks a plugin's key may ask for (WORDS_QUOTED needs the host's `words`). */
#define PLUGIN_CHECKS (RC_CONF_CHECK_ABSOLUTE | RC_CONF_CHECK_EMPTY_OK | RC_CONF_CHECK_FILE_NAME | \
                       RC_CONF_CHECK_POSITIVE | RC_CONF_CHECK_ENDPOINT | RC_CONF_CHECK_FILE | \
                       RC_CONF_CHECK_DIR | RC_CONF_CHECK_GROUP)
#define KEYS_DEPTH_MAX 8

void plugins_keys_free(struct config_key *keys) {
    for (struct config_key *k = keys; k && k->name; k++)
        plugins_keys_free((struct config_key *)k->group_keys);
    free(keys);
}

static int convert_keys(const struct rc_config_key *in, unsigned depth, struct config_key **ret,
                        char *err, size_t errlen) {
    size_t n = 0;
    if (depth > KEYS_DEPTH_MAX) {
        snprintf(err, errlen, "groups nested deeper than %d", KEYS_DEPTH_MAX);
        return -ELIBBAD;
    }
    while (in[n].name)
        n++;
    struct config_key *out = calloc(n + 1, sizeof *out);
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct rc_config_key *k = &in[i];
        out[i] = (struct config_key){ .name = k->name, .type = (enum config_type)k->type,
                                      .required = k->required, .default_value = k->default_value,
                                      .min = k->min, .max = k->max, .checks = k->checks };
        int r = 0;
        if (k->type < RC_CONF_T_STRING || k->type > RC_CONF_T_GROUP || (k->checks & ~PLUGIN_CHECKS) ||
            (k->type == RC_CONF_T_GROUP) != (k->group_keys != NULL)) {
            snprintf(err, errlen, "key \"%s\": type %d with checks 0x%x is none the host can check%s",
                     k->name, (int)k->type, k->checks,
                     k->type == RC_CONF_T_GROUP ? " (a GROUP needs group_keys)"
                                                : " (only a GROUP has group_keys)");
            r = -ELIBBAD;
        } else if (k->group_keys)
            r = convert_keys(k->group_keys, depth + 1, (struct config_key **)&out[i].group_keys, err, errlen);
        if (r < 0) {
            plugins_keys_free(out);
            return r;
        }
    }
    *ret = out;
    return 0;
}

int plugins_keys_convert(const struct rc_config_key *keys, struct config_key **ret, char *err, size_t errlen) {
    return convert_keys(keys, 0, ret, err, errlen);
}

/* The host's node behind a plugin's opaque one (plugin.h struct rc_config_node). */
static const struct config_node *node(const struct rc_config_node *n) {
    return (const struct config_node *)n;
}

static bool conf_has(const struct rc_config_node *n, const char *key) {
    return config_node_has(node(n), key);
}
static const char *conf_string(const struct rc_config_node *n, const char *key) {
    return config_node_string(node(n), key);
}
static int64_t conf_int(const struct rc_config_node *n, const char *key) {
    return config_node_int(node(n), key);
}
static bool conf_bool(const struct rc_config_node *n, const char *key) {
    return config_node_bool(node(n), key);
}
static double conf_float(const struct rc_config_node *n, const char *key) {
    return config_node_float(node(n), key);
}
static uint64_t conf_duration(const struct rc_config_node *n, const char *key) {
    return config_node_duration(node(n), key);
}
static size_t conf_list_len(const struct rc_config_node *n, const char *key) {
    return config_node_list_len(node(n), key);
}
static const char *conf_list_get(const struct rc_config_node *n, const char *key, size_t i) {
    return config_node_list_get(node(n), key, i);
}
static const struct rc_config_node *conf_group(const struct rc_config_node *n, const char *key) {
    return plugins_node(config_node_group_ref(node(n), key));
}
static int conf_line(const struct rc_config_node *n, const char *key) {
    return config_node_line(node(n), key);
}

/* What every plugin may call without an instance (plugin.h struct rc_services). */
static const struct rc_services host_services = {
    .size = sizeof(struct rc_services),
    .secret_new = secret_new,
    .secret_free = secret_free,
    .secret_data = secret_data,
    .secret_len = secret_len,
    .wipe_free = secret_wipe_free,
    .conf_has = conf_has,
    .conf_string = conf_string,
    .conf_int = conf_int,
    .conf_bool = conf_bool,
    .conf_float = conf_float,
    .conf_duration = conf_duration,
    .conf_list_len = conf_list_len,
    .conf_list_get = conf_list_get,
    .conf_group = conf_group,
    .conf_line = conf_line,
};

const struct rc_services *plugins_services(void) {
    return &host_services;
}

/* The smallest method table a plugin may have: up to and including close(). */
#define TYPE_SIZE_MIN (offsetof(struct rc_source_type, close) + sizeof(void (*)(void *)))

/* Checks one type of a plugin: required members, and a method for every capability. */
static int check_type(const char *path, const struct rc_source_type *t, char *err, size_t errlen) {
    const struct { uint32_t cap; bool has; const char *what; } need[] = {
        { RC_CAP_ROTATE_WRITE, t->rotate_write, "RC_CAP_ROTATE_WRITE without rotate_write()" },
        { RC_CAP_ROTATE_SELF, t->rotate_self, "RC_CAP_ROTATE_SELF without rotate_self()" },
        { RC_CAP_ROTATE_OTHER_KEY, t->rotate_self, "RC_CAP_ROTATE_OTHER_KEY without rotate_self()" },
        { RC_CAP_ROTATION_RECORD, t->record_read && t->record_write,
          "RC_CAP_ROTATION_RECORD without record_read() and record_write()" },
    };
    if (!t->type || !t->source_keys || !t->credential_keys || !t->open || !t->fetch || !t->close) {
        snprintf(err, errlen, "plugin %s: type \"%s\" lacks a required member (type, source_keys, "
                 "credential_keys, open, fetch, close)", path, t->type ? t->type : "(null)");
        return -ELIBBAD;
    }
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if ((t->caps & need[i].cap) && !need[i].has) {
            snprintf(err, errlen, "plugin %s: type \"%s\" declares %s", path, t->type, need[i].what);
            return -ELIBBAD;
        }
    return 0;
}

/* Copies the plugin's types into full-size host structs: the plugin's table is
 * pl->type_size bytes per type (append-only, plugin.h), and members past it stay NULL,
 * so a plugin built against an older header of this ABI version lacks them, not misreads. */
static int load_types(const char *path, const struct rc_plugin *pl, struct rc_source_type **ret,
                      char *err, size_t errlen) {
    if (pl->type_size < TYPE_SIZE_MIN || pl->n_types == 0 || !pl->types) {
        snprintf(err, errlen, "plugin %s: method table of %u bytes and %zu types (needs at least "
                 "%zu bytes and one type)", path, (unsigned)pl->type_size, pl->n_types, TYPE_SIZE_MIN);
        return -ELIBBAD;
    }
    struct rc_source_type *types = calloc(pl->n_types, sizeof *types);
    if (!types) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t n = pl->type_size < sizeof *types ? pl->type_size : sizeof *types;
    for (size_t i = 0; i < pl->n_types; i++) {
        memcpy(&types[i], (const char *)pl->types + i * pl->type_size, n);
        int r = check_type(path, &types[i], err, errlen);
        if (r < 0) {
            free(types);
            return r;
        }
    }
    *ret = types;
    return 0;
}

/* The host schema of each type: keys[2 i] its source keys, keys[2 i + 1] its credential keys. */
static int load_keys(const char *path, size_t n_types, const struct rc_source_type *types,
                     struct config_key ***ret, char *err, size_t errlen) {
    struct config_key **keys = calloc(2 * n_types, sizeof *keys);
    char why[200];
    int r = keys ? 0 : -ENOMEM;
    for (size_t i = 0; r == 0 && i < 2 * n_types; i++) {
        const struct rc_source_type *t = &types[i / 2];
        r = plugins_keys_convert(i % 2 ? t->credential_keys : t->source_keys, &keys[i], why, sizeof why);
        if (r < 0)
            snprintf(err, errlen, "plugin %s: type \"%s\": %s keys: %s", path, t->type,
                     i % 2 ? "credential" : "source", why);
    }
    if (r == -ENOMEM && !keys)
        snprintf(err, errlen, "out of memory");
    if (r < 0) {
        for (size_t i = 0; keys && i < 2 * n_types; i++)
            plugins_keys_free(keys[i]);
        free(keys);
        return r;
    }
    *ret = keys;
    return 0;
}

/* Opens path after checking the directory and, on the opened fd, the file. */
static int open_checked(const char *plugin_dir, const char *path, int *ret_fd, char *err, size_t errlen) {
    struct stat st;
    if (stat(plugin_dir, &st) < 0) {
        snprintf(err, errlen, "plugin_dir %s: %s", plugin_dir, strerror(errno));
        return -errno;
    }
    int r = check_owner_mode(plugin_dir, &st, err, errlen);
    if (r < 0)
        return r;
    /* Open first, check the opened file, then dlopen it through /proc/self/fd so the
     * file we checked is the file we load. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "plugin %s: %s", path, strerror(errno));
        return r;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "plugin %s: not a regular file", path);
        return -EINVAL;
    }
    r = check_owner_mode(path, &st, err, errlen);
    if (r < 0) {
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

/* dlopens the checked fd and fills l (handle, plugin, types); the caller closes fd on error. */
static int dlopen_fd(int fd, const char *path, struct loaded *l, char *err, size_t errlen) {
    char fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
    /* The fd stays open while the plugin is loaded: glibc takes a dlopen() of a name it
     * has loaded before ("/proc/self/fd/3") for the same library, so a second plugin
     * opened on a reused fd number would silently be the first one again. */
    void *h = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "plugin %s: %s", path, dlerror());
        return -ELIBBAD;
    }
    const struct rc_plugin *pl = dlsym(h, RC_PLUGIN_SYMBOL);
    int r = -ELIBBAD;
    if (!pl)
        snprintf(err, errlen, "plugin %s: no symbol %s", path, RC_PLUGIN_SYMBOL);
    else if (pl->abi_version != RC_PLUGIN_ABI_VERSION)
        snprintf(err, errlen, "plugin %s: ABI version %u, but this agent needs version %u (rebuild "
                 "the plugin against this agent's plugin.h)",
                 path, (unsigned)pl->abi_version, (unsigned)RC_PLUGIN_ABI_VERSION);
    else if ((r = load_types(path, pl, &l->types, err, errlen)) == 0)
        r = load_keys(path, pl->n_types, l->types, &l->keys, err, errlen);
    if (r < 0) {
        free(l->types);
        l->types = NULL;
        dlclose(h);
        return r;
    }
    if (pl->services)
        *pl->services = &host_services;
    l->handle = h;
    l->plugin = pl;
    return 0;
}

static int plugins_load(struct plugins *p, const char *plugin_dir, const char *file,
                        const struct loaded **ret, char *err, size_t errlen) {
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", plugin_dir, file);
    if (n < 0 || (size_t)n >= sizeof path) {
        snprintf(err, errlen, "plugin_dir %s: path too long", plugin_dir);
        return -ENAMETOOLONG;
    }
    for (struct loaded *l = p->list; l; l = l->next)
        if (strcmp(l->path, path) == 0) {
            *ret = l;
            return 0;
        }
    int fd = -1, r = open_checked(plugin_dir, path, &fd, err, errlen);
    if (r < 0)
        return r;
    struct loaded *l = calloc(1, sizeof *l);
    if (!l || !(l->path = strdup(path))) {
        free(l);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r = dlopen_fd(fd, path, l, err, errlen);
    if (r < 0) {
        free(l->path);
        free(l);
        close(fd);
        return r;
    }
    l->fd = fd;
    l->next = p->list;
    p->list = l;
    *ret = l;
    return 0;
}

/* The plugin serving type (loaded on first use) and the type's index in it. */
static int find_type(struct plugins *p, const char *plugin_dir, const char *type,
                     const struct loaded **ret, size_t *ret_i, char *err, size_t errlen) {
    char file[80];
    size_t w = strcspn(type, "-");
    if (w == 0 || w > 64 || !config_name_valid(type)) {
        snprintf(err, errlen, "invalid source type \"%s\"", type);
        return -EINVAL;
    }
    snprintf(file, sizeof file, "%.*s.so", (int)w, type);

    const struct loaded *l;
    int r = plugins_load(p, plugin_dir, file, &l, err, errlen);
    if (r < 0)
        return r;
    if (!plugin_type(l, type, ret_i)) {
        snprintf(err, errlen, "unknown source type \"%s\" (plugin %s/%s does not serve it)",
                 type, plugin_dir, file);
        return -ENOENT;
    }
    *ret = l;
    return 0;
}

int plugins_find_type(struct plugins *p, const char *plugin_dir, const char *type,
                      const struct rc_source_type **ret, char *err, size_t errlen) {
    const struct loaded *l;
    size_t i;
    int r = find_type(p, plugin_dir, type, &l, &i, err, errlen);
    if (r < 0)
        return r;
    *ret = &l->types[i];
    return 0;
}

int plugins_schema_lookup(void *userdata, const char *plugin_dir, const char *type,
                          const struct config_key **ret_source_keys,
                          const struct config_key **ret_credential_keys, char *err, size_t errlen) {
    const struct loaded *l;
    size_t i;
    int r = find_type(userdata, plugin_dir, type, &l, &i, err, errlen);
    if (r < 0)
        return r;
    *ret_source_keys = l->keys[2 * i];
    *ret_credential_keys = l->keys[2 * i + 1];
    return 0;
}

/* What each rotation strategy needs of its source type (plugin.h RC_CAP_*). */
static const struct {
    uint32_t cap;
    const char *what;
} strategy_needs[] = {
    [ROTATION_REDIS_ACL] = { RC_CAP_ROTATE_WRITE, "a check-and-set write of a password the agent "
                             "made (rotate_write)" },
    [ROTATION_VAULT_DATABASE] = { RC_CAP_ROTATE_SELF, "a store that makes the password and sets it "
                                  "in Redis itself (rotate_self)" },
    [ROTATION_AZURE_KEYS] = { RC_CAP_ROTATE_OTHER_KEY, "two keys, of which the store regenerates "
                              "the one not published (rotate_self)" },
    [ROTATION_REDIS_ACL_USERS] = { RC_CAP_ROTATE_WRITE | RC_CAP_ROTATION_RECORD, "a check-and-set "
                                   "write of a password the agent made (rotate_write) and a "
                                   "rotation record beside the credential (record_read/record_write)" },
};

#define RC_CAP_ROTATE_ANY (RC_CAP_ROTATE_WRITE | RC_CAP_ROTATE_SELF | RC_CAP_ROTATE_OTHER_KEY)
#define N_STRATEGIES (sizeof strategy_needs / sizeof strategy_needs[0])

static const char *strategy_need(enum rotation_strategy st) {
    return (size_t)st < N_STRATEGIES && strategy_needs[st].what ? strategy_needs[st].what : "(an unknown strategy)";
}

int plugins_check_rotation(struct plugins *p, const struct config *cfg, char *err, size_t errlen) {
    for (size_t i = 0; i < cfg->n_credentials; i++) {
        const struct config_credential *cr = &cfg->credentials[i];
        const struct config_source *src = &cfg->sources[cr->source_index];
        const char *file = cr->node.file ? cr->node.file : cfg->file;
        const struct rc_source_type *t;
        if (!cr->rotation.enabled)
            continue;
        if (plugins_find_type(p, cfg->agent.plugin_dir, src->type, &t, err, errlen) < 0)
            return -EINVAL;
        if (!(t->caps & RC_CAP_ROTATE_ANY)) {
            snprintf(err, errlen, "%s:%d: credentials[%zu].rotation: source \"%s\" is of type \"%s\", "
                     "which cannot write a new version (rotation needs a source type with a rotate "
                     "capability)", file, config_node_line(&cr->node, "rotation"), i, src->name, src->type);
            return -EINVAL;
        }
        /* The plugin checks finer limits at open (vault: the engine of each credential). */
        size_t st = (size_t)cr->rotation.strategy;
        if (st >= N_STRATEGIES || !strategy_needs[st].cap ||
            (t->caps & strategy_needs[st].cap) != strategy_needs[st].cap) {
            snprintf(err, errlen, "%s:%d: credentials[%zu].rotation: strategy \"%s\" needs a source type "
                     "with %s; source \"%s\" is of type \"%s\", which has none", file,
                     config_node_line(&cr->node, "rotation"), i,
                     config_rotation_strategy_to_string(cr->rotation.strategy),
                     strategy_need(cr->rotation.strategy), src->name, src->type);
            return -EINVAL;
        }
    }
    return 0;
}
