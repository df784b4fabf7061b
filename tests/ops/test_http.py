#!/usr/bin/env python3
"""--http, black-box against a real chanqd: /metrics passes the strict
Prometheus checker (tests/ops/promcheck.py) and carries the server and
per-queue families; /stats is the JSON document; /healthz says ok."""
import json
import os
import sys

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
        test_stats_and_healthz,
    ]))
