/* agent_fixture: the real agent (agent/agent.c and every module it drives) on a real
 * sd-event loop in the test program, for test_agent and test_rotation.
 *
 * A fixture is a directory tree (store/, run/, state/, agent.conf) under
 * $REDIS_CREDS_TEST_TMP or /tmp, the file plugin from the build's plugins/ directory, a
 * worker pool, the runtime directory and a host key, as agent/main.c sets them up, and a
 * real redis-server (redis_server.h's fixture) that the test gives by port. The test
 * writes the store's files and the config, starts the agent with af_start(), and runs the
 * loop with af_run_until() until what it waits for is true (never "sleep, then assert").
 * af_stop() undoes everything in reverse and removes the tree. Loop thread only.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "agent.h"
#include "rctime.h"

/* How long a test waits for what the agent does: generous, for a loaded machine (every wait
 * is on an event, so a passing run does not take it). */
#define AF_WAIT (20 * RCTIME_USEC_PER_SEC)

struct agent_fixture {
    char root[200], store[240], run[240], state[240], conf[240];
    uint16_t port;                 /* the redis-server credentials are validated against */
    sd_event *e;
    struct worker_pool *pool;
    struct runtime *rt;
    struct secret *hostkey;
    struct plugins *plugins;
    struct agent *a;
    int reloads;                   /* reloads ended (agent_set_reload_observer) */
    int reload_result;             /* the last one's result, and its text */
    char reload_why[512];
};

/* Makes the tree for a redis-server on port. 0 or -1. */
int af_init(struct agent_fixture *f, const char *prefix, uint16_t port);
/* Writes agent.conf: the agent's settings, source "local" (type file, store/), and the
 * text of the credentials list's entries (libconfig groups, comma-separated). An entry's
 * redis group can say @ENDPOINT@ for "127.0.0.1:<port>". */
void af_write_config(struct agent_fixture *f, const char *credentials);
/* One credential "name" with path name.json, validated against the fixture's server;
 * extra: more settings inside its group ("" for none). Into buf; returns buf. */
const char *af_cred(char *buf, size_t size, const char *name, const char *extra);
/* The store's file `file` holds {"username": user, "password": pw}, renamed into place. */
void af_store(struct agent_fixture *f, const char *file, const char *user, const char *pw);
/* The store's file `file` holds text, renamed into place. */
void af_store_text(struct agent_fixture *f, const char *file, const char *text);
/* Loads agent.conf as the agent does and starts the agent (--once when once). 0 or -1. */
int af_start(struct agent_fixture *f, bool once);
/* Runs the loop until pred(f, ud) is true (true), or timeout_usec passed or the loop
 * exited (false). */
bool af_run_until(struct agent_fixture *f, bool (*pred)(struct agent_fixture *f, void *ud), void *ud,
                  uint64_t timeout_usec);
/* The status row of credential name (agent_status_json), or NULL; json_decref it. */
json_t *af_status(struct agent_fixture *f, const char *name);
/* The published run/<name>.json, or NULL when there is none; json_decref it. */
json_t *af_published(struct agent_fixture *f, const char *name);
/* A string member of o ("" when missing or not a string); "a.b" for a member of a member. */
const char *af_str(json_t *o, const char *path);
/* Runs the loop until member `key` ("a.b": of a member) of credential name's status row
 * is value (true), or AF_WAIT passed (false, the row printed). */
bool af_wait_status(struct agent_fixture *f, const char *name, const char *key, const char *value);
/* Runs the loop until run/<name>.json holds password (is_not false) or a password other
 * than it (is_not true), or AF_WAIT passed (false, the file printed). */
bool af_wait_published(struct agent_fixture *f, const char *name, const char *password, bool is_not);

/* Stops and frees the agent and everything af_start() set up, removes the tree. */
void af_stop(struct agent_fixture *f);
/* ACL SETUSER user <rules...> on the redis-server at port (as the default user). 0 or -1. */
int af_acl_setuser(uint16_t port, const char *user, const char *const *rules, int n);
/* Does user log in with pw on the server at port? */
bool af_can_login(uint16_t port, const char *user, const char *pw);
