/* Fan-in with a timeout (Go's fanIn pattern plus select with a deadline):
 * three tickers at different rates merge into one channel; main reads for a
 * while, then closes `quit`, the cancellation-by-close broadcast. */
#include "chanq_config.h"

#include <errno.h>
#include <stdio.h>

#include "core/chan.h"
#include "core/go.h"
#include "core/sched.h"
#include "core/select.h"
#include "core/timer.h"
#include "core/wg.h"

/* One ticker: sends its id every period_ms until quit closes. */
struct ticker {
    int id;
    int period_ms;
    struct chan *out;  /* shared fan-in channel */
    struct chan *quit; /* closed by main */
    struct wg *wg;
};

static void
tick(void *arg)
{
    struct ticker *t = arg;
    for (;;) {
        struct chan_case cs[2] = {{.c = t->quit, .dir = CHAN_RECV},
                                  {.c = t->out, .dir = CHAN_SEND, .elem = &t->id}};
        /* Wait period_ms or quit, then offer one value or quit. */
        if (chan_select(cs, 1, NULL, t->period_ms) == 0)
            break;
        if (chan_select(cs, 2, NULL, -1) == 0)
            break;
    }
    wg_done(t->wg);
}

static void
fanin(void *arg)
{
    struct chan *out = chan_new(sizeof(int), 0);
    struct chan *quit = chan_new(0, 0);
    struct wg *wg = wg_new();
    struct ticker t[3] = {{1, 5, out, quit, wg}, {2, 10, out, quit, wg}, {3, 20, out, quit, wg}};
    wg_add(wg, 3);
    for (int i = 0; i < 3; i++)
        go(tick, &t[i]);
    int counts[4] = {0};
    int64_t until = timer_now_ms() + 200;
    for (;;) {
        int id;
        struct chan_case c = {.c = out, .dir = CHAN_RECV, .elem = &id};
        int64_t left = until - timer_now_ms();
        if (left <= 0 || chan_select(&c, 1, NULL, left) == -ETIMEDOUT)
            break;
        counts[id]++;
    }
    chan_close(quit); /* every ticker's select sees it */
    wg_wait(wg, NULL);
    printf("fanin: in 200 ms got %d from the 5 ms ticker, %d from 10 ms, %d from 20 ms\n",
           counts[1], counts[2], counts[3]);
    *(int *)arg = counts[1] > counts[3] && counts[3] > 0 && go_count() == 1 ? 0 : 1;
    wg_free(wg);
    chan_unref(quit);
    chan_unref(out);
}

int
main(void)
{
    int status = 1;
    sched_run_main(fanin, &status, 0);
    return status;
}
