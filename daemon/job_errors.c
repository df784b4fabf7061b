/* A job's error history (see job.h): a small ring in the job's extra
 * fields, allocated on the first failure, so jobs that never fail pay
 * nothing for it. */
#include "chanq_config.h"

#include "daemon/job.h"

#include <stdlib.h>
#include <string.h>

/* The longest prefix of s[0..len) of at most max bytes that does not end
 * inside a UTF-8 sequence (the text is answered as a JSON string). */
static size_t
utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

int
job_error_push(struct job *j, uint32_t attempt, const char *text, size_t len)
{
    struct job_extra *x = job_extra(j);
    if (!x || (!x->errors && !(x->errors = calloc(1, sizeof *x->errors))))
        return -1;
    char *copy = NULL;
    if (text && !(copy = strndup(text, utf8_cut(text, len, JOB_ERROR_TEXT_MAX))))
        return -1;
    struct job_errors *e = x->errors;
    struct job_error *slot;
    if (e->n == JOB_ERROR_HISTORY) {
        slot = &e->v[e->start];
        free(slot->text);
        e->start = (e->start + 1) % JOB_ERROR_HISTORY;
    } else {
        slot = &e->v[(e->start + e->n) % JOB_ERROR_HISTORY];
        e->n++;
    }
    slot->attempt = attempt;
    slot->text = copy;
    return 0;
}

size_t
job_errors_count(const struct job *j)
{
    return j->extra && j->extra->errors ? j->extra->errors->n : 0;
}

const struct job_error *
job_error_at(const struct job *j, size_t i)
{
    const struct job_errors *e = j->extra->errors;
    return &e->v[(e->start + i) % JOB_ERROR_HISTORY];
}

void
job_errors_free(struct job_errors *e)
{
    if (!e)
        return;
    for (unsigned i = 0; i < e->n; i++)
        free(e->v[(e->start + i) % JOB_ERROR_HISTORY].text);
    free(e);
}
