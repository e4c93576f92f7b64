/* credsm: see credsm.h. */
#include <errno.h>
#include <string.h>

#include "credsm.h"

static const char *const step_names[RS_N_STEPS] = {
    [RS_NONE] = "idle", [RS_CLAIMING] = "claiming", [RS_AWAIT_FETCH] = "reading-store",
    [RS_ADDING] = "adding", [RS_WRITING] = "writing", [RS_ROLLBACK] = "rolling-back", [RS_GRACE] = "grace",
    [RS_REMOVING] = "removing", [RS_RETRY_WAIT] = "retry-wait", [RS_WATCH] = "watching",
    [RS_WATCHING] = "reading-acl-log", [RS_DRAINING] = "draining",
};

const char *credsm_step_name(enum rot_step s) {
    return (unsigned)s < RS_N_STEPS ? step_names[s] : "?";
}

static bool holds(enum rot_step s) {
    return s == RS_CLAIMING || s == RS_ADDING || s == RS_WRITING || s == RS_ROLLBACK || s == RS_REMOVING ||
           s == RS_WATCHING;
}

bool credsm_holds_check(const struct credsm *sm) {
    return holds(sm->rot);
}

bool credsm_in_flight(const struct credsm *sm) {
    return sm->check != PH_IDLE || holds(sm->rot);
}

/* Where a rotation may go from each step, besides RETRY_WAIT and NONE (a failure and an
 * abandon or completion are possible from anywhere). */
static const unsigned rot_moves[RS_N_STEPS] = {
    [RS_NONE] = 1u << RS_CLAIMING | 1u << RS_AWAIT_FETCH | 1u << RS_GRACE | 1u << RS_REMOVING |
                1u << RS_WATCH,
    [RS_CLAIMING] = 1u << RS_AWAIT_FETCH | 1u << RS_ADDING | 1u << RS_GRACE | 1u << RS_REMOVING |
                    1u << RS_ROLLBACK,
    [RS_AWAIT_FETCH] = 1u << RS_ADDING,
    [RS_ADDING] = 1u << RS_ROLLBACK | 1u << RS_GRACE | 1u << RS_REMOVING | 1u << RS_WRITING,
    [RS_WRITING] = 1u << RS_ROLLBACK | 1u << RS_GRACE | 1u << RS_REMOVING,
    [RS_ROLLBACK] = 0,
    [RS_GRACE] = 1u << RS_REMOVING,
    [RS_REMOVING] = 1u << RS_WATCH | 1u << RS_DRAINING,
    [RS_RETRY_WAIT] = 1u << RS_CLAIMING | 1u << RS_AWAIT_FETCH | 1u << RS_GRACE | 1u << RS_REMOVING,
    [RS_WATCH] = 1u << RS_WATCHING | 1u << RS_CLAIMING,
    [RS_WATCHING] = 1u << RS_WATCH,
    [RS_DRAINING] = 1u << RS_REMOVING,
};

static void queue_check(struct credsm *sm, struct credsm_fx *fx) {
    sm->check = PH_QUEUED;
    fx->mask |= CSM_FX_QUEUE_FETCH;
}

/* The check part is IDLE again: a latched rotation begins, else a wake-up that came
 * meanwhile runs. */
static void run_latched(struct credsm *sm, struct credsm_fx *fx) {
    sm->recovering = false;
    if (sm->stopping)
        return;
    if (sm->rot_requested) {
        fx->mask |= CSM_FX_ROT_BEGIN;
        fx->manual = sm->rot_manual;
        sm->rot_requested = sm->rot_manual = false;
        return;   /* the wake-up waits for the rotation's step (or runs at its refusal) */
    }
    if (sm->wake_pending && !holds(sm->rot)) {
        sm->wake_pending = false;
        queue_check(sm, fx);
    }
}

/* A check ended (the check part is IDLE). */
static void after_check(struct credsm *sm, struct credsm_fx *fx) {
    fx->mask |= CSM_FX_CHECK_ENDED;
    run_latched(sm, fx);
}

static bool busy(const struct credsm *sm) {
    return sm->check == PH_FETCH || sm->check == PH_VALIDATE || sm->check == PH_REVALIDATE ||
           holds(sm->rot);
}

static int on_wake(struct credsm *sm, struct credsm_fx *fx) {
    if (busy(sm))
        sm->wake_pending = true;
    else if (sm->check == PH_QUEUED)
        fx->mask |= CSM_FX_DISPATCH;
    else
        queue_check(sm, fx);
    return 0;
}

static int on_fetch_done(struct credsm *sm, enum credsm_fetch_result r, struct credsm_fx *fx) {
    if (sm->check != PH_FETCH || r >= CSM_FR_N || (r == CSM_FR_RECOVER && !sm->recovering))
        return -EINVAL;
    if (sm->stopping) {
        sm->check = PH_IDLE;
        sm->recovering = false;
        return 0;
    }
    if (r == CSM_FR_RECOVER) {
        sm->check = PH_REVALIDATE;
        fx->mask |= CSM_FX_RUN_REVALIDATE;
        return 0;
    }
    sm->recovering = false;   /* nothing (else) to try: the recovery is over */
    if (r == CSM_FR_NEW) {
        sm->check = PH_VALIDATE;
        fx->mask |= CSM_FX_RUN_VALIDATE;
        return 0;
    }
    sm->check = PH_IDLE;
    after_check(sm, fx);
    return 0;
}

/* Re-validation: never beside a check or a step that changes the store or Redis. */
static int on_revalidate(struct credsm *sm, struct credsm_fx *fx) {
    if (sm->check != PH_IDLE || holds(sm->rot))
        return -EBUSY;
    sm->check = PH_REVALIDATE;
    fx->mask |= CSM_FX_RUN_REVALIDATE;
    return 0;
}

static int on_revalidate_done(struct credsm *sm, bool revoked, struct credsm_fx *fx) {
    if (sm->check != PH_REVALIDATE)
        return -EINVAL;
    sm->check = PH_IDLE;
    if (sm->stopping) {
        sm->recovering = false;
        return 0;
    }
    if (sm->recovering) {   /* a recovery check's candidates were judged */
        after_check(sm, fx);
        return 0;
    }
    fx->mask |= CSM_FX_STATUS;
    if (revoked) {   /* read the store afresh: its other key may work */
        sm->recovering = true;
        queue_check(sm, fx);
        return 0;
    }
    run_latched(sm, fx);
    return 0;
}

static int on_rot_request(struct credsm *sm, bool manual, struct credsm_fx *fx) {
    if (sm->rot != RS_NONE && sm->rot != RS_RETRY_WAIT && sm->rot != RS_WATCH)
        return -EBUSY;
    if (sm->check != PH_IDLE) {
        sm->rot_requested = true;
        sm->rot_manual = sm->rot_manual || manual;
        return 0;
    }
    fx->mask |= CSM_FX_ROT_BEGIN;
    fx->manual = manual;
    return 0;
}

static int on_rot_step(struct credsm *sm, const struct credsm_event *ev, struct credsm_fx *fx) {
    enum rot_step to = ev->step;
    if ((unsigned)to >= RS_N_STEPS)
        return -EINVAL;
    if (to != RS_NONE && to != RS_RETRY_WAIT && to != sm->rot && !(rot_moves[sm->rot] & 1u << to))
        return -EINVAL;
    if (to == RS_CLAIMING && sm->check != PH_IDLE)
        return -EBUSY;   /* never a claim beside a check (nor rotate() beside fetch()) */
    sm->rot = to;
    if (ev->wake)
        sm->wake_pending = true;
    fx->mask |= CSM_FX_STATUS;
    if (holds(to)) {
        fx->mask |= ev->store ? CSM_FX_ROT_QUEUE_STORE : CSM_FX_ROT_RUN;
        return 0;
    }
    if (to == RS_GRACE || to == RS_RETRY_WAIT || to == RS_NONE || to == RS_WATCH || to == RS_DRAINING)
        fx->mask |= CSM_FX_ROT_ARM;
    if (to == RS_AWAIT_FETCH)
        sm->wake_pending = true;
    if (sm->wake_pending && !sm->stopping) {
        if (sm->check == PH_IDLE) {
            sm->wake_pending = false;
            queue_check(sm, fx);
        } else if (sm->check == PH_QUEUED) {
            sm->wake_pending = false;
            fx->mask |= CSM_FX_DISPATCH;
        }
    }
    return 0;
}

int credsm_step(struct credsm *sm, const struct credsm_event *ev, struct credsm_fx *fx) {
    if (sm->stopping && ev->type != CSM_FETCH_DONE && ev->type != CSM_VALIDATE_DONE &&
        ev->type != CSM_REVALIDATE_DONE && ev->type != CSM_STOP && ev->type != CSM_ROT_STEP)
        return 0;   /* stopping: nothing new starts; jobs still come back */
    switch (ev->type) {
    case CSM_WAKE:
        return on_wake(sm, fx);
    case CSM_FETCH_START:
        if (sm->check != PH_QUEUED)
            return -EINVAL;
        sm->check = PH_FETCH;
        fx->mask |= CSM_FX_RUN_FETCH;
        return 0;
    case CSM_FETCH_DONE:
        return on_fetch_done(sm, ev->fetch, fx);
    case CSM_VALIDATE_DONE:
        if (sm->check != PH_VALIDATE)
            return -EINVAL;
        sm->check = PH_IDLE;
        if (!sm->stopping)
            after_check(sm, fx);
        return 0;
    case CSM_ROT_REQUEST:
        return on_rot_request(sm, ev->manual, fx);
    case CSM_ROT_STEP:
        if (sm->stopping) {
            sm->rot = (unsigned)ev->step < RS_N_STEPS ? ev->step : sm->rot;
            return 0;
        }
        return on_rot_step(sm, ev, fx);
    case CSM_ROT_STORE_START:
        if (!holds(sm->rot))
            return -EINVAL;
        fx->mask |= CSM_FX_ROT_RUN;
        return 0;
    case CSM_ROT_PUBLISH:
        if (sm->rot != RS_ADDING && sm->rot != RS_WRITING)
            return -EINVAL;
        fx->mask |= CSM_FX_ROT_PUBLISH;
        return 0;
    case CSM_REVALIDATE:
        return on_revalidate(sm, fx);
    case CSM_REVALIDATE_DONE:
        return on_revalidate_done(sm, ev->revoked, fx);
    case CSM_STOP:
        sm->stopping = true;
        return 0;
    case CSM_N_EVENTS:
        break;
    }
    return -EINVAL;
}

static bool same(const char *a, const char *b) {
    return a && b && strcmp(a, b) == 0;
}

bool credsm_published(const char *published_version, const char *published_previous,
                      const char *version, const char *peer_version) {
    return same(published_version, version) && (!peer_version || same(published_previous, peer_version));
}
