/* The server: builds the libevent loop (on the main thread), the goroutine
 * runtime and its bridge to the loop, the broker and its journal, the
 * listeners; fills the conn_env that connections get; runs the loop and
 * frees it all. Accepting is in server_accept.c, signals, stop and reload
 * in server_life.c. */
#include "chanq_config.h"

#include "daemon/server-internal.h"
#include "daemon/cron.h"
#include "core/timer.h"
#include "daemon/clientreg.h"
#include "daemon/closewatch.h"
#include "daemon/conn.h"
#include "daemon/journal/journal.h"
#include "daemon/listen.h"
#include "daemon/log.h"
#include "daemon/peers.h"
#include "daemon/sd.h"
#include "daemon/tls.h"
#include "daemon/tokens.h"

#include "core/ctx.h"
#include "core/evbridge.h"
#include "core/go.h"
#include "core/sched.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Goroutines the loop thread runs between two polls before it hands the
 * rest to the workers. */
#define LOOP_BUDGET 64

struct broker_config
server_broker_settings(const struct config *cfg)
{
    return (struct broker_config){
        .defaults = {.capacity = (int64_t)cfg->default_capacity,
                     .ttr_ms = 30000,
                     .max_attempts = 3},
        .submit_wait_ms = cfg->submit_wait_ms,
        .max_queues = cfg->max_queues,
        .max_payload_bytes = cfg->max_memory,
        .max_finished = cfg->keep_results,
        .key_window_ms = cfg->key_window_ms,
        .max_keys_kept = cfg->keep_keys,
        .max_schedules = cfg->max_schedules,
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
    struct broker_config bc = server_broker_settings(srv->cfg);
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
    log_error_kv(LOG_FIELDS(LOG_STR("error", strerror(-err))),
                 "journal: %s: every write is refused from now on; restart chanqd to replay "
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
    int64_t start = timer_now_ms();
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
             (unsigned long long)journal_replayed(srv->journal),
             (long long)(timer_now_ms() - start), config_fsync_name(cfg->fsync));
    return 0;
}

/* What connections, op sessions, the admin routes and the stats documents
 * are given: borrowed views of what the server owns. Before any of them
 * exists (nothing is accepted before the loop runs). */
static void
fill_env(struct server *srv)
{
    struct conn_env *env = &srv->env;
    env->base = srv->base;
    env->bridge = srv->bridge;
    env->broker = srv->broker;
    env->budget = broker_membudget(srv->broker);
    env->root = srv->root;
    env->cfg = srv->cfg;
    env->tokens = srv->tokens;
    env->peers = srv->peers;
    env->closewatch = srv->closewatch;
    env->stats = &srv->stats;
    env->cluster = srv->gate;
    env->clients = srv->clients;
    srv->stats = (struct stats_src){
        .broker = srv->broker,
        .journal = srv->journal,
        .cfg = srv->cfg,
        .connections = &env->connections,
        .started_ms = timer_now_ms(),
        .cluster = srv->gate,
    };
}

/* The loop, the runtime, the broker (and its journal) and the listeners. */
static int
build(struct server *srv)
{
    const struct config *cfg = srv->cfg;
    if (cfg->token_file && !(srv->tokens = tokens_load(cfg->token_file)))
        return -1;
    if (cfg->n_tls_listen > 0 && !(srv->tls = tls_new(cfg)))
        return -1;
    if (evthread_use_pthreads() != 0 || !(srv->base = event_base_new())) {
        log_error("cannot create the event loop");
        return -1;
    }
    if (!(srv->closewatch = closewatch_new(srv->base, conn_peer_gone)))
        return -1;
    if (!(srv->clients = client_reg_new()))
        return -1;
    if (!(srv->peers = peers_new()) || !(srv->tick = evtimer_new(srv->base, server_on_tick, srv)))
        return -1;
    server_on_tick(-1, 0, srv); /* arms it */
    if (start_runtime(srv) < 0)
        return -1;
    if (cfg->node_id != 0) {
#ifdef CHANQ_CLUSTER
        /* The broker serves nothing until a promotion replaces it. */
        if (server_cluster_start(srv) < 0)
            return -1;
#else
        return -1; /* config.c refuses it first */
#endif
    } else {
        if (!cfg->memory && open_journal(srv) < 0)
            return -1;
        broker_start(srv->broker);
    }
    fill_env(srv);
    if (!(srv->listeners = listener_set_new(srv->base, cfg, server_on_accept, srv)))
        return -1;
    if (srv->tls &&
        listener_set_add_tls(srv->listeners, srv->base, cfg, server_on_accept_tls, srv) < 0)
        return -1;
    return server_life_start(srv);
}

struct server *
server_new(struct config *cfg, int argc, char **argv)
{
    struct server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->cfg = cfg;
    srv->argc = argc;
    srv->argv = argv;
    /* Stop and reload signals are read from a signalfd by the loop
     * (server_life.c), never delivered to a handler: blocked here, before
     * any thread starts, so every thread inherits the mask. A handler could
     * run on a goroutine's stack, and ThreadSanitizer, which defers
     * handlers to its next interception, lost a SIGTERM now and then (the
     * loop idle in epoll_wait, the stop never seen). Signals sent before
     * the loop runs wait, pending. */
    srv->sigfd = -1;
    sigset_t sigs;
    server_life_signals(&sigs);
    pthread_sigmask(SIG_BLOCK, &sigs, &srv->old_sigmask);
    /* A client gone while we write to it is an EPIPE, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    cron_init(); /* before any thread: schedules' time zones (daemon/cron.h) */
    if (build(srv) < 0) {
        server_free(srv);
        srv = NULL;
    }
    return srv;
}

int
server_run(struct server *srv)
{
    srv->idle_goroutines = go_count();
    /* The loop thread also runs the goroutines its own callbacks wake (a
     * connection that just got a request): no hand-off to a worker and
     * back for the common request that does not wait. See
     * docs/architecture.md. */
    srv->env.loop_thread = pthread_self();
    atomic_store(&srv->env.loop_running, true);
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
    atomic_store(&srv->env.loop_running, false);
    if (rc == 0)
        log_info("stopped");
    return srv->stepped_down ? SERVER_STEPPED_DOWN : rc;
}

void
server_free(struct server *srv)
{
    if (!srv)
        return;
    server_life_free(srv);
    listener_set_free(srv->listeners);
    tls_free(srv->tls);
#ifdef CHANQ_CLUSTER
    if (srv->cfg->node_id) {
        if (srv->root)
            ctx_cancel(srv->root);
        server_cluster_stop(srv);
    }
#endif
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
#ifdef CHANQ_CLUSTER
    server_cluster_free(srv);
#endif
    if (srv->root)
        ctx_release(srv->root);
    peers_free(srv->peers);
    client_reg_free(srv->clients);
    tokens_free(srv->tokens);
    /* What the caller had: a step-down's exec starts with it. */
    pthread_sigmask(SIG_SETMASK, &srv->old_sigmask, NULL);
    free(srv);
}
