/* chanq loadtest's per-second series, written as CSV or as a self-made SVG
 * chart (no dependencies): queue depth, submit/ack rates, p99 latency, RSS. */
#ifndef CHANQ_CLI_CHART_H
#define CHANQ_CLI_CHART_H

#include <stddef.h>

/* One second of a load test. -1 marks a figure the server did not report. */
struct sample {
    double t;            /* seconds since the start */
    double submitted;    /* submits answered ok in this second */
    double acked;        /* acks answered ok in this second */
    double rejected;     /* submits refused (queue_full / timeout) */
    double depth;        /* queued jobs at the end of the second */
    double capacity;     /* queue capacity */
    double waiting_submitters; /* submits the server holds back */
    double blocked_ms;   /* server's blocked_ms total for the queue so far */
    double p50_ms, p99_ms; /* latency submit -> ack, jobs acked this second */
    double rss_mib;      /* chanqd resident memory */
};

/* Writes the series; 0, or -1 with errno. */
int chart_write_csv(const char *path, const struct sample *s, size_t n);

/* Writes a 4-panel SVG chart titled `title`; 0, or -1 with errno. */
int chart_write_svg(const char *path, const struct sample *s, size_t n, const char *title);

#endif
