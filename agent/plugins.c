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

static const struct rc_source_type *plugin_type(const struct loaded *l, const char *type) {
    for (size_t i = 0; i < l->plugin->n_types; i++)
        if (strcmp(l->types[i].type, type) == 0)
            return &l->types[i];
    return NULL;
}

/* plugin.h takes these from config.h, so their layout is part of the plugin ABI: a change
 * here breaks every plugin built before it. Change them only with a new
 * RC_PLUGIN_ABI_VERSION, then update these checks (docs/design.md §8.6). */
struct abi3_config_key {   /* the layout ABI 3 was released with */
    const char *name;
    enum config_type type;
    bool required;
    const char *default_value;
    int64_t min, max;
    const void *group_keys;
    unsigned checks;
    enum config_store store;   /* this and below: host tables only, 0 in a plugin's */
    size_t offset;
    const void *words;
    const char *noun;
};
struct abi3_config_node {
    const void *setting, *keys;
    const char *file;
};
#define ABI_SAME(t, m) _Static_assert(offsetof(struct t, m) == offsetof(struct abi3_##t, m), \
                                      #t "." #m " moved: plugin ABI change")
/* ABI 4 changed rc_candidate and rotate_write(), not these. */
_Static_assert(RC_PLUGIN_ABI_VERSION == 4, "check the layouts below for the new ABI version");
_Static_assert(sizeof(struct config_key) == sizeof(struct abi3_config_key), "config_key: plugin ABI change");
ABI_SAME(config_key, name);
ABI_SAME(config_key, type);
ABI_SAME(config_key, required);
ABI_SAME(config_key, default_value);
ABI_SAME(config_key, min);
ABI_SAME(config_key, max);
ABI_SAME(config_key, group_keys);
ABI_SAME(config_key, checks);
ABI_SAME(config_key, store);
ABI_SAME(config_key, offset);
ABI_SAME(config_key, words);
ABI_SAME(config_key, noun);
_Static_assert(sizeof(struct config_node) == sizeof(struct abi3_config_node), "config_node: plugin ABI change");
ABI_SAME(config_node, setting);
ABI_SAME(config_node, keys);
ABI_SAME(config_node, file);
_Static_assert(CONFIG_T_STRING == 1 && CONFIG_T_INT == 2 && CONFIG_T_BOOL == 3 && CONFIG_T_FLOAT == 4 &&
               CONFIG_T_DURATION == 5 && CONFIG_T_STRING_LIST == 6 && CONFIG_T_GROUP == 7,
               "enum config_type renumbered: plugin ABI change");
_Static_assert(CONFIG_CHECK_ABSOLUTE == 1 << 0 && CONFIG_CHECK_EMPTY_OK == 1 << 1 &&
               CONFIG_CHECK_FILE_NAME == 1 << 2 && CONFIG_CHECK_POSITIVE == 1 << 3 &&
               CONFIG_CHECK_ENDPOINT == 1 << 4 && CONFIG_CHECK_WORDS_QUOTED == 1 << 5 &&
               CONFIG_CHECK_FILE == 1 << 8 && CONFIG_CHECK_DIR == 1 << 9 && CONFIG_CHECK_GROUP == 1 << 10,
               "CONFIG_CHECK_* renumbered: plugin ABI change");

/* What every plugin may call without an instance (plugin.h struct rc_services). */
static const struct rc_services host_services = {
    .size = sizeof(struct rc_services),
    .secret_new = secret_new,
    .secret_free = secret_free,
    .secret_data = secret_data,
    .secret_len = secret_len,
    .wipe_free = secret_wipe_free,
    .conf_has = config_node_has,
    .conf_string = config_node_string,
    .conf_int = config_node_int,
    .conf_bool = config_node_bool,
    .conf_float = config_node_float,
    .conf_duration = config_node_duration,
    .conf_list_len = config_node_list_len,
    .conf_list_get = config_node_list_get,
    .conf_group = config_node_group,
    .conf_line = config_node_line,
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
    else
        r = load_types(path, pl, &l->types, err, errlen);
    if (r < 0) {
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

int plugins_find_type(struct plugins *p, const char *plugin_dir, const char *type,
                      const struct rc_source_type **ret, char *err, size_t errlen) {
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
    const struct rc_source_type *t = plugin_type(l, type);
    if (!t) {
        snprintf(err, errlen, "unknown source type \"%s\" (plugin %s/%s does not serve it)",
                 type, plugin_dir, file);
        return -ENOENT;
    }
    *ret = t;
    return 0;
}

int plugins_schema_lookup(void *userdata, const char *plugin_dir, const char *type,
                          const struct config_key **ret_source_keys,
                          const struct config_key **ret_credential_keys, char *err, size_t errlen) {
    const struct rc_source_type *t;
    int r = plugins_find_type(userdata, plugin_dir, type, &t, err, errlen);
    if (r < 0)
        return r;
    *ret_source_keys = t->source_keys;
    *ret_credential_keys = t->credential_keys;
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
