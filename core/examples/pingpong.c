/* Two goroutines bounce a counter over a pair of unbuffered channels: the
 * smallest program using go(), chan_send/chan_recv and sched_run_main. */
#include "chanq_config.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/chan.h"
#include "core/go.h"
#include "core/sched.h"
#include "core/timer.h"

enum { ROUNDS = 100000 };

/* The two directions of the table. */
struct table {
    struct chan *ping; /* main -> player */
    struct chan *pong; /* player -> main */
};

static void
player(void *arg)
{
    struct table *t = arg;
    int ball;
    /* Stops when main closes ping (chan_recv reports -EPIPE), then says so
     * by closing pong: main waits for that before freeing the table. */
    while (chan_recv(t->ping, &ball, NULL) == 0) {
        ball++;
        chan_send(t->pong, &ball, NULL);
    }
    chan_close(t->pong);
}

static void
game(void *arg)
{
    struct table t = {chan_new(sizeof(int), 0), chan_new(sizeof(int), 0)};
    if (!t.ping || !t.pong) {
        fprintf(stderr, "pingpong: out of memory\n");
        exit(1);
    }
    go(player, &t);
    int ball = 0;
    int ok = 1;
    int64_t start = timer_now_ms();
    for (int i = 0; i < ROUNDS; i++) {
        chan_send(t.ping, &ball, NULL);
        chan_recv(t.pong, &ball, NULL);
        ok &= ball == i + 1;
    }
    int64_t ms = timer_now_ms() - start;
    chan_close(t.ping);
    while (chan_recv(t.pong, &ball, NULL) == 0)
        ;
    printf("pingpong: %d round trips, %lld ms\n", ROUNDS, (long long)ms);
    chan_unref(t.ping);
    chan_unref(t.pong);
    *(int *)arg = ok ? 0 : 1;
}

int
main(void)
{
    int status = 1;
    sched_run_main(game, &status, 0);
    return status;
}
