/* chanqd configuration: command line and config file -> struct config, with
 * every key, its default and its limits in one table (config_table.c), and
 * the SIGHUP reload. The files and what each owns: config-internal.h. */
#ifndef CHANQ_DAEMON_CONFIG_H
#define CHANQ_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/log.h"

#define CONFIG_MAX_LISTEN 16

enum config_fsync { CONFIG_FSYNC_ALWAYS, CONFIG_FSYNC_INTERVAL, CONFIG_FSYNC_NEVER };

/* The daemon's settings. Every string is owned by the struct (freed by
 * config_free). Who acts on a field today is noted in brackets:
 *   [main]   main.c/ops modules act on it;
 *   [listen] listen.c/http.c act on it;
 *   [lead]   parsed and validated here, to be wired by the broker/journal;
 *   [tls]    daemon/tls.c acts on it (re-read on every SIGHUP).
 * Fields marked "reloadable" may change on SIGHUP (config_reload); code on
 * threads other than the loop must read them with config_get(). */
struct config {
    char *listen[CONFIG_MAX_LISTEN]; /* TCP HOST:PORT addresses [listen] */
    size_t n_listen;                 /* how many; never 0 unless unix_path is set */
    char *unix_path;                 /* --unix: Unix socket path, or NULL [listen] */
    char *data_dir;                  /* journal directory (unused with memory) [main, lead] */
    bool memory;                     /* --memory: keep nothing on disk [main, lead] */
    enum config_fsync fsync;         /* journal fsync policy [lead] */
    uint64_t threads;                /* goroutine threads; 0 = one per CPU [lead] */
    size_t max_frame;                /* longest request line in bytes [lead] */
    size_t max_job;                  /* largest job payload in bytes; reloadable [lead] */
    bool max_job_set;                /* max-job was given; unset, it follows max-frame */
    int64_t submit_wait_ms;          /* default wait_ms of a submit on a full queue; reloadable [lead] */
    uint64_t default_capacity;       /* capacity of a queue created implicitly; reloadable [lead] */
    char *token_file;                /* --token-file: accepted auth tokens, or NULL [lead] */
    char *http;                      /* --http HOST:PORT for /metrics, or NULL [main] */
    bool http_admin;                 /* --http-admin: POST /admin/... on the --http listener [main] */
    char *config_file;               /* --config FILE, or NULL; re-read on SIGHUP [main] */
    enum log_level log_level;        /* most verbose level logged; reloadable [main] */
    enum log_format log_format;      /* text or JSON lines; reloadable [main] */
    uint64_t max_connections;        /* client connections at once; reloadable [lead] */
    uint64_t max_connections_per_address; /* from one address (0: no limit); reloadable [main] */
    int64_t idle_timeout_ms;         /* close connections idle this long (0: never); reloadable [main] */
    uint64_t max_queues;             /* queues at once; reloadable [lead] */
    uint64_t max_schedules;          /* named schedules at once; reloadable */
    size_t max_memory;               /* budget for job payload bytes; reloadable [lead] */
    uint64_t max_inflight;           /* requests in flight per connection before reads stop; reloadable [lead] */
    int64_t grace_ms;                /* graceful stop budget; reloadable [lead] */
    size_t journal_segment_bytes;    /* journal segment roll size [lead] */
    size_t journal_compact_bytes;    /* journal compaction threshold [lead] */
    uint64_t keep_results;           /* finished jobs kept for wait/job [lead] */
    int64_t key_window_ms;           /* idempotency key kept after its job finished [limits] */
    uint64_t keep_keys;              /* keys of finished jobs kept at most [limits] */
    bool repair;                     /* --repair: truncate a corrupt journal [lead] */
    bool check_config;               /* --check-config: validate and exit [main] */
    char *tls_listen[CONFIG_MAX_LISTEN]; /* TLS HOST:PORT addresses [listen, tls] */
    size_t n_tls_listen;             /* how many; 0 = no TLS listener */
    char *tls_cert;                  /* PEM certificate chain; reloadable (loop thread only) [tls] */
    char *tls_key;                   /* PEM private key; reloadable (loop thread only) [tls] */
    char *tls_client_ca;             /* PEM CAs that sign client certificates: mutual TLS
                                      * when set; reloadable (loop thread only) [tls] */
    uint64_t node_id;                /* cluster mode: this node's id; 0 = single node [main] */
    char *raft_listen;               /* cluster: Raft listen IPv4:PORT, or NULL (its peers one) */
    char *peers;                     /* cluster: "ID@IPV4:PORT[/HOST:PORT],...", or NULL */
    int64_t raft_election_ms;        /* cluster: election timeout [main] */
    bool join;                       /* cluster: a new node waiting to be added */
};

#define CONFIG_MAX_PEERS 9

/* One voter of --peers: its id, Raft address and, when given, the address
 * its clients use (what a follower's not_leader points to; "" if unknown). */
struct config_peer {
    uint64_t id;
    char raft[64];
    char client[96];
};

/* Parses a --peers value into out[0..max): returns 0 with the count in *n,
 * or -1 with the reason in err (a bad item, a duplicate id or address). */
int config_parse_peers(const char *s, struct config_peer *out, size_t max, size_t *n, char *err,
                       size_t errlen);

/* Reads a reloadable field from any thread (SIGHUP writes it on the loop). */
#define config_get(cfg, field) __atomic_load_n(&(cfg)->field, __ATOMIC_RELAXED)

/* Fills *cfg with the defaults (listed by `chanqd --help` and in
 * docs/operations.md). Returns 0, or -ENOMEM with *cfg left empty. */
int config_defaults(struct config *cfg);

/* Frees the strings *cfg owns; leaves it empty. */
void config_free(struct config *cfg);

/* Parses argv (and the file named by --config, read first so that flags
 * override it) into *cfg, which config_defaults filled. Returns 0 to run,
 * 1 when --help or --version printed to stdout (exit 0), or -1 with the
 * reason in err ("FILE:LINE: reason" for the config file); *cfg is then
 * partly updated and should be freed. argv is not modified. */
int config_parse_args(struct config *cfg, int argc, char *const *argv, char *err, size_t errlen);

/* Parses a size: bytes with an optional K, M or G suffix (powers of 1024,
 * case-insensitive, optionally followed by "B" or "iB"). Returns 0, or -1
 * on junk or overflow (*out unchanged). */
int config_parse_size(const char *s, uint64_t *out);

/* The running daemon's side of a reload. Some settings live on in copies
 * that config_reload cannot reach (the broker's limits, the TLS context):
 * these steps push the live values into them. Loop thread; any may be NULL. */
struct config_hooks {
    void *arg;                                            /* the server */
    void (*broker)(void *arg, const struct config *live); /* the broker's settings */
    void (*tls)(void *arg, const struct config *live);    /* re-read certificate and key */
};

/* SIGHUP: copies the reloadable fields of *fresh into *live (atomically,
 * on the loop thread), logs each change at info and each non-reloadable
 * difference at warn ("needs a restart"), then runs the apply step of each
 * changed key once (and the TLS step on every reload: renewed files keep
 * their paths). Returns the number of fields changed. */
int config_reload(struct config *live, const struct config *fresh,
                  const struct config_hooks *hooks);

/* One key of the table, for the reload test: its name, whether SIGHUP
 * applies it, and whether it has an apply step. */
struct config_key_info {
    const char *name;
    bool reloadable;
    bool has_apply;
};

/* Fills *out with key i; false past the last key. */
bool config_key_info(size_t i, struct config_key_info *out);

/* Strips white space (CR included) from both ends of s in place; returns
 * where the text starts. For config and token-file lines. */
char *config_trim(char *s);

const char *config_fsync_name(enum config_fsync f);

#endif
