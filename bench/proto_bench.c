/* proto_bench: decoded+validated submit requests per second on one core.
 * Each run decodes the same pipelined stream of submit lines (100-byte
 * payload) through the frame decoder and msg_decode(), then frees each
 * request; the figure printed is the median of the runs. Usage:
 *   bench/proto_bench [runs] [requests-per-run] */
#include "chanq_config.h"

#include "proto/frame.h"
#include "proto/msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One submit line whose payload is exactly 100 bytes of compact JSON. */
static size_t
make_line(char *out, size_t cap, int i)
{
    char payload[128];
    int n = snprintf(payload, sizeof payload,
                     "{\"to\":\"user%06d@example.com\",\"subject\":\"hello\",\"n\":%d,\"pad\":\"",
                     i, i);
    while (n < 98)
        payload[n++] = 'x';
    payload[n++] = '"';
    payload[n++] = '}';
    payload[n] = '\0';
    return (size_t)snprintf(
        out, cap, "{\"op\":\"submit\",\"queue\":\"mail\",\"payload\":%s,\"rid\":%d}\n", payload, i);
}

/* Decodes every line of stream[0..len) fed in 64 KiB reads, as the daemon
 * would; returns how many requests decoded successfully. */
static long
run_once(const char *stream, size_t len, const struct msg_limits *lim)
{
    struct frame *f = frame_new(1 << 20);
    long ok = 0;
    for (size_t off = 0; off < len; off += 65536) {
        size_t n = len - off < 65536 ? len - off : 65536;
        frame_push(f, stream + off, n);
        const char *line;
        size_t ll;
        enum frame_status st;
        while ((st = frame_next_line(f, &line, &ll)) != FRAME_MORE) {
            if (st != FRAME_LINE)
                continue;
            struct request req;
            struct proto_error err;
            if (msg_decode(line, ll, lim, &req, &err) == 0 && req.payload.len == 100)
                ok++;
            request_clear(&req);
        }
    }
    frame_free(f);
    return ok;
}

int
main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    long count = argc > 2 ? atol(argv[2]) : 1000000;
    if (runs < 1 || runs > 101 || count < 1) {
        fprintf(stderr, "usage: %s [runs 1..101] [requests>0]\n", argv[0]);
        return 2;
    }
    char *stream = malloc((size_t)count * 256);
    if (!stream)
        return 1;
    size_t len = 0;
    for (long i = 0; i < count; i++)
        len += make_line(stream + len, 256, (int)i);
    struct msg_limits lim = {MSG_DEFAULT_MAX_PAYLOAD};
    double rates[101];
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        long ok = run_once(stream, len, &lim);
        double dt = now_s() - t0;
        if (ok != count) {
            fprintf(stderr, "proto_bench: only %ld of %ld requests decoded\n", ok, count);
            return 1;
        }
        rates[r] = (double)count / dt;
    }
    qsort(rates, (size_t)runs, sizeof rates[0], cmp_double);
    printf("proto_bench: submit decode+validate (100-byte payload, %zu-byte lines): "
           "%.0f requests/s (median of %d runs of %ld; min %.0f, max %.0f)\n",
           len / (size_t)count, rates[runs / 2], runs, count, rates[0], rates[runs - 1]);
    free(stream);
    return 0;
}
