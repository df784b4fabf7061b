/* Reservations and the job's timers: which connection holds a job, the
 * ttr, delay and deadline timers and what their firing does (revocation,
 * promotion, expiry), and the retry-or-bury rule a reservation ends with
 * when it is not acked. Timers run only while the broker serves. Lock held
 * unless said otherwise. */
#ifndef CHANQ_DAEMON_RESERVATION_H
#define CHANQ_DAEMON_RESERVATION_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/encode.h" /* enum revoke_reason */

struct broker;
struct durable;
struct holder;
struct job;

/* j was just reserved for h (NULL: nobody holds it, as in a replay): it
 * goes on h's list and its ttr starts. */
void reservation_begin(struct job *j, struct holder *h);
/* j's reservation ends: off its holder's list, ttr stopped. */
void reservation_end(struct job *j);
/* The holder asks for ttr_ms more. */
void reservation_touch(struct job *j, int64_t ttr_ms);

/* A reservation that ends without an ack: the job goes back to its queue
 * (after delay_ms when > 0), or to the dead list when bury is set or its
 * attempts are used up, with error (NULL: the job's own) as its last
 * error; recorded, w may be NULL. Returns commit's result. */
int reservation_retry(struct broker *b, struct job *j, int64_t delay_ms, bool bury,
                      const char *error, struct durable *w);

/* The events a holder gets when its job is taken from it. */
void holder_send_cancel(struct job *j);
void holder_send_revoked(struct job *j, enum revoke_reason why);

/* j->timer: a DELAYED job's delay, a RESERVED job's ttr. Armed, it holds
 * a job reference until it fires or is stopped. */
void job_timer_arm(struct job *j, int64_t delay_ms);
void job_timer_stop(struct job *j);
/* The deadline timer (j->deadline_ms must be set). */
void job_deadline_arm(struct job *j);
void job_deadline_stop(struct job *j);

#endif
