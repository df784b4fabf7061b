/* A latency histogram in microseconds with about 6% precision (16 linear
 * sub-buckets per power of two), for percentiles without keeping samples. */
#ifndef CHANQ_CLI_HIST_H
#define CHANQ_CLI_HIST_H

#include <stdint.h>

#define HIST_BUCKETS 1000

/* Plain data: zero-initialise it (or hist_reset). One writer at a time. */
struct hist {
    uint64_t counts[HIST_BUCKETS]; /* samples per bucket */
    uint64_t total;                /* samples */
    uint64_t max_us;               /* largest sample */
};

void hist_reset(struct hist *h);
void hist_add(struct hist *h, uint64_t us);
/* Adds every sample of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The value (us) below which fraction q (0..1) of the samples fall; 0 when
 * empty. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
