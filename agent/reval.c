/* reval: see reval.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_internal.h"
#include "backoff.h"
#include "reval.h"

/* ---- pure ---- */

enum reval_verdict reval_judge(enum validate_policy policy, const struct validate_result *r) {
    if (policy == VALIDATE_NONE || r->total == 0)
        return REVAL_INCONCLUSIVE;
    if (policy == VALIDATE_ANY) {
        if (r->refused == r->total)
            return REVAL_REFUSED;
        return r->accepted > 0 ? REVAL_ACCEPTED : REVAL_INCONCLUSIVE;
    }
    if (r->refused > 0)
        return REVAL_REFUSED;
    return r->accepted == r->total ? REVAL_ACCEPTED : REVAL_INCONCLUSIVE;
}

const char *reval_verdict_to_string(enum reval_verdict v) {
    static const char *const words[] = {
        [REVAL_ACCEPTED] = "accepted", [REVAL_REFUSED] = "refused",
        [REVAL_INCONCLUSIVE] = "inconclusive",
    };
    return (unsigned)v <= REVAL_INCONCLUSIVE ? words[v] : "?";
}

uint64_t reval_delay(uint64_t interval_usec, uint64_t rnd) {
    uint64_t splay = interval_usec / 10;
    return interval_usec - splay + rnd % (2 * splay + 1);
}

static bool same(const char *a, const char *b) {
    return a && b && strcmp(a, b) == 0;
}

enum reval_take reval_offer(const char *revoked, const char *published, const char *version,
                            const char *peer) {
    if (!revoked || !revoked[0] || !same(version, revoked))
        return REVAL_TAKE_NONE;
    if (!same(published, revoked) && (same(published, version) || same(published, peer)))
        return REVAL_TAKE_CURRENT;
    if (peer && !same(peer, revoked) && !same(published, revoked))
        return REVAL_TAKE_NONE;   /* the other key changed since it replaced the refused one */
    return REVAL_TAKE_REVOKED;
}

/* ---- the job ---- */

struct reval_job {
    struct job job;
    struct cred_rt *c;
    bool recovery;                        /* a recovery's candidates; else the published one */
    char refused[RC_VERSION_MAX];         /* recovery: the version Redis refused */
    char published[RC_VERSION_MAX];       /* what was published when the job was made */
    int n;
    struct rc_candidate cands[REVAL_MAX_CANDIDATES];
    const char *what[REVAL_MAX_CANDIDATES];   /* "the store's other key", ... */
    bool in_store[REVAL_MAX_CANDIDATES];
    char *cur_username;                   /* recovery: the refused credential, as current */
    struct secret *cur_password;
    int accepted;                         /* the first candidate the policy accepted; -1 */
    struct validate_result res[REVAL_MAX_CANDIDATES];
};

static struct reval_job *job_free(struct reval_job *j) {
    if (!j)
        return NULL;
    for (int i = 0; i < REVAL_MAX_CANDIDATES; i++) {
        free(j->cands[i].username);
        secret_free(j->cands[i].password);
    }
    free(j->cur_username);
    secret_free(j->cur_password);
    free(j);
    return NULL;
}

/* Worker: each candidate in order, until the policy accepts one. */
static void job_run(struct job *jb) {
    struct reval_job *j = (struct reval_job *)jb;
    const struct config_redis *redis = &j->c->cfg->redis;
    j->accepted = -1;
    for (int i = 0; i < j->n && j->accepted < 0; i++) {
        validate_candidate(redis, j->cands[i].username, j->cands[i].password, j->cur_username,
                           j->cur_password, &j->res[i]);
        if (j->recovery ? j->res[i].outcome == VALIDATE_PUBLISH
                        : reval_judge(redis->validate, &j->res[i]) == REVAL_ACCEPTED)
            j->accepted = i;
    }
}

struct cred_rt *reval_job_cred(struct job *jb) {
    return ((struct reval_job *)jb)->c;
}

/* A copy of a published value as a candidate. 0, or -ENOMEM. */
static int copy_value(const struct cred_value *v, struct rc_candidate *ret) {
    *ret = (struct rc_candidate){ .expires_at = v->expires_at,
                                  .rotated_at = INT64_MIN };
    snprintf(ret->version, sizeof ret->version, "%s", v->version);
    ret->password = secret_dup(v->password);
    ret->username = v->username ? strdup(v->username) : NULL;
    if (!ret->password || (v->username && !ret->username)) {
        free(ret->username);
        ret->password = secret_free(ret->password);
        return -ENOMEM;
    }
    return 0;
}

/* ---- the timer ---- */

static bool enabled(const struct cred_rt *c) {
    return c->cfg->redis.revalidate_interval_usec > 0 && c->cfg->redis.validate != VALIDATE_NONE &&
           !c->a->p.once && !c->a->stopping && !c->retired;
}

static void arm(struct cred_rt *c, uint64_t delay) {
    struct reval_rt *rv = &c->reval;
    uint64_t when = now_mono() + delay;
    int r;
    if (!enabled(c))
        return;
    if (rv->timer) {
        r = sd_event_source_set_time(rv->timer, when);
        if (r >= 0)
            r = sd_event_source_set_enabled(rv->timer, SD_EVENT_ONESHOT);
    } else
        r = sd_event_add_time(c->a->p.event, &rv->timer, CLOCK_MONOTONIC, when, USEC_PER_MSEC,
                              rv->on_timer, c);
    if (r < 0) {
        log_error("%s: cannot schedule the re-validation: %s", c->cfg->name, strerror(-r));
        return;
    }
    rv->due_mono = when;
}

static void arm_next(struct cred_rt *c) {
    arm(c, reval_delay(c->cfg->redis.revalidate_interval_usec, backoff_random()));
}

void reval_init(struct cred_rt *c, sd_event_time_handler_t on_timer) {
    uint64_t due = c->reval.due_mono, now = now_mono(), interval = c->cfg->redis.revalidate_interval_usec;
    c->reval.on_timer = on_timer;
    if (due && due <= now + interval + interval / 10)
        arm(c, due > now ? due - now : 0);   /* a reload keeps the time it was due */
    else
        arm_next(c);
}

void reval_carry(struct cred_rt *c, struct cred_rt *old) {
    struct reval_rt *o = &old->reval;
    c->reval.due_mono = o->timer && o->due_mono ? o->due_mono : 0;
    c->reval.last_at = o->last_at;
    text_set(&c->reval.revoked_version, "%s", text_or_empty(o->revoked_version));
    c->reval.published_refused = o->published_refused;
    c->reval.said = o->said;
    text_set(&c->reval.why, "%s", text_or_empty(o->why));
}

void reval_stop(struct cred_rt *c) {
    if (c->reval.timer)
        sd_event_source_set_enabled(c->reval.timer, SD_EVENT_OFF);
}

void reval_clear(struct cred_rt *c) {
    c->reval.timer = sd_event_source_disable_unref(c->reval.timer);
    c->reval.job = job_free(c->reval.job);
    text_clear(&c->reval.why);
    text_clear(&c->reval.revoked_version);
}

void reval_timer(struct cred_rt *c) {
    c->reval.due_mono = 0;
    if (!c->have_cur) {   /* nothing published yet: nothing to re-validate */
        arm_next(c);
        return;
    }
    if (cred_event(c, (struct credsm_event){ .type = CSM_REVALIDATE }) == -EBUSY)
        arm(c, REVAL_BUSY_RETRY_USEC);
}

/* ---- the machine's RUN_REVALIDATE ---- */

static void tell_machine(struct cred_rt *c, bool revoked) {
    cred_event(c, (struct credsm_event){ .type = CSM_REVALIDATE_DONE, .revoked = revoked });
}

struct job *reval_job(struct cred_rt *c) {
    struct reval_job *j = c->reval.job;
    if (!j && c->have_cur && (j = calloc(1, sizeof *j))) {
        j->c = c;
        j->n = 1;
        j->what[0] = "the published version";
        snprintf(j->published, sizeof j->published, "%s", c->cur.cur.version);
        if (copy_value(&c->cur.cur, &j->cands[0]) < 0)
            j = job_free(j);
    }
    if (!j) {   /* nothing published (or out of memory): nothing to ask */
        tell_machine(c, false);
        arm_next(c);
        return NULL;
    }
    c->reval.job = j;
    j->job.run = job_run;
    return &j->job;
}

/* The refused version's text for status (last_error) and the logs. */
static void set_revoked(struct cred_rt *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_revoked(struct cred_rt *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    text_vset(&c->reval.why, fmt, ap);
    va_end(ap);
    c->state = CS_REVOKED;
    text_set(&c->last_error, "%s", text_or_empty(c->reval.why));
    text_set(&c->pending_version, "%s", text_or_empty(c->reval.revoked_version));
}

/* The periodic re-validation's verdict on the published credential. */
static bool judge_published(struct cred_rt *c, const struct reval_job *j) {
    const struct validate_result *v = &j->res[0];
    const char *ver = j->published;
    enum reval_verdict verdict = reval_judge(c->cfg->redis.validate, v);
    struct log_ctx ctx = cred_ctx(c, NULL, ver);
    ctx.nodes = v->nodes;   /* the job's: c->nodes is replaced below */
    log_ctx_msg(LOG_DEBUG, &ctx, "re-validation of %s version %s: %s (%s)", c->cfg->name, ver,
                reval_verdict_to_string(verdict), v->nodes);
    if (verdict == REVAL_INCONCLUSIVE)
        return false;
    text_set(&c->nodes, "%s", v->nodes);
    if (verdict == REVAL_ACCEPTED) {
        c->reval.published_refused = false;
        if (!same(c->reval.revoked_version, ver))
            return false;
        log_ctx_msg(LOG_INFO, &ctx, "%s: Redis accepts the published version %s again",
                    c->cfg->name, ver);
        text_clear(&c->reval.revoked_version);
        c->reval.said = false;
        text_clear(&c->reval.why);
        if (c->state == CS_REVOKED) {
            c->state = CS_CURRENT;
            text_clear(&c->pending_version);
            text_clear(&c->last_error);
            text_clear(&c->logged_error);
        }
        return false;
    }
    bool again = same(c->reval.revoked_version, ver);
    text_set(&c->reval.revoked_version, "%s", ver);
    c->reval.published_refused = true;
    if (!again)
        c->reval.said = false;
    set_revoked(c, "Redis refused the published version %s at re-validation (%u/%u nodes "
                "refused: %s)", ver, v->refused, v->total, v->detail);
    c->errors_total++;
    ctx.message_id = again ? NULL : LOG_MID_REVOKED;   /* one event per refused version */
    ctx.nodes = c->nodes;
    log_ctx_msg(again ? LOG_DEBUG : LOG_ERR, &ctx, "%s: %s: applications using it are refused; "
                "looking for a version Redis accepts (the store's other one, or previous)",
                c->cfg->name, c->reval.why);
    text_set(&c->logged_error, "%s", c->last_error);
    return true;
}

/* The recovery found nothing Redis accepts: said once per refused version. */
static void nothing_replaces(struct cred_rt *c, const char *tried) {
    struct log_ctx ctx = cred_ctx(c, NULL, c->reval.revoked_version);
    log_ctx_msg(c->reval.said ? LOG_DEBUG : LOG_WARNING, &ctx, "%s: nothing replaces the refused "
                "version %s (%s); the state stays revoked until the store offers a version "
                "Redis accepts, or Redis accepts it again", c->cfg->name,
                text_or_empty(c->reval.revoked_version), tried);
    c->reval.said = true;
    if (c->state != CS_REVOKED && c->have_cur && same(c->cur.cur.version, c->reval.revoked_version))
        set_revoked(c, "%s", text_or_empty(c->reval.why));
}

/* A recovery's candidates are back: the first one accepted is published, or nothing. */
static void recovered(struct cred_rt *c, struct reval_job *j, reval_publish_fn publish) {
    char tried[400] = "";
    size_t len = 0;
    if (!c->have_cur || strcmp(c->cur.cur.version, j->published) != 0)
        return;   /* something else was published meanwhile (a rotation) */
    if (j->accepted < 0) {
        for (int i = 0; i < j->n && len < sizeof tried; i++) {
            int w = snprintf(tried + len, sizeof tried - len, "%s%s %s: %s", i ? "; " : "tried ",
                             j->what[i], j->cands[i].version, validate_outcome_to_string(j->res[i].outcome));
            len += w > 0 ? (size_t)w : 0;
        }
        nothing_replaces(c, j->n ? tried : "no other candidate");
        return;
    }
    int i = j->accepted;
    char version[RC_VERSION_MAX];
    snprintf(version, sizeof version, "%s", j->cands[i].version);
    text_set(&c->nodes, "%s", j->res[i].nodes);
    if (!j->in_store[i])   /* not "recovered": the store's version stays refused */
        text_clear(&c->logged_error);
    if (publish(c, &j->cands[i]) < 0)
        return;   /* the publish said why; the next re-validation tries again */
    struct log_ctx ctx = cred_ctx(c, NULL, version);
    log_ctx_msg(LOG_NOTICE, &ctx, "%s: published %s %s in place of version %s, which Redis "
                "refuses; previous = none", c->cfg->name, j->what[i], version, j->refused);
    if (!j->in_store[i])   /* the store's version is still the refused one */
        set_revoked(c, "the store's version %s is refused by Redis (re-validation); publishing "
                    "the previous version %s until the store offers one Redis accepts",
                    j->refused, version);
    if (!j->in_store[i])
        text_set(&c->logged_error, "%s", text_or_empty(c->last_error));
}

void reval_job_done(struct cred_rt *c, reval_publish_fn publish) {
    struct reval_job *j = c->reval.job;
    bool revoked = false;
    c->reval.job = NULL;
    if (!j) {   /* cannot happen: the phase is the job's; never leave the machine waiting */
        tell_machine(c, false);
        return;
    }
    if (!c->a->stopping && j->recovery)
        recovered(c, j, publish);
    else if (!c->a->stopping && c->have_cur && strcmp(c->cur.cur.version, j->published) == 0) {
        c->reval.last_at = now_real();
        revoked = judge_published(c, j);
    }
    if (!j->recovery)
        arm_next(c);
    job_free(j);
    tell_machine(c, revoked);
}

/* ---- checks ---- */

/* Moves cands[i] into the job as its next candidate. */
static void take(struct reval_job *j, struct rc_candidate *cand, const char *what, bool in_store) {
    j->cands[j->n] = *cand;
    cand->username = NULL;
    cand->password = NULL;
    j->what[j->n] = what;
    j->in_store[j->n++] = in_store;
}

static bool listed(const struct reval_job *j, const char *version) {
    for (int i = 0; i < j->n; i++)
        if (strcmp(j->cands[i].version, version) == 0)
            return true;
    return false;
}

/* A recovery: what the store offers (but the refused version) and the published
 * previous, in that order. */
static enum reval_take recovery(struct cred_rt *c, struct rc_candidate *cands, int n) {
    const char *refused = text_or_empty(c->reval.revoked_version), *published = c->cur.cur.version;
    struct reval_job *j = calloc(1, sizeof *j);
    if (!j)
        return REVAL_TAKE_NONE;
    j->c = c;
    j->recovery = true;
    snprintf(j->refused, sizeof j->refused, "%s", refused);
    snprintf(j->published, sizeof j->published, "%s", published);
    for (int i = 0; i < n && j->n < RC_MAX_CANDIDATES; i++)
        if (cands[i].role != RC_CAND_HINT && !same(cands[i].version, refused) &&
            !same(cands[i].version, published) && !listed(j, cands[i].version))
            take(j, &cands[i], i == 0 ? "the store's version" : "the store's other key", true);
    const struct cred_value *prev = c->cur.has_previous ? &c->cur.prev : NULL;
    if (prev && c->cur.has_previous_valid_until && c->cur.previous_valid_until <= now_real())
        prev = NULL;   /* removed from Redis by a rotation: not worth a try */
    if (prev && !same(prev->version, refused) && !listed(j, prev->version) &&
        copy_value(prev, &j->cands[j->n]) == 0) {
        j->what[j->n++] = "the previous version";
    }
    j->cur_username = c->cur.cur.username ? strdup(c->cur.cur.username) : NULL;
    j->cur_password = secret_dup(c->cur.cur.password);
    if (j->n == 0) {
        job_free(j);
        if (n < 0)
            return REVAL_TAKE_NONE;   /* the store failed: said as such */
        nothing_replaces(c, "no other candidate");
        return REVAL_TAKE_REVOKED;
    }
    c->reval.job = job_free(c->reval.job);
    c->reval.job = j;
    return REVAL_TAKE_RECOVER;
}

enum reval_take reval_take_fetched(struct cred_rt *c, struct rc_candidate *cands, int n) {
    struct reval_rt *rv = &c->reval;
    if (c->sm.recovering && c->have_cur)
        return recovery(c, cands, n);
    if (n <= 0 || !rv->revoked_version)
        return REVAL_TAKE_NONE;
    const char *peer = n > 1 && cands[1].role == RC_CAND_PEER ? cands[1].version : NULL;
    enum reval_take t = reval_offer(rv->revoked_version, c->have_cur ? c->cur.cur.version : NULL,
                                    cands[0].version, peer);
    if (t == REVAL_TAKE_NONE && !same(cands[0].version, rv->revoked_version)) {   /* moved on */
        text_clear(&rv->revoked_version);
        rv->said = false;
        text_clear(&rv->why);
    } else if (t == REVAL_TAKE_REVOKED)
        set_revoked(c, "%s", text_or_empty(rv->why));
    return t;
}

bool reval_previous_refused(const struct cred_rt *c) {
    return c->reval.published_refused;
}

void reval_after_publish(struct cred_rt *c) {
    c->reval.published_refused = false;
}

void reval_forget(struct cred_rt *c) {
    struct reval_rt *rv = &c->reval;
    if (rv->revoked_version && !(c->have_cur && same(c->cur.cur.version, rv->revoked_version))) {
        text_clear(&rv->revoked_version);
        rv->said = false;
        text_clear(&rv->why);
    }
}

json_t *reval_status_json(const struct cred_rt *c, uint64_t mono, int64_t real) {
    const struct config_redis *r = &c->cfg->redis;
    if (r->revalidate_interval_usec == 0 || r->validate == VALIDATE_NONE)
        return json_null();
    const struct reval_rt *rv = &c->reval;
    int64_t next = rv->due_mono && rv->timer
                       ? real + (int64_t)((rv->due_mono > mono ? rv->due_mono - mono : 0) / USEC_PER_SEC)
                       : 0;
    return json_pack("{s:I, s:o, s:o, s:o}", "interval_seconds",
                     (json_int_t)(r->revalidate_interval_usec / USEC_PER_SEC), "last", json_time(rv->last_at),
                     "next", json_time(next), "refused_version", json_str_or_null(rv->revoked_version));
}
