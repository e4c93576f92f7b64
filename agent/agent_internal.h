/* agent_internal: the state agent.c and rotation.c share (not a public interface).
 *
 * agent.c owns every structure here, drives each credential's state machine (credsm.h)
 * and carries out its effects: the fetch -> validate -> publish pipeline, the source's
 * queue, the worker pool and the timers. rotation.c decides the steps of agent-driven
 * rotations (docs/design.md §9): agent.c calls it, it never calls agent.c. It changes a
 * credential's state only through the machine (cred_event()), whose effects agent.c
 * carries out when rotation.c returns. Everything here is for the loop thread only
 * (jobs' run() functions aside, which touch only their job). Functions declared here
 * are rotation_* (rotation.c).
 */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "aclwatch.h"
#include "agent.h"
#include "backoff.h"
#include "credsm.h"
#include "credfile.h"
#include "duration.h"
#include "log.h"
#include "rctime.h"
#include "reval.h"
#include "rotate.h"
#include "rotrec.h"
#include "secret.h"
#include "srcq.h"
#include "validate.h"

enum cred_state {
    CS_PENDING = 0,      /* no attempt finished yet */
    CS_CURRENT,          /* published file holds the store's latest version */
    CS_REFUSED,          /* Redis refused the candidate */
    CS_UNREACHABLE,      /* Redis could not be asked */
    CS_MISCONFIGURED,    /* Redis has no password configured */
    CS_REDIS_ERROR,      /* unexpected replies */
    CS_STORE_ERROR,      /* the store failed (class in last_class) */
    CS_PUBLISH_ERROR,    /* writing the file failed */
    CS_REVOKED,          /* Redis refused the published credential at re-validation (reval.h) */
};


struct source_rt;
struct cred_rt;

enum rot_timer { RT_DUE = 0, RT_GRACE, RT_RETRY, RT_WATCH, RT_DRAIN };

struct rot_job {
    struct job job;
    struct cred_rt *c;
    struct rc_credential rc;
    char *username;                       /* the credential's user; NULL = default */
    struct secret *old_pw, *new_pw;
    char expected[RC_VERSION_MAX];        /* the version a store write checks against */
    char new_version[RC_VERSION_MAX];
    int r;
    struct rc_error err;
    struct rotate_acl_result acl;
    struct validate_result vres;
    void (*finish)(struct cred_rt *c, struct rot_job *j);   /* loop: after run() */
    bool store_restored;
    char why[512];                        /* rollback: what failed */
    /* The store's rotation record (docs/design.md §9.5). rec is the record this host
     * holds (epoch 0: none), kept across steps (rot_job_clear() leaves it) and with it its
     * revision; the loop touches them only while no step is out. */
    struct rotrec rec;
    char rev[RC_REVISION_MAX];
    struct rotrec seen;                   /* look: another host's live record (no secrets) */
    int outcome;                          /* enum rec_outcome (rotation.c) */
    enum rotrec_action action;            /* look: what it did with the record it read */
    char prev_owner[ROTREC_HOST_MAX];     /* look: the owner a takeover replaced */
    bool look_only;                       /* look: go on with a held record; never claim */
    bool manual;                          /* the claim: asked for by the rotate command */
    bool revoke;                          /* the claim: `rotate --revoke` */
    bool entry_moved;                     /* look: the entry is not what is published */
    int64_t entry_rotated_at;             /* look: the entry's rotated_at, INT64_MIN: none */
    int64_t rotated_at;                   /* writing: the mark of the entry; to publish */
    /* redis-acl-users */
    char *pending_user;                   /* the claim: the idle user that gets the password */
    bool nothing_added;                   /* adding refused before Redis changed (users differ) */
    struct aclops_result clients;         /* removing: CLIENT LIST of the previous user */
    bool past_max_grace;                  /* removing: still connected after max_grace */
    long long killed;                     /* removing: CLIENT KILL USER closed these */
    /* the revocation watch: pending_user is the watched user a restore acts on */
    bool unrestore;                       /* watching: remove the restored password too */
    /* Kept for the job's whole life (rotation_init to rotation_clear; rot_job_clear()
     * leaves them), here rather than in struct rot_rt so that a credential this host does
     * not rotate carries none of it (docs/benchmarks.md, memory). */
    char host[ROTREC_HOST_MAX];           /* gethostname(): the record's owner */
    char owner_id[RC_VERSION_MAX];        /* this agent, in the record (rotrec.h owner_id) */
    /* The revocation watch: ACL LOG's previous read of every node (a step uses it while
     * the step runs, the loop otherwise), the user watched, a problem said once. */
    struct aclwatch watch;
    char watch_user[128];
    char watch_problem[256];              /* the baseline's problem, said at the first tick */
    bool watch_problem_said;
};

struct rot_rt {
    bool enabled;                         /* configured, and the source can rotate */
    bool observer;                        /* another host is the rotator: never rotate here */
    struct srcq_op store_op;              /* a store step, in the source's queue */
    /* The phase record: allocated with the job (rotation_init), only if this host
     * rotates; NULL otherwise (observers and credentials without rotation read none).
     * A reload moves it to the next generation (cred_carry); rotation_clear frees it. */
    struct rotate_state *st;
    sd_event_source *timer;
    enum rot_timer timer_kind;
    uint64_t timer_mono;
    uint64_t arm_delay;                   /* the timer of the step entered next: due in */
    bool carried;                         /* st (moved) and retry came from the previous generation */
    uint64_t carried_retry_mono;          /* ... which waited to retry until then; 0 = not */
    struct backoff retry;
    char *last_error;                     /* heap, NULL = none (text_set) */
    uint64_t failures_total;              /* failed steps (each one retried), for metrics */
    struct rot_job *job;                  /* rotation_init: only if this host rotates; else NULL */
    bool fetched;                         /* a fetch succeeded since start (the store's clock) */
    bool due_waiting;                     /* the schedule fell due before that fetch */
    bool resume_look;                     /* the next begin only goes on with a held record */
    bool revoke_next;                     /* `rotate --revoke` asked for the next rotation */
    bool manual_pending, revoke_pending;  /* `rotate` asked during a look: served after it */
    uint64_t splay_usec;                  /* drawn for the current fleet clock */
    uint64_t waited_epoch;                /* the live record last reported as waited for */
    /* redis-acl-users: the drain of the previous user (status and …4b0b) */
    json_t *drain;                        /* {"user","connections","nodes":[...]}; NULL: none */
    bool drain_said, drain_max_said;
};

struct cred_job {
    struct job job;
    struct cred_rt *c;
    struct rc_credential rc;
    /* fetch: cands[0] is the store's current candidate, cands[1] a PEER or HINT */
    int n_cands;
    struct rc_candidate cands[RC_MAX_CANDIDATES];
    struct rc_error err;
    uint64_t next_check_usec;
    /* validate */
    char *cur_username;
    struct secret *cur_password;
    bool check_second;                    /* validate cands[1] too */
    struct validate_result vres[RC_MAX_CANDIDATES];
};

struct cred_rt {
    struct agent *a;
    const struct config_credential *cfg;
    struct source_rt *src;
    gid_t gid;

    struct credfile cur;       /* what is published */
    bool have_cur;
    bool formats_stale;   /* adopted at start with a .env/.password of another version */

    struct credsm sm;          /* the check's phase and the rotation's step */
    struct credsm_fx fx;       /* effects the machine asked for, not carried out yet */
    bool first_done;
    sd_event_source *timer;
    struct backoff retry;

    enum cred_state state;
    enum rc_err_class last_class;
    char *last_error;                       /* heap, NULL = none (text_set) */
    char *pending_version;                  /* heap: a candidate not (yet) published; NULL */
    char *nodes;                            /* the last validation's per-node result; NULL */
    int64_t last_check, last_change;        /* unix seconds; 0 = never */
    uint64_t next_check_mono;               /* CLOCK_MONOTONIC usec; 0 = none */
    uint64_t errors_total;

    /* the published credential's expiry (tokens): warned about / reported expired */
    sd_event_source *expiry_timer;
    int expiry_stage;                       /* 0 = nothing said, 1 = warned, 2 = expired */

    /* rate-limited failure logging */
    char *logged_error;                     /* heap, NULL = none */
    uint64_t logged_at, relog_gap;

    unsigned jobs_out;                      /* its jobs on the worker pool */
    struct retired *retired;                /* its generation was replaced (NULL: current) */

    struct cred_job *job;                   /* from RUN_FETCH to the check's end; NULL between */
    struct srcq_op fetch_op;                /* the fetch, in the source's queue */
    struct rot_rt rot;
    struct reval_rt reval;                  /* continuous re-validation (reval.h) */
};

struct source_rt {
    struct agent *a;
    const struct config_source *cfg;
    const struct rc_source_type *type;
    void *state;
    struct rc_host *host;      /* allocated: the plugin keeps it, and a reload moves s */
    struct config *opened_cfg; /* the config open() was given (kept alive while open) */
    struct srcq *q;            /* the instance's store operations: at most q->limit at once
                                  (moves with the instance when a reload keeps it) */
    bool moved;                /* a reload moved the instance to the next generation */
    char open_error[512];      /* non-empty: open() failed, its credentials cannot run */
    sd_event_source *watch;
};

/* A generation replaced by a reload while jobs of it were out: freed with its last job. */
struct retired {
    struct config *cfg;
    struct source_rt *sources;
    size_t n_sources;
    struct cred_rt *creds;
    size_t n_creds;
    unsigned jobs;
    struct retired *next;
};

struct agent {
    struct agent_params p;
    struct config *cfg;
    struct config **held;      /* earlier configs that kept sources were opened from */
    size_t n_held;
    gid_t gid;                 /* agent.group */
    struct source_rt *sources;
    size_t n_sources;
    struct cred_rt *creds;
    size_t n_creds;
    struct retired *retired;   /* older generations with jobs still out */
    unsigned rot_jobs;         /* rotation steps on the worker pool (a reload waits for them) */
    bool ready_sent, stopping, reload_pending;
    bool reload_allow_removals;   /* the pending reload may delete most published files */
    void (*reload_observer)(void *ud, int result, const char *why);   /* agent_set_reload_observer */
    void *reload_observer_ud;
    sd_event_source *startup_timer;
    sd_event_source *runtime_watch;   /* inotify: runtime_dir deleted or moved away */
    bool dir_mixed;                   /* credentials use different groups: dir 0755 */
    uint64_t metrics_failed_at;   /* CLOCK_MONOTONIC of the last warning; 0 = writing works */
    char last_status[2048];
};

static inline uint64_t now_mono(void) {
    return rctime_mono_usec();
}

static inline int64_t now_real(void) {
    return (int64_t)time(NULL);
}

/* The journal fields of an event about credential c. */
static inline struct log_ctx cred_ctx(const struct cred_rt *c, const char *mid, const char *version) {
    return (struct log_ctx){
        .message_id = mid,
        .name = c->cfg->name,
        .version = version,
        .source = c->cfg->source,
        .nodes = c->nodes,
    };
}

/* A unix time as RFC 3339, or JSON null for "never". */
static inline json_t *json_time(int64_t t) {
    char buf[40];
    return t > 0 ? json_string(rctime_format(t, buf, sizeof buf)) : json_null();
}

/* The texts a credential keeps (errors, nodes) are on the heap, and only while they say
 * something: most credentials, most of the time, hold none (docs/benchmarks.md, memory).
 * text_set: *dst = the text, cut at 511 bytes like the buffers it replaced; "" or out of
 * memory: NULL. */
static inline __attribute__((format(printf, 2, 0))) void text_vset(char **dst, const char *fmt, va_list ap) {
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    secret_scrub(buf, sizeof buf);   /* stored texts never hold a live secret's bytes */
    if (*dst && strcmp(*dst, buf) == 0)
        return;
    free(*dst);
    *dst = buf[0] ? strdup(buf) : NULL;
}
static inline __attribute__((format(printf, 2, 3))) void text_set(char **dst, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    text_vset(dst, fmt, ap);
    va_end(ap);
}
static inline void text_clear(char **dst) {
    free(*dst);
    *dst = NULL;
}
static inline const char *text_or_empty(const char *t) {
    return t ? t : "";
}

static inline json_t *json_str_or_null(const char *s) {
    return s && s[0] ? json_string(s) : json_null();
}

/* Feeds ev to c's state machine; agent.c carries out the effects it adds to c->fx.
 * 0, or the machine's -errno (nothing changed). */
static inline int cred_event(struct cred_rt *c, struct credsm_event ev) {
    return credsm_step(&c->sm, &ev, &c->fx);
}

/* ---- rotation.c ---- */

/* At start and after a reload: reads the phase record and resumes or schedules. */
void rotation_init(struct cred_rt *c);
/* Frees what the credential's rotation holds: its timer, its job (secrets wiped) and its
 * phase record. */
void rotation_clear(struct cred_rt *c);
/* SIGTERM: no more rotation steps start. */
void rotation_stop(struct cred_rt *c);
/* The machine's ROT_BEGIN: starts the rotation asked for (a failure is retried). */
void rotation_begin(struct cred_rt *c, bool manual);
/* From fetch_done(), with what the store returned. TAKEN: a rotation took the new
 * version (moved out of cands) and validates and publishes it itself. UNCHANGED: what
 * is published is what the rotation wants (azure-keys between the switch and
 * regenerating the old key), whatever the source prefers. NONE: judge as usual. */
enum rot_take { ROT_TAKE_NONE = 0, ROT_TAKE_TAKEN, ROT_TAKE_UNCHANGED };
enum rot_take rotation_take_fetched(struct cred_rt *c, struct rc_candidate *cands, int n);
/* From fetch_done(), with the store's current candidate (before rotation_take_fetched()):
 * the first successful fetch lets the schedule claim, and a newer rotated_at moves the
 * fleet clock. */
void rotation_fetched(struct cred_rt *c, const struct rc_candidate *cand);
/* previous_valid_until for publishing a version a rotation made at rotated_at: rotated_at
 * + grace (0 for this host's `rotate --revoke`). */
int64_t rotation_previous_valid_until(const struct cred_rt *c, int64_t rotated_at);
/* From fetch_done() on a store error. */
void rotation_fetch_failed(struct cred_rt *c, const struct rc_error *err);
/* The rotation's step job is back (loop): the step's finish decides the next one. */
void rotation_job_done(struct cred_rt *c);
/* The rotation's timer fired (its kind says which: due, grace, retry). */
void rotation_timer(struct cred_rt *c);
/* The machine's ROT_PUBLISH: the new version the job holds, as a candidate (moved out of
 * the job; the caller frees what it does not take). */
struct rc_candidate rotation_candidate(struct cred_rt *c);
/* After the machine's ROT_PUBLISH was carried out: r is the publish's result. */
void rotation_published(struct cred_rt *c, int r);
/* `redis-creds rotate NAME [--revoke]`. 0, or -errno with err. */
int rotation_request(struct cred_rt *c, bool revoke, char *err, size_t errlen);
/* The `rotation` member of a status row (null without rotation). */
json_t *rotation_status_json(const struct cred_rt *c, uint64_t mono, int64_t real);
/* The running step's word ("claiming", "grace", "retry-wait", ...), or NULL when no
 * rotation is under way (or none is configured): for STATUS= and metrics. */
const char *rotation_step_word(const struct cred_rt *c);
/* The status state: "draining" while redis-acl-users waits for the previous user's
 * connections (the credential is current all the same), else `state`. */
const char *rotation_state_word(const struct cred_rt *c, const char *state);
