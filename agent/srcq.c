/* srcq: see srcq.h. */
#include "srcq.h"

void srcq_init(struct srcq *q, unsigned limit) {
    *q = (struct srcq){ .limit = limit ? limit : 1 };
}

bool srcq_push(struct srcq *q, struct srcq_op *op, enum srcq_class cls) {
    if (op->state != SRCQ_OP_IDLE || cls >= SRCQ_N_CLASSES)
        return false;
    op->cls = cls;
    op->state = SRCQ_OP_QUEUED;
    op->next = NULL;
    if (q->tail[cls])
        q->tail[cls]->next = op;
    else
        q->head[cls] = op;
    q->tail[cls] = op;
    q->queued++;
    return true;
}

static struct srcq_op *unlink_head(struct srcq *q, enum srcq_class cls) {
    struct srcq_op *op = q->head[cls];
    q->head[cls] = op->next;
    if (!q->head[cls])
        q->tail[cls] = NULL;
    op->next = NULL;
    q->queued--;
    return op;
}

struct srcq_op *srcq_next(struct srcq *q) {
    if (q->running >= q->limit)
        return NULL;
    for (int cls = 0; cls < SRCQ_N_CLASSES; cls++) {
        if (!q->head[cls])
            continue;
        struct srcq_op *op = unlink_head(q, (enum srcq_class)cls);
        op->state = SRCQ_OP_RUNNING;
        q->running++;
        return op;
    }
    return NULL;
}

void srcq_done(struct srcq *q, struct srcq_op *op) {
    if (op->state != SRCQ_OP_RUNNING)
        return;
    op->state = SRCQ_OP_IDLE;
    if (q->running)
        q->running--;
}

bool srcq_cancel(struct srcq *q, struct srcq_op *op) {
    if (op->state != SRCQ_OP_QUEUED)
        return false;
    struct srcq_op **pp = &q->head[op->cls], *prev = NULL;
    while (*pp && *pp != op) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return false;
    *pp = op->next;
    if (q->tail[op->cls] == op)
        q->tail[op->cls] = prev;
    op->next = NULL;
    op->state = SRCQ_OP_IDLE;
    q->queued--;
    return true;
}

void srcq_reset(struct srcq *q) {
    for (int cls = 0; cls < SRCQ_N_CLASSES; cls++)
        while (q->head[cls])
            unlink_head(q, (enum srcq_class)cls)->state = SRCQ_OP_IDLE;
    q->running = 0;
}
