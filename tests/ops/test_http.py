#!/usr/bin/env python3
"""--http, black-box against a real chanqd: /metrics passes the strict
Prometheus checker (tests/ops/promcheck.py) and carries the server and
per-queue families, typed as Prometheus' naming guide says, with the age of
the oldest queued job and the run-time histogram; /stats is the JSON
document; /healthz says ok."""
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promcheck  # noqa: E402
from opslib import Daemon, dial, http_get, main, request  # noqa: E402


def start():
    d = Daemon(["--memory", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
    port = int(d.wait_log(r"http: serving /metrics /stats /healthz on 127\.0\.0\.1:(\d+)").group(1))
    return d, port


def test_metrics_pass_the_strict_checker_with_queues():
    d, port = start()
    try:
        with dial(("127.0.0.1", d.port)) as s:
            for q in ("mail", "a.b:c-d"):
                r = request(s, {"op": "declare", "queue": q, "capacity": 5})
                assert r.get("ok") is True, r
            status, ctype, text = http_get(port, "/metrics")
        assert status == 200, status
        assert ctype.startswith("text/plain; version=0.0.4"), ctype
        errors = promcheck.check(text)
        assert not errors, "promcheck:\n%s\n%s" % ("\n".join(errors), text)
        for want in ("\nchanq_uptime_seconds ", "\nchanq_connections 1\n",
                     '\nchanq_queue_capacity{queue="mail"} 5\n',
                     '\nchanq_queue_depth{queue="a.b:c-d"} 0\n',
                     "# TYPE chanq_queue_submitted_total counter\n"):
            assert want in text, "%r missing from /metrics:\n%s" % (want, text)
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_journal_metrics_with_a_data_dir_pass_the_checker():
    d = Daemon(["--data-dir", "@DIR@/data", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
    try:
        port = int(d.wait_log(r"http: serving \S+ \S+ \S+ on 127\.0\.0\.1:(\d+)").group(1))
        with dial(("127.0.0.1", d.port)) as s:
            assert request(s, {"op": "declare", "queue": "j", "capacity": 10}).get("ok") is True
            for i in range(3):
                r = request(s, {"op": "submit", "queue": "j", "payload": {"n": i}})
                assert r.get("ok") is True, r
        status, _, text = http_get(port, "/metrics")
        assert status == 200
        errors = promcheck.check(text)
        assert not errors, "promcheck:\n%s\n%s" % ("\n".join(errors), text)
        for want in ('chanq_journal_fsync_policy{policy="always"} 1',
                     "# TYPE chanq_journal_fsync_duration_seconds histogram",
                     'chanq_journal_fsync_duration_seconds_bucket{le="+Inf"} ',
                     '\nchanq_queue_depth{queue="j"} 3\n'):
            assert want in text, "%r missing from /metrics:\n%s" % (want, text)
        assert d.stop() == 0
    finally:
        d.cleanup()


def parse_metrics(text):
    """{family: type} from the # TYPE lines and {(name, labels): value} of
    the samples, labels as a sorted tuple of (key, value)."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, mtype = line.split(" ")
            types[name] = mtype
        elif line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            name, _, labels = series.partition("{")
            pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)
            samples[(name, tuple(sorted(pairs)))] = float(value)
    return types, samples


def test_metrics_are_typed_and_show_queue_age_and_run_time():
    d, port = start()
    try:
        with dial(("127.0.0.1", d.port)) as s:
            r = request(s, {"op": "submit", "queue": "age", "payload": 1})
            assert r.get("ok") is True, r
            _, _, first = http_get(port, "/metrics")
            time.sleep(0.3)
            _, _, text = http_get(port, "/metrics")
            assert not promcheck.check(text), promcheck.check(text)
            types, samples = parse_metrics(text)
            for name, mtype in types.items():
                assert mtype in ("gauge", "counter", "histogram"), (name, mtype)
                assert (mtype == "counter") == name.endswith("_total"), (name, mtype)
            for name in ("chanq_jobs", "chanq_jobs_tracked", "chanq_payload_bytes",
                         "chanq_queue_oldest_job_age_seconds"):
                assert types.get(name) == "gauge", (name, types.get(name))
            assert types.get("chanq_jobs_finished_total") == "counter", types
            assert types.get("chanq_job_run_seconds") == "histogram", types
            states = {dict(k[1])["state"] for k in samples if k[0] == "chanq_jobs"}
            assert states == {"queued", "reserved", "delayed", "dead"}, states

            # The waiting job's age grows between two scrapes.
            key = ("chanq_queue_oldest_job_age_seconds", (("queue", "age"),))
            age0 = parse_metrics(first)[1][key]
            age1 = samples[key]
            assert age1 >= age0 + 0.25, (age0, age1)

            # One job run for at least 150 ms, acked: counted in the buckets
            # from the one holding its run time on, and in none below.
            t0 = time.monotonic()
            r = request(s, {"op": "fetch", "queue": "age", "timeout_ms": 1000})
            job = r["jobs"][0]
            time.sleep(0.15)
            assert request(s, {"op": "ack", "id": job["id"]}).get("ok") is True
            ran_at_most = time.monotonic() - t0
            _, _, text = http_get(port, "/metrics")
        _, samples = parse_metrics(text)
        assert samples[key] == 0, "empty queue's age: %r" % samples[key]
        buckets = {float(dict(k[1])["le"]): v for k, v in samples.items()
                   if k[0] == "chanq_job_run_seconds_bucket" and dict(k[1])["queue"] == "age"}
        assert buckets, "no run-time histogram for the queue:\n%s" % text
        for le, count in buckets.items():
            if le < 0.15:
                assert count == 0, "bucket le=%g counts a 150 ms run" % le
            elif le >= ran_at_most:
                assert count == 1, "bucket le=%g misses the run (<= %.3f s)" % (le, ran_at_most)
        run = ("chanq_job_run_seconds_count", (("queue", "age"),))
        assert samples[run] == 1, samples[run]
        total = samples[("chanq_job_run_seconds_sum", (("queue", "age"),))]
        assert 0.15 <= total <= ran_at_most + 0.01, (total, ran_at_most)
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_stats_and_healthz():
    d, port = start()
    try:
        status, ctype, body = http_get(port, "/stats")
        assert status == 200 and ctype == "application/json", (status, ctype)
        doc = json.loads(body)
        assert isinstance(doc["server"]["uptime_s"], int), doc
        assert "queues" in doc, doc
        status, _, body = http_get(port, "/healthz")
        assert status == 200 and body == "ok\n", (status, body)
        status, _, _ = http_get(port, "/nope")
        assert status == 404
        assert d.stop() == 0
    finally:
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main([
        test_metrics_pass_the_strict_checker_with_queues,
        test_journal_metrics_with_a_data_dir_pass_the_checker,
        test_metrics_are_typed_and_show_queue_age_and_run_time,
        test_stats_and_healthz,
    ]))
