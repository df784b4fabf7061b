/* The stats document (shape in daemon/http.h) rendered as Prometheus text
 * exposition format 0.0.4, for GET /metrics. No I/O: a pure function of
 * the document, so tests render fake documents. Any thread. */
#ifndef CHANQ_DAEMON_METRICS_H
#define CHANQ_DAEMON_METRICS_H

#include <jansson.h>
#include <stddef.h>

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Renders stats (borrowed) as metric families chanq_*: every number of the
 * document that has a family (see docs/operations.md for the list), each
 * family with # HELP and # TYPE, queue families labelled queue="NAME",
 * counters ending in _total, durations in seconds, the fsync latencies and
 * each queue's run times as histograms. server.jobs is split by meaning:
 * live states, final states reached, tracked jobs, payload bytes. Missing
 * fields are skipped; unknown ones are ignored. Returns a malloc'd string
 * (length in *len), or NULL when out of memory. */
char *metrics_render(const json_t *stats, size_t *len);

#endif
