/* A three-stage pipeline (generate -> square -> sum) with a context that
 * stops it early: the stages see cancellation through ctx and the done
 * channel, and every goroutine ends before main returns. */
#include "chanq_config.h"

#include <errno.h>
#include <stdio.h>

#include "core/chan.h"
#include "core/ctx.h"
#include "core/go.h"
#include "core/sched.h"
#include "core/wg.h"

/* What each stage reads from and writes to. */
struct stage {
    struct chan_rx in;  /* unused by the generator */
    struct chan_tx out; /* closed by the stage when it ends */
    struct ctx *ctx;    /* the pipeline's scope */
    struct wg *wg;      /* main waits for every stage */
};

static void
generate(void *arg)
{
    struct stage *s = arg;
    for (long i = 1;; i++)
        if (chan_tx_send(s->out, &i, s->ctx) != 0)
            break; /* cancelled: nobody wants more */
    chan_tx_close(s->out);
    wg_done(s->wg);
}

static void
square(void *arg)
{
    struct stage *s = arg;
    long v;
    while (chan_rx_recv(s->in, &v, s->ctx) == 0) {
        v *= v;
        if (chan_tx_send(s->out, &v, s->ctx) != 0)
            break;
    }
    chan_tx_close(s->out);
    wg_done(s->wg);
}

static void
pipeline(void *arg)
{
    struct ctx *ctx = ctx_with_cancel(NULL);
    struct chan *nums = chan_new(sizeof(long), 16);
    struct chan *squares = chan_new(sizeof(long), 16);
    struct wg *wg = wg_new();
    struct stage gen = {.out = chan_as_tx(nums), .ctx = ctx, .wg = wg};
    struct stage sq = {.in = chan_as_rx(nums), .out = chan_as_tx(squares), .ctx = ctx, .wg = wg};
    wg_add(wg, 2);
    go(generate, &gen);
    go(square, &sq);

    long sum = 0, v;
    for (int i = 0; i < 1000 && chan_recv(squares, &v, NULL) == 0; i++)
        sum += v;
    ctx_cancel(ctx); /* we have enough: stop the producers */
    wg_wait(wg, NULL);
    printf("pipeline: sum of the first 1000 squares = %ld (%s), goroutines left: %zu\n", sum,
           sum == 333833500L ? "ok" : "WRONG", go_count() - 1);
    *(int *)arg = sum == 333833500L && go_count() == 1 ? 0 : 1;
    wg_free(wg);
    chan_unref(squares);
    chan_unref(nums);
    ctx_release(ctx);
}

int
main(void)
{
    int status = 1;
    sched_run_main(pipeline, &status, 0);
    return status;
}
