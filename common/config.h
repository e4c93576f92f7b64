/* config: load and check the agent's configuration file (libconfig), docs/design.md §4.
 *
 * config_load() reads the whole file, checks every key against a schema (the host's own
 * keys here, each source type's keys from its plugin through `lookup`), and returns a
 * struct config, or an error naming file, line and key ("agent.conf:12: credentials[0].
 * redis.timeout: bad duration \"5x\""). Unknown keys, wrong types, out-of-range integers
 * (libconfig 1.5 wraps silently above INT_MAX: we range-check) and invalid names are
 * errors; integers are accepted for float keys.
 *
 * Plugin-level keys are read through struct config_node getters, which return the value
 * or the key's default; they cannot fail, because config_load() already checked types.
 * A struct config is immutable after load (but for one config_compact() by the agent,
 * before other threads see it); any thread may read it; config_free() frees it.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum config_type {
    CONFIG_T_STRING = 1,
    CONFIG_T_INT,
    CONFIG_T_BOOL,
    CONFIG_T_FLOAT,
    CONFIG_T_DURATION,     /* a string like "30s"; read as usec */
    CONFIG_T_STRING_LIST,  /* an array or list of strings */
    CONFIG_T_GROUP,        /* a nested group with its own key table */
};

/* Checks of a value that the host runs, declared in any key table (plugins' too), so that
 * --check-config runs no plugin code. The first group is decided by the text alone and
 * is checked by config_load(); the second depends on the machine and the agent's user and
 * is checked by config_check_host(). */
enum {
    CONFIG_CHECK_ABSOLUTE = 1 << 0,   /* STRING: an absolute path (see EMPTY_OK) */
    CONFIG_CHECK_EMPTY_OK = 1 << 1,   /* with ABSOLUTE: "" (none) is accepted too */
    CONFIG_CHECK_FILE_NAME = 1 << 2,  /* STRING: a name in a directory: no '/', no leading '.' */
    CONFIG_CHECK_POSITIVE = 1 << 3,   /* DURATION: more than 0s */
    CONFIG_CHECK_ENDPOINT = 1 << 4,   /* STRING_LIST: one or more endpoints (endpoint.h) */
    CONFIG_CHECK_WORDS_QUOTED = 1 << 5, /* words: quote them in "unknown ... (use ...)" */
    /* config_check_host(): */
    CONFIG_CHECK_FILE = 1 << 8,       /* a file that must exist and that the user can read */
    CONFIG_CHECK_DIR = 1 << 9,        /* a directory that must exist and the user can read */
    CONFIG_CHECK_GROUP = 1 << 10,     /* a group that must exist, with the user in it */
};

/* Host tables only: how config_load() keeps a value in the section's struct. */
enum config_store {
    CONFIG_STORE_NONE = 0,
    CONFIG_STORE_STRING,      /* char *: the value or the default (NULL when neither) */
    CONFIG_STORE_OPT_STRING,  /* char *: NULL when unset or "" (the config's "none") */
    CONFIG_STORE_BOOL,        /* bool */
    CONFIG_STORE_UINT,        /* unsigned (an INT key, so its min/max apply) */
    CONFIG_STORE_USEC,        /* uint64_t (a DURATION key) */
    CONFIG_STORE_ENUM,        /* int: the value of the word in `words` */
    CONFIG_STORE_FLAGS,       /* unsigned: OR of the words of a list, each at most once */
    CONFIG_STORE_STRV,        /* char ** (NULL-terminated) then size_t: a list's strings */
    CONFIG_STORE_SECTION,     /* a GROUP key: its keys are kept in the struct at offset */
};

struct enumstr;

/* One key of a schema. Tables end with an entry whose name is NULL. */
struct config_key {
    const char *name;
    enum config_type type;
    bool required;
    const char *default_value;            /* text form ("10s", "true", "0.7"); NULL = none */
    int64_t min, max;                     /* INT only; both 0 = [0, INT32_MAX] */
    const struct config_key *group_keys;  /* GROUP only */
    unsigned checks;                      /* CONFIG_CHECK_* */
    /* Host tables only (a plugin leaves these 0): */
    enum config_store store;
    size_t offset;                        /* where, in the section's struct */
    const struct enumstr *words;          /* STRING, STRING_LIST: the words it takes */
    const char *noun;                     /* with words: "unknown <noun> \"x\" (use ...)" */
};

/* A view of one group of settings with its schema (a source, a credential, or a nested
 * group). `setting` may be NULL: every getter then returns defaults. */
struct config_node {
    const void *setting;                  /* config_setting_t*, opaque here */
    const struct config_key *keys;
    const char *file;
    /* The nodes of keys' GROUP keys, in table order, for config_node_group_ref(); built by
     * config_load() for sources' and credentials' nodes (plugins read them by pointer),
     * NULL elsewhere. Owned by the struct config. */
    const struct config_node *groups;
};

/* The getters take a key of n's table, or a dotted path into nested groups ("a.b"),
 * which has no default. */
bool config_node_has(const struct config_node *n, const char *key);
/* True when both nodes have the same schema and every key of it the same value (unset on
 * both, or equal, nested groups and lists included); where in which file does not matter.
 * A reload keeps a source open when its settings are the same. */
bool config_node_same(const struct config_node *a, const struct config_node *b);
const char *config_node_string(const struct config_node *n, const char *key);  /* NULL: unset, no default */
int64_t config_node_int(const struct config_node *n, const char *key);
bool config_node_bool(const struct config_node *n, const char *key);
double config_node_float(const struct config_node *n, const char *key);
uint64_t config_node_duration(const struct config_node *n, const char *key);
size_t config_node_list_len(const struct config_node *n, const char *key);
const char *config_node_list_get(const struct config_node *n, const char *key, size_t i);
/* Fills *ret with the nested group (an empty node with the group's schema when unset). */
void config_node_group(const struct config_node *n, const char *key, struct config_node *ret);
/* The nested group as a node of its own that lives as long as n: NULL when n has no
 * built groups or key is no GROUP key of n's table. */
const struct config_node *config_node_group_ref(const struct config_node *n, const char *key);
/* Line of the key in the file (or of the group when key is NULL); 0 when unknown. */
int config_node_line(const struct config_node *n, const char *key);
/* File of the key (or of the group when key is NULL or unset); an @include may put a key
 * in another file than its group. NULL when unknown. */
const char *config_node_file(const struct config_node *n, const char *key);

enum validate_policy { VALIDATE_ALL = 0, VALIDATE_ANY, VALIDATE_NONE };
const char *validate_policy_to_string(enum validate_policy p);

enum {
    CRED_FORMAT_JSON = 1 << 0,
    CRED_FORMAT_ENV = 1 << 1,
    CRED_FORMAT_PASSWORD = 1 << 2,
};

struct config_tls {
    bool enabled;
    char *ca_file, *ca_path, *cert_file, *key_file, *server_name;  /* NULL = unset */
    bool insecure_skip_verify;
};

struct config_redis {
    char **endpoints;
    size_t n_endpoints;
    bool cluster;
    bool validate_replicas;        /* cluster: replicas must accept too, not only primaries */
    struct config_tls tls;
    enum validate_policy validate;
    uint64_t timeout_usec;
    uint64_t revalidate_interval_usec;   /* re-check the published credential; 0 = off */
};

struct config_agent {
    char *runtime_dir, *state_dir, *group, *plugin_dir, *control_socket, *metrics_file;
    char *control_group;           /* the control socket's group; NULL = group, "" = our own */
    int log_level;                 /* LOG_ERR .. LOG_DEBUG */
    unsigned workers;
    uint64_t startup_timeout_usec;
    bool allow_no_credentials;     /* a config without credentials is not an error */
    bool allow_removals;           /* a reload may delete more than half of what is published */
};

struct config_source {
    char *name;
    char *type;
    struct config_node node;       /* the whole source group, with the plugin's schema */
};

/* Agent-driven rotation (docs/design.md §9); enabled = false when the credential has none. */
enum rotation_strategy {
    ROTATION_REDIS_ACL = 1,        /* the agent makes the password, ACL SETUSER on each node */
    ROTATION_VAULT_DATABASE = 2,   /* Vault rotates a database static role (rotate-role) */
    ROTATION_AZURE_KEYS = 3,       /* regenerate the unused access key, switch, the other */
    ROTATION_REDIS_ACL_USERS = 4,  /* two ACL users alternated: the idle one gets the new
                                      password, the previous one is disabled once drained */
};

/* redis-acl and redis-acl-users: the agent makes the password and changes Redis itself. */
static inline bool config_rotation_is_acl(enum rotation_strategy s) {
    return s == ROTATION_REDIS_ACL || s == ROTATION_REDIS_ACL_USERS;
}

/* "redis-acl", "vault-database", "azure-keys", "redis-acl-users" (as configured). */
const char *config_rotation_strategy_to_string(enum rotation_strategy s);

struct config_rotation;
/* Whether this host (gethostname()) may claim rotations: listed in `rotators`, or no list. */
bool config_rotation_claims_here(const struct config_rotation *ro);

struct config_rotation {
    bool enabled;
    enum rotation_strategy strategy;
    uint64_t interval_usec;        /* since the last completed rotation */
    uint64_t grace_usec;           /* old and new both work this long after publication */
    char *admin_username;          /* NULL: ACL SETUSER runs as the credential itself */
    char *admin_password_file;     /* with admin_username */
    bool acl_save;                 /* ACL SAVE on each node after changing it */
    char *rotator;                 /* vault-database, azure-keys: the one host (gethostname) that rotates */
    char **rotators;               /* redis-acl: the hosts that may claim; NULL = every host */
    size_t n_rotators;
    uint64_t splay_usec;           /* a random [0, splay] added to every due time */
    uint64_t pending_timeout_usec; /* a rotation record untouched this long may be taken over */
    uint64_t revocation_check_usec; /* redis-acl: ACL LOG read this often after a removal ... */
    uint64_t revocation_watch_usec; /* ... for this long; 0 = no revocation watch */
    bool revocation_restore;       /* the watch puts the old password back for another grace */
    unsigned restore_limit;        /* ... at most this often per rotation */
    char **users;                  /* redis-acl-users: the two users alternated */
    size_t n_users;
    uint64_t max_grace_usec;       /* redis-acl-users: the previous user is waited for this
                                      long after publication at most ... */
    bool kill_after_max_grace;     /* ... then its connections are closed (else it stays on) */
    uint64_t drain_check_usec;     /* CLIENT LIST this often while draining */
    unsigned password_length;
    const char *alphabet;          /* the characters passwords are drawn from: one of the
                                      named sets (static, shared by every credential);
                                      NULL without a rotation section */
};

struct config_credential {
    char *name;
    char *source;                  /* source name */
    size_t source_index;           /* into config.sources */
    uint64_t poll_interval_usec;
    char *group;                   /* NULL = agent.group */
    int mode;                      /* file mode, default 0640 */
    struct config_redis redis;
    unsigned formats;              /* CRED_FORMAT_* */
    char **on_change;              /* argv, NULL-terminated; NULL = none */
    size_t n_on_change;
    uint64_t on_change_timeout_usec; /* then the hook's process group is killed */
    struct config_rotation rotation;
    struct config_node node;       /* the credential group, with the plugin's credential schema */
};

struct config {
    char *file;
    struct config_agent agent;
    struct config_node agent_node; /* the agent group (setting NULL when absent) */
    struct config_source *sources;
    size_t n_sources;
    struct config_credential *credentials;
    size_t n_credentials;
    void *lc;                      /* config_t*, kept alive for the nodes */
};

/* Gives the schema of a source type: its source-level and credential-level keys.
 * Returns 0, or -errno with a message in err (e.g. unknown type, plugin refused). */
typedef int (*config_schema_lookup)(void *userdata, const char *plugin_dir, const char *type,
                                    const struct config_key **ret_source_keys,
                                    const struct config_key **ret_credential_keys,
                                    char *err, size_t errlen);

/* Loads `path`. Returns 0 and *ret, or -errno with err filled ("FILE:LINE: key: why").
 * It also checks the files the configuration names, so that --check-config, the start and
 * every reload report them: the file itself, every @include and every on_change program
 * must pass secretfile_check_trusted() (owned by root or the agent's user, not writable by
 * group or others, nor is their directory), and each rotation.admin_password_file must
 * pass secretfile_check() (a regular file only its owner can read). */
int config_load(const char *path, config_schema_lookup lookup, void *userdata,
                struct config **ret, char *err, size_t errlen);
/* Same, from a string (tests; relative @include resolves against include_dir). The files
 * the text names are not checked. */
int config_load_string(const char *text, const char *display_name, const char *include_dir,
                       config_schema_lookup lookup, void *userdata,
                       struct config **ret, char *err, size_t errlen);
struct config *config_free(struct config *c);
/* Gives back the parse tree's settings that nothing reads once the configuration is
 * applied: each credential's host keys, which load copied into struct config_credential
 * (about 1.3 KB a credential). The tree is rebuilt holding the agent group, every source
 * group and each credential's keys of its plugin table, so every node, nested groups
 * included, reads the same values, files and lines as before; only a dotted path into a
 * credential's host keys ("rotation.strategy") reads as unset. Strings that getters
 * returned earlier are freed: the agent calls it once the plugins' open() has returned and
 * before another thread reads c. 0, or -ENOMEM with c unchanged. */
int config_compact(struct config *c);

/* The host's own key tables, by section: "agent", "sources", "credentials", "redis",
 * "rotation"; NULL for any other name. Stores of "rotation" are at offsets into struct
 * config_rotation, except password_alphabet's (its name becomes `alphabet`). */
const struct config_key *config_host_keys(const char *section);

/* [A-Za-z0-9_.-]{1,64}, not starting with '.'. */
bool config_name_valid(const char *name);

/* Built-in defaults (docs/design.md §4.1), overridable at build time. */
#ifndef RC_DEFAULT_PLUGIN_DIR
#define RC_DEFAULT_PLUGIN_DIR "/usr/lib/x86_64-linux-gnu/redis-creds/plugins"
#endif
#define RC_DEFAULT_CONFIG_FILE "/etc/redis-creds/agent.conf"
#define RC_DEFAULT_RUNTIME_DIR "/run/redis-creds"
#define RC_DEFAULT_STATE_DIR "/var/lib/redis-creds"
#define RC_DEFAULT_CONTROL_SOCKET "/run/redis-creds-agent/control.sock"
