/* "run_at" (submit, nack): an absolute time, ms since the epoch, instead
 * of a relative delay_ms. A time in the past means ready now; a time more
 * than delay_ms's bound ahead is refused. Any thread. */
#ifndef CHANQ_DAEMON_RUN_AT_H
#define CHANQ_DAEMON_RUN_AT_H

#include <stdint.h>

#include "proto/err.h"

#define RUN_AT_MAX_AHEAD_MS (INT64_C(365) * 86400000) /* delay_ms's upper bound */

/* The delay run_at means at now_ms (>= 0) into *delay_ms: 0, or -1 with
 * err (bad_request) when it is too far ahead. */
static inline int
run_at_delay(int64_t run_at, int64_t now_ms, int64_t *delay_ms, struct proto_error *err)
{
    if (run_at - now_ms > RUN_AT_MAX_AHEAD_MS) {
        proto_error_set(err, PROTO_BAD_REQUEST,
                        "field 'run_at': %lld is more than 365 days ahead (now is %lld)",
                        (long long)run_at, (long long)now_ms);
        return -1;
    }
    *delay_ms = run_at > now_ms ? run_at - now_ms : 0;
    return 0;
}

#endif
