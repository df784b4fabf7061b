/* systemd service integration without libsystemd: the notify protocol
 * (datagrams to $NOTIFY_SOCKET, a path or '@' for the abstract namespace)
 * and the watchdog. Every function is a no-op returning 0 when chanqd does
 * not run under systemd (NOTIFY_SOCKET unset).
 * Any thread; each message opens, sends on and closes its own socket, so
 * nothing is shared. */
#ifndef CHANQ_DAEMON_SD_H
#define CHANQ_DAEMON_SD_H

#include <event2/event.h>

struct sd_watchdog;

/* Sends state ("READY=1\nSTATUS=...", newline-separated assignments) to
 * $NOTIFY_SOCKET. Returns 0 (also when the variable is unset), or a
 * negative errno when the socket is unusable. */
int sd_notify_send(const char *state);

/* READY=1: the daemon accepts connections and has replayed its journal.
 * Call once at start and after a reload. */
int sd_notify_ready(void);

/* STATUS=...: one human-readable line shown by systemctl status. */
int sd_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* RELOADING=1 with MONOTONIC_USEC, at the start of a SIGHUP reload (follow
 * with sd_notify_ready when done). */
int sd_notify_reloading(void);

/* STOPPING=1: the graceful stop has begun. */
int sd_notify_stopping(void);

/* The watchdog interval systemd asks for in microseconds ($WATCHDOG_USEC,
 * honoured only when $WATCHDOG_PID is unset or our pid), or 0 for none. */
long long sd_watchdog_usec(void);

/* Sends WATCHDOG=1 every half interval from a timer on base, so a stalled
 * loop stops the pings and systemd restarts the service. Returns NULL when
 * no watchdog is requested (or out of memory, logged). Loop thread. */
struct sd_watchdog *sd_watchdog_new(struct event_base *base);

/* Stops the pings. NULL is allowed. Loop thread. */
void sd_watchdog_free(struct sd_watchdog *wd);

#endif
