/* plugin.h: the one header a source plugin includes (docs/design.md §8).
 *
 * A plugin is a shared object exporting `const struct rc_plugin redis_creds_plugin` and
 * nothing else (link it with plugin.map, the version script the SDK installs). It names
 * the source types it serves and, for each, the schema of its source-level and
 * credential-level config keys, so the host checks a config without running plugin code.
 *
 * Threads: open() and close() run on the agent's loop thread. fetch() and rotate_*() run
 * on a worker thread and may block (bounded by their own timeouts); the host never calls
 * them concurrently for one source instance, but different instances run in parallel.
 * watch_event() runs on the loop and must not block. A plugin talks to the host only
 * through struct rc_host (per instance: logging with its instance name, keyed versions,
 * wake-ups) and struct rc_services (secrets, config values); helpers such as HTTP and
 * JSON it links statically, hidden by the version script.
 *
 * Errors: fetch() returns the number of candidates, or -1 with *err filled: an error
 * class and a message without secrets ("GET secret/data/redis/cache: 403 permission
 * denied").
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>   /* LOG_* levels for rc_host.log */

/* Config keys. A type declares its keys in tables of struct rc_config_key, ended by an
 * entry whose name is NULL; the host turns them into its own schema when it loads the
 * plugin and checks every value before any plugin code runs (--check-config runs none).
 * A plugin reads values only through the conf_*() services below, on opaque nodes. */
enum rc_conf_type {
    RC_CONF_T_STRING = 1,
    RC_CONF_T_INT = 2,
    RC_CONF_T_BOOL = 3,
    RC_CONF_T_FLOAT = 4,
    RC_CONF_T_DURATION = 5,      /* a string like "30s"; read as usec */
    RC_CONF_T_STRING_LIST = 6,   /* an array or list of strings */
    RC_CONF_T_GROUP = 7,         /* a nested group with its own key table (group_keys) */
};

/* Checks the host runs on a value (rc_config_key.checks). The first group depends on the
 * text alone; the second on the machine and the agent's user (checked at start and by
 * --check-config). Bits are never reused. */
enum {
    RC_CONF_CHECK_ABSOLUTE = 1 << 0,     /* STRING: an absolute path (see EMPTY_OK) */
    RC_CONF_CHECK_EMPTY_OK = 1 << 1,     /* with ABSOLUTE: "" (none) is accepted too */
    RC_CONF_CHECK_FILE_NAME = 1 << 2,    /* STRING: a name in a directory: no '/', no leading '.' */
    RC_CONF_CHECK_POSITIVE = 1 << 3,     /* DURATION: more than 0s */
    RC_CONF_CHECK_ENDPOINT = 1 << 4,     /* STRING_LIST: one or more endpoints (host:port, ...) */
    RC_CONF_CHECK_WORDS_QUOTED = 1 << 5, /* (host tables only; refused in a plugin's) */
    RC_CONF_CHECK_FILE = 1 << 8,         /* a file that must exist and the user can read */
    RC_CONF_CHECK_DIR = 1 << 9,          /* a directory that must exist and the user can read */
    RC_CONF_CHECK_GROUP = 1 << 10,       /* a group that must exist, with the user in it */
};

/* One key of a type's schema. */
struct rc_config_key {
    const char *name;
    enum rc_conf_type type;
    bool required;
    const char *default_value;                /* text form ("10s", "true", "0.7"); NULL = none */
    int64_t min, max;                         /* INT only; both 0 = [0, INT32_MAX] */
    const struct rc_config_key *group_keys;   /* GROUP only */
    unsigned checks;                          /* RC_CONF_CHECK_* */
};

/* A group of settings (a source, a credential, a nested group) with its schema. Opaque:
 * only the host's conf_*() services read it. Valid during the call that hands it over
 * (open(), or a method given the rc_credential): read what you need then and keep no
 * pointer to it, since a reload may keep an instance open across configs. */
struct rc_config_node;

/* The host's secret: opaque to plugins, made and read through struct rc_services. */
struct secret;

/* Bump on any incompatible change of the structs below. 2: struct rc_source_type gained
 * rotate() (docs/design.md §9). 3: capability flags; rotate() split into rotate_write() and
 * rotate_self(); the method table is append-only and its size travels in
 * rc_plugin.type_size, so a later version can add methods without a bump. 4: fleet rotation
 * (docs/design.md §9): rc_candidate.rotated_at, rotate_write() takes a struct
 * rc_rotation_mark, the rotation record (RC_CAP_ROTATION_RECORD, record_read() and
 * record_write()). 5: no host struct in this header: key tables are struct rc_config_key
 * (RC_CONF_T_*, RC_CONF_CHECK_*), config nodes are opaque (struct rc_config_node, passed by
 * pointer in rc_credential.node and open()), conf_group() returns a node. */
#define RC_PLUGIN_ABI_VERSION 5

/* Error classes: numbers never change or get reused. */
enum rc_err_class {
    RC_ERR_NONE = 0,
    RC_ERR_TRANSIENT = 1,   /* network, timeout, 429, 5xx: back off and retry */
    RC_ERR_AUTH = 2,        /* the store refused our own identity */
    RC_ERR_NOT_FOUND = 3,   /* secret, version or field missing */
    RC_ERR_INVALID = 4,     /* unusable answer: malformed, wrong shape, disabled */
    RC_ERR_FATAL = 5,       /* configuration is wrong: retry on SIGHUP or refresh only */
    RC_ERR_CONFLICT = 6,    /* rotate_*(): the store's version is not the expected one (CAS lost) */
    RC_ERR_CLASS_MAX_ = 7,
};

static inline const char *rc_err_class_to_string(enum rc_err_class c) {
    switch (c) {
    case RC_ERR_NONE: return "none";
    case RC_ERR_TRANSIENT: return "transient";
    case RC_ERR_AUTH: return "auth";
    case RC_ERR_NOT_FOUND: return "not-found";
    case RC_ERR_INVALID: return "invalid";
    case RC_ERR_FATAL: return "fatal";
    case RC_ERR_CONFLICT: return "conflict";
    case RC_ERR_CLASS_MAX_: break;
    }
    return NULL;
}

struct rc_error {
    enum rc_err_class cls;
    uint64_t retry_after_usec;   /* 0 = none; honoured for TRANSIENT */
    char message[512];
};

#define RC_VERSION_MAX 128

/* What a candidate is to the host. */
enum rc_cand_role {
    /* The store's current credential: the one to publish once it validates. */
    RC_CAND_CURRENT = 0,
    /* An equally valid alternative (the other of two access keys): validated in the same
     * cycle; the host publishes the one Redis accepts, the CURRENT one when both are,
     * and the other as `previous` when it validated too. */
    RC_CAND_PEER = 1,
    /* The store's prior version: used only at start-up, as `previous`, when no published
     * file exists and only if it validates. */
    RC_CAND_HINT = 2,
};

#define RC_MAX_CANDIDATES 2

/* What fetch() hands back. The host takes ownership of password and username. */
struct rc_candidate {
    char *username;               /* malloc'd; NULL = the default user */
    struct secret *password;
    char version[RC_VERSION_MAX]; /* opaque; equality only */
    int64_t expires_at;           /* unix seconds, or INT64_MIN for none */
    enum rc_cand_role role;
    /* Unix seconds when an agent's rotation made this version, as the store records it
     * (the reserved key redis_creds_rotated_at of the file store; the KV v2 version's
     * created_time when the version carries that key), or INT64_MIN: unknown, or written
     * by hand. The fleet's rotation schedule counts from it. The host sets it to
     * INT64_MIN before fetch(). */
    int64_t rotated_at;
};

/* What a rotation writes beside the credential (store keys starting with redis_creds_ are
 * the agent's: docs/operations.md). */
struct rc_rotation_mark {
    int64_t rotated_at;           /* unix seconds: redis_creds_rotated_at */
    const char *rotated_by;       /* the rotating host: redis_creds_rotated_by */
};

/* A rotation record's revision, as the store identifies it (opaque; equality only). */
#define RC_REVISION_MAX 64

/* A credential as a plugin sees it. */
struct rc_credential {
    const char *name;
    const struct rc_config_node *node;   /* the credential's group, with the type's credential keys */
};

struct rc_source_type;

/* Services the host offers. `h` is the host's opaque context for this instance. */
struct rc_host {
    void *h;
    const char *instance;         /* the source's name, prefixes its logs */
    void (*log)(void *h, int level, const char *credential, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
    /* "h-" + 16 hex of HMAC(host key, data) into out[RC_VERSION_MAX]. 0 or -errno. */
    int (*keyed_version)(void *h, const void *data, size_t len, char *out);
    /* From watch_event(): credential `name` changed, fetch it now. Loop thread only. */
    void (*wake)(void *h, const char *credential);
};

/* Capabilities of a source type (rc_source_type.caps). The host picks what it may ask of
 * a type from these flags alone, never from its name: a strategy in `rotation` needs its
 * flag and the method it names. Bits are never reused. */
enum rc_capability {
    /* rotate_write(): a check-and-set write of a password the agent made (redis-acl). */
    RC_CAP_ROTATE_WRITE = 1u << 0,
    /* rotate_self(): the store makes a new password and sets it in Redis itself
     * (vault-database: a database static role). */
    RC_CAP_ROTATE_SELF = 1u << 1,
    /* rotate_self(): the store holds two keys and regenerates the one that is not
     * expected_version, the published one (azure-keys). */
    RC_CAP_ROTATE_OTHER_KEY = 1u << 2,
    /* record_read() and record_write(): the rotation record beside a credential, written
     * with a check-and-set (docs/design.md §9: fleet rotation). */
    RC_CAP_ROTATION_RECORD = 1u << 3,
};

/* The method table of one source type. Append-only: a new ABI version may add members at
 * the end only, and rc_plugin.type_size tells the host how long the plugin's table is;
 * the host treats any member past that size as NULL (absent). type, the key tables,
 * open(), fetch() and close() are required; everything else is optional. */
struct rc_source_type {
    const char *type;                          /* e.g. "file", "vault", "azure-entra" */
    const struct rc_config_key *source_keys;      /* name, type: host keys; add your own */
    const struct rc_config_key *credential_keys;  /* keys beyond the host's credential keys */
    uint32_t caps;                             /* RC_CAP_* */

    /* Opens an instance for one config source block. 0 and *ret_state, or -1 + err. */
    int (*open)(const struct rc_host *host, const struct rc_config_node *source,
                const struct rc_credential *credentials, size_t n_credentials,
                void **ret_state, struct rc_error *err);
    /* Fetches the candidates: ret[0] is always the RC_CAND_CURRENT one; at most one more
     * (a PEER or a HINT) may follow. The host zeroes ret and sets every expires_at to
     * INT64_MIN before the call. Returns the number of candidates (1 or 2), or -1 with
     * err. On -1 the plugin has freed whatever it put in ret. */
    int (*fetch)(void *state, const struct rc_credential *cred,
                 struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err);
    /* Frees the instance. NULL is accepted. */
    void (*close)(void *state);
    /* Optional: usec from now when the source wants the next look (e.g. a TTL), or 0
     * to leave it to poll_interval. Called on a worker right after fetch(). */
    uint64_t (*next_check)(void *state, const struct rc_credential *cred);
    /* Optional: an fd the loop watches for readability; then watch_event() runs. */
    int (*watch_fd)(void *state);
    void (*watch_event)(void *state);
    /* With RC_CAP_ROTATE_WRITE (docs/design.md §9): writes username (NULL = the default user) +
     * password as the store's next version of cred, but only while the store's current
     * version of it is still expected_version (check-and-set: of many agents racing,
     * exactly one wins). 0 with the new version (as fetch() would report it) in
     * ret_version[RC_VERSION_MAX], or -1 with err: RC_ERR_CONFLICT when the store holds
     * another version (someone else rotated; nothing was written), RC_ERR_FATAL when this
     * credential cannot be written so (vault: engine kv2 only), other classes as for
     * fetch(). password is never NULL. mark, when not NULL, is written with it (the
     * reserved keys), so that every host's fetch() reports rotated_at for the version;
     * NULL (a roll-back) writes none. */
    int (*rotate_write)(void *state, const struct rc_credential *cred, const char *expected_version,
                        const char *username, const struct secret *password,
                        const struct rc_rotation_mark *mark, char *ret_version,
                        struct rc_error *err);
    /* With RC_CAP_ROTATE_SELF or RC_CAP_ROTATE_OTHER_KEY: asks a store that makes secrets
     * itself to make a new one (vault: rotate-role; azure: regenerate the key that is not
     * expected_version). Such stores have no check-and-set: the plugin compares
     * expected_version with what the store reports right before asking, which two racing
     * hosts could both pass; the host therefore lets only the configured rotator host call
     * it. 0 with the store's new version in ret_version (the next fetch() returns it), or
     * -1 with err as for rotate_write(). */
    int (*rotate_self)(void *state, const struct rc_credential *cred, const char *expected_version,
                       char *ret_version, struct rc_error *err);
    /* With RC_CAP_ROTATION_RECORD: reads the rotation record kept beside cred (file: the
     * file `.<path>.rotation`; vault kv2: the secret `<path>.rotation`). 0 with
     * *ret_record (a secret made with rc_services.secret_new holding the record's JSON
     * object text; the host frees it) and its revision in ret_revision[RC_REVISION_MAX];
     * 0 with *ret_record NULL when there is no record (ret_revision: what record_write()
     * must be given to create one; "" when nothing is there at all); -1 with err. The
     * record holds a password: never log it. */
    int (*record_read)(void *state, const struct rc_credential *cred, struct secret **ret_record,
                       char *ret_revision, struct rc_error *err);
    /* With RC_CAP_ROTATION_RECORD: writes record (a JSON object text) as the rotation
     * record of cred, but only while the store's revision of it is still
     * expected_revision (what record_read() or the last record_write() reported).
     * record NULL removes the record (a store may keep an empty one). 0 with the new
     * revision in ret_revision, or -1 with err: RC_ERR_CONFLICT when the revision differs
     * (another host wrote it; nothing was written), RC_ERR_FATAL when this credential
     * cannot have one, other classes as for fetch(). */
    int (*record_write)(void *state, const struct rc_credential *cred, const char *expected_revision,
                        const struct secret *record, char *ret_revision, struct rc_error *err);
    /* Threads: every method but open(), close(), watch_fd() and watch_event() runs on a
     * worker and may block (bounded by the plugin's timeouts); the host never runs two of
     * fetch(), next_check(), rotate_write(), rotate_self(), record_read() and
     * record_write() at once on one instance. */
};

/* Services of the host that need no instance: secrets (the host's secure heap, wiped on
 * free) and config values. A plugin that links no helper library of its own uses these
 * for every struct secret it hands over and every config value it reads, so nothing but
 * this header is between it and the host. Append-only like rc_source_type: a member at or
 * past `size` is absent. Any thread may call them. */
struct rc_services {
    uint32_t size;               /* sizeof(struct rc_services) as the host was built */
    struct secret *(*secret_new)(const void *data, size_t len);   /* NULL + errno on failure */
    struct secret *(*secret_free)(struct secret *s);             /* returns NULL; NULL accepted */
    const char *(*secret_data)(const struct secret *s);          /* NUL-terminated */
    size_t (*secret_len)(const struct secret *s);
    void (*wipe_free)(void *p, size_t len);   /* wipe, then free() a buffer that held secret bytes */
    /* Config values of a node: the value, or the key's default (NULL, 0, false when it
     * has none). The host checked every value against the type's tables before open(), so
     * a getter cannot fail. A NULL node has no values. A key may be a dotted path into
     * nested groups ("rotation.strategy": then without a default). Read in open(): once
     * it has returned, the host frees the settings it keeps for itself (a dotted path into
     * them then reads as unset), and a string a getter returned may be gone, so copy what
     * you keep. Nodes themselves stay valid as long as the plugin's state. */
    bool (*conf_has)(const struct rc_config_node *n, const char *key);
    const char *(*conf_string)(const struct rc_config_node *n, const char *key);
    int64_t (*conf_int)(const struct rc_config_node *n, const char *key);
    bool (*conf_bool)(const struct rc_config_node *n, const char *key);
    double (*conf_float)(const struct rc_config_node *n, const char *key);
    uint64_t (*conf_duration)(const struct rc_config_node *n, const char *key);
    size_t (*conf_list_len)(const struct rc_config_node *n, const char *key);
    const char *(*conf_list_get)(const struct rc_config_node *n, const char *key, size_t i);
    /* The nested group `key` (a GROUP key of n's table; its defaults apply when it is
     * unset), valid as long as n; NULL when key is no GROUP key of n's table. */
    const struct rc_config_node *(*conf_group)(const struct rc_config_node *n, const char *key);
    /* Line of the key in the config (of the group when key is NULL); 0 when unknown. */
    int (*conf_line)(const struct rc_config_node *n, const char *key);
};

struct rc_plugin {
    uint32_t abi_version;        /* RC_PLUGIN_ABI_VERSION */
    uint32_t type_size;          /* sizeof(struct rc_source_type) as the plugin was built */
    const char *name;            /* "file": the file name is <name>.so */
    const struct rc_source_type *types;   /* n_types entries, type_size bytes apart */
    size_t n_types;
    /* Optional: where the host stores its services before it calls anything else of the
     * plugin (the pointer stays valid while the plugin is loaded). */
    const struct rc_services **services;
};

/* The start of a plugin's export: redis_creds_plugin = { RC_PLUGIN_HEADER, .name = ... }. */
#define RC_PLUGIN_HEADER .abi_version = RC_PLUGIN_ABI_VERSION, .type_size = sizeof(struct rc_source_type)

#define RC_PLUGIN_SYMBOL "redis_creds_plugin"
/* Plugins are built with hidden visibility; this marks the one exported symbol. */
#define RC_PLUGIN_EXPORT __attribute__((visibility("default")))

/* The keyed version (docs/design.md §5.1) of a username + password (len bytes at pw), for stores
 * without versions of their own: the host's keyed hash of what AUTH will use, so
 * reformatting the stored value is no change, and "user + pw" differs from the default
 * user with the same pw. Needs nothing but libc and host->keyed_version(), so a plugin
 * built against the SDK alone can use it. Writes out[RC_VERSION_MAX]; 0 or -errno. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
static inline int rc_credential_version(const struct rc_host *host, const char *username,
                                        const void *pw, size_t len, char *out) {
    size_t ulen = username ? strlen(username) : 0;
    size_t mlen = ulen + 1 + len;
    unsigned char *material = malloc(mlen);
    if (!material)
        return -ENOMEM;
    if (ulen)
        memcpy(material, username, ulen);
    material[ulen] = username ? 'u' : 'd';
    memcpy(material + ulen + 1, pw, len);
    int r = host->keyed_version(host->h, material, mlen, out);
    for (volatile unsigned char *v = material; v < material + mlen; v++)   /* wipe, then free */
        *v = 0;
    free(material);
    return r;
}

/* Fill an rc_error (message is formatted; never pass secrets). */
#include <stdarg.h>
#include <stdio.h>
static inline int rc_error_set(struct rc_error *e, enum rc_err_class cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int rc_error_set(struct rc_error *e, enum rc_err_class cls, const char *fmt, ...) {
    va_list ap;
    e->cls = cls;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* Out of memory: TRANSIENT (the next attempt may have it). Returns -1. */
static inline int rc_error_oom(struct rc_error *e) {
    return rc_error_set(e, RC_ERR_TRANSIENT, "out of memory");
}

/* The class of a request to a store that failed below the protocol, from its -errno (the
 * codes of the tree's HTTP client, common/http.h): -EINVAL, the URL or request is refused,
 * is the configuration (FATAL); -EMSGSIZE, an answer over its size cap, is INVALID;
 * anything else (refused, unreachable, TLS, a timeout, out of memory) is TRANSIENT. */
static inline enum rc_err_class rc_transport_class(int neg_errno) {
    return neg_errno == -EINVAL ? RC_ERR_FATAL : neg_errno == -EMSGSIZE ? RC_ERR_INVALID
                                                                       : RC_ERR_TRANSIENT;
}
