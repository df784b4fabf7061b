/* chanq loadtest: log-linear latency histogram. */
#include "chanq_config.h"

#include "clients/cli/hist.h"

#include <string.h>

#define LINEAR 32 /* values below this get a bucket each */
#define SUB 16    /* sub-buckets per power of two above */

static unsigned
bucket_of(uint64_t v)
{
    if (v < LINEAR)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 5 */
    unsigned idx = LINEAR + (e - 5) * SUB + (unsigned)((v >> (e - 4)) & (SUB - 1));
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* Upper bound of bucket idx. */
static uint64_t
bucket_top(unsigned idx)
{
    if (idx < LINEAR)
        return idx;
    unsigned e = 5 + (idx - LINEAR) / SUB;
    uint64_t m = SUB + (idx - LINEAR) % SUB;
    return ((m + 1) << (e - 4)) - 1;
}

void
hist_reset(struct hist *h)
{
    memset(h, 0, sizeof *h);
}

void
hist_add(struct hist *h, uint64_t us)
{
    h->counts[bucket_of(us)]++;
    h->total++;
    if (us > h->max_us)
        h->max_us = us;
}

void
hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    if (src->max_us > dst->max_us)
        dst->max_us = src->max_us;
}

uint64_t
hist_quantile(const struct hist *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->total);
    if (rank >= h->total)
        rank = h->total - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen > rank) {
            uint64_t top = bucket_top(i);
            return top < h->max_us ? top : h->max_us;
        }
    }
    return h->max_us;
}
