/* struct server: everything chanqd owns (config, loop, listeners, the
 * goroutine runtime's bridge, the broker, the journal, the HTTP endpoint,
 * signal handling); no globals. Built once in main.c. Connections, op
 * sessions and the HTTP admin routes never see it: they get the
 * struct conn_env it fills (daemon/conn_env.h). */
#ifndef CHANQ_DAEMON_SERVER_H
#define CHANQ_DAEMON_SERVER_H

struct config;
struct server;

/* Starts the goroutine threads, creates the event loop, replays the
 * journal, binds every listener (and --http), and takes over SIGTERM,
 * SIGINT and SIGHUP (blocked until the handlers are in place, so a signal
 * during start-up waits instead of killing the process). Returns NULL after
 * logging the reason. Borrows cfg for the server's life (SIGHUP changes its
 * reloadable fields) and argv, which SIGHUP parses again (with the
 * --config file it names). Main thread. */
struct server *server_new(struct config *cfg, int argc, char **argv);

/* Serves until SIGTERM or SIGINT, then stops gracefully: stops accepting,
 * answers `shutting_down`, lets requests in flight finish within
 * --grace-ms, closes connections. Tells systemd READY=1 once everything
 * accepts, RELOADING=1/READY=1 around a SIGHUP, STOPPING=1 when the stop
 * begins. Returns 0 after a clean stop, SERVER_STEPPED_DOWN (below), or
 * -1 when the loop failed. Main thread (the loop's). */
int server_run(struct server *srv);
/* server_run's answer when a cluster node lost its leadership and stopped:
 * start it again (a follower rebuilds its state from the replicated log). */
#define SERVER_STEPPED_DOWN 1

/* Frees everything, the journal flushed and closed last but one (then the
 * broker). NULL is allowed. Main thread, after server_run. */
void server_free(struct server *srv);

#endif
