/* credsm: the state machine of one credential: its check of the store and its rotation.
 *
 * One struct of state and one pure transition function, credsm_step(): an event in, the
 * new state and a set of effects out. It does no I/O, allocates nothing and knows no
 * clock; the agent's loop (agent.c) feeds it the events of timers, the source's queue and
 * the worker pool, and carries out the effects; rotation.c decides a rotation's next step
 * from its results and feeds that in as an event. Loop thread only.
 *
 * State: a check phase and a rotation step (one machine with two parts; the rotation is
 * a part of it, never a module writing the check's fields), plus three latches.
 *
 *   check:  IDLE -> QUEUED (in the source's queue) -> FETCH (worker) -> VALIDATE (worker)
 *           IDLE -> REVALIDATE (worker: the published credential on every node, reval.h)
 *             refused -> QUEUED (a recovery check) -> FETCH -> REVALIDATE (the candidates)
 *   rotation: NONE -> CLAIMING* -> [AWAIT_FETCH] -> ADDING -> GRACE -> REMOVING* -> NONE,
 *             ADDING -> ROLLBACK* -> RETRY_WAIT; any step -> RETRY_WAIT | NONE
 *             with the store's rotation record (docs/design.md §9.5): NONE -> CLAIMING* ->
 *             ADDING* -> WRITING* -> GRACE -> REMOVING* -> NONE; WRITING -> ROLLBACK*; a
 *             takeover in phase removing: CLAIMING -> GRACE | REMOVING; a record in
 *             phase rolling_back (taken over, or this host's retry): CLAIMING -> ROLLBACK*
 *             the revocation watch after a removal: REMOVING -> WATCH -> WATCHING* ->
 *             WATCH ... -> NONE (a rotation may begin from WATCH); redis-acl-users'
 *             drain: REMOVING* -> DRAINING -> REMOVING* ... until no connection is left
 *             (* may call the store: through the source's queue, rotation class)
 *
 * Steps that change the store or Redis (CLAIMING ADDING WRITING ROLLBACK REMOVING) hold the
 * check back: a wake-up then only sets wake_pending, and the check runs when the step
 * is over. A claim starts only while no check runs (it is judged against what is
 * published); a rotation asked for during a check is latched (rot_requested) and begins
 * when the check ends.
 *
 * Events x states (check part; "busy" = FETCH, VALIDATE, REVALIDATE or a holding
 * rotation step):
 *   WAKE           IDLE: -> QUEUED, QUEUE_FETCH | QUEUED: DISPATCH | busy: wake_pending
 *   FETCH_START    QUEUED: -> FETCH, RUN_FETCH | else -EINVAL (a check queued before a
 *                  step began runs: the source's queue keeps it from the store step)
 *   FETCH_DONE     FETCH: NEW -> VALIDATE, RUN_VALIDATE; RECOVER (only in a recovery
 *                  check, else -EINVAL) -> REVALIDATE, RUN_REVALIDATE; other results -> IDLE,
 *                  CHECK_ENDED and the after-check rule; every result but RECOVER ends the
 *                  recovery | else -EINVAL
 *   VALIDATE_DONE  VALIDATE: -> IDLE, CHECK_ENDED, after-check rule | else -EINVAL
 *   REVALIDATE     IDLE and not held: -> REVALIDATE, RUN_REVALIDATE | else -EBUSY (the
 *                  driver tries again shortly: never beside a check or a holding step)
 *   REVALIDATE_DONE REVALIDATE: a recovery's candidates: -> IDLE, CHECK_ENDED, after-check,
 *                  recovery over; else .revoked: -> QUEUED, recovering, QUEUE_FETCH, STATUS
 *                  (the fresh fetch brings the candidates); else -> IDLE, STATUS and the
 *                  after-check rule without CHECK_ENDED (no store was read) | else -EINVAL
 *   after-check:   rot_requested: ROT_BEGIN (latch cleared, manual handed over);
 *                  else wake_pending and not held: -> QUEUED, QUEUE_FETCH
 *   STOP           any: stopping; from then on no event starts work
 * Events x states (rotation part):
 *   ROT_REQUEST    NONE|RETRY_WAIT|WATCH: check IDLE: ROT_BEGIN; else latched | else -EBUSY
 *   ROT_STEP(s)    the driver moves the rotation to s; -EINVAL when the move is not one
 *                  of these (any step may also go to NONE: done or abandoned, to
 *                  RETRY_WAIT: a failure, and stay where it is):
 *                    NONE, RETRY_WAIT -> CLAIMING AWAIT_FETCH GRACE REMOVING
 *                    CLAIMING -> AWAIT_FETCH ADDING GRACE REMOVING ROLLBACK
 *                    AWAIT_FETCH -> ADDING               GRACE -> REMOVING
 *                    ADDING -> ROLLBACK GRACE REMOVING WRITING
 *                    WRITING -> ROLLBACK GRACE REMOVING
 *                    REMOVING -> WATCH DRAINING   WATCH -> WATCHING CLAIMING
 *                    NONE -> WATCH (a watch a restart cut short goes on)
 *                    WATCHING -> WATCH         DRAINING -> REMOVING
 *                  CLAIMING needs check IDLE (-EBUSY). A store step: ROT_QUEUE_STORE;
 *                  another holding step: ROT_RUN; GRACE, RETRY_WAIT, NONE, WATCH, DRAINING:
 *                  ROT_ARM.
 *                  AWAIT_FETCH wakes the check. `wake` sets wake_pending. Leaving the
 *                  holding steps runs a pending wake-up. Always STATUS. While stopping:
 *                  the step is recorded, nothing else.
 *   ROT_STORE_START the source's queue started the store step: ROT_RUN | else -EINVAL
 *   ROT_PUBLISH    ADDING, WRITING: ROT_PUBLISH (the validated new version is published)
 *                  | -EINVAL
 * A refused event changes nothing and adds no effect.
 *
 * In flight (credsm_in_flight): a job of the credential is queued or on a worker (or a
 * rotation step holds it). A reload must not free a credential while it is (a freed
 * credential a job still used was a past bug): the old generation is freed when its
 * last job ends.
 */
#pragma once
#include <stdbool.h>

enum phase { PH_IDLE = 0, PH_QUEUED, PH_FETCH, PH_VALIDATE, PH_REVALIDATE };

/* Rotation (docs/design.md §9): the phase record is rotate.h's. */
enum rot_step {
    RS_NONE = 0,        /* idle: waiting for the schedule (or disabled) */
    RS_CLAIMING,        /* worker: rotate() on the store, check-and-set */
    RS_AWAIT_FETCH,     /* the next fetch brings the new password from the store (resuming;
                           vault-database: what Vault made) */
    RS_ADDING,          /* worker: ACL SETUSER >new on every node (redis-acl), then validate */
    RS_WRITING,         /* worker: the rotation record's flow writes the validated password
                           into the credential's entry (check-and-set), records phase
                           removing */
    RS_ROLLBACK,        /* worker: ACL SETUSER <new, store back to the old credential (with
                           the rotation record: phase rolling_back first, the record
                           deleted once every node confirmed) */
    RS_GRACE,           /* published; the old password goes when the timer fires */
    RS_REMOVING,        /* worker: ACL SETUSER <old on every node (azure-keys: regenerate
                           the old key) */
    RS_RETRY_WAIT,      /* a step failed; retried when the timer fires */
    RS_WATCH,           /* the old password is gone: ACL LOG is read again when the timer
                           fires (revocation watch); a rotation may begin (the watch ends) */
    RS_WATCHING,        /* worker: ACL LOG on every node, new failed AUTHs of the old
                           credential */
    RS_DRAINING,        /* redis-acl-users: the previous user still has connections;
                           REMOVING again when the timer fires (drain_check) */
    RS_N_STEPS,
};

struct credsm {
    enum phase check;
    enum rot_step rot;
    bool wake_pending;      /* woken while busy: check again when free */
    bool recovering;        /* this check looks for a credential to replace the published
                               one, which Redis refused at re-validation */
    bool rot_requested;     /* a rotation asked for during a check */
    bool rot_manual;        /* ... by the rotate command */
    bool stopping;
};

enum credsm_event_type {
    CSM_WAKE = 0,           /* poll timer, store wake-up, refresh, reload: check the store */
    CSM_FETCH_START,        /* the source's queue started the fetch */
    CSM_FETCH_DONE,         /* the fetch is back; .fetch says what it brought */
    CSM_VALIDATE_DONE,      /* the validation is back (published, kept, or refused) */
    CSM_ROT_REQUEST,        /* the schedule is due, or the rotate command (.manual) */
    CSM_ROT_STEP,           /* the rotation goes to .step (.store: that step calls the store;
                               .wake: the store changed, check it again) */
    CSM_ROT_STORE_START,    /* the source's queue started the rotation's store step */
    CSM_ROT_PUBLISH,        /* ADDING, WRITING: the new version validated; publish it */
    CSM_REVALIDATE,         /* re-validation is due: check the published credential */
    CSM_REVALIDATE_DONE,    /* the re-validation is back (.revoked: Redis refused it), or a
                               recovery's candidates were judged (one may be published) */
    CSM_STOP,               /* SIGTERM */
    CSM_N_EVENTS,
};

enum credsm_fetch_result {
    CSM_FR_ERROR = 0,       /* the store failed */
    CSM_FR_SAME,            /* the store has what is published */
    CSM_FR_NEW,             /* a new version to validate */
    CSM_FR_JUDGED,          /* a new version judged on the loop (validate = "none") */
    CSM_FR_TAKEN,           /* the rotation took the new version (it validates it itself) */
    CSM_FR_RECOVER,         /* a recovery check: candidates to validate in REVALIDATE */
    CSM_FR_N,
};

struct credsm_event {
    enum credsm_event_type type;
    enum credsm_fetch_result fetch;
    enum rot_step step;
    bool store, wake, manual;
    bool revoked;           /* REVALIDATE_DONE: Redis refused the published credential */
};

enum credsm_effect {
    CSM_FX_QUEUE_FETCH = 1u << 0,    /* push the fetch into the source's queue, dispatch */
    CSM_FX_DISPATCH = 1u << 1,       /* let the source's queue start what it may */
    CSM_FX_RUN_FETCH = 1u << 2,      /* hand the fetch to a worker */
    CSM_FX_RUN_VALIDATE = 1u << 3,   /* hand the validation to a worker */
    CSM_FX_CHECK_ENDED = 1u << 4,    /* a check ended: status, READY, --once */
    CSM_FX_ROT_BEGIN = 1u << 5,      /* begin a rotation (fx.manual); its data checks and the
                                        claim are the driver's */
    CSM_FX_ROT_QUEUE_STORE = 1u << 6, /* push the rotation's store step into the queue */
    CSM_FX_ROT_RUN = 1u << 7,        /* hand the rotation's step to a worker */
    CSM_FX_ROT_ARM = 1u << 8,        /* arm the rotation's timer for its step (due, grace,
                                        retry) */
    CSM_FX_ROT_PUBLISH = 1u << 9,    /* publish the rotation's new version */
    CSM_FX_STATUS = 1u << 10,        /* STATUS= and metrics */
    CSM_FX_RUN_REVALIDATE = 1u << 11, /* hand the re-validation (or a recovery's candidates)
                                         to a worker */
};

struct credsm_fx {
    unsigned mask;          /* enum credsm_effect bits; credsm_step only adds */
    bool manual;            /* ROT_BEGIN: asked for by the rotate command */
};

/* The transition function. 0, or -EINVAL (the event is not one of this state's) or
 * -EBUSY (a check runs, or a rotation is under way): then nothing changes. Pure. */
int credsm_step(struct credsm *sm, const struct credsm_event *ev, struct credsm_fx *fx);

/* The rotation step holds the check back (it changes the store or Redis). */
bool credsm_holds_check(const struct credsm *sm);
/* A job of the credential is queued or on a worker (or a rotation step waits for the
 * source's queue). */
bool credsm_in_flight(const struct credsm *sm);
const char *credsm_step_name(enum rot_step s);

/* Whether the store's offer is what is published: its version is the published one and
 * its peer (the other access key, NULL when none) the published `previous`. NULL
 * published_version: nothing is published. The one place that answers "is the peer key
 * published already". Pure. */
bool credsm_published(const char *published_version, const char *published_previous,
                      const char *version, const char *peer_version);
