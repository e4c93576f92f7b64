/* plugins: see plugins.h. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

static const struct rc_source_type *plugin_type(const struct rc_plugin *pl, const char *type) {
    for (size_t i = 0; i < pl->n_types; i++)
        if (strcmp(pl->types[i].type, type) == 0)
            return &pl->types[i];
    return NULL;
}

static int plugins_load(struct plugins *p, const char *plugin_dir, const char *file,
                        const struct rc_plugin **ret, char *err, size_t errlen) {
    char path[PATH_MAX];
    struct stat st;
    int n = snprintf(path, sizeof path, "%s/%s", plugin_dir, file);
    if (n < 0 || (size_t)n >= sizeof path) {
        snprintf(err, errlen, "plugin_dir %s: path too long", plugin_dir);
        return -ENAMETOOLONG;
    }
    for (struct loaded *l = p->list; l; l = l->next)
        if (strcmp(l->path, path) == 0) {
            *ret = l->plugin;
            return 0;
        }

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
    char fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
    /* The fd stays open while the plugin is loaded: glibc takes a dlopen() of a name it
     * has loaded before ("/proc/self/fd/3") for the same library, so a second plugin
     * opened on a reused fd number would silently be the first one again. */
    void *h = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        close(fd);
        snprintf(err, errlen, "plugin %s: %s", path, dlerror());
        return -ELIBBAD;
    }
    const struct rc_plugin *pl = dlsym(h, RC_PLUGIN_SYMBOL);
    if (!pl) {
        dlclose(h);
        close(fd);
        snprintf(err, errlen, "plugin %s: no symbol %s", path, RC_PLUGIN_SYMBOL);
        return -ELIBBAD;
    }
    if (pl->abi_version != RC_PLUGIN_ABI_VERSION) {
        snprintf(err, errlen, "plugin %s: ABI version %u, but this agent needs version %u",
                 path, (unsigned)pl->abi_version, (unsigned)RC_PLUGIN_ABI_VERSION);
        dlclose(h);
        close(fd);
        return -ELIBBAD;
    }
    struct loaded *l = calloc(1, sizeof *l);
    if (!l || !(l->path = strdup(path))) {
        free(l);
        dlclose(h);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->handle = h;
    l->fd = fd;
    l->plugin = pl;
    l->next = p->list;
    p->list = l;
    *ret = pl;
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

    const struct rc_plugin *pl;
    int r = plugins_load(p, plugin_dir, file, &pl, err, errlen);
    if (r < 0)
        return r;
    const struct rc_source_type *t = plugin_type(pl, type);
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

int plugins_check_rotation(struct plugins *p, const struct config *cfg, char *err, size_t errlen) {
    for (size_t i = 0; i < cfg->n_credentials; i++) {
        const struct config_credential *cr = &cfg->credentials[i];
        const struct config_source *src = &cfg->sources[cr->source_index];
        const struct rc_source_type *t;
        if (!cr->rotation.enabled)
            continue;
        if (plugins_find_type(p, cfg->agent.plugin_dir, src->type, &t, err, errlen) < 0)
            return -EINVAL;
        if (!t->rotate) {
            snprintf(err, errlen, "%s:%d: credentials[%zu].rotation: source \"%s\" is of type \"%s\", "
                     "which cannot write a new version (rotation needs a source type with a "
                     "check-and-set write: file, vault)", cr->node.file ? cr->node.file : cfg->file,
                     config_node_line(&cr->node, "rotation"), i, src->name, src->type);
            return -EINVAL;
        }
        /* Which sources can do which strategy: redis-acl needs a store that takes a
         * password the agent made (file, vault kv2); the others need the store that makes
         * it (rotate() with NULL, plugin.h). The vault plugin checks its engine at open. */
        const char *need = NULL;
        switch (cr->rotation.strategy) {
        case ROTATION_REDIS_ACL:
            if (strcmp(src->type, "file") != 0 && strcmp(src->type, "vault") != 0)
                need = "\"file\" or \"vault\" (engine kv2)";
            break;
        case ROTATION_VAULT_DATABASE:
            if (strcmp(src->type, "vault") != 0)
                need = "\"vault\" (engine database)";
            break;
        case ROTATION_AZURE_KEYS:
            if (strcmp(src->type, "azure-redis-keys") != 0)
                need = "\"azure-redis-keys\"";
            break;
        }
        if (need) {
            snprintf(err, errlen, "%s:%d: credentials[%zu].rotation: strategy \"%s\" needs a source of "
                     "type %s; source \"%s\" is of type \"%s\"",
                     cr->node.file ? cr->node.file : cfg->file, config_node_line(&cr->node, "rotation"),
                     i, config_rotation_strategy_to_string(cr->rotation.strategy),
                     need, src->name, src->type);
            return -EINVAL;
        }
    }
    return 0;
}
