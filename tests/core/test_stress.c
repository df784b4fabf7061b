/* MPMC stress: 8 producers and 8 consumers move 1M checksummed items
 * through one buffered channel at GOMAXPROCS 1, 2 and 4. */
#include "chanq_config.h"

#include <stdatomic.h>
#include <stdint.h>

#include "core/chan.h"
#include "core/wg.h"
#include "tests/core/helpers.h"
#include "tests/core/suites.h"

enum { PRODUCERS = 8, CONSUMERS = 8, ITEMS = 1000000 };

struct item {
    uint32_t producer;
    uint32_t seq;
    uint64_t check; /* a function of (producer, seq) */
};

static uint64_t
item_check(uint32_t p, uint32_t seq)
{
    uint64_t x = ((uint64_t)p << 32 | seq) * 0x9e3779b97f4a7c15ULL;
    return x ^ (x >> 29);
}

struct mpmc {
    struct chan *c;
    struct wg *producers, *consumers;
    uint32_t per_producer;
    atomic_uint_fast64_t sum;   /* sum of checks received */
    atomic_uint_fast64_t count;
    atomic_int corrupt;
    atomic_int order_broken;    /* per producer, a consumer saw seq go backwards */
    atomic_uint next_id;
};

static void
mpmc_producer(void *arg)
{
    struct mpmc *m = arg;
    uint32_t p = atomic_fetch_add(&m->next_id, 1);
    for (uint32_t s = 0; s < m->per_producer; s++) {
        struct item it = {p, s, item_check(p, s)};
        chan_send(m->c, &it, NULL);
    }
    wg_done(m->producers);
}

static void
mpmc_consumer(void *arg)
{
    struct mpmc *m = arg;
    uint32_t last[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
        last[i] = UINT32_MAX;
    uint64_t sum = 0, count = 0;
    struct item it;
    while (chan_recv(m->c, &it, NULL) == 0) {
        if (it.producer >= PRODUCERS || it.check != item_check(it.producer, it.seq)) {
            atomic_fetch_add(&m->corrupt, 1);
            continue;
        }
        /* One FIFO channel: a consumer sees each producer's items in order. */
        if (last[it.producer] != UINT32_MAX && it.seq <= last[it.producer])
            atomic_fetch_add(&m->order_broken, 1);
        last[it.producer] = it.seq;
        sum += it.check;
        count++;
    }
    atomic_fetch_add(&m->sum, sum);
    atomic_fetch_add(&m->count, count);
    wg_done(m->consumers);
}

static void
mpmc_body(void *arg)
{
    struct mpmc *m = arg;
    size_t items = san_scale(ITEMS, 20);
    m->per_producer = (uint32_t)(items / PRODUCERS);
    m->c = chan_new(sizeof(struct item), 64);
    m->producers = wg_new();
    m->consumers = wg_new();
    wg_add(m->producers, PRODUCERS);
    wg_add(m->consumers, CONSUMERS);
    for (int i = 0; i < CONSUMERS; i++)
        go(mpmc_consumer, m);
    for (int i = 0; i < PRODUCERS; i++)
        go(mpmc_producer, m);
    wg_wait(m->producers, NULL);
    chan_close(m->c);
    wg_wait(m->consumers, NULL);
    uint64_t want = 0;
    for (uint32_t p = 0; p < PRODUCERS; p++)
        for (uint32_t s = 0; s < m->per_producer; s++)
            want += item_check(p, s);
    ck_assert_msg(atomic_load(&m->corrupt) == 0, "%d corrupted items", atomic_load(&m->corrupt));
    ck_assert_msg(atomic_load(&m->order_broken) == 0, "%d items out of order",
                  atomic_load(&m->order_broken));
    ck_assert_msg(atomic_load(&m->count) == (uint64_t)m->per_producer * PRODUCERS,
                  "%llu items received, want %llu", (unsigned long long)atomic_load(&m->count),
                  (unsigned long long)m->per_producer * PRODUCERS);
    ck_assert_msg(atomic_load(&m->sum) == want, "checksum mismatch");
    chan_unref(m->c);
    wg_free(m->producers);
    wg_free(m->consumers);
}

static void
mpmc_run(int nthreads)
{
    struct mpmc m = {0};
    run_main(mpmc_body, &m, nthreads);
}

START_TEST(mpmc_8x8_moves_1m_checksummed_items_on_1_thread)
{
    mpmc_run(1);
}
END_TEST

START_TEST(mpmc_8x8_moves_1m_checksummed_items_on_2_threads)
{
    mpmc_run(2);
}
END_TEST

START_TEST(mpmc_8x8_moves_1m_checksummed_items_on_4_threads)
{
    mpmc_run(4);
}
END_TEST

Suite *
stress_suite(void)
{
    Suite *s = suite_create("stress");
    TCase *tc = tcase_create("mpmc");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, mpmc_8x8_moves_1m_checksummed_items_on_1_thread);
    tcase_add_test(tc, mpmc_8x8_moves_1m_checksummed_items_on_2_threads);
    tcase_add_test(tc, mpmc_8x8_moves_1m_checksummed_items_on_4_threads);
    suite_add_tcase(s, tc);
    return s;
}
