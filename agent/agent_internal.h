/* agent_internal: the state agent.c and rotation.c share (not a public interface).
 *
 * agent.c owns every structure here and runs the fetch -> validate -> publish pipeline;
 * rotation.c drives agent-driven rotations (DESIGN §9) of the same credentials, on the
 * same loop, worker pool and timers. Everything here is for the loop thread only (jobs'
 * run() functions aside, which touch only their job). Functions declared here are
 * agent_* (agent.c) or rotation_* (rotation.c).
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "agent.h"
#include "backoff.h"
#include "credfile.h"
#include "duration.h"
#include "log.h"
#include "rotate.h"
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
};


enum phase { PH_IDLE = 0, PH_QUEUED, PH_FETCH, PH_VALIDATE };

struct source_rt;
struct cred_rt;

/* Rotation (DESIGN §9), driven from the loop; the phase record is rotate.h's. Steps that
 * change the store or Redis (claim, add + validate, roll back) hold the credential's
 * fetches back, so the pipeline never judges a half-made change. */
enum rot_step {
    RS_NONE = 0,        /* idle: waiting for the schedule (or disabled) */
    RS_CLAIMING,        /* worker: rotate() on the store, check-and-set */
    RS_AWAIT_FETCH,     /* the next fetch brings the new password from the store (resuming;
                           vault-database: what Vault made) */
    RS_ADDING,          /* worker: ACL SETUSER >new on every node (redis-acl), then validate */
    RS_ROLLBACK,        /* worker: ACL SETUSER <new, store back to the old credential */
    RS_GRACE,           /* published; the old password goes when the timer fires */
    RS_REMOVING,        /* worker: ACL SETUSER <old on every node (azure-keys: regenerate
                           the old key) */
    RS_RETRY_WAIT,      /* a step failed; retried when the timer fires */
};


enum rot_timer { RT_DUE = 0, RT_GRACE, RT_RETRY };

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
};

struct rot_rt {
    bool enabled;                         /* configured, and the source can rotate */
    bool observer;                        /* another host is the rotator: never rotate here */
    bool src_wait;                        /* a store step waits for the source to be free */
    bool holds_src;                       /* the running step holds the source (busy) */
    struct rotate_state st;
    enum rot_step step;
    bool requested;                       /* start when the running check is over */
    bool manual;
    sd_event_source *timer;
    enum rot_timer timer_kind;
    uint64_t timer_mono;
    struct backoff retry;
    char last_error[512];
    uint64_t failures_total;              /* failed steps (each one retried), for metrics */
    struct rot_job job;
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

    enum phase phase;
    bool wake_pending;         /* woken while busy: fetch again when done */
    bool first_done;
    sd_event_source *timer;
    struct backoff retry;

    enum cred_state state;
    enum rc_err_class last_class;
    char last_error[512];
    char pending_version[RC_VERSION_MAX];   /* a candidate not (yet) published */
    char nodes[512];
    int64_t last_check, last_change;        /* unix seconds; 0 = never */
    uint64_t next_check_mono;               /* CLOCK_MONOTONIC usec; 0 = none */
    uint64_t errors_total;

    /* the published credential's expiry (tokens): warned about / reported expired */
    sd_event_source *expiry_timer;
    int expiry_stage;                       /* 0 = nothing said, 1 = warned, 2 = expired */

    /* rate-limited failure logging */
    char logged_error[512];
    uint64_t logged_at, relog_gap;

    struct cred_job job;
    struct rot_rt rot;
};

struct source_rt {
    struct agent *a;
    const struct config_source *cfg;
    const struct rc_source_type *type;
    void *state;
    struct rc_host *host;      /* allocated: the plugin keeps it, and a reload moves s */
    struct config *opened_cfg; /* the config open() was given (kept alive while open) */
    bool busy;
    char open_error[512];      /* non-empty: open() failed, its credentials cannot run */
    sd_event_source *watch;
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
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
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
        .nodes = c->nodes[0] ? c->nodes : NULL,
    };
}

/* A unix time as RFC 3339, or JSON null for "never". */
static inline json_t *json_time(int64_t t) {
    char buf[40];
    return t > 0 ? json_string(credfile_time_format(t, buf, sizeof buf)) : json_null();
}

static inline json_t *json_str_or_null(const char *s) {
    return s && s[0] ? json_string(s) : json_null();
}

/* ---- agent.c ---- */

/* Check c's store now (or when its running check / a rotation step ends). */
void agent_request_fetch(struct cred_rt *c);
/* STATUS= and the metrics file, from the credentials' state. */
void agent_update_status(struct agent *a);
/* Starts the next queued store call of source s when it is free. */
void agent_dispatch_source(struct source_rt *s);
/* Applies a pending SIGHUP once no job is in flight; may replace every credential. */
void agent_maybe_reload(struct agent *a);
/* Publishes cand (moved into the credential on success); `previous` is prev, else the
 * credential published until now. On failure the credential's state says why. */
void agent_publish(struct cred_rt *c, struct rc_candidate *cand, struct rc_candidate *prev,
                   const char *validated);
/* (Re)arms a one-shot monotonic timer delay usec from now, to fire within `accuracy`
 * after that. 0 and *ret_when, or -errno. */
int agent_arm_timer(sd_event *e, sd_event_source **src, uint64_t delay, uint64_t accuracy,
                    sd_event_time_handler_t cb, void *userdata, uint64_t *ret_when);
/* The accuracy for polls, retries and other waits where a little lateness costs nothing:
 * 1/50 of the delay, between 1 ms and 250 ms. */
uint64_t agent_timer_accuracy(uint64_t delay);

/* ---- rotation.c ---- */

/* Steps that change the store or Redis hold the credential's fetches back. */
static inline bool rotation_holds_fetch(const struct cred_rt *c) {
    return c->rot.step == RS_CLAIMING || c->rot.step == RS_ADDING || c->rot.step == RS_ROLLBACK ||
           c->rot.step == RS_REMOVING;
}
/* At start and after a reload: reads the phase record and resumes or schedules. */
void rotation_init(struct cred_rt *c);
/* Frees what the credential's rotation holds: its timer and its job's secrets. */
void rotation_clear(struct cred_rt *c);
/* SIGTERM: no more rotation steps start. */
void rotation_stop(struct cred_rt *c);
/* After each check of c: a rotation requested meanwhile starts. */
void rotation_after_check(struct cred_rt *c);
/* From fetch_done(), with what the store returned. TAKEN: a rotation took the new
 * version (moved out of cands) and validates and publishes it itself. UNCHANGED: what
 * is published is what the rotation wants (azure-keys between the switch and
 * regenerating the old key), whatever the source prefers. NONE: judge as usual. */
enum rot_take { ROT_TAKE_NONE = 0, ROT_TAKE_TAKEN, ROT_TAKE_UNCHANGED };
enum rot_take rotation_take_fetched(struct cred_rt *c, struct rc_candidate *cands, int n);
/* From fetch_done() on a store error. */
void rotation_fetch_failed(struct cred_rt *c, const struct rc_error *err);
/* The source is free: a rotation's store step that waited for it starts. */
void rotation_start_waiting(struct cred_rt *c);
/* `redis-creds rotate NAME`. 0, or -errno with err. */
int rotation_request(struct cred_rt *c, char *err, size_t errlen);
/* The `rotation` member of a status row (null without rotation). */
json_t *rotation_status_json(const struct cred_rt *c, uint64_t mono, int64_t real);
/* The running step's word ("claiming", "grace", "retry-wait", ...), or NULL when no
 * rotation is under way (or none is configured): for STATUS= and metrics. */
const char *rotation_step_word(const struct cred_rt *c);
