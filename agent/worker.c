/* worker: see worker.h. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

#include "rctime.h"

struct worker_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *queue_head, *queue_tail;   /* submitted, not started */
    struct job *done_head, *done_tail;     /* finished, done() pending */
    unsigned in_flight;                    /* loop thread only */
    bool stopping;
    int efd;
    sd_event_source *src;
    unsigned n_threads;
    pthread_t *threads;
};

static void push(struct job **head, struct job **tail, struct job *j) {
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static void *worker_main(void *arg) {
    struct worker_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->queue_head && !p->stopping)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->stopping) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        struct job *j = p->queue_head;
        p->queue_head = j->next;
        if (!p->queue_head)
            p->queue_tail = NULL;
        pthread_mutex_unlock(&p->lock);

        j->run(j);

        pthread_mutex_lock(&p->lock);
        push(&p->done_head, &p->done_tail, j);
        pthread_mutex_unlock(&p->lock);
        uint64_t one = 1;
        while (write(p->efd, &one, sizeof one) < 0 && errno == EINTR)
            ;
    }
}

int worker_pool_new(unsigned n, struct worker_pool **ret) {
    struct worker_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->threads = calloc(n, sizeof *p->threads);
    p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!p->threads || p->efd < 0) {
        int r = p->efd < 0 ? -errno : -ENOMEM;
        if (p->efd >= 0)
            close(p->efd);
        free(p->threads);
        free(p);
        return r;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    /* glibc gives each thread that allocates an arena of its own (a 132 KiB heap that stays
     * about 100 KiB resident): with one shared arena the workers, whose jobs wait on the
     * network, not on malloc, add nothing to the agent's RSS (docs/benchmarks.md, memory). */
    mallopt(M_ARENA_MAX, 1);
    for (; p->n_threads < n; p->n_threads++) {
        int r = pthread_create(&p->threads[p->n_threads], NULL, worker_main, p);
        if (r != 0) {
            worker_pool_stop(p, 0);
            return -r;
        }
    }
    *ret = p;
    return 0;
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
    struct worker_pool *p = userdata;
    uint64_t v;
    while (read(p->efd, &v, sizeof v) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&p->lock);
    struct job *j = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->lock);
    while (j) {
        struct job *next = j->next;
        p->in_flight--;
        j->done(j);   /* may free j, may submit new jobs */
        j = next;
    }
    return 0;
}

int worker_pool_attach(struct worker_pool *p, sd_event *e) {
    return sd_event_add_io(e, &p->src, p->efd, EPOLLIN, on_done, p);
}

void worker_pool_submit(struct worker_pool *p, struct job *j) {
    p->in_flight++;
    pthread_mutex_lock(&p->lock);
    push(&p->queue_head, &p->queue_tail, j);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

unsigned worker_pool_in_flight(const struct worker_pool *p) {
    return p->in_flight;
}

bool worker_pool_stop(struct worker_pool *p, uint64_t deadline_usec) {
    if (!p)
        return true;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    p->queue_head = p->queue_tail = NULL;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);

    bool all = true;
    for (unsigned i = 0; i < p->n_threads; i++) {
        /* pthread_timedjoin_np measures against CLOCK_REALTIME: convert. */
        struct timespec ts;
        uint64_t now = rctime_mono_usec();
        uint64_t left = deadline_usec > now ? deadline_usec - now : 0;
        if (left > (uint64_t)INT64_MAX / 2)
            left = (uint64_t)INT64_MAX / 2;   /* a saturated deadline: as good as never */
        int64_t abs_us = rctime_real_usec() + (int64_t)left;
        ts.tv_sec = (time_t)(abs_us / 1000000);
        ts.tv_nsec = (long)(abs_us % 1000000) * 1000;
        if (pthread_timedjoin_np(p->threads[i], NULL, &ts) != 0)
            all = false;
    }
    if (!all)
        return false;   /* a thread still runs a job that points into p: leak p */
    p->src = sd_event_source_disable_unref(p->src);
    close(p->efd);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p->threads);
    free(p);
    return true;
}
