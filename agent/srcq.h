/* srcq: the queue of store operations of one source instance (fetch, rotate, and the
 * token refreshes a fetch does).
 *
 * "Never more calls at once on one instance than it allows" is this queue's property:
 * srcq_next() hands out an operation only while fewer than `limit` run. Operations wait
 * in two classes, and a rotation step always goes ahead of routine fetches (a rotation
 * holds its credential's fetches back, so it should not also wait behind a thousand
 * others); within a class, first come first served.
 *
 * The queue only links operations the caller owns (embedded in its credential); it
 * allocates nothing, calls nothing and knows no threads: the agent's loop pushes,
 * starts what srcq_next() returns, and calls srcq_done() when the job is back. An
 * operation is in at most one place: idle, queued, or running.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* The number of operations an instance runs at once when its plugin declares nothing:
 * one, which every plugin before ABI 3 assumes (plugin.h: "never concurrently on one
 * instance"). */
#define SRCQ_DEFAULT_LIMIT 1u

enum srcq_class {
    SRCQ_ROTATION = 0,   /* a rotation's store step (claim, roll back, regenerate) */
    SRCQ_FETCH,          /* a routine check of the store */
    SRCQ_N_CLASSES,
};

enum srcq_op_state { SRCQ_OP_IDLE = 0, SRCQ_OP_QUEUED, SRCQ_OP_RUNNING };

struct srcq_op {
    enum srcq_class cls;
    enum srcq_op_state state;
    struct srcq_op *next;    /* queue-private */
};

struct srcq {
    unsigned limit;          /* >= 1 */
    unsigned running;
    size_t queued;
    struct srcq_op *head[SRCQ_N_CLASSES], *tail[SRCQ_N_CLASSES];
};

/* An empty queue allowing `limit` operations at once (0 is taken as 1). */
void srcq_init(struct srcq *q, unsigned limit);
/* Queues op (idle) in class cls. false when op is queued or running already (nothing
 * changes: it is one operation, not two). */
bool srcq_push(struct srcq *q, struct srcq_op *op, enum srcq_class cls);
/* The next operation to start, marked running, or NULL when `limit` run already or
 * nothing waits. */
struct srcq_op *srcq_next(struct srcq *q);
/* A running operation ended: it is idle again and its slot is free. */
void srcq_done(struct srcq *q, struct srcq_op *op);
/* Takes a queued op out (its credential is going away); false when it was not queued. */
bool srcq_cancel(struct srcq *q, struct srcq_op *op);
/* Empties the queue (the operations become idle) and forgets the running count: the
 * instance is gone or handed over. */
void srcq_reset(struct srcq *q);
