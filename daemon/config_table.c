/* The key table of chanqd (config-internal.h): one row per key drives the
 * defaults, the command line, the config file, --help and the SIGHUP
 * reload, so a key cannot be documented in one place and parsed
 * differently in another. */
#include "chanq_config.h"

#include "daemon/config-internal.h"

#include <stdint.h>
#include <string.h>

/* Every key of chanqd. docs/operations.md, contrib/chanqd.conf and the man
 * page list the same keys and defaults (tests/ops/test_config.py checks). */
const struct config_key config_keys[] = {
    {"listen", K_ADDR_LIST, KEY_FIELD(listen), "127.0.0.1:7420", 0, 0, 0, "HOST:PORT",
     "TCP address to serve, repeatable ([::1]:PORT for IPv6, port 0 = any free)", APPLY_NONE},
    {"unix", K_UNIX, KEY_FIELD(unix_path), NULL, 0, 0, 0, "PATH", "also serve on this Unix socket",
     APPLY_NONE},
    {"data-dir", K_DIR, KEY_FIELD(data_dir), "./var", 0, 0, 0, "DIR", "where the journal is kept",
     APPLY_NONE},
    {"memory", K_BOOL, KEY_FIELD(memory), "false", 0, 0, 0, NULL, "keep nothing on disk",
     APPLY_NONE},
    {"fsync", K_FSYNC, KEY_FIELD(fsync), "always", 0, 0, 0, "always|interval|never",
     "when the journal is fsynced", APPLY_NONE},
    {"threads", K_UINT, KEY_FIELD(threads), "0", 0, 1024, 0, "N",
     "goroutine threads (0 = one per CPU)", APPLY_NONE},
    {"max-frame", K_SIZE, KEY_FIELD(max_frame), "1M", 1 * KIB, 1 * GIB, 0, "BYTES",
     "longest request line", APPLY_NONE},
    {"max-job", K_SIZE, KEY_FIELD(max_job), "512K", 1, 1 * GIB, KEY_RELOAD, "BYTES",
     "largest job payload; when unset, at most half of max-frame", APPLY_READ_LIVE},
    {"submit-wait", K_MS, KEY_FIELD(submit_wait_ms), "30000", 0, 24 * 3600 * 1000ull, KEY_RELOAD,
     "MS", "how long a submit waits for room by default", APPLY_BROKER},
    {"default-capacity", K_UINT, KEY_FIELD(default_capacity), "1000", 0, 100000000, KEY_RELOAD, "N",
     "capacity of a queue nobody declared", APPLY_BROKER},
    {"token-file", K_FILE, KEY_FIELD(token_file), NULL, 0, 0, 0, "PATH",
     "accepted auth tokens, one per line (none: no auth)", APPLY_NONE},
    {"http", K_ADDR, KEY_FIELD(http), NULL, 0, 0, 0, "HOST:PORT",
     "serve /metrics, /healthz and /stats over HTTP", APPLY_NONE},
    {"http-admin", K_BOOL, KEY_FIELD(http_admin), "false", 0, 0, 0, NULL,
     "let the --http listener list jobs and run admin ops (retry, delete, purge, pause...)",
     APPLY_NONE},
    {"config", K_ACTION, KEY_FIELD(config_file), NULL, 0, 0, KEY_CLI, "FILE",
     "read key = value lines first (flags override them)", APPLY_NONE},
    {"log-level", K_LEVEL, KEY_FIELD(log_level), "info", 0, 0, KEY_RELOAD, "error|warn|info|debug",
     "most verbose level logged", APPLY_LOGGER},
    {"log-format", K_LOGFMT, KEY_FIELD(log_format), "text", 0, 0, KEY_RELOAD, "text|json",
     "log lines as text or as JSON objects (one per line)", APPLY_LOGGER},
    {"max-connections", K_UINT, KEY_FIELD(max_connections), "10000", 1, 10000000, KEY_RELOAD, "N",
     "client connections at once", APPLY_READ_LIVE},
    {"max-connections-per-address", K_UINT, KEY_FIELD(max_connections_per_address), "0", 0,
     10000000, KEY_RELOAD, "N",
     "client connections at once from one IP address or IPv6 /64 (0 = no limit)", APPLY_READ_LIVE},
    {"idle-timeout", K_MS, KEY_FIELD(idle_timeout_ms), "0", 0, 7 * 24 * 3600 * 1000ull, KEY_RELOAD,
     "MS", "close a connection that waits on nothing and holds no job this long (0 = never)",
     APPLY_READ_LIVE},
    {"max-queues", K_UINT, KEY_FIELD(max_queues), "10000", 1, 10000000, KEY_RELOAD, "N",
     "queues at once", APPLY_BROKER},
    {"max-schedules", K_UINT, KEY_FIELD(max_schedules), "1000", 0, 100000, KEY_RELOAD, "N",
     "named schedules at once (the schedule op)", APPLY_BROKER},
    {"max-memory", K_SIZE, KEY_FIELD(max_memory), "1G", 1 * MIB, 1024 * GIB, KEY_RELOAD, "BYTES",
     "memory budget for job payloads and connection buffers", APPLY_BROKER},
    {"max-inflight", K_UINT, KEY_FIELD(max_inflight), "64", 1, 65536, KEY_RELOAD, "N",
     "requests in flight per connection before reading stops", APPLY_READ_LIVE},
    {"grace-ms", K_MS, KEY_FIELD(grace_ms), "5000", 0, 3600 * 1000ull, KEY_RELOAD, "MS",
     "time given to in-flight work on SIGTERM", APPLY_READ_LIVE},
    {"journal-segment", K_SIZE, KEY_FIELD(journal_segment_bytes), "64M", 64 * KIB, 1 * GIB, 0,
     "BYTES",
     "journal segment size: a new file is started past it (allocated whole with fsync always)",
     APPLY_NONE},
    {"journal-compact", K_SIZE, KEY_FIELD(journal_compact_bytes), "64M", 64 * KIB, 1024 * GIB, 0,
     "BYTES", "compact the journal when it is larger than this (and twice its last compacted size)",
     APPLY_NONE},
    {"keep-results", K_UINT, KEY_FIELD(keep_results), "10000", 0, 100000000, 0, "N",
     "finished jobs kept (newest first) for wait and job", APPLY_NONE},
    {"key-window", K_MS, KEY_FIELD(key_window_ms), "60000", 0, 7 * 24 * 3600 * 1000ull, 0, "MS",
     "an idempotency key stays bound this long after its job finished", APPLY_NONE},
    {"keep-keys", K_UINT, KEY_FIELD(keep_keys), "1000000", 0, 100000000, 0, "N",
     "idempotency keys of finished jobs kept at most (the oldest windows end early)", APPLY_NONE},
    {"repair", K_BOOL, KEY_FIELD(repair), "false", 0, 0, 0, NULL,
     "rewrite damaged journal segments keeping every record that checks", APPLY_NONE},
    {"check-config", K_BOOL, KEY_FIELD(check_config), "false", 0, 0, KEY_CLI, NULL,
     "validate the configuration and exit (0 valid, 2 not)", APPLY_NONE},
    {"tls-listen", K_ADDR_LIST, KEY_FIELD(tls_listen), NULL, 0, 0, 0, "HOST:PORT",
     "TLS address to serve, repeatable (needs tls-cert and tls-key)", APPLY_NONE},
    {"tls-cert", K_FILE, KEY_FIELD(tls_cert), NULL, 0, 0, KEY_RELOAD | KEY_REREAD, "PATH",
     "TLS certificate chain (PEM), re-read on every SIGHUP", APPLY_TLS},
    {"tls-key", K_FILE, KEY_FIELD(tls_key), NULL, 0, 0, KEY_RELOAD | KEY_REREAD, "PATH",
     "TLS private key (PEM), re-read on every SIGHUP", APPLY_TLS},
    {"node-id", K_UINT, KEY_FIELD(node_id), "0", 0, UINT32_MAX, 0, "N",
     "cluster mode: this node's id among peers (0 = not clustered)", APPLY_NONE},
    {"raft-listen", K_ADDR, KEY_FIELD(raft_listen), NULL, 0, 0, 0, "IPV4:PORT",
     "cluster mode: where to listen for the other nodes (default: this node's peers address)",
     APPLY_NONE},
    {"peers", K_PEERS, KEY_FIELD(peers), NULL, 0, 0, 0, "ID@IPV4:PORT[/HOST:PORT],...",
     "cluster mode: every voter's id and Raft address (and client address, for not_leader)",
     APPLY_NONE},
    {"join", K_BOOL, KEY_FIELD(join), "false", 0, 0, 0, NULL,
     "cluster mode: start a new node empty, to be added by the leader (chanq cluster add)",
     APPLY_NONE},
    {"raft-election-ms", K_MS, KEY_FIELD(raft_election_ms), "1000", 100, 60000, 0, "MS",
     "cluster mode: Raft election timeout (heartbeats every tenth of it)", APPLY_NONE},
    {"tls-client-ca", K_FILE, KEY_FIELD(tls_client_ca), NULL, 0, 0, KEY_RELOAD | KEY_REREAD, "PATH",
     "require TLS client certificates signed by these CAs (PEM)", APPLY_TLS},
};

const size_t config_n_keys = sizeof config_keys / sizeof config_keys[0];
_Static_assert(sizeof config_keys / sizeof config_keys[0] <= CONFIG_MAX_KEYS,
               "raise CONFIG_MAX_KEYS");

const struct config_key *
config_key_find(const char *name, size_t len)
{
    for (size_t i = 0; i < config_n_keys; i++)
        if (strlen(config_keys[i].name) == len && memcmp(config_keys[i].name, name, len) == 0)
            return &config_keys[i];
    return NULL;
}

/* Edit distance (insertions, deletions, substitutions) between a and the
 * first blen bytes of b; names longer than 63 bytes count as far. */
static size_t
edit_distance(const char *a, const char *b, size_t blen)
{
    size_t alen = strlen(a), row[64], prev_diag;
    if (alen >= 64 || blen >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= blen; j++)
        row[j] = j;
    for (size_t i = 1; i <= alen; i++) {
        prev_diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= blen; j++) {
            size_t sub = prev_diag + (a[i - 1] != b[j - 1]);
            size_t del = row[j] + 1, ins = row[j - 1] + 1;
            prev_diag = row[j];
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    }
    return row[blen];
}

/* The key whose name is nearest to a mistyped one, or NULL when none is
 * near enough (two edits, and fewer than half of the name) to be a typo. */
const char *
config_key_closest(const char *name, size_t len)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < config_n_keys; i++) {
        size_t d = edit_distance(config_keys[i].name, name, len);
        if (d < best_d) {
            best_d = d;
            best = config_keys[i].name;
        }
    }
    return best_d <= 2 && best_d * 2 < len ? best : NULL;
}

bool
config_key_info(size_t i, struct config_key_info *out)
{
    if (i >= config_n_keys)
        return false;
    out->name = config_keys[i].name;
    out->reloadable = config_keys[i].flags & KEY_RELOAD;
    out->has_apply = config_keys[i].apply != APPLY_NONE;
    return true;
}

void
config_usage(FILE *out)
{
    fprintf(out, "usage: chanqd [OPTION]...\n"
                 "Serve job queues (see chanqd(8) and docs/operations.md).\n\n");
    for (size_t i = 0; i < config_n_keys; i++) {
        const struct config_key *k = &config_keys[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", k->name, k->arg ? " " : "", k->arg ? k->arg : "");
        fprintf(out, "  %-30s %s", left, k->help);
        if (k->def && k->kind != K_BOOL)
            fprintf(out, " (default %s)", k->def);
        if (k->flags & KEY_RELOAD)
            fprintf(out, " [SIGHUP]");
        fputc('\n', out);
    }
    fprintf(out, "  %-30s %s\n  %-30s %s\n\n", "-h, --help", "print this and exit", "--version",
            "print the version and exit");
    fprintf(out, "Sizes are bytes, or a number with a K, M or G suffix (powers of 1024).\n"
                 "Every option is also a config-file key: 'key = value', '#' starts a comment\n"
                 "line; flags given on the command line override the file.\n");
}
