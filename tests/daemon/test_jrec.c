/* jrec_suite: every record type round-trips; decoding is strict (every
 * truncation, trailing byte, bad state or type is refused) and survives
 * random input. */
#include "chanq_config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/jrec.h"

Suite *jrec_suite(void);

static const char *const PAYLOAD = "{\"to\":\"a@b.c\",\"n\":[1,2,3]}";

/* One valid record of each type. */
static size_t
sample_records(struct jrec *out)
{
    size_t n = 0;
    out[n].type = JREC_SUBMIT;
    out[n++].u.submit = (struct jrec_submit){
        .id = 0x123456789abcull, .queue = "emails", .queue_len = 6, .payload = PAYLOAD,
        .payload_len = strlen(PAYLOAD), .ttr_ms = 30000, .max_attempts = 5,
        .created_ms = 1700000000123, .deadline_ms = 0, .due_ms = 1700000060000,
        .parent_id = UINT64_MAX,
    };
    out[n].type = JREC_RESERVE;
    out[n++].u.reserve = (struct jrec_reserve){.id = 7, .attempt = 3};
    out[n].type = JREC_STATE;
    out[n++].u.state = (struct jrec_state){.id = 8, .state = JREC_DELAYED, .attempt = 2,
                                           .due_ms = -5, .error = "boom", .error_len = 4};
    out[n].type = JREC_STATE;
    out[n++].u.state = (struct jrec_state){.id = 9, .state = JREC_DEAD, .attempt = 5};
    out[n].type = JREC_FINAL;
    out[n++].u.final = (struct jrec_final){.id = 10, .state = JREC_DONE, .result = "{\"ok\":1}",
                                           .result_len = 8};
    out[n].type = JREC_FINAL;
    out[n++].u.final = (struct jrec_final){.id = 11, .state = JREC_EXPIRED};
    out[n].type = JREC_DROP;
    out[n++].u.drop = (struct jrec_drop){.id = 12};
    out[n].type = JREC_QUEUE;
    out[n++].u.queue = (struct jrec_queue){.name = "q1", .name_len = 2, .capacity = 1000,
                                           .ttr_ms = 60000, .max_attempts = 3, .paused = true,
                                           .closed = false};
    out[n].type = JREC_QUEUE;
    out[n++].u.queue = (struct jrec_queue){.name = "q2", .name_len = 2, .capacity = 5,
                                           .ttr_ms = 1000, .max_attempts = 1, .concurrency = 3,
                                           .rate = 100, .rate_per_ms = 1000, .burst = 7};
    out[n].type = JREC_QUEUE;
    out[n++].u.queue = (struct jrec_queue){.name = "q3", .name_len = 2, .rate = 1,
                                           .rate_per_ms = 60000, .burst = 1};
    out[n].type = JREC_MOVE;
    out[n++].u.move = (struct jrec_move){.id = 13, .queue = "q2", .queue_len = 2};
    out[n].type = JREC_JOB;
    out[n++].u.job = (struct jrec_job){
        .s = {.id = 14, .queue = "q1", .queue_len = 2, .payload = PAYLOAD,
              .payload_len = strlen(PAYLOAD), .ttr_ms = 100, .max_attempts = 2,
              .created_ms = 1700000000000, .deadline_ms = 1700000009000, .parent_id = 3},
        .state = JREC_RESERVED, .attempt = 2, .error = "ttr expired", .error_len = 11};
    out[n].type = JREC_JOB;
    out[n++].u.job = (struct jrec_job){
        .s = {.id = 15, .queue = "q1", .queue_len = 2}, .state = JREC_DONE, .attempt = 1,
        .result = "[1]", .result_len = 3};
    static const uint64_t order_ids[] = {14, 1, UINT64_MAX, 300};
    out[n].type = JREC_ORDER;
    out[n++].u.order = (struct jrec_order){.kind = JREC_ORDER_QUEUED, .queue = "q1",
                                           .queue_len = 2, .n = 4, .ids = order_ids};
    out[n].type = JREC_ORDER;
    out[n++].u.order = (struct jrec_order){.kind = JREC_ORDER_FINISHED};
    out[n].type = JREC_KEY;
    out[n++].u.key = (struct jrec_key){.key = "order-17", .key_len = 8, .id = 99,
                                       .until_ms = 1700000060000};
    /* schedules */
    out[n].type = JREC_SCHEDULE;
    out[n++].u.schedule = (struct jrec_schedule){
        .name = "nightly", .name_len = 7, .paused = true, .missed_once = true,
        .cron = "30 2 * * mon-fri", .cron_len = 16, .tz = "Europe/Berlin", .tz_len = 13,
        .queue = "reports", .queue_len = 7, .payload = PAYLOAD, .payload_len = strlen(PAYLOAD),
        .ttr_ms = 60000, .max_attempts = 7, .since_ms = 1700000000000, .last_ms = 1700000060000,
    };
    out[n].type = JREC_SCHEDULE;
    out[n++].u.schedule = (struct jrec_schedule){.name = "gone", .name_len = 4, .deleted = true};
    out[n].type = JREC_FIRE;
    out[n++].u.fire = (struct jrec_fire){
        .name = "nightly", .name_len = 7, .planned_ms = 1700000120000,
        .s = {.id = 99, .queue = "reports", .queue_len = 7, .payload = PAYLOAD,
              .payload_len = strlen(PAYLOAD), .ttr_ms = 60000, .max_attempts = 7,
              .created_ms = 1700000120004},
    };
    out[n].type = JREC_REMOVE;
    out[n++].u.remove = (struct jrec_remove){.kind = JREC_REMOVE_JOB, .id = UINT64_MAX - 1};
    out[n].type = JREC_REMOVE;
    out[n++].u.remove = (struct jrec_remove){.kind = JREC_REMOVE_PURGE, .queue = "q1",
                                             .queue_len = 2, .purge = JREC_PURGE_FINISHED};
    out[n].type = JREC_REMOVE;
    out[n++].u.remove = (struct jrec_remove){.kind = JREC_REMOVE_QUEUE, .queue = "mail:eu",
                                             .queue_len = 7};
    static const struct jrec_error errs[] = {
        {.attempt = 1, .has_text = true, .text = "smtp timeout", .text_len = 12},
        {.attempt = 2, .has_text = false},
        {.attempt = 70000, .has_text = true, .text = "", .text_len = 0},
    };
    out[n].type = JREC_ERRORS;
    out[n++].u.errors = (struct jrec_errors){.id = 14, .n = 3, .v = errs};
    return n;
}

static bool same_submit(const struct jrec_submit *x, const struct jrec_submit *y);

/* An encoded ORDER's ids against a decoded one's. */
static bool
same_order(const struct jrec_order *x, const struct jrec_order *y)
{
    const struct jrec_order *dec = x->packed ? x : y, *enc = x->packed ? y : x;
    if (x->kind != y->kind || x->n != y->n || !dec->packed ||
        x->queue_len != y->queue_len || (x->queue_len && memcmp(x->queue, y->queue, x->queue_len)))
        return false;
    size_t pos = 0, i = 0;
    uint64_t id;
    while (jrec_order_next(dec, &pos, &id))
        if (i >= enc->n || enc->ids[i++] != id)
            return false;
    return i == enc->n;
}

static bool
same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* An encoded ERRORS record's entries against a decoded one's. */
static bool
same_errors(const struct jrec_errors *x, const struct jrec_errors *y)
{
    const struct jrec_errors *dec = x->packed ? x : y, *enc = x->packed ? y : x;
    if (x->id != y->id || x->n != y->n || !dec->packed)
        return false;
    size_t pos = 0, i = 0;
    struct jrec_error e;
    while (jrec_errors_next(dec, &pos, &e)) {
        const struct jrec_error *w = i < enc->n ? &enc->v[i++] : NULL;
        if (!w || w->attempt != e.attempt || w->has_text != e.has_text ||
            !same_bytes(w->text, w->text_len, e.text, e.text_len))
            return false;
    }
    return i == enc->n;
}

static bool
same_record(const struct jrec *a, const struct jrec *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case JREC_SUBMIT:
        return same_submit(&a->u.submit, &b->u.submit);
    case JREC_KEY:
        return same_bytes(a->u.key.key, a->u.key.key_len, b->u.key.key, b->u.key.key_len) &&
               a->u.key.id == b->u.key.id && a->u.key.until_ms == b->u.key.until_ms;
    case JREC_MOVE:
        return a->u.move.id == b->u.move.id &&
               same_bytes(a->u.move.queue, a->u.move.queue_len, b->u.move.queue,
                          b->u.move.queue_len);
    case JREC_JOB: {
        const struct jrec_job *x = &a->u.job, *y = &b->u.job;
        return same_submit(&x->s, &y->s) && x->state == y->state && x->attempt == y->attempt &&
               same_bytes(x->error, x->error_len, y->error, y->error_len) &&
               same_bytes(x->result, x->result_len, y->result, y->result_len);
    }
    case JREC_ORDER:
        return same_order(&a->u.order, &b->u.order);
    case JREC_RESERVE:
        return a->u.reserve.id == b->u.reserve.id && a->u.reserve.attempt == b->u.reserve.attempt;
    case JREC_STATE: {
        const struct jrec_state *x = &a->u.state, *y = &b->u.state;
        return x->id == y->id && x->state == y->state && x->attempt == y->attempt &&
               x->due_ms == y->due_ms && same_bytes(x->error, x->error_len, y->error, y->error_len);
    }
    case JREC_FINAL: {
        const struct jrec_final *x = &a->u.final, *y = &b->u.final;
        return x->id == y->id && x->state == y->state &&
               same_bytes(x->result, x->result_len, y->result, y->result_len);
    }
    case JREC_DROP:
        return a->u.drop.id == b->u.drop.id;
    case JREC_SCHEDULE: {
        const struct jrec_schedule *x = &a->u.schedule, *y = &b->u.schedule;
        return same_bytes(x->name, x->name_len, y->name, y->name_len) &&
               x->deleted == y->deleted && x->paused == y->paused &&
               x->missed_once == y->missed_once &&
               same_bytes(x->cron, x->cron_len, y->cron, y->cron_len) &&
               same_bytes(x->tz, x->tz_len, y->tz, y->tz_len) &&
               same_bytes(x->queue, x->queue_len, y->queue, y->queue_len) &&
               same_bytes(x->payload, x->payload_len, y->payload, y->payload_len) &&
               x->ttr_ms == y->ttr_ms && x->max_attempts == y->max_attempts &&
               x->since_ms == y->since_ms && x->last_ms == y->last_ms;
    }
    case JREC_FIRE:
        return same_bytes(a->u.fire.name, a->u.fire.name_len, b->u.fire.name,
                          b->u.fire.name_len) &&
               a->u.fire.planned_ms == b->u.fire.planned_ms &&
               same_submit(&a->u.fire.s, &b->u.fire.s);
    case JREC_REMOVE: {
        const struct jrec_remove *x = &a->u.remove, *y = &b->u.remove;
        return x->kind == y->kind && x->id == y->id && x->purge == y->purge &&
               same_bytes(x->queue, x->queue_len, y->queue, y->queue_len);
    }
    case JREC_ERRORS:
        return same_errors(&a->u.errors, &b->u.errors);
    case JREC_QUEUE: {
        const struct jrec_queue *x = &a->u.queue, *y = &b->u.queue;
        return same_bytes(x->name, x->name_len, y->name, y->name_len) &&
               x->capacity == y->capacity && x->ttr_ms == y->ttr_ms &&
               x->max_attempts == y->max_attempts && x->paused == y->paused &&
               x->closed == y->closed && x->concurrency == y->concurrency &&
               x->rate == y->rate && x->rate_per_ms == y->rate_per_ms && x->burst == y->burst;
    }
    }
    return false;
}

static bool
same_submit(const struct jrec_submit *x, const struct jrec_submit *y)
{
    return x->id == y->id && same_bytes(x->queue, x->queue_len, y->queue, y->queue_len) &&
           same_bytes(x->payload, x->payload_len, y->payload, y->payload_len) &&
           x->ttr_ms == y->ttr_ms && x->max_attempts == y->max_attempts &&
           x->created_ms == y->created_ms && x->deadline_ms == y->deadline_ms &&
           x->due_ms == y->due_ms && x->parent_id == y->parent_id &&
           same_bytes(x->key, x->key_len, y->key, y->key_len) && x->priority == y->priority &&
           same_bytes(x->traceparent, x->traceparent_len, y->traceparent, y->traceparent_len);
}

static const char *const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/* A submit and a job with every optional field set. */
static size_t
sample_records_with_options(struct jrec *out)
{
    struct jrec_submit s = {
        .id = 21, .queue = "q", .queue_len = 1, .payload = "{}", .payload_len = 2,
        .ttr_ms = 1000, .max_attempts = 3, .created_ms = 1700000000000, .key = "order-42",
        .key_len = 8, .priority = 7, .traceparent = TRACEPARENT,
        .traceparent_len = strlen(TRACEPARENT)};
    out[0].type = JREC_SUBMIT;
    out[0].u.submit = s;
    out[1].type = JREC_JOB;
    out[1].u.job = (struct jrec_job){.s = s, .state = JREC_DEAD, .attempt = 3,
                                     .error = "boom", .error_len = 4};
    return 2;
}

START_TEST(optional_submit_fields_round_trip_and_stay_optional)
{
    struct jrec recs[2], back, plain;
    uint8_t buf[256], plain_buf[256];
    sample_records_with_options(recs);
    for (size_t i = 0; i < 2; i++) {
        const char *what = jrec_type_name(recs[i].type);
        int len = jrec_encode(&recs[i], buf, sizeof(buf));
        ck_assert_msg(len > 0 && jrec_decode(buf, (size_t)len, &back, NULL) == 0, "%s", what);
        ck_assert_msg(same_record(&recs[i], &back), "%s with options round-trips", what);
        /* The same record without options is the record as it was before
         * they existed: its bytes are a prefix, and it reads back unset. */
        plain = recs[i];
        struct jrec_submit *ps = plain.type == JREC_SUBMIT ? &plain.u.submit : &plain.u.job.s;
        ps->key_len = ps->traceparent_len = 0;
        ps->priority = 0;
        int plain_len = jrec_encode(&plain, plain_buf, sizeof(plain_buf));
        ck_assert_msg(plain_len > 0 && plain_len < len && !memcmp(buf, plain_buf, (size_t)plain_len),
                      "%s without options is a prefix", what);
        ck_assert_msg(jrec_decode(buf, (size_t)plain_len, &back, NULL) == 0, "%s", what);
        const struct jrec_submit *bs = back.type == JREC_SUBMIT ? &back.u.submit : &back.u.job.s;
        ck_assert_msg(bs->key_len == 0 && bs->priority == 0 && bs->traceparent_len == 0,
                      "%s without options reads them unset", what);
        /* Cut inside an option's value, or an unknown tag: refused. */
        ck_assert_msg(jrec_decode(buf, (size_t)len - 1, &back, NULL) == -EBADMSG,
                      "%s with its last option cut short is refused", what);
        buf[len] = 9;
        buf[len + 1] = 0;
        ck_assert_msg(jrec_decode(buf, (size_t)len + 2, &back, NULL) == -EBADMSG,
                      "%s with an unknown option is refused", what);
    }
}
END_TEST

START_TEST(every_record_type_round_trips)
{
    struct jrec recs[32], back;
    uint8_t buf[256];
    size_t n = sample_records(recs);
    for (size_t i = 0; i < n; i++) {
        int len = jrec_encode(&recs[i], buf, sizeof(buf));
        ck_assert_msg(len > 0 && (size_t)len == jrec_size(&recs[i]), "%s encodes",
                      jrec_type_name(recs[i].type));
        ck_assert_msg(jrec_decode(buf, (size_t)len, &back, NULL) == 0, "%s decodes",
                      jrec_type_name(recs[i].type));
        ck_assert_msg(same_record(&recs[i], &back), "%s round-trips",
                      jrec_type_name(recs[i].type));
    }
    ck_assert_msg(jrec_size(&recs[1]) <= 4, "a reserve record is compact: %zu bytes",
                  jrec_size(&recs[1]));
}
END_TEST

START_TEST(decoding_refuses_every_truncation_and_trailing_bytes)
{
    struct jrec recs[32], back;
    uint8_t buf[256];
    size_t n = sample_records(recs);
    for (size_t i = 0; i < n; i++) {
        int len = jrec_encode(&recs[i], buf, sizeof(buf));
        for (int cut = 0; cut < len; cut++) {
            /* A copy of exactly `cut` bytes, so ASan sees any over-read. */
            uint8_t *p = malloc(cut ? (size_t)cut : 1);
            memcpy(p, buf, (size_t)cut);
            const char *why = NULL;
            int rc = jrec_decode(p, (size_t)cut, &back, &why);
            /* A queue record's limits are optional trailing fields: cut
             * between two of them it reads as a queue with fewer limits,
             * never as the record it was cut from. */
            bool fewer_limits = rc == 0 && recs[i].type == JREC_QUEUE &&
                                back.type == JREC_QUEUE && !same_record(&recs[i], &back);
            ck_assert_msg((rc == -EBADMSG && why) || fewer_limits,
                          "%s cut to %d of %d bytes is refused", jrec_type_name(recs[i].type),
                          cut, len);
            free(p);
        }
        buf[len] = 0;
        ck_assert_msg(jrec_decode(buf, (size_t)len + 1, &back, NULL) == -EBADMSG,
                      "%s with a trailing byte is refused", jrec_type_name(recs[i].type));
    }
}
END_TEST

START_TEST(decoding_refuses_bad_types_states_and_numbers)
{
    const char *why = NULL;
    struct jrec back;
    const uint8_t unknown[] = {99, 1};
    ck_assert_msg(jrec_decode(unknown, sizeof(unknown), &back, &why) == -EBADMSG,
                  "unknown type refused");
    /* final with state "queued" (1): not a final state */
    const uint8_t bad_final[] = {JREC_FINAL, 5, 1, 0};
    ck_assert_msg(jrec_decode(bad_final, sizeof(bad_final), &back, &why) == -EBADMSG,
                  "final with a non-final state refused");
    const uint8_t bad_state[] = {JREC_STATE, 5, 4, 1, 0, 0};
    ck_assert_msg(jrec_decode(bad_state, sizeof(bad_state), &back, &why) == -EBADMSG,
                  "state record with state done refused");
    const uint8_t long_varint[] = {JREC_DROP, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    ck_assert_msg(jrec_decode(long_varint, sizeof(long_varint), &back, &why) == -EBADMSG,
                  "11-byte varint refused");
    const uint8_t overflow[] = {JREC_DROP, 0xff, 0xff, 0xff, 0xff, 0xff,
                                0xff, 0xff, 0xff, 0xff, 0x02};
    ck_assert_msg(jrec_decode(overflow, sizeof(overflow), &back, &why) == -EBADMSG,
                  "varint above 2^64 refused");
    const uint8_t attempt_big[] = {JREC_RESERVE, 1, 0x80, 0x80, 0x80, 0x80, 0x10};
    ck_assert_msg(jrec_decode(attempt_big, sizeof(attempt_big), &back, &why) == -EBADMSG,
                  "attempt above u32 refused");
    const uint8_t flags[] = {JREC_QUEUE, 1, 'q', 0, 0, 0, 4};
    ck_assert_msg(jrec_decode(flags, sizeof(flags), &back, &why) == -EBADMSG,
                  "unknown queue flag refused");
    /* The queue limits' trailing pairs: unknown tag, out of order, zero. */
    const uint8_t limit_tag[] = {JREC_QUEUE, 1, 'q', 0, 0, 0, 0, 9, 1};
    ck_assert_msg(jrec_decode(limit_tag, sizeof(limit_tag), &back, &why) == -EBADMSG,
                  "unknown queue limit refused");
    const uint8_t limit_order[] = {JREC_QUEUE, 1, 'q', 0, 0, 0, 0, 2, 5, 1, 3};
    ck_assert_msg(jrec_decode(limit_order, sizeof(limit_order), &back, &why) == -EBADMSG,
                  "queue limits out of order refused");
    const uint8_t limit_zero[] = {JREC_QUEUE, 1, 'q', 0, 0, 0, 0, 1, 0};
    ck_assert_msg(jrec_decode(limit_zero, sizeof(limit_zero), &back, &why) == -EBADMSG,
                  "a zero queue limit refused");
    const uint8_t limit_cut[] = {JREC_QUEUE, 1, 'q', 0, 0, 0, 0, 1};
    ck_assert_msg(jrec_decode(limit_cut, sizeof(limit_cut), &back, &why) == -EBADMSG,
                  "a queue limit cut short refused");
    /* A queue record as written before limits existed still reads. */
    const uint8_t old_queue[] = {JREC_QUEUE, 1, 'q', 4, 6, 3, 1};
    ck_assert_msg(jrec_decode(old_queue, sizeof(old_queue), &back, &why) == 0 &&
                      back.u.queue.concurrency == 0 && back.u.queue.rate == 0 &&
                      back.u.queue.paused,
                  "an old queue record reads, without limits");
    ck_assert_msg(jrec_decode("", 0, &back, &why) == -EBADMSG, "empty record refused");
}
END_TEST

START_TEST(encoding_refuses_small_buffers_and_invalid_records)
{
    struct jrec recs[32];
    uint8_t buf[256];
    sample_records(recs);
    size_t need = jrec_size(&recs[0]);
    memset(buf, 0xaa, sizeof(buf));
    ck_assert_msg(jrec_encode(&recs[0], buf, need - 1) == -ENOBUFS, "short buffer refused");
    ck_assert_msg(buf[0] == 0xaa, "buffer untouched on -ENOBUFS");
    struct jrec bad = {.type = JREC_FINAL};
    bad.u.final = (struct jrec_final){.id = 1, .state = JREC_QUEUED};
    ck_assert_msg(jrec_encode(&bad, buf, sizeof(buf)) == -EINVAL, "bad state refused");
    bad.type = (enum jrec_type)77;
    ck_assert_msg(jrec_size(&bad) == 0, "unknown type has no size");
    struct jrec nul = {.type = JREC_DROP};
    nul.type = JREC_STATE;
    nul.u.state = (struct jrec_state){.id = 1, .state = JREC_QUEUED, .error = NULL, .error_len = 3};
    ck_assert_msg(jrec_encode(&nul, buf, sizeof(buf)) == -EINVAL, "NULL string with a length");
}
END_TEST

START_TEST(decoding_random_bytes_never_crashes)
{
    struct jrec back;
    uint8_t buf[64];
    unsigned seed = 7;
    int ok = 0;
    for (int round = 0; round < 200000; round++) {
        size_t len = (size_t)(rand_r(&seed) % sizeof(buf));
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rand_r(&seed);
        if (len)
            buf[0] = (uint8_t)(1 + rand_r(&seed) % 7);
        uint8_t *p = malloc(len ? len : 1);
        memcpy(p, buf, len);
        if (jrec_decode(p, len, &back, NULL) == 0) {
            ok++;
            uint8_t again[128];
            int n = jrec_encode(&back, again, sizeof(again));
            ck_assert_msg(n > 0, "a decoded record re-encodes");
        }
        free(p);
    }
    ck_assert_msg(ok > 0, "some random records decode (%d)", ok);
}
END_TEST

START_TEST(remove_and_errors_records_refuse_inconsistent_fields)
{
    uint8_t buf[256];
    static const struct jrec_remove bad[] = {
        {.kind = 0},
        {.kind = 4, .queue = "q", .queue_len = 1},
        {.kind = JREC_REMOVE_JOB, .id = 1, .queue = "q", .queue_len = 1}, /* a job names no queue */
        {.kind = JREC_REMOVE_QUEUE},                                      /* a queue needs a name */
        {.kind = JREC_REMOVE_PURGE, .queue = "q", .queue_len = 1},        /* which state? */
        {.kind = JREC_REMOVE_PURGE, .queue = "q", .queue_len = 1, .purge = 5},
        {.kind = JREC_REMOVE_QUEUE, .queue = "q", .queue_len = 1, .purge = JREC_PURGE_DEAD},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct jrec r = {.type = JREC_REMOVE, .u.remove = bad[i]};
        ck_assert_msg(jrec_encode(&r, buf, sizeof buf) == -EINVAL, "bad remove %zu encoded", i);
    }
    /* The same inconsistencies in bytes are refused by the decoder:
     * type 12, kind, id, queue (length + bytes), purge state. */
    static const uint8_t wire[][8] = {
        {12, 1, 5, 1, 'q', 0},  /* job with a queue */
        {12, 3, 0, 0, 0},       /* queue without a name */
        {12, 2, 0, 1, 'q', 9},  /* purge of state 9 */
        {12, 7, 0, 1, 'q', 0},  /* unknown kind */
    };
    static const size_t wire_len[] = {6, 5, 6, 6};
    for (size_t i = 0; i < 4; i++) {
        struct jrec out;
        const char *why = NULL;
        ck_assert_msg(jrec_decode(wire[i], wire_len[i], &out, &why) == -EBADMSG && why,
                      "bad remove bytes %zu decoded", i);
    }
    /* ERRORS: an entry flag other than 0/1 is corruption. */
    static const uint8_t errs[] = {13, 9, 1, 1, 2, 0};
    struct jrec out;
    ck_assert_int_eq(jrec_decode(errs, sizeof errs, &out, NULL), -EBADMSG);
}
END_TEST

Suite *
jrec_suite(void)
{
    Suite *s = suite_create("jrec");
    TCase *tc = tcase_create("jrec");
    tcase_add_test(tc, every_record_type_round_trips);
    tcase_add_test(tc, optional_submit_fields_round_trip_and_stay_optional);
    tcase_add_test(tc, decoding_refuses_every_truncation_and_trailing_bytes);
    tcase_add_test(tc, decoding_refuses_bad_types_states_and_numbers);
    tcase_add_test(tc, encoding_refuses_small_buffers_and_invalid_records);
    tcase_add_test(tc, decoding_random_bytes_never_crashes);
    tcase_add_test(tc, remove_and_errors_records_refuse_inconsistent_fields);
    suite_add_tcase(s, tc);
    return s;
}
