/* Channels: typed by element size; cap 0 is a rendezvous, cap > 0 a bounded
 * FIFO. Close is a broadcast. Refcounted. A nil channel (NULL) is never
 * ready: sending or receiving on it parks forever (as in Go), and it is
 * ignored by chan_select. */
#ifndef CHANQ_CORE_CHAN_H
#define CHANQ_CORE_CHAN_H

#include <stdbool.h>
#include <stddef.h>

struct chan;
struct ctx;

/* A channel of elements of `elem_size` bytes (0 is fine: a pure signal) with
 * room for `cap` buffered elements (0: unbuffered, every send meets a
 * receiver). Returns a new reference, or NULL when out of memory. */
struct chan *chan_new(size_t elem_size, size_t cap);

/* Takes / drops a reference. The last unref frees the channel and its
 * buffered elements (plain bytes: pointers in them are not freed). Nobody
 * may be parked on it then. Any thread. */
void chan_ref(struct chan *c);
void chan_unref(struct chan *c);

/* Copies elem_size bytes from `elem` into the channel, parking while it is
 * full (or, unbuffered, until a receiver takes it). `ctx` may be NULL (no
 * bound). Goroutine only; may park. Returns 0 when delivered, -ECANCELED /
 * -ETIMEDOUT when ctx was cancelled / its deadline passed first (nothing was
 * sent). Sending on a closed channel, or being parked in a send when the
 * channel closes, aborts the program with a message. */
int chan_send(struct chan *c, const void *elem, struct ctx *ctx);

/* Receives one element into `elem` (elem_size bytes; NULL to discard),
 * parking while nothing is there. Buffered elements are drained before a
 * close is reported. Goroutine only; may park. Returns 0, -EPIPE when the
 * channel is closed and drained (`elem` is zeroed: Go's ok == false),
 * -ECANCELED / -ETIMEDOUT from ctx (nothing was received). */
int chan_recv(struct chan *c, void *elem, struct ctx *ctx);

/* Non-blocking send: 0 when delivered to a waiting receiver or the buffer,
 * -EAGAIN when it would block (nil channel included). Aborts on a closed
 * channel. Any thread (goroutine, scheduler, libevent, foreign); never parks. */
int chan_try_send(struct chan *c, const void *elem);

/* Non-blocking receive: 0, -EAGAIN when nothing is ready, -EPIPE when closed
 * and drained (`elem` zeroed). Any thread; never parks. */
int chan_try_recv(struct chan *c, void *elem);

/* Closes the channel: every parked receiver wakes with -EPIPE (after the
 * buffer drains, later receivers too), every parked sender aborts the
 * program (send on closed channel). Closing twice, or a nil channel, aborts.
 * Any thread; never parks. */
void chan_close(struct chan *c);

/* Changes the capacity of a buffered channel. Growing lets parked senders
 * in at once (oldest first); shrinking below the buffered count keeps every
 * element (receivers drain them) and only makes sends wait until the count
 * is below the new capacity. A channel made unbuffered (0) hands values
 * over directly once its buffer is drained. 0, or -ENOMEM (nothing
 * changed). Any thread; never parks. */
int chan_set_cap(struct chan *c, size_t cap);

/* Buffered elements now, capacity, closed flag: snapshots. Any thread.
 * A nil channel has len 0, cap 0 and is not closed. */
size_t chan_len(const struct chan *c);
size_t chan_cap(const struct chan *c);
bool chan_is_closed(const struct chan *c);
size_t chan_elem_size(const struct chan *c);

/* Calls fn(elem, arg) on the buffered elements, oldest (next to be
 * received) first, until it returns false; for a monitor that looks at
 * what waits without taking it (chanqd: a queue's oldest job). Runs under
 * the channel's lock, so an element stays in the buffer while fn reads
 * it; fn must be short and must not use the channel. Any thread; never
 * parks. A nil channel has no elements. */
typedef bool chan_peek_fn(const void *elem, void *arg);
void chan_peek_each(struct chan *c, chan_peek_fn *fn, void *arg);

/* Removes the buffered elements for which fn(elem, arg) returns true (the
 * others keep their order), then lets parked senders fill the room made,
 * first come first: they are woken as sent. Returns how many were
 * removed; their bytes are gone, so fn must take what it needs of them
 * (chanqd: a job that left its queue while its pointer waited there). Runs
 * under the channel's lock as chan_peek_each does. Any thread; never
 * parks. A nil channel has no elements. */
typedef bool chan_remove_fn(const void *elem, void *arg);
size_t chan_remove_each(struct chan *c, chan_remove_fn *fn, void *arg);

/* Direction-typed views (Go's chan<- T and <-chan T): hand a producer a
 * chan_tx and a consumer a chan_rx and the compiler refuses the wrong
 * operation. They borrow the channel's reference; the calls below behave
 * exactly like the chan_* functions they wrap. */
struct chan_tx {
    struct chan *c; /* borrowed */
};
struct chan_rx {
    struct chan *c; /* borrowed */
};

static inline struct chan_tx
chan_as_tx(struct chan *c)
{
    struct chan_tx tx = {c};
    return tx;
}

static inline struct chan_rx
chan_as_rx(struct chan *c)
{
    struct chan_rx rx = {c};
    return rx;
}

static inline int
chan_tx_send(struct chan_tx tx, const void *elem, struct ctx *ctx)
{
    return chan_send(tx.c, elem, ctx);
}

static inline int
chan_tx_try_send(struct chan_tx tx, const void *elem)
{
    return chan_try_send(tx.c, elem);
}

static inline void
chan_tx_close(struct chan_tx tx)
{
    chan_close(tx.c);
}

static inline int
chan_rx_recv(struct chan_rx rx, void *elem, struct ctx *ctx)
{
    return chan_recv(rx.c, elem, ctx);
}

static inline int
chan_rx_try_recv(struct chan_rx rx, void *elem)
{
    return chan_try_recv(rx.c, elem);
}

#endif
