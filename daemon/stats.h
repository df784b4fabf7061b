/* The stats documents: the server half of the `stats` op and the
 * document behind --http's /metrics and /stats (its shape is in
 * daemon/http.h). The broker's parts come from broker_jobs_json and
 * broker_queues_json; this file adds the process, the connections and the
 * journal. */
#ifndef CHANQ_DAEMON_STATS_H
#define CHANQ_DAEMON_STATS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct config;
struct journal;

/* What the documents are built from. The server fills it once before it
 * serves; every pointer is borrowed and outlives it. */
struct stats_src {
    struct broker *broker;             /* jobs by state, queues, memory budget */
    struct journal *journal;           /* NULL with --memory */
    const struct config *cfg;          /* the fsync mode */
    const _Atomic size_t *connections; /* open connections (daemon/conn_env.h) */
    int64_t started_ms;                /* timer_now_ms() at start: uptime_s */
    const struct cluster_gate *cluster; /* cluster mode: "cluster" figures; else NULL */
};

/* {"uptime_s", "connections", "goroutines", "threads", "jobs", "rss_bytes",
 *  "memory_bytes", "buffer_bytes", "version", "journal", and in cluster mode
 *  "cluster": the cluster op's figures}. A new reference,
 * or NULL when out of memory. Any thread. */
json_t *stats_server_json(const struct stats_src *src);

/* {"server": stats_server_json, "queues": broker_queues_json}: the
 * document behind /metrics and /stats. A new reference, or NULL when out
 * of memory. Any thread. */
json_t *stats_snapshot(const struct stats_src *src);

/* The journal's sticky write failure as one line into buf[size] (and
 * returns buf), or NULL while it has none (or without a journal). Any
 * thread. */
const char *stats_journal_failure(const struct stats_src *src, char *buf, size_t size);

#endif
