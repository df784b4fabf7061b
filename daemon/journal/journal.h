/* The journal: an append-only log of the broker's state changes in segment
 * files (segment.h), written by one writer goroutine with group commit,
 * replayed on start, compacted in the background. It stores opaque records;
 * jrec.h is the broker's codec for them. docs/durability.md has the promises.
 *
 * Life cycle: journal_open (lock + list) -> journal_replay (main thread,
 * before serving) -> journal_start (writer goroutine) -> journal_append* /
 * journal_compact* -> journal_close. Source: journal.c, journal_writer.c,
 * journal_replay.c, journal_compact.c (journal-internal.h). */
#ifndef CHANQ_DAEMON_JOURNAL_H
#define CHANQ_DAEMON_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "daemon/config.h" /* enum config_fsync */

struct ctx;
struct journal;

/* The system calls the journal's I/O thread makes on segment files, as a test
 * seam (beanstalkd's falloc, without the global): tests count fsyncs or
 * inject -ENOSPC / -EIO. Each returns the system call's result, or a
 * negative errno instead of -1. NULL fields mean the real call. */
struct journal_io {
    ssize_t (*writev)(void *arg, int fd, const struct iovec *iov, int iovcnt);
    int (*fsync)(void *arg, int fd); /* the real one is fdatasync(2) */
    void *arg;                       /* passed to both */
};

/* Everything journal_open_opts takes besides the directory. Zero fields take
 * the defaults in brackets. */
struct journal_opts {
    enum config_fsync fsync;  /* always (group commit), interval (100 ms), never */
    bool repair;              /* replay keeps every record that checks instead of failing */
    uint64_t segment_bytes;   /* roll to a new segment past this size [64 MiB] */
    uint64_t compact_bytes;   /* journal_maybe_compact threshold [64 MiB] */
    int64_t interval_ms;      /* fsync period of `interval` [100] */
    /* Test seam: > 0 compacts (with the registered compactor) at random
     * moments 1..chaos_compact_ms ms apart, besides the policy. [0: off] */
    int64_t chaos_compact_ms;
    const struct journal_io *io; /* NULL: real system calls; borrowed, must outlive j */
    /* Called once, from the writer's I/O thread, when a failed write or
     * fsync could not be undone: from then on every append fails with err
     * until the process restarts and replays from disk. May be NULL. */
    void (*on_failure)(void *arg, int err);
    void *failure_arg;
};

/* Creates dir (mode 0750) if missing, takes dir/LOCK (flock, our pid written
 * in it), removes leftover *.tmp files and lists the segments. Returns a new
 * journal owned by the caller, or NULL with the reason in err, e.g. "data dir
 * DIR is in use by another chanqd (pid N holds DIR/LOCK)". Any thread; does
 * blocking I/O. */
struct journal *journal_open_opts(const char *dir, const struct journal_opts *opts, char *err,
                                  size_t errlen);

/* Replay callback: one record, in log order. Return 0 to go on, or a
 * negative errno to stop the replay (reported with the file and offset). */
typedef int journal_apply_fn(void *arg, const void *rec, size_t len);

/* Calls apply (may be NULL: just verify) for every record, oldest first: a
 * compacted segment's records, then the later segments'. A torn tail (a bad
 * last record with no valid record after it, in any segment) is cut off:
 * the file is truncated and a line "journal: FILE: torn tail at offset N
 * (reason), dropped M bytes" is logged. A bad record followed by valid ones
 * is corruption: returns -EBADMSG with "FILE at offset N: bad checksum (run
 * chanqd --repair to truncate here; K later records would be lost)" in err,
 * unless opts.repair, in which case the file is truncated there, later
 * segments are deleted and the loss is logged. Also -EIO etc. on I/O errors.
 * Once per journal, before journal_start; main thread (not a goroutine: it
 * blocks). */
int journal_replay(struct journal *j, journal_apply_fn *apply, void *arg, char *err, size_t errlen);

/* Records replayed by journal_replay (0 before). */
uint64_t journal_replayed(const struct journal *j);

/* Opens a fresh segment for appends and starts the writer goroutine and its
 * I/O thread (fsync must not take one of the runtime's worker threads).
 * Runs a verify-only replay first if journal_replay was not called. Needs
 * the scheduler started (sched_start / sched_run_main). Any thread, once.
 * Returns 0, or a negative errno (nothing started; err says why). */
int journal_start(struct journal *j, char *err, size_t errlen);

/* Copies rec (1..SEGMENT_MAX_RECORD bytes) into the batch being gathered and
 * parks until it is durable under the fsync mode: `always`: written and
 * fsync'd (one writev + one fsync per batch, shared by every record in it);
 * `interval` and `never`: written to the file (the page cache).
 * Returns 0, or:
 *   -ENOSPC, -EIO, ... : writing or syncing its batch failed; the batch was
 *     cut off the file again, so the record will not be replayed (see
 *     docs/durability.md); later appends may succeed;
 *   -ECANCELED / -ETIMEDOUT: ctx (may be NULL) was done first; the record
 *     stays queued and will probably be written: its fate is unknown;
 *   -ESHUTDOWN: journal_close has begun (not recorded);
 *   -EMSGSIZE (bad len), -ENOMEM (not recorded).
 * Goroutine only; may park. */
int journal_append(struct journal *j, const void *rec, size_t len, struct ctx *ctx);

/* Queues a copy of rec for the next batch and returns at once: for records
 * whose durability nobody waits for (e.g. a delivery count). A failure of
 * its batch is only counted and logged. Returns 0, -ESHUTDOWN, -EMSGSIZE or
 * -ENOMEM. Any goroutine or thread; never parks. */
int journal_append_nowait(struct journal *j, const void *rec, size_t len);

/* A reference on the batch a queued record went into (journal_append_async). */
struct journal_wait;

/* journal_append split in two, so a caller can queue records under its own
 * lock (log order = call order) and wait after releasing it: copies rec into
 * the current batch and returns at once. With wait != NULL, *wait receives a
 * new reference on that batch (records that land in the same batch get the
 * same pointer, one reference per call) for journal_wait_durable or
 * journal_wait_release; with wait == NULL it is journal_append_nowait.
 * Returns 0, or -ESHUTDOWN, -EMSGSIZE, -ENOMEM, or the error that made the
 * journal refuse writes (nothing queued, *wait untouched). Any goroutine or
 * thread; never parks. */
int journal_append_async(struct journal *j, const void *rec, size_t len,
                         struct journal_wait **wait);

/* Parks until w's batch is settled and returns what journal_append would
 * have: 0 once durable under the fsync mode, -ENOSPC/-EIO/... when its write
 * or fsync failed, -ECANCELED/-ETIMEDOUT when ctx (may be NULL) was done
 * first. Consumes the reference (w is invalid afterwards) in every case.
 * Goroutine only; may park. */
int journal_wait_durable(struct journal_wait *w, struct ctx *ctx);

/* journal_wait_durable on each of the n waits in turn (every reference is
 * dropped, also after an error): 0, or the first error. */
int journal_wait_all(struct journal_wait *const *w, size_t n, struct ctx *ctx);

/* Drops the reference without waiting. Any thread; never parks. */
void journal_wait_release(struct journal_wait *w);

/* A channel closed once w's batch is settled (journal_wait_durable then
 * returns at once), for chan_select. Valid while w's reference is held. */
struct chan *journal_wait_chan(struct journal_wait *w);

/* Compaction is a snapshot. The journal rolls to a fresh segment (the
 * snapshot's log position), hands every record of the older segments, in
 * order, to a fresh state of the snapshotter's making (the same apply a
 * replay uses), then has that state write the records that rebuild it into
 * one segment (temp file, fsync, rename over the newest old segment's name,
 * flagged SEGMENT_COMPACTED), fsyncs the dir and deletes the older ones.
 * Replaying the result gives the state the old records gave, by
 * construction. Appends go on meanwhile; the work runs on the compacting
 * goroutine and its own I/O thread, never the writer's. */
typedef int journal_emit_fn(void *emit_arg, const void *rec, size_t len);
struct journal_snapshotter {
    /* A fresh, empty state; NULL when out of memory. */
    void *(*begin)(void *arg);
    /* One old record into the state, in log order: 0, or a negative errno
     * to give the compaction up. */
    journal_apply_fn *apply;
    /* Writes the state as records through emit (emit's errors are to be
     * passed back): 0 or a negative errno. */
    int (*write)(void *state, journal_emit_fn *emit, void *emit_arg);
    /* Frees the state. */
    void (*end)(void *state);
};

/* Registers the snapshotter (borrowed; arg is begin's) that compactions
 * use: the policy's after a segment roll, the test seam's, journal_compact.
 * NULL: no compaction. Call before journal_start. */
void journal_set_snapshotter(struct journal *j, const struct journal_snapshotter *s, void *arg);

/* Compacts now, in the calling goroutine. Returns 0, -EBUSY (another
 * compaction runs), -ESHUTDOWN, -ENOSYS (no snapshotter), the
 * snapshotter's error, or an I/O error (the old segments are then
 * untouched). Goroutine only; parks. */
int journal_compact(struct journal *j);

/* The policy hook: when no compaction runs, journal_bytes > compact_bytes
 * and journal_bytes >= 2 x the size the last compaction left (so a journal
 * that is mostly live is not rewritten again and again), spawns a goroutine
 * running journal_compact and returns 1; else 0; or -ENOMEM. journal_close
 * waits for it. Any goroutine or thread; never parks. */
int journal_maybe_compact(struct journal *j);

/* Bytes of all segment files (headers included). Any thread; a snapshot. */
uint64_t journal_bytes(const struct journal *j);

#define JOURNAL_FSYNC_BUCKETS 14

/* Counters for the stats op and /metrics. The histogram is Prometheus-style:
 * fsync_bucket[i] counts fsyncs that took <= fsync_bucket_le_us[i]
 * (cumulative; the last bound is UINT64_MAX, i.e. +Inf). */
struct journal_stats {
    uint64_t bytes;          /* on disk, all segments */
    uint64_t segments;       /* segment files */
    uint64_t appends;        /* records accepted (waited or not) */
    uint64_t batches;        /* batches written */
    uint64_t write_errors;   /* batches whose write failed */
    uint64_t fsync_errors;   /* fsyncs that failed */
    uint64_t lost_nowait;    /* journal_append_nowait records in failed batches */
    uint64_t compactions;    /* finished compactions */
    uint64_t compact_before; /* bytes rewritten by the last compaction (old segments) */
    uint64_t compact_after;  /* bytes of its output */
    uint64_t last_fsync_us;  /* duration of the latest fsync */
    uint64_t fsync_count;    /* fsyncs (successful or not) */
    uint64_t fsync_sum_us;   /* their total duration */
    uint64_t batch_wait_us;  /* sum over batches: first record queued -> write begins */
    uint64_t failed_errno;   /* nonzero (an errno): appends refused until a restart */
    uint64_t fsync_bucket_le_us[JOURNAL_FSYNC_BUCKETS];
    uint64_t fsync_bucket[JOURNAL_FSYNC_BUCKETS];
};

/* Fills *out. Any thread; fields are individually consistent snapshots. */
void journal_stats(const struct journal *j, struct journal_stats *out);

/* Stops appends (-ESHUTDOWN), waits for a running compaction, lets the
 * writer write and fsync everything queued (in every mode), ends the writer
 * goroutine and I/O thread, closes the files, releases the lock and frees j.
 * Returns 0 when no write or fsync ever failed, else the last such error (j
 * is freed anyway). Any thread while the scheduler runs (the writer must get
 * to run): parks on a goroutine, blocks elsewhere. NULL is ignored. */
int journal_close(struct journal *j);

#endif
