/* The server: owns the libevent loop (on the main thread), the goroutine
 * runtime's bridge to it, the broker, listeners and signal handling. */
#include "chanq_config.h"

#include "daemon/server.h"
#include "daemon/broker.h"
#include "daemon/closewatch.h"
#include "daemon/conn.h"
#include "daemon/journal/journal.h"
#include "daemon/listen.h"
#include "daemon/log.h"
#include "daemon/peers.h"
#include "daemon/membudget.h"
#include "daemon/sd.h"
#include "daemon/tls.h"

#include "core/ctx.h"
#include "core/evbridge.h"
#include "core/go.h"
#include "core/sched.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <event2/thread.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STOP_POLL_MS 20
/* Goroutines the loop thread runs between two polls before it hands the
 * rest to the workers. */
#define LOOP_BUDGET 64
#define MAX_TOKEN 4096

struct server {
    struct config *cfg;                  /* borrowed from main */
    struct event_base *base;             /* the I/O loop (main thread) */
    struct evbridge *bridge;             /* goroutines -> loop calls */
    struct ctx *root;                    /* cancelled on stop: ends every wait */
    struct broker *broker;               /* queues and jobs */
    struct journal *journal;             /* durability; NULL with --memory */
    char **tokens;                       /* --token-file lines; none: no auth */
    size_t ntokens;
    struct listener_set *listeners;      /* --listen, --unix or systemd's sockets */
    struct tls *tls;                     /* --tls-cert/--tls-key context; NULL without --tls-listen */
    struct closewatch *closewatch;       /* paused connections, watched for their peer's close */
    struct event *sig_term, *sig_int;    /* graceful stop */
    struct event *stop_timer;            /* polls the drain during a stop */
    int64_t stop_deadline;               /* when the grace period ends */
    struct peers *peers;                 /* per-address counts and failed hellos */
    struct event *tick;                  /* idle connections, per-address log lines */
    struct conn *conns;                  /* live connections (loop) */
    _Atomic size_t connections;          /* how many (written on the loop) */
    _Atomic bool stopping;               /* SIGTERM/SIGINT seen */
    size_t idle_goroutines;              /* the server's own (journal writer...) */
    size_t closed_since_trim;            /* connections closed since the last malloc_trim (loop) */
    pthread_t loop_thread;               /* the thread in server_run */
    _Atomic bool loop_running;           /* loop_thread is set */
    time_t started;                      /* for uptime_s in stats */
};

/* Whether a new connection from peer may be served: under max-connections,
 * and under max-connections-per-address (then counted for its address).
 * *why says which limit refused it. */
static bool
admit(struct server *srv, const struct peer_addr *peer, const char **why)
{
    uint64_t max = config_get(srv->cfg, max_connections);
    if (atomic_load(&srv->connections) >= max) {
        *why = "too many connections";
        log_warn_limited("refused a connection: %llu connections is the limit",
                         (unsigned long long)max);
        return false;
    }
    /* Logged per address, once per interval, by peers_tick. */
    *why = "too many connections from this address";
    return peers_admit(srv->peers, peer, config_get(srv->cfg, max_connections_per_address));
}

/* A plain or TLS connection for an admitted socket; undoes the count for
 * its address when it cannot be made. */
static void
open_conn(struct server *srv, evutil_socket_t fd, const struct peer_addr *peer, struct tls *tls)
{
    if (!conn_new(srv, fd, peer, tls)) {
        peers_release(srv->peers, peer);
        log_warn_limited("dropped a new %sconnection: out of memory", tls ? "TLS " : "");
    }
}

static void
on_accept(evutil_socket_t fd, const struct sockaddr *peer, int peerlen, void *arg)
{
    struct server *srv = arg;
    struct peer_addr addr;
    const char *why;
    peer_addr_from_sa(&addr, peerlen > 0 ? peer : NULL);
    if (!admit(srv, &addr, &why)) {
        char msg[160];
        int n = snprintf(msg, sizeof msg,
                         "{\"ok\":false,\"error\":{\"code\":\"limit\",\"message\":\"%s\"}}\n",
                         why);
        ssize_t w = write(fd, msg, (size_t)n);
        (void)w; /* best effort: the client learns why, then the socket closes */
        evutil_closesocket(fd);
        return;
    }
    open_conn(srv, fd, &addr, NULL);
}

/* A --tls-listen socket: over a limit it is just closed (a cleartext
 * answer would mean nothing to a TLS client). */
static void
on_accept_tls(evutil_socket_t fd, const struct sockaddr *peer, int peerlen, void *arg)
{
    struct server *srv = arg;
    struct peer_addr addr;
    const char *why;
    peer_addr_from_sa(&addr, peerlen > 0 ? peer : NULL);
    if (!admit(srv, &addr, &why)) {
        evutil_closesocket(fd);
        return;
    }
    open_conn(srv, fd, &addr, srv->tls);
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The tick's period: a fraction of idle-timeout (a connection is closed
 * at most an eighth of it late), else once a second for the peers' log. */
static int64_t
tick_ms(const struct config *cfg)
{
    int64_t idle = config_get(cfg, idle_timeout_ms);
    int64_t t = idle > 0 ? idle / 8 : 1000;
    return t < 10 ? 10 : t > 1000 ? 1000 : t;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    int64_t idle = config_get(srv->cfg, idle_timeout_ms);
    if (idle > 0 && !server_stopping(srv)) {
        int64_t now = mono_ms();
        for (struct conn *c = srv->conns, *next; c; c = next) {
            next = conn_next(c); /* an idle one leaves the list */
            conn_check_idle(c, now, idle);
        }
    }
    peers_tick(srv->peers);
    int64_t t = tick_ms(srv->cfg);
    struct timeval tv = {t / 1000, (t % 1000) * 1000};
    event_add(srv->tick, &tv);
}

/* During a stop: once every connection is gone (or the grace period is
 * over, when the rest are closed), leave the loop. */
static void
on_stop_poll(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    if (srv->conns && mono_ms() >= srv->stop_deadline) {
        log_warn("grace period over: closing %zu connections", atomic_load(&srv->connections));
        for (struct conn *c = srv->conns, *next; c; c = next) {
            next = conn_next(c);
            conn_shutdown(c);
        }
    }
    if (!srv->conns && (go_count() <= srv->idle_goroutines || mono_ms() >= srv->stop_deadline)) {
        event_base_loopexit(srv->base, NULL);
        return;
    }
    struct timeval tv = {0, STOP_POLL_MS * 1000};
    event_add(srv->stop_timer, &tv);
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    if (atomic_exchange(&srv->stopping, true)) {
        log_info("second stop signal: closing every connection now");
        srv->stop_deadline = 0;
        return;
    }
    log_info("received %s, stopping (grace %lld ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
             (long long)config_get(srv->cfg, grace_ms));
    listener_set_free(srv->listeners);
    srv->listeners = NULL;
    /* New requests now get `shutting_down`; waits in flight end at once. */
    ctx_cancel(srv->root);
    /* Read no more: what each connection sent is answered, then it closes. */
    srv->stop_deadline = mono_ms() + config_get(srv->cfg, grace_ms);
    for (struct conn *c = srv->conns, *next; c; c = next) {
        next = conn_next(c);
        conn_drain(c);
    }
    on_stop_poll(-1, 0, srv);
}

/* Appends line (trimmed; skipped when empty) to srv's tokens. */
static int
add_token(struct server *srv, char *line, const char *path)
{
    char *t = config_trim(line);
    if (*t == '\0')
        return 0;
    if (strlen(t) > MAX_TOKEN) {
        log_error("--token-file %s: a token is longer than %d bytes", path, MAX_TOKEN);
        return -1;
    }
    char **grown = realloc(srv->tokens, (srv->ntokens + 1) * sizeof *grown);
    if (!grown || !(grown[srv->ntokens] = strdup(t))) {
        if (grown)
            srv->tokens = grown;
        log_error("--token-file %s: out of memory", path);
        return -1;
    }
    srv->tokens = grown;
    srv->ntokens++;
    return 0;
}

/* Every non-empty line is a token: several at once let a new one be
 * handed out before the old one is removed. */
static int
read_tokens(struct server *srv, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        log_error("cannot read --token-file %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0)
        rc = add_token(srv, line, path);
    free(line);
    fclose(f);
    if (rc == 0 && srv->ntokens == 0) {
        log_error("--token-file %s: no token in it (one per line)", path);
        rc = -1;
    }
    return rc;
}

/* The broker's settings: at start-up, and again after each reload. */
static struct broker_config
broker_settings(const struct config *cfg)
{
    return (struct broker_config){
        .defaults = {.capacity = (int64_t)cfg->default_capacity,
                     .ttr_ms = 30000,
                     .max_attempts = 3},
        .submit_wait_ms = cfg->submit_wait_ms,
        .max_queues = cfg->max_queues,
        .max_payload_bytes = cfg->max_memory,
        .max_finished = cfg->keep_results,
    };
}

static int
start_runtime(struct server *srv)
{
    int rc = sched_start((int)srv->cfg->threads);
    if (rc < 0) {
        log_error("cannot start the goroutine threads: %s", strerror(-rc));
        return -1;
    }
    srv->root = ctx_with_cancel(NULL);
    struct broker_config bc = broker_settings(srv->cfg);
    srv->broker = srv->root ? broker_new(&bc, srv->root) : NULL;
    srv->bridge = evbridge_new(srv->base);
    if (!srv->broker || !srv->bridge) {
        log_error("out of memory starting the broker");
        return -1;
    }
    return 0;
}

/* journal_opts.on_failure: the I/O thread saw a write it cannot undo. */
static void
on_journal_failure(void *arg, int err)
{
    (void)arg;
    log_error("journal: %s: every write is refused from now on; restart chanqd to replay "
              "its journal from disk",
              strerror(-err));
    sd_notify_status("journal failed (%s): writes refused, restart to recover", strerror(-err));
}

/* Opens the data dir's journal, rebuilds the broker's state from it and
 * starts writing: after this every change is durable before its `ok`. */
static int
open_journal(struct server *srv)
{
    char err[512];
    const struct config *cfg = srv->cfg;
    int64_t start = mono_ms();
    struct journal_opts opts = {
        .fsync = cfg->fsync,
        .repair = cfg->repair,
        .segment_bytes = cfg->journal_segment_bytes,
        .compact_bytes = cfg->journal_compact_bytes,
        /* Test seam (docs/hacking.md): compaction at random moments. */
        .on_failure = on_journal_failure,
        .chaos_compact_ms = getenv("CHANQ_TEST_COMPACT_MS") ? atoll(getenv("CHANQ_TEST_COMPACT_MS")) : 0,
    };
    srv->journal = journal_open_opts(cfg->data_dir, &opts, err, sizeof err);
    if (!srv->journal) {
        log_error("%s", err);
        return -1;
    }
    if (journal_replay(srv->journal, broker_replay_apply, srv->broker, err, sizeof err) < 0) {
        log_error("journal replay failed: %s", err);
        return -1;
    }
    journal_set_snapshotter(srv->journal, &broker_snapshotter, srv->broker);
    if (journal_start(srv->journal, err, sizeof err) < 0) {
        log_error("cannot start the journal: %s", err);
        return -1;
    }
    broker_set_journal(srv->broker, srv->journal);
    log_info("journal %s: %llu records replayed in %lld ms (fsync %s)", cfg->data_dir,
             (unsigned long long)journal_replayed(srv->journal), (long long)(mono_ms() - start),
             config_fsync_name(cfg->fsync));
    return 0;
}

struct server *
server_new(struct config *cfg)
{
    struct server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->cfg = cfg;
    srv->started = time(NULL);
    if (cfg->token_file && read_tokens(srv, cfg->token_file) < 0)
        goto out_free;
    if (cfg->n_tls_listen > 0 && !(srv->tls = tls_new(cfg)))
        goto out_free;
    if (evthread_use_pthreads() != 0 || !(srv->base = event_base_new())) {
        log_error("cannot create the event loop");
        goto out_free;
    }
    if (!(srv->closewatch = closewatch_new(srv->base, conn_peer_gone)))
        goto out_free;
    if (!(srv->peers = peers_new()) || !(srv->tick = evtimer_new(srv->base, on_tick, srv)))
        goto out_free;
    on_tick(-1, 0, srv); /* arms it */
    if (start_runtime(srv) < 0)
        goto out_free;
    if (!cfg->memory && open_journal(srv) < 0)
        goto out_free;
    broker_start(srv->broker);
    if (!(srv->listeners = listener_set_new(srv->base, cfg, on_accept, srv)))
        goto out_free;
    if (srv->tls && listener_set_add_tls(srv->listeners, srv->base, cfg, on_accept_tls, srv) < 0)
        goto out_free;
    srv->sig_term = evsignal_new(srv->base, SIGTERM, on_stop_signal, srv);
    srv->sig_int = evsignal_new(srv->base, SIGINT, on_stop_signal, srv);
    srv->stop_timer = evtimer_new(srv->base, on_stop_poll, srv);
    if (!srv->sig_term || !srv->sig_int || !srv->stop_timer ||
        evsignal_add(srv->sig_term, NULL) != 0 || evsignal_add(srv->sig_int, NULL) != 0) {
        log_error("cannot install signal handlers");
        goto out_free;
    }
    return srv;

out_free:
    server_free(srv);
    return NULL;
}

int
server_run(struct server *srv)
{
    signal(SIGPIPE, SIG_IGN);
    srv->idle_goroutines = go_count();
    /* The loop thread also runs the goroutines its own callbacks wake (a
     * connection that just got a request): no hand-off to a worker and
     * back for the common request that does not wait. See
     * docs/architecture.md. */
    srv->loop_thread = pthread_self();
    atomic_store(&srv->loop_running, true);
    bool attached = sched_loop_attach() == 0;
    int rc = 0;
    while (!event_base_got_exit(srv->base) && !event_base_got_break(srv->base)) {
        int flags = sched_loop_has_work() ? EVLOOP_NONBLOCK : EVLOOP_ONCE;
        if (event_base_loop(srv->base, flags | EVLOOP_NO_EXIT_ON_EMPTY) < 0) {
            log_error("event loop failed");
            rc = -1;
            break;
        }
        sched_loop_run(LOOP_BUDGET);
    }
    if (attached)
        sched_loop_detach();
    atomic_store(&srv->loop_running, false);
    if (rc == 0)
        log_info("stopped");
    return rc;
}

void
server_free(struct server *srv)
{
    if (!srv)
        return;
    listener_set_free(srv->listeners);
    tls_free(srv->tls);
    if (srv->sig_term)
        event_free(srv->sig_term);
    if (srv->sig_int)
        event_free(srv->sig_int);
    if (srv->stop_timer)
        event_free(srv->stop_timer);
    if (srv->tick)
        event_free(srv->tick);
    evbridge_free(srv->bridge);
    closewatch_free(srv->closewatch);
    if (srv->base)
        event_base_free(srv->base);
    if (srv->root)
        ctx_cancel(srv->root);
    if (srv->journal && journal_close(srv->journal) < 0)
        log_error("journal: the last write before stopping failed");
    srv->journal = NULL;
    if (sched_threads() > 0)
        sched_shutdown();
    /* Only now no goroutine can touch the broker. */
    broker_free(srv->broker);
    if (srv->root)
        ctx_release(srv->root);
    peers_free(srv->peers);
    for (size_t i = 0; i < srv->ntokens; i++)
        free(srv->tokens[i]);
    free(srv->tokens);
    free(srv);
}

struct event_base *
server_base(struct server *srv)
{
    return srv->base;
}

struct evbridge *
server_bridge(struct server *srv)
{
    return srv->bridge;
}

struct broker *
server_broker(struct server *srv)
{
    return srv->broker;
}

struct ctx *
server_root_ctx(struct server *srv)
{
    return srv->root;
}

const struct config *
server_config(const struct server *srv)
{
    return srv->cfg;
}

struct msg_limits
server_msg_limits(const struct server *srv)
{
    return (struct msg_limits){.max_payload = config_get(srv->cfg, max_job)};
}

static void
reload_broker(void *arg, const struct config *live)
{
    struct server *srv = arg;
    struct broker_config bc = broker_settings(live);
    broker_set_config(srv->broker, &bc);
}

static void
reload_tls(void *arg, const struct config *live)
{
    struct server *srv = arg;
    if (srv->tls)
        tls_reload(srv->tls, live);
}

int
server_reload(struct server *srv, const struct config *fresh)
{
    struct config_hooks hooks = {.arg = srv, .broker = reload_broker, .tls = reload_tls};
    return config_reload(srv->cfg, fresh, &hooks);
}

bool
server_stopping(const struct server *srv)
{
    return atomic_load(&srv->stopping);
}

/* The journal's sticky failure as text, or NULL. */
static const char *
journal_failure_text(const struct server *srv, char *buf, size_t size)
{
    struct journal_stats st;
    if (!srv->journal)
        return NULL;
    journal_stats(srv->journal, &st);
    if (!st.failed_errno)
        return NULL;
    snprintf(buf, size,
             "journal failed: %s; every write is refused until chanqd restarts and replays "
             "its journal",
             strerror((int)st.failed_errno));
    return buf;
}

const char *
server_unhealthy(const struct server *srv)
{
    static char buf[256]; /* loop thread only */
    if (server_stopping(srv))
        return "stopping";
    return journal_failure_text(srv, buf, sizeof buf);
}

struct closewatch *
server_closewatch(struct server *srv)
{
    return srv->closewatch;
}

void
server_announce(struct server *srv)
{
    if (srv->listeners)
        listener_set_announce(srv->listeners);
}

struct peers *
server_peers(struct server *srv)
{
    return srv->peers;
}

struct tls *
server_tls(struct server *srv)
{
    return srv->tls;
}

bool
server_on_loop_thread(const struct server *srv)
{
    return atomic_load(&srv->loop_running) && pthread_equal(pthread_self(), srv->loop_thread);
}

bool
server_needs_token(const struct server *srv)
{
    return srv->ntokens > 0;
}

bool
server_token_ok(const struct server *srv, struct span token)
{
    if (srv->ntokens == 0)
        return true;
    /* Every token is compared, each in constant time for its length: no
     * timing hint of a prefix, nor of which token matched. */
    bool ok = false;
    for (size_t i = 0; i < srv->ntokens; i++) {
        const char *t = srv->tokens[i];
        ok |= strlen(t) == token.len && CRYPTO_memcmp(t, token.ptr, token.len) == 0;
    }
    return ok;
}

void
server_conn_opened(struct server *srv, struct conn *c)
{
    conn_link(&srv->conns, c);
    atomic_fetch_add(&srv->connections, 1);
}

struct conn *
server_conns(struct server *srv)
{
    return srv->conns;
}

size_t
server_connections(const struct server *srv)
{
    return atomic_load(&srv->connections);
}

/* Closed connections between two heap trims. */
#define TRIM_EVERY 1024

void
server_conn_closed(struct server *srv, struct conn *c)
{
    conn_unlink(&srv->conns, c);
    peers_release(srv->peers, conn_peer(c));
    size_t left = atomic_fetch_sub(&srv->connections, 1) - 1;
    /* After a wave of connections (10k parked fetchers that all leave),
     * glibc keeps the freed heap: hand it back so RSS follows the load. */
    if (++srv->closed_since_trim >= TRIM_EVERY || (left == 0 && srv->closed_since_trim > 64)) {
        srv->closed_since_trim = 0;
        malloc_trim(0);
    }
}

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

static json_t *
journal_json(struct server *srv)
{
    if (!srv->journal)
        return json_pack("{s:s, s:I, s:I}", "fsync", "none", "bytes", (json_int_t)0,
                         "last_fsync_us", (json_int_t)0);
    struct journal_stats st;
    journal_stats(srv->journal, &st);
    json_t *le = json_array(), *counts = json_array();
    for (size_t i = 0; i < JOURNAL_FSYNC_BUCKETS; i++) {
        /* The last bound is +Inf: left out, the count is the total. */
        if (st.fsync_bucket_le_us[i] != UINT64_MAX) {
            json_array_append_new(le, json_integer((json_int_t)st.fsync_bucket_le_us[i]));
            json_array_append_new(counts, json_integer((json_int_t)st.fsync_bucket[i]));
        }
    }
    char why[256];
    const char *failed = journal_failure_text(srv, why, sizeof why);
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:{s:o, s:o, s:I, s:I}, "
                     "s:o}",
                     "fsync", config_fsync_name(srv->cfg->fsync), "bytes", (json_int_t)st.bytes,
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
server_stats_json(struct server *srv)
{
    json_t *jobs = broker_jobs_json(srv->broker);
    struct membudget *mb = broker_membudget(srv->broker);
    return json_pack("{s:I, s:I, s:I, s:i, s:o, s:I, s:I, s:I, s:s, s:o}", "uptime_s",
                     (json_int_t)(time(NULL) - srv->started), "connections",
                     (json_int_t)atomic_load(&srv->connections), "goroutines",
                     (json_int_t)go_count(), "threads", sched_threads(), "jobs",
                     jobs ? jobs : json_object(), "rss_bytes", (json_int_t)rss_bytes(),
                     "memory_bytes", (json_int_t)membudget_used(mb), "buffer_bytes",
                     (json_int_t)atomic_load(&mb->buffers), "version", PACKAGE_VERSION,
                     "journal", journal_json(srv));
}

json_t *
server_snapshot(void *arg)
{
    struct server *srv = arg;
    json_t *server = server_stats_json(srv);
    json_t *queues = broker_queues_json(srv->broker);
    return json_pack("{s:o, s:o}", "server", server ? server : json_object(), "queues",
                     queues ? queues : json_object());
}
