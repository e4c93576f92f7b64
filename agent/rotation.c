/* rotation: drives agent-driven rotations (docs/design.md §9) on the agent's loop.
 *
 * redis-acl on a store with a rotation record (§9.5, the fleet): claim = create the record
 * (check-and-set) -> add the pending password on every node and validate it -> write the
 * credential's entry (check-and-set, marked) and record phase removing -> publish ->
 * grace -> remove the old password -> remove the record. Every step re-reads the record
 * first and stops quietly when another host holds it now; a record left alone for
 * pending_timeout is taken over (epoch + 1); a failure before the entry write rolls back
 * (the pending password leaves every node, then the record). The schedule is the fleet
 * clock (§9.6): the store's rotated_at + interval + splay, never before the first fetch.
 * redis-acl-users (§9.7) runs the same flow with two users: adding compares them (ACL
 * GETUSER) and enables the idle one; removing drains the previous one (CLIENT LIST every
 * drain_check, step DRAINING) before it goes off. After either ACL strategy's removal,
 * the revocation watch (steps WATCH / WATCHING) reads ACL LOG for revocation_watch.
 *
 * Other stores (and a rotation the previous release left, phase record format 1):
 * claim (store check-and-set) -> add the new password on every node -> validate ->
 * publish with the old one as `previous` -> grace -> remove the old password. Each phase
 * change is recorded (rotate.h) before the next step starts, so a crash is finished at
 * the next start: from CLAIMED/ADDED the new password is read back from the store, from
 * PUBLISHED the old one is the published file's `previous`. A failure before publication
 * is rolled back (new password removed from Redis, old credential written back to the
 * store) so nothing half-made stays; every failure is reported and retried with backoff.
 *
 * Blocking steps run as the credential's rot_job on the worker pool; their finish runs on
 * the loop. This module decides the steps; each step is a state of the credential's
 * machine (credsm.h), entered with a CSM_ROT_STEP event, and agent.c carries out what
 * the machine asks for (queue the store step, submit the job, arm the timer, publish,
 * check the store again). It never calls agent.c. What the two share is in
 * agent_internal.h; the phase record, passwords, ACL commands and the resume decision
 * are rotate.h's.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "agent_internal.h"

/* The store makes the password itself (vault-database, azure-keys): the agent has no
 * password to add to Redis and nothing to roll back; the new one works in Redis when
 * rotate() returns. */
static bool store_makes_password(const struct cred_rt *c) {
    return !config_rotation_is_acl(c->cfg->rotation.strategy);
}

/* redis-acl-users: two users alternate; the previous one is disabled once drained. */
static bool users_strategy(const struct cred_rt *c) {
    return c->cfg->rotation.strategy == ROTATION_REDIS_ACL_USERS;
}

/* The user of rotation.users that is not `current`; NULL when current is not one of them. */
static const char *idle_user(const struct config_rotation *ro, const char *current) {
    if (!current || ro->n_users != 2)
        return NULL;
    if (strcmp(current, ro->users[0]) == 0)
        return ro->users[1];
    return strcmp(current, ro->users[1]) == 0 ? ro->users[0] : NULL;
}

/* vault-database has no grace: Vault's plugin replaced the old password already. The
 * others keep the old one working for `grace` after publication, then remove it
 * (redis-acl: ACL SETUSER <old) or regenerate it (azure-keys: the other key). */
static bool has_grace(const struct cred_rt *c) {
    return c->cfg->rotation.strategy != ROTATION_VAULT_DATABASE;
}

static void rot_abandon(struct cred_rt *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ROT_RETRY_MIN_USEC (5 * USEC_PER_SEC)
#define ROT_RETRY_MAX_USEC (3600 * USEC_PER_SEC)

static void rot_job_clear(struct rot_job *j) {
    if (!j)
        return;
    free(j->username);
    j->username = NULL;
    j->old_pw = secret_free(j->old_pw);
    j->new_pw = secret_free(j->new_pw);
    j->expected[0] = j->new_version[0] = j->why[0] = '\0';
    j->store_restored = false;
    j->r = 0;
    j->rotated_at = INT64_MIN;   /* the record (rec, rev) stays: rec_forget() */
    free(j->pending_user);
    j->pending_user = NULL;
    j->nothing_added = j->past_max_grace = j->unrestore = false;
    j->killed = 0;
    aclops_result_clear(&j->clients);
}

static void rot_save(struct cred_rt *c) {
    char err[512];
    if (rotate_state_save(c->a->cfg->agent.state_dir, c->cfg->name, c->rot.st, err, sizeof err) < 0)
        log_ctx_msg(LOG_ERR, &(struct log_ctx){ .name = c->cfg->name },
                    "%s: cannot record the rotation phase (%s): %s", c->cfg->name,
                    rotate_phase_to_string(c->rot.st->phase), err);
}

/* Enters step `to` of the credential's machine. A step that waits (NONE: the schedule,
 * GRACE, RETRY_WAIT) has its timer armed `delay` usec from now; store: the step calls
 * the source (rotate()), through its queue. */
static void rot_go(struct cred_rt *c, enum rot_step to, bool store, uint64_t delay) {
    c->rot.arm_delay = delay;
    int r = cred_event(c, (struct credsm_event){ .type = CSM_ROT_STEP, .step = to, .store = store });
    if (r < 0)   /* a bug: say it rather than act on a state the machine does not have */
        log_ctx_msg(LOG_ERR, &(struct log_ctx){ .name = c->cfg->name }, "%s: rotation step %s -> %s "
                    "refused: %s", c->cfg->name, credsm_step_name(c->sm.rot), credsm_step_name(to),
                    strerror(-r));
}

/* The store changed: check it again once the running step is over. */
static void rot_wake(struct cred_rt *c) {
    cred_event(c, (struct credsm_event){ .type = CSM_WAKE });
}

/* usec from now until the schedule is due: the fleet clock (or this host's last rotation,
 * or its baseline) + interval + the splay drawn for that clock. A clock in whole seconds
 * counts from the second after it, so that no host is due before interval has passed. */
static uint64_t due_in(const struct cred_rt *c) {
    const struct rot_rt *ro = &c->rot;
    int64_t due_s = rotate_next_due(ro->st, c->cfg->rotation.interval_usec, 0) + (ro->st->fleet_rotated_at ? 1 : 0);
    uint64_t due = (uint64_t)due_s * USEC_PER_SEC + ro->splay_usec, now = (uint64_t)rctime_real_usec();
    return due > now ? due - now : 0;
}

static void rot_schedule_due(struct cred_rt *c) {
    rot_go(c, RS_NONE, false, due_in(c));
}

void rotation_job_done(struct cred_rt *c) {
    struct rot_job *j = c->rot.job;
    if (c->a->stopping) {
        rot_job_clear(j);
        return;
    }
    j->finish(c, j);
}

/* Hands the rotation's job to a worker for one step (the machine's ROT_RUN, or its
 * ROT_QUEUE_STORE for a step that calls the store: the source's queue starts it, ahead
 * of routine fetches); finish() then runs on the loop. */
static void rot_submit(struct cred_rt *c, enum rot_step step, void (*run)(struct job *),
                       void (*finish)(struct cred_rt *, struct rot_job *), bool store) {
    struct rot_job *j = c->rot.job;
    j->c = c;
    j->job.run = run;
    j->finish = finish;
    rot_go(c, step, store, 0);
}

static void rot_fail(struct cred_rt *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rot_fail(struct cred_rt *c, const char *fmt, ...) {
    struct rot_rt *ro = &c->rot;
    va_list ap;
    va_start(ap, fmt);
    text_vset(&ro->last_error, fmt, ap);
    va_end(ap);
    uint64_t delay = backoff_next(&ro->retry, backoff_random());
    /* The version is the one that stays published (the one clients keep using). */
    struct log_ctx ctx = cred_ctx(c, LOG_MID_ROTATION_FAILED, c->have_cur ? c->cur.cur.version : NULL);
    log_ctx_msg(LOG_ERR, &ctx, "rotation of %s failed: %s; %s published; retrying in %llus",
                c->cfg->name, text_or_empty(ro->last_error), c->have_cur ? c->cur.cur.version : "nothing",
                (unsigned long long)(delay / USEC_PER_SEC));
    /* Status: the credential stays current (a working one is published); the rotation's
     * error is in its own status field and in last_error. */
    text_set(&c->last_error, "rotation: %s", text_or_empty(ro->last_error));
    c->errors_total++;
    ro->failures_total++;
    rot_job_clear(ro->job);
    rot_go(c, RS_RETRY_WAIT, false, delay);
}

/* -- the revocation watch (docs/design.md §9): ACL LOG after the old password went -- */

static bool watch_enabled(const struct cred_rt *c) {
    return config_rotation_is_acl(c->cfg->rotation.strategy) && c->cfg->rotation.revocation_watch_usec > 0;
}

/* Worker: the watch's first read of every node's ACL LOG, its baseline, just before the
 * old password goes (failures before that are not the removal's). Logged in as the admin,
 * else as the credential (user, pw). Best effort: the removal goes on without it. */
static void watch_baseline(struct rot_job *j, const char *watched, const char *user,
                           const struct secret *pw) {
    struct cred_rt *c = j->c;
    struct aclwatch_target t;
    const char *users[1] = { watched ? watched : "default" };
    char what[256], problem[256];

    aclwatch_clear(&c->rot.job->watch);
    c->rot.job->watch_problem[0] = '\0';
    snprintf(c->rot.job->watch_user, sizeof c->rot.job->watch_user, "%s", users[0]);
    if (!watch_enabled(c))
        return;
    if (aclwatch_target_open(c->cfg, user, pw, &t, problem, sizeof problem) == 0) {
        (void)aclwatch_read(&c->rot.job->watch, &t.t, users, 1, what, sizeof what, problem,
                            sizeof problem);
        aclwatch_target_close(&t);
    }
    snprintf(c->rot.job->watch_problem, sizeof c->rot.job->watch_problem, "%s", problem);
}

static void rot_completed(struct cred_rt *c) {
    struct rot_rt *ro = &c->rot;
    ro->st->watch_revoke = ro->st->watch_revoke || ro->st->revoke;
    ro->st->restores = 0;
    ro->st->phase = ROTATE_IDLE;
    ro->st->last_completed = now_real();
    rot_save(c);   /* recorded before it is announced */
    struct log_ctx ctx = cred_ctx(c, LOG_MID_ROTATION_COMPLETED, ro->st->new_version);
    enum rotation_strategy s = c->cfg->rotation.strategy;
    log_ctx_msg(LOG_NOTICE, &ctx, "rotation of %s completed: version %s published, %s (version %s) %s",
                c->cfg->name, ro->st->new_version, s == ROTATION_AZURE_KEYS ? "the other key"
                : s == ROTATION_REDIS_ACL_USERS ? "the previous user" : "the old password",
                ro->st->old_version, s == ROTATION_REDIS_ACL ? "removed from every node"
                : s == ROTATION_REDIS_ACL_USERS ? "disabled on every node (off, resetpass)"
                                    : s == ROTATION_VAULT_DATABASE ? "replaced in Redis by Vault" : "regenerated");
    text_clear(&ro->last_error);
    if (c->last_error && strncmp(c->last_error, "rotation: ", 10) == 0)
        text_clear(&c->last_error);
    backoff_reset(&ro->retry);
    rot_job_clear(ro->job);
    if (watch_enabled(c) && !c->a->stopping) {
        ro->st->watch_until = now_real() + (int64_t)(c->cfg->rotation.revocation_watch_usec / USEC_PER_SEC);
        rot_save(c);
        rot_go(c, RS_WATCH, false, c->cfg->rotation.revocation_check_usec);
        return;
    }
    rot_schedule_due(c);
}

/* -- remove: the old password goes -- */

static void rot_remove_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    const struct config_credential *cc = j->c->cfg;
    watch_baseline(j, j->username, j->username, j->new_pw);
    j->r = rotate_acl_apply(&cc->redis, &cc->rotation, j->username, ROTATE_ACL_REMOVE, j->old_pw,
                            j->username, j->new_pw, &j->acl);
}

static void rot_remove_done(struct cred_rt *c, struct rot_job *j) {
    if (j->r < 0)
        rot_fail(c, "cannot remove the old password (version %s): %s", c->rot.st->old_version,
                 j->acl.detail);
    else
        rot_completed(c);
}

/* azure-keys: the old key is regenerated instead (rotate() with NULL regenerates the key
 * that is not `expected`, the published one). */
static void rot_regenerate_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    struct cred_rt *c = j->c;
    memset(&j->err, 0, sizeof j->err);
    j->r = c->src->type->rotate_self(c->src->state, &j->rc, j->expected, j->new_version, &j->err);
}

static void rot_regenerate_done(struct cred_rt *c, struct rot_job *j) {
    if (j->r < 0 && j->err.cls == RC_ERR_CONFLICT) {
        rot_wake(c);
        rot_abandon(c, "%s", j->err.message);
        return;
    }
    if (j->r < 0) {
        const char *cls = rc_err_class_to_string(j->err.cls);
        rot_fail(c, "cannot regenerate the old key (version %s) in %s (%s): %s", c->rot.st->old_version,
                 c->cfg->source, cls ? cls : "?", j->err.message);
        return;
    }
    /* The next look publishes both new keys (the preferred one as current). */
    rot_wake(c);
    rot_completed(c);
}

static void rot_remove_rec_run(struct job *jb);
static void rot_remove_rec_done(struct cred_rt *c, struct rot_job *j);

static void rot_remove(struct cred_rt *c) {
    struct rot_job *j = c->rot.job;
    rot_job_clear(j);
    if (c->rot.st->record) {   /* the old password is in the rotation record */
        /* Not while this host still publishes the old password (its publish of the new
         * version failed, or a taker has not picked the entry up yet): its clients would
         * be refused. The store is looked at again, and the removal retried. */
        if (c->have_cur && rotrec_entry_is(&j->rec, c->cur.cur.username, c->cur.cur.password) ==
                               ROTREC_ENTRY_BASE) {
            rot_wake(c);
            rot_fail(c, "the old password stays on the nodes while this host still publishes it "
                     "(version %s): it is removed once the new version is published here",
                     c->cur.cur.version);
            return;
        }
        rot_submit(c, RS_REMOVING, rot_remove_rec_run, rot_remove_rec_done, true);
        return;
    }
    /* The old password is the published `previous`, the new one the published password:
     * unless the store moved on during grace, when `previous` is not ours to remove. */
    if (!c->have_cur || !c->cur.has_previous || !c->cur.prev.password ||
        rotate_resume_decide(c->rot.st, c->cur.cur.version, c->cur.prev.version) != ROTATE_RESUME_REMOVE) {
        rot_abandon(c, "the published credential changed during the grace period (now %s); the "
                    "old password (version %s) is left in Redis", c->have_cur ? c->cur.cur.version : "none",
                    c->rot.st->old_version);
        return;
    }
    j->c = c;
    if (store_makes_password(c)) {
        /* azure-keys: regenerate the key that is not the published one (the old one). */
        j->rc = (struct rc_credential){ .name = c->cfg->name, .node = plugins_node(&c->cfg->node) };
        snprintf(j->expected, sizeof j->expected, "%s", c->cur.cur.version);
        rot_submit(c, RS_REMOVING, rot_regenerate_run, rot_regenerate_done, true);
        return;
    }
    j->username = c->cur.cur.username ? strdup(c->cur.cur.username) : NULL;
    j->old_pw = secret_dup(c->cur.prev.password);
    j->new_pw = secret_dup(c->cur.cur.password);
    if ((c->cur.cur.username && !j->username) || !j->old_pw || !j->new_pw) {
        rot_fail(c, "out of memory");
        return;
    }
    rot_submit(c, RS_REMOVING, rot_remove_run, rot_remove_done, false);
}

/* -- grace: both passwords work; clients move over -- */

static void rot_grace(struct cred_rt *c) {
    int64_t left = c->rot.st->grace_until - now_real();
    if (left <= 0) {
        rot_remove(c);
        return;
    }
    rot_go(c, RS_GRACE, false, (uint64_t)left * USEC_PER_SEC);
}

/* -- roll back a claimed rotation that cannot be finished -- */

static void rot_rollback_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    struct cred_rt *c = j->c;
    const struct config_credential *cc = c->cfg;
    struct rotate_acl_result ignored;
    char v[RC_VERSION_MAX];
    /* Best effort: nodes that never got the new password refuse to remove it. */
    (void)rotate_acl_apply(&cc->redis, &cc->rotation, j->username, ROTATE_ACL_REMOVE, j->new_pw,
                           j->username, j->old_pw, &ignored);
    memset(&j->err, 0, sizeof j->err);
    j->store_restored = c->src->type->rotate_write(c->src->state, &j->rc, j->new_version, j->username,
                                                   j->old_pw, NULL, v, &j->err) == 0;
}

static void rot_rollback_done(struct cred_rt *c, struct rot_job *j) {
    char why[512];
    snprintf(why, sizeof why, "%s", j->why);
    if (j->store_restored) {
        c->rot.st->phase = ROTATE_IDLE;
        rot_save(c);
        rot_fail(c, "%s; rolled back: the store and Redis hold the old credential again", why);
    } else
        rot_fail(c, "%s; and the store could not be rolled back (%s): the rotation will be "
                 "resumed", why, j->err.message);
}

static void rot_rollback(struct cred_rt *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rot_rollback(struct cred_rt *c, const char *fmt, ...) {
    struct rot_job *j = c->rot.job;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->why, sizeof j->why, fmt, ap);
    va_end(ap);
    rot_submit(c, RS_ROLLBACK, rot_rollback_run, rot_rollback_done, true);
}

/* -- add the new password next to the old one, validate, publish -- */

static void rot_add_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    const struct config_credential *cc = j->c->cfg;
    /* A store that makes the password has set it in Redis already: only validate. */
    j->r = store_makes_password(j->c) ? 0
                                      : rotate_acl_apply(&cc->redis, &cc->rotation, j->username,
                                                         ROTATE_ACL_ADD, j->new_pw, j->username,
                                                         j->old_pw, &j->acl);
    if (j->r == 0)
        validate_candidate(&cc->redis, j->username, j->new_pw, j->username, j->old_pw, &j->vres);
}

/* Why an ACL step failed: how many nodes did it, when it reached any (no "0/0 done" when
 * it failed before the first node, e.g. an admin password file it could not read). */
static const char *acl_why(const struct rotate_acl_result *acl, const char *what, char *buf, size_t size) {
    if (acl->total)
        snprintf(buf, size, "%s (%u/%u done): %s", what, acl->done, acl->total, acl->detail);
    else
        snprintf(buf, size, "%s (no node asked): %s", what, acl->detail);
    return buf;
}

static void rot_add_done(struct cred_rt *c, struct rot_job *j) {
    struct rot_rt *ro = &c->rot;
    if (j->r < 0) {
        char why[600];
        rot_rollback(c, "%s", acl_why(&j->acl, "cannot add the new password on every node", why, sizeof why));
        return;
    }
    if (j->vres.outcome != VALIDATE_PUBLISH && store_makes_password(c)) {
        /* Nothing to roll back: the store replaced the password in Redis already. The
         * record stays CLAIMED; the retry reads the store again (and a normal check
         * publishes the new version by itself once it validates, docs/design.md §7). */
        rot_fail(c, "the new version %s from the store does not validate (%s): %s", ro->st->new_version,
                 validate_outcome_to_string(j->vres.outcome), j->vres.detail);
        return;
    }
    if (j->vres.outcome != VALIDATE_PUBLISH) {
        rot_rollback(c, "the new password does not validate (%s): %s",
                     validate_outcome_to_string(j->vres.outcome), j->vres.detail);
        return;
    }
    ro->st->phase = ROTATE_ADDED;
    rot_save(c);
    text_set(&c->nodes, "%s", j->vres.nodes);
    /* The new version is published by the loop (the machine's ROT_PUBLISH), which then
     * calls rotation_published(). */
    cred_event(c, (struct credsm_event){ .type = CSM_ROT_PUBLISH });
}

struct rc_candidate rotation_candidate(struct cred_rt *c) {
    struct rot_job *j = c->rot.job;
    struct rc_candidate cand = { .username = j->username, .password = j->new_pw,
                                 .expires_at = RC_NO_EXPIRY, .role = RC_CAND_CURRENT,
                                 .rotated_at = j->rotated_at };
    snprintf(cand.version, sizeof cand.version, "%s", j->new_version);
    j->username = NULL;
    j->new_pw = NULL;
    return cand;
}

void rotation_published(struct cred_rt *c, int r) {
    struct rot_rt *ro = &c->rot;
    if (r < 0 || !c->have_cur || strcmp(c->cur.cur.version, ro->st->new_version) != 0) {
        /* The rotation's retry is the one timer armed for this failure. */
        rot_fail(c, "cannot publish the new version %s: %s", ro->st->new_version, text_or_empty(c->last_error));
        return;
    }
    if (!has_grace(c)) {
        /* No grace: the old password stopped working when the store rotated. */
        rot_completed(c);
        return;
    }
    ro->st->phase = ROTATE_PUBLISHED;
    if (!ro->st->record)   /* else the record's wait_until (rot_write_done) */
        ro->st->grace_until = now_real() + (int64_t)((c->cfg->rotation.grace_usec + USEC_PER_SEC - 1) / USEC_PER_SEC);
    rot_save(c);
    log_ctx_msg(LOG_INFO, &(struct log_ctx){ .name = c->cfg->name, .version = ro->st->new_version },
                "rotation of %s: version %s published with %s as previous; the old password is "
                "removed after the grace period", c->cfg->name, ro->st->new_version, ro->st->old_version);
    rot_job_clear(ro->job);
    rot_grace(c);
}

static void rot_add(struct cred_rt *c) {
    rot_submit(c, RS_ADDING, rot_add_run, rot_add_done, false);
}

/* -- claim: the store's check-and-set decides who rotates -- */

static void rot_claim_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    struct cred_rt *c = j->c;
    struct rc_rotation_mark mark = { .rotated_at = now_real(), .rotated_by = c->rot.job->host };
    memset(&j->err, 0, sizeof j->err);
    j->rotated_at = mark.rotated_at;
    j->r = j->new_pw ? c->src->type->rotate_write(c->src->state, &j->rc, j->expected, j->username,
                                                  j->new_pw, &mark, j->new_version, &j->err)
                     : c->src->type->rotate_self(c->src->state, &j->rc, j->expected, j->new_version, &j->err);
}

static void rot_claim_done(struct cred_rt *c, struct rot_job *j) {
    struct rot_rt *ro = &c->rot;
    if (j->r < 0 && j->err.cls == RC_ERR_CONFLICT) {
        /* Another agent rotated first: observe its version like any other change. */
        log_ctx_msg(LOG_NOTICE, &(struct log_ctx){ .name = c->cfg->name, .source = c->cfg->source },
                    "rotation of %s not needed: %s; picking up the store's version", c->cfg->name,
                    j->err.message);
        ro->st->last_completed = now_real();
        rot_save(c);
        rot_job_clear(j);
        rot_wake(c);
        rot_schedule_due(c);
        return;
    }
    if (j->r < 0) {
        const char *cls = rc_err_class_to_string(j->err.cls);
        rot_fail(c, "cannot write the new version to the store %s (%s): %s", c->cfg->source,
                 cls ? cls : "?", j->err.message);
        return;
    }
    ro->st->phase = ROTATE_CLAIMED;
    snprintf(ro->st->old_version, sizeof ro->st->old_version, "%s", j->expected);
    snprintf(ro->st->new_version, sizeof ro->st->new_version, "%s", j->new_version);
    ro->st->started_at = now_real();
    ro->st->grace_until = 0;
    rot_save(c);
    if (store_makes_password(c)) {
        /* The store has the new password; the next fetch brings it (rotation_take_fetched):
         * entering AWAIT_FETCH checks the store. */
        rot_job_clear(j);
        rot_go(c, RS_AWAIT_FETCH, false, 0);
        return;
    }
    rot_add(c);
}

/* -- the store's rotation record (docs/design.md §9.5): redis-acl on a store that keeps
 *    one. The credential's entry keeps the current credential until the pending password
 *    works on every node; the record holds the pending and the old password meanwhile, so
 *    that another host can finish (or undo) what this one began. Every step re-reads the
 *    record first and stops when another host holds it now. -- */

enum rec_outcome {
    RO_OK = 0,       /* the step did its part */
    RO_FAILED,       /* the store or a node failed (j->why): retried */
    RO_LOST,         /* the record moved on (another epoch or owner, or gone): stop, quietly */
    RO_WAIT,         /* look: another host's live record (j->seen) */
    RO_IDLE,         /* look: nothing to claim (resume only, or the entry moved on) */
    RO_REFUSED,      /* a node, the validation or the entry refused: roll back (j->why) */
    RO_DRAINING,     /* redis-acl-users, removing: the previous user still has connections */
};

static bool use_record(const struct cred_rt *c) {
    const struct rc_source_type *t = c->src->type;
    return config_rotation_is_acl(c->cfg->rotation.strategy) && (t->caps & RC_CAP_ROTATION_RECORD) &&
           t->record_read && t->record_write;
}

static int64_t pending_timeout_s(const struct cred_rt *c) {
    return (int64_t)(c->cfg->rotation.pending_timeout_usec / USEC_PER_SEC);
}

static enum rec_outcome store_failed(struct rot_job *j, const char *what) {
    const char *cls = rc_err_class_to_string(j->err.cls);
    snprintf(j->why, sizeof j->why, "%s in %s (%s): %s", what, j->c->cfg->source, cls ? cls : "?",
             j->err.message);
    return RO_FAILED;
}

/* Worker: the record in the store into *ret (*found false: none); j->rev its revision. */
static int rec_read(struct rot_job *j, struct rotrec *ret, bool *found) {
    struct cred_rt *c = j->c;
    struct secret *text = NULL;
    char why[256];
    memset(&j->err, 0, sizeof j->err);
    if (c->src->type->record_read(c->src->state, &j->rc, &text, j->rev, &j->err) < 0)
        return -EIO;
    *found = text != NULL;
    int r = text ? rotrec_parse(secret_data(text), secret_len(text), ret, why, sizeof why) : 0;
    secret_free(text);
    /* What to do about it: a record of a newer release is live (never delete it); any
     * other unreadable one blocks every host's rotation until someone deletes it. */
    if (r == -EPROTONOSUPPORT)
        rc_error_set(&j->err, RC_ERR_INVALID, "%s: a newer redis-creds wrote it; upgrade this host's agent "
                     "(or let the newer host finish the rotation)", why);
    else if (r < 0)
        rc_error_set(&j->err, RC_ERR_INVALID, "%s; no host can rotate %s while it is there: the agents "
                     "write this record, so delete it from the store (the file store keeps it as "
                     ".<path>.rotation beside the credential's file) once no host shows a rotation of "
                     "it under way", why, c->cfg->name);
    return r < 0 ? r : 0;
}

/* Worker: writes rec (NULL: removes the record) with a check-and-set on j->rev. */
static int rec_write(struct rot_job *j, const struct rotrec *rec) {
    struct cred_rt *c = j->c;
    struct secret *text = NULL;
    char rev[RC_REVISION_MAX] = "";
    memset(&j->err, 0, sizeof j->err);
    if (rec && rotrec_format(rec, &text) < 0)
        return rc_error_set(&j->err, RC_ERR_INVALID, "the rotation record cannot be written");
    int r = c->src->type->record_write(c->src->state, &j->rc, j->rev, text, rev, &j->err);
    secret_free(text);
    if (r == 0)
        snprintf(j->rev, sizeof j->rev, "%s", rev);
    return r;
}

/* Worker: the record goes (CAS): RO_OK, or RO_LOST when another host wrote it meanwhile. */
static enum rec_outcome rec_remove(struct rot_job *j) {
    if (rec_write(j, NULL) == 0)
        return RO_OK;
    return j->err.cls == RC_ERR_CONFLICT ? RO_LOST : store_failed(j, "cannot remove the rotation record");
}

/* Worker: the step's first act. RO_OK while this host still holds the record. */
static enum rec_outcome rec_recheck(struct rot_job *j) {
    struct rotrec read = { 0 };
    bool found;
    if (rec_read(j, &read, &found) < 0)
        return store_failed(j, "cannot read the rotation record");
    enum rotrec_action a = rotrec_decide(found ? &read : NULL, j->c->rot.job->host, j->c->rot.job->owner_id,
                                         j->rec.epoch, now_real(), pending_timeout_s(j->c));
    if (a == ROTREC_LOST && found)
        snprintf(j->prev_owner, sizeof j->prev_owner, "%s", read.owner);
    rotrec_clear(&read);
    return a == ROTREC_CONTINUE ? RO_OK : RO_LOST;
}

/* Worker: the credential's entry as the store has it now (ret: the current candidate). */
static int entry_read(struct rot_job *j, struct rc_candidate *ret) {
    struct cred_rt *c = j->c;
    struct rc_candidate cands[RC_MAX_CANDIDATES] = { 0 };
    for (size_t i = 0; i < RC_MAX_CANDIDATES; i++)
        cands[i] = (struct rc_candidate){ .expires_at = RC_NO_EXPIRY, .rotated_at = INT64_MIN };
    memset(&j->err, 0, sizeof j->err);
    int n = c->src->type->fetch(c->src->state, &j->rc, cands, &j->err);
    if (n < 1 || !cands[0].password) {
        for (int i = 0; i < n && i < RC_MAX_CANDIDATES; i++) {
            free(cands[i].username);
            secret_free(cands[i].password);
        }
        if (n >= 0)
            rc_error_set(&j->err, RC_ERR_INVALID, "the store returned no password");
        return -EIO;
    }
    for (int i = 1; i < n && i < RC_MAX_CANDIDATES; i++) {
        free(cands[i].username);
        secret_free(cands[i].password);
    }
    *ret = cands[0];
    return 0;
}

static void cand_free(struct rc_candidate *cand) {
    free(cand->username);
    cand->username = NULL;
    cand->password = secret_free(cand->password);
}

static bool same_user(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Worker, look: a new record for the published credential (j->username, j->old_pw) and
 * the password made for it (j->new_pw), created with a check-and-set on "no record". */
static int rec_claim(struct rot_job *j) {
    int64_t now = now_real();
    struct rotrec *r = &j->rec;
    rotrec_clear(r);
    *r = (struct rotrec){ .epoch = 1, .phase = ROTREC_ADDING, .claimed_at = now, .updated_at = now,
                          .revoke = j->revoke };
    snprintf(r->owner, sizeof r->owner, "%s", j->c->rot.job->host);
    snprintf(r->owner_id, sizeof r->owner_id, "%s", j->c->rot.job->owner_id);
    snprintf(r->base_version, sizeof r->base_version, "%s", j->expected);
    /* redis-acl-users: the idle user gets the new password */
    const char *pending = j->pending_user ? j->pending_user : j->username;
    r->username = pending ? strdup(pending) : NULL;
    r->old_username = j->username ? strdup(j->username) : NULL;
    r->password = secret_dup(j->new_pw);
    r->old_password = secret_dup(j->old_pw);
    int ret = (pending && !r->username) || (j->username && !r->old_username) || !r->password || !r->old_password
                  ? rc_error_set(&j->err, RC_ERR_TRANSIENT, "out of memory")
                  : rec_write(j, r);
    if (ret < 0)
        rotrec_clear(r);
    return ret;
}

/* Worker, look: takes *read over (epoch + 1, this host, updated now). */
static int rec_take(struct rot_job *j, struct rotrec *read) {
    snprintf(j->prev_owner, sizeof j->prev_owner, "%s", read->owner);
    rotrec_clear(&j->rec);
    j->rec = *read;
    *read = (struct rotrec){ 0 };
    j->rec.epoch++;
    j->rec.updated_at = now_real();
    snprintf(j->rec.owner, sizeof j->rec.owner, "%s", j->c->rot.job->host);
    snprintf(j->rec.owner_id, sizeof j->rec.owner_id, "%s", j->c->rot.job->owner_id);
    int r = rec_write(j, &j->rec);
    if (r < 0)
        rotrec_clear(&j->rec);
    return r;
}

/* Worker, look, before a claim: the entry must still hold what is published. */
static enum rec_outcome look_entry(struct rot_job *j) {
    struct rc_candidate cand;
    if (entry_read(j, &cand) < 0)
        return store_failed(j, "cannot read the credential");
    j->entry_rotated_at = cand.rotated_at;
    j->entry_moved = !same_user(cand.username, j->username) || !secret_equal(cand.password, j->old_pw);
    cand_free(&cand);
    return j->entry_moved ? RO_IDLE : RO_OK;
}

/* Worker, look: what this host does with the record (claim, go on, wait, take over). A
 * lost race for the record is read again once: the winner's record is then waited for. */
static enum rec_outcome look(struct rot_job *j) {
    for (int attempt = 0; attempt < 2; attempt++) {
        struct rotrec read = { 0 };
        bool found;
        if (rec_read(j, &read, &found) < 0)
            return store_failed(j, "cannot read the rotation record");
        j->action = rotrec_decide(found ? &read : NULL, j->c->rot.job->host, j->c->rot.job->owner_id, j->rec.epoch,
                                  now_real(), pending_timeout_s(j->c));
        enum rec_outcome o = RO_OK;
        int r = 0;
        switch (j->action) {
        case ROTREC_CONTINUE: break;
        case ROTREC_LOST: o = RO_LOST; break;
        case ROTREC_WAIT:
            rotrec_clear(&j->seen);
            j->seen = read;    /* only its head is kept: */
            free(j->seen.username);
            free(j->seen.old_username);
            secret_free(j->seen.password);
            secret_free(j->seen.old_password);
            j->seen.username = j->seen.old_username = NULL;
            j->seen.password = j->seen.old_password = NULL;
            return RO_WAIT;
        case ROTREC_CLAIM:
            if (j->look_only)
                return RO_IDLE;
            if ((o = look_entry(j)) == RO_OK)
                r = rec_claim(j);
            break;
        case ROTREC_RESUME:
        case ROTREC_TAKE_OVER: r = rec_take(j, &read); break;
        }
        rotrec_clear(&read);
        if (r < 0 && j->err.cls == RC_ERR_CONFLICT)
            continue;   /* another host wrote the record meanwhile */
        return r < 0 ? store_failed(j, "cannot write the rotation record") : o;
    }
    snprintf(j->why, sizeof j->why, "the rotation record keeps changing under this host");
    return RO_FAILED;
}

static void rot_look_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    j->outcome = look(j);
}

/* -- redis-acl-users: two users, the idle one enabled, the previous one drained -- */

/* The first failed node of res as "host:port: why". */
static void first_failure(const struct aclops_result *res, char *buf, size_t size) {
    for (size_t i = 0; i < res->n; i++)
        if (res->nodes[i].r < 0) {
            snprintf(buf, size, "%s: %s", res->nodes[i].name, res->nodes[i].why);
            return;
        }
    snprintf(buf, size, "no node");
}

/* Worker, adding: the two users must have the same rights on every node (else refused
 * with the diff, nothing changed); then the idle one gets `on resetpass >new`. */
static enum rec_outcome users_enable(struct rot_job *j) {
    const struct config_credential *cc = j->c->cfg;
    const struct rotrec *r = &j->rec;
    struct aclwatch_target t;
    struct aclops_result res;
    char why[300];

    j->nothing_added = true;
    if (aclwatch_target_open(cc, r->old_username, r->old_password, &t, why, sizeof why) < 0) {
        snprintf(j->why, sizeof j->why, "cannot reach the nodes: %s", why);
        return RO_REFUSED;
    }
    int rc = aclops_compare_users(&t.t, r->old_username, r->username, &res);
    if (rc < 0 || res.diff[0]) {
        if (rc < 0)
            first_failure(&res, why, sizeof why);
        snprintf(j->why, sizeof j->why, rc < 0 ? "cannot compare users %s and %s (ACL GETUSER): %s"
                 : "users %s and %s differ (ACL GETUSER, passwords aside): %s", r->old_username, r->username,
                 rc < 0 ? why : res.diff);
        aclops_result_clear(&res);
        aclwatch_target_close(&t);
        return RO_REFUSED;
    }
    aclops_result_clear(&res);
    j->nothing_added = false;
    rc = aclops_setuser(&t.t, r->username, ACLOPS_ENABLE, r->password, NULL, cc->rotation.acl_save, &res);
    if (rc < 0) {
        first_failure(&res, why, sizeof why);
        snprintf(j->why, sizeof j->why, "cannot enable user %s with the new password on every node "
                 "(%u/%zu done): %s", r->username, res.ok, res.n, why);
    }
    aclops_result_clear(&res);
    aclwatch_target_close(&t);
    return rc < 0 ? RO_REFUSED : RO_OK;
}

/* Worker, roll-back: the idle user goes back off on every node; *nodes and *done count
 * the nodes asked and those that did it (0 and 0 when they cannot be reached). */
static void users_disable_pending(struct rot_job *j, unsigned *nodes, unsigned *done) {
    const struct rotrec *r = &j->rec;
    struct aclwatch_target t;
    struct aclops_result res;
    char why[256];

    *nodes = *done = 0;
    if (aclwatch_target_open(j->c->cfg, r->old_username, r->old_password, &t, why, sizeof why) < 0) {
        snprintf(j->acl.detail, sizeof j->acl.detail, "cannot reach the nodes: %s", why);
        return;
    }
    if (aclops_setuser(&t.t, r->username, ACLOPS_DISABLE, NULL, NULL, j->c->cfg->rotation.acl_save, &res) < 0)
        first_failure(&res, j->acl.detail, sizeof j->acl.detail);
    *nodes = (unsigned)res.n;
    *done = (unsigned)res.ok;
    aclops_result_clear(&res);
    aclwatch_target_close(&t);
}

/* Worker, removing while connections remain: the record shows a sign of life at least
 * every pending_timeout / 3, so that nobody takes a drain that is under way over. */
static enum rec_outcome users_keep_record(struct rot_job *j, int64_t now) {
    if (now - j->rec.updated_at < pending_timeout_s(j->c) / 3)
        return RO_DRAINING;
    j->rec.updated_at = now;
    if (rec_write(j, &j->rec) < 0)
        return j->err.cls == RC_ERR_CONFLICT ? RO_LOST : store_failed(j, "cannot update the rotation record");
    return RO_DRAINING;
}

/* Worker, removing: CLIENT LIST of the previous user on every node; none left (or,
 * after max_grace with kill_after_max_grace, closed): `off resetpass`. RO_DRAINING while
 * connections remain; a node that cannot be listed (or whose list is over the cap) is a
 * failure, never "drained". */
static enum rec_outcome users_drain(struct rot_job *j) {
    const struct config_rotation *ro = &j->c->cfg->rotation;
    const struct rotrec *r = &j->rec;
    int64_t now = now_real(), grace_s = r->revoke ? 0 : (int64_t)((ro->grace_usec + USEC_PER_SEC - 1) / USEC_PER_SEC);
    struct aclwatch_target t;
    struct aclops_result res;
    long long total = 0;
    char why[300];
    enum rec_outcome o = RO_OK;

    if (aclwatch_target_open(j->c->cfg, r->username, r->password, &t, why, sizeof why) < 0) {
        snprintf(j->why, sizeof j->why, "cannot reach the nodes: %s", why);
        return RO_FAILED;
    }
    j->past_max_grace = now >= r->wait_until - grace_s + (int64_t)(ro->max_grace_usec / USEC_PER_SEC);
    if (aclops_client_list(&t.t, r->old_username, 0, 8, &j->clients) < 0) {
        first_failure(&j->clients, why, sizeof why);
        snprintf(j->why, sizeof j->why, "cannot list the connections of %s: %s", r->old_username, why);
        o = RO_FAILED;
    }
    for (size_t i = 0; o == RO_OK && i < j->clients.n; i++)
        total += j->clients.nodes[i].count;
    if (o == RO_OK && total > 0 && j->past_max_grace && ro->kill_after_max_grace) {
        if (aclops_client_kill_user(&t.t, r->old_username, &res) < 0) {
            first_failure(&res, why, sizeof why);
            snprintf(j->why, sizeof j->why, "CLIENT KILL USER %s: %s", r->old_username, why);
            o = RO_FAILED;
        }
        for (size_t i = 0; i < res.n; i++)
            j->killed += res.nodes[i].count;
        aclops_result_clear(&res);
        total = 0;
    }
    if (o == RO_OK && total > 0)
        o = users_keep_record(j, now);
    if (o == RO_OK) {
        watch_baseline(j, r->old_username, r->username, r->password);
        if (aclops_setuser(&t.t, r->old_username, ACLOPS_DISABLE, NULL, NULL, ro->acl_save, &res) < 0) {
            first_failure(&res, why, sizeof why);
            snprintf(j->why, sizeof j->why, "cannot disable the previous user %s: %s", r->old_username, why);
            o = RO_FAILED;
        }
        aclops_result_clear(&res);
    }
    aclwatch_target_close(&t);
    return o;
}

/* Worker: adding. The pending password goes next to the old one on every node and must
 * log in everywhere before the entry changes. */
static void rot_add_rec_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    const struct config_credential *cc = j->c->cfg;
    const struct rotrec *r = &j->rec;
    if ((j->outcome = rec_recheck(j)) != RO_OK)
        return;
    if (users_strategy(j->c)) {
        if ((j->outcome = users_enable(j)) != RO_OK)
            return;
    } else if (rotate_acl_apply(&cc->redis, &cc->rotation, r->username, ROTATE_ACL_ADD, r->password,
                         r->old_username, r->old_password, &j->acl) < 0) {
        acl_why(&j->acl, "cannot add the new password on every node", j->why, sizeof j->why);
        j->outcome = RO_REFUSED;
        return;
    }
    validate_candidate(&cc->redis, r->username, r->password, r->old_username, r->old_password, &j->vres);
    if (j->vres.outcome != VALIDATE_PUBLISH) {
        snprintf(j->why, sizeof j->why, "the new password does not validate (%s): %s",
                 validate_outcome_to_string(j->vres.outcome), j->vres.detail);
        j->outcome = RO_REFUSED;
    }
}

/* Worker, writing: the entry gets the pending password (check-and-set on the version this
 * host reads now, marked), unless it has it already (a step before a crash wrote it). */
static enum rec_outcome write_entry(struct rot_job *j) {
    struct cred_rt *c = j->c;
    struct rc_candidate cand;
    if (entry_read(j, &cand) < 0)
        return store_failed(j, "cannot read the credential");
    enum rotrec_entry e = rotrec_entry_is(&j->rec, cand.username, cand.password);
    enum rec_outcome o = RO_OK;
    if (e == ROTREC_ENTRY_PENDING) {
        snprintf(j->new_version, sizeof j->new_version, "%s", cand.version);
        j->rotated_at = cand.rotated_at != INT64_MIN ? cand.rotated_at : now_real();
    } else if (e == ROTREC_ENTRY_OTHER) {
        snprintf(j->why, sizeof j->why, "the credential's entry was changed by someone else during "
                 "the rotation");
        o = RO_REFUSED;
    } else {
        struct rc_rotation_mark mark = { .rotated_at = now_real(), .rotated_by = c->rot.job->host };
        memset(&j->err, 0, sizeof j->err);
        j->rotated_at = mark.rotated_at;
        if (c->src->type->rotate_write(c->src->state, &j->rc, cand.version, j->rec.username, j->rec.password,
                                       &mark, j->new_version, &j->err) < 0)
            o = j->err.cls == RC_ERR_CONFLICT
                    ? (snprintf(j->why, sizeof j->why, "the credential's entry changed during the "
                                "rotation: %s", j->err.message), RO_REFUSED)
                    : store_failed(j, "cannot write the new version");
    }
    cand_free(&cand);
    return o;
}

static void rot_write_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    if ((j->outcome = rec_recheck(j)) != RO_OK || (j->outcome = write_entry(j)) != RO_OK)
        return;
    int64_t now = now_real();
    j->rec.phase = ROTREC_REMOVING;
    j->rec.updated_at = now;
    j->rec.wait_until = now + (j->rec.revoke ? 0 : (int64_t)((j->c->cfg->rotation.grace_usec + USEC_PER_SEC - 1) /
                                                            USEC_PER_SEC));
    if (rec_write(j, &j->rec) < 0)
        j->outcome = j->err.cls == RC_ERR_CONFLICT ? RO_LOST
                                                   : store_failed(j, "cannot record phase removing");
}

/* Worker, removing: the old password goes from every node, then the record. */
static void rot_remove_rec_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    const struct config_credential *cc = j->c->cfg;
    const struct rotrec *r = &j->rec;
    if ((j->outcome = rec_recheck(j)) != RO_OK)
        return;
    if (users_strategy(j->c)) {
        if ((j->outcome = users_drain(j)) != RO_OK)
            return;
    } else {
        watch_baseline(j, r->old_username, r->username, r->password);
        if (rotate_acl_apply(&cc->redis, &cc->rotation, r->old_username, ROTATE_ACL_REMOVE,
                             r->old_password, r->username, r->password, &j->acl) < 0) {
            snprintf(j->why, sizeof j->why, "cannot remove the old password: %s", j->acl.detail);
            j->outcome = RO_FAILED;
            return;
        }
    }
    j->outcome = rec_remove(j);
}

/* Worker, roll-back: the pending password goes from every node. True when every node
 * confirmed: it removed the password, or (a refusal, e.g. NOPERM, or ACL SAVE failing)
 * the password does not log in there (a node that never had it). */
static bool rollback_remove(struct rot_job *j) {
    const struct config_credential *cc = j->c->cfg;
    const struct rotrec *r = &j->rec;
    unsigned nodes = 0, removed = 0;
    memset(&j->acl, 0, sizeof j->acl);
    memset(&j->vres, 0, sizeof j->vres);
    if (!users_strategy(j->c)) {
        (void)rotate_acl_apply(&cc->redis, &cc->rotation, r->username, ROTATE_ACL_REMOVE, r->password,
                               r->old_username, r->old_password, &j->acl);
        nodes = j->acl.total;
        removed = j->acl.done;
    } else
        users_disable_pending(j, &nodes, &removed);
    if (rotrec_rollback_complete(r, nodes, removed))
        return true;
    /* (the old credential as current: cluster discovery logs in with it) */
    validate_candidate(&cc->redis, r->username, r->password, r->old_username, r->old_password, &j->vres);
    return rotrec_rollback_complete(r, j->vres.total, j->vres.refused);
}

/* Worker, roll-back (docs/design.md §9.5): first the record says rolling_back, written
 * with a check-and-set on the revision read at this host's epoch, so that an owner
 * frozen past a takeover fails there and stops before it touches Redis (the taker may
 * have added the same password and written it into the entry), and a host that takes
 * the record over finishes the roll-back instead of adding the password. Then the
 * pending password goes from every node; the record goes only once every node confirmed
 * it (a node that never had it counts), else it stays and the roll-back is retried, each
 * try renewing updated_at. The entry was never changed. */
static void rot_rollback_rec_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    char cause[sizeof j->why];
    snprintf(cause, sizeof cause, "%s", j->why);
    if ((j->outcome = rec_recheck(j)) != RO_OK)
        return;
    if (rotrec_roll_back(&j->rec, now_real()) < 0) {
        snprintf(j->why, sizeof j->why, "the rotation record is in phase removing: the credential's entry "
                 "holds the new password, which must stay");
        j->outcome = RO_FAILED;
        return;
    }
    if (rec_write(j, &j->rec) < 0) {
        j->outcome = j->err.cls == RC_ERR_CONFLICT ? RO_LOST : store_failed(j, "cannot record phase rolling_back");
        return;
    }
    if (!j->nothing_added && !rollback_remove(j)) {
        snprintf(j->why, sizeof j->why, "%s%sthe roll-back could not remove the new password from every node "
                 "(%s; the new password's login per node: %s); the rotation record stays in phase "
                 "rolling_back until every node confirms", cause, cause[0] ? "; " : "",
                 j->acl.detail[0] ? j->acl.detail : "no node list", j->vres.nodes[0] ? j->vres.nodes : "no node");
        j->outcome = RO_FAILED;
        return;
    }
    snprintf(j->why, sizeof j->why, "%s", cause);
    j->outcome = rec_remove(j);
}

/* -- the record flow on the loop -- */

/* usec from now until the rotation that wrote the entry at the fleet clock may be taken
 * over, should its owner have died (docs/design.md §9.5.2: wait_until = the write + grace,
 * then pending_timeout), plus this host's splay; UINT64_MAX without a rotation record. */
static uint64_t record_look_in(const struct cred_rt *c) {
    const struct config_rotation *cr = &c->cfg->rotation;
    if (!use_record(c) || !c->rot.st->fleet_rotated_at)
        return UINT64_MAX;
    int64_t at_s = c->rot.st->fleet_rotated_at + (int64_t)((cr->grace_usec + USEC_PER_SEC - 1) / USEC_PER_SEC) +
                   pending_timeout_s(c) + 1;
    uint64_t at = (uint64_t)at_s * USEC_PER_SEC + c->rot.splay_usec, now = (uint64_t)rctime_real_usec();
    return at > now ? at - now : 0;
}

/* A mark further ahead of this host's clock than this is said (once per mark): smaller
 * differences are the clock skew the splay covers. */
#define ROT_CLOCK_AHEAD_SAY_S 60

/* The fleet clock moves to rotated_at when it is newer (to now at most, rotate.h): the
 * schedule counts from it. */
static void rot_clock(struct cred_rt *c, int64_t rotated_at) {
    struct rot_rt *ro = &c->rot;
    int64_t mark = ro->st->fleet_mark;
    int64_t ahead = rotate_clock_see(ro->st, rotated_at, now_real());
    if (ahead > ROT_CLOCK_AHEAD_SAY_S) {
        char ts[40];
        log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = c->cfg->name }, "%s: the store says the last "
                    "rotation was at %s, %llds ahead of this host's clock (the clock of the host that "
                    "wrote it, or of this one, is off); the rotation schedule counts from now instead",
                    c->cfg->name, rctime_format(rotated_at, ts, sizeof ts), (long long)ahead);
    }
    if (ahead < 0) {
        if (mark != ro->st->fleet_mark)
            rot_save(c);   /* a mark seen, the clock kept: not news at the next start */
        return;
    }
    ro->waited_epoch = 0;   /* a new rotation's record starts at epoch 1 again: say it */
    ro->splay_usec = rotate_splay_draw(c->cfg->rotation.splay_usec);
    rot_save(c);
    if (c->sm.rot != RS_NONE)
        return;
    uint64_t look = record_look_in(c);
    if (look < due_in(c)) {
        /* The entry changed: the record of that rotation holds the old password until its
         * owner removes it. Should the owner die in grace, whoever looks after its
         * takeover time finishes it: every host looks once then (a record gone: nothing to
         * do), not only those that happened to wait for it. */
        ro->resume_look = true;
        rot_go(c, RS_NONE, false, look);
        return;
    }
    if (!ro->st->record)
        ro->resume_look = false;   /* the rotation waited for is over */
    rot_schedule_due(c);
}

static void rec_forget(struct cred_rt *c) {
    rotrec_clear(&c->rot.job->rec);
    c->rot.job->rev[0] = '\0';
    c->rot.st->record = false;   /* st.revoke stays: the last rotation's, until the next claim */
}

/* Another host holds the record now (or it is gone): this host's part is over. Not an
 * error: the other host finishes (or undoes) the rotation. */
static void rot_lost(struct cred_rt *c, struct rot_job *j) {
    struct rot_rt *ro = &c->rot;
    if (j->prev_owner[0])
        log_ctx_msg(LOG_INFO, &(struct log_ctx){ .name = c->cfg->name }, "rotation of %s: host %s holds "
                    "the rotation record now; this host stops its part (phase %s)", c->cfg->name,
                    j->prev_owner, rotrec_phase_to_string(j->rec.phase));
    else
        log_ctx_msg(LOG_INFO, &(struct log_ctx){ .name = c->cfg->name }, "rotation of %s: the rotation "
                    "record is gone; this host stops its part (phase %s)", c->cfg->name,
                    rotrec_phase_to_string(j->rec.phase));
    rec_forget(c);
    ro->st->phase = ROTATE_IDLE;
    rot_save(c);
    rot_job_clear(j);
    rot_wake(c);
    rot_schedule_due(c);
}

/* A step failed for a reason that is not the record's: retried (the record stays). */
static bool rec_common(struct cred_rt *c, struct rot_job *j) {
    if (j->outcome == RO_LOST) {
        rot_lost(c, j);
        return true;
    }
    if (j->outcome == RO_FAILED) {
        rot_fail(c, "%s", j->why);
        return true;
    }
    return false;
}

static void rot_rollback_rec_done(struct cred_rt *c, struct rot_job *j) {
    char why[512];
    snprintf(why, sizeof why, "%s", j->why);
    if (j->outcome == RO_LOST) {
        rot_lost(c, j);
        return;
    }
    if (j->outcome != RO_OK) {
        rot_fail(c, "%s; the roll-back is retried", why);
        return;
    }
    rec_forget(c);
    c->rot.st->phase = ROTATE_IDLE;
    rot_save(c);
    rot_fail(c, "%s%srolled back: the new password was removed from every node and the rotation record "
             "deleted (the credential's entry never changed)", why, why[0] ? "; " : "");
}

static void rot_rollback_rec(struct cred_rt *c, struct rot_job *j) {
    rot_submit(c, RS_ROLLBACK, rot_rollback_rec_run, rot_rollback_rec_done, true);
}

/* The drain's state for status: per node, the previous user's connections. */
static json_t *drain_json(const char *user, const struct aclops_result *res, bool past_max) {
    json_t *nodes = json_array(), *o;
    long long total = 0;
    for (size_t i = 0; nodes && i < res->n; i++) {
        const struct aclops_node *n = &res->nodes[i];
        json_t *addrs = json_array();
        for (size_t k = 0; addrs && k < n->naddrs; k++)
            json_array_append_new(addrs, json_string(n->addrs[k]));
        json_array_append_new(nodes, json_pack("{s:s, s:I, s:o}", "node", n->name, "connections",
                                               (json_int_t)n->count, "addrs", addrs ? addrs : json_array()));
        total += n->count;
    }
    o = json_pack("{s:s, s:I, s:b, s:o}", "user", user ? user : "default", "connections", (json_int_t)total,
                  "past_max_grace", past_max, "nodes", nodes ? nodes : json_array());
    return o;
}

/* "host:port: addr, addr (3 connections); ..." */
static void drain_text(const struct aclops_result *res, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < res->n && len + 1 < size; i++) {
        const struct aclops_node *n = &res->nodes[i];
        if (n->count == 0)
            continue;
        len += (size_t)snprintf(buf + len, size - len, "%s%s:", len ? "; " : "", n->name);
        for (size_t k = 0; k < n->naddrs && len + 1 < size; k++)
            len += (size_t)snprintf(buf + len, size - len, "%s %s", k ? "," : "", n->addrs[k]);
        if (len + 1 < size)
            len += (size_t)snprintf(buf + len, size - len, " (%lld connection%s)", n->count,
                                    n->count == 1 ? "" : "s");
    }
}

static void drain_forget(struct rot_rt *ro) {
    if (ro->drain)
        json_decref(ro->drain);
    ro->drain = NULL;
    ro->drain_said = ro->drain_max_said = false;
}

/* redis-acl-users: the previous user still has connections; checked again in drain_check. */
static void rot_draining(struct cred_rt *c, struct rot_job *j) {
    struct rot_rt *ro = &c->rot;
    const char *user = j->rec.old_username ? j->rec.old_username : "default";
    char where[640];
    drain_text(&j->clients, where, sizeof where);
    if (ro->drain)
        json_decref(ro->drain);
    ro->drain = drain_json(user, &j->clients, j->past_max_grace);
    struct log_ctx ctx = cred_ctx(c, LOG_MID_DRAIN_WAITING, ro->st->new_version);
    if (!ro->drain_said) {
        log_ctx_msg(LOG_NOTICE, &ctx, "%s: the previous user %s is disabled once no connection uses it "
                    "(checked every %llus); still connected: %s", c->cfg->name, user,
                    (unsigned long long)(c->cfg->rotation.drain_check_usec / USEC_PER_SEC), where);
        ro->drain_said = true;
    }
    if (j->past_max_grace && !ro->drain_max_said) {
        log_ctx_msg(LOG_WARNING, &ctx, "%s: rotation.max_grace has passed and the previous user %s still "
                    "has connections; it stays enabled (rotation.kill_after_max_grace = false) until they "
                    "go: %s", c->cfg->name, user, where);
        ro->drain_max_said = true;
    }
    rot_job_clear(j);
    rot_go(c, RS_DRAINING, false, c->cfg->rotation.drain_check_usec);
}

static void rot_remove_rec_done(struct cred_rt *c, struct rot_job *j) {
    if (j->outcome == RO_DRAINING) {
        rot_draining(c, j);
        return;
    }
    if (rec_common(c, j))
        return;
    if (j->killed > 0)
        log_ctx_msg(LOG_NOTICE, &(struct log_ctx){ .name = c->cfg->name }, "%s: rotation.max_grace has passed: "
                    "%lld connection%s of the previous user %s closed (CLIENT KILL USER)", c->cfg->name,
                    j->killed, j->killed == 1 ? "" : "s", j->rec.old_username ? j->rec.old_username : "default");
    drain_forget(&c->rot);
    c->rot.st->watch_revoke = j->rec.revoke;   /* rec_forget() clears st.revoke */
    rec_forget(c);
    rot_completed(c);
}

static void rot_write_done(struct cred_rt *c, struct rot_job *j) {
    struct rot_rt *ro = &c->rot;
    if (j->outcome == RO_REFUSED) {
        rot_rollback_rec(c, j);
        return;
    }
    if (rec_common(c, j))
        return;
    snprintf(ro->st->new_version, sizeof ro->st->new_version, "%s", j->new_version);
    ro->st->grace_until = j->rec.wait_until;
    rot_save(c);
    rot_clock(c, j->rotated_at);
    j->username = j->rec.username ? strdup(j->rec.username) : NULL;
    j->new_pw = secret_dup(j->rec.password);
    if (!j->new_pw || (j->rec.username && !j->username)) {
        rot_fail(c, "out of memory");
        return;
    }
    /* Published by the loop (ROT_PUBLISH), then rotation_published(). */
    cred_event(c, (struct credsm_event){ .type = CSM_ROT_PUBLISH });
}

static void rot_add_rec_done(struct cred_rt *c, struct rot_job *j) {
    if (j->outcome == RO_REFUSED) {
        rot_rollback_rec(c, j);
        return;
    }
    if (rec_common(c, j))
        return;
    text_set(&c->nodes, "%s", j->vres.nodes);
    rot_submit(c, RS_WRITING, rot_write_run, rot_write_done, true);
}

/* The record is this host's now: go on from its phase. */
static void rot_took(struct cred_rt *c, struct rot_job *j) {
    struct rot_rt *ro = &c->rot;
    const struct rotrec *r = &j->rec;
    const char *base = c->have_cur ? c->cur.cur.version : r->base_version;
    if (j->action == ROTREC_CLAIM) {
        struct log_ctx ctx = cred_ctx(c, LOG_MID_ROTATION_STARTED, base);
        log_ctx_msg(LOG_NOTICE, &ctx, "rotation of %s started (%s%s): replacing version %s", c->cfg->name,
                    j->manual ? "requested" : "scheduled", r->revoke ? ", revoking the old password" : "", base);
    } else if (j->action == ROTREC_TAKE_OVER) {
        struct log_ctx ctx = cred_ctx(c, LOG_MID_ROTATION_TAKEN_OVER, base);
        log_ctx_msg(LOG_WARNING, &ctx, "rotation of %s taken over from host %s, which left it in phase "
                    "%s without a sign of life for rotation.pending_timeout (epoch now %llu)", c->cfg->name,
                    j->prev_owner, rotrec_phase_to_string(r->phase), (unsigned long long)r->epoch);
    } else if (j->action == ROTREC_RESUME) {
        log_ctx_msg(LOG_NOTICE, &(struct log_ctx){ .name = c->cfg->name }, "resuming the rotation of %s "
                    "this host began before it stopped (phase %s)", c->cfg->name, rotrec_phase_to_string(r->phase));
    }
    ro->st->record = true;
    ro->st->revoke = r->revoke;
    enum rotrec_step next = rotrec_next_step(r);
    ro->st->phase = next == ROTREC_STEP_REMOVE ? ROTATE_PUBLISHED : ROTATE_CLAIMED;
    ro->st->started_at = r->claimed_at;
    ro->st->grace_until = r->wait_until;
    snprintf(ro->st->old_version, sizeof ro->st->old_version, "%s", base);
    if (next != ROTREC_STEP_REMOVE)
        ro->st->new_version[0] = '\0';
    else if (c->have_cur && c->cur.has_previous)   /* a takeover in phase removing */
        snprintf(ro->st->old_version, sizeof ro->st->old_version, "%s", c->cur.prev.version);
    if (r->phase == ROTREC_REMOVING && j->action != ROTREC_CONTINUE)
        snprintf(ro->st->new_version, sizeof ro->st->new_version, "%s", c->have_cur ? c->cur.cur.version : "");
    rot_save(c);
    rot_job_clear(j);
    if (next == ROTREC_STEP_ADD)
        rot_submit(c, RS_ADDING, rot_add_rec_run, rot_add_rec_done, true);
    else if (next == ROTREC_STEP_ROLL_BACK)   /* never adds what is being rolled back */
        rot_rollback_rec(c, j);
    else
        rot_grace(c);
}

/* Another host's live record: wait until it may be taken over; a change of the entry
 * (that rotation's end) re-arms the schedule before then. Not a warning. */
static void rot_wait(struct cred_rt *c, struct rot_job *j) {
    struct rot_rt *ro = &c->rot;
    int64_t at = rotrec_takeover_at(&j->seen, pending_timeout_s(c)), now = now_real();
    if (ro->waited_epoch != j->seen.epoch) {
        char ts[40];
        ro->waited_epoch = j->seen.epoch;
        log_ctx_msg(LOG_INFO, &(struct log_ctx){ .name = c->cfg->name }, "rotation of %s: host %s is "
                    "rotating it (phase %s, epoch %llu); this host waits (it may take over at %s)",
                    c->cfg->name, j->seen.owner, rotrec_phase_to_string(j->seen.phase),
                    (unsigned long long)j->seen.epoch, rctime_format(at + 1, ts, sizeof ts));
    }
    if (ro->manual_pending) {
        ro->manual_pending = false;
        log_ctx_msg(LOG_NOTICE, &(struct log_ctx){ .name = c->cfg->name }, "rotation of %s asked for, "
                    "but host %s is rotating it now: this host does not start another", c->cfg->name,
                    j->seen.owner);
    }
    rotrec_clear(&j->seen);
    rot_job_clear(j);
    /* At the takeover time this host looks again, due or not: an abandoned rotation is
     * finished by whoever waited for it (a look never claims a new one early). */
    c->rot.resume_look = true;
    rot_go(c, RS_NONE, false, (uint64_t)(at + 1 > now ? at + 1 - now : 1) * USEC_PER_SEC);
}

static void rot_look_done(struct cred_rt *c, struct rot_job *j) {
    rot_clock(c, j->entry_rotated_at);
    switch ((enum rec_outcome)j->outcome) {
    case RO_OK:
        rot_took(c, j);
        return;
    case RO_WAIT:
        rot_wait(c, j);
        return;
    case RO_IDLE:
        if (j->entry_moved) {
            log_ctx_msg(LOG_INFO, &(struct log_ctx){ .name = c->cfg->name }, "rotation of %s not needed: "
                        "the store holds another version than the one published here; picking it up",
                        c->cfg->name);
            rot_wake(c);
        }
        rot_job_clear(j);
        if (j->look_only && c->rot.manual_pending && !j->entry_moved) {
            /* The look found nothing under way: the rotation asked for meanwhile begins at
             * once, from the timer (rot_due): not from here, where this step's store slot
             * is still being handed back. */
            rot_go(c, RS_NONE, false, 0);
            return;
        }
        c->rot.manual_pending = false;
        rot_schedule_due(c);
        return;
    case RO_LOST:
    case RO_FAILED:
    case RO_REFUSED:
    case RO_DRAINING:
        break;
    }
    if (!rec_common(c, j))
        rot_fail(c, "%s", j->why);
}

/* The record flow's begin: claim (or go on with the record this host holds). */
static int rot_begin_record(struct cred_rt *c, bool manual, char *err, size_t errlen) {
    struct rot_rt *ro = &c->rot;
    struct rot_job *j = ro->job;
    bool look_only = ro->resume_look || j->rec.epoch;
    if (!look_only && !c->have_cur) {
        snprintf(err, errlen, "\"%s\" has no published credential to rotate yet", c->cfg->name);
        return -EAGAIN;
    }
    rot_job_clear(j);
    j->c = c;
    j->rc = (struct rc_credential){ .name = c->cfg->name, .node = plugins_node(&c->cfg->node) };
    j->look_only = look_only;
    j->manual = manual;
    j->revoke = manual && ro->revoke_next;
    j->entry_moved = false;
    j->entry_rotated_at = INT64_MIN;
    j->prev_owner[0] = '\0';
    ro->resume_look = ro->revoke_next = false;
    if (!look_only && users_strategy(c)) {
        const char *idle = idle_user(&c->cfg->rotation, c->cur.cur.username);
        if (!idle) {
            snprintf(err, errlen, "the published username %s is not one of rotation.users (%s, %s): "
                     "write one of them into the store", c->cur.cur.username ? c->cur.cur.username : "(none)",
                     c->cfg->rotation.users[0], c->cfg->rotation.users[1]);
            return -EINVAL;
        }
        if (!(j->pending_user = strdup(idle))) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    if (!look_only) {
        ro->manual_pending = false;   /* served by this claim */
        snprintf(j->expected, sizeof j->expected, "%s", c->cur.cur.version);
        j->username = c->cur.cur.username ? strdup(c->cur.cur.username) : NULL;
        j->old_pw = secret_dup(c->cur.cur.password);
        int r = rotate_generate_password(c->cfg->rotation.alphabet, c->cfg->rotation.password_length, &j->new_pw);
        if (r < 0 || !j->old_pw || (c->cur.cur.username && !j->username)) {
            rot_job_clear(j);
            snprintf(err, errlen, "cannot generate a new password: %s", strerror(r < 0 ? -r : ENOMEM));
            return r < 0 ? r : -ENOMEM;
        }
    }
    if (ro->timer)
        sd_event_source_set_enabled(ro->timer, SD_EVENT_OFF);
    rot_submit(c, RS_CLAIMING, rot_look_run, rot_look_done, true);
    return 0;
}

/* Starts a rotation now: the machine said ROT_BEGIN (no check runs, no rotation is
 * under way). 0, or -errno with err. */
static void watch_end(struct cred_rt *c);

static int rot_begin(struct cred_rt *c, bool manual, char *err, size_t errlen) {
    struct rot_rt *ro = &c->rot;
    struct rot_job *j = ro->job;
    if (c->sm.rot == RS_WATCH)
        watch_end(c);   /* a new rotation: its own removal starts a new watch */
    ro->st->watch_revoke = false;
    if (use_record(c) && (ro->st->phase == ROTATE_IDLE || ro->st->record))
        return rot_begin_record(c, manual, err, errlen);
    if (ro->st->phase != ROTATE_IDLE) {
        /* A retry of an interrupted rotation: finish it rather than start another. */
        snprintf(err, errlen, "an interrupted rotation of \"%s\" (phase %s) is being finished",
                 c->cfg->name, rotate_phase_to_string(ro->st->phase));
        return -EBUSY;
    }
    if (!c->have_cur) {
        snprintf(err, errlen, "\"%s\" has no published credential to rotate yet", c->cfg->name);
        return -EAGAIN;
    }
    rot_job_clear(j);
    j->c = c;
    j->rc = (struct rc_credential){ .name = c->cfg->name, .node = plugins_node(&c->cfg->node) };
    snprintf(j->expected, sizeof j->expected, "%s", c->cur.cur.version);
    j->username = c->cur.cur.username ? strdup(c->cur.cur.username) : NULL;
    j->old_pw = secret_dup(c->cur.cur.password);
    /* new_pw NULL asks the store to make the password itself (plugin.h rotate_self). */
    int r = store_makes_password(c) ? 0
                                    : rotate_generate_password(c->cfg->rotation.alphabet,
                                                               c->cfg->rotation.password_length,
                                                               &j->new_pw);
    if (r < 0 || !j->old_pw || (c->cur.cur.username && !j->username)) {
        rot_job_clear(j);
        snprintf(err, errlen, "cannot generate a new password: %s", strerror(r < 0 ? -r : ENOMEM));
        return r < 0 ? r : -ENOMEM;
    }
    struct log_ctx ctx = cred_ctx(c, LOG_MID_ROTATION_STARTED, c->cur.cur.version);
    log_ctx_msg(LOG_NOTICE, &ctx, "rotation of %s started (%s): replacing version %s",
                c->cfg->name, manual ? "requested" : "scheduled", c->cur.cur.version);
    if (ro->timer)
        sd_event_source_set_enabled(ro->timer, SD_EVENT_OFF);
    rot_submit(c, RS_CLAIMING, rot_claim_run, rot_claim_done, true);
    return 0;
}

/* Asks the machine for a rotation: it begins now, or when the running check ends (the
 * machine latches it). 0, or -errno with err. */
static int rot_request(struct cred_rt *c, bool manual, char *err, size_t errlen) {
    if (cred_event(c, (struct credsm_event){ .type = CSM_ROT_REQUEST, .manual = manual }) < 0) {
        snprintf(err, errlen, "a rotation of \"%s\" is already running (%s)", c->cfg->name,
                 credsm_step_name(c->sm.rot));
        return -EBUSY;
    }
    if (!(c->fx.mask & CSM_FX_ROT_BEGIN))
        return 0;   /* latched */
    c->fx.mask &= ~CSM_FX_ROT_BEGIN;   /* carried out here, so that err says why it failed */
    return rot_begin(c, manual, err, errlen);
}

void rotation_begin(struct cred_rt *c, bool manual) {
    char err[256];
    if (rot_begin(c, manual, err, sizeof err) < 0)
        rot_fail(c, "%s", err);
}

/* An interrupted rotation that cannot be finished: the store or the published file moved
 * on (another writer). Nothing of it is in use, so it is only forgotten. */
static void rot_abandon(struct cred_rt *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rot_abandon(struct cred_rt *c, const char *fmt, ...) {
    struct rot_rt *ro = &c->rot;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = c->cfg->name, .message_id = LOG_MID_ROTATION_FAILED },
                "abandoning the rotation of %s (phase %s, %s -> %s): %s", c->cfg->name,
                rotate_phase_to_string(ro->st->phase), ro->st->old_version, ro->st->new_version, why);
    ro->st->phase = ROTATE_IDLE;
    rot_save(c);
    rot_schedule_due(c);
}

/* Picks an interrupted rotation up from its record and what is published. */
static void rot_due(struct cred_rt *c, bool scheduled);

/* The watch is over (its time ran out, or a rotation begins): the schedule again. */
static void watch_end(struct cred_rt *c) {
    struct rot_rt *ro = &c->rot;
    ro->st->watch_until = 0;
    rot_save(c);
    aclwatch_clear(&ro->job->watch);
    ro->job->watch_problem_said = false;
}

/* Worker: the password the watch put back goes again: by its hash (redis-acl), or the
 * previous user off again (redis-acl-users). err.message says why it failed. */
static int unrestore(struct rot_job *j, const struct aclops_target *t, const char *user) {
    const struct config_rotation *ro = &j->c->cfg->rotation;
    struct aclops_result res;
    char why[300];
    int r = ro->strategy == ROTATION_REDIS_ACL_USERS
                ? aclops_setuser(t, user, ACLOPS_DISABLE, NULL, NULL, ro->acl_save, &res)
                : aclops_setuser(t, user, ACLOPS_FORGET_HASH, NULL, j->c->rot.st->restored, ro->acl_save, &res);
    if (r < 0) {
        first_failure(&res, why, sizeof why);
        snprintf(j->err.message, sizeof j->err.message, "%s", why);
    }
    aclops_result_clear(&res);
    return r;
}

/* Worker: the old password back on every node (`on >old`), for another grace. */
static void rot_restore_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    const struct config_rotation *ro = &j->c->cfg->rotation;
    struct aclwatch_target t;
    struct aclops_result res;

    j->why[0] = '\0';
    j->r = aclwatch_target_open(j->c->cfg, j->username, j->new_pw, &t, j->why, sizeof j->why);
    if (j->r < 0)
        return;
    j->r = aclops_setuser(&t.t, j->pending_user, ACLOPS_RESTORE, j->old_pw, NULL, ro->acl_save, &res);
    if (j->r < 0)
        first_failure(&res, j->why, sizeof j->why);
    aclops_result_clear(&res);
    aclwatch_target_close(&t);
}

/* SHA-256 of a password in hex: what ACL GETUSER shows, and `!<hash>` removes. */
static void password_hash(const struct secret *pw, char out[65]) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)secret_data(pw), secret_len(pw), md);
    for (size_t i = 0; i < sizeof md; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    explicit_bzero(md, sizeof md);
}

static void rot_restore_done(struct cred_rt *c, struct rot_job *j) {
    struct rot_rt *ro = &c->rot;
    const struct config_rotation *cr = &c->cfg->rotation;
    struct log_ctx ctx = cred_ctx(c, LOG_MID_OLD_PASSWORD_RESTORED, ro->st->old_version);
    if (j->r < 0) {
        log_ctx_msg(LOG_ERR, &ctx, "%s: cannot put "
                    "the old password back (revocation_restore): %s", c->cfg->name, j->why);
    } else {
        int64_t now = now_real(), grace = (int64_t)((cr->grace_usec + USEC_PER_SEC - 1) / USEC_PER_SEC);
        password_hash(j->old_pw, ro->st->restored);
        ro->st->restore_until = now + grace;
        ro->st->restores++;
        int64_t until = ro->st->restore_until + (int64_t)(cr->revocation_watch_usec / USEC_PER_SEC);
        if (until > ro->st->watch_until)
            ro->st->watch_until = until;
        rot_save(c);
        log_ctx_msg(LOG_WARNING, &ctx, "%s: the old "
                    "password of %s (version %s) is back on every node for another %llds (restore %lld of %u), "
                    "since AUTH with it failed after its removal", c->cfg->name, j->pending_user,
                    ro->st->old_version, (long long)grace, (long long)ro->st->restores, cr->restore_limit);
    }
    rot_job_clear(j);
    rot_go(c, RS_WATCH, false, cr->revocation_check_usec);
}

/* After failures: put the old password back when revocation_restore allows it. true when
 * a restore step was started. */
static bool watch_restore(struct cred_rt *c, struct rot_job *j) {
    struct rot_rt *ro = &c->rot;
    const struct config_rotation *cr = &c->cfg->rotation;
    if (!cr->revocation_restore || ro->st->restored[0])
        return false;
    if (ro->st->watch_revoke || ro->st->restores >= (int64_t)cr->restore_limit) {
        log_ctx_msg(LOG_ERR, &(struct log_ctx){ .name = c->cfg->name }, "%s: the old password is not put "
                    "back: %s", c->cfg->name, ro->st->watch_revoke ? "the rotation was `rotate --revoke`"
                    : "rotation.restore_limit is reached");
        return false;
    }
    bool known = c->have_cur && c->cur.has_previous && c->cur.prev.password &&
                 strcmp(c->cur.prev.version, ro->st->old_version) == 0;
    if (!known) {
        log_ctx_msg(LOG_ERR, &(struct log_ctx){ .name = c->cfg->name }, "%s: the old password cannot be put "
                    "back: it is no longer published as `previous`", c->cfg->name);
        return false;
    }
    rot_job_clear(j);
    j->c = c;
    j->username = c->cur.cur.username ? strdup(c->cur.cur.username) : NULL;
    j->new_pw = secret_dup(c->cur.cur.password);
    j->old_pw = secret_dup(c->cur.prev.password);
    j->pending_user = strdup(ro->job->watch_user[0] ? ro->job->watch_user : "default");
    if (!j->new_pw || !j->old_pw || !j->pending_user || (c->cur.cur.username && !j->username)) {
        rot_job_clear(j);
        return false;
    }
    rot_submit(c, RS_WATCHING, rot_restore_run, rot_restore_done, false);
    return true;
}

/* Worker: ACL LOG on every node, the failures since the last read. */
static void rot_watch_run(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    struct cred_rt *c = j->c;
    const char *users[1] = { c->rot.job->watch_user[0] ? c->rot.job->watch_user : "default" };
    struct aclwatch_target t;

    j->acl.detail[0] = j->why[0] = '\0';
    j->r = aclwatch_target_open(c->cfg, j->username, j->new_pw, &t, j->acl.detail, sizeof j->acl.detail);
    if (j->r < 0)
        return;
    j->r = aclwatch_read(&c->rot.job->watch, &t.t, users, 1, j->why, sizeof j->why, j->acl.detail,
                         sizeof j->acl.detail);
    if (j->unrestore)
        j->err.cls = unrestore(j, &t.t, users[0]) < 0 ? RC_ERR_TRANSIENT : 0;
    aclwatch_target_close(&t);
}

static void rot_watch_done(struct cred_rt *c, struct rot_job *j) {
    struct rot_rt *ro = &c->rot;
    if (j->r > 0) {
        /* An application (or a host whose agent is stopped) still has the old password. */
        struct log_ctx ctx = cred_ctx(c, LOG_MID_OLD_CREDENTIAL_USED, ro->st->old_version);
        log_ctx_msg(LOG_ERR, &ctx, "%s: the old credential (version %s) was tried after its removal: "
                    "%d failed AUTH%s: %s", c->cfg->name, ro->st->old_version, j->r, j->r == 1 ? "" : "s",
                    j->why);
        text_set(&ro->last_error, "the old credential was tried after its removal: %s", j->why);
    }
    if (j->unrestore && j->err.cls) {
        log_ctx_msg(LOG_ERR, &(struct log_ctx){ .name = c->cfg->name }, "%s: cannot remove the password "
                    "the watch put back (retried): %s", c->cfg->name, j->err.message);
    } else if (j->unrestore) {
        ro->st->restored[0] = '\0';
        ro->st->restore_until = 0;
        rot_save(c);
        log_ctx_msg(LOG_NOTICE, &(struct log_ctx){ .name = c->cfg->name }, "%s: the old password the watch "
                    "put back is removed again", c->cfg->name);
    }
    if (j->r > 0 && watch_restore(c, j))
        return;
    if (j->acl.detail[0] && !ro->job->watch_problem_said) {
        /* Said once per watch: the rotation itself is done and fine. */
        log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = c->cfg->name }, "%s: the revocation watch "
                    "cannot read ACL LOG everywhere (%s); it goes on where it can", c->cfg->name, j->acl.detail);
        ro->job->watch_problem_said = true;
    }
    rot_job_clear(j);
    if (now_real() >= ro->st->watch_until && !ro->st->restored[0]) {
        watch_end(c);
        rot_schedule_due(c);
        return;
    }
    rot_go(c, RS_WATCH, false, c->cfg->rotation.revocation_check_usec);
}

/* The watch's timer: read again, or end. */
static void rot_watch_tick(struct cred_rt *c) {
    struct rot_rt *ro = &c->rot;
    struct rot_job *j = ro->job;
    if (ro->job->watch_problem[0] && !ro->job->watch_problem_said) {
        log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = c->cfg->name }, "%s: the revocation watch "
                    "cannot read ACL LOG everywhere (%s); it goes on where it can", c->cfg->name,
                    ro->job->watch_problem);
        ro->job->watch_problem_said = true;
    }
    bool unrestore_due = ro->st->restored[0] && now_real() >= ro->st->restore_until;
    if ((now_real() >= ro->st->watch_until && !ro->st->restored[0]) || !c->have_cur) {
        watch_end(c);
        rot_schedule_due(c);
        return;
    }
    rot_job_clear(j);
    j->c = c;
    j->unrestore = unrestore_due;
    j->username = c->cur.cur.username ? strdup(c->cur.cur.username) : NULL;
    j->new_pw = secret_dup(c->cur.cur.password);
    if (!j->new_pw || (c->cur.cur.username && !j->username)) {
        rot_job_clear(j);
        rot_go(c, RS_WATCH, false, c->cfg->rotation.revocation_check_usec);
        return;
    }
    rot_submit(c, RS_WATCHING, rot_watch_run, rot_watch_done, false);
}

static void rot_resume(struct cred_rt *c) {
    struct rot_rt *ro = &c->rot;
    char err[256];
    if ((ro->st->record && (ro->st->phase != ROTATE_IDLE || ro->job->rec.epoch)) || ro->resume_look) {
        /* Held in the store's record: the record says where it stands (after the first
         * fetch at a start). */
        ro->resume_look = true;
        rot_due(c, false);
        return;
    }
    switch (rotate_resume_decide(ro->st, c->have_cur ? c->cur.cur.version : NULL,
                                 c->have_cur && c->cur.has_previous ? c->cur.prev.version : NULL)) {
    case ROTATE_RESUME_NONE:
        if (watch_enabled(c) && (ro->st->watch_until > now_real() || ro->st->restored[0]) &&
            c->sm.rot != RS_RETRY_WAIT) {
            /* A watch that a restart or reload cut short goes on; its first read is the
             * new baseline. A password it had put back goes at once. */
            const char *cur = c->have_cur ? c->cur.cur.username : NULL;
            const char *watched = users_strategy(c) ? idle_user(&c->cfg->rotation, cur) : cur;
            snprintf(ro->job->watch_user, sizeof ro->job->watch_user, "%s", watched ? watched : "default");
            if (ro->st->restored[0])
                ro->st->restore_until = 0;
            rot_go(c, RS_WATCH, false, c->cfg->rotation.revocation_check_usec);
            return;
        }
        if (c->sm.rot == RS_RETRY_WAIT) {
            if (rot_request(c, false, err, sizeof err) < 0)
                rot_fail(c, "%s", err);
        } else
            rot_schedule_due(c);
        return;
    case ROTATE_RESUME_ADD:
        /* The store has the new password: the next fetch hands it over. */
        log_ctx_msg(LOG_NOTICE, &(struct log_ctx){ .name = c->cfg->name, .version = ro->st->new_version },
                    "resuming the rotation of %s (phase %s): reading version %s from the store",
                    c->cfg->name, rotate_phase_to_string(ro->st->phase), ro->st->new_version);
        rot_go(c, RS_AWAIT_FETCH, false, 0);
        return;
    case ROTATE_RESUME_REMOVE:
        if (!has_grace(c)) {
            /* vault-database, published already: nothing of ours is left to remove. */
            rot_completed(c);
            return;
        }
        if (ro->st->phase != ROTATE_PUBLISHED) {
            /* Published before the record said so. */
            ro->st->phase = ROTATE_PUBLISHED;
            ro->st->grace_until = (c->last_change ? c->last_change : now_real()) +
                                 (int64_t)(c->cfg->rotation.grace_usec / USEC_PER_SEC);
            rot_save(c);
        }
        log_ctx_msg(LOG_NOTICE, &(struct log_ctx){ .name = c->cfg->name, .version = ro->st->new_version },
                    "resuming the rotation of %s: version %s is published; the old password goes "
                    "when the grace period ends", c->cfg->name, ro->st->new_version);
        rot_grace(c);
        return;
    case ROTATE_RESUME_ABANDON:
        rot_abandon(c, "the published credential is %s now", c->have_cur ? c->cur.cur.version : "none");
        return;
    }
}

/* The schedule fell due (scheduled), or a resume needs the record: no claim before the
 * first successful fetch since start (the store's clock is unknown until then), nor
 * before the fleet clock says so (it may have moved while the timer waited). */
static void rot_due(struct cred_rt *c, bool scheduled) {
    struct rot_rt *ro = &c->rot;
    char err[256];
    if (!ro->fetched) {
        ro->due_waiting = true;
        return;
    }
    if (ro->manual_pending && !ro->resume_look) {
        /* `rotate` was asked for during a look that found nothing under way. */
        ro->manual_pending = false;
        ro->revoke_next = ro->revoke_pending;
        if (rot_request(c, true, err, sizeof err) < 0)
            rot_fail(c, "%s", err);
        return;
    }
    if (scheduled && !ro->resume_look && due_in(c) > 0) {
        rot_schedule_due(c);
        return;
    }
    if (rot_request(c, false, err, sizeof err) < 0)
        rot_fail(c, "%s", err);
}

void rotation_timer(struct cred_rt *c) {
    c->rot.timer_mono = 0;
    switch (c->rot.timer_kind) {
    case RT_DUE:
        rot_due(c, true);
        break;
    case RT_GRACE:
        rot_remove(c);
        break;
    case RT_RETRY:
        rot_resume(c);
        break;
    case RT_WATCH:
        rot_watch_tick(c);
        break;
    case RT_DRAIN:
        rot_remove(c);
        break;
    }
}

static struct rc_candidate *find_version(struct rc_candidate *cands, int n, const char *version) {
    for (int i = 0; i < n; i++)
        if (strcmp(cands[i].version, version) == 0)
            return &cands[i];
    return NULL;
}

enum rot_take rotation_take_fetched(struct cred_rt *c, struct rc_candidate *cands, int n) {
    struct rot_rt *ro = &c->rot;
    if (!ro->st)   /* no rotation here (an observer's step is never AWAIT_FETCH) */
        return ROT_TAKE_NONE;
    if (c->cfg->rotation.strategy == ROTATION_AZURE_KEYS && ro->st->phase == ROTATE_PUBLISHED &&
        c->sm.rot != RS_AWAIT_FETCH && c->have_cur && strcmp(c->cur.cur.version, ro->st->new_version) == 0 &&
        find_version(cands, n, ro->st->new_version) && find_version(cands, n, ro->st->old_version))
        /* Switched to the new key; the store still has the old one (regenerated after
         * grace). The source prefers one of the two: it is not a change. */
        return ROT_TAKE_UNCHANGED;
    if (c->sm.rot != RS_AWAIT_FETCH)
        return ROT_TAKE_NONE;
    /* The new version: the current candidate, or (azure-keys) the other key, a PEER. */
    struct rc_candidate *cand = find_version(cands, n, ro->st->new_version);
    if (!cand || !c->have_cur) {
        rot_abandon(c, "the store holds version %s now", cands[0].version);
        return ROT_TAKE_NONE;   /* judged like any new version */
    }
    struct rot_job *j = ro->job;
    rot_job_clear(j);
    j->c = c;
    j->rc = (struct rc_credential){ .name = c->cfg->name, .node = plugins_node(&c->cfg->node) };
    snprintf(j->new_version, sizeof j->new_version, "%s", cand->version);
    j->username = cand->username;
    j->new_pw = cand->password;
    cand->username = NULL;
    cand->password = NULL;
    j->old_pw = secret_dup(c->cur.cur.password);
    if (!j->old_pw) {
        rot_fail(c, "out of memory");
        return ROT_TAKE_TAKEN;
    }
    rot_add(c);
    return ROT_TAKE_TAKEN;
}

void rotation_fetched(struct cred_rt *c, const struct rc_candidate *cand) {
    struct rot_rt *ro = &c->rot;
    if (!ro->enabled || !ro->job || !ro->st)
        return;
    ro->fetched = true;
    rot_clock(c, cand->rotated_at);
    if (ro->due_waiting) {
        ro->due_waiting = false;
        rot_due(c, true);
    }
}

int64_t rotation_previous_valid_until(const struct cred_rt *c, int64_t rotated_at) {
    const struct rot_rt *ro = &c->rot;
    bool revoked = ro->st && ro->st->record && ro->st->revoke && ro->job && ro->job->rec.revoke;
    return rotated_at + (revoked ? 0 : (int64_t)((c->cfg->rotation.grace_usec + USEC_PER_SEC - 1) / USEC_PER_SEC));
}

void rotation_fetch_failed(struct cred_rt *c, const struct rc_error *err) {
    if (c->sm.rot == RS_AWAIT_FETCH && c->rot.st)
        rot_fail(c, "cannot read the new version %s from the store: %s", c->rot.st->new_version,
                 err->message);
}

/* At start and after a reload: the record, then what it needs. */
void rotation_clear(struct cred_rt *c) {
    c->rot.timer = sd_event_source_disable_unref(c->rot.timer);
    drain_forget(&c->rot);
    rot_job_clear(c->rot.job);
    if (c->rot.job) {
        aclwatch_clear(&c->rot.job->watch);
        rotrec_clear(&c->rot.job->rec);
        rotrec_clear(&c->rot.job->seen);
    }
    free(c->rot.job);
    c->rot.job = NULL;
    free(c->rot.st);
    c->rot.st = NULL;
}

void rotation_stop(struct cred_rt *c) {
    sd_event_source_set_enabled(c->rot.timer, SD_EVENT_OFF);
}

/* Who this host is (its name, and its owner_id in rotation records), and whether it may
 * rotate: not when another host is the `rotator`, nor when `rotators` does not list it.
 * An observer only publishes what the others rotate to. */
static bool rot_claims_here(struct cred_rt *c, char host[ROTREC_HOST_MAX], char owner_id[RC_VERSION_MAX]) {
    const char *rotator = c->cfg->rotation.rotator;
    static const char id_input[] = "redis-creds rotation owner";
    if (gethostname(host, ROTREC_HOST_MAX - 1) < 0 || !host[0])
        snprintf(host, ROTREC_HOST_MAX, "unnamed");
    if (rotator && strcmp(host, rotator) != 0) {
        /* A store without check-and-set: only the named host rotates (docs/operations.md). */
        log_ctx_msg(LOG_INFO, &(struct log_ctx){ .name = c->cfg->name },
                    "%s: rotated by host %s (this is %s); this host publishes what it rotates to",
                    c->cfg->name, rotator, host);
        return false;
    }
    if (!config_rotation_claims_here(&c->cfg->rotation)) {
        log_ctx_msg(LOG_INFO, &(struct log_ctx){ .name = c->cfg->name }, "%s: this host (%s) is not one "
                    "of rotation.rotators; it publishes what they rotate to", c->cfg->name, host);
        return false;
    }
    /* Two agents on one host (tests, benchmarks) are two owners: the record names this one
     * by a keyed hash of its host key. */
    if (c->src->host->keyed_version(c->src->host->h, id_input, sizeof id_input - 1, owner_id) < 0)
        owner_id[0] = '\0';
    return true;
}

void rotation_init(struct cred_rt *c) {
    struct rot_rt *ro = &c->rot;
    char err[512];
    ro->enabled = c->cfg->rotation.enabled && c->src->type &&
                  (c->src->type->rotate_write || c->src->type->rotate_self) &&
                  !c->src->open_error[0] && !c->a->p.once;
    char host[ROTREC_HOST_MAX] = "", owner_id[RC_VERSION_MAX] = "";
    ro->observer = ro->enabled && !rot_claims_here(c, host, owner_id);
    if (!ro->enabled || ro->observer) {
        free(ro->st);   /* (carried from a generation that rotated here) */
        ro->st = NULL;
        return;
    }
    /* The step's job and the phase record are allocated only for a credential that
     * rotates: most do not, and they are the largest part of a credential
     * (docs/benchmarks.md, memory). A reload carried st over (cred_carry). */
    if (!ro->st) {
        ro->carried = false;   /* nothing to go on with: read the file */
        ro->st = calloc(1, sizeof *ro->st);
    }
    if (!ro->st || (!ro->job && !(ro->job = calloc(1, sizeof *ro->job)))) {
        free(ro->st);
        ro->st = NULL;
        ro->enabled = false;
        log_ctx_msg(LOG_ERR, &(struct log_ctx){ .name = c->cfg->name },
                    "%s: out of memory: rotation is off until the next reload", c->cfg->name);
        return;
    }
    memcpy(ro->job->host, host, sizeof host);
    memcpy(ro->job->owner_id, owner_id, sizeof owner_id);
    /* Retries never wait longer than the interval itself (nor under the minimum). */
    uint64_t cap = c->cfg->rotation.interval_usec < ROT_RETRY_MAX_USEC ? c->cfg->rotation.interval_usec
                                                                       : ROT_RETRY_MAX_USEC;
    /* ... nor half of pending_timeout: a host retrying a step must not look abandoned. */
    if (use_record(c) && cap > c->cfg->rotation.pending_timeout_usec / 2)
        cap = c->cfg->rotation.pending_timeout_usec / 2;
    if (!ro->carried) {
        ro->fetched = ro->due_waiting = ro->resume_look = false;
        ro->splay_usec = rotate_splay_draw(c->cfg->rotation.splay_usec);
    }
    unsigned attempts = ro->retry.attempt;
    int r;
    backoff_init(&ro->retry, ROT_RETRY_MIN_USEC, cap < ROT_RETRY_MIN_USEC ? ROT_RETRY_MIN_USEC : cap);
    if (ro->carried) {
        /* A reload: the record and the retry history are the running generation's. */
        ro->retry.attempt = attempts;
        if (ro->carried_retry_mono) {
            uint64_t now = now_mono(), at = ro->carried_retry_mono;
            ro->carried_retry_mono = 0;
            rot_go(c, RS_RETRY_WAIT, false, at > now ? at - now : 0);   /* waits on, as it did */
            return;
        }
    } else if ((r = rotate_state_load(c->a->cfg->agent.state_dir, c->cfg->name, ro->st, err,
                                      sizeof err)) < 0) {
        if (r != -ENOENT)
            log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = c->cfg->name },
                        "%s: ignoring the rotation record: %s", c->cfg->name, err);
        *ro->st = (struct rotate_state){ .baseline = now_real() };
        rot_save(c);
    } else if (rotate_clock_sane(ro->st, now_real())) {
        log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = c->cfg->name }, "%s: the rotation phase "
                    "record in %s holds times in the future (this host's clock ran ahead when they were "
                    "written); the rotation schedule counts from now instead", c->cfg->name,
                    c->a->cfg->agent.state_dir);
        rot_save(c);
    }
    if (use_record(c) && ro->st->phase == ROTATE_IDLE && !ro->st->record &&
        !(ro->st->watch_until > now_real() || ro->st->restored[0]) &&
        (!ro->carried || record_look_in(c) < due_in(c)))
        /* A fresh start: this host may have died right after its claim, before its own
         * phase record said so. One look at the store's record after the first fetch
         * finds such a record (and goes on with it) or another host's live one (and
         * waits for its takeover time); with none it only arms the schedule. A reload
         * while another host's rotation may still need finishing (rot_clock) looks too. */
        ro->resume_look = true;
    rot_resume(c);
}

/* The rotation part of a status row; null without rotation. */
const char *rotation_step_word(const struct cred_rt *c) {
    /* The revocation watch comes after a completed rotation: none is under way. */
    bool under_way = c->sm.rot != RS_NONE && c->sm.rot != RS_WATCH && c->sm.rot != RS_WATCHING;
    /* Nor is a look at the store's record (at start, or for another host's rotation)
     * unless this host holds a rotation it may go on with. */
    if (c->sm.rot == RS_CLAIMING && c->rot.job && c->rot.job->look_only && c->rot.st && !c->rot.st->record &&
        !c->rot.job->rec.epoch)
        under_way = false;
    return c->rot.enabled && under_way ? credsm_step_name(c->sm.rot) : NULL;
}

const char *rotation_state_word(const struct cred_rt *c, const char *state) {
    bool draining = c->rot.enabled && (c->sm.rot == RS_DRAINING || (c->sm.rot == RS_REMOVING && c->rot.drain));
    return draining ? "draining" : state;
}

json_t *rotation_status_json(const struct cred_rt *c, uint64_t mono, int64_t real) {
    const struct rot_rt *ro = &c->rot;
    if (!ro->enabled)
        return json_null();
    int64_t at = ro->timer_mono && ro->timer
                     ? real + (int64_t)((ro->timer_mono > mono ? ro->timer_mono - mono : 0) / USEC_PER_SEC)
                     : 0;
    json_t *o = json_object();
    json_object_set_new(o, "strategy", json_string(config_rotation_strategy_to_string(c->cfg->rotation.strategy)));
    json_object_set_new(o, "rotator", json_str_or_null(c->cfg->rotation.rotator));
    json_t *list = c->cfg->rotation.rotators ? json_array() : json_null();
    for (size_t i = 0; c->cfg->rotation.rotators && i < c->cfg->rotation.n_rotators; i++)
        json_array_append_new(list, json_string(c->cfg->rotation.rotators[i]));
    json_object_set_new(o, "rotators", list);
    json_object_set_new(o, "rotates_here", json_boolean(!ro->observer));
    /* an observer holds no phase record: idle, never completed one here */
    json_object_set_new(o, "phase", json_string(rotate_phase_to_string(ro->st ? ro->st->phase : ROTATE_IDLE)));
    enum rot_step step = c->sm.rot;
    json_object_set_new(o, "step", json_string(credsm_step_name(step)));
    /* the watch holds the timer: the schedule is due at the same time all the same */
    /* (so does a look at the store's record: its timer is the record's takeover time) */
    int64_t due = step == RS_NONE && !ro->resume_look ? at
                  : step == RS_NONE || step == RS_WATCH || step == RS_WATCHING
                      ? real + (int64_t)(due_in(c) / USEC_PER_SEC) : 0;
    json_object_set_new(o, "next_rotation", json_time(due));
    json_object_set_new(o, "old_removed_at", json_time(step == RS_GRACE ? at : 0));
    json_object_set_new(o, "retry_at", json_time(step == RS_RETRY_WAIT ? at : 0));
    json_object_set_new(o, "last_rotation", json_time(ro->st ? ro->st->last_completed : 0));
    json_object_set_new(o, "last_error", json_str_or_null(ro->last_error));
    json_object_set_new(o, "drain", ro->drain ? json_incref(ro->drain) : json_null());
    return o;
}

int rotation_request(struct cred_rt *c, bool revoke, char *err, size_t errlen) {
    const char *name = c->cfg->name;
    if (!c->cfg->rotation.enabled) {
        snprintf(err, errlen, "rotation is not configured for \"%s\" (add rotation = { strategy = "
                 "\"redis-acl\"; ... } to the credential)", name);
        return -EOPNOTSUPP;
    }
    if (c->src->open_error[0]) {
        snprintf(err, errlen, "source %s cannot be used: %s", c->src->cfg->name, c->src->open_error);
        return -EIO;
    }
    if (!c->rot.enabled) {
        snprintf(err, errlen, "rotation of \"%s\" is not active", name);
        return -EOPNOTSUPP;
    }
    if (c->rot.observer) {
        if (c->cfg->rotation.rotator)
            snprintf(err, errlen, "\"%s\" is rotated by host %s, not by this one (rotation.rotator): "
                     "run the command there", name, c->cfg->rotation.rotator);
        else
            snprintf(err, errlen, "\"%s\" is rotated by the hosts of rotation.rotators, and this one is "
                     "not among them: run the command on one of them", name);
        return -EPERM;
    }
    if (revoke && !use_record(c)) {
        snprintf(err, errlen, "--revoke needs strategy \"redis-acl\" on a store that keeps a rotation "
                 "record (file, vault kv2)");
        return -EOPNOTSUPP;
    }
    if (revoke && c->rot.st->phase != ROTATE_IDLE) {
        /* The rotation under way is finished rather than another begun (below): a revoke
         * would be dropped while the command said it was done. */
        snprintf(err, errlen, "a rotation of \"%s\" is under way (phase %s, step %s): --revoke cannot cut "
                 "its grace; it removes the old password when it completes (see `redis-creds status`)",
                 name, rotate_phase_to_string(c->rot.st->phase), credsm_step_name(c->sm.rot));
        return -EBUSY;
    }
    c->rot.revoke_next = revoke;
    if (use_record(c) && (c->rot.resume_look || (c->sm.rot == RS_CLAIMING && c->rot.job->look_only))) {
        /* A look at the store's record is due or under way (at start, or waiting for
         * another host's rotation): it only looks. The request is kept and served when the
         * look finds no rotation to go on with. */
        c->rot.manual_pending = true;
        c->rot.revoke_pending = revoke;
        if (c->sm.rot == RS_CLAIMING)
            return 0;
    }
    if (c->sm.rot == RS_RETRY_WAIT && c->rot.st->phase != ROTATE_IDLE) {
        /* An interrupted rotation waits for its retry: finish it now instead. */
        backoff_reset(&c->rot.retry);
        rot_resume(c);
        return 0;
    }
    if (c->sm.rot == RS_RETRY_WAIT)
        backoff_reset(&c->rot.retry);
    return rot_request(c, true, err, errlen);
}
