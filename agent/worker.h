/* worker: a small thread pool for blocking work (store fetches, Redis validation).
 *
 * The loop submits a job; a worker runs job->run(job) off the loop; when it returns, the
 * job is queued back and the pool's eventfd becomes readable; the loop (an sd-event io
 * source set up by worker_pool_attach) then calls job->done(job) on the loop thread, in
 * completion order. So the loop never blocks on the network, and all state changes stay
 * on the loop. Jobs are owned by the submitter; the pool only links them.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

struct job {
    void (*run)(struct job *j);    /* worker thread */
    void (*done)(struct job *j);   /* loop thread; may free the job */
    struct job *next;              /* pool-private */
};

struct worker_pool;

/* Starts n threads. 0 and *ret, or -errno. */
int worker_pool_new(unsigned n, struct worker_pool **ret);
/* Adds the completion eventfd to the loop. */
int worker_pool_attach(struct worker_pool *p, sd_event *e);
void worker_pool_submit(struct worker_pool *p, struct job *j);
/* Jobs submitted and not yet done(). */
unsigned worker_pool_in_flight(const struct worker_pool *p);
/* Stops the threads: queued jobs are dropped (their done() is not called), running ones
 * get until deadline_usec (CLOCK_MONOTONIC) to finish. Returns true when every thread
 * was joined; false means some are still stuck in a job and the pool was leaked on
 * purpose (the caller exits soon after). */
bool worker_pool_stop(struct worker_pool *p, uint64_t deadline_usec);
