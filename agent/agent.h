/* agent: the pipeline of docs/design.md §2 on one sd-event loop.
 *
 * For each credential: timer / store wake-up -> fetch (worker) -> new version? ->
 * validate (worker) -> publish (loop) -> notify, hooks, STATUS, metrics. The agent owns
 * every source instance and credential state; everything here runs on the loop thread,
 * workers only run jobs and hand them back. A source instance never gets more store
 * calls at once than it takes (one queue of store operations per source, srcq.h). Retry
 * policy lives here: backoff with jitter per credential, reset on success; repeated
 * failures are logged at a growing interval.
 * Each credential's check and rotation are one state machine (credsm.h: a pure
 * transition function); this module feeds it the events of timers, the sources' queues
 * and the worker pool, and carries out its effects. Credentials with `rotation` are also
 * rotated by the agent (docs/design.md §9): rotation.c decides the steps and feeds them to the
 * machine, and never calls back into this module (agent_internal.h is what the two
 * share); rotate.h has the phase record, passwords and ACL commands.
 *
 * Start-up and shutdown order is in agent/main.c; this module only needs the loop, the
 * worker pool, the runtime directory and the host key it is given.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "plugins.h"
#include "runtime.h"
#include "secret.h"
#include "worker.h"

struct agent;

struct agent_params {
    sd_event *event;
    struct worker_pool *pool;
    struct runtime *runtime;
    const struct secret *hostkey;
    struct plugins *plugins;
    const char *config_path;
    bool once;                /* one attempt per credential, then exit */
};

/* Takes ownership of cfg. Opens the sources, adopts existing files, schedules the first
 * attempts. 0 and *ret, or -errno (logged). */
int agent_start(const struct agent_params *p, struct config *cfg, struct agent **ret);
/* SIGHUP: reload the config file; a config that fails to load keeps the old one, and so
 * does one that would delete more than half of the published credentials, unless it sets
 * agent.allow_removals. */
void agent_reload(struct agent *a);
/* The same, where the caller said removals are intended (`reload --allow-removals`). */
void agent_request_reload(struct agent *a, bool allow_removals);
/* Called on the loop thread at the end of every reload (SIGHUP or a request) with its
 * outcome: 0 when the new config is in force, else a negative errno and the rejection
 * text. -ENOMEM, -EMFILE, -ENFILE, -EIO and -EAGAIN mean the agent could not apply it;
 * every other errno is a configuration error (a file that does not load, a removal guard,
 * an unknown group). One observer; fn NULL removes it. A function pointer, so that agent.c
 * does not call the control socket's code (tests/arch/check_tree.py). */
void agent_set_reload_observer(struct agent *a, void (*fn)(void *ud, int result, const char *why),
                               void *ud);
/* SIGTERM: stop scheduling; the caller stops the pool and frees. */
void agent_stop(struct agent *a);
/* Control socket requests (loop thread). status: a JSON object without secrets (the
 * caller decrefs). refresh: check the store now (also after a FATAL error). rotate: drive a
 * rotation now. 0, or -errno with err ("no credential named X"). */
struct json_t *agent_status_json(struct agent *a);
int agent_refresh(struct agent *a, const char *name, char *err, size_t errlen);
int agent_rotate(struct agent *a, const char *name, bool revoke, char *err, size_t errlen);
/* --once: 0 when every credential is current, else 1 (valid after the loop exits). */
int agent_exit_code(const struct agent *a);
struct agent *agent_free(struct agent *a);
