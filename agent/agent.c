/* agent: see agent.h. */
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <jansson.h>

#include "agent_internal.h"
#include "backoff.h"
#include "confcheck.h"
#include "credfile.h"
#include "duration.h"
#include "hooks.h"
#include "hostkey.h"
#include "log.h"
#include "notify.h"
#include "rotate.h"
#include "validate.h"

#define RETRY_MIN_USEC (1 * USEC_PER_SEC)
#define RETRY_MAX_USEC (300 * USEC_PER_SEC)
/* A failure that repeats is logged again only after this long (then at growing gaps). */
#define RELOG_MIN_USEC (60 * USEC_PER_SEC)
#define RELOG_MAX_USEC (3600 * USEC_PER_SEC)
#define METRICS_RELOG_USEC (10 * 60 * USEC_PER_SEC)

static const char *const cred_state_names[] = {
    [CS_PENDING] = "pending",       [CS_CURRENT] = "current",
    [CS_REFUSED] = "refused",       [CS_UNREACHABLE] = "unreachable",
    [CS_MISCONFIGURED] = "misconfigured", [CS_REDIS_ERROR] = "redis-error",
    [CS_STORE_ERROR] = "store-error", [CS_PUBLISH_ERROR] = "publish-error",
    [CS_REVOKED] = "revoked",
};
static void request_fetch(struct cred_rt *c);
static void drive(struct cred_rt *c);
static void agent_maybe_reload(struct agent *a);
static bool retired_job_done(struct cred_rt *c);
static int publish(struct cred_rt *c, struct rc_candidate *cand, struct rc_candidate *prev,
                   const char *validated, bool retry);

/* ---- host services for plugins ---- */

static void host_log(void *h, int level, const char *credential, const char *fmt, ...) {
    struct source_rt *s = h;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_ctx_msg(level, &(struct log_ctx){ .name = credential, .source = s->cfg->name },
                "%s: %s", s->cfg->name, msg);
}

static int host_keyed_version(void *h, const void *data, size_t len, char *out) {
    struct source_rt *s = h;
    char v[HOSTKEY_VERSION_LEN];
    int r = hostkey_version(s->a->p.hostkey, data, len, v);
    if (r < 0)
        return r;
    snprintf(out, RC_VERSION_MAX, "%s", v);
    return 0;
}

static void host_wake(void *h, const char *credential) {
    struct source_rt *s = h;
    for (size_t i = 0; i < s->a->n_creds; i++) {
        struct cred_rt *c = &s->a->creds[i];
        if (c->src == s && strcmp(c->cfg->name, credential) == 0) {
            log_ctx_msg(LOG_DEBUG, &(struct log_ctx){ .name = credential }, "store changed: checking now");
            /* A change resets the retry backoff: it may be the fix we were waiting for. */
            backoff_reset(&c->retry);
            request_fetch(c);
        }
    }
}

/* ---- status, logging ---- */

static bool cred_failed(const struct cred_rt *c) {
    return c->state != CS_CURRENT && c->state != CS_PENDING;
}

/* Logs a failure at `level` the first time and when its text changes; a repeat is
 * logged again after a gap that doubles up to an hour, else at debug. */
static void log_failure(struct cred_rt *c, int level, const char *mid, const char *version,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void log_failure(struct cred_rt *c, int level, const char *mid, const char *version,
                        const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Stored as last_error: scrubbed now, while the secret a module echoed (a candidate
     * under validation) is still live to be found (secret.h). */
    secret_scrub(msg, sizeof msg);
    uint64_t now = now_mono();
    bool repeat = strcmp(msg, text_or_empty(c->logged_error)) == 0;
    if (repeat && now - c->logged_at < c->relog_gap)
        level = LOG_DEBUG;
    else if (repeat) {
        c->relog_gap = c->relog_gap * 2 > RELOG_MAX_USEC ? RELOG_MAX_USEC : c->relog_gap * 2;
        c->logged_at = now;
    } else {
        text_set(&c->logged_error, "%s", msg);
        c->relog_gap = RELOG_MIN_USEC;
        c->logged_at = now;
    }
    struct log_ctx ctx = cred_ctx(c, mid, version);
    log_ctx_msg(level, &ctx, "%s", msg);
    text_set(&c->last_error, "%s", msg);
    c->errors_total++;
}

static void mark_recovered(struct cred_rt *c) {
    if (c->logged_error) {
        struct log_ctx ctx = cred_ctx(c, NULL, c->have_cur ? c->cur.cur.version : NULL);
        log_ctx_msg(LOG_INFO, &ctx, "recovered: %s is current again", c->cfg->name);
    }
    text_clear(&c->logged_error);
    text_clear(&c->last_error);
    text_clear(&c->pending_version);
}

/* A metrics write that fails is a warning, repeated at most every METRICS_RELOG_USEC
 * (the file is rewritten at every change); its recovery is said once. */
static void metrics_written(struct agent *a, const char *path, int r) {
    uint64_t now = now_mono();
    if (r >= 0) {
        if (a->metrics_failed_at)
            log_info("metrics_file %s: written again", path);
        a->metrics_failed_at = 0;
        return;
    }
    if (a->metrics_failed_at && now - a->metrics_failed_at < METRICS_RELOG_USEC) {
        log_debug("metrics_file %s: cannot write: %s", path, strerror(-r));
        return;
    }
    a->metrics_failed_at = now;
    log_warning("metrics_file %s: cannot write: %s (said again every %llu minutes while it "
                "lasts)", path, strerror(-r), (unsigned long long)(METRICS_RELOG_USEC / 60 / USEC_PER_SEC));
}

static void write_metrics(struct agent *a) {
    const char *path = a->cfg->agent.metrics_file;
    if (!path || !path[0])
        return;
    char *copy1 = strdup(path), *copy2 = strdup(path);
    size_t cap = 2048 + a->n_creds * 1024, len = 0;
    char *buf = malloc(cap);
    if (!copy1 || !copy2 || !buf)
        goto out;
#define M(...) do { int n_ = snprintf(buf + len, cap - len, __VA_ARGS__); \
                    if (n_ > 0 && (size_t)n_ < cap - len) len += (size_t)n_; } while (0)
    M("# HELP redis_creds_current 1 when the published credential is the store's latest validated version.\n"
      "# TYPE redis_creds_current gauge\n");
    for (size_t i = 0; i < a->n_creds; i++)
        M("redis_creds_current{name=\"%s\"} %d\n", a->creds[i].cfg->name, a->creds[i].state == CS_CURRENT);
    M("# HELP redis_creds_last_change_timestamp_seconds When the credential was last published.\n"
      "# TYPE redis_creds_last_change_timestamp_seconds gauge\n");
    for (size_t i = 0; i < a->n_creds; i++)
        M("redis_creds_last_change_timestamp_seconds{name=\"%s\"} %lld\n", a->creds[i].cfg->name,
          (long long)a->creds[i].last_change);
    M("# HELP redis_creds_last_check_timestamp_seconds When the store was last checked.\n"
      "# TYPE redis_creds_last_check_timestamp_seconds gauge\n");
    for (size_t i = 0; i < a->n_creds; i++)
        M("redis_creds_last_check_timestamp_seconds{name=\"%s\"} %lld\n", a->creds[i].cfg->name,
          (long long)a->creds[i].last_check);
    M("# HELP redis_creds_errors_total Failed checks (store, Redis or publish).\n"
      "# TYPE redis_creds_errors_total counter\n");
    for (size_t i = 0; i < a->n_creds; i++)
        M("redis_creds_errors_total{name=\"%s\"} %llu\n", a->creds[i].cfg->name,
          (unsigned long long)a->creds[i].errors_total);
    /* Rotation, for the credentials that have it. */
    bool any_rot = false;
    for (size_t i = 0; i < a->n_creds; i++)
        any_rot |= a->creds[i].rot.enabled;
    if (any_rot) {
        M("# HELP redis_creds_rotation_in_progress 1 while an agent-driven rotation is under way "
          "(including its grace period and retries).\n"
          "# TYPE redis_creds_rotation_in_progress gauge\n");
        for (size_t i = 0; i < a->n_creds; i++)
            if (a->creds[i].rot.enabled)
                M("redis_creds_rotation_in_progress{name=\"%s\"} %d\n", a->creds[i].cfg->name,
                  rotation_step_word(&a->creds[i]) != NULL);
        M("# HELP redis_creds_rotation_last_timestamp_seconds When the last rotation completed "
          "(0: never).\n"
          "# TYPE redis_creds_rotation_last_timestamp_seconds gauge\n");
        for (size_t i = 0; i < a->n_creds; i++)
            if (a->creds[i].rot.enabled)
                M("redis_creds_rotation_last_timestamp_seconds{name=\"%s\"} %lld\n",
                  a->creds[i].cfg->name, (long long)(a->creds[i].rot.st ? a->creds[i].rot.st->last_completed : 0));
        M("# HELP redis_creds_rotation_failures_total Failed rotation steps (each is retried).\n"
          "# TYPE redis_creds_rotation_failures_total counter\n");
        for (size_t i = 0; i < a->n_creds; i++)
            if (a->creds[i].rot.enabled)
                M("redis_creds_rotation_failures_total{name=\"%s\"} %llu\n", a->creds[i].cfg->name,
                  (unsigned long long)a->creds[i].rot.failures_total);
    }
#undef M
    int dfd = open(dirname(copy1), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = dfd < 0 ? -errno : credfile_write_atomic(dfd, basename(copy2), buf, len, 0644, (gid_t)-1);
    if (dfd >= 0)
        close(dfd);
    metrics_written(a, path, r);
out:
    free(copy1);
    free(copy2);
    free(buf);
}

static void agent_update_status(struct agent *a) {
    char buf[2048];
    size_t len = 0;
    unsigned current = 0;
    for (size_t i = 0; i < a->n_creds; i++)
        current += a->creds[i].state == CS_CURRENT;
    len += (size_t)snprintf(buf, sizeof buf, "%u/%zu current", current, a->n_creds);
    for (size_t i = 0; i < a->n_creds && len < sizeof buf; i++) {
        const struct cred_rt *c = &a->creds[i];
        const char *v = c->have_cur ? c->cur.cur.version : "none";
        int n;
        if (c->state == CS_CURRENT || c->state == CS_PENDING)
            n = snprintf(buf + len, sizeof buf - len, "; %s %s%s", c->cfg->name, v,
                         c->state == CS_PENDING ? " (pending)" : "");
        else
            n = snprintf(buf + len, sizeof buf - len, "; %s %s (%s%s%s: %.160s)", c->cfg->name, v,
                         cred_state_names[c->state], c->pending_version ? " " : "",
                         text_or_empty(c->pending_version), text_or_empty(c->last_error));
        if (n < 0)
            break;
        len += (size_t)n;
        const char *rot = rotation_step_word(c);
        if (rot && len < sizeof buf) {
            n = snprintf(buf + len, sizeof buf - len, " [rotation: %s]", rot);
            if (n < 0)
                break;
            len += (size_t)n;
        }
    }
    secret_scrub(buf, sizeof buf);   /* texts rotation and re-validation stored, too */
    if (strcmp(buf, a->last_status) != 0) {
        snprintf(a->last_status, sizeof a->last_status, "%s", buf);
        notify_status(buf);
    }
    write_metrics(a);
}

/* READY=1 when every credential's first attempt has ended (docs/design.md §11.1). */
static void check_ready(struct agent *a) {
    if (a->ready_sent)
        return;
    for (size_t i = 0; i < a->n_creds; i++)
        if (!a->creds[i].first_done)
            return;
    a->ready_sent = true;
    a->startup_timer = sd_event_source_disable_unref(a->startup_timer);
    agent_update_status(a);
    notify_ready();
    log_info("ready: %s", a->last_status);
    /* The first round's fetches, validations and publishes are over: give back the free
     * pages they left in every malloc arena (docs/benchmarks.md, memory). */
    malloc_trim(0);
}

static int on_startup_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
    struct agent *a = userdata;
    if (!a->ready_sent) {
        a->ready_sent = true;
        agent_update_status(a);
        notify_ready();
        log_warning("ready after startup_timeout with first attempts still running: %s", a->last_status);
    }
    return 0;
}

static void check_once_done(struct agent *a) {
    if (!a->p.once)
        return;
    for (size_t i = 0; i < a->n_creds; i++)
        if (!a->creds[i].first_done || a->creds[i].sm.check != PH_IDLE)
            return;
    sd_event_exit(a->p.event, 0);
}

/* ---- scheduling ---- */

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
    struct cred_rt *c = userdata;
    c->next_check_mono = 0;
    request_fetch(c);
    return 0;
}

/* sd-event coalesces wake-ups within a timer's accuracy (250 ms by default): fine for a
 * 30 s poll, too coarse for a 1 s retry. 1/50 of the delay, between 1 ms and 250 ms. */
static uint64_t agent_timer_accuracy(uint64_t delay) {
    uint64_t accuracy = delay / 50;
    if (accuracy < USEC_PER_MSEC)
        accuracy = USEC_PER_MSEC;
    if (accuracy > 250 * USEC_PER_MSEC)
        accuracy = 250 * USEC_PER_MSEC;
    return accuracy;
}

/* (Re)arms a one-shot monotonic timer `delay` usec from now, creating it on first use;
 * sd-event may fire it anywhere in [when, when + accuracy]. 0 and *ret_when, or -errno. */
static int agent_arm_timer(sd_event *e, sd_event_source **src, uint64_t delay, uint64_t accuracy,
                           sd_event_time_handler_t cb, void *userdata, uint64_t *ret_when) {
    uint64_t when = now_mono() + delay;
    int r;
    if (*src) {
        r = sd_event_source_set_time(*src, when);
        if (r >= 0)
            r = sd_event_source_set_time_accuracy(*src, accuracy);
        if (r >= 0)
            r = sd_event_source_set_enabled(*src, SD_EVENT_ONESHOT);
    } else
        r = sd_event_add_time(e, src, CLOCK_MONOTONIC, when, accuracy, cb, userdata);
    if (r >= 0)
        *ret_when = when;
    return r;
}

/* Next look in `delay` usec (replacing any earlier schedule), within `accuracy`. */
static void schedule_within(struct cred_rt *c, uint64_t delay, uint64_t accuracy) {
    struct agent *a = c->a;
    if (a->p.once || a->stopping)
        return;
    int r = agent_arm_timer(a->p.event, &c->timer, delay, accuracy, on_timer, c,
                            &c->next_check_mono);
    if (r < 0)
        log_error("%s: cannot schedule the next check: %s", c->cfg->name, strerror(-r));
}

/* Polls and retries. */
static void schedule(struct cred_rt *c, uint64_t delay) {
    schedule_within(c, delay, agent_timer_accuracy(delay));
}

/* ---- expiry ----
 * A published credential that expires (an Entra token) gets one timer on the loop: a
 * warning ("credential expiring") when it is close to its end and nothing has replaced
 * it, then an error when it has expired. Close = 5 minutes before, or the last fifth of
 * its published life when that is shorter (a token refreshed at 70% of its life has had
 * 10% of it to be replaced). Re-armed at every publish; the expiry (unix seconds) becomes
 * a monotonic deadline when armed. */

#define EXPIRY_WARN_MAX_USEC (5 * 60 * USEC_PER_SEC)

static void expiry_at(struct cred_rt *c, int64_t at_real_usec, int stage);

static int on_expiry(sd_event_source *s, uint64_t usec, void *userdata) {
    struct cred_rt *c = userdata;
    int64_t exp = c->cur.cur.expires_at, now = now_real();
    char left[64];

    if (!c->have_cur || exp == RC_NO_EXPIRY)
        return 0;
    struct log_ctx ctx = cred_ctx(c, LOG_MID_EXPIRING, c->cur.cur.version);
    const char *why = c->last_error ? c->last_error : "the store has no newer version";
    if (now < exp && c->expiry_stage < 1) {
        c->expiry_stage = 1;
        duration_format((uint64_t)(exp - now) * USEC_PER_SEC, left, sizeof left);
        log_ctx_msg(LOG_WARNING, &ctx, "%s: the published version %s expires in %s and nothing "
                    "has replaced it yet (%s)", c->cfg->name, c->cur.cur.version, left, why);
        expiry_at(c, exp * 1000000, 1);
    } else if (now >= exp && c->expiry_stage < 2) {
        c->expiry_stage = 2;
        duration_format((uint64_t)(now - exp) * USEC_PER_SEC, left, sizeof left);
        log_ctx_msg(LOG_ERR, &ctx, "%s: the published version %s has expired (%s ago) and "
                    "nothing has replaced it: clients using it will be refused (%s)",
                    c->cfg->name, c->cur.cur.version, left, why);
    } else if (now < exp)
        expiry_at(c, exp * 1000000, c->expiry_stage);   /* woken early (clock stepped) */
    return 0;
}

/* Wakes on_expiry at unix time at_real_usec (now if that has passed). */
static void expiry_at(struct cred_rt *c, int64_t at_real_usec, int stage) {
    int64_t now = rctime_real_usec();
    uint64_t when;

    c->expiry_stage = stage;
    int r = agent_arm_timer(c->a->p.event, &c->expiry_timer,
                            at_real_usec > now ? (uint64_t)(at_real_usec - now) : 0,
                            USEC_PER_MSEC, on_expiry, c, &when);
    if (r < 0)
        log_error("%s: cannot watch the credential's expiry: %s", c->cfg->name, strerror(-r));
}

/* After a publish (stage 0), an adoption (0) or a reload (what was said already): watch
 * what is published now. */
static void arm_expiry(struct cred_rt *c, int stage) {
    int64_t exp = c->have_cur ? c->cur.cur.expires_at : RC_NO_EXPIRY;

    if (exp == RC_NO_EXPIRY || c->a->p.once || stage >= 2) {
        if (c->expiry_timer)
            sd_event_source_set_enabled(c->expiry_timer, SD_EVENT_OFF);
        c->expiry_stage = exp == RC_NO_EXPIRY ? 0 : stage;
        return;
    }
    if (stage == 1) {
        expiry_at(c, exp * 1000000, 1);
        return;
    }
    int64_t life = exp - c->cur.published_at, margin = life * 1000000 / 5;
    if (margin > (int64_t)EXPIRY_WARN_MAX_USEC)
        margin = (int64_t)EXPIRY_WARN_MAX_USEC;
    if (margin < 1000000)
        margin = 1000000;
    expiry_at(c, exp * 1000000 - margin, 0);
}

static uint64_t retry_delay(struct cred_rt *c) {
    uint64_t cap = c->cfg->poll_interval_usec < RETRY_MAX_USEC ? c->cfg->poll_interval_usec : RETRY_MAX_USEC;
    if (cap < RETRY_MIN_USEC)
        cap = RETRY_MIN_USEC;
    c->retry.max_usec = cap;
    return backoff_next(&c->retry, backoff_random());
}

/* The machine's CHECK_ENDED (a rotation asked for meanwhile, and a wake-up, are its own
 * effects). */
static void check_ended(struct cred_rt *c) {
    c->first_done = true;
    c->last_check = now_real();
    agent_update_status(c->a);
    check_ready(c->a);
    check_once_done(c->a);
}

/* ---- jobs ---- */

static void fetch_run(struct job *j) {
    struct cred_job *cj = (struct cred_job *)j;
    struct cred_rt *c = cj->c;
    const struct rc_source_type *t = c->src->type;
    for (size_t i = 0; i < RC_MAX_CANDIDATES; i++)
        cj->cands[i] = (struct rc_candidate){ .expires_at = RC_NO_EXPIRY, .rotated_at = INT64_MIN };
    memset(&cj->err, 0, sizeof cj->err);
    cj->n_cands = t->fetch(c->src->state, &cj->rc, cj->cands, &cj->err);
    if (cj->n_cands == 0 || cj->n_cands > RC_MAX_CANDIDATES || (cj->n_cands > 0 && !cj->cands[0].password)) {
        /* A plugin bug; never let it through as a credential. */
        rc_error_set(&cj->err, RC_ERR_INVALID, "source returned %d candidate(s) without a password", cj->n_cands);
        cj->n_cands = cj->n_cands > RC_MAX_CANDIDATES ? RC_MAX_CANDIDATES : cj->n_cands;
        for (int i = 0; i < cj->n_cands; i++) {
            free(cj->cands[i].username);
            secret_free(cj->cands[i].password);
        }
        memset(cj->cands, 0, sizeof cj->cands);
        cj->n_cands = -1;
    }
    cj->next_check_usec = cj->n_cands > 0 && t->next_check ? t->next_check(c->src->state, &cj->rc) : 0;
}

static void validate_run(struct job *j) {
    struct cred_job *cj = (struct cred_job *)j;
    for (int i = 0; i < (cj->check_second ? 2 : 1); i++)
        validate_candidate(&cj->c->cfg->redis, cj->cands[i].username, cj->cands[i].password,
                           cj->cur_username, cj->cur_password, &cj->vres[i]);
}

static void candidate_clear(struct rc_candidate *cand) {
    free(cand->username);
    cand->username = NULL;
    cand->password = secret_free(cand->password);
}

/* Ends c's check job (its candidates wiped, the job freed): it lives only from RUN_FETCH
 * to the check's end, so an idle credential holds none (docs/benchmarks.md, memory). */
static void job_clear(struct cred_rt *c) {
    struct cred_job *cj = c->job;
    if (!cj)
        return;
    for (size_t i = 0; i < RC_MAX_CANDIDATES; i++)
        candidate_clear(&cj->cands[i]);
    free(cj->cur_username);
    secret_free(cj->cur_password);
    free(cj);
    c->job = NULL;
}


static void fetch_done(struct job *j);
static void validate_done(struct job *j);
static void dispatch_source(struct source_rt *s);
static void store_failed(struct cred_rt *c, const struct rc_error *err);

/* The machine's RUN_FETCH. */
static void run_fetch(struct cred_rt *c) {
    job_clear(c);
    struct cred_job *cj = c->job = calloc(1, sizeof *cj);
    if (!cj) {
        /* Failed like a fetch; the machine's CSM_FETCH_DONE is carried out by drive(). */
        struct rc_error err = { 0 };
        rc_error_set(&err, RC_ERR_TRANSIENT, "out of memory for the fetch");
        srcq_done(c->src->q, &c->fetch_op);
        dispatch_source(c->src);
        rotation_fetch_failed(c, &err);
        store_failed(c, &err);
        cred_event(c, (struct credsm_event){ .type = CSM_FETCH_DONE, .fetch = CSM_FR_ERROR });
        return;
    }
    cj->c = c;
    cj->rc.name = c->cfg->name;
    cj->rc.node = plugins_node(&c->cfg->node);
    cj->job.run = fetch_run;
    cj->job.done = fetch_done;
    c->jobs_out++;
    worker_pool_submit(c->a->p.pool, &cj->job);
}

/* Check c's store now (or when its running check / a rotation step ends). */
static void request_fetch(struct cred_rt *c) {
    if (c->a->stopping)
        return;
    if (c->src->open_error[0] && c->sm.check == PH_IDLE && !credsm_holds_check(&c->sm)) {
        c->state = CS_STORE_ERROR;
        c->last_class = RC_ERR_FATAL;
        text_set(&c->last_error, "source %s: %s", c->src->cfg->name, c->src->open_error);
        check_ended(c);
        return;
    }
    cred_event(c, (struct credsm_event){ .type = CSM_WAKE });
    drive(c);
}

/* The credential an operation of a source's queue belongs to. */
#define CRED_OF(op, member) ((struct cred_rt *)(void *)((char *)(op) - offsetof(struct cred_rt, member)))

/* Starts the queued store operations of source s that its queue lets run. */
static void dispatch_source(struct source_rt *s) {
    struct agent *a = s->a;
    struct srcq_op *op;
    if (a->reload_pending || a->stopping || !s->q)
        return;   /* a reload waits for the rotations' steps; the queue keeps the operations */
    while ((op = srcq_next(s->q))) {
        bool rot = op->cls == SRCQ_ROTATION;
        struct cred_rt *c = rot ? CRED_OF(op, rot.store_op) : CRED_OF(op, fetch_op);
        if (cred_event(c, (struct credsm_event){ .type = rot ? CSM_ROT_STORE_START : CSM_FETCH_START }) < 0) {
            srcq_done(s->q, op);   /* cannot happen: the machine queued it */
            continue;
        }
        drive(c);
    }
}

/* How many store operations an instance of type t runs at once. */
static unsigned source_op_limit(const struct rc_source_type *t) {
    (void)t;
    /* PLUGIN DECLARATION GOES HERE: once plugin.h (ABI 3) lets a type declare how many
     * calls an instance takes at once, return that (>= 1). Until then every plugin is
     * called one operation at a time per instance, as plugin.h promises them. */
    return SRCQ_DEFAULT_LIMIT;
}


static void store_failed(struct cred_rt *c, const struct rc_error *err) {
    static const char *const mids[] = {
        [RC_ERR_TRANSIENT] = LOG_MID_STORE_UNREACHABLE,
    };
    const char *mid = err->cls == RC_ERR_TRANSIENT ? mids[RC_ERR_TRANSIENT] : LOG_MID_STORE_ERROR;
    c->state = CS_STORE_ERROR;
    c->last_class = err->cls;
    const char *cls = rc_err_class_to_string(err->cls);
    log_failure(c, LOG_WARNING, mid, NULL, "store %s (%s): %s%s", c->cfg->source, cls ? cls : "?",
                err->message, c->have_cur ? "; keeping the published credential" : "");
    switch (err->cls) {
    case RC_ERR_TRANSIENT: {
        uint64_t d = retry_delay(c);
        schedule(c, err->retry_after_usec > d ? err->retry_after_usec : d);
        break;
    }
    case RC_ERR_FATAL:
        break;   /* until SIGHUP or refresh */
    default:
        schedule(c, c->cfg->poll_interval_usec);
        break;
    }
}

/* Look again after a good check: at poll_interval, or earlier when the source asked (a
 * token's refresh point, a static role's ttl). A time the source asked for is a moment
 * when something changes, so it is kept to the millisecond, not coalesced: a look
 * scheduled 10 s ahead would otherwise be allowed to fire up to 200 ms late. */
static void schedule_look(struct cred_rt *c, uint64_t next_check_usec) {
    if (next_check_usec && next_check_usec < c->cfg->poll_interval_usec)
        schedule_within(c, next_check_usec, USEC_PER_MSEC);
    else
        schedule(c, c->cfg->poll_interval_usec);
}

static void cred_sync_formats(struct agent *a, struct cred_rt *c, bool at_start);

/* The store (or the accepted peer) has what we publish: nothing to write. */
static void still_current(struct cred_rt *c, const char *version, uint64_t next_check_usec) {
    bool was_failed = cred_failed(c);
    c->state = CS_CURRENT;
    if (was_failed)
        mark_recovered(c);
    text_clear(&c->pending_version);
    backoff_reset(&c->retry);
    log_ctx_msg(LOG_DEBUG, &(struct log_ctx){ .name = c->cfg->name, .version = version },
                "version %s unchanged", version);
    if (c->formats_stale)   /* the store says the adopted version is current after all */
        cred_sync_formats(c->a, c, false);
    schedule_look(c, next_check_usec);
}

/* The fetch's check ends as r says (NEW: it goes on to validation); then a reload that
 * waited for the job. */
static void fetch_ended(struct cred_rt *c, enum credsm_fetch_result r) {
    struct agent *a = c->a;
    cred_event(c, (struct credsm_event){ .type = CSM_FETCH_DONE, .fetch = r });
    drive(c);
    agent_maybe_reload(a);   /* last: it may replace every credential, c included */
}

/* Whether the store's offer (version, and its peer's) is what c publishes. */
static bool offer_published(const struct cred_rt *c, const char *version, const char *peer) {
    return c->have_cur && credsm_published(c->cur.cur.version, c->cur.has_previous ? c->cur.prev.version : NULL,
                                           version, peer);
}

/* The check ends as r says with what is published kept (current: it is what the store
 * has), and the next look as usual. */
static void fetch_kept(struct cred_rt *c, struct cred_job *cj, bool current, enum credsm_fetch_result r) {
    if (current)
        still_current(c, c->cur.cur.version, cj->next_check_usec);
    else
        schedule_look(c, cj->next_check_usec);
    job_clear(c);
    fetch_ended(c, r);
}

static void fetch_done(struct job *j) {
    struct cred_job *cj = (struct cred_job *)j;
    struct cred_rt *c = cj->c;
    srcq_done(c->src->q, &c->fetch_op);
    dispatch_source(c->src);   /* (a kept source's queue: the next generation's operations) */
    if (retired_job_done(c))
        return;

    if (c->a->stopping) {
        job_clear(c);
        fetch_ended(c, CSM_FR_ERROR);
        return;
    }
    if (cj->n_cands < 0) {
        rotation_fetch_failed(c, &cj->err);
        store_failed(c, &cj->err);
        job_clear(c);   /* a recovery still tries the published previous: */
        fetch_ended(c, reval_take_fetched(c, NULL, -1) == REVAL_TAKE_RECOVER ? CSM_FR_RECOVER : CSM_FR_ERROR);
        return;
    }

    struct rc_candidate *cand = &cj->cands[0];
    rotation_fetched(c, cand);   /* the fleet clock, and a schedule that waited for a fetch */
    enum rot_take take = rotation_take_fetched(c, cj->cands, cj->n_cands);
    if (take != ROT_TAKE_NONE) {
        /* A rotation goes on with the new password the store holds, or holds what it
         * published. */
        fetch_kept(c, cj, take == ROT_TAKE_UNCHANGED, take == ROT_TAKE_TAKEN ? CSM_FR_TAKEN : CSM_FR_SAME);
        return;
    }
    /* Re-validation (reval.h): a recovery takes the candidates, and the version Redis
     * refused is not judged again while the store offers it (no flap). */
    enum reval_take rv = reval_take_fetched(c, cj->cands, cj->n_cands);
    if (rv != REVAL_TAKE_NONE) {
        fetch_kept(c, cj, rv == REVAL_TAKE_CURRENT, rv == REVAL_TAKE_RECOVER ? CSM_FR_RECOVER : CSM_FR_SAME);
        return;
    }
    /* A peer (the other access key) is part of what is published, as `previous`: a
     * regenerated peer is a change even when the preferred key is not. */
    const char *peer = cj->n_cands > 1 && cj->cands[1].role == RC_CAND_PEER ? cj->cands[1].version : NULL;
    if (offer_published(c, cand->version, peer)) {
        /* The store has what we publish: nothing to do. */
        still_current(c, cand->version, cj->next_check_usec);
        job_clear(c);
        fetch_ended(c, CSM_FR_SAME);
        return;
    }

    text_set(&c->pending_version, "%s", cand->version);
    if (c->cfg->redis.validate == VALIDATE_NONE) {
        publish(c, cand, NULL, "none", true);
        schedule_look(c, cj->next_check_usec);
        job_clear(c);
        fetch_ended(c, CSM_FR_JUDGED);
        return;
    }

    /* Validate off the loop; hand the worker copies of the current credential so it
     * can tell whether it still works (docs/design.md §7, unreachable nodes). */
    if (c->have_cur) {
        cj->cur_username = c->cur.cur.username ? strdup(c->cur.cur.username) : NULL;
        cj->cur_password = secret_dup(c->cur.cur.password);
    }
    /* A PEER is always judged with the candidate; a HINT (the store's prior version) only
     * matters when there is no published file to take `previous` from. */
    cj->check_second = cj->n_cands > 1 &&
                       (cj->cands[1].role == RC_CAND_PEER || (cj->cands[1].role == RC_CAND_HINT && !c->have_cur));
    log_ctx_msg(LOG_DEBUG, &(struct log_ctx){ .name = c->cfg->name, .version = cand->version },
                "new version %s: validating against %zu endpoint(s)", cand->version,
                c->cfg->redis.n_endpoints);
    fetch_ended(c, CSM_FR_NEW);   /* the machine's RUN_VALIDATE */
}

static void validate_ended(struct cred_rt *c) {
    struct agent *a = c->a;
    cred_event(c, (struct credsm_event){ .type = CSM_VALIDATE_DONE });
    drive(c);
    agent_maybe_reload(a);   /* last: it may replace every credential, c included */
}

static void validate_done(struct job *j) {
    struct cred_job *cj = (struct cred_job *)j;
    struct cred_rt *c = cj->c;
    if (retired_job_done(c))
        return;
    struct agent *a = c->a;
    const struct validate_result *v = &cj->vres[0];
    struct rc_candidate *cand = &cj->cands[0], *second = cj->check_second ? &cj->cands[1] : NULL;
    bool second_ok = second && cj->vres[1].outcome == VALIDATE_PUBLISH;

    if (a->stopping) {
        job_clear(c);
        validate_ended(c);
        return;
    }
    const char *policy = validate_policy_to_string(c->cfg->redis.validate);
    if (v->outcome != VALIDATE_PUBLISH && second_ok && second->role == RC_CAND_PEER) {
        /* The preferred candidate fails but its peer works: publish the peer (the
         * other access key), unless that is what is published already. */
        text_set(&c->nodes, "%s", cj->vres[1].nodes);
        if (c->have_cur && credsm_published(c->cur.cur.version, NULL, second->version, NULL))
            still_current(c, second->version, 0);
        else
            publish(c, second, NULL, policy, true);
        schedule_look(c, cj->next_check_usec);
        job_clear(c);
        validate_ended(c);
        return;
    }
    text_set(&c->nodes, "%s", v->nodes);
    const char *ver = cand->version;
    switch (v->outcome) {
    case VALIDATE_PUBLISH:
        if (offer_published(c, cand->version, second_ok && second->role == RC_CAND_PEER ? second->version : NULL))
            still_current(c, cand->version, cj->next_check_usec);   /* only an unusable peer changed */
        else
            publish(c, cand, second_ok ? second : NULL, policy, true);   /* new current, or new peer */
        break;
    case VALIDATE_REFUSED:
        c->state = CS_REFUSED;
        log_failure(c, LOG_WARNING, LOG_MID_VALIDATION_REFUSED, ver,
                    "candidate version %s refused by Redis (%u/%u nodes refused: %s); keeping %s",
                    ver, v->refused, v->total, v->detail,
                    c->have_cur ? c->cur.cur.version : "nothing published");
        schedule(c, retry_delay(c));
        break;
    case VALIDATE_UNREACHABLE:
        c->state = CS_UNREACHABLE;
        log_failure(c, LOG_WARNING, LOG_MID_REDIS_UNREACHABLE, ver,
                    "cannot validate version %s: Redis unreachable (%u/%u nodes: %s); keeping %s",
                    ver, v->unreachable, v->total, v->detail,
                    c->have_cur ? c->cur.cur.version : "nothing published");
        schedule(c, retry_delay(c));
        break;
    case VALIDATE_MISCONFIGURED:
        c->state = CS_MISCONFIGURED;
        log_failure(c, LOG_ERR, LOG_MID_VALIDATION_REFUSED, ver,
                    "cannot validate version %s: Redis has no password configured (%s)", ver, v->detail);
        schedule(c, retry_delay(c));
        break;
    case VALIDATE_ERROR:
        c->state = CS_REDIS_ERROR;
        log_failure(c, LOG_WARNING, LOG_MID_VALIDATION_REFUSED, ver,
                    "cannot validate version %s: unexpected reply from Redis (%s)", ver, v->detail);
        schedule(c, retry_delay(c));
        break;
    }
    if (v->outcome == VALIDATE_PUBLISH)
        schedule_look(c, cj->next_check_usec);
    job_clear(c);
    validate_ended(c);
}

/* ---- runtime_dir deleted or moved away ---- */

static int on_runtime_dir_event(sd_event_source *s, const struct inotify_event *ev, void *userdata);

/* Watches runtime_dir's parent for runtime_dir's removal or renaming: the directory's own
 * IN_DELETE_SELF waits until its last fd is closed, and we hold one. Once, at start. */
static void runtime_watch(struct agent *a) {
    char *copy = strdup(a->p.runtime->dir);
    int r = copy ? sd_event_add_inotify(a->p.event, &a->runtime_watch, dirname(copy),
                                        IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR, on_runtime_dir_event, a)
                 : -ENOMEM;
    if (r < 0)
        log_warning("runtime_dir %s: cannot watch its directory (%s); its removal is noticed at "
                    "the next publish", a->p.runtime->dir, strerror(-r));
    free(copy);
}

/* Republishes what every credential has published, into a new runtime_dir. */
static unsigned republish_all(struct agent *a) {
    unsigned n = 0;
    for (size_t i = 0; i < a->n_creds; i++) {
        struct cred_rt *c = &a->creds[i];
        char e[512];
        if (!c->have_cur)
            continue;
        if (runtime_sync_formats(a->p.runtime, &c->cur, c->cfg->formats, (mode_t)c->cfg->mode, c->gid,
                                 NULL, e, sizeof e) < 0)
            log_ctx_msg(LOG_ERR, &(struct log_ctx){ .name = c->cfg->name }, "%s", e);
        else
            n++;
    }
    return n;
}

/* When runtime_dir was deleted or moved away: creates it again with its mode and group,
 * takes the lock again and republishes every credential. Where it cannot be created (its
 * parent is read-only, as under ProtectSystem=strict where only the RuntimeDirectory=
 * mount was writable), the agent exits 1, so that systemd makes the directory again and
 * restarts it, and the restart republishes. false when the agent is exiting. */
static bool runtime_recover(struct agent *a) {
    struct runtime *rt = a->p.runtime;
    struct log_ctx ctx = { .message_id = LOG_MID_RUNTIME_DIR_LOST };
    char err[512];
    if (!runtime_lost(rt))
        return true;
    int r = runtime_reopen(rt, err, sizeof err);
    if (r < 0) {
        log_ctx_msg(LOG_ERR, &ctx, "runtime_dir %s was deleted or moved away, and cannot be "
                    "created again (%s): exiting, so that the service manager recreates it "
                    "(RuntimeDirectory=) and restarts the agent, which then republishes",
                    rt->dir, err);
        agent_stop(a);
        sd_event_exit(a->p.event, r);   /* negative: the agent exits 1 */
        return false;
    }
    r = runtime_set_dir_mode(rt, a->gid, a->dir_mixed);
    if (r < 0)
        log_warning("runtime_dir %s: cannot set mode and group: %s", rt->dir, strerror(-r));
    unsigned n = republish_all(a);
    log_ctx_msg(LOG_WARNING, &ctx, "runtime_dir %s was deleted or moved away: created it again, "
                "locked it and republished %u credential(s)", rt->dir, n);
    return true;
}

static int on_runtime_dir_event(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
    struct agent *a = userdata;
    const char *base = strrchr(a->p.runtime->dir, '/');
    if (!a->stopping && ev->len && base && strcmp(ev->name, base + 1) == 0)
        runtime_recover(a);
    return 0;
}

/* After a publish: c->cur holds the new file. The state, timers, log line and hooks. */
static void published(struct cred_rt *c, const char *validated) {
    struct agent *a = c->a;
    bool was_failed = cred_failed(c);
    c->state = CS_CURRENT;
    if (was_failed)
        mark_recovered(c);
    text_clear(&c->pending_version);
    c->last_change = c->cur.published_at;
    backoff_reset(&c->retry);
    arm_expiry(c, 0);

    struct log_ctx ctx = cred_ctx(c, LOG_MID_PUBLISHED, c->cur.cur.version);
    log_ctx_msg(LOG_INFO, &ctx, "published %s version %s (validated: %s%s%s)", c->cfg->name,
                c->cur.cur.version, validated, c->nodes && strcmp(validated, "none") ? ", " : "",
                strcmp(validated, "none") ? text_or_empty(c->nodes) : "");
    if (c->cfg->on_change) {
        char file[4200];
        snprintf(file, sizeof file, "%s/%s.json", a->p.runtime->dir, c->cfg->name);
        hooks_run(a->p.event, c->cfg->on_change, c->cfg->on_change_timeout_usec, c->cfg->name,
                  c->cur.cur.version, file);
    }
}

/* Publishes cand (moved into the credential on success). `previous` is prev when given (a
 * peer or hint that validated), else the credential published until now. On failure the
 * credential's state says why, and retry: its next check is scheduled after a backoff
 * (a rotation arms its own retry instead). 0, or -errno. */
static int publish(struct cred_rt *c, struct rc_candidate *cand, struct rc_candidate *prev,
                   const char *validated, bool retry) {
    struct agent *a = c->a;
    const char *path = config_node_string(&c->cfg->node, "path");
    char source[512], err[512] = "";
    struct credfile cf = { 0 };
    int r = -ENOMEM;

    if (!runtime_recover(a))
        return -ESHUTDOWN;   /* exiting: the restart publishes */
    snprintf(source, sizeof source, "%s%s%s", c->cfg->source, path ? ":" : "", path ? path : "");
    cf.name = strdup(c->cfg->name);
    cf.source = strdup(source);
    cf.validated = strdup(validated);
    cf.published_at = now_real();
    cf.cur.username = cand->username;   /* moved below on success */
    cf.cur.password = cand->password;
    cf.cur.version = strdup(cand->version);
    cf.cur.expires_at = cand->expires_at;   /* plugin.h's "none" is RC_NO_EXPIRY */
    if (prev) {
        cf.has_previous = true;   /* borrowed until success */
        cf.prev = (struct cred_value){ .username = prev->username, .password = prev->password,
                                       .version = prev->version, .expires_at = prev->expires_at };
    } else if (c->have_cur && !reval_previous_refused(c)) {   /* never one Redis refused */
        cf.has_previous = true;
        cf.prev = c->cur.cur;   /* borrowed until success */
    }
    /* A version a rotation made: `previous` stops working when its grace ends. */
    if (cf.has_previous && cand->rotated_at != INT64_MIN && c->cfg->rotation.enabled) {
        cf.has_previous_valid_until = true;
        cf.previous_valid_until = rotation_previous_valid_until(c, cand->rotated_at);
    }
    if (cf.name && cf.source && cf.validated && cf.cur.version) {
        mode_t mode = (mode_t)c->cfg->mode;
        r = runtime_publish(a->p.runtime, &cf, c->cfg->formats, mode, c->gid, err, sizeof err);
    }
    if (r < 0) {
        cf.cur.username = NULL;
        cf.cur.password = NULL;
        cf.has_previous = false;
        memset(&cf.prev, 0, sizeof cf.prev);
        credfile_clear(&cf);
        c->state = CS_PUBLISH_ERROR;
        log_failure(c, LOG_ERR, LOG_MID_STORE_ERROR, cand->version, "cannot publish version %s: %s",
                    cand->version, err[0] ? err : strerror(-r));
        if (retry)
            schedule(c, retry_delay(c));
        return r;
    }
    /* Success: cf owns the candidate and its previous value. */
    cand->username = NULL;
    cand->password = NULL;
    if (prev) {
        /* cf.prev points into prev: give cf its own copy of the version string. */
        cf.prev.version = strdup(prev->version);
        prev->username = NULL;
        prev->password = NULL;
        if (!cf.prev.version) {
            cred_value_clear(&cf.prev);
            cf.has_previous = false;
        }
    } else if (cf.has_previous) {
        c->cur.cur = (struct cred_value){ 0 };
    }
    credfile_clear(&c->cur);
    reval_after_publish(c);
    c->cur = cf;
    c->have_cur = true;
    c->formats_stale = false;
    published(c, validated);
    return 0;
}

/* ---- the rotation's effects ---- */

static int on_rot_timer(sd_event_source *es, uint64_t usec, void *userdata) {
    struct cred_rt *c = userdata;
    rotation_timer(c);
    drive(c);
    return 0;
}

/* The machine's ROT_ARM: the timer of the step it is in (NONE: the schedule). */
static void rot_arm(struct cred_rt *c) {
    struct agent *a = c->a;
    uint64_t delay = c->rot.arm_delay;
    if (a->p.once || a->stopping)
        return;
    c->rot.timer_kind = c->sm.rot == RS_GRACE ? RT_GRACE : c->sm.rot == RS_RETRY_WAIT ? RT_RETRY
                        : c->sm.rot == RS_WATCH ? RT_WATCH : c->sm.rot == RS_DRAINING ? RT_DRAIN : RT_DUE;
    /* The schedule keeps the splay's millisecond grain (docs/design.md §9.6): with 1/50
     * of the delay, the due times of a fleet's hosts would fire together, late. */
    uint64_t accuracy = c->rot.timer_kind == RT_DUE ? 1000 : agent_timer_accuracy(delay);
    int r = agent_arm_timer(a->p.event, &c->rot.timer, delay, accuracy, on_rot_timer, c,
                            &c->rot.timer_mono);
    if (r < 0)
        log_error("%s: cannot schedule the rotation: %s", c->cfg->name, strerror(-r));
}

/* Every rotation step's done(): the store step's slot is freed, the step's finish runs
 * (rotation.c), its effects, then a reload that waited for the job. */
static void rot_job_done(struct job *jb) {
    struct rot_job *j = (struct rot_job *)jb;
    struct cred_rt *c = j->c;
    struct agent *a = c->a;
    a->rot_jobs--;
    if (c->rot.store_op.state == SRCQ_OP_RUNNING) {
        srcq_done(c->src->q, &c->rot.store_op);
        dispatch_source(c->src);
    }
    if (retired_job_done(c))
        return;
    rotation_job_done(c);
    drive(c);
    agent_maybe_reload(a);   /* last: it may replace every credential, c included */
}

/* The machine's ROT_PUBLISH. A failure is the rotation's to retry (one timer). */
static void rot_publish(struct cred_rt *c) {
    struct rc_candidate cand = rotation_candidate(c);
    int r = publish(c, &cand, NULL, validate_policy_to_string(c->cfg->redis.validate), false);
    free(cand.username);              /* NULL when publish() took them */
    secret_free(cand.password);
    rotation_published(c, r);
}

/* ---- the machine's effects ---- */

static void run_validate(struct cred_rt *c) {
    c->job->job.run = validate_run;
    c->job->job.done = validate_done;
    c->jobs_out++;
    worker_pool_submit(c->a->p.pool, &c->job->job);
}

/* ---- re-validation's effects (reval.h) ---- */

/* A replacement for a refused credential: published with no `previous`. */
static int reval_publish(struct cred_rt *c, struct rc_candidate *cand) {
    return publish(c, cand, NULL, validate_policy_to_string(c->cfg->redis.validate), true);
}

static void reval_done(struct job *j) {
    struct cred_rt *c = reval_job_cred(j);
    if (retired_job_done(c))
        return;
    reval_job_done(c, reval_publish);
    drive(c);
    agent_maybe_reload(c->a);   /* last: it may replace every credential, c included */
}

/* The machine's RUN_REVALIDATE. */
static void run_revalidate(struct cred_rt *c) {
    struct job *j = reval_job(c);
    if (!j)
        return;
    j->done = reval_done;
    c->jobs_out++;
    worker_pool_submit(c->a->p.pool, j);
}

static int on_reval_timer(sd_event_source *s, uint64_t usec, void *userdata) {
    struct cred_rt *c = userdata;
    reval_timer(c);
    drive(c);
    return 0;
}

static void run_rotation_step(struct cred_rt *c) {
    c->rot.job->job.done = rot_job_done;
    c->jobs_out++;
    c->a->rot_jobs++;
    worker_pool_submit(c->a->p.pool, &c->rot.job->job);
}

/* Carries out what c's machine asked for, until it asks for nothing more (an effect may
 * feed the machine again: a rotation's step, a queue that starts a fetch). */
static void drive(struct cred_rt *c) {
    while (c->fx.mask) {
        struct credsm_fx fx = c->fx;
        c->fx = (struct credsm_fx){ 0 };
        if (fx.mask & CSM_FX_CHECK_ENDED)
            check_ended(c);
        if (fx.mask & CSM_FX_ROT_BEGIN)
            rotation_begin(c, fx.manual);
        if (fx.mask & CSM_FX_QUEUE_FETCH)
            srcq_push(c->src->q, &c->fetch_op, SRCQ_FETCH);
        if (fx.mask & CSM_FX_ROT_QUEUE_STORE)
            srcq_push(c->src->q, &c->rot.store_op, SRCQ_ROTATION);
        if (fx.mask & (CSM_FX_QUEUE_FETCH | CSM_FX_ROT_QUEUE_STORE | CSM_FX_DISPATCH))
            dispatch_source(c->src);
        if (fx.mask & CSM_FX_RUN_FETCH)
            run_fetch(c);
        if (fx.mask & CSM_FX_RUN_VALIDATE)
            run_validate(c);
        if (fx.mask & CSM_FX_RUN_REVALIDATE)
            run_revalidate(c);
        if (fx.mask & CSM_FX_ROT_RUN)
            run_rotation_step(c);
        if (fx.mask & CSM_FX_ROT_ARM)
            rot_arm(c);
        if (fx.mask & CSM_FX_ROT_PUBLISH)
            rot_publish(c);
        if (fx.mask & CSM_FX_STATUS)
            agent_update_status(c->a);
    }
}

/* ---- sources ---- */

static int on_watch(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
    struct source_rt *s = userdata;
    s->type->watch_event(s->state);
    return 0;
}

static void sources_close(struct source_rt *sources, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (sources[i].moved)
            continue;   /* open in the next generation */
        free(sources[i].q);
        sd_event_source_disable_unref(sources[i].watch);
        if (sources[i].state)
            sources[i].type->close(sources[i].state);
        free(sources[i].host);
    }
    free(sources);
}

static void creds_free(struct cred_rt *creds, size_t n) {
    for (size_t i = 0; i < n; i++) {
        sd_event_source_disable_unref(creds[i].timer);
        sd_event_source_disable_unref(creds[i].expiry_timer);
        rotation_clear(&creds[i]);
        reval_clear(&creds[i]);
        job_clear(&creds[i]);
        credfile_clear(&creds[i].cur);
        text_clear(&creds[i].last_error);
        text_clear(&creds[i].pending_version);
        text_clear(&creds[i].logged_error);
        text_clear(&creds[i].nodes);
        text_clear(&creds[i].rot.last_error);
    }
    free(creds);
}

/* The credentials of cfg that source i serves, as open() takes them (the caller frees);
 * *ret_n is their number. NULL when out of memory. */
static struct rc_credential *source_credentials(const struct config *cfg, size_t i, size_t *ret_n) {
    size_t n = 0;
    for (size_t k = 0; k < cfg->n_credentials; k++)
        n += cfg->credentials[k].source_index == i;
    struct rc_credential *rcs = calloc(n ? n : 1, sizeof *rcs);
    if (!rcs)
        return NULL;
    n = 0;
    for (size_t k = 0; k < cfg->n_credentials; k++)
        if (cfg->credentials[k].source_index == i)
            rcs[n++] = (struct rc_credential){ .name = cfg->credentials[k].name,
                                               .node = plugins_node(&cfg->credentials[k].node) };
    *ret_n = n;
    return rcs;
}

/* Opens source i of cfg into s (s->a and s->cfg set); a failure is left in s->open_error. */
static void open_source(struct agent *a, struct config *cfg, size_t i, struct source_rt *s) {
    const struct config_source *cs = &cfg->sources[i];
    char e[512];
    size_t n = 0;
    struct rc_credential *rcs = NULL;
    s->opened_cfg = cfg;
    int r = plugins_find_type(a->p.plugins, cfg->agent.plugin_dir, cs->type, &s->type, e, sizeof e);
    if (r < 0) {
        snprintf(s->open_error, sizeof s->open_error, "%s", e);
        return;
    }
    s->host = calloc(1, sizeof *s->host);
    if (!s->host || !(rcs = source_credentials(cfg, i, &n))) {
        snprintf(s->open_error, sizeof s->open_error, "out of memory");
        return;
    }
    *s->host = (struct rc_host){ .h = s, .instance = cs->name, .log = host_log,
                                 .keyed_version = host_keyed_version, .wake = host_wake };
    struct rc_error rerr = { 0 };
    if (s->type->open(s->host, plugins_node(&cs->node), rcs, n, &s->state, &rerr) < 0) {
        snprintf(s->open_error, sizeof s->open_error, "%s", rerr.message);
        s->state = NULL;
        log_ctx_msg(LOG_ERR, &(struct log_ctx){ .message_id = LOG_MID_STORE_ERROR, .source = cs->name },
                    "source %s: cannot open: %s", cs->name, rerr.message);
    }
    free(rcs);
    int fd = s->state && s->type->watch_fd ? s->type->watch_fd(s->state) : -1;
    if (fd >= 0 && s->type->watch_event) {
        r = sd_event_add_io(a->p.event, &s->watch, fd, EPOLLIN, on_watch, s);
        if (r < 0)
            log_warning("source %s: cannot watch for changes: %s", cs->name, strerror(-r));
    }
}

/* True when old, a source of the running generation, was opened from the same settings
 * as source i of cfg: the same type, the same source block and the same credentials with
 * the same plugin settings. */
static bool source_unchanged(const struct agent *a, const struct source_rt *old,
                             const struct config *cfg, size_t i) {
    const struct config_source *cs = &cfg->sources[i];
    if (strcmp(old->cfg->type, cs->type) != 0 || !config_node_same(&old->cfg->node, &cs->node))
        return false;
    size_t oi = (size_t)(old - a->sources), k = 0;
    for (size_t j = 0; j < cfg->n_credentials; j++) {
        const struct config_credential *cc = &cfg->credentials[j];
        if (cc->source_index != i)
            continue;
        while (k < a->cfg->n_credentials && a->cfg->credentials[k].source_index != oi)
            k++;
        if (k == a->cfg->n_credentials || strcmp(a->cfg->credentials[k].name, cc->name) != 0 ||
            !config_node_same(&a->cfg->credentials[k].node, &cc->node))
            return false;
        k++;
    }
    while (k < a->cfg->n_credentials && a->cfg->credentials[k].source_index != oi)
        k++;
    return k == a->cfg->n_credentials;
}

/* Reload: a source whose settings did not change stays open, with what it holds (a Vault
 * token, an AppRole secret id read from a file since removed, caches): moved from the
 * running generation into s. False when source i must be opened. */
static bool keep_source(struct agent *a, struct config *cfg, size_t i, struct source_rt *s) {
    for (size_t k = 0; k < a->n_sources; k++) {
        struct source_rt *old = &a->sources[k];
        if (strcmp(old->cfg->name, cfg->sources[i].name) != 0)
            continue;
        if (!old->state || !source_unchanged(a, old, cfg, i))
            return false;
        s->type = old->type;
        s->state = old->state;
        s->host = old->host;
        s->host->h = s;
        s->watch = old->watch;
        s->q = old->q;   /* one queue per instance: a job of the old generation counts */
        old->moved = true;   /* its pointers stay readable for that job; not closed */
        if (s->watch)
            sd_event_source_set_userdata(s->watch, s);
        s->opened_cfg = old->opened_cfg;
        log_debug("source %s: unchanged, kept open", cfg->sources[i].name);
        return true;
    }
    return false;
}

static void release_configs(struct agent *a, struct config *old_cfg);

/* Frees a retired generation: its credentials, the sources it did not hand on, and its
 * config unless something still uses it. */
static void retired_free(struct agent *a, struct retired *r) {
    creds_free(r->creds, r->n_creds);
    sources_close(r->sources, r->n_sources);
    struct config *cfg = r->cfg;
    free(r);
    release_configs(a, cfg);
}

static bool sources_use(const struct source_rt *sources, size_t n, const struct config *cfg) {
    for (size_t i = 0; i < n; i++)
        if (sources[i].opened_cfg == cfg)
            return true;
    return false;
}

/* After a reload: a config that a kept source was opened from stays alive (the source's
 * state may point into it), and so does one a retired generation still uses; the others
 * are freed. */
static void release_configs(struct agent *a, struct config *old_cfg) {
    struct config **keep = calloc(a->n_held + 1, sizeof *keep);
    size_t n = 0;
    if (!keep)
        return;   /* out of memory: keep them all rather than free one still in use */
    for (size_t h = 0; h <= a->n_held; h++) {
        struct config *c = h < a->n_held ? a->held[h] : old_cfg;
        bool used = false;
        if (!c)
            continue;
        for (size_t i = 0; i < a->n_sources && !used; i++)
            used = a->sources[i].opened_cfg == c;
        for (struct retired *r = a->retired; r && !used; r = r->next)
            used = r->cfg == c || sources_use(r->sources, r->n_sources, c);
        if (used && c != a->cfg)
            keep[n++] = c;
        else if (c != a->cfg)
            config_free(c);
    }
    free(a->held);
    a->held = keep;
    a->n_held = n;
}

static struct cred_rt *find_cred(struct agent *a, const char *name) {
    for (size_t i = 0; i < a->n_creds; i++)
        if (strcmp(a->creds[i].cfg->name, name) == 0)
            return &a->creds[i];
    return NULL;
}

/* A generation: a config and the source and credential state built from it. A reload
 * builds the next one completely (every check that can refuse it comes first, before
 * anything is opened), then swaps it in: sources whose settings did not change move
 * over open (keep_source), each credential's history moves over by name (cred_carry),
 * and the rest of the old generation is freed, at once or, while checks of it are still
 * on a worker, when the last of them ends (struct retired: jobs point into the generation
 * they were started from; their results are dropped). The swap waits only for rotation
 * steps on a worker (agent_maybe_reload). */
struct generation {
    struct config *cfg;
    gid_t agid;
    gid_t *gids;               /* each credential's group */
    bool mixed;                /* credentials use different groups */
    struct source_rt *sources;
    struct cred_rt *creds;
    char **names;              /* for runtime_prune (NULL: out of memory, prune skipped) */
    unsigned *fmts;
};

static void generation_clear(struct generation *g) {
    free(g->gids);
    free(g->names);
    free(g->fmts);
    *g = (struct generation){ 0 };
}

/* Everything about cfg that can refuse it, and every allocation; nothing is opened. */
static int generation_check(struct generation *g, struct config *cfg, char *err, size_t errlen) {
    size_t n = cfg->n_credentials ? cfg->n_credentials : 1;
    *g = (struct generation){ .cfg = cfg };
    int r = runtime_resolve_group(cfg->agent.group, &g->agid, err, errlen);
    if (r < 0)
        return r;
    g->gids = calloc(n, sizeof *g->gids);
    g->sources = calloc(cfg->n_sources ? cfg->n_sources : 1, sizeof *g->sources);
    g->creds = calloc(n, sizeof *g->creds);
    g->names = calloc(n, sizeof *g->names);
    g->fmts = calloc(n, sizeof *g->fmts);
    if (!g->gids || !g->sources || !g->creds) {
        r = -ENOMEM;
        snprintf(err, errlen, "out of memory");
    }
    for (size_t i = 0; r >= 0 && i < cfg->n_credentials; i++) {
        const struct config_credential *cc = &cfg->credentials[i];
        g->gids[i] = g->agid;
        if (cc->group)
            r = runtime_resolve_group(cc->group, &g->gids[i], err, errlen);
        g->mixed |= g->gids[i] != g->agid;
    }
    if (r < 0) {
        free(g->sources);
        free(g->creds);
        generation_clear(g);
    }
    return r;
}

/* A credential of the running generation moves to the next one: what is published and
 * its history (state, errors, backoffs, the rotation's record and failures). */
static void cred_carry(struct cred_rt *c, struct cred_rt *old) {
    c->cur = old->cur;
    c->have_cur = old->have_cur;
    old->cur = (struct credfile){ 0 };
    old->have_cur = false;
    c->state = old->state;
    c->last_class = old->last_class;
    c->last_check = old->last_check;
    c->last_change = old->last_change;
    c->errors_total = old->errors_total;
    c->retry = old->retry;
    c->expiry_stage = old->expiry_stage;
    c->first_done = true;
    text_set(&c->last_error, "%s", text_or_empty(old->last_error));
    text_set(&c->pending_version, "%s", text_or_empty(old->pending_version));
    text_set(&c->nodes, "%s", text_or_empty(old->nodes));
    text_set(&c->logged_error, "%s", text_or_empty(old->logged_error));
    c->logged_at = old->logged_at;
    c->relog_gap = old->relog_gap;
    c->rot.failures_total = old->rot.failures_total;
    c->rot.carried = old->rot.enabled && !old->rot.observer;
    c->rot.carried_retry_mono = old->sm.rot == RS_RETRY_WAIT && old->rot.timer ? old->rot.timer_mono : 0;
    c->rot.st = old->rot.st;   /* moved: the old generation's rotation_clear() frees none */
    old->rot.st = NULL;
    c->rot.retry = old->rot.retry;
    c->rot.fetched = old->rot.fetched;
    c->rot.splay_usec = old->rot.splay_usec;
    text_set(&c->rot.last_error, "%s", text_or_empty(old->rot.last_error));
    reval_carry(c, old);
}

/* A credential new to the agent: the file a previous run published, if any. */
static void cred_adopt(struct agent *a, struct cred_rt *c) {
    char e[512];
    const char *name = c->cfg->name;
    int r = runtime_adopt(a->p.runtime, name, &c->cur, e, sizeof e);
    if (r == 0) {
        c->have_cur = true;
        log_ctx_msg(LOG_INFO, &(struct log_ctx){ .name = name, .version = c->cur.cur.version },
                    "adopted %s/%s.json (version %s)", a->p.runtime->dir, name, c->cur.cur.version);
    } else if (r != -ENOENT)
        log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = name }, "ignoring existing file: %s", e);
}

/* The files of what c publishes, in its formats, mode and group. at_start: files a run
 * killed mid-publish left with another (newer) version stay until the next publish, or
 * the next check that finds the adopted version still current (formats_stale). */
static void cred_sync_formats(struct agent *a, struct cred_rt *c, bool at_start) {
    char e[512];
    const struct config_credential *cc = c->cfg;
    unsigned kept = 0;
    int w = runtime_sync_formats(a->p.runtime, &c->cur, cc->formats, (mode_t)cc->mode, c->gid,
                                 at_start ? &kept : NULL, e, sizeof e);
    c->formats_stale = kept > 0;
    if (w < 0)
        log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = cc->name }, "%s", e);
    else if (w > 0)
        log_ctx_msg(LOG_NOTICE, &(struct log_ctx){ .name = cc->name, .version = c->cur.cur.version },
                    "rewrote %d file(s) of %s to match version %s (a format, mode or group "
                    "changed, or an earlier run stopped mid-publish)", w, cc->name, c->cur.cur.version);
    if (kept)
        log_ctx_msg(LOG_NOTICE, &(struct log_ctx){ .name = cc->name, .version = c->cur.cur.version },
                    "left %u file(s) of %s that an earlier run wrote with another version than "
                    "%s.json's %s: the next check brings them in line", kept, cc->name, cc->name,
                    c->cur.cur.version);
}

static void generation_build_creds(struct agent *a, struct generation *g) {
    for (size_t i = 0; i < g->cfg->n_credentials; i++) {
        struct cred_rt *c = &g->creds[i];
        const struct config_credential *cc = &g->cfg->credentials[i];
        c->a = a;
        c->cfg = cc;
        c->src = &g->sources[cc->source_index];
        /* tls_insecure_skip_verify and friends: said at every start and reload. */
        const char *warn[2];
        size_t n_warn = validate_config_warnings(&cc->redis, warn, 2);
        for (size_t k = 0; k < n_warn; k++)
            log_ctx_msg(LOG_WARNING, &(struct log_ctx){ .name = cc->name }, "%s: %s", cc->name, warn[k]);
        c->gid = g->gids[i];
        backoff_init(&c->retry, RETRY_MIN_USEC, RETRY_MAX_USEC);
        if (g->names && g->fmts) {
            g->names[i] = cc->name;
            g->fmts[i] = cc->formats;
        }
        struct cred_rt *old = find_cred(a, cc->name);
        if (old)
            cred_carry(c, old);   /* keep what is published and the history */
        else
            cred_adopt(a, c);
        if (c->have_cur)
            cred_sync_formats(a, c, !old || old->formats_stale);
    }
}

/* A credential of a retired generation: nothing of it fires again. */
static void cred_retire(struct cred_rt *c, struct retired *r) {
    c->retired = r;
    sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
    sd_event_source_set_enabled(c->expiry_timer, SD_EVENT_OFF);
    rotation_stop(c);
    reval_stop(c);
}

/* From every job's done(): a job of a retired generation is dropped (true); the
 * generation is freed with its last job. */
static bool retired_job_done(struct cred_rt *c) {
    struct agent *a = c->a;
    struct retired *r = c->retired, **pp;
    c->jobs_out--;
    if (!r)
        return false;
    if (c->jobs_out == 0)   /* (another job of c, still out, may be using it) */
        job_clear(c);
    if (--r->jobs > 0)
        return true;
    for (pp = &a->retired; *pp != r; pp = &(*pp)->next)
        ;
    *pp = r->next;
    retired_free(a, r);
    return true;
}

/* Swaps g in. The running generation is freed now, or retired until its last job ends
 * when jobs are still out (a check's: its result is dropped; the new generation checks
 * again). Its queued operations leave the queues (a kept source's queue goes on). */
static void generation_swap(struct agent *a, struct generation *g) {
    unsigned jobs = 0;
    for (size_t i = 0; i < a->n_creds; i++) {
        struct cred_rt *c = &a->creds[i];
        if (c->src->q) {
            srcq_cancel(c->src->q, &c->fetch_op);
            srcq_cancel(c->src->q, &c->rot.store_op);
        }
        jobs += c->jobs_out;
    }
    struct retired *r = jobs ? calloc(1, sizeof *r) : NULL;
    if (r) {
        *r = (struct retired){ .cfg = a->cfg, .sources = a->sources, .n_sources = a->n_sources,
                               .creds = a->creds, .n_creds = a->n_creds, .jobs = jobs, .next = a->retired };
        a->retired = r;
        for (size_t i = 0; i < a->n_creds; i++)
            cred_retire(&a->creds[i], r);
        log_debug("reload: %u job(s) of the previous generation still out; it is freed when they end", jobs);
    } else {
        creds_free(a->creds, a->n_creds);   /* (out of memory: jobs would still point here) */
        sources_close(a->sources, a->n_sources);
    }
    struct config *old_cfg = r ? NULL : a->cfg;
    a->cfg = g->cfg;
    a->sources = g->sources;
    a->n_sources = g->cfg->n_sources;
    a->creds = g->creds;
    a->n_creds = g->cfg->n_credentials;
    a->gid = g->agid;
    a->dir_mixed = g->mixed;
    release_configs(a, old_cfg);
}

/* Builds the next generation from cfg and swaps it in: published state and history move
 * over from the running generation (reload), or files are adopted (start). */
static int apply_config(struct agent *a, struct config *cfg, char *err, size_t errlen) {
    struct generation g;
    int r = generation_check(&g, cfg, err, errlen);
    if (r < 0)
        return r;
    for (size_t i = 0; i < cfg->n_sources; i++) {
        g.sources[i].a = a;
        g.sources[i].cfg = &cfg->sources[i];
        if (!keep_source(a, cfg, i, &g.sources[i]))
            open_source(a, cfg, i, &g.sources[i]);
        if (!g.sources[i].q && (g.sources[i].q = malloc(sizeof *g.sources[i].q)))
            srcq_init(g.sources[i].q, source_op_limit(g.sources[i].type));
        if (!g.sources[i].q)   /* its credentials cannot run: said as a source error */
            snprintf(g.sources[i].open_error, sizeof g.sources[i].open_error, "out of memory");
    }
    /* The plugins have read their settings, and no other thread has seen cfg yet: drop the
     * host keys' settings from its parse tree (-ENOMEM keeps the whole tree, also right). */
    (void)config_compact(cfg);
    generation_build_creds(a, &g);
    generation_swap(a, &g);

    for (size_t i = 0; i < a->n_creds; i++)
        arm_expiry(&a->creds[i], a->creds[i].expiry_stage);
    for (size_t i = 0; i < a->n_creds; i++) {
        rotation_init(&a->creds[i]);   /* from the phase record, like at start */
        reval_init(&a->creds[i], on_reval_timer);
        drive(&a->creds[i]);
    }
    if (g.names && g.fmts)
        runtime_prune(a->p.runtime, g.names, g.fmts, cfg->n_credentials);
    generation_clear(&g);
    r = runtime_set_dir_mode(a->p.runtime, a->gid, a->dir_mixed);
    if (r < 0)
        log_warning("runtime_dir %s: cannot set mode and group: %s", a->p.runtime->dir, strerror(-r));
    log_set_level(cfg->agent.log_level);
    return 0;
}

int agent_start(const struct agent_params *p, struct config *cfg, struct agent **ret) {
    char err[512];
    struct agent *a = calloc(1, sizeof *a);
    if (!a) {
        config_free(cfg);
        return -ENOMEM;
    }
    a->p = *p;
    int r = apply_config(a, cfg, err, sizeof err);
    if (r < 0) {
        log_error("%s", err);
        config_free(cfg);
        free(a);
        return r;
    }
    if (!a->p.once && a->cfg->agent.startup_timeout_usec) {
        notify_extend_timeout(a->cfg->agent.startup_timeout_usec + 5 * USEC_PER_SEC);
        sd_event_add_time_relative(a->p.event, &a->startup_timer, CLOCK_MONOTONIC,
                                   a->cfg->agent.startup_timeout_usec, 0, on_startup_timeout, a);
    }
    runtime_watch(a);
    agent_update_status(a);
    for (size_t i = 0; i < a->n_creds; i++)
        request_fetch(&a->creds[i]);
    check_ready(a);        /* no credentials at all: ready at once */
    check_once_done(a);
    *ret = a;
    return 0;
}

/* A reload that would delete more than half of the published credentials is most likely
 * a truncated or wrong file: refused unless removals were asked for (the new file's
 * agent.allow_removals, the reload request, or a host taken out of service on purpose). */
static int check_removals(const struct agent *a, const struct config *cfg, bool allowed,
                          char *err, size_t errlen) {
    size_t published = 0, removed = 0;
    for (size_t i = 0; i < a->n_creds; i++) {
        if (!a->creds[i].have_cur)
            continue;
        published++;
        bool kept = false;
        for (size_t k = 0; k < cfg->n_credentials && !kept; k++)
            kept = strcmp(cfg->credentials[k].name, a->creds[i].cfg->name) == 0;
        removed += !kept;
    }
    if (allowed || cfg->agent.allow_removals || removed * 2 <= published ||
        (cfg->n_credentials == 0 && cfg->agent.allow_no_credentials))
        return 0;
    snprintf(err, errlen, "%s would delete %zu of the %zu published credentials; if that is "
             "intended, set agent.allow_removals = true in it (or remove fewer at a time)",
             a->p.config_path, removed, published);
    return -EPERM;
}

/* Applies a pending SIGHUP once no rotation step is on a worker (checks still out retire
 * with their generation); replaces every credential. */
static void agent_maybe_reload(struct agent *a) {
    if (!a->reload_pending || a->stopping || a->rot_jobs > 0)
        return;   /* a rotation's step finishes in the generation that started it */
    bool allow_removals = a->reload_allow_removals;
    a->reload_pending = false;
    a->reload_allow_removals = false;

    char err[1024] = "out of memory";
    struct config *cfg = NULL;
    int r = config_load(a->p.config_path, plugins_schema_lookup, a->p.plugins, &cfg, err, sizeof err);
    if (r >= 0 && (r = plugins_check_rotation(a->p.plugins, cfg, err, sizeof err)) < 0)
        cfg = config_free(cfg);
    if (r >= 0 && (r = confcheck_self(cfg, err, sizeof err)) < 0)   /* files, groups */
        cfg = config_free(cfg);
    if (r >= 0 && (r = check_removals(a, cfg, allow_removals, err, sizeof err)) < 0)
        cfg = config_free(cfg);
    if (r >= 0) {
        const struct config_agent *o = &a->cfg->agent, *n = &cfg->agent;
        if (strcmp(o->runtime_dir, n->runtime_dir) || strcmp(o->state_dir, n->state_dir) ||
            strcmp(o->control_socket, n->control_socket) || o->workers != n->workers)
            log_warning("reload: runtime_dir, state_dir, control_socket and workers take effect "
                        "only at restart; keeping the running values");
        /* Keep the running values for what cannot change live. */
        free(cfg->agent.runtime_dir);
        cfg->agent.runtime_dir = strdup(o->runtime_dir);
        r = cfg->agent.runtime_dir ? apply_config(a, cfg, err, sizeof err) : -ENOMEM;
        if (r < 0)
            config_free(cfg);
    }
    if (r < 0) {
        log_ctx_msg(LOG_ERR, &(struct log_ctx){ .message_id = LOG_MID_RELOAD_REJECTED },
                    "reload rejected, keeping the running configuration: %s", err);
        /* Checks and rotation steps queued while we waited go on. */
        for (size_t i = 0; i < a->n_sources; i++)
            dispatch_source(&a->sources[i]);
    } else {
        log_info("reloaded %s: %zu source(s), %zu credential(s)", a->p.config_path, a->n_sources,
                 a->n_creds);
        malloc_trim(0);   /* the old parse tree and generation, as at start (check_ready) */
        for (size_t i = 0; i < a->n_creds; i++)
            request_fetch(&a->creds[i]);
    }
    a->last_status[0] = '\0';   /* resend STATUS */
    agent_update_status(a);
    notify_ready();
    if (a->reload_observer)
        a->reload_observer(a->reload_observer_ud, r < 0 ? r : 0, r < 0 ? err : "");
}

void agent_set_reload_observer(struct agent *a, void (*fn)(void *ud, int result, const char *why),
                               void *ud) {
    a->reload_observer = fn;
    a->reload_observer_ud = ud;
}

void agent_request_reload(struct agent *a, bool allow_removals) {
    notify_reloading();
    log_info("reloading %s%s", a->p.config_path, allow_removals ? " (removals allowed)" : "");
    a->reload_pending = true;
    a->reload_allow_removals |= allow_removals;
    agent_maybe_reload(a);
}

void agent_reload(struct agent *a) {
    agent_request_reload(a, false);
}

void agent_stop(struct agent *a) {
    a->stopping = true;
    for (size_t i = 0; i < a->n_creds; i++) {
        sd_event_source_set_enabled(a->creds[i].timer, SD_EVENT_OFF);
        cred_event(&a->creds[i], (struct credsm_event){ .type = CSM_STOP });
        rotation_stop(&a->creds[i]);
        reval_stop(&a->creds[i]);
    }
}

json_t *agent_status_json(struct agent *a) {
    json_t *creds = json_array();
    uint64_t mono = now_mono();
    int64_t real = now_real();
    for (size_t i = 0; creds && i < a->n_creds; i++) {
        const struct cred_rt *c = &a->creds[i];
        const char *path = config_node_string(&c->cfg->node, "path");
        int64_t next = c->next_check_mono && c->timer
                           ? real + (int64_t)((c->next_check_mono > mono ? c->next_check_mono - mono : 0) / USEC_PER_SEC)
                           : 0;
        int64_t exp = c->have_cur && c->cur.cur.expires_at != RC_NO_EXPIRY ? c->cur.cur.expires_at : 0;
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(c->cfg->name));
        json_object_set_new(o, "source", json_string(c->cfg->source));
        json_object_set_new(o, "path", json_str_or_null(path));
        json_object_set_new(o, "state", json_string(rotation_state_word(c, cred_state_names[c->state])));
        json_object_set_new(o, "current", json_boolean(c->state == CS_CURRENT));
        json_object_set_new(o, "version", json_str_or_null(c->have_cur ? c->cur.cur.version : NULL));
        json_object_set_new(o, "pending_version", json_str_or_null(c->pending_version));
        json_object_set_new(o, "validated", json_str_or_null(c->have_cur ? c->cur.validated : NULL));
        json_object_set_new(o, "nodes", json_str_or_null(c->nodes));
        json_object_set_new(o, "last_check", json_time(c->last_check));
        json_object_set_new(o, "last_change", json_time(c->last_change));
        json_object_set_new(o, "next_check", json_time(next));
        json_object_set_new(o, "expires_at", json_time(exp));
        json_object_set_new(o, "expires_in_seconds", exp ? json_integer(exp - real) : json_null());
        json_object_set_new(o, "last_error", json_str_or_null(c->last_error));
        json_object_set_new(o, "errors_total", json_integer((json_int_t)c->errors_total));
        json_object_set_new(o, "rotation", rotation_status_json(c, mono, real));
        json_object_set_new(o, "revalidation", reval_status_json(c, mono, real));
        json_array_append_new(creds, o);
    }
    return json_pack("{s:b, s:i, s:s, s:b, s:s, s:o}", "ok", 1, "pid", (int)getpid(), "config",
                     a->p.config_path, "ready", a->ready_sent, "status", a->last_status,
                     "credentials", creds ? creds : json_array());
}

int agent_refresh(struct agent *a, const char *name, char *err, size_t errlen) {
    struct cred_rt *c = find_cred(a, name);
    if (!c) {
        snprintf(err, errlen, "no credential named \"%s\"", name);
        return -ENOENT;
    }
    log_ctx_msg(LOG_INFO, &(struct log_ctx){ .name = name }, "refresh requested: checking the store now");
    backoff_reset(&c->retry);
    reval_forget(c);   /* a version Redis refused is judged again */
    if (c->timer)
        sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
    c->next_check_mono = 0;
    request_fetch(c);
    return 0;
}

int agent_rotate(struct agent *a, const char *name, bool revoke, char *err, size_t errlen) {
    struct cred_rt *c = find_cred(a, name);
    if (!c) {
        snprintf(err, errlen, "no credential named \"%s\"", name);
        return -ENOENT;
    }
    int r = rotation_request(c, revoke, err, errlen);
    drive(c);
    return r;
}

int agent_exit_code(const struct agent *a) {
    for (size_t i = 0; i < a->n_creds; i++)
        if (a->creds[i].state != CS_CURRENT)
            return 1;
    return 0;
}

struct agent *agent_free(struct agent *a) {
    if (!a)
        return NULL;
    creds_free(a->creds, a->n_creds);
    sources_close(a->sources, a->n_sources);
    while (a->retired) {
        struct retired *r = a->retired;
        a->retired = r->next;
        creds_free(r->creds, r->n_creds);
        sources_close(r->sources, r->n_sources);
        if (r->cfg != a->cfg)
            config_free(r->cfg);
        free(r);
    }
    sd_event_source_disable_unref(a->startup_timer);
    sd_event_source_disable_unref(a->runtime_watch);
    config_free(a->cfg);
    for (size_t i = 0; i < a->n_held; i++)
        config_free(a->held[i]);
    free(a->held);
    free(a);
    return NULL;
}
