/* Channels: rendezvous, buffering, FIFO, close broadcast, drain-then-closed,
 * try operations, nil channels, ctx bounds, and the abort on misuse. */
#include "chanq_config.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "core/chan.h"
#include "core/ctx.h"
#include "core/sched.h"
#include "core/timer.h"
#include "core/wg.h"
#include "tests/core/helpers.h"
#include "tests/core/suites.h"

/* A channel plus a progress counter shared with a helper goroutine. */
struct probe {
    struct chan *c;
    atomic_int progress;
    int n;
    struct wg *wg;
};

static void
send_n(void *arg)
{
    struct probe *p = arg;
    for (int i = 0; i < p->n; i++) {
        ck_assert_msg(chan_send(p->c, &i, NULL) == 0, "send %d failed", i);
        atomic_fetch_add(&p->progress, 1);
    }
    wg_done(p->wg);
}

static void
rendezvous_body(void *arg)
{
    struct probe p = {.c = chan_new(sizeof(int), 0), .n = 1, .wg = wg_new()};
    wg_add(p.wg, 1);
    go(send_n, &p);
    go_sleep(30, NULL);
    ck_assert_msg(atomic_load(&p.progress) == 0, "an unbuffered send completed with no receiver");
    int v = -1;
    ck_assert_msg(chan_recv(p.c, &v, NULL) == 0 && v == 0, "receive got %d, want 0", v);
    wg_wait(p.wg, NULL);
    ck_assert_msg(atomic_load(&p.progress) == 1, "the sender did not finish after the handoff");
    wg_free(p.wg);
    chan_unref(p.c);
}

START_TEST(rendezvous_blocks_until_the_peer_arrives)
{
    run_main(rendezvous_body, NULL, 2);
}
END_TEST

static void
buffered_body(void *arg)
{
    struct probe p = {.c = chan_new(sizeof(int), 3), .n = 5, .wg = wg_new()};
    wg_add(p.wg, 1);
    go(send_n, &p);
    go_sleep(30, NULL);
    ck_assert_msg(atomic_load(&p.progress) == 3, "sender got %d sends through a cap-3 buffer",
                  atomic_load(&p.progress));
    ck_assert_msg(chan_len(p.c) == 3 && chan_cap(p.c) == 3, "len %zu cap %zu, want 3 and 3",
                  chan_len(p.c), chan_cap(p.c));
    for (int i = 0; i < 5; i++) {
        int v = -1;
        ck_assert_msg(chan_recv(p.c, &v, NULL) == 0, "receive %d failed", i);
        ck_assert_msg(v == i, "FIFO broken: got %d at position %d", v, i);
    }
    wg_wait(p.wg, NULL);
    ck_assert_msg(chan_len(p.c) == 0, "buffer not empty at the end");
    wg_free(p.wg);
    chan_unref(p.c);
}

START_TEST(buffered_send_blocks_only_when_full_and_keeps_fifo_order)
{
    run_main(buffered_body, NULL, 2);
}
END_TEST

enum { BROADCAST_WAITERS = 1000 };

struct broadcast {
    struct chan *c;
    struct wg *wg;
    atomic_int parked_soon; /* receivers about to park */
    atomic_int got_closed;  /* receivers that saw -EPIPE with a zero value */
};

static void
recv_until_closed(void *arg)
{
    struct broadcast *b = arg;
    long v = 42;
    atomic_fetch_add(&b->parked_soon, 1);
    int rc = chan_recv(b->c, &v, NULL);
    if (rc == -EPIPE && v == 0)
        atomic_fetch_add(&b->got_closed, 1);
    wg_done(b->wg);
}

static void
broadcast_body(void *arg)
{
    struct broadcast b = {.c = chan_new(sizeof(long), 0), .wg = wg_new()};
    wg_add(b.wg, BROADCAST_WAITERS);
    for (int i = 0; i < BROADCAST_WAITERS; i++)
        ck_assert_msg(go(recv_until_closed, &b) == 0, "spawn failed");
    while (atomic_load(&b.parked_soon) < BROADCAST_WAITERS)
        go_sleep(1, NULL);
    go_sleep(20, NULL);
    chan_close(b.c);
    ck_assert_msg(wg_wait(b.wg, NULL) == 0, "wg_wait failed");
    ck_assert_msg(atomic_load(&b.got_closed) == BROADCAST_WAITERS,
                  "%d of %d receivers saw the close with a zero value",
                  atomic_load(&b.got_closed), BROADCAST_WAITERS);
    wg_free(b.wg);
    chan_unref(b.c);
}

START_TEST(close_wakes_all_1000_waiting_receivers)
{
    run_main(broadcast_body, NULL, 2);
}
END_TEST

static void
drain_body(void *arg)
{
    struct chan *c = chan_new(sizeof(int), 4);
    for (int i = 1; i <= 3; i++)
        ck_assert_msg(chan_send(c, &i, NULL) == 0, "send %d failed", i);
    chan_close(c);
    ck_assert_msg(chan_is_closed(c), "chan_is_closed is false after close");
    for (int i = 1; i <= 3; i++) {
        int v = 0;
        ck_assert_msg(chan_recv(c, &v, NULL) == 0 && v == i, "buffered value %d lost (got %d)", i,
                      v);
    }
    int v = 7;
    ck_assert_msg(chan_recv(c, &v, NULL) == -EPIPE, "drained closed channel did not say EPIPE");
    ck_assert_msg(v == 0, "closed receive did not zero the element (%d)", v);
    ck_assert_msg(chan_try_recv(c, &v) == -EPIPE, "try_recv on closed drained channel not EPIPE");
    chan_unref(c);
}

/* Collects what chan_peek_each shows, up to `stop` elements. */
struct peeked {
    int seen[8];
    int n, stop;
};

static bool
peek_collect(const void *elem, void *arg)
{
    struct peeked *p = arg;
    p->seen[p->n++] = *(const int *)elem;
    return p->n < p->stop;
}

START_TEST(peek_each_shows_the_buffer_oldest_first_and_takes_nothing)
{
    struct chan *c = chan_new(sizeof(int), 3);
    for (int v = 1; v <= 3; v++)
        ck_assert_int_eq(chan_try_send(c, &v), 0);
    int v = 0;
    ck_assert_int_eq(chan_try_recv(c, &v), 0); /* 1 leaves: the ring wraps below */
    v = 4;
    ck_assert_int_eq(chan_try_send(c, &v), 0);
    struct peeked p = {.stop = 8};
    chan_peek_each(c, peek_collect, &p);
    ck_assert_msg(p.n == 3 && p.seen[0] == 2 && p.seen[1] == 3 && p.seen[2] == 4,
                  "peeked %d elements: %d %d %d", p.n, p.seen[0], p.seen[1], p.seen[2]);
    ck_assert_int_eq(chan_len(c), 3);
    p = (struct peeked){.stop = 1};
    chan_peek_each(c, peek_collect, &p);
    ck_assert_msg(p.n == 1 && p.seen[0] == 2, "false did not stop the walk");
    chan_peek_each(NULL, peek_collect, &p);
    ck_assert_int_eq(chan_try_recv(c, &v), 0);
    ck_assert_int_eq(v, 2);
    chan_unref(c);
}
END_TEST

static bool
is_even(const void *elem, void *arg)
{
    (void)arg;
    return *(const int *)elem % 2 == 0;
}

static void
send_one(void *arg)
{
    struct chan *c = arg;
    int v = 9;
    ck_assert_msg(chan_send(c, &v, NULL) == 0, "the parked sender was not admitted");
}

/* A wrapped ring with a parked sender: removing makes room, and the
 * sender's value joins the tail as if a receive had made it. */
static void
remove_body(void *arg)
{
    (void)arg;
    struct chan *c = chan_new(sizeof(int), 4);
    int v = 0;
    for (v = 1; v <= 4; v++)
        ck_assert_int_eq(chan_try_send(c, &v), 0);
    ck_assert_int_eq(chan_try_recv(c, &v), 0); /* 1 leaves; 6 wraps around */
    v = 6;
    ck_assert_int_eq(chan_try_send(c, &v), 0);
    ck_assert_int_eq(go(send_one, c), 0); /* parks: the buffer holds 2 3 4 6 */
    go_sleep(20, NULL);                   /* (had it not parked yet, 9 still ends last) */
    ck_assert_int_eq(chan_remove_each(c, is_even, NULL), 3);
    struct peeked p = {0};
    for (int i = 0; i < 1000 && p.n < 2; i++) {
        p = (struct peeked){.stop = 8};
        chan_peek_each(c, peek_collect, &p);
        if (p.n < 2)
            go_sleep(1, NULL);
    }
    ck_assert_msg(p.n == 2 && p.seen[0] == 3 && p.seen[1] == 9, "left %d: %d %d", p.n, p.seen[0],
                  p.seen[1]);
    ck_assert_int_eq(chan_remove_each(c, is_even, NULL), 0);
    ck_assert_int_eq(chan_remove_each(NULL, is_even, NULL), 0);
    v = 10;
    ck_assert_int_eq(chan_try_send(c, &v), 0); /* the ring's tail is right */
    int want[] = {3, 9, 10};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(chan_try_recv(c, &v), 0);
        ck_assert_int_eq(v, want[i]);
    }
    chan_unref(c);
}

START_TEST(remove_each_keeps_order_and_admits_parked_senders)
{
    run_main(remove_body, NULL, 2);
}
END_TEST

START_TEST(receive_drains_buffered_values_before_reporting_closed)
{
    run_main(drain_body, NULL, 1);
}
END_TEST

static void
send_on_closed_body(void *arg)
{
    struct chan *c = chan_new(sizeof(int), 1);
    chan_close(c);
    int v = 1;
    chan_send(c, &v, NULL);
}

static void
send_on_closed_child(void)
{
    run_main(send_on_closed_body, NULL, 1);
}

START_TEST(send_on_closed_channel_aborts_with_a_message)
{
    struct death d;
    death_run(send_on_closed_child, &d);
    ck_assert_msg(d.signal == SIGABRT, "child ended with signal %d status %d", d.signal, d.status);
    ck_assert_msg(strstr(d.err, "send on closed channel"), "no message, stderr: %s", d.err);
}
END_TEST


static void
parked_sender(void *arg)
{
    int v = 1;
    chan_send(arg, &v, NULL);
}

static void
close_under_sender_body(void *arg)
{
    struct chan *c = chan_new(sizeof(int), 0);
    go(parked_sender, c);
    go_sleep(20, NULL);
    chan_close(c);
    go_sleep(1000, NULL);
}

static void
close_under_sender_child(void)
{
    run_main(close_under_sender_body, NULL, 2);
}

START_TEST(closing_under_a_parked_sender_aborts_it)
{
    struct death d;
    death_run(close_under_sender_child, &d);
    ck_assert_msg(d.signal == SIGABRT, "child ended with signal %d status %d", d.signal, d.status);
    ck_assert_msg(strstr(d.err, "send on closed channel"), "no message, stderr: %s", d.err);
}
END_TEST

static void
close_twice_child(void)
{
    struct chan *c = chan_new(1, 0);
    chan_close(c);
    chan_close(c);
}

START_TEST(closing_twice_aborts_with_a_message)
{
    struct death d;
    death_run(close_twice_child, &d);
    ck_assert_msg(d.signal == SIGABRT, "child ended with signal %d status %d", d.signal, d.status);
    ck_assert_msg(strstr(d.err, "close of closed channel"), "no message, stderr: %s", d.err);
}
END_TEST

START_TEST(try_operations_never_block_from_any_thread)
{
    /* The test thread is not a goroutine and no scheduler runs. */
    struct chan *c = chan_new(sizeof(int), 1);
    int v = 5, out = 0;
    ck_assert_msg(chan_try_recv(c, &out) == -EAGAIN, "try_recv on empty did not say EAGAIN");
    ck_assert_msg(chan_try_send(c, &v) == 0, "try_send into room failed");
    ck_assert_msg(chan_try_send(c, &v) == -EAGAIN, "try_send into full did not say EAGAIN");
    ck_assert_msg(chan_try_recv(c, &out) == 0 && out == 5, "try_recv lost the value");
    struct chan *r = chan_new(sizeof(int), 0);
    ck_assert_msg(chan_try_send(r, &v) == -EAGAIN, "rendezvous try_send with no receiver");
    chan_unref(r);
    chan_unref(c);
}
END_TEST

static void
nil_body(void *arg)
{
    int v = 1;
    ck_assert_msg(chan_try_send(NULL, &v) == -EAGAIN, "nil try_send was ready");
    ck_assert_msg(chan_try_recv(NULL, &v) == -EAGAIN, "nil try_recv was ready");
    ck_assert_msg(chan_len(NULL) == 0 && chan_cap(NULL) == 0 && !chan_is_closed(NULL),
                  "nil channel introspection");
    struct ctx *ctx = ctx_with_timeout(NULL, 20);
    ck_assert_msg(chan_recv(NULL, &v, ctx) == -ETIMEDOUT, "nil receive did not wait for ctx");
    ck_assert_msg(chan_send(NULL, &v, ctx) == -ETIMEDOUT, "nil send did not return ctx err");
    ctx_release(ctx);
}

START_TEST(nil_channel_is_never_ready)
{
    run_main(nil_body, NULL, 1);
}
END_TEST

static void
ctx_bound_body(void *arg)
{
    struct chan *c = chan_new(sizeof(int), 0);
    int v = 3;
    int64_t t0 = timer_now_ms();
    struct ctx *ctx = ctx_with_timeout(NULL, 20);
    ck_assert_msg(chan_send(c, &v, ctx) == -ETIMEDOUT, "send did not time out");
    ck_assert_msg(timer_now_ms() - t0 >= 20, "send timed out early");
    ck_assert_msg(chan_recv(c, &v, ctx) == -ETIMEDOUT, "recv on an expired ctx");
    ctx_release(ctx);
    ctx = ctx_with_cancel(NULL);
    ctx_cancel(ctx);
    ck_assert_msg(chan_recv(c, &v, ctx) == -ECANCELED, "recv on cancelled ctx not ECANCELED");
    ctx_release(ctx);
    chan_unref(c);
}

START_TEST(blocking_calls_return_the_ctx_error)
{
    run_main(ctx_bound_body, NULL, 1);
}
END_TEST

static void
producer_tx(struct chan_tx tx, int n)
{
    for (int i = 0; i < n; i++)
        chan_tx_send(tx, &i, NULL);
    chan_tx_close(tx);
}

static void
producer_goroutine(void *arg)
{
    producer_tx(chan_as_tx(arg), 100);
}

static void
views_body(void *arg)
{
    struct chan *c = chan_new(sizeof(int), 8);
    go(producer_goroutine, c);
    struct chan_rx rx = chan_as_rx(c);
    int v, sum = 0, n = 0;
    while (chan_rx_recv(rx, &v, NULL) == 0) {
        sum += v;
        n++;
    }
    ck_assert_msg(n == 100 && sum == 4950, "got %d values summing %d", n, sum);
    ck_assert_msg(chan_rx_try_recv(rx, &v) == -EPIPE, "closed view try_recv");
    chan_unref(c);
}

START_TEST(direction_views_carry_values_and_close)
{
    run_main(views_body, NULL, 2);
}
END_TEST

static void
zero_size_body(void *arg)
{
    struct chan *c = chan_new(0, 2);
    ck_assert_msg(chan_send(c, NULL, NULL) == 0, "signal send failed");
    ck_assert_msg(chan_len(c) == 1, "signal not counted");
    ck_assert_msg(chan_recv(c, NULL, NULL) == 0, "signal recv failed");
    chan_unref(c);
}

START_TEST(zero_size_elements_work_as_signals)
{
    run_main(zero_size_body, NULL, 1);
}
END_TEST

static void
outside_child(void)
{
    struct chan *c = chan_new(sizeof(int), 0);
    int v;
    chan_recv(c, &v, NULL);
}

START_TEST(blocking_outside_a_goroutine_aborts_with_a_message)
{
    struct death d;
    death_run(outside_child, &d);
    ck_assert_msg(d.signal == SIGABRT, "child ended with signal %d", d.signal);
    ck_assert_msg(strstr(d.err, "outside a goroutine"), "no message, stderr: %s", d.err);
}
END_TEST

/* chan_set_cap: growing lets parked senders in at once and in order;
 * shrinking below the count keeps every element and only holds new sends;
 * made unbuffered, the buffer drains and then values are handed over. */
static void
set_cap_body(void *arg)
{
    struct probe p = {.c = chan_new(sizeof(int), 2), .n = 6, .wg = wg_new()};
    wg_add(p.wg, 1);
    go(send_n, &p);
    for (int i = 0; i < 200 && atomic_load(&p.progress) < 2; i++)
        go_sleep(5, NULL);
    go_sleep(20, NULL);
    ck_assert_int_eq(atomic_load(&p.progress), 2); /* parked on the third */
    ck_assert_int_eq(chan_set_cap(p.c, 5), 0);
    for (int i = 0; i < 200 && atomic_load(&p.progress) < 5; i++)
        go_sleep(5, NULL);
    ck_assert_msg(atomic_load(&p.progress) == 5, "growing did not let the sender in: %d",
                  atomic_load(&p.progress));
    ck_assert_int_eq(chan_len(p.c), 5);
    ck_assert_int_eq(chan_cap(p.c), 5);
    /* Shrink below the count: nothing lost, the sixth waits until the
     * count is below the new capacity. */
    ck_assert_int_eq(chan_set_cap(p.c, 1), 0);
    ck_assert_int_eq(chan_len(p.c), 5);
    int v = -1;
    for (int want = 0; want < 4; want++) {
        ck_assert_msg(chan_recv(p.c, &v, NULL) == 0 && v == want, "got %d, want %d", v, want);
        go_sleep(5, NULL);
        ck_assert_int_eq(atomic_load(&p.progress), 5);
    }
    ck_assert_msg(chan_recv(p.c, &v, NULL) == 0 && v == 4, "got %d, want 4", v);
    wg_wait(p.wg, NULL); /* the count fell below 1: the sixth got in */
    ck_assert_int_eq(chan_len(p.c), 1);
    ck_assert_int_eq(chan_try_send(p.c, &v), -EAGAIN);
    /* Unbuffered: the buffered value first, then straight from a sender. */
    ck_assert_int_eq(chan_set_cap(p.c, 0), 0);
    ck_assert_msg(chan_recv(p.c, &v, NULL) == 0 && v == 5, "got %d, want 5", v);
    p.n = 1;
    atomic_store(&p.progress, 0);
    wg_add(p.wg, 1);
    go(send_n, &p);
    ck_assert_msg(chan_recv(p.c, &v, NULL) == 0 && v == 0, "handoff got %d", v);
    wg_wait(p.wg, NULL);
    ck_assert_int_eq(chan_len(p.c), 0);
    wg_free(p.wg);
    chan_unref(p.c);
}

START_TEST(set_cap_grows_wakes_senders_and_shrinks_keeping_elements)
{
    run_main(set_cap_body, NULL, 2);
}
END_TEST

Suite *
chan_suite(void)
{
    Suite *s = suite_create("chan");
    TCase *tc = tcase_create("chan");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, rendezvous_blocks_until_the_peer_arrives);
    tcase_add_test(tc, set_cap_grows_wakes_senders_and_shrinks_keeping_elements);
    tcase_add_test(tc, buffered_send_blocks_only_when_full_and_keeps_fifo_order);
    tcase_add_test(tc, close_wakes_all_1000_waiting_receivers);
    tcase_add_test(tc, peek_each_shows_the_buffer_oldest_first_and_takes_nothing);
    tcase_add_test(tc, remove_each_keeps_order_and_admits_parked_senders);
    tcase_add_test(tc, receive_drains_buffered_values_before_reporting_closed);
    tcase_add_test(tc, send_on_closed_channel_aborts_with_a_message);
    tcase_add_test(tc, closing_under_a_parked_sender_aborts_it);
    tcase_add_test(tc, closing_twice_aborts_with_a_message);
    tcase_add_test(tc, try_operations_never_block_from_any_thread);
    tcase_add_test(tc, nil_channel_is_never_ready);
    tcase_add_test(tc, blocking_calls_return_the_ctx_error);
    tcase_add_test(tc, direction_views_carry_values_and_close);
    tcase_add_test(tc, zero_size_elements_work_as_signals);
    tcase_add_test(tc, blocking_outside_a_goroutine_aborts_with_a_message);
    suite_add_tcase(s, tc);
    return s;
}
