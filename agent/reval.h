/* reval: continuous re-validation of the published credential (docs/design.md §7).
 *
 * Every `redis.revalidate_interval` (a random splay of +-10% drawn for each interval;
 * "0s" turns it off; never with validate = "none" nor --once) the agent asks the nodes
 * to accept the credential it publishes, even when the store's version did not change:
 * one connection, AUTH and PING per node, through validate_candidate() on the worker
 * pool. It is the check part's REVALIDATE phase (credsm.h), so it never runs beside a
 * check or a rotation step that changes the store or Redis; a timer that fires then
 * tries again a second later.
 *
 * The verdict (reval_judge, pure): refused under "all" when a node refused the
 * credential, under "any" when every node refused it; accepted as the policy accepts;
 * anything else (unreachable nodes, TLS problems, unexpected replies) is inconclusive and
 * changes nothing. An unreachable node is never a refusal.
 *
 * A refusal: state `revoked`, an error event (LOG_MID_REVOKED), the refused version
 * latched, and a recovery check (credsm's `recovering`): the source's fresh fetch and the
 * published `previous` give the candidates (never the refused version), tried in this
 * order: the store's current version, its other key (RC_CAND_PEER), the previous
 * version. The first the policy accepts is published with previous = none (never the
 * refused one), on_change runs and a notice says so. The state is then `current` when
 * what is published is one of the store's versions (azure-redis-keys' other key), else
 * it stays `revoked` (running on the previous version while the store's is refused).
 *
 * No flap (reval_offer, pure): while the store offers the latched version, a check
 * neither validates nor publishes it; a store version other than the latch is judged as
 * usual and drops the latch; the latch also goes when Redis accepts the published
 * credential again. A credential Redis refused is never carried as `previous` by the
 * next publish (reval_previous_refused).
 *
 * Loop thread only, except the job's run() (a worker; it touches only its job). reval.c
 * never calls agent.c: agent.c calls it, hands it the publish function, and carries out
 * the machine's effects.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "plugin.h"
#include "validate.h"
#include "worker.h"

#define REVAL_MAX_CANDIDATES (RC_MAX_CANDIDATES + 1)   /* the store's, and `previous` */
#define REVAL_BUSY_RETRY_USEC (1000 * 1000)             /* a check or a step held it back */

struct cred_rt;
struct reval_job;

struct reval_rt {
    sd_event_source *timer;
    sd_event_time_handler_t on_timer;     /* agent.c's: reval_timer(), then its effects */
    uint64_t due_mono;                    /* CLOCK_MONOTONIC usec; 0 = not armed */
    int64_t last_at;                      /* the last re-validation's end, unix s; 0 = never */
    char *revoked_version;                /* heap: the version Redis refused; NULL = none */
    bool published_refused;               /* the published credential was refused */
    bool said;                            /* "nothing replaces it" was logged for the latch */
    char *why;                            /* heap: last_error while revoked; NULL = none */
    struct reval_job *job;                /* prepared or on a worker; NULL between */
};

/* ---- pure ---- */

enum reval_verdict { REVAL_ACCEPTED = 0, REVAL_REFUSED, REVAL_INCONCLUSIVE };
enum reval_verdict reval_judge(enum validate_policy policy, const struct validate_result *r);
const char *reval_verdict_to_string(enum reval_verdict v);
/* The delay to the next re-validation: interval +-10%, from 64 random bits. */
uint64_t reval_delay(uint64_t interval_usec, uint64_t rnd);

/* What a check does with the store's offer (version and its peer, NULL when none). */
enum reval_take {
    REVAL_TAKE_NONE = 0,   /* judge it as usual */
    REVAL_TAKE_CURRENT,    /* the store offers the refused version, and what is published
                              is its other version: still current, nothing to validate */
    REVAL_TAKE_REVOKED,    /* the store offers the refused version: keep what is published,
                              the state stays `revoked`, nothing to validate */
    REVAL_TAKE_RECOVER,    /* a recovery check: the candidates went to the job */
};
/* The no-flap rule. revoked: the latched version ("" none); published: what is
 * published (NULL: nothing). While something else is published, a peer that is neither
 * published nor refused is judged as usual (the other key was regenerated since), the
 * latch kept. */
enum reval_take reval_offer(const char *revoked, const char *published, const char *version,
                            const char *peer);

/* ---- loop ---- */

/* After a credential is built (start, reload): arms its timer (a reload keeps the due
 * time cred_carry handed over) when re-validation is on. */
void reval_init(struct cred_rt *c, sd_event_time_handler_t on_timer);
/* Reload: what the running generation's credential knew moves to c. */
void reval_carry(struct cred_rt *c, struct cred_rt *old);
/* SIGTERM, or the generation retired: the timer never fires again. */
void reval_stop(struct cred_rt *c);
/* Frees the timer, the job (secrets wiped) and the texts. */
void reval_clear(struct cred_rt *c);
/* The timer fired: the machine's REVALIDATE (or, when busy, again in a second). */
void reval_timer(struct cred_rt *c);
/* The machine's RUN_REVALIDATE: the job to hand to a worker (run() set; the caller sets
 * done() and submits it). NULL: nothing to validate; the machine was told already. */
struct job *reval_job(struct cred_rt *c);
struct cred_rt *reval_job_cred(struct job *j);
/* The job is back (loop): judges, publishes a replacement through publish (which must
 * publish cand with no `previous` and return 0 or -errno), logs, sets the state, feeds
 * the machine REVALIDATE_DONE, re-arms the timer and frees the job. */
typedef int (*reval_publish_fn)(struct cred_rt *c, struct rc_candidate *cand);
void reval_job_done(struct cred_rt *c, reval_publish_fn publish);
/* From fetch_done with the store's candidates (n < 0: the fetch failed; the candidates
 * the recovery uses are moved out of cands). The state is set for CURRENT and REVOKED. */
enum reval_take reval_take_fetched(struct cred_rt *c, struct rc_candidate *cands, int n);
/* A publish must not carry the published credential as `previous`: Redis refused it. */
bool reval_previous_refused(const struct cred_rt *c);
/* After any publish succeeded. */
void reval_after_publish(struct cred_rt *c);
/* `redis-creds refresh`: the store's refused version is judged again (unless it is what
 * is published: the re-validation judges that one). */
void reval_forget(struct cred_rt *c);
/* The `revalidation` member of a status row: null when off. */
json_t *reval_status_json(const struct cred_rt *c, uint64_t mono, int64_t real);
