/* config: load and check the agent's configuration (docs/design.md §4). See config.h.
 *
 * libconfig parses the text that conftext.c makes of the file and its @includes (it
 * expands @include itself and keeps every integer literal as written, because libconfig
 * 1.5 wraps integers silently: see conftext.h). After the parse each setting gets a
 * struct setting_info (its hook: real file and line, integer literal), so messages and
 * config_node_line() name the real place; libconfig's structs are only read, through its
 * API. The range check on integers is one function, literal_int(); the getters read an
 * integer through setting_int(), never libconfig's wrapped value.
 *
 * The host's schema is tables (agent_keys, redis_keys, ...): each key says what is
 * checked of its value and where load_section() keeps it; only the rules that tie keys
 * together are written by hand. Defaults live in the key tables only (the host's below,
 * the plugins' through `lookup`); getters fall back to them, so a default is written
 * down exactly once.
 */
#include "config.h"
#include "secretfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <libconfig.h>

#include "conftext.h"
#include "duration.h"
#include "endpoint.h"
#include "enumstr.h"

#define CONFIG_NAME_MAX 64
#define CONFIG_SCHEMA_DEPTH_MAX 8
#define KEY_PATH_MAX 256   /* dotted key path in a message ("credentials[0].redis.timeout") */
#define QUOTE_MAX 160      /* a quoted value in a message */

#define UNIX_PATH_MAX_ (sizeof(((struct sockaddr_un *)0)->sun_path))

/* ---- host schema ------------------------------------------------------------------- */

/* Each host key says what it is (type, default, range), what is checked of its value
 * (CONFIG_CHECK_*), and where load_section() keeps it (store, offset) - the manner of
 * systemd's conf-parser tables. Only rules that tie several keys together are written by
 * hand, next to the section's table (parse_agent(), parse_credential(), parse_rotation()).
 * The words a key takes are enumstr tables. */

/* password_alphabet: named sets only, so a password never holds a character that a shell,
 * an env file or a URL would need quoted. The value indexes alphabet_chars. */
static const struct enumstr alphabets[] = {
    { "alnum", 0 }, { "hex", 1 }, { "urlsafe", 2 }, { NULL, 0 },
};
static const char *const alphabet_chars[] = {
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "0123456789abcdef",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
};

#define DEFAULT_MODE 0640

static const struct enumstr log_levels[] = {
    { "debug", LOG_DEBUG }, { "info", LOG_INFO }, { "notice", LOG_NOTICE },
    { "warning", LOG_WARNING }, { "err", LOG_ERR }, { NULL, 0 },
};

static const struct enumstr formats[] = {
    { "json", CRED_FORMAT_JSON }, { "env", CRED_FORMAT_ENV }, { "password", CRED_FORMAT_PASSWORD },
    { NULL, 0 },
};

static const struct enumstr validate_policies[] = {
    { "all", VALIDATE_ALL }, { "any", VALIDATE_ANY }, { "none", VALIDATE_NONE }, { NULL, 0 },
};

static const struct enumstr strategies[] = {
    { "redis-acl", ROTATION_REDIS_ACL }, { "vault-database", ROTATION_VAULT_DATABASE },
    { "azure-keys", ROTATION_AZURE_KEYS }, { "redis-acl-users", ROTATION_REDIS_ACL_USERS },
    { NULL, 0 },
};

/* CONFIG_STORE_ENUM writes an int; these enums are ints. */
_Static_assert(sizeof(enum validate_policy) == sizeof(int), "enum store");
_Static_assert(sizeof(enum rotation_strategy) == sizeof(int), "enum store");
/* CONFIG_STORE_STRV writes the count right after the vector. */
_Static_assert(offsetof(struct config_redis, n_endpoints) ==
               offsetof(struct config_redis, endpoints) + sizeof(char **), "strv store");
_Static_assert(offsetof(struct config_rotation, n_users) ==
               offsetof(struct config_rotation, users) + sizeof(char **), "strv store");
_Static_assert(offsetof(struct config_rotation, n_rotators) ==
               offsetof(struct config_rotation, rotators) + sizeof(char **), "strv count");
_Static_assert(offsetof(struct config_credential, n_on_change) ==
               offsetof(struct config_credential, on_change) + sizeof(char **), "strv store");

#define AGENT(f) .offset = offsetof(struct config_agent, f)
#define ABS CONFIG_CHECK_ABSOLUTE

static const struct config_key agent_keys[] = {
    { .name = "runtime_dir", .type = CONFIG_T_STRING, .default_value = RC_DEFAULT_RUNTIME_DIR,
      .checks = ABS, .store = CONFIG_STORE_STRING, AGENT(runtime_dir) },
    { .name = "state_dir", .type = CONFIG_T_STRING, .default_value = RC_DEFAULT_STATE_DIR,
      .checks = ABS, .store = CONFIG_STORE_STRING, AGENT(state_dir) },
    { .name = "group", .type = CONFIG_T_STRING, .default_value = "redis-creds",
      .checks = CONFIG_CHECK_GROUP, .store = CONFIG_STORE_STRING, AGENT(group) },
    { .name = "plugin_dir", .type = CONFIG_T_STRING, .default_value = RC_DEFAULT_PLUGIN_DIR,
      .checks = ABS, .store = CONFIG_STORE_STRING, AGENT(plugin_dir) },
    { .name = "control_socket", .type = CONFIG_T_STRING,
      .default_value = RC_DEFAULT_CONTROL_SOCKET, .checks = ABS, .store = CONFIG_STORE_STRING,
      AGENT(control_socket) },
    /* unset: agent.group; "": the agent's own group */
    { .name = "control_group", .type = CONFIG_T_STRING, .checks = CONFIG_CHECK_GROUP,
      .store = CONFIG_STORE_STRING, AGENT(control_group) },
    { .name = "log_level", .type = CONFIG_T_STRING, .default_value = "info",
      .store = CONFIG_STORE_ENUM, .words = log_levels, .noun = "level", AGENT(log_level) },
    { .name = "metrics_file", .type = CONFIG_T_STRING, .default_value = "",
      .checks = ABS | CONFIG_CHECK_EMPTY_OK, .store = CONFIG_STORE_STRING, AGENT(metrics_file) },
    { .name = "workers", .type = CONFIG_T_INT, .default_value = "4", .min = 1, .max = 64,
      .store = CONFIG_STORE_UINT, AGENT(workers) },
    { .name = "startup_timeout", .type = CONFIG_T_DURATION, .default_value = "30s",
      .store = CONFIG_STORE_USEC, AGENT(startup_timeout_usec) },
    { .name = "allow_no_credentials", .type = CONFIG_T_BOOL, .default_value = "false",
      .store = CONFIG_STORE_BOOL, AGENT(allow_no_credentials) },
    { .name = "allow_removals", .type = CONFIG_T_BOOL, .default_value = "false",
      .store = CONFIG_STORE_BOOL, AGENT(allow_removals) },
    { .name = NULL },
};

#define REDIS(f) .offset = offsetof(struct config_redis, f)

static const struct config_key redis_keys[] = {
    { .name = "endpoints", .type = CONFIG_T_STRING_LIST, .required = true,
      .checks = CONFIG_CHECK_ENDPOINT, .store = CONFIG_STORE_STRV, REDIS(endpoints) },
    { .name = "cluster", .type = CONFIG_T_BOOL, .default_value = "false",
      .store = CONFIG_STORE_BOOL, REDIS(cluster) },
    { .name = "validate_replicas", .type = CONFIG_T_BOOL, .default_value = "false",
      .store = CONFIG_STORE_BOOL, REDIS(validate_replicas) },
    { .name = "tls", .type = CONFIG_T_BOOL, .default_value = "false",
      .store = CONFIG_STORE_BOOL, REDIS(tls.enabled) },
    { .name = "ca_file", .type = CONFIG_T_STRING, .checks = ABS | CONFIG_CHECK_FILE,
      .store = CONFIG_STORE_OPT_STRING, REDIS(tls.ca_file) },
    { .name = "ca_path", .type = CONFIG_T_STRING, .checks = ABS | CONFIG_CHECK_DIR,
      .store = CONFIG_STORE_OPT_STRING, REDIS(tls.ca_path) },
    { .name = "cert_file", .type = CONFIG_T_STRING, .checks = ABS | CONFIG_CHECK_FILE,
      .store = CONFIG_STORE_OPT_STRING, REDIS(tls.cert_file) },
    { .name = "key_file", .type = CONFIG_T_STRING, .checks = ABS | CONFIG_CHECK_FILE,
      .store = CONFIG_STORE_OPT_STRING, REDIS(tls.key_file) },
    { .name = "server_name", .type = CONFIG_T_STRING, .store = CONFIG_STORE_OPT_STRING,
      REDIS(tls.server_name) },
    { .name = "tls_insecure_skip_verify", .type = CONFIG_T_BOOL, .default_value = "false",
      .store = CONFIG_STORE_BOOL, REDIS(tls.insecure_skip_verify) },
    { .name = "validate", .type = CONFIG_T_STRING, .default_value = "all",
      .store = CONFIG_STORE_ENUM, .words = validate_policies, .noun = "policy",
      REDIS(validate) },
    { .name = "timeout", .type = CONFIG_T_DURATION, .default_value = "2s",
      .checks = CONFIG_CHECK_POSITIVE, .store = CONFIG_STORE_USEC, REDIS(timeout_usec) },
    /* "0s": off; else a random splay of +-10% is drawn for each interval (agent/reval.h) */
    { .name = "revalidate_interval", .type = CONFIG_T_DURATION, .default_value = "5m",
      .store = CONFIG_STORE_USEC, REDIS(revalidate_interval_usec) },
    { .name = NULL },
};

static const struct config_key source_host_keys[] = {
    { .name = "name", .type = CONFIG_T_STRING, .required = true },
    { .name = "type", .type = CONFIG_T_STRING, .required = true },
    { .name = NULL },
};

/* parse_rotation() loads into this: the alphabet's name becomes its characters after. */
struct rotation_in {
    struct config_rotation ro;
    int alphabet;
};
#define ROT(f) .offset = offsetof(struct rotation_in, f)

/* rotation = { ... } (docs/design.md §9): the rules between keys are in parse_rotation(). */
static const struct config_key rotation_keys[] = {
    { .name = "strategy", .type = CONFIG_T_STRING, .required = true,
      .checks = CONFIG_CHECK_WORDS_QUOTED, .store = CONFIG_STORE_ENUM, .words = strategies,
      .noun = "strategy", ROT(ro.strategy) },
    { .name = "interval", .type = CONFIG_T_DURATION, .default_value = "30d",
      .store = CONFIG_STORE_USEC, ROT(ro.interval_usec) },
    { .name = "grace", .type = CONFIG_T_DURATION, .default_value = "10m",
      .store = CONFIG_STORE_USEC, ROT(ro.grace_usec) },
    { .name = "admin_username", .type = CONFIG_T_STRING, .store = CONFIG_STORE_OPT_STRING,
      ROT(ro.admin_username) },
    { .name = "admin_password_file", .type = CONFIG_T_STRING, .checks = ABS | CONFIG_CHECK_FILE,
      .store = CONFIG_STORE_OPT_STRING, ROT(ro.admin_password_file) },
    { .name = "acl_save", .type = CONFIG_T_BOOL, .default_value = "false",
      .store = CONFIG_STORE_BOOL, ROT(ro.acl_save) },
    { .name = "password_length", .type = CONFIG_T_INT, .default_value = "32", .min = 16,
      .max = 256, .store = CONFIG_STORE_UINT, ROT(ro.password_length) },
    { .name = "password_alphabet", .type = CONFIG_T_STRING, .default_value = "alnum",
      .store = CONFIG_STORE_ENUM, .words = alphabets, .noun = "alphabet", ROT(alphabet) },
    { .name = "rotator", .type = CONFIG_T_STRING, .store = CONFIG_STORE_STRING, ROT(ro.rotator) },
    { .name = "rotators", .type = CONFIG_T_STRING_LIST, .store = CONFIG_STORE_STRV, ROT(ro.rotators) },
    /* default: 10% of interval, at most 1 h (parse_rotation()) */
    { .name = "splay", .type = CONFIG_T_DURATION, .store = CONFIG_STORE_USEC, ROT(ro.splay_usec) },
    { .name = "pending_timeout", .type = CONFIG_T_DURATION, .default_value = "10m",
      .checks = CONFIG_CHECK_POSITIVE, .store = CONFIG_STORE_USEC, ROT(ro.pending_timeout_usec) },
    /* the revocation watch after the old password is removed (redis-acl) */
    { .name = "revocation_check", .type = CONFIG_T_DURATION, .default_value = "10s",
      .checks = CONFIG_CHECK_POSITIVE, .store = CONFIG_STORE_USEC, ROT(ro.revocation_check_usec) },
    { .name = "revocation_watch", .type = CONFIG_T_DURATION, .default_value = "5m",
      .store = CONFIG_STORE_USEC, ROT(ro.revocation_watch_usec) },
    { .name = "revocation_restore", .type = CONFIG_T_BOOL, .default_value = "false",
      .store = CONFIG_STORE_BOOL, ROT(ro.revocation_restore) },
    { .name = "restore_limit", .type = CONFIG_T_INT, .default_value = "3", .min = 1, .max = 100,
      .store = CONFIG_STORE_UINT, ROT(ro.restore_limit) },
    /* redis-acl-users (check_users()) */
    { .name = "users", .type = CONFIG_T_STRING_LIST, .store = CONFIG_STORE_STRV, ROT(ro.users) },
    { .name = "max_grace", .type = CONFIG_T_DURATION, .default_value = "24h",
      .store = CONFIG_STORE_USEC, ROT(ro.max_grace_usec) },
    { .name = "kill_after_max_grace", .type = CONFIG_T_BOOL, .default_value = "false",
      .store = CONFIG_STORE_BOOL, ROT(ro.kill_after_max_grace) },
    { .name = "drain_check", .type = CONFIG_T_DURATION, .default_value = "5s",
      .checks = CONFIG_CHECK_POSITIVE, .store = CONFIG_STORE_USEC, ROT(ro.drain_check_usec) },
    { .name = NULL },
};

#define CRED(f) .offset = offsetof(struct config_credential, f)

/* name and source are read first, by hand; `mode` (integer or string) too: see
 * cred_extra_keys. rotation is loaded by parse_rotation(). */
static const struct config_key cred_host_keys[] = {
    { .name = "name", .type = CONFIG_T_STRING, .required = true },
    { .name = "source", .type = CONFIG_T_STRING, .required = true },
    { .name = "poll_interval", .type = CONFIG_T_DURATION, .default_value = "30s",
      .checks = CONFIG_CHECK_POSITIVE, .store = CONFIG_STORE_USEC, CRED(poll_interval_usec) },
    /* unset: agent.group; "": the agent's own group */
    { .name = "group", .type = CONFIG_T_STRING, .checks = CONFIG_CHECK_GROUP,
      .store = CONFIG_STORE_STRING, CRED(group) },
    { .name = "redis", .type = CONFIG_T_GROUP, .required = true, .group_keys = redis_keys,
      .store = CONFIG_STORE_SECTION, CRED(redis) },
    { .name = "formats", .type = CONFIG_T_STRING_LIST, .default_value = "json",
      .store = CONFIG_STORE_FLAGS, .words = formats, .noun = "format", CRED(formats) },
    { .name = "on_change", .type = CONFIG_T_STRING_LIST, .store = CONFIG_STORE_STRV,
      CRED(on_change) },
    { .name = "on_change_timeout", .type = CONFIG_T_DURATION, .default_value = "60s",
      .checks = CONFIG_CHECK_POSITIVE, .store = CONFIG_STORE_USEC, CRED(on_change_timeout_usec) },
    { .name = "rotation", .type = CONFIG_T_GROUP, .group_keys = rotation_keys },
    { .name = NULL },
};

static const char *const cred_extra_keys[] = { "mode", NULL };

const struct config_key *config_host_keys(const char *section) {
    static const struct {
        const char *name;
        const struct config_key *keys;
    } sections[] = {
        { "agent", agent_keys }, { "sources", source_host_keys },
        { "credentials", cred_host_keys }, { "redis", redis_keys },
        { "rotation", rotation_keys },
    };
    for (size_t i = 0; section && i < sizeof sections / sizeof sections[0]; i++)
        if (strcmp(section, sections[i].name) == 0)
            return sections[i].keys;
    return NULL;
}

/* ---- private state ----------------------------------------------------------------- */

/* What libconfig's struct of a setting does not say right: its real file and line (after
 * our @include expansion) and, for an integer, the literal as written. Each setting's
 * hook points to one; libconfig's own fields are only read. */
struct setting_info {
    const char *file;
    unsigned line;
    const struct conftext_int *lit;   /* integer settings only */
};

struct lc_state {
    config_t lc;         /* first member: struct config's `lc` works as a config_t* */
    bool lc_ready;
    struct conftext text;         /* the expanded text's files (settings point there) and literals */
    struct setting_info *infos;   /* one per setting, in document order */
    size_t n_infos;
};

/* ---- small helpers ----------------------------------------------------------------- */

/* The message of a failure, into the caller's buffer (which may be NULL). */
#define set_err(err, errlen, ...) \
    ((err) && (errlen) > 0 ? (void)snprintf((err), (errlen), __VA_ARGS__) : (void)0)

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

/* ---- names --------------------------------------------------------------------------- */

bool config_name_valid(const char *name) {
    size_t n = 0;
    if (!name || name[0] == '\0' || name[0] == '.')
        return false;
    for (const char *p = name; *p; p++, n++) {
        if (n >= CONFIG_NAME_MAX)
            return false;
        if (!is_alpha(*p) && !is_digit(*p) && *p != '_' && *p != '.' && *p != '-')
            return false;
    }
    return true;
}

/* Why a name is not valid, for a message; NULL when it is. */
static const char *name_problem(const char *name) {
    if (name[0] == '\0')
        return "must not be empty";
    if (name[0] == '.')
        return "must not start with '.'";
    if (strlen(name) > CONFIG_NAME_MAX)
        return "is longer than 64 characters";
    if (!config_name_valid(name))
        return "may contain only letters, digits, '_', '.' and '-' (it becomes a file name)";
    return NULL;
}

const char *validate_policy_to_string(enum validate_policy p) {
    return enumstr_to(validate_policies, (int)p);
}

static size_t count_settings(const config_setting_t *s) {
    size_t n = 1;
    if (config_setting_is_aggregate(s))
        for (int i = 0; i < config_setting_length(s); i++)
            n += count_settings(config_setting_get_elem(s, (unsigned)i));
    return n;
}

/* Gives setting s (and those in it) its info: real file and line, integer literal. Each
 * integer literal makes exactly one integer setting, in document order. */
static int annotate(struct lc_state *st, config_setting_t *s, size_t *next_int) {
    struct setting_info *in = &st->infos[st->n_infos++];
    unsigned f, l;
    conftext_map_line(&st->text, (unsigned)config_setting_source_line(s), &f, &l);
    *in = (struct setting_info){ .file = st->text.files[f], .line = l };
    if (config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64) {
        if (*next_int >= st->text.n_ints)
            return -EPROTO;
        in->lit = &st->text.ints[(*next_int)++];
    }
    config_setting_set_hook(s, in);
    if (config_setting_is_aggregate(s))
        for (int i = 0; i < config_setting_length(s); i++) {
            int r = annotate(st, config_setting_get_elem(s, (unsigned)i), next_int);
            if (r < 0)
                return r;
        }
    return 0;
}

static const struct setting_info *info_of(const config_setting_t *s) {
    return s ? config_setting_get_hook(s) : NULL;
}

static const char *setting_file(const config_setting_t *s) {
    const struct setting_info *in = info_of(s);
    return in ? in->file : NULL;
}

static unsigned setting_line(const config_setting_t *s) {
    const struct setting_info *in = info_of(s);
    return in ? in->line : 0;
}

static const struct conftext_int *setting_literal(const config_setting_t *s) {
    const struct setting_info *in = info_of(s);
    return in ? in->lit : NULL;
}

/* An integer setting's value: what the text says, not libconfig's wrapped reading. */
static int64_t setting_int(const config_setting_t *s) {
    const struct conftext_int *lit = setting_literal(s);
    return lit && !lit->overflow ? lit->value : config_setting_get_int64(s);
}

/* ---- checking against a schema ------------------------------------------------------- */

struct ctx {
    struct config *c;
    struct lc_state *st;
    config_schema_lookup lookup;
    void *userdata;
    const struct config_key **cred_keys;   /* per source: its type's credential keys */
    bool oom;
    bool check_files;                      /* config_load(): check the files named (see .h) */
    char *err;
    size_t errlen;
};

static int fail(struct ctx *x, const config_setting_t *s, const char *path, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
static int fail(struct ctx *x, const config_setting_t *s, const char *path, const char *fmt,
                ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *file = setting_file(s) ? setting_file(s) : x->st->text.files[0];
    unsigned line = setting_line(s);
    if (path && *path)
        set_err(x->err, x->errlen, "%s:%u: %s: %s", file, line, path, msg);
    else
        set_err(x->err, x->errlen, "%s:%u: %s", file, line, msg);
    return -EINVAL;
}

/* "unknown level \"x\" (use debug, info or err)": a word not in the key's table. */
static int unknown_word(struct ctx *x, const config_setting_t *s, const char *path,
                        const char *noun, const char *word, const struct enumstr *words,
                        bool quoted) {
    char q[QUOTE_MAX], list[256];
    return fail(x, s, path, "unknown %s %s (use %s)", noun, conftext_quote(word, q, sizeof q),
                enumstr_list(words, quoted, list, sizeof list));
}

static char *xdup(struct ctx *x, const char *s) {
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        x->oom = true;
    return d;
}

/* A path cut short still reads as one ("credentials[0].redis.endpo..."). */
static void mark_cut(char *buf, size_t size, int n) {
    if ((n < 0 || (size_t)n >= size) && size >= 4)
        memcpy(buf + size - 4, "...", 4);
}

static void key_path(char *buf, size_t size, const char *parent, const char *key) {
    mark_cut(buf, size, snprintf(buf, size, "%s%s%s", parent, *parent ? "." : "", key));
}

static void index_path(char *buf, size_t size, const char *parent, int i) {
    mark_cut(buf, size, snprintf(buf, size, "%s[%d]", parent, i));
}

static const char *type_name(const config_setting_t *s) {
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    }
    return "nothing";
}

static int wrong_type(struct ctx *x, const config_setting_t *s, const char *path,
                      const char *expected) {
    return fail(x, s, path, "expected %s, got %s", expected, type_name(s));
}

static config_setting_t *member(const config_setting_t *g, const char *key) {
    if (!g || config_setting_type(g) != CONFIG_TYPE_GROUP)
        return NULL;
    return config_setting_get_member(g, key);
}

static const struct config_key *find_key(const struct config_key *keys, const char *name) {
    for (; keys && keys->name; keys++)
        if (strcmp(keys->name, name) == 0)
            return keys;
    return NULL;
}

static bool is_int(const config_setting_t *s) {
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

static bool is_vector(const config_setting_t *s) {
    return config_setting_type(s) == CONFIG_TYPE_ARRAY || config_setting_type(s) == CONFIG_TYPE_LIST;
}

/* The integer setting s as written: the one place where libconfig 1.5's silent wrap of
 * integers (atoi(): 3000000000 reads as -1294967296) is caught. A literal that does not
 * fit in int64 is out of range; the caller checks the key's own range on the value
 * returned. Leading zeros are refused (libconfig would read 010 as ten, a C reader as
 * eight) unless octal_ok, where they mean octal. */
static int literal_int(struct ctx *x, const config_setting_t *s, const char *path,
                     bool octal_ok, int64_t *ret) {
    if (!is_int(s))
        return wrong_type(x, s, path, "an integer");
    const struct conftext_int *lit = setting_literal(s);
    if (!lit) {   /* not reached: every integer setting has its literal */
        *ret = config_setting_get_int64(s);
        return 0;
    }
    if (lit->overflow)
        return fail(x, s, path, "%s is out of range", lit->text);
    if (lit->leading_zero) {
        if (!octal_ok)
            return fail(x, s, path, "%s: a leading zero is ambiguous here (octal or "
                        "decimal?); write the number without it", lit->text);
        if (!lit->octal)
            return fail(x, s, path, "%s is not an octal number", lit->text);
        *ret = lit->octal_value;
        return 0;
    }
    *ret = lit->value;
    return 0;
}

static int duration_value(struct ctx *x, const config_setting_t *s, const char *path,
                          uint64_t *ret) {
    char q[QUOTE_MAX];
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return wrong_type(x, s, path, "a duration string like \"30s\"");
    const char *v = config_setting_get_string(s);
    int r = duration_parse(v, ret);
    if (r == -ERANGE)
        return fail(x, s, path, "duration %s is too large", conftext_quote(v, q, sizeof q));
    if (r < 0)
        return fail(x, s, path, "bad duration %s (use a number and a unit: ms, s, m, h, d)",
                    conftext_quote(v, q, sizeof q));
    return 0;
}

static int check_group(struct ctx *x, const config_setting_t *g, const char *path,
                       const struct config_key *const *tables, size_t n_tables,
                       const char *const *extra, bool allow_unknown, unsigned depth);

static int check_value(struct ctx *x, const config_setting_t *s, const struct config_key *k,
                       const char *path, unsigned depth) {
    char sub[KEY_PATH_MAX];
    int64_t v;
    uint64_t u;
    int r;

    switch (k->type) {
    case CONFIG_T_STRING:
        if (config_setting_type(s) != CONFIG_TYPE_STRING)
            return wrong_type(x, s, path, "a string");
        return 0;
    case CONFIG_T_INT: {
        if ((r = literal_int(x, s, path, false, &v)) < 0)
            return r;
        int64_t lo = k->min, hi = k->max;
        if (lo == 0 && hi == 0)
            hi = INT32_MAX;
        if (v < lo || v > hi)
            return fail(x, s, path, "%lld is out of range (%lld..%lld)", (long long)v,
                        (long long)lo, (long long)hi);
        return 0;
    }
    case CONFIG_T_BOOL:
        if (config_setting_type(s) != CONFIG_TYPE_BOOL)
            return wrong_type(x, s, path, "a boolean (true or false)");
        return 0;
    case CONFIG_T_FLOAT:
        if (is_int(s))
            return literal_int(x, s, path, false, &v);
        if (config_setting_type(s) != CONFIG_TYPE_FLOAT)
            return wrong_type(x, s, path, "a number");
        if (!isfinite(config_setting_get_float(s)))
            return fail(x, s, path, "is not a finite number");
        return 0;
    case CONFIG_T_DURATION:
        return duration_value(x, s, path, &u);
    case CONFIG_T_STRING_LIST:
        if (!is_vector(s))
            return wrong_type(x, s, path, "a list of strings like [ \"a\", \"b\" ]");
        for (int i = 0; i < config_setting_length(s); i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(e) != CONFIG_TYPE_STRING) {
                index_path(sub, sizeof sub, path, i);
                return wrong_type(x, e, sub, "a string");
            }
        }
        return 0;
    case CONFIG_T_GROUP:
        if (config_setting_type(s) != CONFIG_TYPE_GROUP)
            return wrong_type(x, s, path, "a group { ... }");
        return check_group(x, s, path, &k->group_keys, 1, NULL, false, depth + 1);
    }
    return fail(x, s, path, "key has an unknown type %d in its schema", (int)k->type);
}

/* Checks every member of group g against the key tables (the first match wins) and that
 * every required key is there. Members named in `extra` are left to the caller. */
static int check_group(struct ctx *x, const config_setting_t *g, const char *path,
                       const struct config_key *const *tables, size_t n_tables,
                       const char *const *extra, bool allow_unknown, unsigned depth) {
    char sub[KEY_PATH_MAX];
    int r;

    if (depth > CONFIG_SCHEMA_DEPTH_MAX)
        return fail(x, g, path, "groups nested too deep");
    for (int i = 0; i < config_setting_length(g); i++) {
        const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(m);
        const struct config_key *k = NULL;
        bool handled = false;

        key_path(sub, sizeof sub, path, name);
        for (size_t t = 0; t < n_tables && !k; t++)
            k = find_key(tables[t], name);
        for (const char *const *e = extra; e && *e && !k; e++)
            handled = handled || strcmp(*e, name) == 0;
        if (!k) {
            if (handled || allow_unknown)
                continue;
            return fail(x, m, sub, "unknown key");
        }
        if ((r = check_value(x, m, k, sub, depth)) < 0)
            return r;
    }
    for (size_t t = 0; t < n_tables; t++)
        for (const struct config_key *k = tables[t]; k && k->name; k++)
            if (k->required && !member(g, k->name)) {
                key_path(sub, sizeof sub, path, k->name);
                return fail(x, g, sub, "required key is missing");
            }
    return 0;
}

/* A plugin's key table is code, not config; still, a broken one must not make getters
 * return nonsense. Returns NULL, or what is wrong (in buf). */
static const char *schema_problem(const struct config_key *keys, unsigned depth, char *buf,
                                  size_t size) {
    char q[QUOTE_MAX];
    if (depth > CONFIG_SCHEMA_DEPTH_MAX)
        return "groups nested too deep";
    for (const struct config_key *k = keys; k && k->name; k++) {
        const char *d = k->default_value;
        const char *bad = NULL;
        switch (k->type) {
        case CONFIG_T_STRING:
        case CONFIG_T_STRING_LIST:
            break;
        case CONFIG_T_INT: {
            int64_t lo = k->min, hi = k->max;
            if (lo == 0 && hi == 0)
                hi = INT32_MAX;
            if (lo > hi) {
                snprintf(buf, size, "key %s: min > max", k->name);
                return buf;
            }
            if (d) {
                char *end;
                errno = 0;
                long long v = strtoll(d, &end, 10);
                if (errno || end == d || *end || v < lo || v > hi)
                    bad = "an integer in range";
            }
            break;
        }
        case CONFIG_T_BOOL:
            if (d && strcmp(d, "true") != 0 && strcmp(d, "false") != 0)
                bad = "true or false";
            break;
        case CONFIG_T_FLOAT:
            if (d) {
                char *end;
                errno = 0;
                double v = strtod(d, &end);
                if (errno || end == d || *end || !isfinite(v))
                    bad = "a number";
            }
            break;
        case CONFIG_T_DURATION: {
            uint64_t u;
            if (d && duration_parse(d, &u) < 0)
                bad = "a duration";
            break;
        }
        case CONFIG_T_GROUP: {
            if (!k->group_keys || d) {
                snprintf(buf, size, "key %s: a group needs group_keys and no default", k->name);
                return buf;
            }
            const char *p = schema_problem(k->group_keys, depth + 1, buf, size);
            if (p)
                return p;
            break;
        }
        default:
            snprintf(buf, size, "key %s: unknown type %d", k->name, (int)k->type);
            return buf;
        }
        if (bad) {
            snprintf(buf, size, "key %s: default %s is not %s", k->name, conftext_quote(d, q, sizeof q),
                     bad);
            return buf;
        }
    }
    return NULL;
}

/* ---- node getters -------------------------------------------------------------------- */

static const config_setting_t *node_member(const struct config_node *n, const char *key) {
    if (!n || !key)
        return NULL;
    const config_setting_t *s = n->setting;
    const char *dot;
    char seg[KEY_PATH_MAX];
    /* A dotted path ("rotation.strategy"): one group per segment. */
    while (s && (dot = strchr(key, '.'))) {
        size_t len = (size_t)(dot - key);
        if (len == 0 || len >= sizeof seg)
            return NULL;
        memcpy(seg, key, len);
        seg[len] = '\0';
        s = member(s, seg);
        key = dot + 1;
    }
    return member(s, key);
}

static const char *node_default(const struct config_node *n, const char *key) {
    const struct config_key *k = n ? find_key(n->keys, key) : NULL;
    return k ? k->default_value : NULL;
}

/* Same value: type (any integer width), scalar, and every element or member. */
static bool setting_equal(const config_setting_t *a, const config_setting_t *b) {
    if (!a || !b)
        return a == b;
    if (is_int(a) || is_int(b))
        return is_int(a) && is_int(b) && setting_int(a) == setting_int(b);
    int t = config_setting_type(a);
    if (t != config_setting_type(b))
        return false;
    switch (t) {
    case CONFIG_TYPE_FLOAT: return config_setting_get_float(a) == config_setting_get_float(b);
    case CONFIG_TYPE_BOOL: return config_setting_get_bool(a) == config_setting_get_bool(b);
    case CONFIG_TYPE_STRING: return strcmp(config_setting_get_string(a), config_setting_get_string(b)) == 0;
    default: break;
    }
    int n = config_setting_length(a);
    if (n != config_setting_length(b))
        return false;
    for (int i = 0; i < n; i++) {
        const config_setting_t *ea = config_setting_get_elem(a, (unsigned)i);
        const config_setting_t *eb = t == CONFIG_TYPE_GROUP
                                         ? config_setting_get_member(b, config_setting_name(ea))
                                         : config_setting_get_elem(b, (unsigned)i);
        if (!setting_equal(ea, eb))
            return false;
    }
    return true;
}

bool config_node_same(const struct config_node *a, const struct config_node *b) {
    if (a->keys != b->keys)
        return false;
    for (const struct config_key *k = a->keys; k && k->name; k++)
        if (!setting_equal(node_member(a, k->name), node_member(b, k->name)))
            return false;
    return true;
}

bool config_node_has(const struct config_node *n, const char *key) {
    return node_member(n, key) != NULL;
}

const char *config_node_string(const struct config_node *n, const char *key) {
    const config_setting_t *s = node_member(n, key);
    if (s && config_setting_type(s) == CONFIG_TYPE_STRING)
        return config_setting_get_string(s);
    return node_default(n, key);
}

int64_t config_node_int(const struct config_node *n, const char *key) {
    const config_setting_t *s = node_member(n, key);
    if (s && is_int(s))
        return setting_int(s);
    const char *d = node_default(n, key);
    return d ? strtoll(d, NULL, 10) : 0;
}

bool config_node_bool(const struct config_node *n, const char *key) {
    const config_setting_t *s = node_member(n, key);
    if (s && config_setting_type(s) == CONFIG_TYPE_BOOL)
        return config_setting_get_bool(s);
    const char *d = node_default(n, key);
    return d && strcmp(d, "true") == 0;
}

double config_node_float(const struct config_node *n, const char *key) {
    const config_setting_t *s = node_member(n, key);
    if (s && config_setting_type(s) == CONFIG_TYPE_FLOAT)
        return config_setting_get_float(s);
    if (s && is_int(s))
        return (double)setting_int(s);
    const char *d = node_default(n, key);
    return d ? strtod(d, NULL) : 0.0;
}

uint64_t config_node_duration(const struct config_node *n, const char *key) {
    const config_setting_t *s = node_member(n, key);
    uint64_t u;
    if (s && config_setting_type(s) == CONFIG_TYPE_STRING &&
        duration_parse(config_setting_get_string(s), &u) == 0)
        return u;
    const char *d = node_default(n, key);
    if (d && duration_parse(d, &u) == 0)
        return u;
    return 0;
}

/* A list's default_value, when set and not empty, is a list of that one string. */
size_t config_node_list_len(const struct config_node *n, const char *key) {
    const config_setting_t *s = node_member(n, key);
    if (s && is_vector(s))
        return (size_t)config_setting_length(s);
    const char *d = node_default(n, key);
    return d && *d ? 1 : 0;
}

const char *config_node_list_get(const struct config_node *n, const char *key, size_t i) {
    const config_setting_t *s = node_member(n, key);
    if (s && is_vector(s)) {
        if (i >= (size_t)config_setting_length(s))
            return NULL;
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        return config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e)
                                                            : NULL;
    }
    const char *d = node_default(n, key);
    return i == 0 && d && *d ? d : NULL;
}

void config_node_group(const struct config_node *n, const char *key, struct config_node *ret) {
    const config_setting_t *s = node_member(n, key);
    const struct config_key *k = n ? find_key(n->keys, key) : NULL;
    if (s && config_setting_type(s) != CONFIG_TYPE_GROUP)
        s = NULL;
    *ret = (struct config_node){
        .setting = s,
        .keys = k ? k->group_keys : NULL,
        .file = setting_file(s) ? setting_file(s) : (n ? n->file : NULL),
    };
}

const struct config_node *config_node_group_ref(const struct config_node *n, const char *key) {
    size_t i = 0;
    if (!n || !n->groups || !key)
        return NULL;
    for (const struct config_key *k = n->keys; k && k->name; k++)
        if (k->type == CONFIG_T_GROUP) {
            if (strcmp(k->name, key) == 0)
                return &n->groups[i];
            i++;
        }
    return NULL;
}

/* Builds n->groups (and theirs, depth-first) so plugins can hold nested nodes by pointer. */
static int node_build_groups(struct config_node *n, unsigned depth) {
    size_t count = 0, i = 0;
    for (const struct config_key *k = n->keys; k && k->name; k++)
        count += k->type == CONFIG_T_GROUP;
    if (count == 0 || depth > 8)
        return 0;
    struct config_node *g = calloc(count, sizeof *g);
    if (!g)
        return -ENOMEM;
    n->groups = g;
    for (const struct config_key *k = n->keys; k && k->name; k++)
        if (k->type == CONFIG_T_GROUP) {
            config_node_group(n, k->name, &g[i]);
            g[i].groups = NULL;
            if (node_build_groups(&g[i++], depth + 1) < 0)
                return -ENOMEM;
        }
    return 0;
}

static void node_free_groups(const struct config_node *n) {
    size_t i = 0;
    if (!n->groups)
        return;
    for (const struct config_key *k = n->keys; k && k->name; k++)
        if (k->type == CONFIG_T_GROUP)
            node_free_groups(&n->groups[i++]);
    free((void *)n->groups);
}

const char *config_node_file(const struct config_node *n, const char *key) {
    const config_setting_t *s = key ? node_member(n, key) : NULL;
    if (!s && n)
        s = n->setting;
    if (setting_file(s))
        return setting_file(s);
    return n ? n->file : NULL;
}

int config_node_line(const struct config_node *n, const char *key) {
    const config_setting_t *s = key ? node_member(n, key) : (n ? n->setting : NULL);
    return (int)setting_line(s);
}

/* ---- the host's own sections --------------------------------------------------------- */

/* ---- loading a section by its table -------------------------------------------------- */

/* The member for a message: the key's own setting, else the group's. */
static const config_setting_t *at(const struct config_node *n, const char *key) {
    const config_setting_t *m = node_member(n, key);
    return m ? m : n->setting;
}

static int check_endpoints(struct ctx *x, const struct config_node *n, const char *path,
                           const char *key) {
    char q[QUOTE_MAX], ep[KEY_PATH_MAX];
    size_t ne = config_node_list_len(n, key);
    if (ne == 0)
        return fail(x, at(n, key), path, "needs at least one endpoint (host:port)");
    for (size_t i = 0; i < ne; i++) {
        const char *e = config_node_list_get(n, key, i);
        struct endpoint parsed;
        const char *why;
        if (endpoint_parse(e, &parsed, &why) < 0) {
            index_path(ep, sizeof ep, path, (int)i);
            return fail(x, config_setting_get_elem(node_member(n, key), (unsigned)i), ep,
                        "endpoint %s %s", conftext_quote(e, q, sizeof q), why);
        }
    }
    return 0;
}

/* The checks of k's value that the text decides (CONFIG_CHECK_*, first group). */
static int check_text(struct ctx *x, const struct config_node *n, const char *path,
                      const struct config_key *k) {
    char q[QUOTE_MAX];
    if (k->checks & CONFIG_CHECK_ENDPOINT)
        return check_endpoints(x, n, path, k->name);
    if (k->checks & CONFIG_CHECK_POSITIVE && config_node_duration(n, k->name) == 0)
        return fail(x, at(n, k->name), path, "must be more than 0s");
    const char *v = k->type == CONFIG_T_STRING ? config_node_string(n, k->name) : NULL;
    /* "" means "none" where the value is optional (OPT_STRING) */
    if (!v || (v[0] == '\0' && k->store == CONFIG_STORE_OPT_STRING))
        return 0;
    bool empty_ok = k->checks & CONFIG_CHECK_EMPTY_OK;
    if (k->checks & CONFIG_CHECK_ABSOLUTE && v[0] != '/' && !(empty_ok && v[0] == '\0'))
        return fail(x, at(n, k->name), path, "%s must be an absolute path%s",
                    conftext_quote(v, q, sizeof q), empty_ok ? " or \"\"" : "");
    if (k->checks & CONFIG_CHECK_FILE_NAME && (strchr(v, '/') || v[0] == '.'))
        return fail(x, at(n, k->name), path, "%s must be a file name in the directory (no '/', "
                    "not starting with '.')", conftext_quote(v, q, sizeof q));
    return 0;
}

/* A list of words into an OR of their flags, each word at most once. */
static int store_flags(struct ctx *x, const struct config_node *n, const char *path,
                       const struct config_key *k, unsigned *ret) {
    char q[QUOTE_MAX];
    bool quoted = k->checks & CONFIG_CHECK_WORDS_QUOTED;
    *ret = 0;
    for (size_t i = 0; i < config_node_list_len(n, k->name); i++) {
        const char *w = config_node_list_get(n, k->name, i);
        int flag;
        if (enumstr_from(k->words, w, &flag) < 0)
            return unknown_word(x, node_member(n, k->name), path, k->noun, w, k->words, quoted);
        if (*ret & (unsigned)flag)
            return fail(x, node_member(n, k->name), path, "%s %s is listed twice", k->noun,
                        conftext_quote(w, q, sizeof q));
        *ret |= (unsigned)flag;
    }
    return 0;
}

static int store_strv(struct ctx *x, const struct config_node *n, const struct config_key *k,
                      char ***ret, size_t *ret_n) {
    size_t len = config_node_list_len(n, k->name);
    if (!config_node_has(n, k->name) && !k->default_value)
        return 0;   /* unset: NULL, 0 */
    if (!(*ret = calloc(len + 1, sizeof **ret)))
        return -ENOMEM;
    for (size_t i = 0; i < len; i++)
        (*ret)[i] = xdup(x, config_node_list_get(n, k->name, i));
    *ret_n = len;
    return x->oom ? -ENOMEM : 0;
}

static int load_section(struct ctx *x, const struct config_node *n, const char *path,
                        const struct config_key *keys, void *dst);

/* Keeps k's value at dst + k->offset, as k->store says. */
static int store_value(struct ctx *x, const struct config_node *n, const char *path,
                       const struct config_key *k, void *dst) {
    void *p = (char *)dst + k->offset;
    const char *s;
    switch (k->store) {
    case CONFIG_STORE_NONE: return 0;
    case CONFIG_STORE_STRING: *(char **)p = xdup(x, config_node_string(n, k->name)); break;
    case CONFIG_STORE_OPT_STRING:
        s = config_node_string(n, k->name);
        *(char **)p = s && *s ? xdup(x, s) : NULL;
        break;
    case CONFIG_STORE_BOOL: *(bool *)p = config_node_bool(n, k->name); break;
    case CONFIG_STORE_UINT: *(unsigned *)p = (unsigned)config_node_int(n, k->name); break;
    case CONFIG_STORE_USEC: *(uint64_t *)p = config_node_duration(n, k->name); break;
    case CONFIG_STORE_ENUM:
        s = config_node_string(n, k->name);
        if (enumstr_from(k->words, s, (int *)p) < 0)
            return unknown_word(x, at(n, k->name), path, k->noun, s, k->words,
                                k->checks & CONFIG_CHECK_WORDS_QUOTED);
        break;
    case CONFIG_STORE_FLAGS: return store_flags(x, n, path, k, (unsigned *)p);
    case CONFIG_STORE_STRV:
        return store_strv(x, n, k, (char ***)p, (size_t *)((char *)p + sizeof(char **)));
    case CONFIG_STORE_SECTION: {
        struct config_node sub;
        config_node_group(n, k->name, &sub);
        return load_section(x, &sub, path, k->group_keys, p);
    }
    }
    return x->oom ? -ENOMEM : 0;
}

/* Checks the values of a section whose types check_group() has checked, and keeps them in
 * dst as the table says. A plugin's table has no stores: dst is NULL, and its nested
 * groups are checked here too. The host's GROUP keys without a store (rotation) are left
 * to their section's parser. */
static int load_section(struct ctx *x, const struct config_node *n, const char *path,
                        const struct config_key *keys, void *dst) {
    char sub[KEY_PATH_MAX];
    int r;
    for (const struct config_key *k = keys; k && k->name; k++) {
        key_path(sub, sizeof sub, path, k->name);
        if (k->type == CONFIG_T_GROUP && !dst && config_node_has(n, k->name)) {
            struct config_node g;
            config_node_group(n, k->name, &g);
            if ((r = load_section(x, &g, sub, k->group_keys, NULL)) < 0)
                return r;
            continue;
        }
        if ((r = check_text(x, n, sub, k)) < 0)
            return r;
        if (dst && (r = store_value(x, n, sub, k, dst)) < 0)
            return r;
    }
    return x->oom ? -ENOMEM : 0;
}

static int parse_agent(struct ctx *x, const config_setting_t *g) {
    struct config_agent *a = &x->c->agent;
    const struct config_key *tables[] = { agent_keys };
    int r;

    if (g && (r = check_group(x, g, "agent", tables, 1, NULL, false, 0)) < 0)
        return r;
    const config_setting_t *where = g ? g : config_root_setting(&x->st->lc);
    struct config_node n = { .setting = g, .keys = agent_keys,
                             .file = setting_file(where) ? setting_file(where) : x->st->text.files[0] };
    x->c->agent_node = n;
    if ((r = load_section(x, &n, "agent", agent_keys, a)) < 0)
        return r;
    if (strlen(a->control_socket) >= UNIX_PATH_MAX_) {
        const config_setting_t *m = member(g, "control_socket");
        return fail(x, m ? m : where, "agent.control_socket",
                    "longer than %zu bytes, too long for a unix socket", UNIX_PATH_MAX_ - 1);
    }
    return 0;
}

/* name = "..." of a source or credential: present, a string, a valid name, unique among
 * the first `n_before` entries of `names`. */
static int check_entry_name(struct ctx *x, const config_setting_t *e, const char *path,
                            const char *what, const char *const *names,
                            const config_setting_t *const *where,
                            size_t n_before, const char **ret) {
    char sub[KEY_PATH_MAX], q[QUOTE_MAX];
    const config_setting_t *m = member(e, "name");
    key_path(sub, sizeof sub, path, "name");
    if (!m)
        return fail(x, e, sub, "required key is missing");
    if (config_setting_type(m) != CONFIG_TYPE_STRING)
        return wrong_type(x, m, sub, "a string");
    const char *name = config_setting_get_string(m);
    const char *why = name_problem(name);
    if (why)
        return fail(x, m, sub, "name %s %s", conftext_quote(name, q, sizeof q), why);
    for (size_t i = 0; i < n_before; i++)
        if (strcmp(names[i], name) == 0)
            return fail(x, m, sub, "duplicate %s name %s (also at %s:%u)", what,
                        conftext_quote(name, q, sizeof q), setting_file(where[i]), setting_line(where[i]));
    *ret = name;
    return 0;
}

/* type = "..." of source `name`: a valid type whose plugin gives a sound schema. */
static int source_schema(struct ctx *x, const config_setting_t *e, const char *path,
                         const char *name, const char **ret_type,
                         const struct config_key **ret_sk, const struct config_key **ret_ck) {
    char sub[KEY_PATH_MAX], q[QUOTE_MAX], why[512];
    const config_setting_t *m = member(e, "type");
    int r;

    key_path(sub, sizeof sub, path, "type");
    if (!m)
        return fail(x, e, sub, "required key is missing");
    if (config_setting_type(m) != CONFIG_TYPE_STRING)
        return wrong_type(x, m, sub, "a string");
    const char *type = config_setting_get_string(m);
    if (!config_name_valid(type))
        return fail(x, m, sub, "%s is not a valid source type", conftext_quote(type, q, sizeof q));
    *ret_type = type;
    if (!x->lookup)
        return 0;
    why[0] = '\0';
    r = x->lookup(x->userdata, x->c->agent.plugin_dir, type, ret_sk, ret_ck, why, sizeof why);
    if (r < 0) {
        fail(x, m, sub, "source %s: %s", conftext_quote(name, q, sizeof q), why[0] ? why : strerror(-r));
        return r;
    }
    const char *p = schema_problem(*ret_sk, 0, why, sizeof why);
    if (!p)
        p = schema_problem(*ret_ck, 0, why, sizeof why);
    if (p)
        return fail(x, m, sub, "the plugin's schema for type %s is broken: %s",
                    conftext_quote(type, q, sizeof q), p);
    return 0;
}

static int parse_sources(struct ctx *x, const config_setting_t *list) {
    struct config *c = x->c;
    int n = list ? config_setting_length(list) : 0;
    char path[KEY_PATH_MAX];
    int r = 0;

    if (n == 0)
        return 0;
    c->sources = calloc((size_t)n, sizeof *c->sources);
    x->cred_keys = calloc((size_t)n, sizeof *x->cred_keys);
    const config_setting_t **where = calloc((size_t)n, sizeof *where);
    const char **names = calloc((size_t)n, sizeof *names);
    if (!c->sources || !x->cred_keys || !where || !names) {
        r = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < n && r >= 0; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        struct config_source *src = &c->sources[i];
        const struct config_key *sk = NULL, *ck = NULL;
        const char *name = NULL, *type = NULL;

        index_path(path, sizeof path, "sources", i);
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            r = wrong_type(x, e, path, "a group { name = ...; type = ...; }");
            break;
        }
        if ((r = check_entry_name(x, e, path, "source", names, where, (size_t)i, &name)) < 0)
            break;
        names[i] = name;
        where[i] = member(e, "name");
        if ((r = source_schema(x, e, path, name, &type, &sk, &ck)) < 0)
            break;
        const struct config_key *tables[] = { source_host_keys, sk };
        if ((r = check_group(x, e, path, tables, 2, NULL, !x->lookup, 0)) < 0)
            break;
        c->n_sources = (size_t)i + 1;   /* from here config_free() cleans it up */
        src->name = xdup(x, name);
        src->type = xdup(x, type);
        src->node = (struct config_node){ .setting = e, .keys = sk, .file = setting_file(e) };
        x->cred_keys[i] = ck;
        r = load_section(x, &src->node, path, sk, NULL);
        if (r == 0 && node_build_groups(&src->node, 0) < 0)
            r = -ENOMEM;
    }
out:
    free(where);
    free(names);
    return r;
}

static int parse_mode(struct ctx *x, const config_setting_t *m, const char *path, int *ret) {
    char q[QUOTE_MAX];
    int64_t v = 0;
    int r;

    if (!m) {
        *ret = DEFAULT_MODE;
        return 0;
    }
    if (config_setting_type(m) == CONFIG_TYPE_STRING) {
        /* A string is always octal, like chmod's argument: "0640" or "640". */
        const char *s = config_setting_get_string(m);
        size_t i = 0;
        for (; s[i] >= '0' && s[i] <= '7' && i < 12; i++)
            v = v * 8 + (s[i] - '0');
        if (i == 0 || s[i] != '\0')
            return fail(x, m, path, "%s is not an octal file mode like \"0640\"",
                        conftext_quote(s, q, sizeof q));
        if (v > 0777)
            return fail(x, m, path, "0%llo is out of range (0..0777)", (unsigned long long)v);
    } else if (is_int(m)) {
        if ((r = literal_int(x, m, path, true, &v)) < 0)
            return r;
        const struct conftext_int *lit = setting_literal(m);
        /* A plain decimal would be a trap: `mode = 640` is 01200, `400` is 0620. */
        if (lit && !lit->leading_zero && !lit->hex && v != 0)
            return fail(x, m, path, "%s: write a file mode in octal with a leading zero "
                        "(0640) or as a string (\"0640\")", lit->text);
        if (v < 0 || v > 0777)
            return fail(x, m, path, "%s is out of range (0..0777)", lit ? lit->text : "mode");
    } else {
        return wrong_type(x, m, path, "a file mode like 0640 or \"0640\"");
    }
    *ret = (int)v;
    return 0;
}

const char *config_rotation_strategy_to_string(enum rotation_strategy s) {
    const char *name = enumstr_to(strategies, (int)s);
    return name ? name : "?";
}

bool config_rotation_claims_here(const struct config_rotation *ro) {
    char host[256] = "";
    if (!ro->rotators)
        return true;
    if (gethostname(host, sizeof host - 1) < 0)
        return false;
    for (size_t i = 0; i < ro->n_rotators; i++)
        if (strcmp(ro->rotators[i], host) == 0)
            return true;
    return false;
}

/* redis-acl-users: exactly two users, an admin to switch them, and a published username
 * (the user changes at every rotation: a consumer of the password alone would break). */
static int check_users(struct ctx *x, const struct config_node *n, const char *path,
                       const struct config_credential *cr) {
    const struct config_rotation *ro = &cr->rotation;
    const config_setting_t *g = n->setting;
    char sub[KEY_PATH_MAX];

    key_path(sub, sizeof sub, path, "users");
    if (ro->strategy != ROTATION_REDIS_ACL_USERS) {
        if (ro->users)
            return fail(x, member(g, "users"), sub, "applies to strategy \"redis-acl-users\" only");
        return 0;
    }
    if (!ro->users)
        return fail(x, g, sub, "required with strategy \"redis-acl-users\": the two ACL users "
                    "alternated, e.g. [ \"app_a\", \"app_b\" ]");
    if (ro->n_users != 2 || !ro->users[0][0] || !ro->users[1][0] ||
        strcmp(ro->users[0], ro->users[1]) == 0)
        return fail(x, member(g, "users"), sub, "must name exactly two different users");
    if (!ro->admin_username) {
        key_path(sub, sizeof sub, path, "admin_username");
        return fail(x, g, sub, "required with strategy \"redis-acl-users\": a user that may run "
                    "ACL SETUSER, ACL GETUSER, ACL LOG, CLIENT LIST and CLIENT KILL on every node "
                    "(the two users switch each other off)");
    }
    if ((cr->formats & CRED_FORMAT_PASSWORD) && !(cr->formats & ~CRED_FORMAT_PASSWORD & ~CRED_FORMAT_JSON)) {
        key_path(sub, sizeof sub, path, "strategy");
        return fail(x, g, sub, "\"redis-acl-users\" changes the username at every rotation: "
                    "formats = [ \"password\" ] alone would hand out a password without its user "
                    "(use \"json\" or \"env\", which carry the username)");
    }
    return 0;
}

/* The rules between rotation keys. */
static int check_rotation(struct ctx *x, const struct config_node *n, const char *path,
                          const struct config_credential *cr) {
    const struct config_rotation *ro = &cr->rotation;
    char sub[KEY_PATH_MAX], q[QUOTE_MAX], why[512];
    const config_setting_t *g = n->setting;
    int r;

    /* Stores that make the password themselves have no check-and-set: one named host
     * rotates, the others only observe. */
    key_path(sub, sizeof sub, path, "rotator");
    if (config_rotation_is_acl(ro->strategy) && ro->rotator)
        return fail(x, member(g, "rotator"), sub, "does not apply to strategy %s (the "
                    "store's check-and-set picks the host that rotates)",
                    conftext_quote(config_rotation_strategy_to_string(ro->strategy), q, sizeof q));
    if (!config_rotation_is_acl(ro->strategy) && (!ro->rotator || !*ro->rotator))
        return fail(x, at(n, "rotator"), sub, "required with strategy %s: the host name (as "
                    "`hostname` prints it) of the one host that rotates",
                    conftext_quote(config_rotation_strategy_to_string(ro->strategy), q, sizeof q));
    key_path(sub, sizeof sub, path, "interval");
    if (ro->interval_usec < 1000000)
        return fail(x, at(n, "interval"), sub, "must be at least 1s");
    key_path(sub, sizeof sub, path, "rotators");
    if (ro->rotators && !config_rotation_is_acl(ro->strategy))
        return fail(x, member(g, "rotators"), sub, "applies to strategies \"redis-acl\" and "
                    "\"redis-acl-users\" only (%s "
                    "takes `rotator`, the one host that rotates)",
                    conftext_quote(config_rotation_strategy_to_string(ro->strategy), q, sizeof q));
    if (ro->rotators && ro->n_rotators == 0)
        return fail(x, member(g, "rotators"), sub, "must name at least one host (leave it out to "
                    "let every host claim)");
    /* A step that still retries must never look abandoned to the other hosts. */
    key_path(sub, sizeof sub, path, "pending_timeout");
    if (ro->pending_timeout_usec <= 3 * cr->redis.timeout_usec + 10 * 1000000ull)
        return fail(x, at(n, "pending_timeout"), sub, "must be more than 3 x redis.timeout + 10s "
                    "(%llus here): a rotation step still at work must never look abandoned",
                    (unsigned long long)((3 * cr->redis.timeout_usec + 10 * 1000000ull) / 1000000));
    if (ro->admin_username && !ro->admin_password_file) {
        key_path(sub, sizeof sub, path, "admin_password_file");
        return fail(x, member(g, "admin_username"), sub, "required with admin_username (the file "
                    "holding that user's password)");
    }
    if (ro->admin_password_file && !ro->admin_username) {
        key_path(sub, sizeof sub, path, "admin_username");
        return fail(x, member(g, "admin_password_file"), sub, "required with admin_password_file "
                    "(use \"default\" for the default user)");
    }
    /* Hosts that never claim (not in `rotators`) need no admin password file. */
    if (ro->admin_password_file && x->check_files && config_rotation_claims_here(ro) &&
        secretfile_check(ro->admin_password_file, why, sizeof why) < 0) {
        key_path(sub, sizeof sub, path, "admin_password_file");
        return fail(x, member(g, "admin_password_file"), sub, "%s", why);
    }
    if ((r = check_users(x, n, path, cr)) < 0)
        return r;
    /* The agent must prove the new password works before publishing it. */
    if (cr->redis.validate == VALIDATE_NONE)
        return fail(x, g, path, "needs redis.validate = \"all\" or \"any\" (a rotated password "
                    "is published only after Redis accepted it)");
    return 0;
}

static int parse_rotation(struct ctx *x, const struct config_node *cn, const char *cpath,
                          struct config_credential *cr) {
    char path[KEY_PATH_MAX];
    struct config_node n;
    struct rotation_in in = { 0 };

    if (!config_node_has(cn, "rotation"))
        return 0;
    config_node_group(cn, "rotation", &n);
    key_path(path, sizeof path, cpath, "rotation");
    int r = load_section(x, &n, path, rotation_keys, &in);
    cr->rotation = in.ro;   /* what was kept, so that config_free() frees it */
    if (r < 0)
        return r;
    cr->rotation.alphabet = alphabet_chars[in.alphabet];   /* static: shared, never freed */
    if (!config_node_has(&n, "splay")) {
        uint64_t tenth = cr->rotation.interval_usec / 10, hour = 3600 * 1000000ull;
        cr->rotation.splay_usec = tenth < hour ? tenth : hour;
    }
    if ((r = check_rotation(x, &n, path, cr)) < 0)
        return r;
    cr->rotation.enabled = true;
    return 0;
}

/* source = "..." of a credential: the index of a source defined before. */
static int credential_source(struct ctx *x, const config_setting_t *e, const char *path,
                             size_t *ret) {
    struct config *c = x->c;
    char sub[KEY_PATH_MAX], q[QUOTE_MAX];
    const config_setting_t *m = member(e, "source");

    key_path(sub, sizeof sub, path, "source");
    if (!m)
        return fail(x, e, sub, "required key is missing");
    if (config_setting_type(m) != CONFIG_TYPE_STRING)
        return wrong_type(x, m, sub, "a string");
    const char *source = config_setting_get_string(m);
    for (size_t i = 0; i < c->n_sources; i++)
        if (strcmp(c->sources[i].name, source) == 0) {
            *ret = i;
            return 0;
        }
    return fail(x, m, sub, "no source named %s is defined in sources", conftext_quote(source, q, sizeof q));
}

/* on_change = [ "/path/to/program", args... ]: run without a shell, so the program must be
 * an absolute path, and (config_load) a file only root or the agent's user can change. */
static int check_on_change(struct ctx *x, const config_setting_t *e, const char *path,
                           const struct config_credential *cr) {
    char sub[KEY_PATH_MAX], ep[KEY_PATH_MAX], q[QUOTE_MAX], why[512];
    const config_setting_t *m = member(e, "on_change");
    if (!m)
        return 0;
    key_path(sub, sizeof sub, path, "on_change");
    if (cr->n_on_change == 0)
        return fail(x, m, sub, "needs a program to run (an absolute path), or leave it out");
    const char *prog = cr->on_change[0];
    index_path(ep, sizeof ep, sub, 0);
    if (prog[0] != '/')
        return fail(x, config_setting_get_elem(m, 0), ep,
                    "%s must be an absolute path (it runs without a shell or $PATH)",
                    conftext_quote(prog, q, sizeof q));
    if (!x->check_files)
        return 0;
    struct stat st;   /* one stat for both checks (a failing one: the trust check says why) */
    const struct stat *stp = stat(prog, &st) == 0 ? &st : NULL;
    if (secretfile_check_trusted(prog, stp, why, sizeof why) < 0)
        return fail(x, config_setting_get_elem(m, 0), ep, "%s: %s", conftext_quote(prog, q, sizeof q), why);
    /* Not executable: every publish would only log that it cannot start; say it now. */
    if (stp && (!S_ISREG(stp->st_mode) || !(stp->st_mode & 0111)))
        return fail(x, config_setting_get_elem(m, 0), ep, "%s is not an executable file (mode %04o): "
                    "chmod +x it", conftext_quote(prog, q, sizeof q), (unsigned)(stp->st_mode & 07777));
    return 0;
}

static int parse_credential(struct ctx *x, const config_setting_t *e, const char *path,
                            struct config_credential *cr) {
    char sub[KEY_PATH_MAX];
    size_t si = 0;
    int r;

    /* The source first: its type says which plugin keys the credential may have. */
    if ((r = credential_source(x, e, path, &si)) < 0)
        return r;
    const struct config_key *ck = x->cred_keys[si];
    const struct config_key *tables[] = { cred_host_keys, ck };
    if ((r = check_group(x, e, path, tables, 2, cred_extra_keys, !x->lookup, 0)) < 0)
        return r;

    struct config_node hn = { .setting = e, .keys = cred_host_keys, .file = setting_file(e) };
    cr->source = xdup(x, x->c->sources[si].name);
    cr->source_index = si;
    cr->node = (struct config_node){ .setting = e, .keys = ck, .file = setting_file(e) };
    if ((r = load_section(x, &hn, path, cred_host_keys, cr)) < 0 ||
        (r = load_section(x, &cr->node, path, ck, NULL)) < 0)
        return r;
    if (node_build_groups(&cr->node, 0) < 0)
        return -ENOMEM;

    key_path(sub, sizeof sub, path, "mode");
    if ((r = parse_mode(x, member(e, "mode"), sub, &cr->mode)) < 0)
        return r;
    if (!(cr->formats & CRED_FORMAT_JSON)) {
        key_path(sub, sizeof sub, path, "formats");
        return fail(x, at(&hn, "formats"), sub, "\"json\" is required (<name>.json is always "
                    "written; env and password come in addition)");
    }
    if ((r = check_on_change(x, e, path, cr)) < 0 || (r = parse_rotation(x, &hn, path, cr)) < 0)
        return r;
    return x->oom ? -ENOMEM : 0;
}

static int parse_credentials(struct ctx *x, const config_setting_t *list) {
    struct config *c = x->c;
    int n = list ? config_setting_length(list) : 0;
    char path[KEY_PATH_MAX];
    int r = 0;

    if (n == 0)
        return 0;
    c->credentials = calloc((size_t)n, sizeof *c->credentials);
    const config_setting_t **where = calloc((size_t)n, sizeof *where);
    const char **names = calloc((size_t)n, sizeof *names);
    if (!c->credentials || !where || !names) {
        r = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        struct config_credential *cr = &c->credentials[i];
        const char *name;

        index_path(path, sizeof path, "credentials", i);
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            r = wrong_type(x, e, path, "a group { name = ...; source = ...; redis = { ... }; }");
            goto out;
        }
        if ((r = check_entry_name(x, e, path, "credential", names, where, (size_t)i, &name)) < 0)
            goto out;
        names[i] = name;
        where[i] = member(e, "name");
        c->n_credentials = (size_t)i + 1;   /* from here config_free() cleans it up */
        cr->name = xdup(x, name);
        if ((r = parse_credential(x, e, path, cr)) < 0)
            goto out;
    }
out:
    free(where);
    free(names);
    return r;
}

static int parse_root(struct ctx *x) {
    const config_setting_t *root = config_root_setting(&x->st->lc);
    const config_setting_t *agent = NULL, *sources = NULL, *creds = NULL;
    int r;

    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *m = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(m);
        if (strcmp(name, "agent") == 0) {
            if (config_setting_type(m) != CONFIG_TYPE_GROUP)
                return wrong_type(x, m, name, "a group { ... }");
            agent = m;
        } else if (strcmp(name, "sources") == 0 || strcmp(name, "credentials") == 0) {
            if (!is_vector(m))
                return wrong_type(x, m, name, "a list ( { ... }, { ... } )");
            if (name[0] == 's')
                sources = m;
            else
                creds = m;
        } else {
            return fail(x, m, name, "unknown key");
        }
    }
    if ((r = parse_agent(x, agent)) < 0 || (r = parse_sources(x, sources)) < 0 ||
        (r = parse_credentials(x, creds)) < 0)
        return r;
    /* An empty or truncated file would otherwise delete every published credential. */
    if (x->c->n_credentials == 0 && !x->c->agent.allow_no_credentials) {
        static const char why[] = "no credentials are configured, so every published "
            "credential would be deleted (an empty or truncated file?); set "
            "agent.allow_no_credentials = true to run with none";
        if (creds)
            return fail(x, creds, "credentials", "%s", why);
        set_err(x->err, x->errlen, "%s: credentials: %s", x->st->text.files[0], why);
        return -EINVAL;
    }
    return 0;
}

/* ---- compaction ---------------------------------------------------------------------- */

/* The new tree being built: its settings' infos are copied from the old ones. */
struct compact {
    struct lc_state *st;
    size_t cap;
};

/* A member that nodes can still read: any (filter false), or a key of the credential's
 * plugin table. */
static bool compact_keeps(bool filter, const struct config_key *keys, const config_setting_t *m) {
    return !filter || (keys && find_key(keys, config_setting_name(m)) != NULL);
}

static size_t compact_count(const config_setting_t *g, const struct config_key *keys) {
    size_t n = 1;
    for (int i = 0; g && i < config_setting_length(g); i++) {
        const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        if (compact_keeps(true, keys, m))
            n += count_settings(m);
    }
    return n;
}

static bool compact_value(config_setting_t *d, const config_setting_t *s) {
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT: return config_setting_set_int(d, config_setting_get_int(s));
    case CONFIG_TYPE_INT64: return config_setting_set_int64(d, config_setting_get_int64(s));
    case CONFIG_TYPE_FLOAT: return config_setting_set_float(d, config_setting_get_float(s));
    case CONFIG_TYPE_BOOL: return config_setting_set_bool(d, config_setting_get_bool(s));
    case CONFIG_TYPE_STRING: return config_setting_set_string(d, config_setting_get_string(s));
    default: return true;
    }
}

/* Copies s under parent with its info, and its members (with filter, those of keys only;
 * all of them below). NULL when out of memory. */
static config_setting_t *compact_copy(struct compact *k, config_setting_t *parent,
                                      const config_setting_t *s, bool filter,
                                      const struct config_key *keys) {
    config_setting_t *d = config_setting_add(parent, config_setting_name(s), config_setting_type(s));
    if (!d || !compact_value(d, s) || k->st->n_infos >= k->cap)
        return NULL;
    const struct setting_info *in = info_of(s);
    if (in) {
        k->st->infos[k->st->n_infos] = *in;
        config_setting_set_hook(d, &k->st->infos[k->st->n_infos++]);
    }
    for (int i = 0; config_setting_is_aggregate(s) && i < config_setting_length(s); i++) {
        const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        if (compact_keeps(filter, keys, m) && !compact_copy(k, d, m, false, NULL))
            return NULL;
    }
    return d;
}

/* Points node n, and the nested nodes built for it, into the new tree (ns: its group). */
static void compact_remap(struct config_node *n, const config_setting_t *ns) {
    size_t i = 0;
    n->setting = ns;
    if (!n->groups)
        return;
    for (const struct config_key *key = n->keys; key && key->name; key++)
        if (key->type == CONFIG_T_GROUP) {
            const config_setting_t *m = member(ns, key->name);
            compact_remap((struct config_node *)&n->groups[i++],
                          m && config_setting_type(m) == CONFIG_TYPE_GROUP ? m : NULL);
        }
}

/* The copies of the agent group, of every source's and of every credential's (plugin
 * keys), into st's tree: root.agent, root.s[i], root.c[i]. -ENOMEM when one fails. */
static int compact_build(struct compact *k, const struct config *c) {
    config_setting_t *root = config_root_setting(&k->st->lc);
    config_setting_t *ss = config_setting_add(root, "s", CONFIG_TYPE_LIST);
    config_setting_t *cs = config_setting_add(root, "c", CONFIG_TYPE_LIST);
    if (!ss || !cs)
        return -ENOMEM;
    const config_setting_t *ag = c->agent_node.setting;
    if (ag && !compact_copy(k, root, ag, false, NULL))
        return -ENOMEM;
    for (size_t i = 0; i < c->n_sources; i++)
        if (!compact_copy(k, ss, c->sources[i].node.setting, false, NULL))
            return -ENOMEM;
    for (size_t i = 0; i < c->n_credentials; i++) {
        const struct config_node *n = &c->credentials[i].node;
        if (!compact_copy(k, cs, n->setting, true, n->keys))
            return -ENOMEM;
    }
    return 0;
}

int config_compact(struct config *c) {
    struct lc_state *old = c->lc, *st = calloc(1, sizeof *st);
    size_t cap = c->agent_node.setting ? count_settings(c->agent_node.setting) : 0;
    for (size_t i = 0; i < c->n_sources; i++)
        cap += count_settings(c->sources[i].node.setting);
    for (size_t i = 0; i < c->n_credentials; i++)
        cap += compact_count(c->credentials[i].node.setting, c->credentials[i].node.keys);
    if (!st || !(st->infos = calloc(cap ? cap : 1, sizeof *st->infos))) {
        free(st);
        return -ENOMEM;
    }
    config_init(&st->lc);
    st->lc_ready = true;
    struct compact k = { .st = st, .cap = cap };
    if (compact_build(&k, c) < 0) {
        config_destroy(&st->lc);
        free(st->infos);
        free(st);
        return -ENOMEM;
    }
    config_setting_t *root = config_root_setting(&st->lc);
    const config_setting_t *ss = member(root, "s"), *cs = member(root, "c");
    if (c->agent_node.setting)
        compact_remap(&c->agent_node, member(root, "agent"));
    for (size_t i = 0; i < c->n_sources; i++)
        compact_remap(&c->sources[i].node, config_setting_get_elem(ss, (unsigned)i));
    for (size_t i = 0; i < c->n_credentials; i++)
        compact_remap(&c->credentials[i].node, config_setting_get_elem(cs, (unsigned)i));
    st->text = old->text;   /* infos point at its files and literals */
    old->text = (struct conftext){ 0 };
    c->lc = st;
    config_destroy(&old->lc);
    free(old->infos);
    free(old);
    return 0;
}

/* ---- load / free --------------------------------------------------------------------- */

struct config *config_free(struct config *c) {
    if (!c)
        return NULL;
    free(c->file);
    free(c->agent.runtime_dir);
    free(c->agent.state_dir);
    free(c->agent.group);
    free(c->agent.plugin_dir);
    free(c->agent.control_socket);
    free(c->agent.control_group);
    free(c->agent.metrics_file);
    for (size_t i = 0; i < c->n_sources; i++) {
        free(c->sources[i].name);
        free(c->sources[i].type);
        node_free_groups(&c->sources[i].node);
    }
    free(c->sources);
    for (size_t i = 0; i < c->n_credentials; i++) {
        struct config_credential *cr = &c->credentials[i];
        free(cr->name);
        free(cr->source);
        free(cr->group);
        node_free_groups(&cr->node);
        for (size_t k = 0; k < cr->redis.n_endpoints; k++)
            free(cr->redis.endpoints[k]);
        free(cr->redis.endpoints);
        free(cr->redis.tls.ca_file);
        free(cr->redis.tls.ca_path);
        free(cr->redis.tls.cert_file);
        free(cr->redis.tls.key_file);
        free(cr->redis.tls.server_name);
        for (size_t k = 0; k < cr->n_on_change; k++)
            free(cr->on_change[k]);
        free(cr->on_change);
        free(cr->rotation.admin_username);
        free(cr->rotation.admin_password_file);
        free(cr->rotation.rotator);
        for (size_t k = 0; k < cr->rotation.n_rotators; k++)
            free(cr->rotation.rotators[k]);
        free(cr->rotation.rotators);
        for (size_t k = 0; k < cr->rotation.n_users; k++)
            free(cr->rotation.users[k]);
        free(cr->rotation.users);
    }
    free(c->credentials);
    struct lc_state *st = c->lc;
    if (st) {
        if (st->lc_ready)
            config_destroy(&st->lc);
        conftext_done(&st->text);
        free(st->infos);
        free(st);
    }
    free(c);
    return NULL;
}

/* libconfig parses the expanded text; every setting then gets its info. */
static int parse_text(struct lc_state *st, const char *out, const char *display, char *err,
                      size_t errlen) {
    config_init(&st->lc);
    st->lc_ready = true;
    if (!config_read_string(&st->lc, out)) {
        unsigned f, l;
        conftext_map_line(&st->text, (unsigned)config_error_line(&st->lc), &f, &l);
        set_err(err, errlen, "%s:%u: %s", config_error_file(&st->lc) ? config_error_file(&st->lc)
                                                                      : st->text.files[f],
                l, config_error_text(&st->lc));
        return -EINVAL;
    }
    size_t next = 0;
    config_setting_t *root = config_root_setting(&st->lc);
    if (!(st->infos = calloc(count_settings(root), sizeof *st->infos)))
        return -ENOMEM;
    int r = annotate(st, root, &next);
    if (r == 0 && next != st->text.n_ints)
        r = -EPROTO;
    if (r < 0)
        set_err(err, errlen, "%s: internal error: integer literals do not match the parsed "
                "settings (please report this configuration)", display);
    return r;
}

static int load_text(const char *text, size_t len, const char *display, const char *include_dir,
                     bool check_files, config_schema_lookup lookup, void *userdata,
                     struct config **ret, char *err, size_t errlen) {
    struct config *c = calloc(1, sizeof *c);
    struct lc_state *st = calloc(1, sizeof *st);
    char *out = NULL;
    int r;

    if (!c || !st) {
        free(c);
        free(st);
        set_err(err, errlen, "%s: out of memory", display);
        return -ENOMEM;
    }
    c->lc = st;
    if (!(c->file = strdup(display))) {
        r = -ENOMEM;
        goto fail;
    }
    if ((r = conftext_expand(&st->text, text, len, display, include_dir, check_files, &out, err,
                             errlen)) < 0 ||
        (r = parse_text(st, out, display, err, errlen)) < 0)
        goto fail;
    free(out);
    out = NULL;

    struct ctx x = { .c = c, .st = st, .lookup = lookup, .userdata = userdata,
                     .check_files = check_files, .err = err, .errlen = errlen };
    r = parse_root(&x);
    free(x.cred_keys);
    if (r == 0 && x.oom)
        r = -ENOMEM;
    if (r < 0)
        goto fail;
    *ret = c;
    return 0;
fail:
    if (r == -ENOMEM)
        set_err(err, errlen, "%s: out of memory", display);
    free(out);
    config_free(c);
    return r;
}

int config_load_string(const char *text, const char *display_name, const char *include_dir,
                       config_schema_lookup lookup, void *userdata, struct config **ret,
                       char *err, size_t errlen) {
    const char *name = display_name ? display_name : "<string>";
    size_t len = text ? strnlen(text, CONFTEXT_FILE_MAX + 1) : 0;
    if (len > CONFTEXT_FILE_MAX) {
        set_err(err, errlen, "%s: larger than %d bytes", name, CONFTEXT_FILE_MAX);
        return -EFBIG;
    }
    return load_text(text ? text : "", len, name, include_dir, false, lookup, userdata, ret, err,
                     errlen);
}

int config_load(const char *path, config_schema_lookup lookup, void *userdata,
                struct config **ret, char *err, size_t errlen) {
    char why[256];
    char *text = NULL, *dir = NULL;
    size_t len;
    int r;

    if (!path || !*path) {
        set_err(err, errlen, "no configuration file given");
        return -EINVAL;
    }
    r = conftext_read_file(path, CONFTEXT_FILE_MAX, true, &text, &len, why, sizeof why);
    if (r < 0) {
        set_err(err, errlen, "%s: %s", path, why);
        return r;
    }
    /* Relative @include paths resolve against the directory of the main file. */
    const char *slash = strrchr(path, '/');
    if (slash) {
        dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
        if (!dir) {
            free(text);
            set_err(err, errlen, "%s: out of memory", path);
            return -ENOMEM;
        }
    }
    r = load_text(text, len, path, dir, true, lookup, userdata, ret, err, errlen);
    free(dir);
    free(text);
    return r;
}
