/* chanqd configuration: one table of keys (name, syntax, default, limits)
 * drives the defaults, the command line, the config file, --help and the
 * SIGHUP reload, so a key cannot be documented in one place and parsed
 * differently in another. */
#include "chanq_config.h"

#include "daemon/config.h"
#include "daemon/listen.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

enum kind {
    K_ADDR_LIST, /* HOST:PORT, repeatable; empty clears (char *[], see addr_list) */
    K_ADDR,      /* HOST:PORT or empty for none (char *) */
    K_UNIX,      /* Unix socket path or empty for none (char *) */
    K_DIR,       /* a directory path (char *) */
    K_FILE,      /* a readable file, or empty for none (char *) */
    K_BOOL,      /* true/false; a bare flag on the command line (bool) */
    K_FSYNC,     /* always|interval|never (enum config_fsync) */
    K_LEVEL,     /* error|warn|info|debug (enum log_level) */
    K_UINT,      /* decimal count (uint64_t) */
    K_SIZE,      /* bytes with optional K/M/G (size_t) */
    K_MS,        /* milliseconds (int64_t) */
    K_ACTION,    /* --config, --help, --version: command line only */
    K_PEERS,     /* ID@HOST:PORT[/HOST:PORT],... or empty for none (char *) */
};

enum {
    KEY_RELOAD = 1, /* SIGHUP applies a new value without a restart */
    KEY_CLI = 2,    /* only on the command line, never in the file */
    KEY_REREAD = 4, /* its apply step runs on every reload, changed or not */
};

/* How a reloaded value reaches the code that uses it, once config_reload
 * stored it in the live config (see the apply_* steps below the table). */
typedef void apply_fn(const struct config *live, const struct config_hooks *hooks);
static apply_fn apply_read_live, apply_log_level, apply_broker, apply_tls;

struct key {
    const char *name; /* long flag and config-file key */
    enum kind kind;   /* value syntax and field type */
    size_t off;       /* the field in struct config */
    const char *def;  /* default as text; NULL for none */
    uint64_t min;     /* numeric bounds, inclusive */
    uint64_t max;
    unsigned flags;   /* KEY_* */
    const char *arg;  /* metavariable for --help */
    const char *help; /* one line for --help */
    apply_fn *apply;  /* for KEY_RELOAD: how the daemon takes a new value */
};

#define F(field) offsetof(struct config, field)
#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

/* Every key of chanqd. docs/operations.md, contrib/chanqd.conf and the man
 * page list the same keys and defaults (tests/ops/test_config.py checks). */
static const struct key keys[] = {
    {"listen", K_ADDR_LIST, F(listen), "127.0.0.1:7420", 0, 0, 0, "HOST:PORT",
     "TCP address to serve, repeatable ([::1]:PORT for IPv6, port 0 = any free)", NULL},
    {"unix", K_UNIX, F(unix_path), NULL, 0, 0, 0, "PATH", "also serve on this Unix socket", NULL},
    {"data-dir", K_DIR, F(data_dir), "./var", 0, 0, 0, "DIR", "where the journal is kept", NULL},
    {"memory", K_BOOL, F(memory), "false", 0, 0, 0, NULL, "keep nothing on disk", NULL},
    {"fsync", K_FSYNC, F(fsync), "always", 0, 0, 0, "always|interval|never",
     "when the journal is fsynced", NULL},
    {"threads", K_UINT, F(threads), "0", 0, 1024, 0, "N", "goroutine threads (0 = one per CPU)",
     NULL},
    {"max-frame", K_SIZE, F(max_frame), "1M", 1 * KIB, 1 * GIB, 0, "BYTES", "longest request line",
     NULL},
    {"max-job", K_SIZE, F(max_job), "512K", 1, 1 * GIB, KEY_RELOAD, "BYTES",
     "largest job payload; when unset, at most half of max-frame", apply_read_live},
    {"submit-wait", K_MS, F(submit_wait_ms), "30000", 0, 24 * 3600 * 1000ull, KEY_RELOAD, "MS",
     "how long a submit waits for room by default", apply_broker},
    {"default-capacity", K_UINT, F(default_capacity), "1000", 0, 100000000, KEY_RELOAD, "N",
     "capacity of a queue nobody declared", apply_broker},
    {"token-file", K_FILE, F(token_file), NULL, 0, 0, 0, "PATH",
     "accepted auth tokens, one per line (none: no auth)", NULL},
    {"http", K_ADDR, F(http), NULL, 0, 0, 0, "HOST:PORT",
     "serve /metrics, /healthz and /stats over HTTP", NULL},
    {"http-admin", K_BOOL, F(http_admin), "false", 0, 0, 0, NULL,
     "let the --http listener pause, resume, close and kick queues", NULL},
    {"config", K_ACTION, F(config_file), NULL, 0, 0, KEY_CLI, "FILE",
     "read key = value lines first (flags override them)", NULL},
    {"log-level", K_LEVEL, F(log_level), "info", 0, 0, KEY_RELOAD, "error|warn|info|debug",
     "most verbose level logged", apply_log_level},
    {"max-connections", K_UINT, F(max_connections), "10000", 1, 10000000, KEY_RELOAD, "N",
     "client connections at once", apply_read_live},
    {"max-connections-per-address", K_UINT, F(max_connections_per_address), "0", 0, 10000000,
     KEY_RELOAD, "N", "client connections at once from one IP address or IPv6 /64 (0 = no limit)",
     apply_read_live},
    {"idle-timeout", K_MS, F(idle_timeout_ms), "0", 0, 7 * 24 * 3600 * 1000ull, KEY_RELOAD, "MS",
     "close a connection that waits on nothing and holds no job this long (0 = never)",
     apply_read_live},
    {"max-queues", K_UINT, F(max_queues), "10000", 1, 10000000, KEY_RELOAD, "N", "queues at once",
     apply_broker},
    {"max-memory", K_SIZE, F(max_memory), "1G", 1 * MIB, 1024 * GIB, KEY_RELOAD, "BYTES",
     "memory budget for job payloads and connection buffers", apply_broker},
    {"max-inflight", K_UINT, F(max_inflight), "64", 1, 65536, KEY_RELOAD, "N",
     "requests in flight per connection before reading stops", apply_read_live},
    {"grace-ms", K_MS, F(grace_ms), "5000", 0, 3600 * 1000ull, KEY_RELOAD, "MS",
     "time given to in-flight work on SIGTERM", apply_read_live},
    {"journal-segment", K_SIZE, F(journal_segment_bytes), "64M", 64 * KIB, 1 * GIB, 0, "BYTES",
     "journal segment size: a new file is started past it (allocated whole with fsync always)",
     NULL},
    {"journal-compact", K_SIZE, F(journal_compact_bytes), "64M", 64 * KIB, 1024 * GIB, 0, "BYTES",
     "compact the journal when it is larger than this (and twice its last compacted size)",
     NULL},
    {"keep-results", K_UINT, F(keep_results), "10000", 0, 100000000, 0, "N",
     "finished jobs kept (newest first) for wait and job", NULL},
    {"repair", K_BOOL, F(repair), "false", 0, 0, 0, NULL,
     "rewrite damaged journal segments keeping every record that checks", NULL},
    {"check-config", K_BOOL, F(check_config), "false", 0, 0, KEY_CLI, NULL,
     "validate the configuration and exit (0 valid, 2 not)", NULL},
    {"tls-listen", K_ADDR_LIST, F(tls_listen), NULL, 0, 0, 0, "HOST:PORT",
     "TLS address to serve, repeatable (needs tls-cert and tls-key)", NULL},
    {"tls-cert", K_FILE, F(tls_cert), NULL, 0, 0, KEY_RELOAD | KEY_REREAD, "PATH",
     "TLS certificate chain (PEM), re-read on every SIGHUP", apply_tls},
    {"tls-key", K_FILE, F(tls_key), NULL, 0, 0, KEY_RELOAD | KEY_REREAD, "PATH",
     "TLS private key (PEM), re-read on every SIGHUP", apply_tls},
    {"node-id", K_UINT, F(node_id), "0", 0, UINT32_MAX, 0, "N",
     "cluster mode: this node's id among peers (0 = not clustered)", NULL},
    {"raft-listen", K_ADDR, F(raft_listen), NULL, 0, 0, 0, "IPV4:PORT",
     "cluster mode: where to listen for the other nodes (default: this node's peers address)",
     NULL},
    {"peers", K_PEERS, F(peers), NULL, 0, 0, 0, "ID@IPV4:PORT[/HOST:PORT],...",
     "cluster mode: every voter's id and Raft address (and client address, for not_leader)",
     NULL},
    {"raft-election-ms", K_MS, F(raft_election_ms), "1000", 100, 60000, 0, "MS",
     "cluster mode: Raft election timeout (heartbeats every tenth of it)", NULL},
    {"tls-client-ca", K_FILE, F(tls_client_ca), NULL, 0, 0, KEY_RELOAD | KEY_REREAD, "PATH",
     "require TLS client certificates signed by these CAs (PEM)", apply_tls},
};

#define N_KEYS (sizeof keys / sizeof keys[0])

static const char *const fsync_names[] = {"always", "interval", "never"};

const char *
config_fsync_name(enum config_fsync f)
{
    return fsync_names[f];
}

static void *
field(const struct config *cfg, const struct key *k)
{
    return (char *)cfg + k->off;
}

static const struct key *
key_find(const char *name, size_t len)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
            return &keys[i];
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
static const char *
closest_key(const char *name, size_t len)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < N_KEYS; i++) {
        size_t d = edit_distance(keys[i].name, name, len);
        if (d < best_d) {
            best_d = d;
            best = keys[i].name;
        }
    }
    return best_d <= 2 && best_d * 2 < len ? best : NULL;
}

static void __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int
parse_u64(const char *s, uint64_t *out, const char **end)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    uint64_t v = 0;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    *end = s;
    return 0;
}

int
config_parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mult = 1;
    const char *p;
    if (parse_u64(s, &v, &p) < 0)
        return -1;
    switch (tolower((unsigned char)*p)) {
    case 'k':
        mult = KIB;
        break;
    case 'm':
        mult = MIB;
        break;
    case 'g':
        mult = GIB;
        break;
    case '\0':
        break;
    default:
        return -1;
    }
    if (mult != 1) {
        p++;
        if (tolower((unsigned char)*p) == 'i')
            p++;
        if (tolower((unsigned char)*p) == 'b')
            p++;
    }
    if (*p != '\0' || v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

static int
parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int
check_addr(const char *v)
{
    char host[256], port[32];
    if (listener_split_addr(v, host, sizeof host, port, sizeof port) < 0)
        return -1;
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    return (*end || errno || p < 0 || p > 65535) ? -1 : 0;
}

/* The array and the count behind an address-list key (listen, tls-listen). */
static char **
addr_list(const struct config *cfg, const struct key *k, size_t **n)
{
    size_t count_off = k->off == F(tls_listen) ? F(n_tls_listen) : F(n_listen);
    *n = (size_t *)((char *)cfg + count_off);
    return field(cfg, k);
}

static void
list_clear(struct config *cfg, const struct key *k)
{
    size_t *n;
    char **list = addr_list(cfg, k, &n);
    for (size_t i = 0; i < *n; i++) {
        free(list[i]);
        list[i] = NULL;
    }
    *n = 0;
}

/* Appends v to an address-list key; an empty v clears the list. */
static int
list_add(struct config *cfg, const struct key *k, const char *v, char *err, size_t errlen)
{
    size_t *n;
    char **list = addr_list(cfg, k, &n);
    if (*v == '\0') {
        list_clear(cfg, k);
        return 0;
    }
    if (check_addr(v) < 0) {
        fail(err, errlen, "%s: '%s' is not HOST:PORT or [IPV6]:PORT", k->name, v);
        return -1;
    }
    if (*n == CONFIG_MAX_LISTEN) {
        fail(err, errlen, "%s: at most %d addresses", k->name, CONFIG_MAX_LISTEN);
        return -1;
    }
    if (!(list[*n] = strdup(v))) {
        fail(err, errlen, "%s: out of memory", k->name);
        return -1;
    }
    (*n)++;
    return 0;
}

/* Replaces the string at *slot with a copy of v (NULL when v is empty and
 * empty means "none"). */
static int
set_string(char **slot, const char *v, bool empty_is_none)
{
    char *copy = NULL;
    if (!(empty_is_none && *v == '\0') && !(copy = strdup(v)))
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

static int
set_number(struct config *cfg, const struct key *k, const char *v, char *err, size_t errlen)
{
    uint64_t n;
    const char *end;
    int bad = k->kind == K_SIZE ? config_parse_size(v, &n) : parse_u64(v, &n, &end) || *end;
    if (bad) {
        fail(err, errlen, "%s: '%s' is not %s", k->name, v,
             k->kind == K_SIZE ? "a size (bytes, or a number with a K, M or G suffix)"
             : k->kind == K_MS ? "a number of milliseconds"
                               : "a non-negative whole number");
        return -1;
    }
    if (n < k->min || n > k->max) {
        fail(err, errlen, "%s: %" PRIu64 " is out of range (%" PRIu64 "..%" PRIu64 ")", k->name, n,
             k->min, k->max);
        return -1;
    }
    if (k->kind == K_SIZE)
        *(size_t *)field(cfg, k) = (size_t)n;
    else if (k->kind == K_MS)
        *(int64_t *)field(cfg, k) = (int64_t)n;
    else
        *(uint64_t *)field(cfg, k) = n;
    return 0;
}

/* Sets key k from text v. Returns 0, or -1 with the reason in err (no
 * location: the caller adds "--flag" or "file:line"). */
static int
set_value(struct config *cfg, const struct key *k, const char *v, char *err, size_t errlen)
{
    int rc = 0;
    switch (k->kind) {
    case K_ADDR_LIST:
        return list_add(cfg, k, v, err, errlen);
    case K_ADDR:
        if (*v && check_addr(v) < 0)
            goto bad_addr;
        rc = set_string(field(cfg, k), v, true);
        break;
    case K_UNIX:
        if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            fail(err, errlen, "%s: path longer than %zu bytes", k->name,
                 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            return -1;
        }
        rc = set_string(field(cfg, k), v, true);
        break;
    case K_DIR:
        if (!*v) {
            fail(err, errlen, "%s: empty path", k->name);
            return -1;
        }
        rc = set_string(field(cfg, k), v, false);
        if (rc == 0 && k->off == F(data_dir))
            cfg->memory = false; /* --data-dir after --memory means the dir */
        break;
    case K_PEERS: {
        struct config_peer tmp[CONFIG_MAX_PEERS];
        size_t n;
        if (*v && config_parse_peers(v, tmp, CONFIG_MAX_PEERS, &n, err, errlen) < 0)
            return -1;
        rc = set_string(field(cfg, k), v, true);
        break;
    }
    case K_FILE:
    case K_ACTION:
        if (*v && access(v, R_OK) != 0) {
            fail(err, errlen, "%s: cannot read '%s': %s", k->name, v, strerror(errno));
            return -1;
        }
        rc = set_string(field(cfg, k), v, true);
        break;
    case K_BOOL:
        if (parse_bool(v, field(cfg, k)) < 0) {
            fail(err, errlen, "%s: '%s' is not true or false", k->name, v);
            return -1;
        }
        return 0;
    case K_FSYNC:
        for (size_t i = 0; i < 3; i++) {
            if (strcmp(v, fsync_names[i]) == 0) {
                *(enum config_fsync *)field(cfg, k) = (enum config_fsync)i;
                return 0;
            }
        }
        fail(err, errlen, "%s: '%s' is not always, interval or never", k->name, v);
        return -1;
    case K_LEVEL:
        if (log_level_parse(v, field(cfg, k)) < 0) {
            fail(err, errlen, "%s: '%s' is not error, warn, info or debug", k->name, v);
            return -1;
        }
        return 0;
    case K_UINT:
    case K_SIZE:
    case K_MS:
        if (set_number(cfg, k, v, err, errlen) < 0)
            return -1;
        if (k->off == F(max_job))
            cfg->max_job_set = true;
        return 0;
    }
    if (rc < 0)
        goto oom;
    return 0;

bad_addr:
    fail(err, errlen, "%s: '%s' is not HOST:PORT or [IPV6]:PORT", k->name, v);
    return -1;
oom:
    fail(err, errlen, "%s: out of memory", k->name);
    return -1;
}

void
config_free(struct config *cfg)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        enum kind kd = keys[i].kind;
        if (kd == K_ADDR_LIST)
            list_clear(cfg, &keys[i]);
        if (kd == K_ADDR || kd == K_UNIX || kd == K_DIR || kd == K_FILE || kd == K_ACTION ||
            kd == K_PEERS) {
            char **slot = field(cfg, &keys[i]);
            free(*slot);
            *slot = NULL;
        }
    }
}

int
config_defaults(struct config *cfg)
{
    char err[256];
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_KEYS; i++) {
        /* The listen default applies only when nothing else is configured
         * (config_finish). */
        if (keys[i].def && keys[i].kind != K_ADDR_LIST &&
            set_value(cfg, &keys[i], keys[i].def, err, sizeof err) < 0) {
            config_free(cfg);
            return -ENOMEM;
        }
    }
    cfg->max_job_set = false; /* the default is not a choice (config_finish) */
    return 0;
}

/* One "ID@HOST:PORT[/HOST:PORT]" of a peers list (len bytes at s). */
static int
parse_peer(const char *s, size_t len, struct config_peer *p, char *err, size_t errlen)
{
    char item[160];
    if (len >= sizeof item) {
        fail(err, errlen, "peers: '%.*s' is too long", (int)len, s);
        return -1;
    }
    memcpy(item, s, len);
    item[len] = '\0';
    const char *end;
    uint64_t id;
    char *at = strchr(item, '@');
    if (!at || parse_u64(item, &id, &end) < 0 || end != at || id == 0 || id > UINT32_MAX) {
        fail(err, errlen, "peers: '%s' is not ID@IPV4:PORT (ID 1..%u)", item, UINT32_MAX);
        return -1;
    }
    char *client = strchr(at + 1, '/');
    if (client)
        *client++ = '\0';
    /* libraft's transport speaks IPv4 "a.b.c.d:port" only. */
    unsigned a, b, c, d, port;
    char extra;
    if (strlen(at + 1) >= sizeof p->raft ||
        sscanf(at + 1, "%u.%u.%u.%u:%u%c", &a, &b, &c, &d, &port, &extra) != 5 || a > 255 ||
        b > 255 || c > 255 || d > 255 || port == 0 || port > 65535) {
        fail(err, errlen, "peers: '%s' is not an IPv4 address and port", at + 1);
        return -1;
    }
    if (client && (strlen(client) >= sizeof p->client || check_addr(client) < 0)) {
        fail(err, errlen, "peers: client address '%s' is not HOST:PORT", client);
        return -1;
    }
    p->id = id;
    snprintf(p->raft, sizeof p->raft, "%s", at + 1);
    snprintf(p->client, sizeof p->client, "%s", client ? client : "");
    return 0;
}

int
config_parse_peers(const char *s, struct config_peer *out, size_t max, size_t *n, char *err,
                   size_t errlen)
{
    *n = 0;
    for (const char *p = s;; p++) {
        size_t len = strcspn(p, ",");
        if (*n == max) {
            fail(err, errlen, "peers: at most %zu nodes", max);
            return -1;
        }
        if (parse_peer(p, len, &out[*n], err, errlen) < 0)
            return -1;
        for (size_t i = 0; i < *n; i++) {
            if (out[i].id == out[*n].id || strcmp(out[i].raft, out[*n].raft) == 0) {
                fail(err, errlen, "peers: node %" PRIu64 " or address %s is listed twice",
                     out[*n].id, out[*n].raft);
                return -1;
            }
        }
        (*n)++;
        p += len;
        if (*p == '\0')
            return 0;
    }
}

/* Cluster mode: node-id and peers go together, name this node, and need a
 * data dir (the Raft log is the journal) and a chanqd built with them. */
static int
cluster_finish(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->node_id == 0 && !cfg->peers && !cfg->raft_listen)
        return 0;
#ifndef CHANQ_CLUSTER
    fail(err, errlen, "node-id, raft-listen, peers: this chanqd was built without cluster "
                      "support (configure --without-cluster)");
    return -1;
#else
    struct config_peer peers[CONFIG_MAX_PEERS];
    size_t n;
    if (cfg->node_id == 0 || !cfg->peers) {
        fail(err, errlen, "cluster mode needs both node-id and peers");
        return -1;
    }
    if (cfg->memory) {
        fail(err, errlen, "cluster mode keeps its log in data-dir: it cannot run with memory");
        return -1;
    }
    if (cfg->http_admin) {
        fail(err, errlen, "http-admin is not available in cluster mode yet");
        return -1;
    }
    if (config_parse_peers(cfg->peers, peers, CONFIG_MAX_PEERS, &n, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (peers[i].id == cfg->node_id)
            return 0;
    fail(err, errlen, "node-id %" PRIu64 " is not among peers", cfg->node_id);
    return -1;
#endif
}

/* Cross-key checks and the listen default, once every source is applied. */
static int
config_finish(struct config *cfg, char *err, size_t errlen)
{
    /* An unset max-job follows a lowered max-frame, leaving half of the
     * line to the rest of the request (1M frames: the 512K default). */
    if (!cfg->max_job_set && cfg->max_job > cfg->max_frame / 2)
        cfg->max_job = cfg->max_frame / 2;
    if (cfg->max_job > cfg->max_frame) {
        fail(err, errlen, "max-job (%zu) must not exceed max-frame (%zu)", cfg->max_job,
             cfg->max_frame);
        return -1;
    }
    if (cfg->n_tls_listen > 0 && (!cfg->tls_cert || !cfg->tls_key)) {
        fail(err, errlen, "tls-listen needs tls-cert and tls-key");
        return -1;
    }
    if (cluster_finish(cfg, err, errlen) < 0)
        return -1;
    /* The plain default only when nothing at all is configured: a TLS-only
     * setup gets no cleartext port it did not ask for. */
    if (cfg->n_listen == 0 && !cfg->unix_path && cfg->n_tls_listen == 0)
        return set_value(cfg, &keys[0], keys[0].def, err, errlen);
    return 0;
}

char *
config_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* One line of a config file. Returns 0, or -1 with the reason in err. */
static int
load_line(struct config *cfg, char *line, char *err, size_t errlen)
{
    char *s = config_trim(line);
    if (*s == '\0' || *s == '#')
        return 0;
    char *eq = strchr(s, '=');
    if (!eq) {
        fail(err, errlen, "expected 'key = value', got '%s'", s);
        return -1;
    }
    *eq = '\0';
    char *name = config_trim(s);
    char *value = config_trim(eq + 1);
    const struct key *k = key_find(name, strlen(name));
    if (!k) {
        const char *near = closest_key(name, strlen(name));
        if (near)
            fail(err, errlen, "unknown key '%s'; did you mean '%s'?", name, near);
        else
            fail(err, errlen, "unknown key '%s'", name);
        return -1;
    }
    if (k->flags & KEY_CLI) {
        fail(err, errlen, "'%s' is only valid on the command line", name);
        return -1;
    }
    return set_value(cfg, k, value, err, errlen);
}

int
config_load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    char why[384];
    int rc = 0;
    for (unsigned lineno = 1; getline(&line, &cap, f) >= 0; lineno++) {
        if (load_line(cfg, line, why, sizeof why) < 0) {
            fail(err, errlen, "%s:%u: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        fail(err, errlen, "%s: read error: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}

/* Splits argv[*i] into its key and value (from "=value" or the next
 * argument, advancing *i). Returns the key, or NULL with the reason in err. */
static const struct key *
arg_next(int argc, char *const *argv, int *i, const char **value, char *err, size_t errlen)
{
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
        fail(err, errlen, "unexpected argument '%s'", a);
        return NULL;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct key *k = key_find(name, len);
    if (!k) {
        const char *near = closest_key(name, len);
        if (near)
            fail(err, errlen, "unknown option '--%.*s'; did you mean '--%s'?", (int)len, name,
                 near);
        else
            fail(err, errlen, "unknown option '--%.*s' (see chanqd --help)", (int)len, name);
        return NULL;
    }
    if (eq) {
        *value = eq + 1;
    } else if (k->kind == K_BOOL) {
        *value = "true";
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        fail(err, errlen, "option '--%s' needs a value (%s)", k->name, k->arg);
        return NULL;
    }
    return k;
}

static bool
is_word(const char *a, const char *word)
{
    return strncmp(a, "--", 2) == 0 && strcmp(a + 2, word) == 0;
}

int
config_parse_args(struct config *cfg, int argc, char *const *argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        if (is_word(argv[i], "help") || strcmp(argv[i], "-h") == 0) {
            config_usage(stdout);
            return 1;
        }
        if (is_word(argv[i], "version")) {
            printf("chanqd %s\n", PACKAGE_VERSION);
            return 1;
        }
    }
    /* Pass 1: only --config, so that the file is applied before the flags. */
    for (int i = 1; i < argc; i++) {
        const char *v;
        const struct key *k = arg_next(argc, argv, &i, &v, err, errlen);
        if (!k)
            return -1;
        if (k->off == F(config_file) && k->kind == K_ACTION &&
            set_value(cfg, k, v, err, errlen) < 0)
            return -1;
    }
    if (cfg->config_file && config_load_file(cfg, cfg->config_file, err, errlen) < 0)
        return -1;
    /* Pass 2: every flag, overriding the file. --listen (--tls-listen) on
     * the command line replaces the file's list rather than adding to it. */
    bool list_from_flags[N_KEYS] = {false};
    for (int i = 1; i < argc; i++) {
        const char *v;
        const struct key *k = arg_next(argc, argv, &i, &v, err, errlen);
        if (!k)
            return -1; /* cannot happen: pass 1 read the same argv */
        if (k->kind == K_ACTION)
            continue;
        if (k->kind == K_ADDR_LIST && !list_from_flags[k - keys]) {
            list_clear(cfg, k);
            list_from_flags[k - keys] = true;
        }
        char why[384];
        if (set_value(cfg, k, v, why, sizeof why) < 0) {
            fail(err, errlen, "--%s", why);
            return -1;
        }
    }
    return config_finish(cfg, err, errlen);
}

/* Writes key k's value in *cfg as text (as a config file would say it). */
static void
format_value(const struct config *cfg, const struct key *k, char *buf, size_t len)
{
    void *p = field(cfg, k);
    const char *s;
    size_t *n;
    char **list;
    switch (k->kind) {
    case K_ADDR_LIST:
        buf[0] = '\0';
        list = addr_list(cfg, k, &n);
        for (size_t i = 0, off = 0; i < *n && off < len; i++)
            off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? " " : "", list[i]);
        return;
    case K_ADDR:
    case K_UNIX:
    case K_DIR:
    case K_FILE:
    case K_ACTION:
    case K_PEERS:
        s = *(char **)p;
        snprintf(buf, len, "%s", s ? s : "");
        return;
    case K_BOOL:
        snprintf(buf, len, "%s", *(bool *)p ? "true" : "false");
        return;
    case K_FSYNC:
        snprintf(buf, len, "%s", fsync_names[*(enum config_fsync *)p]);
        return;
    case K_LEVEL:
        snprintf(buf, len, "%s", log_level_name(*(enum log_level *)p));
        return;
    case K_UINT:
        snprintf(buf, len, "%" PRIu64, *(uint64_t *)p);
        return;
    case K_SIZE:
        snprintf(buf, len, "%zu", *(size_t *)p);
        return;
    case K_MS:
        snprintf(buf, len, "%" PRId64, *(int64_t *)p);
        return;
    }
}

/* Copies key k's value from src to dst with an atomic store (readers on
 * other threads use config_get). Only for reloadable keys: scalars, and
 * file paths that only the loop thread reads. */
static void
store_value(struct config *dst, const struct config *src, const struct key *k)
{
    void *d = field(dst, k), *s = field(src, k);
    switch (k->kind) {
    case K_LEVEL:
        __atomic_store_n((enum log_level *)d, *(enum log_level *)s, __ATOMIC_RELAXED);
        break;
    case K_UINT:
        __atomic_store_n((uint64_t *)d, *(uint64_t *)s, __ATOMIC_RELAXED);
        break;
    case K_SIZE:
        __atomic_store_n((size_t *)d, *(size_t *)s, __ATOMIC_RELAXED);
        break;
    case K_MS:
        __atomic_store_n((int64_t *)d, *(int64_t *)s, __ATOMIC_RELAXED);
        break;
    case K_FILE:
        /* Paths only the loop thread reads (tls-*): a plain swap. */
        if (set_string(d, *(char **)s ? *(char **)s : "", true) < 0)
            log_error("reload: %s: out of memory, keeping the old path", k->name);
        break;
    default:
        break;
    }
}

/* The apply steps. Each runs on the loop thread after every changed value
 * is stored, once per reload however many of its keys changed: the broker
 * takes four keys at a time, and a new certificate is only usable together
 * with its new key. */

/* The users of the key read the live field with config_get() at every use
 * (the decoder per request, accept per connection, the stop per SIGTERM),
 * so the atomic store is the whole step. */
static void
apply_read_live(const struct config *live, const struct config_hooks *hooks)
{
}

/* The logger keeps its own level. */
static void
apply_log_level(const struct config *live, const struct config_hooks *hooks)
{
    log_set_level(live->log_level);
}

/* The broker keeps its settings under its own lock. */
static void
apply_broker(const struct config *live, const struct config_hooks *hooks)
{
    if (hooks && hooks->broker)
        hooks->broker(hooks->arg, live);
}

static void
apply_tls(const struct config *live, const struct config_hooks *hooks)
{
    if (hooks && hooks->tls)
        hooks->tls(hooks->arg, live);
}

/* Adds fn to the steps to run, unless it is there already. */
static void
add_step(apply_fn **steps, size_t *n, apply_fn *fn)
{
    if (!fn)
        return; /* a key without a step: the reload test fails on it */
    for (size_t i = 0; i < *n; i++)
        if (steps[i] == fn)
            return;
    steps[(*n)++] = fn;
}

int
config_reload(struct config *live, const struct config *fresh, const struct config_hooks *hooks)
{
    int changed = 0;
    apply_fn *steps[N_KEYS];
    size_t nsteps = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        char was[512], now[512];
        format_value(live, k, was, sizeof was);
        format_value(fresh, k, now, sizeof now);
        bool same = strcmp(was, now) == 0;
        if (k->flags & KEY_REREAD)
            add_step(steps, &nsteps, k->apply);
        if (same || (k->flags & KEY_CLI))
            continue;
        if (k->flags & KEY_RELOAD) {
            /* Logged first: a quieter log level would hide its own change. */
            log_info("reload: %s %s -> %s", k->name, was, now);
            store_value(live, fresh, k);
            add_step(steps, &nsteps, k->apply);
            changed++;
        } else {
            log_warn("reload: %s changed (%s -> %s) but needs a restart; keeping %s", k->name,
                     was, now, was);
        }
    }
    for (size_t i = 0; i < nsteps; i++)
        steps[i](live, hooks);
    if (changed == 0)
        log_info("reload: nothing that can change without a restart changed");
    return changed;
}

bool
config_key_info(size_t i, struct config_key_info *out)
{
    if (i >= N_KEYS)
        return false;
    out->name = keys[i].name;
    out->reloadable = keys[i].flags & KEY_RELOAD;
    out->has_apply = keys[i].apply != NULL;
    return true;
}

void
config_usage(FILE *out)
{
    fprintf(out, "usage: chanqd [OPTION]...\n"
                 "Serve job queues (see chanqd(8) and docs/operations.md).\n\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
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
