/* Waiting, backpressure, selection, close, ttr, cancel and disconnects:
 * the behaviours a queue's users rely on, over real TCP. */
#include "chanq_config.h"

#include <check.h>
#include <string.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

START_TEST(full_queue_parks_the_submit_until_a_consumer_frees_room)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"b\",\"capacity\":2}"));
    free(submit(fx.fd, "b", "1"));
    free(submit(fx.fd, "b", "2"));
    req_err(fx.fd, "queue_full", "{\"op\":\"submit\",\"queue\":\"b\",\"payload\":3,\"wait_ms\":0}");
    req_err(fx.fd, "queue_full", "{\"op\":\"submit\",\"queue\":\"b\",\"payload\":3,\"wait_ms\":150}");
    ck_assert_int_eq(queue_stat(fx.fd, "b", "rejected_full"), 2);
    /* A third submit waits; a consumer on another connection makes room. */
    send_line(fx.fd, "{\"op\":\"submit\",\"queue\":\"b\",\"payload\":3,\"wait_ms\":5000,\"rid\":\"w\"}");
    ck_assert_msg(no_data_within(fx.fd, 200), "the submit did not wait for room");
    int c = dial(fx.h);
    ck_assert_int_eq(queue_stat(c, "b", "waiting_submitters"), 1);
    ck_assert_int_eq(queue_stat(c, "b", "depth"), 2);
    char *id = fetch_one(c, "b", 1000);
    ck_assert_msg(id, "consumer got nothing");
    json_t *r = recv_json(fx.fd);
    ck_assert_msg(is_ok(r), "the waiting submit failed after room was made");
    ck_assert_str_eq(json_string_value(json_object_get(r, "rid")), "w");
    json_decref(r);
    ck_assert_int_eq(queue_stat(c, "b", "depth"), 2);
    ck_assert_msg(queue_stat(c, "b", "blocked_ms") >= 100, "blocked time not counted");
    free(id);
    harness_close(c);
}
END_TEST

START_TEST(later_requests_wait_behind_a_parked_submit)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"b1\",\"capacity\":1}"));
    free(submit(fx.fd, "b1", "1"));
    send_line(fx.fd, "{\"op\":\"submit\",\"queue\":\"b1\",\"payload\":2,\"wait_ms\":400}");
    send_line(fx.fd, "{\"op\":\"ping\",\"rid\":2}");
    ck_assert_msg(no_data_within(fx.fd, 200), "a request overtook the parked submit");
    json_t *r = recv_json(fx.fd);
    ck_assert_str_eq(error_code(r), "queue_full");
    json_decref(r);
    r = recv_json(fx.fd);
    ck_assert_msg(is_ok(r) && json_integer_value(json_object_get(r, "rid")) == 2,
                  "ping after the submit was not answered in order");
    json_decref(r);
}
END_TEST

START_TEST(unbuffered_queue_is_a_rendezvous)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"rv\",\"capacity\":0}"));
    req_err(fx.fd, "timeout", "{\"op\":\"submit\",\"queue\":\"rv\",\"payload\":1,\"wait_ms\":0}");
    req_err(fx.fd, "timeout", "{\"op\":\"submit\",\"queue\":\"rv\",\"payload\":1,\"wait_ms\":100}");
    int c = dial(fx.h);
    send_line(c, "{\"op\":\"fetch\",\"queues\":[\"rv\"],\"timeout_ms\":5000}");
    usleep(150 * 1000);
    char *id = submit(fx.fd, "rv", "{\"x\":1}");
    json_t *r = recv_json(c);
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_msg(job && strcmp(json_string_value(json_object_get(job, "id")), id) == 0,
                  "the waiting fetch did not take the rendezvous job");
    json_decref(r);
    free(id);
    harness_close(c);
}
END_TEST

START_TEST(fetch_across_queues_is_fair)
{
    for (int i = 0; i < 200; i++) {
        free(submit(fx.fd, "fa", "1"));
        free(submit(fx.fd, "fb", "1"));
    }
    int from_a = 0;
    for (int i = 0; i < 200; i++) {
        json_t *r = req_ok(fx.fd, "{\"op\":\"fetch\",\"queues\":[\"fa\",\"fb\"],\"timeout_ms\":0}");
        json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
        ck_assert_msg(job, "a ready job was not fetched");
        from_a += strcmp(json_string_value(json_object_get(job, "queue")), "fa") == 0;
        json_decref(r);
    }
    ck_assert_msg(from_a > 60 && from_a < 140, "fetch picked queue fa %d times of 200", from_a);
}
END_TEST

START_TEST(strict_fetch_takes_the_first_listed_ready_queue)
{
    for (int i = 0; i < 5; i++) {
        free(submit(fx.fd, "lo", "1"));
        free(submit(fx.fd, "hi", "1"));
    }
    for (int i = 0; i < 5; i++) {
        json_t *r = req_ok(
            fx.fd, "{\"op\":\"fetch\",\"queues\":[\"hi\",\"lo\"],\"strict\":true,\"timeout_ms\":0}");
        json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
        ck_assert_str_eq(json_string_value(json_object_get(job, "queue")), "hi");
        json_decref(r);
    }
    char *id = fetch_one(fx.fd, "lo", 0);
    ck_assert_msg(id, "lo lost its jobs");
    free(id);
}
END_TEST

START_TEST(fetch_count_returns_several_and_timeout_returns_none)
{
    for (int i = 0; i < 5; i++)
        free(submit(fx.fd, "c", "1"));
    json_t *r = req_ok(fx.fd, "{\"op\":\"fetch\",\"queues\":[\"c\"],\"count\":3,\"timeout_ms\":0}");
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 3);
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"fetch\",\"queues\":[\"c\"],\"count\":10,\"timeout_ms\":0}");
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 2);
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"fetch\",\"queues\":[\"c\"],\"timeout_ms\":150}");
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 0);
    json_decref(r);
}
END_TEST

START_TEST(send_side_select_names_the_queue_with_room)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"s1\",\"capacity\":1}"));
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"s2\",\"capacity\":1}"));
    free(submit(fx.fd, "s1", "1"));
    json_t *r = req_ok(fx.fd, "{\"op\":\"submit\",\"queues\":[\"s1\",\"s2\"],\"payload\":2}");
    ck_assert_str_eq(json_string_value(json_object_get(r, "queue")), "s2");
    json_decref(r);
    req_err(fx.fd, "queue_full",
            "{\"op\":\"submit\",\"queues\":[\"s1\",\"s2\"],\"payload\":3,\"wait_ms\":0}");
}
END_TEST

START_TEST(close_drains_then_wakes_every_waiting_fetcher)
{
    free(submit(fx.fd, "cl", "1"));
    json_decref(req_ok(fx.fd, "{\"op\":\"close\",\"queue\":\"cl\"}"));
    req_err(fx.fd, "closed", "{\"op\":\"submit\",\"queue\":\"cl\",\"payload\":2}");
    char *id = fetch_one(fx.fd, "cl", 0);
    ck_assert_msg(id, "close did not let fetches drain the queue");
    free(id);
    req_err(fx.fd, "closed", "{\"op\":\"fetch\",\"queues\":[\"cl\"],\"timeout_ms\":0}");

    /* Declared first: the stats polls below may come before any fetch has
     * made the queue, and stats on an unknown queue is not_found. */
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"cl2\"}"));
    enum { N = 100 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = dial(fx.h);
        send_line(fds[i], "{\"op\":\"fetch\",\"queues\":[\"cl2\"]}");
    }
    for (int i = 0; i < 100 && queue_stat(fx.fd, "cl2", "waiting_fetchers") < N; i++)
        usleep(20 * 1000);
    ck_assert_int_eq(queue_stat(fx.fd, "cl2", "waiting_fetchers"), N);
    json_decref(req_ok(fx.fd, "{\"op\":\"close\",\"queue\":\"cl2\"}"));
    for (int i = 0; i < N; i++) {
        json_t *r = recv_json(fds[i]);
        ck_assert_msg(r && strcmp(error_code(r), "closed") == 0, "fetcher %d not woken by close",
                      i);
        json_decref(r);
        harness_close(fds[i]);
    }
}
END_TEST

START_TEST(ttr_expiry_revokes_and_requeues_with_the_attempt_counted)
{
    json_t *r = req_ok(fx.fd, "{\"op\":\"submit\",\"queue\":\"ttr\",\"payload\":1,\"ttr_ms\":200}");
    char *id = strdup(json_string_value(json_object_get(r, "id")));
    json_decref(r);
    free(fetch_one(fx.fd, "ttr", 1000));
    json_t *ev = next_event(fx.fd, 3000);
    ck_assert_msg(ev, "no revoked event");
    ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "revoked");
    ck_assert_str_eq(json_string_value(json_object_get(ev, "id")), id);
    ck_assert_str_eq(json_string_value(json_object_get(ev, "reason")), "ttr");
    json_decref(ev);
    req_err(fx.fd, "not_reserved", "{\"op\":\"ack\",\"id\":\"%s\"}", id);
    r = req_ok(fx.fd, "{\"op\":\"fetch\",\"queues\":[\"ttr\"],\"timeout_ms\":1000}");
    json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(job, "attempt")), 2);
    json_decref(r);
    /* The queue's `expired` counts ttr revocations (docs/protocol.md). */
    ck_assert_int_eq(queue_stat(fx.fd, "ttr", "expired"), 1);
    free(id);
}
END_TEST

START_TEST(deadline_expires_a_job_and_revokes_its_holder)
{
    json_t *r =
        req_ok(fx.fd, "{\"op\":\"submit\",\"queue\":\"dead\",\"payload\":1,\"deadline_ms\":300}");
    char *id = strdup(json_string_value(json_object_get(r, "id")));
    json_decref(r);
    free(fetch_one(fx.fd, "dead", 1000));
    json_t *ev = next_event(fx.fd, 3000);
    ck_assert_msg(ev, "no event at the deadline");
    ck_assert_str_eq(json_string_value(json_object_get(ev, "reason")), "deadline");
    json_decref(ev);
    r = req_ok(fx.fd, "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":100}", id);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "expired");
    json_decref(r);
    ck_assert_int_eq(queue_stat(fx.fd, "dead", "expired"), 1);
    free(id);
}
END_TEST

START_TEST(cancel_reaches_the_whole_tree_and_the_worker_holding_a_child)
{
    char *parent = submit(fx.fd, "tree", "\"p\"");
    json_t *r = req_ok(fx.fd, "{\"op\":\"submit\",\"queue\":\"work\",\"payload\":1,\"parent\":\"%s\"}",
                       parent);
    char *child = strdup(json_string_value(json_object_get(r, "id")));
    json_decref(r);
    r = req_ok(fx.fd, "{\"op\":\"submit\",\"queue\":\"work\",\"payload\":2,\"parent\":\"%s\"}",
               child);
    char *grandchild = strdup(json_string_value(json_object_get(r, "id")));
    json_decref(r);
    int worker = dial(fx.h);
    char *held = fetch_one(worker, "work", 1000);
    ck_assert_msg(held && strcmp(held, child) == 0, "worker did not get the child first");
    /* A waiter on the grandchild learns the outcome. */
    int waiter = dial(fx.h);
    send_line(waiter, "{\"op\":\"wait\",\"id\":\"" "x" "\"}");
    json_decref(recv_json(waiter)); /* not_found, just to prove the connection works */
    char line[256];
    snprintf(line, sizeof line, "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":5000}", grandchild);
    send_line(waiter, line);
    r = req_ok(fx.fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", parent);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "cancelled")), 3);
    json_decref(r);
    json_t *ev = next_event(worker, 2000);
    ck_assert_msg(ev, "the worker holding the child got no cancel event");
    ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "cancel");
    ck_assert_str_eq(json_string_value(json_object_get(ev, "id")), child);
    json_decref(ev);
    req_err(worker, "cancelled", "{\"op\":\"ack\",\"id\":\"%s\"}", child);
    r = recv_json(waiter);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "cancelled");
    json_decref(r);
    char *none = fetch_one(fx.fd, "work", 0);
    ck_assert_msg(none == NULL, "a cancelled job was still delivered");
    ck_assert_int_eq(queue_stat(fx.fd, "work", "depth"), 0);
    r = req_ok(fx.fd, "{\"op\":\"cancel\",\"id\":\"%s\"}", parent);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "cancelled")), 0);
    json_decref(r);
    req_err(fx.fd, "cancelled", "{\"op\":\"submit\",\"queue\":\"work\",\"payload\":1,\"parent\":\"%s\"}",
            parent);
    harness_close(worker);
    harness_close(waiter);
    free(held);
    free(parent);
    free(child);
    free(grandchild);
}
END_TEST

START_TEST(disconnect_returns_reservations_at_once)
{
    int worker = dial(fx.h);
    char *id = submit(fx.fd, "dc", "1");
    free(fetch_one(worker, "dc", 1000));
    ck_assert_int_eq(queue_stat(fx.fd, "dc", "reserved"), 1);
    harness_close(worker);
    char *again = fetch_one(fx.fd, "dc", 2000);
    ck_assert_msg(again && strcmp(again, id) == 0, "the reservation did not come back");
    free(again);
    free(id);
}
END_TEST

START_TEST(disconnect_ends_a_waiting_fetch)
{
    json_decref(req_ok(fx.fd, "{\"op\":\"declare\",\"queue\":\"gone\"}"));
    int worker = dial(fx.h);
    send_line(worker, "{\"op\":\"fetch\",\"queues\":[\"gone\"]}");
    for (int i = 0; i < 100 && queue_stat(fx.fd, "gone", "waiting_fetchers") < 1; i++)
        usleep(10 * 1000);
    ck_assert_int_eq(queue_stat(fx.fd, "gone", "waiting_fetchers"), 1);
    harness_close(worker);
    for (int i = 0; i < 100 && queue_stat(fx.fd, "gone", "waiting_fetchers") > 0; i++)
        usleep(10 * 1000);
    ck_assert_int_eq(queue_stat(fx.fd, "gone", "waiting_fetchers"), 0);
    /* The job goes to a live consumer, not the departed one. */
    char *id = submit(fx.fd, "gone", "1");
    char *got = fetch_one(fx.fd, "gone", 1000);
    ck_assert_msg(got && strcmp(got, id) == 0, "job lost to a closed connection");
    free(got);
    free(id);
}
END_TEST

Suite *
flow_suite(void)
{
    Suite *s = suite_create("daemon_flow");
    TCase *tc = tcase_create("flow");
    tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, full_queue_parks_the_submit_until_a_consumer_frees_room);
    tcase_add_test(tc, later_requests_wait_behind_a_parked_submit);
    tcase_add_test(tc, unbuffered_queue_is_a_rendezvous);
    tcase_add_test(tc, fetch_across_queues_is_fair);
    tcase_add_test(tc, strict_fetch_takes_the_first_listed_ready_queue);
    tcase_add_test(tc, fetch_count_returns_several_and_timeout_returns_none);
    tcase_add_test(tc, send_side_select_names_the_queue_with_room);
    tcase_add_test(tc, close_drains_then_wakes_every_waiting_fetcher);
    tcase_add_test(tc, ttr_expiry_revokes_and_requeues_with_the_attempt_counted);
    tcase_add_test(tc, deadline_expires_a_job_and_revokes_its_holder);
    tcase_add_test(tc, cancel_reaches_the_whole_tree_and_the_worker_holding_a_child);
    tcase_add_test(tc, disconnect_returns_reservations_at_once);
    tcase_add_test(tc, disconnect_ends_a_waiting_fetch);
    suite_add_tcase(s, tc);
    return s;
}
