/* The stats documents: process figures, connections, the journal, and the
 * broker's jobs and queues through its public JSON functions. */
#include "chanq_config.h"

#include "daemon/stats.h"
#include "daemon/cluster/gate.h"
#include "daemon/broker.h"
#include "core/timer.h"
#include "daemon/config.h"
#include "daemon/journal/journal.h"
#include "daemon/membudget.h"
#include "daemon/schedule.h"

#include "core/go.h"
#include "core/sched.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static long long
rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%lld %lld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

const char *
stats_journal_failure(const struct stats_src *src, char *buf, size_t size)
{
    struct journal_stats st;
    if (!src->journal)
        return NULL;
    journal_stats(src->journal, &st);
    if (!st.failed_errno)
        return NULL;
    snprintf(buf, size,
             "journal failed: %s; every write is refused until chanqd restarts and replays "
             "its journal",
             strerror((int)st.failed_errno));
    return buf;
}

/* The fsync histogram's bounds and cumulative counts; the last bound is
 * +Inf: left out, its count is the total. */
static void
fsync_hist(const struct journal_stats *st, json_t **le, json_t **counts)
{
    *le = json_array();
    *counts = json_array();
    for (size_t i = 0; i < JOURNAL_FSYNC_BUCKETS; i++) {
        if (st->fsync_bucket_le_us[i] != UINT64_MAX) {
            json_array_append_new(*le, json_integer((json_int_t)st->fsync_bucket_le_us[i]));
            json_array_append_new(*counts, json_integer((json_int_t)st->fsync_bucket[i]));
        }
    }
}

static json_t *
journal_json(const struct stats_src *src)
{
    if (!src->journal)
        return json_pack("{s:s, s:I, s:I}", "fsync", "none", "bytes", (json_int_t)0,
                         "last_fsync_us", (json_int_t)0);
    struct journal_stats st;
    journal_stats(src->journal, &st);
    json_t *le, *counts;
    fsync_hist(&st, &le, &counts);
    char why[256];
    const char *failed = stats_journal_failure(src, why, sizeof why);
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:{s:o, s:o, s:I, s:I}, "
                     "s:o}",
                     "fsync", config_fsync_name(src->cfg->fsync), "bytes", (json_int_t)st.bytes,
                     "records", (json_int_t)st.appends, "batches", (json_int_t)st.batches,
                     "batch_wait_us", (json_int_t)st.batch_wait_us,
                     "segments", (json_int_t)st.segments, "last_fsync_us",
                     (json_int_t)st.last_fsync_us, "write_errors", (json_int_t)st.write_errors,
                     "fsync_errors", (json_int_t)st.fsync_errors, "compactions",
                     (json_int_t)st.compactions, "fsync_hist", "le_us", le, "counts", counts,
                     "sum_us", (json_int_t)st.fsync_sum_us, "count",
                     (json_int_t)st.fsync_count, "failed",
                     failed ? json_string(failed) : json_null());
}

json_t *
stats_server_json(const struct stats_src *src)
{
    json_t *jobs = broker_jobs_json(src->broker);
    struct membudget *mb = broker_membudget(src->broker);
    int64_t uptime_s = (timer_now_ms() - src->started_ms) / 1000;
    json_t *server = json_pack("{s:I, s:I, s:I, s:i, s:o, s:I, s:I, s:I, s:s, s:o, s:o*}", "uptime_s",
                     (json_int_t)uptime_s, "connections",
                     (json_int_t)atomic_load(src->connections), "goroutines",
                     (json_int_t)go_count(), "threads", sched_threads(), "jobs",
                     jobs ? jobs : json_object(), "rss_bytes", (json_int_t)rss_bytes(),
                     "memory_bytes", (json_int_t)membudget_used(mb), "buffer_bytes",
                     (json_int_t)atomic_load(&mb->buffers), "version", PACKAGE_VERSION,
                     "journal", journal_json(src), "schedules",
                     broker_schedules_json(src->broker));
    json_t *cluster = server && src->cluster ? cluster_gate_status(src->cluster) : NULL;
    if (cluster)
        json_object_set_new(server, "cluster", cluster);
    return server;
}

json_t *
stats_snapshot(const struct stats_src *src)
{
    json_t *server = stats_server_json(src);
    json_t *queues = broker_queues_json(src->broker);
    return json_pack("{s:o, s:o}", "server", server ? server : json_object(), "queues",
                     queues ? queues : json_object());
}
