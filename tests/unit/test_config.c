/* Unit tests for common/config.c.
 *
 * A fake schema lookup serves two source types: "file" (as the real plugin declares it:
 * `directory` required at source level, `path` required per credential) and "fake", with
 * float, int (one of them wider than int32), bool, duration, list and nested group keys.
 * "broken" has a malformed default; every other type is refused like a missing plugin.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "duration.h"
#include "enumstr.h"

/* ---- fake plugin schemas ---------------------------------------------------------------- */

static const struct config_key file_source_keys[] = {
    { .name = "directory", .type = CONFIG_T_STRING, .required = true },
    { .name = NULL },
};
static const struct config_key file_credential_keys[] = {
    { .name = "path", .type = CONFIG_T_STRING, .required = true },
    { .name = NULL },
};

static const struct config_key fake_auth_keys[] = {
    { .name = "method", .type = CONFIG_T_STRING, .required = true },
    { .name = "retries", .type = CONFIG_T_INT, .default_value = "3", .min = 0, .max = 10 },
    { .name = "token_file", .type = CONFIG_T_STRING },
    { .name = NULL },
};
static const struct config_key fake_source_keys[] = {
    { .name = "address", .type = CONFIG_T_STRING, .default_value = "https://fake.invalid" },
    { .name = "ratio", .type = CONFIG_T_FLOAT, .default_value = "0.7" },
    { .name = "verbose", .type = CONFIG_T_BOOL, .default_value = "false" },
    { .name = "limit", .type = CONFIG_T_INT, .default_value = "100", .min = 1,
      .max = 5000000000LL },
    { .name = "offset", .type = CONFIG_T_INT, .default_value = "-5", .min = -10, .max = 10 },
    { .name = "timeout", .type = CONFIG_T_DURATION, .default_value = "10s" },
    { .name = "tags", .type = CONFIG_T_STRING_LIST },
    { .name = "auth", .type = CONFIG_T_GROUP, .group_keys = fake_auth_keys },
    { .name = NULL },
};
static const struct config_key fake_inner_keys[] = {
    { .name = "flag", .type = CONFIG_T_BOOL, .default_value = "true" },
    { .name = "margin", .type = CONFIG_T_DURATION, .default_value = "3m" },
    { .name = NULL },
};
static const struct config_key fake_options_keys[] = {
    { .name = "depth", .type = CONFIG_T_INT, .default_value = "2" },
    { .name = "inner", .type = CONFIG_T_GROUP, .group_keys = fake_inner_keys },
    { .name = NULL },
};
static const struct config_key fake_credential_keys[] = {
    { .name = "path", .type = CONFIG_T_STRING },
    { .name = "weight", .type = CONFIG_T_FLOAT, .default_value = "1.5" },
    { .name = "fields", .type = CONFIG_T_STRING_LIST, .default_value = "password" },
    { .name = "options", .type = CONFIG_T_GROUP, .group_keys = fake_options_keys },
    { .name = NULL },
};

static const struct config_key broken_source_keys[] = {
    { .name = "timeout", .type = CONFIG_T_DURATION, .default_value = "10 seconds" },
    { .name = NULL },
};

struct lookup_log {
    int calls;
    char plugin_dir[256];
};

static int fake_lookup(void *userdata, const char *plugin_dir, const char *type,
                       const struct config_key **ret_source_keys,
                       const struct config_key **ret_credential_keys, char *err, size_t errlen) {
    struct lookup_log *log = userdata;
    if (log) {
        log->calls++;
        snprintf(log->plugin_dir, sizeof log->plugin_dir, "%s", plugin_dir);
    }
    if (strcmp(type, "file") == 0) {
        *ret_source_keys = file_source_keys;
        *ret_credential_keys = file_credential_keys;
        return 0;
    }
    if (strcmp(type, "fake") == 0) {
        *ret_source_keys = fake_source_keys;
        *ret_credential_keys = fake_credential_keys;
        return 0;
    }
    if (strcmp(type, "broken") == 0) {
        *ret_source_keys = broken_source_keys;
        *ret_credential_keys = NULL;
        return 0;
    }
    snprintf(err, errlen, "no plugin serves type \"%s\" (looked in %s)", type, plugin_dir);
    return -ENOENT;
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* Configs that test other things and have no credentials say so (D2: else an error). */
#define NO_CREDS_OK "allow_no_credentials = true;"
#define NO_CREDS_AGENT "agent = { " NO_CREDS_OK " };\n"

static char err[2048];
static struct lookup_log lookups;

static struct config *load_ok(const char *text) {
    struct config *c = NULL;
    err[0] = '\0';
    int r = config_load_string(text, "agent.conf", NULL, fake_lookup, &lookups, &c, err,
                               sizeof err);
    if (r != 0)
        print_error("unexpected error %d: %s\n", r, err);
    assert_int_equal(r, 0);
    assert_non_null(c);
    return c;
}

/* Loading fails with exactly `want` as the message. */
static void expect_error(const char *text, const char *want) {
    struct config *c = (struct config *)0x1;   /* must stay untouched */
    err[0] = '\0';
    int r = config_load_string(text, "agent.conf", NULL, fake_lookup, &lookups, &c, err,
                               sizeof err);
    if (r == 0 || strcmp(err, want) != 0)
        print_error("text:\n%s\nwant: %s\ngot (%d): %s\n", text, want, r, err);
    assert_true(r < 0);
    assert_ptr_equal(c, (struct config *)0x1);
    assert_string_equal(err, want);
}

/* Loading fails and the message contains `part`. */
static void expect_error_part(const char *text, const char *part) {
    struct config *c = NULL;
    err[0] = '\0';
    int r = config_load_string(text, "agent.conf", NULL, fake_lookup, &lookups, &c, err,
                               sizeof err);
    if (r == 0 || !strstr(err, part))
        print_error("text:\n%s\nwant part: %s\ngot (%d): %s\n", text, part, r, err);
    assert_true(r < 0);
    assert_null(c);
    assert_non_null(strstr(err, part));
}

#define SRC_LOCAL \
    "sources = ( { name = \"local\"; type = \"file\"; directory = \"/srv/secrets\"; } );\n"
#define SRC_FAKE "sources = ( { name = \"f\"; type = \"fake\"; } );\n"

/* A config with one credential whose body (after name and source) is `body`; line 1 is
 * the source, line 2 opens the credential, `body` starts on line 3. */
static char *one_cred(const char *sources, const char *source, const char *body) {
    char *s;
    assert_true(asprintf(&s,
                         "%s"
                         "credentials = ( { name = \"cache\"; source = \"%s\";\n"
                         "%s\n"
                         "} );\n",
                         sources, source, body) > 0);
    return s;
}

#define REDIS_OK "redis = { endpoints = [ \"127.0.0.1:6379\" ]; };"

static void expect_cred_error(const char *body, const char *want) {
    char *text = one_cred(SRC_LOCAL, "local", body);
    expect_error(text, want);
    free(text);
}

static struct config *load_cred(const char *body) {
    char *text = one_cred(SRC_LOCAL, "local", body);
    struct config *c = load_ok(text);
    free(text);
    return c;
}

/* ---- a good config ---------------------------------------------------------------------- */

static const char full_config[] =
    "# redis-creds test configuration\n"                                              /* 1 */
    "agent = {\n"                                                                      /* 2 */
    "  runtime_dir = \"/tmp/rc/run\";\n"                                               /* 3 */
    "  state_dir = \"/tmp/rc/state\";\n"                                               /* 4 */
    "  group = \"\";\n"                                                                /* 5 */
    "  plugin_dir = \"/tmp/rc/plugins\";\n"                                            /* 6 */
    "  control_socket = \"/tmp/rc/control.sock\";\n"                                   /* 7 */
    "  log_level = \"debug\";\n"                                                       /* 8 */
    "  metrics_file = \"/tmp/rc/metrics.prom\";\n"                                     /* 9 */
    "  workers = 8;\n"                                                                 /* 10 */
    "  startup_timeout = \"45s\";\n"                                                   /* 11 */
    "};\n"                                                                             /* 12 */
    "sources = (\n"                                                                    /* 13 */
    "  { name = \"local\"; type = \"file\"; directory = \"/etc/redis-creds/secrets\"; },\n" /* 14 */
    "  { name = \"fake-1\"; type = \"fake\"; address = \"https://fake.example:8200\";\n"  /* 15 */
    "    ratio = 1; verbose = true; limit = 3000000000; timeout = \"1500ms\";\n"        /* 16 */
    "    auth = { method = \"approle\"; retries = 5; };\n"                             /* 17 */
    "    tags = [ \"a\", \"b\" ]; }\n"                                                 /* 18 */
    ");\n"                                                                             /* 19 */
    "credentials = (\n"                                                                /* 20 */
    "  { name = \"cache\"; source = \"local\"; path = \"cache.json\";\n"               /* 21 */
    "    poll_interval = \"5m\"; group = \"app\"; mode = 0600;\n"                      /* 22 */
    "    redis = { endpoints = [ \"redis-1.internal:6379\", \"[::1]:6380\",\n"         /* 23 */
    "                            \"unix:/run/redis/redis.sock\" ];\n"                  /* 24 */
    "              cluster = true; tls = true; ca_file = \"/etc/ssl/ca.pem\";\n"       /* 25 */
    "              ca_path = \"/etc/ssl/certs\"; cert_file = \"/etc/ssl/c.pem\";\n"    /* 26 */
    "              key_file = \"/etc/ssl/k.pem\"; server_name = \"redis.internal\";\n" /* 27 */
    "              tls_insecure_skip_verify = true; validate = \"any\";\n"             /* 28 */
    "              timeout = \"250ms\"; revalidate_interval = \"0s\"; };\n"          /* 29 */
    "    formats = [ \"json\", \"env\", \"password\" ];\n"                             /* 30 */
    "    on_change = [ \"/usr/local/bin/app-reload\", \"--graceful\" ]; },\n"          /* 31 */
    "  { name = \"sessions\"; source = \"fake-1\"; path = \"secret/redis/sessions\";\n" /* 32 */
    "    weight = 2; options = { inner = { margin = \"90s\"; }; };\n"                  /* 33 */
    "    redis = { endpoints = ( \"10.0.0.1:6379\" ); validate = \"none\"; }; }\n"     /* 34 */
    ");\n";                                                                            /* 35 */

static void test_full_config_loads_every_value(void **state) {
    struct config *c = load_ok(full_config);

    assert_string_equal(c->file, "agent.conf");
    assert_string_equal(c->agent.runtime_dir, "/tmp/rc/run");
    assert_string_equal(c->agent.state_dir, "/tmp/rc/state");
    assert_string_equal(c->agent.group, "");
    assert_string_equal(c->agent.plugin_dir, "/tmp/rc/plugins");
    assert_string_equal(c->agent.control_socket, "/tmp/rc/control.sock");
    assert_int_equal(c->agent.log_level, LOG_DEBUG);
    assert_string_equal(c->agent.metrics_file, "/tmp/rc/metrics.prom");
    assert_int_equal(c->agent.workers, 8);
    assert_true(c->agent.startup_timeout_usec == 45 * USEC_PER_SEC);

    assert_int_equal(c->n_sources, 2);
    assert_string_equal(c->sources[0].name, "local");
    assert_string_equal(c->sources[0].type, "file");
    assert_string_equal(config_node_string(&c->sources[0].node, "directory"),
                        "/etc/redis-creds/secrets");
    assert_string_equal(config_node_string(&c->sources[0].node, "name"), "local");
    assert_ptr_equal(c->sources[0].node.keys, file_source_keys);
    assert_string_equal(c->sources[1].name, "fake-1");
    assert_string_equal(c->sources[1].type, "fake");

    assert_int_equal(c->n_credentials, 2);
    const struct config_credential *a = &c->credentials[0];
    assert_string_equal(a->name, "cache");
    assert_string_equal(a->source, "local");
    assert_int_equal(a->source_index, 0);
    assert_true(a->poll_interval_usec == 300 * USEC_PER_SEC);
    assert_string_equal(a->group, "app");
    assert_int_equal(a->mode, 0600);
    assert_int_equal(a->redis.n_endpoints, 3);
    assert_string_equal(a->redis.endpoints[0], "redis-1.internal:6379");
    assert_string_equal(a->redis.endpoints[1], "[::1]:6380");
    assert_string_equal(a->redis.endpoints[2], "unix:/run/redis/redis.sock");
    assert_true(a->redis.cluster);
    assert_true(a->redis.tls.enabled);
    assert_string_equal(a->redis.tls.ca_file, "/etc/ssl/ca.pem");
    assert_string_equal(a->redis.tls.ca_path, "/etc/ssl/certs");
    assert_string_equal(a->redis.tls.cert_file, "/etc/ssl/c.pem");
    assert_string_equal(a->redis.tls.key_file, "/etc/ssl/k.pem");
    assert_string_equal(a->redis.tls.server_name, "redis.internal");
    assert_true(a->redis.tls.insecure_skip_verify);
    assert_int_equal(a->redis.validate, VALIDATE_ANY);
    assert_true(a->redis.timeout_usec == 250 * USEC_PER_MSEC);
    assert_true(a->redis.revalidate_interval_usec == 0);   /* "0s": off */
    assert_int_equal(a->formats, CRED_FORMAT_JSON | CRED_FORMAT_ENV | CRED_FORMAT_PASSWORD);
    assert_int_equal(a->n_on_change, 2);
    assert_string_equal(a->on_change[0], "/usr/local/bin/app-reload");
    assert_string_equal(a->on_change[1], "--graceful");
    assert_null(a->on_change[2]);
    assert_string_equal(config_node_string(&a->node, "path"), "cache.json");
    assert_ptr_equal(a->node.keys, file_credential_keys);
    assert_int_equal(config_node_line(&a->node, NULL), 21);
    assert_int_equal(config_node_line(&a->node, "path"), 21);
    assert_int_equal(config_node_line(&a->node, "mode"), 22);
    assert_int_equal(config_node_line(&a->node, "nope"), 0);
    assert_string_equal(a->node.file, "agent.conf");

    const struct config_credential *b = &c->credentials[1];
    assert_string_equal(b->name, "sessions");
    assert_int_equal(b->source_index, 1);
    assert_int_equal(b->redis.n_endpoints, 1);
    assert_string_equal(b->redis.endpoints[0], "10.0.0.1:6379");
    assert_int_equal(b->redis.validate, VALIDATE_NONE);
    assert_true(b->poll_interval_usec == 30 * USEC_PER_SEC);
    assert_null(b->group);
    assert_int_equal(b->mode, 0640);
    assert_int_equal(b->formats, CRED_FORMAT_JSON);
    assert_null(b->on_change);
    assert_int_equal(b->n_on_change, 0);
    config_free(c);
}

static void test_empty_config_gives_documented_agent_defaults(void **state) {
    struct config *c = load_ok("agent = { allow_no_credentials = true; };\n");
    assert_false(c->agent.allow_removals);
    assert_string_equal(c->agent.runtime_dir, "/run/redis-creds");
    assert_string_equal(c->agent.state_dir, "/var/lib/redis-creds");
    assert_string_equal(c->agent.group, "redis-creds");
    assert_string_equal(c->agent.plugin_dir, RC_DEFAULT_PLUGIN_DIR);
    assert_string_equal(c->agent.control_socket, "/run/redis-creds-agent/control.sock");
    assert_int_equal(c->agent.log_level, LOG_INFO);
    assert_string_equal(c->agent.metrics_file, "");
    assert_int_equal(c->agent.workers, 4);
    assert_true(c->agent.startup_timeout_usec == 30 * USEC_PER_SEC);
    assert_int_equal(c->n_sources, 0);
    assert_int_equal(c->n_credentials, 0);
    config_free(c);

    c = load_ok("agent = { allow_no_credentials = true; };\nsources = ();\ncredentials = ();\n");
    assert_int_equal(c->agent.workers, 4);
    assert_int_equal(c->n_sources, 0);
    config_free(c);
}

static void test_credential_defaults_apply_when_keys_are_unset(void **state) {
    struct config *c = load_cred("path = \"x\"; " REDIS_OK);
    const struct config_credential *cr = &c->credentials[0];
    assert_true(cr->poll_interval_usec == 30 * USEC_PER_SEC);
    assert_null(cr->group);
    assert_int_equal(cr->mode, 0640);
    assert_int_equal(cr->formats, CRED_FORMAT_JSON);
    assert_null(cr->on_change);
    assert_false(cr->redis.cluster);
    assert_false(cr->redis.tls.enabled);
    assert_null(cr->redis.tls.ca_file);
    assert_null(cr->redis.tls.ca_path);
    assert_null(cr->redis.tls.cert_file);
    assert_null(cr->redis.tls.key_file);
    assert_null(cr->redis.tls.server_name);
    assert_false(cr->redis.tls.insecure_skip_verify);
    assert_int_equal(cr->redis.validate, VALIDATE_ALL);
    assert_true(cr->redis.timeout_usec == 2 * USEC_PER_SEC);
    assert_true(cr->redis.revalidate_interval_usec == 300 * USEC_PER_SEC);   /* 5m */
    config_free(c);
}

static void test_empty_tls_strings_mean_unset_and_empty_group_is_kept(void **state) {
    struct config *c = load_cred("path = \"x\"; group = \"\";\n"
                                 "redis = { endpoints = [ \"h:1\" ]; ca_file = \"\"; "
                                 "server_name = \"\"; };");
    assert_null(c->credentials[0].redis.tls.ca_file);
    assert_null(c->credentials[0].redis.tls.server_name);
    assert_string_equal(c->credentials[0].group, "");
    config_free(c);
}

/* ---- errors ---------------------------------------------------------------------------- */

static void test_unknown_key_names_file_line_and_key(void **state) {
    expect_error("agent = { workers = 2; };\nbogus = 1;\n", "agent.conf:2: bogus: unknown key");
    expect_error("agent = {\n  workers = 2;\n  wrokers = 3;\n};\n",
                 "agent.conf:3: agent.wrokers: unknown key");
    expect_error("sources = ( { name = \"local\"; type = \"file\";\n"
                 "  directory = \"/srv\"; dirctory = \"/x\"; } );\n",
                 "agent.conf:2: sources[0].dirctory: unknown key");
    expect_cred_error("path = \"x\"; " REDIS_OK " colour = \"red\";",
                      "agent.conf:3: credentials[0].colour: unknown key");
    expect_cred_error("path = \"x\";\nredis = { endpoints = [ \"h:1\" ]; tsl = true; };",
                      "agent.conf:4: credentials[0].redis.tsl: unknown key");
}

static void test_unknown_key_in_nested_plugin_group_is_error(void **state) {
    char *t = one_cred(SRC_FAKE, "f",
                       REDIS_OK "\noptions = { inner = {\n flag = true; bogus = 1; }; };");
    expect_error(t, "agent.conf:5: credentials[0].options.inner.bogus: unknown key");
    free(t);
    expect_error("sources = ( { name = \"f\"; type = \"fake\";\n"
                 "  auth = { method = \"x\"; secret = \"y\"; }; } );\n",
                 "agent.conf:2: sources[0].auth.secret: unknown key");
}

static void test_a_key_of_another_source_type_is_unknown(void **state) {
    /* `directory` belongs to type file, not to fake. */
    expect_error("sources = ( { name = \"f\"; type = \"fake\"; directory = \"/srv\"; } );\n",
                 "agent.conf:1: sources[0].directory: unknown key");
}

static void test_wrong_type_says_what_was_expected_and_found(void **state) {
    expect_error("agent = { runtime_dir = 5; };\n",
                 "agent.conf:1: agent.runtime_dir: expected a string, got an integer");
    expect_error("agent = { workers = \"4\"; };\n",
                 "agent.conf:1: agent.workers: expected an integer, got a string");
    expect_error("agent = { workers = 4.0; };\n",
                 "agent.conf:1: agent.workers: expected an integer, got a float");
    expect_error("agent = \"x\";\n", "agent.conf:1: agent: expected a group { ... }, got a string");
    expect_error("sources = { };\n",
                 "agent.conf:1: sources: expected a list ( { ... }, { ... } ), got a group");
    expect_error("sources = ( \"local\" );\n",
                 "agent.conf:1: sources[0]: expected a group { name = ...; type = ...; }, got a string");
    expect_error("agent = { startup_timeout = 30; };\n",
                 "agent.conf:1: agent.startup_timeout: expected a duration string like \"30s\", "
                 "got an integer");
    expect_cred_error("path = \"x\";\nredis = { endpoints = [ \"h:1\" ]; tls = \"yes\"; };",
                      "agent.conf:4: credentials[0].redis.tls: expected a boolean (true or false), "
                      "got a string");
    expect_cred_error("path = \"x\";\nredis = { endpoints = \"h:1\"; };",
                      "agent.conf:4: credentials[0].redis.endpoints: expected a list of strings "
                      "like [ \"a\", \"b\" ], got a string");
    expect_cred_error("path = \"x\";\nredis = { endpoints = ( \"h:1\", 5 ); };",
                      "agent.conf:4: credentials[0].redis.endpoints[1]: expected a string, got an "
                      "integer");
    expect_cred_error("path = \"x\"; redis = 1;",
                      "agent.conf:3: credentials[0].redis: expected a group { ... }, got an integer");
    expect_error("sources = ( { name = \"f\"; type = \"fake\"; verbose = 1; } );\n",
                 "agent.conf:1: sources[0].verbose: expected a boolean (true or false), got an integer");
    expect_error("sources = ( { name = \"f\"; type = \"fake\"; ratio = \"0.5\"; } );\n",
                 "agent.conf:1: sources[0].ratio: expected a number, got a string");
}

static void test_bad_duration_names_key_and_units(void **state) {
    expect_cred_error("path = \"x\";\nredis = { endpoints = [ \"h:1\" ];\n timeout = \"5x\"; };",
                      "agent.conf:5: credentials[0].redis.timeout: bad duration \"5x\" (use a "
                      "number and a unit: ms, s, m, h, d)");
    expect_cred_error("path = \"x\"; poll_interval = \"30\"; " REDIS_OK,
                      "agent.conf:3: credentials[0].poll_interval: bad duration \"30\" (use a "
                      "number and a unit: ms, s, m, h, d)");
    expect_error("agent = { startup_timeout = \"99999999999999d\"; };\n",
                 "agent.conf:1: agent.startup_timeout: duration \"99999999999999d\" is too large");
    expect_error("sources = ( { name = \"f\"; type = \"fake\"; timeout = \"1.5s\"; } );\n",
                 "agent.conf:1: sources[0].timeout: bad duration \"1.5s\" (use a number and a "
                 "unit: ms, s, m, h, d)");
}

/* An empty or truncated file must not make the agent delete every published file. */
static void test_config_without_credentials_is_an_error_unless_allowed(void **state) {
    static const char why[] = "no credentials are configured, so every published credential "
        "would be deleted (an empty or truncated file?); set agent.allow_no_credentials = true "
        "to run with none";
    char want[512];
    snprintf(want, sizeof want, "agent.conf: credentials: %s", why);
    expect_error("", want);
    expect_error("agent = { workers = 2; };\n" SRC_LOCAL, want);
    snprintf(want, sizeof want, "agent.conf:2: credentials: %s", why);
    expect_error(SRC_LOCAL "credentials = ( );\n", want);
    struct config *c = load_ok(SRC_LOCAL "credentials = ( );\n"
                               "agent = { allow_no_credentials = true; allow_removals = true; };\n");
    assert_true(c->agent.allow_no_credentials);
    assert_true(c->agent.allow_removals);
    assert_int_equal(c->n_credentials, 0);
    config_free(c);
}

/* A reload keeps a source open only when its settings are the same (D10). */
static void test_config_node_same_compares_values_not_layout(void **state) {
    static const char *const texts[] = {
        /* 0, 1: the same settings, written differently */
        "sources = ( { name = \"f\"; type = \"fake\"; limit = 7; tags = [ \"a\", \"b\" ];\n"
        "  auth = { method = \"m\"; retries = 2; }; } );\n",
        "# another layout\nsources = ( { type = \"fake\";\n\n name = \"f\"; auth = { retries = 0x2;\n"
        "  method = \"m\"; }; tags = [ \"a\", \"b\" ]; limit = 7L; } );\n",
        /* 2..5: one value differs */
        "sources = ( { name = \"f\"; type = \"fake\"; limit = 8; tags = [ \"a\", \"b\" ];\n"
        "  auth = { method = \"m\"; retries = 2; }; } );\n",
        "sources = ( { name = \"f\"; type = \"fake\"; limit = 7; tags = [ \"b\", \"a\" ];\n"
        "  auth = { method = \"m\"; retries = 2; }; } );\n",
        "sources = ( { name = \"f\"; type = \"fake\"; limit = 7; tags = [ \"a\", \"b\" ];\n"
        "  auth = { method = \"m\"; retries = 3; }; } );\n",
        "sources = ( { name = \"f\"; type = \"fake\"; limit = 7; tags = [ \"a\", \"b\" ];\n"
        "  auth = { method = \"m\"; retries = 2; }; verbose = false; } );\n",
    };
    struct config *c[6];
    for (size_t i = 0; i < 6; i++) {
        char text[512];
        snprintf(text, sizeof text, "%s" NO_CREDS_AGENT, texts[i]);
        c[i] = load_ok(text);
    }
    assert_true(config_node_same(&c[0]->sources[0].node, &c[1]->sources[0].node));
    assert_true(config_node_same(&c[1]->sources[0].node, &c[0]->sources[0].node));
    for (size_t i = 2; i < 6; i++)
        assert_false(config_node_same(&c[0]->sources[0].node, &c[i]->sources[0].node));
    for (size_t i = 0; i < 6; i++)
        config_free(c[i]);
}

static void test_zero_poll_interval_and_timeout_are_rejected(void **state) {
    expect_cred_error("path = \"x\"; poll_interval = \"0s\"; " REDIS_OK,
                      "agent.conf:3: credentials[0].poll_interval: must be more than 0s");
    expect_cred_error("path = \"x\";\nredis = { endpoints = [ \"h:1\" ]; timeout = \"0ms\"; };",
                      "agent.conf:4: credentials[0].redis.timeout: must be more than 0s");
    struct config *c = load_ok("agent = { startup_timeout = \"0s\"; " NO_CREDS_OK " };");
    assert_true(c->agent.startup_timeout_usec == 0);
    config_free(c);
}

static void test_integer_out_of_range_is_error_including_above_int_max(void **state) {
    expect_error("agent = { workers = 65; };\n",
                 "agent.conf:1: agent.workers: 65 is out of range (1..64)");
    expect_error("agent = { workers = 0; };\n",
                 "agent.conf:1: agent.workers: 0 is out of range (1..64)");
    expect_error("agent = { workers = -1; };\n",
                 "agent.conf:1: agent.workers: -1 is out of range (1..64)");
    /* libconfig 1.5 reads these as 4 (2^32 + 4 wraps) and -1294967296. */
    expect_error("agent = { workers = 4294967300; };\n",
                 "agent.conf:1: agent.workers: 4294967300 is out of range (1..64)");
    expect_error("agent = { workers = 3000000000; };\n",
                 "agent.conf:1: agent.workers: 3000000000 is out of range (1..64)");
    expect_error("agent = { workers = 0x100000004; };\n",
                 "agent.conf:1: agent.workers: 4294967300 is out of range (1..64)");
    expect_error("agent = { workers = 3000000000L; };\n",
                 "agent.conf:1: agent.workers: 3000000000 is out of range (1..64)");
    struct config *c = load_ok("agent = { workers = 64L; " NO_CREDS_OK " };\n");
    assert_int_equal(c->agent.workers, 64);
    config_free(c);
}

static void test_integer_beyond_int64_is_error(void **state) {
    expect_error("agent = { workers = 99999999999999999999; };\n",
                 "agent.conf:1: agent.workers: 99999999999999999999 is out of range");
    expect_error("agent = { workers = 99999999999999999999L; };\n",
                 "agent.conf:1: agent.workers: 99999999999999999999L is out of range");
    expect_error("sources = ( { name = \"f\"; type = \"fake\"; ratio = 99999999999999999999; } );\n",
                 "agent.conf:1: sources[0].ratio: 99999999999999999999 is out of range");
}

static void test_plugin_int_keeps_its_value_above_int_max(void **state) {
    struct config *c = load_ok("sources = ( { name = \"f\"; type = \"fake\"; limit = 3000000000; "
                               "offset = -7; } );\n" NO_CREDS_AGENT);
    assert_true(config_node_int(&c->sources[0].node, "limit") == 3000000000LL);
    assert_true(config_node_int(&c->sources[0].node, "offset") == -7);
    config_free(c);
    c = load_ok("sources = ( { name = \"f\"; type = \"fake\"; limit = 0x12A05F200; } );\n" NO_CREDS_AGENT);
    assert_true(config_node_int(&c->sources[0].node, "limit") == 5000000000LL);
    config_free(c);
    expect_error("sources = ( { name = \"f\"; type = \"fake\"; limit = 5000000001; } );\n",
                 "agent.conf:1: sources[0].limit: 5000000001 is out of range (1..5000000000)");
    expect_error("sources = ( { name = \"f\"; type = \"fake\"; offset = 11; } );\n",
                 "agent.conf:1: sources[0].offset: 11 is out of range (-10..10)");
}

static void test_integer_with_leading_zero_is_rejected_outside_mode(void **state) {
    expect_error("agent = { workers = 010; };\n",
                 "agent.conf:1: agent.workers: 010: a leading zero is ambiguous here (octal or "
                 "decimal?); write the number without it");
}

static void test_integer_is_accepted_for_float_key(void **state) {
    struct config *c = load_ok("sources = ( { name = \"f\"; type = \"fake\"; ratio = 1; } );\n" NO_CREDS_AGENT);
    assert_true(config_node_float(&c->sources[0].node, "ratio") == 1.0);
    config_free(c);
    c = load_ok("sources = ( { name = \"f\"; type = \"fake\"; ratio = 3000000000; } );\n" NO_CREDS_AGENT);
    assert_true(config_node_float(&c->sources[0].node, "ratio") == 3e9);
    config_free(c);
    c = load_ok("sources = ( { name = \"f\"; type = \"fake\"; ratio = 0.25; } );\n" NO_CREDS_AGENT);
    assert_true(config_node_float(&c->sources[0].node, "ratio") == 0.25);
    config_free(c);
}

static void test_integer_literals_stay_aligned_past_comments_strings_and_floats(void **state) {
    /* Integers hidden in comments, strings, names and floats must not be mistaken for the
     * literal that belongs to a setting. */
    struct config *c = load_ok(
        "# workers = 3000000000\n"
        "/* limit = 7;\n   12 */ // 13\n"
        "agent = { metrics_file = \"/m/1234 # 5\\\" 6\"; workers = 9; " NO_CREDS_OK " };\n"
        "sources = ( { name = \"f\"; type = \"fake\"; ratio = 1e3; tags = [ \"x9\", \"-4\" ];\n"
        "  auth = { method = \"m2\"; retries = 0x7; }; limit = +4000000000; offset = -3; } );\n");
    assert_int_equal(c->agent.workers, 9);
    assert_string_equal(c->agent.metrics_file, "/m/1234 # 5\" 6");
    const struct config_node *n = &c->sources[0].node;
    assert_true(config_node_float(n, "ratio") == 1000.0);
    assert_true(config_node_int(n, "limit") == 4000000000LL);
    assert_true(config_node_int(n, "offset") == -3);
    struct config_node auth;
    config_node_group(n, "auth", &auth);
    assert_true(config_node_int(&auth, "retries") == 7);
    config_free(c);
}

static void test_mode_accepts_octal_literal_hex_and_octal_string(void **state) {
    static const struct {
        const char *text;
        int mode;
    } ok[] = {
        { "mode = 0640;", 0640 }, { "mode = 0600;", 0600 }, { "mode = 0400;", 0400 },
        { "mode = 0;", 0 },       { "mode = 00;", 0 },       { "mode = 0777;", 0777 },
        { "mode = 0x1A0;", 0640 }, { "mode = \"0640\";", 0640 }, { "mode = \"640\";", 0640 },
        { "mode = \"0\";", 0 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "path = \"x\"; %s " REDIS_OK, ok[i].text);
        struct config *c = load_cred(body);
        assert_int_equal(c->credentials[0].mode, ok[i].mode);
        config_free(c);
    }
}

static void test_mode_rejects_decimal_out_of_range_and_non_octal(void **state) {
    expect_cred_error("path = \"x\"; mode = 640; " REDIS_OK,
                      "agent.conf:3: credentials[0].mode: 640: write a file mode in octal with a "
                      "leading zero (0640) or as a string (\"0640\")");
    expect_cred_error("path = \"x\"; mode = 01000; " REDIS_OK,
                      "agent.conf:3: credentials[0].mode: 01000 is out of range (0..0777)");
    expect_cred_error("path = \"x\"; mode = 0680; " REDIS_OK,
                      "agent.conf:3: credentials[0].mode: 0680 is not an octal number");
    expect_cred_error("path = \"x\"; mode = \"0680\"; " REDIS_OK,
                      "agent.conf:3: credentials[0].mode: \"0680\" is not an octal file mode like "
                      "\"0640\"");
    expect_cred_error("path = \"x\"; mode = \"1000\"; " REDIS_OK,
                      "agent.conf:3: credentials[0].mode: 01000 is out of range (0..0777)");
    expect_cred_error("path = \"x\"; mode = \"\"; " REDIS_OK,
                      "agent.conf:3: credentials[0].mode: \"\" is not an octal file mode like "
                      "\"0640\"");
    expect_cred_error("path = \"x\"; mode = true; " REDIS_OK,
                      "agent.conf:3: credentials[0].mode: expected a file mode like 0640 or "
                      "\"0640\", got a boolean");
    expect_cred_error("path = \"x\"; mode = -0640; " REDIS_OK,
                      "agent.conf:3: credentials[0].mode: -0640 is out of range (0..0777)");
}

/* A config whose one credential is called `name` (on line 1, after the source). */
static char *cred_named(const char *name) {
    char *s = NULL;
    assert_true(asprintf(&s, SRC_LOCAL "credentials = ( { name = \"%s\"; source = \"local\"; "
                         "path = \"x\"; " REDIS_OK " } );\n", name) > 0);
    return s;
}

static void test_bad_names_are_rejected_with_the_reason(void **state) {
    expect_error("sources = ( { name = \"a/b\"; type = \"file\"; directory = \"/s\"; } );\n",
                 "agent.conf:1: sources[0].name: name \"a/b\" may contain only letters, digits, "
                 "'_', '.' and '-' (it becomes a file name)");
    expect_error("sources = ( { name = \".hidden\"; type = \"file\"; directory = \"/s\"; } );\n",
                 "agent.conf:1: sources[0].name: name \".hidden\" must not start with '.'");
    expect_error("sources = ( { name = \"\"; type = \"file\"; directory = \"/s\"; } );\n",
                 "agent.conf:1: sources[0].name: name \"\" must not be empty");
    char *bad = cred_named("../etc");
    expect_error(bad, "agent.conf:2: credentials[0].name: name \"../etc\" must not start with '.'");
    free(bad);
    bad = cred_named("ca/che");
    expect_error_part(bad, "credentials[0].name: name \"ca/che\" may contain only");
    free(bad);
    char long_name[80];
    memset(long_name, 'n', 65);
    long_name[65] = '\0';
    bad = cred_named(long_name);
    expect_error_part(bad, "is longer than 64 characters");
    free(bad);
    long_name[64] = '\0';   /* exactly 64 is fine */
    bad = cred_named(long_name);
    struct config *c = load_ok(bad);
    assert_string_equal(c->credentials[0].name, long_name);
    config_free(c);
    free(bad);
}

static void test_control_characters_in_names_are_escaped_in_messages(void **state) {
    expect_error("sources = ( { name = \"a\\x1b[31m\"; type = \"file\"; directory = \"/s\"; } );\n",
                 "agent.conf:1: sources[0].name: name \"a\\x1b[31m\" may contain only letters, "
                 "digits, '_', '.' and '-' (it becomes a file name)");
}

static void test_source_type_must_be_a_valid_name(void **state) {
    expect_error("sources = ( { name = \"x\"; type = \"../evil\"; } );\n",
                 "agent.conf:1: sources[0].type: \"../evil\" is not a valid source type");
}

static void test_duplicate_names_are_rejected(void **state) {
    expect_error("sources = (\n"
                 "  { name = \"local\"; type = \"file\"; directory = \"/a\"; },\n"
                 "  { name = \"local\"; type = \"file\"; directory = \"/b\"; } );\n",
                 "agent.conf:3: sources[1].name: duplicate source name \"local\" (also at "
                 "agent.conf:2)");
    expect_error(SRC_LOCAL
                 "credentials = (\n"
                 "  { name = \"c\"; source = \"local\"; path = \"a\"; " REDIS_OK " },\n"
                 "  { name = \"c\"; source = \"local\"; path = \"b\"; " REDIS_OK " } );\n",
                 "agent.conf:4: credentials[1].name: duplicate credential name \"c\" (also at "
                 "agent.conf:3)");
    /* A source and a credential may share a name. */
    struct config *c = load_ok(SRC_LOCAL "credentials = ( { name = \"local\"; source = \"local\"; "
                               "path = \"a\"; " REDIS_OK " } );\n");
    config_free(c);
}

static void test_unknown_source_reference_is_error(void **state) {
    char *t = one_cred(SRC_LOCAL, "vault", "path = \"x\"; " REDIS_OK);
    expect_error(t, "agent.conf:2: credentials[0].source: no source named \"vault\" is defined in "
                    "sources");
    free(t);
}

static void test_missing_required_keys_are_errors(void **state) {
    expect_error("sources = ( { type = \"file\"; directory = \"/s\"; } );\n",
                 "agent.conf:1: sources[0].name: required key is missing");
    expect_error("sources = ( { name = \"s\"; directory = \"/s\"; } );\n",
                 "agent.conf:1: sources[0].type: required key is missing");
    expect_error("sources = ( { name = \"s\"; type = \"file\"; } );\n",
                 "agent.conf:1: sources[0].directory: required key is missing");
    expect_error(SRC_LOCAL "credentials = ( { source = \"local\"; } );\n",
                 "agent.conf:2: credentials[0].name: required key is missing");
    expect_error(SRC_LOCAL "credentials = ( { name = \"c\"; } );\n",
                 "agent.conf:2: credentials[0].source: required key is missing");
    expect_cred_error("path = \"x\";", "agent.conf:2: credentials[0].redis: required key is missing");
    expect_cred_error(REDIS_OK, "agent.conf:2: credentials[0].path: required key is missing");
    expect_cred_error("path = \"x\";\nredis = { cluster = true; };",
                      "agent.conf:4: credentials[0].redis.endpoints: required key is missing");
    expect_error("sources = ( { name = \"f\"; type = \"fake\";\n auth = { retries = 1; }; } );\n",
                 "agent.conf:2: sources[0].auth.method: required key is missing");
}

static void test_lookup_failure_names_the_source_and_keeps_its_error_code(void **state) {
    struct config *c = NULL;
    int r = config_load_string("agent = { plugin_dir = \"/opt/p\"; };\n"
                               "sources = ( { name = \"kv\";\n type = \"azure-keyvault\"; } );\n",
                               "agent.conf", NULL, fake_lookup, NULL, &c, err, sizeof err);
    assert_int_equal(r, -ENOENT);
    assert_null(c);
    assert_string_equal(err, "agent.conf:3: sources[0].type: source \"kv\": no plugin serves type "
                             "\"azure-keyvault\" (looked in /opt/p)");
}

static void test_lookup_gets_agent_plugin_dir_even_when_agent_comes_last(void **state) {
    memset(&lookups, 0, sizeof lookups);
    struct config *c = load_ok(SRC_LOCAL "agent = { plugin_dir = \"/opt/rc/plugins\"; " NO_CREDS_OK " };\n");
    assert_int_equal(lookups.calls, 1);
    assert_string_equal(lookups.plugin_dir, "/opt/rc/plugins");
    config_free(c);
}

static void test_broken_plugin_schema_is_reported(void **state) {
    expect_error("sources = ( { name = \"b\"; type = \"broken\"; } );\n",
                 "agent.conf:1: sources[0].type: the plugin's schema for type \"broken\" is "
                 "broken: key timeout: default \"10 seconds\" is not a duration");
}

static void test_plugin_keys_are_read_with_defaults_and_nested_groups(void **state) {
    struct config *c = load_ok(full_config);
    const struct config_node *n = &c->sources[1].node;
    assert_string_equal(config_node_string(n, "address"), "https://fake.example:8200");
    assert_true(config_node_float(n, "ratio") == 1.0);
    assert_true(config_node_bool(n, "verbose"));
    assert_true(config_node_int(n, "limit") == 3000000000LL);
    assert_true(config_node_int(n, "offset") == -5);   /* default */
    assert_true(config_node_duration(n, "timeout") == 1500 * USEC_PER_MSEC);
    assert_true(config_node_has(n, "tags"));
    assert_false(config_node_has(n, "offset"));
    assert_int_equal(config_node_list_len(n, "tags"), 2);
    assert_string_equal(config_node_list_get(n, "tags", 0), "a");
    assert_string_equal(config_node_list_get(n, "tags", 1), "b");
    assert_null(config_node_list_get(n, "tags", 2));

    struct config_node auth;
    config_node_group(n, "auth", &auth);
    assert_non_null(auth.setting);
    assert_ptr_equal(auth.keys, fake_auth_keys);
    assert_string_equal(config_node_string(&auth, "method"), "approle");
    assert_true(config_node_int(&auth, "retries") == 5);
    assert_null(config_node_string(&auth, "token_file"));
    assert_int_equal(config_node_line(&auth, NULL), 17);

    /* The credential's plugin keys, two groups deep, with defaults at each level. */
    const struct config_node *cn = &c->credentials[1].node;
    assert_string_equal(config_node_string(cn, "path"), "secret/redis/sessions");
    assert_true(config_node_float(cn, "weight") == 2.0);
    assert_int_equal(config_node_list_len(cn, "fields"), 1);
    assert_string_equal(config_node_list_get(cn, "fields", 0), "password");
    struct config_node opts, inner;
    config_node_group(cn, "options", &opts);
    assert_true(config_node_int(&opts, "depth") == 2);
    config_node_group(&opts, "inner", &inner);
    assert_true(config_node_bool(&inner, "flag"));
    assert_true(config_node_duration(&inner, "margin") == 90 * USEC_PER_SEC);
    config_free(c);
}

/* config_compact() keeps what nodes read (agent, sources, the credentials' plugin keys,
 * nested groups by pointer, files, lines, integer literals) and drops the host's keys. */
static void test_compact_keeps_every_node_value_and_drops_host_keys(void **state) {
    struct config *c = load_ok(full_config), *full = load_ok(full_config);
    const struct config_node *opts = config_node_group_ref(&c->credentials[1].node, "options");
    const struct config_node *auth = config_node_group_ref(&c->sources[1].node, "auth");
    assert_non_null(opts);
    assert_non_null(auth);
    assert_string_equal(config_node_string(&c->credentials[0].node, "redis.timeout"), "250ms");
    assert_int_equal(config_compact(c), 0);

    assert_true(config_node_same(&c->agent_node, &full->agent_node));
    for (size_t i = 0; i < c->n_sources; i++) {
        assert_true(config_node_same(&c->sources[i].node, &full->sources[i].node));
        assert_int_equal(config_node_line(&c->sources[i].node, NULL), i == 0 ? 14 : 15);
    }
    for (size_t i = 0; i < c->n_credentials; i++)
        assert_true(config_node_same(&c->credentials[i].node, &full->credentials[i].node));
    assert_true(config_node_int(&c->sources[1].node, "limit") == 3000000000LL);
    assert_int_equal(config_node_line(&c->sources[1].node, "limit"), 16);
    assert_string_equal(config_node_file(&c->sources[1].node, "limit"), "agent.conf");
    assert_string_equal(config_node_string(&c->agent_node, "log_level"), "debug");
    /* nested nodes held by pointer (as plugins do) read the new tree */
    assert_ptr_equal(config_node_group_ref(&c->credentials[1].node, "options"), opts);
    assert_ptr_equal(config_node_group_ref(&c->sources[1].node, "auth"), auth);
    assert_string_equal(config_node_string(auth, "method"), "approle");
    assert_int_equal(config_node_line(auth, "retries"), 17);
    const struct config_node *inner = config_node_group_ref(opts, "inner");
    assert_true(config_node_duration(inner, "margin") == 90 * USEC_PER_SEC);
    assert_int_equal(config_node_line(inner, NULL), 33);
    assert_string_equal(config_node_string(&c->credentials[0].node, "path"), "cache.json");
    assert_int_equal(config_node_line(&c->credentials[1].node, "path"), 32);
    /* the host's keys live on in the structs only */
    assert_null(config_node_string(&c->credentials[0].node, "redis.timeout"));
    assert_false(config_node_has(&c->credentials[0].node, "poll_interval"));
    assert_true(c->credentials[0].redis.timeout_usec == 250 * USEC_PER_MSEC);
    assert_string_equal(c->credentials[0].on_change[0], "/usr/local/bin/app-reload");
    config_free(c);
    config_free(full);

    /* a config without an agent group, and one without credentials */
    c = load_ok(SRC_FAKE NO_CREDS_AGENT);
    assert_int_equal(config_compact(c), 0);
    assert_string_equal(config_node_string(&c->sources[0].node, "address"), "https://fake.invalid");
    config_free(c);
}

static void test_getters_on_an_unset_group_return_defaults(void **state) {
    struct config *c = load_ok(SRC_FAKE "agent = { " NO_CREDS_OK " };\n");
    const struct config_node *n = &c->sources[0].node;
    assert_string_equal(config_node_string(n, "address"), "https://fake.invalid");
    assert_true(config_node_float(n, "ratio") == 0.7);
    assert_false(config_node_bool(n, "verbose"));
    assert_true(config_node_int(n, "limit") == 100);
    assert_true(config_node_duration(n, "timeout") == 10 * USEC_PER_SEC);
    assert_int_equal(config_node_list_len(n, "tags"), 0);
    assert_null(config_node_list_get(n, "tags", 0));
    struct config_node auth;
    config_node_group(n, "auth", &auth);
    assert_null(auth.setting);
    assert_ptr_equal(auth.keys, fake_auth_keys);
    assert_true(config_node_int(&auth, "retries") == 3);
    assert_null(config_node_string(&auth, "method"));
    assert_false(config_node_has(&auth, "method"));
    assert_int_equal(config_node_line(&auth, NULL), 0);

    struct config_node empty = { .setting = NULL, .keys = fake_inner_keys, .file = NULL };
    assert_true(config_node_bool(&empty, "flag"));
    assert_true(config_node_duration(&empty, "margin") == 180 * USEC_PER_SEC);
    assert_true(config_node_int(&empty, "nokey") == 0);
    assert_null(config_node_string(&empty, "nokey"));
    config_free(c);
}

static void test_schema_default_texts_are_well_formed(void **state) {
    /* Every default of the fake tables parses the way the getters parse it. */
    const struct config_key *tables[] = { fake_source_keys, fake_credential_keys,
                                          fake_auth_keys, fake_options_keys, fake_inner_keys };
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (const struct config_key *k = tables[t]; k->name; k++) {
            const char *d = k->default_value;
            char *end = NULL;
            uint64_t u;
            if (!d)
                continue;
            switch (k->type) {
            case CONFIG_T_INT: {
                long long v = strtoll(d, &end, 10);
                assert_true(*end == '\0' && v >= k->min && v <= (k->max ? k->max : INT32_MAX));
                break;
            }
            case CONFIG_T_FLOAT: strtod(d, &end); assert_true(end != d && *end == '\0'); break;
            case CONFIG_T_BOOL: assert_true(!strcmp(d, "true") || !strcmp(d, "false")); break;
            case CONFIG_T_DURATION: assert_int_equal(duration_parse(d, &u), 0); break;
            default: break;
            }
        }
    }
}

static void test_formats_must_include_json_and_be_known(void **state) {
    expect_cred_error("path = \"x\"; " REDIS_OK "\nformats = [ \"env\" ];",
                      "agent.conf:4: credentials[0].formats: \"json\" is required (<name>.json is "
                      "always written; env and password come in addition)");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nformats = [ ];",
                      "agent.conf:4: credentials[0].formats: \"json\" is required (<name>.json is "
                      "always written; env and password come in addition)");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nformats = [ \"json\", \"yaml\" ];",
                      "agent.conf:4: credentials[0].formats: unknown format \"yaml\" (use json, env "
                      "or password)");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nformats = [ \"json\", \"env\", \"env\" ];",
                      "agent.conf:4: credentials[0].formats: format \"env\" is listed twice");
    struct config *c = load_cred("path = \"x\"; " REDIS_OK " formats = ( \"password\", \"json\" );");
    assert_int_equal(c->credentials[0].formats, CRED_FORMAT_JSON | CRED_FORMAT_PASSWORD);
    config_free(c);
}

static void test_on_change_must_start_with_an_absolute_path(void **state) {
    expect_cred_error("path = \"x\"; " REDIS_OK "\non_change = [ \"app-reload\" ];",
                      "agent.conf:4: credentials[0].on_change[0]: \"app-reload\" must be an "
                      "absolute path (it runs without a shell or $PATH)");
    expect_cred_error("path = \"x\"; " REDIS_OK "\non_change = [ ];",
                      "agent.conf:4: credentials[0].on_change: needs a program to run (an "
                      "absolute path), or leave it out");
    struct config *c = load_cred("path = \"x\"; " REDIS_OK " on_change = [ \"/bin/true\" ];");
    assert_int_equal(c->credentials[0].n_on_change, 1);
    assert_string_equal(c->credentials[0].on_change[0], "/bin/true");
    assert_null(c->credentials[0].on_change[1]);
    config_free(c);
}

static void test_rotation_defaults_and_every_key(void **state) {
    struct config *c = load_cred("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; };");
    const struct config_rotation *ro = &c->credentials[0].rotation;
    assert_true(ro->enabled);
    assert_int_equal(ro->strategy, ROTATION_REDIS_ACL);
    assert_int_equal(ro->interval_usec, 30ULL * 86400 * 1000000);
    assert_int_equal(ro->grace_usec, 600ULL * 1000000);
    assert_null(ro->admin_username);
    assert_null(ro->admin_password_file);
    assert_false(ro->acl_save);
    assert_int_equal(ro->password_length, 32);
    assert_int_equal(strlen(ro->alphabet), 62);
    config_free(c);

    c = load_cred("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; interval = \"2s\"; "
                  "grace = \"500ms\"; admin_username = \"rotator\"; admin_password_file = "
                  "\"/etc/rc/admin\"; acl_save = true; password_length = 40; password_alphabet = \"hex\"; };");
    ro = &c->credentials[0].rotation;
    assert_int_equal(ro->interval_usec, 2000000);
    assert_int_equal(ro->grace_usec, 500000);
    assert_string_equal(ro->admin_username, "rotator");
    assert_string_equal(ro->admin_password_file, "/etc/rc/admin");
    assert_true(ro->acl_save);
    assert_int_equal(ro->password_length, 40);
    assert_string_equal(ro->alphabet, "0123456789abcdef");
    config_free(c);

    c = load_cred("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"azure-keys\"; rotator = \"host-a\"; };");
    ro = &c->credentials[0].rotation;
    assert_int_equal(ro->strategy, ROTATION_AZURE_KEYS);
    assert_string_equal(ro->rotator, "host-a");
    assert_string_equal(config_rotation_strategy_to_string(ro->strategy), "azure-keys");
    config_free(c);
    c = load_cred("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"vault-database\"; rotator = \"host-b\"; };");
    assert_int_equal(c->credentials[0].rotation.strategy, ROTATION_VAULT_DATABASE);
    assert_string_equal(c->credentials[0].rotation.rotator, "host-b");
    config_free(c);

    c = load_cred("path = \"x\"; " REDIS_OK);
    assert_false(c->credentials[0].rotation.enabled);
    config_free(c);
}

/* The fleet's keys: splay defaults to 10% of interval capped at 1 h; pending_timeout to
 * 10m and more than 3 x redis.timeout + 10s; rotators only for redis-acl. */
static void test_rotation_fleet_keys(void **state) {
    struct config *c = load_cred("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; "
                                 "interval = \"100s\"; };");
    const struct config_rotation *ro = &c->credentials[0].rotation;
    assert_true(ro->splay_usec == 10 * USEC_PER_SEC);
    assert_true(ro->pending_timeout_usec == 600 * USEC_PER_SEC);
    assert_null(ro->rotators);
    assert_true(config_rotation_claims_here(ro));
    config_free(c);
    c = load_cred("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; };");   /* 30d */
    assert_true(c->credentials[0].rotation.splay_usec == 3600 * USEC_PER_SEC);
    config_free(c);
    c = load_cred("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; splay = \"0s\"; "
                  "pending_timeout = \"1m\"; rotators = [ \"nosuchhost-a\", \"nosuchhost-b\" ]; "
                  "admin_username = \"r\"; admin_password_file = \"/nonexistent/admin\"; };");
    ro = &c->credentials[0].rotation;
    assert_true(ro->splay_usec == 0 && ro->pending_timeout_usec == 60 * USEC_PER_SEC);
    assert_int_equal(ro->n_rotators, 2);
    assert_string_equal(ro->rotators[1], "nosuchhost-b");
    assert_false(config_rotation_claims_here(ro));
    config_free(c);
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; pending_timeout = \"16s\"; };",
                      "agent.conf:4: credentials[0].rotation.pending_timeout: must be more than 3 x "
                      "redis.timeout + 10s (16s here): a rotation step still at work must never look abandoned");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"azure-keys\"; rotator = \"h\"; "
                      "rotators = [ \"h\" ]; };",
                      "agent.conf:4: credentials[0].rotation.rotators: applies to strategies \"redis-acl\" "
                      "and \"redis-acl-users\" only (\"azure-keys\" takes `rotator`, the one host "
                      "that rotates)");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; rotators = [ ]; };",
                      "agent.conf:4: credentials[0].rotation.rotators: must name at least one host "
                      "(leave it out to let every host claim)");
}

/* redis-acl-users: exactly two users, an admin, a username published; users only for it. */
static void test_rotation_users_keys(void **state) {
#define USERS_ADMIN "admin_username = \"r\"; admin_password_file = \"/nonexistent/admin\"; "
    struct config *c = load_cred("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl-users\"; "
                                 "users = [ \"app_a\", \"app_b\" ]; " USERS_ADMIN "};");
    const struct config_rotation *ro = &c->credentials[0].rotation;
    assert_int_equal(ro->strategy, ROTATION_REDIS_ACL_USERS);
    assert_int_equal(ro->n_users, 2);
    assert_string_equal(ro->users[1], "app_b");
    assert_true(ro->max_grace_usec == 24 * 3600 * USEC_PER_SEC);
    assert_false(ro->kill_after_max_grace);
    assert_true(ro->drain_check_usec == 5 * USEC_PER_SEC);
    assert_true(ro->revocation_check_usec == 10 * USEC_PER_SEC && ro->revocation_watch_usec == 300 * USEC_PER_SEC);
    config_free(c);
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl-users\"; " USERS_ADMIN "};",
                      "agent.conf:4: credentials[0].rotation.users: required with strategy "
                      "\"redis-acl-users\": the two ACL users alternated, e.g. [ \"app_a\", \"app_b\" ]");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl-users\"; "
                      "users = [ \"a\", \"a\" ]; " USERS_ADMIN "};",
                      "agent.conf:4: credentials[0].rotation.users: must name exactly two different users");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl-users\"; "
                      "users = [ \"a\", \"b\", \"c\" ]; " USERS_ADMIN "};",
                      "agent.conf:4: credentials[0].rotation.users: must name exactly two different users");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl-users\"; "
                      "users = [ \"a\", \"b\" ]; };",
                      "agent.conf:4: credentials[0].rotation.admin_username: required with strategy "
                      "\"redis-acl-users\": a user that may run ACL SETUSER, ACL GETUSER, ACL LOG, "
                      "CLIENT LIST and CLIENT KILL on every node (the two users switch each other off)");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; "
                      "users = [ \"a\", \"b\" ]; };",
                      "agent.conf:4: credentials[0].rotation.users: applies to strategy "
                      "\"redis-acl-users\" only");
    expect_cred_error("path = \"x\"; formats = [ \"json\", \"password\" ]; " REDIS_OK "\nrotation = { "
                      "strategy = \"redis-acl-users\"; users = [ \"a\", \"b\" ]; " USERS_ADMIN "};",
                      "agent.conf:4: credentials[0].rotation.strategy: \"redis-acl-users\" changes the "
                      "username at every rotation: formats = [ \"password\" ] alone would hand out a "
                      "password without its user (use \"json\" or \"env\", which carry the username)");
    c = load_cred("path = \"x\"; formats = [ \"json\", \"env\", \"password\" ]; " REDIS_OK "\nrotation = { "
                  "strategy = \"redis-acl-users\"; users = [ \"a\", \"b\" ]; " USERS_ADMIN "};");
    config_free(c);
#undef USERS_ADMIN
}

static void test_rotation_errors_name_file_line_and_key(void **state) {
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { interval = \"30d\"; };",
                      "agent.conf:4: credentials[0].rotation.strategy: required key is missing");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"azure-keys\"; };",
                      "agent.conf:4: credentials[0].rotation.rotator: required with strategy "
                      "\"azure-keys\": the host name (as `hostname` prints it) of the one host that rotates");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"vault-database\"; rotator = \"\"; };",
                      "agent.conf:4: credentials[0].rotation.rotator: required with strategy "
                      "\"vault-database\": the host name (as `hostname` prints it) of the one host that rotates");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; rotator = \"h1\"; };",
                      "agent.conf:4: credentials[0].rotation.rotator: does not apply to strategy "
                      "\"redis-acl\" (the store's check-and-set picks the host that rotates)");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"magic\"; };",
                      "agent.conf:4: credentials[0].rotation.strategy: unknown strategy \"magic\" "
                      "(use \"redis-acl\", \"vault-database\", \"azure-keys\" or \"redis-acl-users\")");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; interval = 30; };",
                      "agent.conf:4: credentials[0].rotation.interval: expected a duration string "
                      "like \"30s\", got an integer");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; interval = \"0s\"; };",
                      "agent.conf:4: credentials[0].rotation.interval: must be at least 1s");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; password_length = 8; };",
                      "agent.conf:4: credentials[0].rotation.password_length: 8 is out of range (16..256)");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; password_alphabet = \"emoji\"; };",
                      "agent.conf:4: credentials[0].rotation.password_alphabet: unknown alphabet "
                      "\"emoji\" (use alnum, hex or urlsafe)");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; colour = 1; };",
                      "agent.conf:4: credentials[0].rotation.colour: unknown key");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; admin_username = \"r\"; };",
                      "agent.conf:4: credentials[0].rotation.admin_password_file: required with "
                      "admin_username (the file holding that user's password)");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; admin_username = \"r\"; "
                      "admin_password_file = \"pw\"; };",
                      "agent.conf:4: credentials[0].rotation.admin_password_file: \"pw\" must be an "
                      "absolute path");
    expect_cred_error("path = \"x\"; " REDIS_OK "\nrotation = 5;",
                      "agent.conf:4: credentials[0].rotation: expected a group { ... }, got an integer");
    expect_cred_error("path = \"x\"; redis = { endpoints = [ \"127.0.0.1:6379\" ]; validate = \"none\"; };\n"
                      "rotation = { strategy = \"redis-acl\"; };",
                      "agent.conf:4: credentials[0].rotation: needs redis.validate = \"all\" or "
                      "\"any\" (a rotated password is published only after Redis accepted it)");
}

static void test_validate_policy_and_log_level_accept_only_documented_words(void **state) {
    static const struct {
        const char *word;
        int level;
    } levels[] = { { "debug", LOG_DEBUG }, { "info", LOG_INFO }, { "notice", LOG_NOTICE },
                   { "warning", LOG_WARNING }, { "err", LOG_ERR } };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "agent = { log_level = \"%s\"; " NO_CREDS_OK " };", levels[i].word);
        struct config *c = load_ok(text);
        assert_int_equal(c->agent.log_level, levels[i].level);
        config_free(c);
    }
    expect_error("agent = { log_level = \"verbose\"; };",
                 "agent.conf:1: agent.log_level: unknown level \"verbose\" (use debug, info, notice, "
                 "warning or err)");
    expect_cred_error("path = \"x\";\nredis = { endpoints = [ \"h:1\" ]; validate = \"most\"; };",
                      "agent.conf:4: credentials[0].redis.validate: unknown policy \"most\" (use "
                      "all, any or none)");
}

static void test_endpoints_must_be_host_port_v6_or_unix(void **state) {
    static const char *const good[] = { "h:1", "redis.example.com:6379", "10.1.2.3:65535",
                                        "[::1]:6379", "[fe80::1%eth0]:7000",
                                        "unix:/run/redis/redis.sock" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "path = \"x\"; redis = { endpoints = [ \"%s\" ]; };", good[i]);
        struct config *c = load_cred(body);
        assert_string_equal(c->credentials[0].redis.endpoints[0], good[i]);
        config_free(c);
    }
    static const struct {
        const char *ep, *why;
    } bad[] = {
        { "redis", "needs a port (host:port)" },
        { ":6379", "needs a host (host:port)" },
        { "h:0", "has a bad port (1..65535)" },
        { "h:65536", "has a bad port (1..65535)" },
        { "h:63x", "has a bad port (1..65535)" },
        { "::1:6379", "has an IPv6 address without brackets (use [address]:port)" },
        { "[::1]", "needs a port ([address]:port)" },
        { "unix:redis.sock", "needs an absolute socket path (unix:/run/redis/redis.sock)" },
        { "h :1", "contains a space or control character" },
        { "", "is empty" },
        /* issue 14: a URL is not "an IPv6 address without brackets" */
        { "redis://127.0.0.1:6379", "is a URL: write host:port without \"redis://\"" },
        { "rediss://h:6380", "is a URL: write host:port without \"rediss://\", and set tls = true" },
        /* the runtime's parser refused these; the check now says so first */
        { "[notv6]:1", "has a bad IPv6 address in brackets" },
        { "h@x:1", "has a bad host name" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[256], want[512];
        snprintf(body, sizeof body, "path = \"x\";\nredis = { endpoints = [ \"h:1\", \"%s\" ]; };",
                 bad[i].ep);
        snprintf(want, sizeof want, "agent.conf:4: credentials[0].redis.endpoints[1]: endpoint "
                 "\"%s\" %s", bad[i].ep, bad[i].why);
        expect_cred_error(body, want);
    }
    expect_cred_error("path = \"x\";\nredis = { endpoints = [ ]; };",
                      "agent.conf:4: credentials[0].redis.endpoints: needs at least one endpoint "
                      "(host:port)");
}

static void test_agent_paths_must_be_absolute(void **state) {
    expect_error("agent = { runtime_dir = \"run\"; };",
                 "agent.conf:1: agent.runtime_dir: \"run\" must be an absolute path");
    expect_error("agent = { metrics_file = \"m.prom\"; };",
                 "agent.conf:1: agent.metrics_file: \"m.prom\" must be an absolute path or \"\"");
    char text[300];
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    snprintf(text, sizeof text, "agent = { control_socket = \"%s\"; };", longpath);
    expect_error(text, "agent.conf:1: agent.control_socket: longer than 107 bytes, too long for a "
                       "unix socket");
}

static void test_parse_error_names_file_and_line(void **state) {
    expect_error("agent = {\n  workers = 4;\n  log_level = ;\n};\n", "agent.conf:3: syntax error");
    expect_error("agent = { workers = 1; };\nagent = { workers = 2; };\n",
                 "agent.conf:2: duplicate setting name");
    expect_error("agent = { metrics_file = \"/x; };\n", "agent.conf:1: unterminated string");
    expect_error("/* open\n\n", "agent.conf:1: unterminated /* comment");
    expect_error("agent = { workers = 1; } @oops\n",
                 "agent.conf:1: syntax error: '@' outside an @include line");
}

static void test_null_lookup_accepts_any_plugin_keys(void **state) {
    struct config *c = NULL;
    int r = config_load_string(SRC_LOCAL "credentials = ( { name = \"c\"; source = \"local\";\n"
                               " anything = 5; " REDIS_OK " } );\n"
                               "agent = { runtime_dir = \"/r\"; };",
                               "agent.conf", NULL, NULL, NULL, &c, err, sizeof err);
    assert_int_equal(r, 0);
    assert_string_equal(c->agent.runtime_dir, "/r");
    assert_null(c->sources[0].node.keys);
    assert_string_equal(config_node_string(&c->sources[0].node, "directory"), "/srv/secrets");
    assert_true(config_node_int(&c->credentials[0].node, "anything") == 5);
    config_free(c);
    /* Host keys are still checked. */
    r = config_load_string("agent = { bogus = 1; };", "agent.conf", NULL, NULL, NULL, &c, err,
                           sizeof err);
    assert_int_equal(r, -EINVAL);
}

static void test_config_free_accepts_null_and_errors_without_buffer(void **state) {
    assert_null(config_free(NULL));
    struct config *c = NULL;
    assert_int_equal(config_load_string("bogus = 1;", NULL, NULL, fake_lookup, NULL, &c, NULL, 0),
                     -EINVAL);
    assert_null(c);
    assert_int_equal(config_load_string("bogus = 1;", NULL, NULL, fake_lookup, NULL, &c, err,
                                        sizeof err), -EINVAL);
    assert_string_equal(err, "<string>:1: bogus: unknown key");
    char small[12];
    assert_int_equal(config_load_string("bogus = 1;", "agent.conf", NULL, fake_lookup, NULL, &c,
                                        small, sizeof small), -EINVAL);
    assert_string_equal(small, "agent.conf:");
}

static void test_oversized_text_is_refused(void **state) {
    size_t n = 1024 * 1024 + 2;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n - 1);
    big[n - 1] = '\0';
    struct config *c = NULL;
    assert_int_equal(config_load_string(big, "agent.conf", NULL, fake_lookup, NULL, &c, err,
                                        sizeof err), -EFBIG);
    assert_null(c);
    free(big);
}

static void test_name_valid_follows_the_contract(void **state) {
    assert_true(config_name_valid("cache"));
    assert_true(config_name_valid("a.b-c_D9"));
    assert_true(config_name_valid("0"));
    assert_false(config_name_valid(""));
    assert_false(config_name_valid(NULL));
    assert_false(config_name_valid(".hidden"));
    assert_false(config_name_valid(".."));
    assert_false(config_name_valid("a/b"));
    assert_false(config_name_valid("a b"));
    assert_false(config_name_valid("caché"));
    char n[70];
    memset(n, 'x', 64);
    n[64] = '\0';
    assert_true(config_name_valid(n));
    n[64] = 'x';
    n[65] = '\0';
    assert_false(config_name_valid(n));
}

static void test_validate_policy_to_string_names_each_policy(void **state) {
    assert_string_equal(validate_policy_to_string(VALIDATE_ALL), "all");
    assert_string_equal(validate_policy_to_string(VALIDATE_ANY), "any");
    assert_string_equal(validate_policy_to_string(VALIDATE_NONE), "none");
    assert_null(validate_policy_to_string((enum validate_policy)42));
}

/* ---- files and @include ----------------------------------------------------------------- */

static char tmpdir[PATH_MAX];

static void write_file(const char *rel, const char *content) {
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static int make_tmpdir(void **state) {
    const char *base = secure_getenv("REDIS_CREDS_TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_config.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    char sub[PATH_MAX + 16];
    snprintf(sub, sizeof sub, "%s/creds.d", tmpdir);
    return mkdir(sub, 0700);
}

static int remove_tmpdir(void **state) {
    static const char *const files[] = { "agent.conf", "sources.conf", "creds.d/cache.conf",
                                         "creds.d/redis.conf", "abs.conf", "loop.conf",
                                         "bad.conf", "admin.pw", "hook", "open/agent.conf",
                                         "sticky/agent.conf" };
    char path[PATH_MAX * 2];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    static const char *const dirs[] = { "creds.d", "open", "sticky" };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, dirs[i]);
        rmdir(path);
    }
    rmdir(tmpdir);
    return 0;
}

static int load_file(const char *rel, struct config **ret) {
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    err[0] = '\0';
    return config_load(path, fake_lookup, NULL, ret, err, sizeof err);
}

/* A rotation's admin password file is checked when the config is loaded (start,
 * --check-config, reload), not first at the rotation days later. */
static void test_admin_password_file_permissions_are_checked_at_load(void **state) {
    char text[PATH_MAX * 3], pw[PATH_MAX + 16];
    struct config *c = NULL;
    snprintf(pw, sizeof pw, "%s/admin.pw", tmpdir);
    snprintf(text, sizeof text, SRC_LOCAL "credentials = ( { name = \"cache\"; source = \"local\";\n"
             "path = \"x\"; " REDIS_OK "\nrotation = { strategy = \"redis-acl\"; admin_username = "
             "\"rotator\"; admin_password_file = \"%s\"; }; } );\n", pw);
    write_file("agent.conf", text);

    assert_int_equal(load_file("agent.conf", &c), -EINVAL);
    assert_non_null(strstr(err, "agent.conf:4: credentials[0].rotation.admin_password_file: "));
    assert_non_null(strstr(err, "admin.pw: No such file or directory"));

    write_file("admin.pw", "s3cret-admin\n");
    assert_int_equal(chmod(pw, 0644), 0);
    assert_int_equal(load_file("agent.conf", &c), -EINVAL);
    assert_non_null(strstr(err, "admin.pw: accessible by group or others (mode 0644); make it 0600 or 0400"));
    assert_null(strstr(err, "s3cret"));

    assert_int_equal(chmod(pw, 0600), 0);
    assert_int_equal(load_file("agent.conf", &c), 0);
    assert_string_equal(c->credentials[0].rotation.admin_password_file, pw);
    config_free(c);
}

static void chmod_rel(const char *rel, mode_t mode) {
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    assert_int_equal(chmod(path, mode), 0);
}

static void mkdir_rel(const char *rel, mode_t mode) {
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* Like OpenSSH's StrictModes: a configuration others could change is not obeyed. */
static void test_config_file_and_its_directory_must_not_be_writable_by_others(void **state) {
    static const char text[] = SRC_LOCAL "agent = { " NO_CREDS_OK " };\n";
    struct config *c = NULL;
    write_file("agent.conf", text);
    chmod_rel("agent.conf", 0664);
    assert_int_equal(load_file("agent.conf", &c), -EPERM);
    assert_non_null(strstr(err, "/agent.conf: writable by group or others (mode 0664); refused: "
                                "chmod go-w it"));
    chmod_rel("agent.conf", 0640);
    assert_int_equal(load_file("agent.conf", &c), 0);
    config_free(c);

    if (geteuid() == 0) {   /* chown needs root */
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/agent.conf", tmpdir);
        assert_int_equal(chown(path, 4321, (gid_t)-1), 0);
        assert_int_equal(load_file("agent.conf", &c), -EPERM);
        assert_non_null(strstr(err, "/agent.conf: owned by uid 4321, not by root or the agent's user"));
    }

    mkdir_rel("open", 0777);
    write_file("open/agent.conf", text);
    chmod_rel("open/agent.conf", 0600);
    assert_int_equal(load_file("open/agent.conf", &c), -EPERM);
    assert_non_null(strstr(err, "/open/agent.conf: its directory "));
    assert_non_null(strstr(err, "/open is writable by group or others (mode 0777)"));
    /* a sticky directory is accepted when root owns it (as /tmp) */
    mkdir_rel("sticky", 01777);
    write_file("sticky/agent.conf", text);
    chmod_rel("sticky/agent.conf", 0600);
    assert_int_equal(load_file("sticky/agent.conf", &c), geteuid() == 0 ? 0 : -EPERM);
    config_free(c);
    /* an @include is held to the same rules */
    write_file("sources.conf", SRC_LOCAL);
    chmod_rel("sources.conf", 0666);
    write_file("agent.conf", "@include \"sources.conf\"\nagent = { " NO_CREDS_OK " };\n");
    chmod_rel("agent.conf", 0600);
    if (geteuid() == 0) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/agent.conf", tmpdir);
        assert_int_equal(chown(path, 0, (gid_t)-1), 0);
    }
    assert_int_equal(load_file("agent.conf", &c), -EPERM);
    assert_non_null(strstr(err, "agent.conf:1: @include "));
    assert_non_null(strstr(err, "sources.conf\": writable by group or others (mode 0666)"));
}

static void test_on_change_program_must_not_be_writable_by_others(void **state) {
    char text[PATH_MAX * 3], hook[PATH_MAX + 16];
    struct config *c = NULL;
    snprintf(hook, sizeof hook, "%s/hook", tmpdir);
    write_file("hook", "#!/bin/sh\nexit 0\n");
    chmod_rel("hook", 0757);
    snprintf(text, sizeof text, SRC_LOCAL "credentials = ( { name = \"cache\"; source = \"local\";\n"
             "path = \"x\"; " REDIS_OK "\non_change = [ \"%s\", \"arg\" ]; } );\n", hook);
    write_file("agent.conf", text);
    assert_int_equal(load_file("agent.conf", &c), -EINVAL);
    assert_non_null(strstr(err, "agent.conf:4: credentials[0].on_change[0]: \""));
    assert_non_null(strstr(err, "/hook\": writable by group or others (mode 0757); refused: chmod go-w it"));
    /* not executable: an error at load, not a warning at every publish */
    chmod_rel("hook", 0644);
    assert_int_equal(load_file("agent.conf", &c), -EINVAL);
    assert_non_null(strstr(err, "/hook\" is not an executable file (mode 0644): chmod +x it"));
    chmod_rel("hook", 0755);
    assert_int_equal(load_file("agent.conf", &c), 0);
    assert_string_equal(c->credentials[0].on_change[0], hook);
    config_free(c);
    /* a program that is not there cannot be checked: an error now, not at the first publish */
    unlink(hook);
    assert_int_equal(load_file("agent.conf", &c), -EINVAL);
    assert_non_null(strstr(err, "/hook\": No such file or directory"));
}

static void test_include_resolves_relative_to_the_config_files_directory(void **state) {
    write_file("agent.conf",
               "agent = { workers = 2; };\n"                /* 1 */
               "@include \"sources.conf\"\n"                /* 2 */
               "credentials = (\n"                          /* 3 */
               "  @include \"creds.d/cache.conf\"\n"        /* 4 */
               ");\n");                                     /* 5 */
    write_file("sources.conf",
               "sources = ( { name = \"local\"; type = \"file\"; directory = \"/srv\"; } );");
    write_file("creds.d/cache.conf",
               "{ name = \"cache\"; source = \"local\";\n"
               "  path = \"cache.json\"; mode = 0600;\n"
               "@include \"creds.d/redis.conf\"\n"   /* nested: still relative to agent.conf */
               "}\n");
    write_file("creds.d/redis.conf", "redis = { endpoints = [ \"h:6379\" ]; };\n");

    /* From another working directory, so only the config's directory can explain success. */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir("/"), 0);
    struct config *c = NULL;
    int r = load_file("agent.conf", &c);
    assert_int_equal(chdir(cwd), 0);
    if (r != 0)
        print_error("%s\n", err);
    assert_int_equal(r, 0);
    assert_int_equal(c->agent.workers, 2);
    assert_int_equal(c->n_sources, 1);
    assert_int_equal(c->n_credentials, 1);
    const struct config_credential *cr = &c->credentials[0];
    assert_int_equal(cr->mode, 0600);
    assert_string_equal(cr->redis.endpoints[0], "h:6379");
    /* Lines and files are the real ones, not those of the expanded text. */
    char want[PATH_MAX * 2];
    snprintf(want, sizeof want, "%s/creds.d/cache.conf", tmpdir);
    assert_string_equal(cr->node.file, want);
    assert_int_equal(config_node_line(&cr->node, NULL), 1);
    assert_int_equal(config_node_line(&cr->node, "path"), 2);
    config_free(c);
}

static void test_error_in_included_file_names_that_file_and_line(void **state) {
    write_file("agent.conf", "@include \"sources.conf\"\n"
                             "credentials = (\n"
                             "@include \"creds.d/cache.conf\"\n"
                             ");\n"
                             "agent = { workers = 1; };\n");
    write_file("sources.conf",
               "sources = ( { name = \"local\"; type = \"file\"; directory = \"/srv\"; } );\n");
    write_file("creds.d/cache.conf", "{ name = \"cache\"; source = \"local\"; path = \"p\";\n"
                                     "  redis = { endpoints = [ \"h:1\" ];\n"
                                     "            timeout = \"5x\"; }; }\n");
    struct config *c = NULL;
    char want[PATH_MAX * 3];
    assert_int_equal(load_file("agent.conf", &c), -EINVAL);
    snprintf(want, sizeof want, "%s/creds.d/cache.conf:3: credentials[0].redis.timeout: bad "
             "duration \"5x\" (use a number and a unit: ms, s, m, h, d)", tmpdir);
    assert_string_equal(err, want);

    /* Lines after the includes still map to the main file. */
    write_file("agent.conf", "@include \"sources.conf\"\n"
                             "credentials = (\n"
                             "@include \"creds.d/cache.conf\"\n"
                             ");\n"
                             "agent = { bogus = 1; };\n");
    write_file("creds.d/cache.conf", "{ name = \"cache\"; source = \"local\"; path = \"p\";\n"
                                     "  redis = { endpoints = [ \"h:1\" ]; }; }\n");
    assert_int_equal(load_file("agent.conf", &c), -EINVAL);
    snprintf(want, sizeof want, "%s/agent.conf:5: agent.bogus: unknown key", tmpdir);
    assert_string_equal(err, want);

    /* A syntax error inside an included file. */
    write_file("bad.conf", "\n\nworkers = ;\n");
    write_file("agent.conf", "agent = {\n@include \"bad.conf\"\n};\n");
    assert_int_equal(load_file("agent.conf", &c), -EINVAL);
    snprintf(want, sizeof want, "%s/bad.conf:3: syntax error", tmpdir);
    assert_string_equal(err, want);
}

static void test_include_of_absolute_path_works(void **state) {
    char text[PATH_MAX * 2];
    write_file("abs.conf", "agent = { workers = 7; " NO_CREDS_OK " };\n");
    snprintf(text, sizeof text, "@include \"%s/abs.conf\"\n", tmpdir);
    write_file("agent.conf", text);
    struct config *c = NULL;
    assert_int_equal(load_file("agent.conf", &c), 0);
    assert_int_equal(c->agent.workers, 7);
    config_free(c);
}

static void test_include_errors_are_reported(void **state) {
    struct config *c = NULL;
    char want[PATH_MAX * 3];
    write_file("agent.conf", "agent = { };\n@include \"missing.conf\"\n");
    assert_int_equal(load_file("agent.conf", &c), -ENOENT);
    snprintf(want, sizeof want, "%s/agent.conf:2: @include \"%s/missing.conf\": cannot open: No "
             "such file or directory", tmpdir, tmpdir);
    assert_string_equal(err, want);

    write_file("loop.conf", "@include \"loop.conf\"\n");
    assert_int_equal(load_file("loop.conf", &c), -EINVAL);
    assert_non_null(strstr(err, "nested more than 10 deep"));

    write_file("agent.conf", "@include \"creds.d\"\n");
    assert_true(load_file("agent.conf", &c) < 0);
    assert_non_null(strstr(err, "not a regular file"));
    assert_null(c);
}

static void test_missing_config_file_is_reported_with_errno(void **state) {
    struct config *c = NULL;
    assert_int_equal(load_file("nope.conf", &c), -ENOENT);
    assert_null(c);
    char want[PATH_MAX * 2];
    snprintf(want, sizeof want, "%s/nope.conf: cannot open: No such file or directory", tmpdir);
    assert_string_equal(err, want);
}

static void test_include_in_string_relative_to_include_dir(void **state) {
    write_file("abs.conf", "agent = { workers = 5; " NO_CREDS_OK " };\n");
    struct config *c = NULL;
    int r = config_load_string("@include \"abs.conf\"\n", "inline.conf", tmpdir, fake_lookup, NULL,
                               &c, err, sizeof err);
    assert_int_equal(r, 0);
    assert_int_equal(c->agent.workers, 5);
    config_free(c);
}

/* config/agent.conf.example documents every default: it must load, and say what the code does. */
static void test_reference_example_loads_and_matches_the_defaults(void **state) {
    const char *path = RC_TEST_SOURCE_DIR "/../config/agent.conf.example";
    struct config *c = NULL;
    int r = config_load(path, fake_lookup, NULL, &c, err, sizeof err);
    if (r != 0)
        print_error("%s\n", err);
    assert_int_equal(r, 0);

    struct config *d = load_ok(SRC_LOCAL "credentials = ( { name = \"cache\"; source = \"local\"; "
                               "path = \"cache\"; " REDIS_OK " } );\n");
    assert_string_equal(c->agent.runtime_dir, d->agent.runtime_dir);
    assert_string_equal(c->agent.state_dir, d->agent.state_dir);
    assert_string_equal(c->agent.group, d->agent.group);
    assert_string_equal(c->agent.plugin_dir, d->agent.plugin_dir);
    assert_string_equal(c->agent.control_socket, d->agent.control_socket);
    assert_int_equal(c->agent.log_level, d->agent.log_level);
    assert_string_equal(c->agent.metrics_file, d->agent.metrics_file);
    assert_int_equal(c->agent.workers, d->agent.workers);
    assert_true(c->agent.startup_timeout_usec == d->agent.startup_timeout_usec);
    const struct config_credential *a = &c->credentials[0], *b = &d->credentials[0];
    assert_true(a->poll_interval_usec == b->poll_interval_usec);
    assert_int_equal(a->mode, b->mode);
    assert_int_equal(a->formats, b->formats);
    assert_int_equal(a->redis.cluster, b->redis.cluster);
    assert_int_equal(a->redis.tls.enabled, b->redis.tls.enabled);
    assert_int_equal(a->redis.tls.insecure_skip_verify, b->redis.tls.insecure_skip_verify);
    assert_int_equal(a->redis.validate, b->redis.validate);
    assert_true(a->redis.timeout_usec == b->redis.timeout_usec);
    assert_null(a->group);
    assert_null(a->on_change);
    config_free(d);
    config_free(c);
}

/* ---- the production tables -------------------------------------------------------------
 * These walk the host's own key tables (config_host_keys()), so a change to a default, an
 * offset, a store or a check there is seen here. */

static const char *const host_sections[] = { "agent", "credentials", "redis", "rotation" };

/* A config whose `section` holds `kv` ("key = value;"); the credential has a rotation. */
static char *placed(const char *section, const char *kv) {
    char *s;
    bool in_rot = strcmp(section, "rotation") == 0;
    assert_true(asprintf(&s,
                         "agent = { %s };\n" SRC_LOCAL
                         "credentials = ( { name = \"cache\"; source = \"local\"; path = \"x\"; %s\n"
                         "  redis = { endpoints = [ \"h:1\" ]; %s };\n"
                         "  rotation = { %s %s }; } );\n",
                         strcmp(section, "agent") == 0 ? kv : "",
                         strcmp(section, "credentials") == 0 ? kv : "",
                         strcmp(section, "redis") == 0 ? kv : "",
                         in_rot && strncmp(kv, "strategy ", 9) == 0 ? "" : "strategy = \"redis-acl\";",
                         in_rot ? kv : "") > 0);
    return s;
}

/* Where the table says the key is kept; NULL for what is not kept in a public struct. */
static void *field(struct config *c, const char *section, const struct config_key *k) {
    struct config_credential *cr = &c->credentials[0];
    if (k->store == CONFIG_STORE_NONE || k->store == CONFIG_STORE_SECTION)
        return NULL;
    if (strcmp(section, "agent") == 0)
        return (char *)&c->agent + k->offset;
    if (strcmp(section, "credentials") == 0)
        return (char *)cr + k->offset;
    if (strcmp(section, "redis") == 0)
        return (char *)&cr->redis + k->offset;
    return k->offset < sizeof cr->rotation ? (char *)&cr->rotation + k->offset : NULL;
}

static void expect_default(const char *section, const struct config_key *k, void *f) {
    const char *d = k->default_value;
    uint64_t usec;
    int v;
    switch (k->store) {
    case CONFIG_STORE_STRING: assert_string_equal(*(char **)f, d); break;
    case CONFIG_STORE_OPT_STRING:
        if (*d)
            assert_string_equal(*(char **)f, d);
        else
            assert_null(*(char **)f);
        break;
    case CONFIG_STORE_BOOL: assert_int_equal(*(bool *)f, strcmp(d, "true") == 0); break;
    case CONFIG_STORE_UINT: assert_int_equal(*(unsigned *)f, strtoul(d, NULL, 10)); break;
    case CONFIG_STORE_USEC:
        assert_int_equal(duration_parse(d, &usec), 0);
        assert_true(*(uint64_t *)f == usec);
        break;
    case CONFIG_STORE_ENUM:
        assert_int_equal(enumstr_from(k->words, d, &v), 0);
        assert_int_equal(*(int *)f, v);
        break;
    case CONFIG_STORE_FLAGS:
        assert_int_equal(enumstr_from(k->words, d, &v), 0);
        assert_int_equal(*(unsigned *)f, (unsigned)v);
        break;
    default: fail_msg("%s.%s: a default for store %d", section, k->name, (int)k->store);
    }
}

static void test_production_defaults_reach_their_fields(void **state) {
    char *text = placed("agent", "");
    struct config *c = load_ok(text);
    size_t checked = 0;
    free(text);
    for (size_t s = 0; s < sizeof host_sections / sizeof *host_sections; s++)
        for (const struct config_key *k = config_host_keys(host_sections[s]); k->name; k++) {
            void *f = field(c, host_sections[s], k);
            if (!f || !k->default_value)
                continue;
            expect_default(host_sections[s], k, f);
            checked++;
        }
    assert_true(checked >= 24);
    /* the one kept elsewhere: password_alphabet's name becomes its characters */
    assert_string_equal(c->credentials[0].rotation.alphabet,
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
    assert_null(config_host_keys("nosuch"));
    config_free(c);
}

/* A value other than the default reaches the field: booleans flip, durations and
 * integers take what is written. */
static void test_production_values_reach_their_fields(void **state) {
    size_t checked = 0;
    for (size_t s = 0; s < sizeof host_sections / sizeof *host_sections; s++)
        for (const struct config_key *k = config_host_keys(host_sections[s]); k->name; k++) {
            char kv[128];
            /* pending_timeout must be more than 3 x redis.timeout + 10s (16s by default) */
            unsigned secs = strcmp(k->name, "pending_timeout") == 0 ? 70 : 7;
            if (k->store == CONFIG_STORE_BOOL)
                snprintf(kv, sizeof kv, "%s = %s;", k->name,
                         strcmp(k->default_value, "true") == 0 ? "false" : "true");
            else if (k->store == CONFIG_STORE_USEC)
                snprintf(kv, sizeof kv, "%s = \"%us\";", k->name, secs);
            else if (k->store == CONFIG_STORE_UINT)
                snprintf(kv, sizeof kv, "%s = %lld;", k->name, (long long)k->min);
            else
                continue;
            char *text = placed(host_sections[s], kv);
            struct config *c = load_ok(text);
            void *f = field(c, host_sections[s], k);
            assert_non_null(f);
            if (k->store == CONFIG_STORE_BOOL)
                assert_int_equal(*(bool *)f, strcmp(k->default_value, "true") != 0);
            else if (k->store == CONFIG_STORE_USEC)
                assert_true(*(uint64_t *)f == secs * USEC_PER_SEC);
            else
                assert_int_equal(*(unsigned *)f, (unsigned)k->min);
            config_free(c);
            free(text);
            checked++;
        }
    assert_true(checked >= 15);
}

/* Each check a production key declares refuses a bad value with the key's path. */
static void test_production_checks_refuse_bad_values(void **state) {
    size_t checked = 0;
    for (size_t s = 0; s < sizeof host_sections / sizeof *host_sections; s++)
        for (const struct config_key *k = config_host_keys(host_sections[s]); k->name; k++) {
            char kv[128], want[512], list[256];
            const char *sec = host_sections[s];
            const char *prefix = strcmp(sec, "agent") == 0         ? "agent."
                                 : strcmp(sec, "credentials") == 0 ? "credentials[0]."
                                 : strcmp(sec, "redis") == 0       ? "credentials[0].redis."
                                                                   : "credentials[0].rotation.";
            if (k->words) {
                bool list_key = k->type == CONFIG_T_STRING_LIST;
                snprintf(kv, sizeof kv, "%s = %s\"nope\"%s;", k->name, list_key ? "[ " : "",
                         list_key ? " ]" : "");
                snprintf(want, sizeof want, "%s%s: unknown %s \"nope\" (use %s)", prefix, k->name,
                         k->noun, enumstr_list(k->words, k->checks & CONFIG_CHECK_WORDS_QUOTED,
                                               list, sizeof list));
            } else if (k->checks & CONFIG_CHECK_ABSOLUTE) {
                snprintf(kv, sizeof kv, "%s = \"rel/x\";", k->name);
                snprintf(want, sizeof want, "%s%s: \"rel/x\" must be an absolute path", prefix,
                         k->name);
            } else if (k->checks & CONFIG_CHECK_POSITIVE) {
                snprintf(kv, sizeof kv, "%s = \"0s\";", k->name);
                snprintf(want, sizeof want, "%s%s: must be more than 0s", prefix, k->name);
            } else {
                continue;
            }
            char *text = placed(sec, kv);
            expect_error_part(text, want);
            free(text);
            checked++;
        }
    assert_true(checked >= 17);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config_loads_every_value),
        cmocka_unit_test(test_production_defaults_reach_their_fields),
        cmocka_unit_test(test_rotation_fleet_keys),
        cmocka_unit_test(test_production_values_reach_their_fields),
        cmocka_unit_test(test_production_checks_refuse_bad_values),
        cmocka_unit_test(test_empty_config_gives_documented_agent_defaults),
        cmocka_unit_test(test_config_without_credentials_is_an_error_unless_allowed),
        cmocka_unit_test(test_config_node_same_compares_values_not_layout),
        cmocka_unit_test(test_credential_defaults_apply_when_keys_are_unset),
        cmocka_unit_test(test_empty_tls_strings_mean_unset_and_empty_group_is_kept),
        cmocka_unit_test(test_unknown_key_names_file_line_and_key),
        cmocka_unit_test(test_unknown_key_in_nested_plugin_group_is_error),
        cmocka_unit_test(test_a_key_of_another_source_type_is_unknown),
        cmocka_unit_test(test_wrong_type_says_what_was_expected_and_found),
        cmocka_unit_test(test_bad_duration_names_key_and_units),
        cmocka_unit_test(test_zero_poll_interval_and_timeout_are_rejected),
        cmocka_unit_test(test_integer_out_of_range_is_error_including_above_int_max),
        cmocka_unit_test(test_integer_beyond_int64_is_error),
        cmocka_unit_test(test_plugin_int_keeps_its_value_above_int_max),
        cmocka_unit_test(test_integer_with_leading_zero_is_rejected_outside_mode),
        cmocka_unit_test(test_integer_is_accepted_for_float_key),
        cmocka_unit_test(test_integer_literals_stay_aligned_past_comments_strings_and_floats),
        cmocka_unit_test(test_mode_accepts_octal_literal_hex_and_octal_string),
        cmocka_unit_test(test_mode_rejects_decimal_out_of_range_and_non_octal),
        cmocka_unit_test(test_bad_names_are_rejected_with_the_reason),
        cmocka_unit_test(test_control_characters_in_names_are_escaped_in_messages),
        cmocka_unit_test(test_source_type_must_be_a_valid_name),
        cmocka_unit_test(test_duplicate_names_are_rejected),
        cmocka_unit_test(test_unknown_source_reference_is_error),
        cmocka_unit_test(test_missing_required_keys_are_errors),
        cmocka_unit_test(test_lookup_failure_names_the_source_and_keeps_its_error_code),
        cmocka_unit_test(test_lookup_gets_agent_plugin_dir_even_when_agent_comes_last),
        cmocka_unit_test(test_broken_plugin_schema_is_reported),
        cmocka_unit_test(test_plugin_keys_are_read_with_defaults_and_nested_groups),
        cmocka_unit_test(test_compact_keeps_every_node_value_and_drops_host_keys),
        cmocka_unit_test(test_getters_on_an_unset_group_return_defaults),
        cmocka_unit_test(test_schema_default_texts_are_well_formed),
        cmocka_unit_test(test_formats_must_include_json_and_be_known),
        cmocka_unit_test(test_on_change_must_start_with_an_absolute_path),
        cmocka_unit_test(test_rotation_defaults_and_every_key),
        cmocka_unit_test(test_rotation_users_keys),
        cmocka_unit_test(test_rotation_errors_name_file_line_and_key),
        cmocka_unit_test(test_validate_policy_and_log_level_accept_only_documented_words),
        cmocka_unit_test(test_endpoints_must_be_host_port_v6_or_unix),
        cmocka_unit_test(test_agent_paths_must_be_absolute),
        cmocka_unit_test(test_parse_error_names_file_and_line),
        cmocka_unit_test(test_null_lookup_accepts_any_plugin_keys),
        cmocka_unit_test(test_config_free_accepts_null_and_errors_without_buffer),
        cmocka_unit_test(test_oversized_text_is_refused),
        cmocka_unit_test(test_name_valid_follows_the_contract),
        cmocka_unit_test(test_validate_policy_to_string_names_each_policy),
        cmocka_unit_test(test_reference_example_loads_and_matches_the_defaults),
        cmocka_unit_test_setup_teardown(test_include_resolves_relative_to_the_config_files_directory,
                                        make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_error_in_included_file_names_that_file_and_line,
                                        make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_admin_password_file_permissions_are_checked_at_load,
                                        make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_config_file_and_its_directory_must_not_be_writable_by_others,
                                        make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_on_change_program_must_not_be_writable_by_others,
                                        make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_of_absolute_path_works, make_tmpdir,
                                        remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_errors_are_reported, make_tmpdir,
                                        remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_missing_config_file_is_reported_with_errno,
                                        make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_in_string_relative_to_include_dir,
                                        make_tmpdir, remove_tmpdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
