/* Shared by the journal's source files (journal.c: open, append, stats,
 * close; journal_writer.c; journal_replay.c; journal_compact.c) and nothing
 * else: the struct journal body and the file helpers. */
#ifndef CHANQ_DAEMON_JOURNAL_INTERNAL_H
#define CHANQ_DAEMON_JOURNAL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/journal/iothread.h"
#include "daemon/journal/journal.h"

#define DEFAULT_SEGMENT_BYTES (64ull << 20)
#define DEFAULT_COMPACT_BYTES (64ull << 20)
#define DEFAULT_INTERVAL_MS 100
#define TMP_SUFFIX ".tmp"

/* The records gathered between two writes. Appenders that wait hold a
 * reference; the writer closes `done` once the batch is settled. */
struct batch {
    uint8_t *buf;      /* framed records, written with one writev */
    size_t len, cap;   /* bytes used / allocated */
    uint32_t nowait;   /* records nobody waits for (counted if lost) */
    int rc;            /* 0 or the write/fsync error; read after done closes */
    struct chan *done; /* closed when settled */
    int refs;          /* atomic: the journal's + one per waiter */
    int64_t first_us;  /* when its first record came (monotonic µs) */
    struct journal *owner; /* set when handed to a replicator */
};
/* One segment file on disk. */
struct seginfo {
    uint64_t seq;   /* from the file name */
    uint64_t bytes; /* its size */
};
struct journal {
    char *dir;                /* owned copy */
    struct journal_opts opts; /* with defaults filled in */
    struct journal_io io;     /* resolved seam: never NULL fields */
    int lock_fd;              /* dir/LOCK, flock'ed while j lives */

    /* mu guards the fields up to `stats`: appenders, the writer, its I/O
     * thread and the compactor all touch them, briefly. */
    pthread_mutex_t mu;
    struct batch *cur;         /* the batch appends go to */
    bool started;              /* journal_start succeeded */
    bool closing;              /* journal_close began: appends refused */
    bool writer_done;          /* the writer goroutine is about to return */
    int fatal;                 /* sticky error: the file's tail is unknown */
    struct chan *roll_req;     /* a compactor waits for a roll: closed when done */
    int roll_rc;               /* its result */
    struct seginfo *segs;      /* sorted by seq; the last one is current */
    size_t nsegs, segcap;
    uint64_t bytes;            /* sum of segs[].bytes */
    bool compacting;           /* a journal_compact_batch runs */
    int compactors;            /* compaction goroutines spawned, not yet ended */
    uint64_t last_compact_out; /* size the last compaction left (policy) */
    const struct journal_snapshotter *snap; /* journal_set_snapshotter */
    void *snap_arg;

    /* Writer state: only the writer goroutine and its I/O thread. */
    struct chan *kick;      /* cap 1: "a batch has records" */
    struct iothread iot;    /* the writer's I/O thread */
    int fd;                 /* current segment, -1 before start */
    uint64_t seq;           /* its sequence number */
    uint64_t seg_size;      /* its size */
    uint64_t seg_alloc;     /* bytes allocated to it (fsync always) */
    bool dirty;             /* interval: written since the last fsync */
    int64_t next_sync_ms;   /* interval: when to fsync next */
    int last_rc;            /* the last write/fsync error, for journal_close (atomic) */
    struct chan *inflight;  /* replicator: one element per batch not yet settled */

    /* Replay. */
    bool replayed;
    uint64_t replay_count;
    uint64_t next_seq; /* above every sequence number seen */

    struct journal_stats stats; /* counters, updated with __atomic */
};
#define STAT_ADD(j, field, n) __atomic_add_fetch(&(j)->stats.field, (n), __ATOMIC_RELAXED)
#define STAT_SET(j, field, v) __atomic_store_n(&(j)->stats.field, (v), __ATOMIC_RELAXED)

/* Writes all of buf through the io seam: 0 or a negative errno. */
int journal_write_all(struct journal *j, int fd, const void *buf, size_t len);

/* fsync (the seam's) of fd, timed into the stats. */
int journal_timed_fsync(struct journal *j, int fd);

/* fsync of the data dir itself (after creating, renaming, deleting). */
int journal_fsync_dir(const char *dir);

/* "DIR/NNNNNNNNNNNNNNNN.log" for seq into buf. */
void journal_seg_path(const struct journal *j, uint64_t seq, char *buf, size_t size);

/* Adds / removes an entry of j->segs (kept sorted) and j->bytes. Caller
 * holds mu (or is the only thread, during open and replay). */
int journal_segs_add(struct journal *j, uint64_t seq, uint64_t bytes);
void journal_segs_remove(struct journal *j, size_t i);

/* CLOCK_MONOTONIC in µs. */
int64_t journal_mono_us(void);

/* Sleeps ~1 ms: parks on a goroutine, blocks elsewhere. */
void journal_nap(void);

/* Spawns the chaos compactor when opts.chaos_compact_ms asks for it: 0 or
 * -ENOMEM. journal_start calls it. */
int journal_start_chaos(struct journal *j);

/* An empty batch (one reference), or NULL; drops a reference. */
struct batch *journal_batch_new(void);
void journal_batch_unref(struct batch *b);


#endif
