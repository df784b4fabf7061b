/* Jobs: allocation, references, states and ids. */
#include "chanq_config.h"

#include "daemon/job.h"

#include "core/chan.h"
#include "core/timer.h"

#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {
    [JOB_DELAYED] = "delayed", [JOB_QUEUED] = "queued",       [JOB_RESERVED] = "reserved",
    [JOB_DONE] = "done",       [JOB_DEAD] = "dead",           [JOB_CANCELLED] = "cancelled",
    [JOB_EXPIRED] = "expired",
};

struct job *
job_new(uint64_t id, struct queue *q, const char *payload, size_t len)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->payload = malloc(len + 1);
    if (!j->payload) {
        free(j);
        return NULL;
    }
    memcpy(j->payload, payload, len);
    j->payload[len] = '\0';
    j->payload_len = (uint32_t)len;
    j->id = id;
    j->queue = q;
    atomic_init(&j->refs, 1);
    return j;
}

void
job_ref(struct job *j)
{
    atomic_fetch_add_explicit(&j->refs, 1, memory_order_relaxed);
}

static void
extra_free(struct job_extra *x)
{
    if (!x)
        return;
    free(x->result);
    free(x->error);
    if (x->done)
        chan_unref(x->done);
    timer_free(x->deadline_timer);
    if (x->parent)
        job_unref(x->parent);
    free(x);
}

void
job_unref(struct job *j)
{
    if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
        return;
    timer_free(j->timer);
    extra_free(j->extra);
    free(j->payload);
    free(j);
}

struct job_extra *
job_extra(struct job *j)
{
    if (!j->extra)
        j->extra = calloc(1, sizeof *j->extra);
    return j->extra;
}

bool
job_state_is_final(enum job_state s)
{
    return s == JOB_DONE || s == JOB_DEAD || s == JOB_CANCELLED || s == JOB_EXPIRED;
}

const char *
job_state_name(enum job_state s)
{
    return state_names[s];
}

size_t
job_id_format(uint64_t id, char *buf)
{
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + id % 10);
        id /= 10;
    } while (id);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

bool
job_id_parse(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}
