/* Schedules (docs/scheduling.md): named cron or interval definitions whose
 * firings are ordinary jobs. The registry belongs to the broker and is
 * guarded by its lock; its changes are journal records applied through the
 * state machine like every other change (JREC_SCHEDULE for a definition,
 * JREC_FIRE for a firing, which carries the job it makes, so a planned
 * time is recorded fired exactly when its job exists). While the broker
 * serves, one runner goroutine fires what is due.
 *
 * The runner's clock is the wall clock, or, for tests only, the time in
 * the file CHANQ_TEST_CLOCK_FILE names (ms since the epoch, re-read every
 * 25 ms): no test waits for a real minute. */
#ifndef CHANQ_DAEMON_SCHEDULE_H
#define CHANQ_DAEMON_SCHEDULE_H

#include <jansson.h>
#include <stdint.h>

#include "daemon/broker.h"

struct jrec_schedule;
struct jrec_fire;
struct jrec;
struct schedules;

/* An empty registry (NULL when out of memory). Any thread. */
struct schedules *schedules_new(void);
/* Stops the runner (if any) and frees every schedule; the broker's
 * payload count is not touched (the broker goes too). After
 * sched_shutdown, or on a standby. */
void schedules_free(struct schedules *ss);

/* The state machine's part (daemon/apply.c), lock held: a definition
 * replaces the one of that name (or deletes it); a firing sets the
 * schedule's last planned time (the job is apply.c's). 0, or -1 when out
 * of memory or the record cannot be taken (logged; skipped in a replay). */
int schedule_apply(struct broker *b, const struct jrec_schedule *r);
int schedule_apply_fire(struct broker *b, const struct jrec_fire *r);

/* A snapshot's records: one JREC_SCHEDULE per schedule, through put. Lock
 * held. 0 or put's error. */
int schedules_snapshot(struct broker *b, int (*put)(void *w, const struct jrec *r), void *w);

/* Feeds the schedules' durable state into a digest, through feed(arg,
 * bytes, len); nothing when there are none (digests of states without
 * schedules stay what they were). Lock held. */
void schedules_digest(struct broker *b, void (*feed)(void *arg, const void *p, size_t n),
                      void *arg);

/* broker_start: starts the runner goroutine (the planned times missed
 * while chanqd was down are handled now, by each schedule's policy).
 * Lock NOT held. 0 or -ENOMEM (logged; nothing fires). */
int schedules_start(struct broker *b);
/* Stops the runner: it fires nothing more and ends. Any thread. */
void schedules_stop(struct broker *b);

/* The `schedule` op. */
broker_op_fn broker_op_schedule;

/* For the stats op and /metrics: {"count", "paused", "fired", "skipped",
 * "last_fire_ms", "list": [{"name", "last_ms", "next_ms", "fired"}...]}
 * (new reference, or NULL). Any thread. */
json_t *broker_schedules_json(struct broker *b);

#endif
