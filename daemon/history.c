/* The rate history: a fixed ring of per-period deltas (daemon/history.h). */
#include "chanq_config.h"

#include "daemon/history.h"
#include "daemon/log.h"

#include <stdlib.h>
#include <sys/time.h>

struct slot {
    int64_t end_s;                /* the period's end, seconds since the epoch */
    struct history_counts delta;  /* what happened during it */
};

struct history {
    history_sample_fn *sample;   /* running totals */
    void *arg;                   /* passed to sample */
    struct event *timer;         /* fires every period; NULL without a base */
    int64_t period_ms;
    struct slot *ring;           /* allocated once: slots entries */
    size_t slots;
    size_t next;                 /* the slot the next tick fills */
    size_t filled;               /* how many hold data (<= slots) */
    struct history_counts last;  /* the totals at the previous sample */
    bool have_last;              /* last is a real sample */
    struct history_counts totals; /* what grew since start */
};

/* What grew from a to b; a total that went down (a queue deleted) grew by
 * nothing. */
static uint64_t
grown(uint64_t a, uint64_t b)
{
    return b > a ? b - a : 0;
}

void
history_tick(struct history *h, int64_t now_ms)
{
    struct history_counts now;
    if (h->sample(h->arg, &now) < 0)
        return; /* a gap: the next sample's slot covers it */
    if (!h->have_last) {
        h->last = now;
        h->have_last = true;
        return;
    }
    struct slot *s = &h->ring[h->next];
    s->end_s = now_ms / 1000;
    s->delta.submitted = grown(h->last.submitted, now.submitted);
    s->delta.processed = grown(h->last.processed, now.processed);
    s->delta.failed = grown(h->last.failed, now.failed);
    h->totals.submitted += s->delta.submitted;
    h->totals.processed += s->delta.processed;
    h->totals.failed += s->delta.failed;
    h->last = now;
    h->next = (h->next + 1) % h->slots;
    if (h->filled < h->slots)
        h->filled++;
}

static int64_t
wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    history_tick(arg, wall_ms());
}

struct history *
history_new(struct event_base *base, int64_t period_ms, size_t slots, history_sample_fn *sample,
            void *arg)
{
    if (period_ms < 100 || slots < 2 || slots > 100000) {
        log_error("history: bad shape (%lld ms x %zu slots)", (long long)period_ms, slots);
        return NULL;
    }
    struct history *h = calloc(1, sizeof *h);
    if (h)
        h->ring = calloc(slots, sizeof *h->ring);
    if (!h || !h->ring) {
        free(h);
        log_error("history: out of memory");
        return NULL;
    }
    h->sample = sample;
    h->arg = arg;
    h->period_ms = period_ms;
    h->slots = slots;
    if (base) {
        struct timeval tv = {(time_t)(period_ms / 1000), (suseconds_t)(period_ms % 1000 * 1000)};
        h->timer = event_new(base, -1, EV_PERSIST, on_timer, h);
        if (!h->timer || event_add(h->timer, &tv) != 0) {
            log_error("history: cannot start its timer");
            history_free(h);
            return NULL;
        }
    }
    history_tick(h, wall_ms()); /* the baseline */
    return h;
}

static json_t *
counts_json(const struct history_counts *c)
{
    return json_pack("{s:I, s:I, s:I}", "submitted", (json_int_t)c->submitted, "processed",
                     (json_int_t)c->processed, "failed", (json_int_t)c->failed);
}

json_t *
history_json(const struct history *h)
{
    json_t *points = json_array();
    size_t first = (h->next + h->slots - h->filled) % h->slots;
    for (size_t i = 0; points && i < h->filled; i++) {
        const struct slot *s = &h->ring[(first + i) % h->slots];
        json_t *p = json_pack("[I, I, I, I]", (json_int_t)s->end_s,
                              (json_int_t)s->delta.submitted, (json_int_t)s->delta.processed,
                              (json_int_t)s->delta.failed);
        if (!p || json_array_append_new(points, p) != 0) {
            json_decref(points);
            points = NULL;
        }
    }
    json_t *totals = counts_json(&h->totals);
    if (!points || !totals) {
        json_decref(points);
        json_decref(totals);
        return NULL;
    }
    return json_pack("{s:I, s:I, s:o, s:o}", "period_ms", (json_int_t)h->period_ms, "slots",
                     (json_int_t)h->slots, "totals", totals, "points", points);
}

void
history_free(struct history *h)
{
    if (!h)
        return;
    if (h->timer)
        event_free(h->timer);
    free(h->ring);
    free(h);
}
