/* Prometheus text format 0.0.4 from the stats document: a table per level
 * of the document says which field becomes which metric family. */
#include "chanq_config.h"

#include "daemon/metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct family {
    const char *field; /* key in the stats document */
    const char *name;  /* metric family name */
    const char *type;  /* "gauge" or "counter" (then name ends in _total) */
    double divisor;    /* 1, or 1e3 / 1e6 to turn ms / us into seconds */
    const char *help;  /* the # HELP text */
};

static const struct family server_families[] = {
    {"uptime_s", "chanq_uptime_seconds", "gauge", 1, "Seconds since chanqd started."},
    {"connections", "chanq_connections", "gauge", 1, "Open client connections."},
    {"goroutines", "chanq_goroutines", "gauge", 1, "Live goroutines."},
    {"threads", "chanq_threads", "gauge", 1, "Goroutine threads of the runtime."},
    {"rss_bytes", "chanq_resident_memory_bytes", "gauge", 1,
     "Resident set size of the chanqd process in bytes."},
};

/* server.jobs mixes three kinds of figures; each gets a family of its own
 * (one meaning per metric): jobs now in each live state (a gauge labelled
 * state), final states reached (a counter labelled state), and two
 * figures that are not counts of jobs in a state. */
static const char *const live_states[] = {"queued", "reserved", "delayed", "dead"};
static const char *const final_states[] = {"done", "cancelled", "expired"};

static const struct family jobs_families[] = {
    {"tracked", "chanq_jobs_tracked", "gauge", 1,
     "Jobs known by id: live ones plus finished ones kept for wait and job (keep-results)."},
    {"keys", "chanq_idempotency_keys", "gauge", 1,
     "Idempotency keys bound: to live jobs, or to finished ones within key-window."},
    {"payload_bytes", "chanq_payload_bytes", "gauge", 1,
     "Bytes of job payloads held in memory (counted against max-memory)."},
};

static const struct family journal_families[] = {
    {"bytes", "chanq_journal_bytes", "gauge", 1, "Bytes of journal segments on disk."},
    {"records", "chanq_journal_records_total", "counter", 1, "Records appended to the journal."},
    {"batches", "chanq_journal_batches_total", "counter", 1,
     "Batches written (records / batches is the group commit's batch size)."},
    {"batch_wait_us", "chanq_journal_batch_wait_seconds_total", "counter", 1e6,
     "Time batches spent queued before their write began (over batches: the mean wait)."},
    {"last_fsync_us", "chanq_journal_last_fsync_seconds", "gauge", 1e6,
     "Duration of the most recent journal fsync in seconds."},
};

static const struct family schedule_families[] = {
    {"count", "chanq_schedules", "gauge", 1, "Named schedules."},
    {"paused", "chanq_schedules_paused", "gauge", 1, "Schedules paused."},
    {"fired", "chanq_schedule_firings_total", "counter", 1, "Planned times fired since start."},
    {"skipped", "chanq_schedule_skipped_total", "counter", 1,
     "Firings that made no job (queue closed, memory used up)."},
};

static const struct family queue_families[] = {
    {"capacity", "chanq_queue_capacity", "gauge", 1, "Jobs the queue holds before submits wait."},
    {"depth", "chanq_queue_depth", "gauge", 1, "Jobs queued and ready for delivery."},
    {"reserved", "chanq_queue_reserved", "gauge", 1, "Jobs delivered and not yet acked."},
    {"delayed", "chanq_queue_delayed", "gauge", 1, "Jobs waiting for their delay to pass."},
    {"dead", "chanq_queue_dead", "gauge", 1, "Jobs that ran out of attempts."},
    {"waiting_submitters", "chanq_queue_waiting_submitters", "gauge", 1,
     "Submits waiting for room in the queue."},
    {"waiting_fetchers", "chanq_queue_waiting_fetchers", "gauge", 1,
     "Fetches waiting for a job from the queue."},
    {"paused", "chanq_queue_paused", "gauge", 1, "1 when the queue is paused."},
    {"closed", "chanq_queue_closed", "gauge", 1, "1 when the queue is closed."},
    {"submitted", "chanq_queue_submitted_total", "counter", 1, "Jobs accepted by submit."},
    {"delivered", "chanq_queue_delivered_total", "counter", 1, "Deliveries to fetchers."},
    {"acked", "chanq_queue_acked_total", "counter", 1, "Jobs acknowledged as done."},
    {"nacked", "chanq_queue_nacked_total", "counter", 1, "Deliveries given back by nack."},
    {"expired", "chanq_queue_expired_total", "counter", 1,
     "Reservations revoked at ttr and jobs past their deadline."},
    {"cancelled", "chanq_queue_cancelled_total", "counter", 1, "Jobs cancelled."},
    {"rejected_full", "chanq_queue_rejected_full_total", "counter", 1,
     "Submits that failed because the queue stayed full."},
    {"blocked_ms", "chanq_queue_blocked_seconds_total", "counter", 1e3,
     "Seconds submitters spent waiting for room."},
    /* delivery limits: only queues that have them have a sample */
    {"concurrency", "chanq_queue_concurrency_limit", "gauge", 1,
     "Jobs of the queue that may be reserved at once (chanq_queue_reserved is its use)."},
    {"rate_tokens", "chanq_queue_rate_tokens", "gauge", 1,
     "Deliveries the queue's rate limit allows now (whole tokens in its bucket)."},
    {"oldest_age_ms", "chanq_queue_oldest_job_age_seconds", "gauge", 1e3,
     "Seconds the job next in line for delivery has been ready; 0 when none is queued."},
};

/* A histogram of the stats document: {LE: [bounds], "counts": [cumulative],
 * SUM, "count"}, bounds and sum in units of 1/divisor seconds. */
struct hist_family {
    const char *name;    /* metric family name */
    const char *help;    /* the # HELP text */
    const char *le_key;  /* key of the bounds ("le_us") */
    const char *sum_key; /* key of the sum ("sum_us") */
    double divisor;      /* 1e6 for us, 1e3 for ms */
};

static const struct hist_family fsync_hist = {"chanq_journal_fsync_duration_seconds",
                                              "Journal fsync latency in seconds.", "le_us",
                                              "sum_us", 1e6};
static const struct hist_family run_hist = {
    "chanq_job_run_seconds", "Run time of acked jobs, from delivery (reserve) to ack, in seconds.",
    "le_ms", "sum_ms", 1e3};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* server.cluster (cluster mode only). */
static const struct family cluster_families[] = {
    {"term", "chanq_cluster_term", "gauge", 1, "The Raft term this node is in."},
    {"commit_index", "chanq_cluster_commit_index", "gauge", 1,
     "The last log index this node knows to be committed."},
    {"applied_index", "chanq_cluster_applied_index", "gauge", 1,
     "The last log index applied to this node's committed state."},
    {"leader_changes", "chanq_cluster_leader_changes_total", "counter", 1,
     "Times this node saw a new leader."},
};
static const struct family cluster_snapshot_families[] = {
    {"taken", "chanq_cluster_snapshots_total", "counter", 1, "Raft snapshots taken."},
    {"restored", "chanq_cluster_snapshot_restores_total", "counter", 1,
     "Raft snapshots restored (a node that fell behind the others' logs)."},
    {"last_bytes", "chanq_cluster_snapshot_bytes", "gauge", 1,
     "Size of the last snapshot taken or restored, in bytes."},
};
static const struct hist_family commit_hist = {
    "chanq_cluster_commit_duration_seconds",
    "Time from proposing a batch of records to its commit on a majority and apply here.",
    "le_us", "sum_us", 1e6};

static bool
is_value(const json_t *v)
{
    return json_is_number(v) || json_is_boolean(v);
}

static void
put_double(FILE *f, double d)
{
    if (isnan(d))
        fputs("NaN", f);
    else if (isinf(d))
        fputs(d > 0 ? "+Inf" : "-Inf", f);
    else
        fprintf(f, "%.15g", d);
}

static void
put_value(FILE *f, const json_t *v, double divisor)
{
    if (json_is_boolean(v))
        fputc(json_is_true(v) ? '1' : '0', f);
    else if (json_is_integer(v) && divisor == 1)
        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        put_double(f, json_number_value(v) / divisor);
    fputc('\n', f);
}

/* A label value with \, " and newline escaped, as the format requires. */
static void
put_label_value(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void
put_header(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
put_scalars(FILE *f, const json_t *obj, const struct family *fam, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, fam[i].field);
        if (!is_value(v))
            continue;
        put_header(f, fam[i].name, fam[i].type, fam[i].help);
        fputs(fam[i].name, f);
        fputc(' ', f);
        put_value(f, v, fam[i].divisor);
    }
}

/* One family with a sample per listed key of obj: name{label="KEY"} value. */
static void
put_labelled(FILE *f, const json_t *obj, const struct family *fam, const char *label,
             const char *const *keys, size_t n)
{
    if (!json_is_object(obj))
        return;
    put_header(f, fam->name, fam->type, fam->help);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, keys[i]);
        if (!is_value(v))
            continue;
        fprintf(f, "%s{%s=\"", fam->name, label);
        put_label_value(f, keys[i]);
        fputs("\"} ", f);
        put_value(f, v, 1);
    }
}

static void
put_jobs(FILE *f, const json_t *jobs)
{
    static const struct family live = {NULL, "chanq_jobs", "gauge", 1,
                                       "Jobs in each live state, over all queues."};
    static const struct family final = {
        NULL, "chanq_jobs_finished_total", "counter", 1,
        "Jobs that reached each final state since chanqd started, the journal replay's "
        "included (dead jobs are a state of chanq_jobs: a kick revives them)."};
    put_labelled(f, jobs, &live, "state", live_states, N(live_states));
    put_labelled(f, jobs, &final, "state", final_states, N(final_states));
    if (json_is_object(jobs))
        put_scalars(f, jobs, jobs_families, N(jobs_families));
}

static bool
hist_valid(const json_t *le, const json_t *counts)
{
    if (!json_is_array(le) || !json_is_array(counts) || json_array_size(le) != json_array_size(counts))
        return false;
    double prev = -INFINITY;
    json_int_t prev_count = 0;
    for (size_t i = 0; i < json_array_size(le); i++) {
        const json_t *b = json_array_get(le, i), *c = json_array_get(counts, i);
        if (!json_is_number(b) || !(json_number_value(b) > prev) || !json_is_integer(c) ||
            json_integer_value(c) < prev_count)
            return false;
        prev = json_number_value(b);
        prev_count = json_integer_value(c);
    }
    return true;
}

/* A sample name: NAME_SUFFIX{queue="Q",le="  (the le label left open) or
 * NAME_SUFFIX{queue="Q"} / NAME_SUFFIX without it; queue may be NULL. */
static void
put_hist_series(FILE *f, const char *name, const char *suffix, const char *queue, bool le)
{
    fprintf(f, "%s_%s", name, suffix);
    if (!queue && !le)
        return;
    fputc('{', f);
    if (queue) {
        fputs("queue=\"", f);
        put_label_value(f, queue);
        fputs(le ? "\"," : "\"}", f);
    }
    if (le)
        fputs("le=\"", f);
}

/* The samples of one histogram h of the document (see struct hist_family),
 * labelled queue="Q" when queue is not NULL. counts[i] are the
 * observations of at most le[i] (cumulative, as Prometheus buckets are);
 * count is the total, including those above the last bound (the +Inf
 * bucket). Returns false, writing nothing, when h is malformed. */
static bool
put_hist_samples(FILE *f, const struct hist_family *fam, const char *queue, const json_t *h)
{
    const json_t *le = json_object_get(h, fam->le_key), *counts = json_object_get(h, "counts");
    if (!hist_valid(le, counts))
        return false;
    json_int_t last = 0;
    for (size_t i = 0; i < json_array_size(le); i++) {
        last = json_integer_value(json_array_get(counts, i));
        put_hist_series(f, fam->name, "bucket", queue, true);
        put_double(f, json_number_value(json_array_get(le, i)) / fam->divisor);
        fprintf(f, "\"} %" JSON_INTEGER_FORMAT "\n", last);
    }
    json_int_t total = json_integer_value(json_object_get(h, "count"));
    if (total < last)
        total = last; /* a racing snapshot: keep the buckets cumulative */
    put_hist_series(f, fam->name, "bucket", queue, true);
    fprintf(f, "+Inf\"} %" JSON_INTEGER_FORMAT "\n", total);
    put_hist_series(f, fam->name, "sum", queue, false);
    fputc(' ', f);
    put_double(f, json_number_value(json_object_get(h, fam->sum_key)) / fam->divisor);
    fputc('\n', f);
    put_hist_series(f, fam->name, "count", queue, false);
    fprintf(f, " %" JSON_INTEGER_FORMAT "\n", total);
    return true;
}

static void
put_fsync_hist(FILE *f, const json_t *h)
{
    const json_t *le = json_object_get(h, fsync_hist.le_key);
    if (!hist_valid(le, json_object_get(h, "counts")))
        return;
    put_header(f, fsync_hist.name, "histogram", fsync_hist.help);
    put_hist_samples(f, &fsync_hist, NULL, h);
}

static void
put_journal(FILE *f, const json_t *journal)
{
    if (!json_is_object(journal))
        return;
    put_scalars(f, journal, journal_families, N(journal_families));
    const char *policy = json_string_value(json_object_get(journal, "fsync"));
    if (policy) {
        put_header(f, "chanq_journal_fsync_policy", "gauge",
                   "The --fsync policy in force (1 for the one named).");
        fputs("chanq_journal_fsync_policy{policy=\"", f);
        put_label_value(f, policy);
        fputs("\"} 1\n", f);
    }
    put_fsync_hist(f, json_object_get(journal, "fsync_hist"));
    if (json_object_get(journal, "failed")) {
        put_header(f, "chanq_journal_failed", "gauge",
                   "1 when the journal refuses writes after a disk error it could not undo "
                   "(restart to recover), else 0.");
        fprintf(f, "chanq_journal_failed %d\n", json_is_string(json_object_get(journal, "failed")));
    }
}

/* chanq_job_run_seconds{queue}: one histogram per queue that has one. */
static void
put_run_hists(FILE *f, const json_t *queues)
{
    put_header(f, run_hist.name, "histogram", run_hist.help);
    const char *qname;
    json_t *q;
    json_object_foreach ((json_t *)queues, qname, q)
        put_hist_samples(f, &run_hist, qname, json_object_get(q, "run_hist"));
}

static void
put_queues(FILE *f, const json_t *queues)
{
    for (size_t i = 0; i < N(queue_families); i++) {
        const struct family *fam = &queue_families[i];
        put_header(f, fam->name, fam->type, fam->help);
        const char *qname;
        json_t *q;
        json_object_foreach ((json_t *)queues, qname, q) {
            const json_t *v = json_object_get(q, fam->field);
            if (!is_value(v))
                continue;
            fprintf(f, "%s{queue=\"", fam->name);
            put_label_value(f, qname);
            fputs("\"} ", f);
            put_value(f, v, fam->divisor);
        }
    }
}

static void
put_cluster(FILE *f, const json_t *cluster)
{
    if (!json_is_object(cluster))
        return;
    put_scalars(f, cluster, cluster_families, N(cluster_families));
    put_header(f, "chanq_cluster_leader", "gauge", "1 while this node is the serving leader.");
    fprintf(f, "chanq_cluster_leader %d\n", json_is_true(json_object_get(cluster, "serving")));
    put_scalars(f, json_object_get(cluster, "snapshots"), cluster_snapshot_families,
                N(cluster_snapshot_families));
    const json_t *h = json_object_get(cluster, "commit");
    if (hist_valid(json_object_get(h, commit_hist.le_key), json_object_get(h, "counts"))) {
        put_header(f, commit_hist.name, "histogram", commit_hist.help);
        put_hist_samples(f, &commit_hist, NULL, h);
    }
}

/* The schedules' figures, and the planned time of each one's last firing. */
static void
put_schedules(FILE *f, const json_t *sc)
{
    if (!json_is_object(sc))
        return;
    put_scalars(f, sc, schedule_families, N(schedule_families));
    static const char *name = "chanq_schedule_last_fire_timestamp_seconds";
    put_header(f, name, "gauge", "Planned time of the schedule's last firing (0: never).");
    size_t i;
    json_t *s;
    json_array_foreach (json_object_get(sc, "list"), i, s) {
        const char *sname = json_string_value(json_object_get(s, "name"));
        if (!sname)
            continue;
        fprintf(f, "%s{schedule=\"", name);
        put_label_value(f, sname);
        fputs("\"} ", f);
        put_value(f, json_object_get(s, "last_ms"), 1e3);
    }
}

char *
metrics_render(const json_t *stats, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        return NULL;
    const json_t *server = json_object_get(stats, "server");
    const char *version = json_string_value(json_object_get(server, "version"));
    if (version) {
        put_header(f, "chanq_build_info", "gauge", "Always 1; the version is a label.");
        fputs("chanq_build_info{version=\"", f);
        put_label_value(f, version);
        fputs("\"} 1\n", f);
    }
    put_scalars(f, server, server_families, N(server_families));
    put_jobs(f, json_object_get(server, "jobs"));
    put_journal(f, json_object_get(server, "journal"));
    put_cluster(f, json_object_get(server, "cluster"));
    put_schedules(f, json_object_get(server, "schedules"));
    put_queues(f, json_object_get(stats, "queues"));
    put_run_hists(f, json_object_get(stats, "queues"));
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
