#!/usr/bin/env python3
"""The blocking Python client (clients/python) against a real chanqd:
every op and option, every error code as its typed exception, pipelining
10,000 submits, backpressure, events, token auth and TLS."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pylib import TOP_BUILDDIR, Server, run, until  # noqa: E402

import chanq  # noqa: E402
from chanq import Client  # noqa: E402


class Ops(unittest.TestCase):
    srv: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.srv.stop()
        cls.srv.cleanup()

    def setUp(self) -> None:
        self.c = Client(self.srv.address, client_name="pytest-ops")
        self.addCleanup(self.c.close)

    def q(self) -> str:
        return self.id().rsplit(".", 1)[-1]

    def test_hello_and_ping(self) -> None:
        self.assertEqual(self.c.hello_answer["server"], "chanqd")
        self.assertEqual(self.c.hello_answer["protocol"], 1)
        self.assertIsNone(self.c.ping())

    def test_submit_fetch_ack_wait_job(self) -> None:
        q = self.q()
        jid = self.c.submit({"to": "ann"}, q)
        self.assertIsInstance(jid, str)
        self.assertEqual(jid.queue, q)
        jobs = self.c.fetch(q, timeout_ms=1000)
        self.assertEqual(len(jobs), 1)
        j = jobs[0]
        self.assertEqual((j.id, j.queue, j.payload, j.attempt, j.ttr_ms), (jid, q, {"to": "ann"}, 1, 30000))
        self.c.ack(j.id, {"sent": True})
        w = self.c.wait(jid, timeout_ms=1000)
        self.assertEqual((w.state, w.result), ("done", {"sent": True}))
        info = self.c.job(jid)
        self.assertEqual((info.state, info.attempt, info.result, info.payload), ("done", 1, {"sent": True}, None))
        # ack without result; null result is sent as null
        a = self.c.submit(1, q)
        b = self.c.submit(2, q)
        got = self.c.fetch(q, count=2, timeout_ms=1000)
        self.assertEqual([x.id for x in got], [a, b])
        self.c.ack(a)
        self.c.ack(b, None)
        self.assertIsNone(self.c.wait(a).result)
        self.assertIsNone(self.c.wait(b).result)

    def test_submit_options(self) -> None:
        q = self.q()
        self.c.declare(q, capacity=100)
        d = self.c.submit("later", q, delay_ms=60000, ttr_ms=1234, max_attempts=7, deadline_ms=600000)
        info = self.c.job(d)
        self.assertEqual((info.state, info.ttr_ms, info.max_attempts), ("delayed", 1234, 7))
        self.assertGreater(info.deadline, time.time() * 1000)
        parent = self.c.submit("p", q)
        child = self.c.submit("c", q, parent=parent, wait_ms=1000)
        self.assertEqual(self.c.job(child).parent, parent)
        self.assertEqual(self.c.cancel(parent), 2)
        self.assertEqual(self.c.job(child).state, "cancelled")
        # send-side select: the first queue is full, the job goes to the second
        self.c.declare(q + "-a", capacity=1)
        self.c.submit(0, q + "-a")
        s = self.c.submit(1, queues=[q + "-a", q + "-b"], wait_ms=0)
        self.assertEqual(s.queue, q + "-b")

    def test_traceparent_is_kept_with_the_job(self) -> None:
        q = self.q()
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        jid = self.c.submit({"n": 1}, q, traceparent=tp)
        plain = self.c.submit({"n": 2}, q)
        with self.assertRaises(chanq.BadRequest):
            self.c.submit({"n": 3}, q, traceparent=tp.upper())
        self.assertEqual(self.c.job(jid).traceparent, tp)
        self.assertIsNone(self.c.job(plain).traceparent)
        self.assertNotIn("traceparent", self.c.job(jid).extra)
        jobs = self.c.fetch(q, count=3, timeout_ms=1000)
        self.assertEqual([(j.id, j.traceparent) for j in jobs], [(jid, tp), (plain, None)])
        with self.c.pipeline() as p:
            r = p.submit({"n": 4}, q, traceparent=tp)
        self.assertEqual(self.c.job(r.result()).traceparent, tp)
        self.assertEqual(self.c.submit_many([5], q, traceparent=tp)[0].queue, q)

    def test_a_key_submitted_twice_names_one_job(self) -> None:
        q = self.q()
        first = self.c.submit({"n": 1}, q, key="order-17")
        self.assertFalse(first.duplicate)
        again = self.c.submit({"n": 2}, q, key="order-17")
        self.assertEqual((again, again.duplicate, again.queue), (first, True, None))
        self.assertEqual(first.queue, q)
        self.assertEqual(self.c.submit_many([{"n": 3}], q, key="order-17")[0], first)
        with self.c.pipeline() as p:
            r = p.submit({"n": 4}, q, key="order-17")
        self.assertTrue(r.result().duplicate)
        other = self.c.submit({"n": 5}, q, key="order-18")
        self.assertNotEqual(other, first)
        jobs = self.c.fetch(q, count=10, timeout_ms=0)
        self.assertEqual([(j.id, j.payload) for j in jobs], [(first, {"n": 1}), (other, {"n": 5})])
        with self.assertRaises(chanq.BadRequest):
            self.c.submit(6, q, key="k" * 129)

    def test_higher_priorities_are_delivered_first(self) -> None:
        q = self.q()
        levels = [0, 5, None, 9, 5]  # None: the default level, 0
        ids = [self.c.submit(i, q, priority=lv) for i, lv in enumerate(levels)]
        jobs = self.c.fetch(q, count=5, timeout_ms=1000)
        self.assertEqual([j.id for j in jobs], [ids[3], ids[1], ids[4], ids[0], ids[2]])
        for bad in (10, -1):
            with self.assertRaises(chanq.BadRequest, msg=f"priority {bad}"):
                self.c.submit(0, q, priority=bad)

    def test_run_at_is_not_fetchable_before_its_time(self) -> None:
        q = self.q()
        at = int(time.time() * 1000) + 1000
        jid = self.c.submit("later", q, run_at=at)
        # One clock on one machine: whenever a fetch gives the job, its
        # time has come (a slow host may get it from the first fetch).
        jobs = self.c.fetch(q, timeout_ms=0) or self.c.fetch(q, timeout_ms=10000)
        self.assertGreaterEqual(time.time() * 1000, at, "fetched before its run_at")
        self.assertEqual([j.id for j in jobs], [jid])
        # A datetime works too; one in the past is ready at once.
        past = self.c.submit("past", q, run_at=datetime.now(timezone.utc) - timedelta(hours=1))
        self.assertEqual([j.id for j in self.c.fetch(q, timeout_ms=5000)], [past])
        with self.assertRaises(chanq.BadRequest):
            self.c.submit("both", q, run_at=at, delay_ms=10)
        with self.assertRaises(chanq.BadRequest):
            self.c.submit("far", q, run_at=datetime.now(timezone.utc) + timedelta(days=400))

    def test_fetch_options(self) -> None:
        q = self.q()
        t = time.monotonic()
        self.assertEqual(self.c.fetch(q, timeout_ms=200), [])
        self.assertGreaterEqual(time.monotonic() - t, 0.15)
        self.assertEqual(self.c.fetch([q], timeout_ms=0), [])
        for i in range(5):
            self.c.submit(i, q + "-low")
            self.c.submit(i, q + "-high")
        for _ in range(5):  # strict: the first listed ready queue wins
            got = self.c.fetch([q + "-high", q + "-low"], strict=True, timeout_ms=1000)
            self.assertEqual(got[0].queue, q + "-high")
        got = self.c.fetch([q + "-high", q + "-low"], count=10, timeout_ms=1000)
        self.assertEqual([j.payload for j in got], [0, 1, 2, 3, 4])

    def test_nack_release_touch(self) -> None:
        q = self.q()
        jid = self.c.submit("x", q, max_attempts=2)
        j = self.c.fetch(q, timeout_ms=1000)[0]
        self.assertEqual(self.c.nack(j.id, "smtp timeout", delay_ms=0), "queued")
        self.assertEqual(self.c.job(jid).error, "smtp timeout")
        j = self.c.fetch(q, timeout_ms=1000)[0]
        self.assertEqual(j.attempt, 2)
        self.c.release(j.id)
        info = self.c.job(jid)
        self.assertEqual((info.state, info.attempt), ("queued", 1))
        j = self.c.fetch(q, timeout_ms=1000)[0]
        self.c.touch(j.id)
        self.c.touch(j.id, ttr_ms=60000)
        self.assertEqual(self.c.nack(j.id, "give up", dead=True), "dead")
        w = self.c.wait(jid, timeout_ms=0)
        self.assertEqual((w.state, w.error), ("dead", "give up"))
        jid2 = self.c.submit("y", q)
        j = self.c.fetch(q, timeout_ms=1000)[0]
        self.assertEqual(self.c.nack(j.id, delay_ms=60000), "delayed")
        self.assertEqual(self.c.job(jid2).state, "delayed")

    def test_queue_admin(self) -> None:
        q = self.q()
        st = self.c.declare(q, capacity=10, ttr_ms=5000, max_attempts=2)
        self.assertEqual((st["capacity"], st["ttr_ms"], st["max_attempts"]), (10, 5000, 2))
        self.c.declare(q, capacity=10, ttr_ms=5000, max_attempts=2)  # same again: no-op
        jid = self.c.submit(1, q)
        self.c.pause(q)
        self.assertTrue(self.c.stats(q)["paused"])
        self.assertEqual(self.c.fetch(q, timeout_ms=100), [])
        self.c.resume(q)
        j = self.c.fetch(q, timeout_ms=1000)[0]
        self.c.nack(j.id, "bad", dead=True)
        self.assertEqual(self.c.stats(q)["dead"], 1)
        self.assertEqual(self.c.kick(q, count=5), 1)
        self.assertEqual(self.c.job(jid).state, "queued")
        self.assertEqual(self.c.kick(q), 0)
        server = self.c.stats()
        self.assertIn("uptime_s", server)
        self.c.close_queue(q)
        with self.assertRaises(chanq.Closed):
            self.c.submit(2, q)
        self.assertEqual(len(self.c.fetch(q, timeout_ms=1000)), 1)  # drains
        with self.assertRaises(chanq.Closed):
            self.c.fetch(q, timeout_ms=1000)

    def test_queues_follows_pages(self) -> None:
        q = self.q()
        names = ["%s-%02d" % (q, i) for i in range(25)]
        for n in names:
            self.c.declare(n)
        page, nxt = self.c.queues_page(count=3)
        self.assertEqual(len(page), 3)
        self.assertIsNotNone(nxt)
        every = self.c.queues(page_size=4)
        for n in names:
            self.assertIn(n, every)
            self.assertIn("depth", every[n])

    def test_raw_request_and_events_queue(self) -> None:
        q = self.q()
        self.assertEqual(self.c.request({"op": "ping"})["ok"], True)
        jid = self.c.submit(1, q)
        j = self.c.fetch(q, timeout_ms=1000)[0]
        with Client(self.srv.address) as other:
            self.assertEqual(other.cancel(jid), 1)
        ev = self.c.next_event(timeout=5)
        self.assertEqual((ev.kind, ev.id), ("cancel", j.id))
        with self.assertRaises(chanq.Cancelled):
            self.c.ack(j.id)

    def test_revoked_event_to_callback(self) -> None:
        q = self.q()
        got: list[chanq.Event] = []
        seen = threading.Event()

        def on_event(ev: chanq.Event) -> None:
            got.append(ev)
            seen.set()
        with Client(self.srv.address, on_event=on_event) as w:
            jid = self.c.submit(1, q, ttr_ms=200)
            w.fetch(q, timeout_ms=1000)
            self.assertTrue(seen.wait(5))
            self.assertEqual((got[0].kind, got[0].id, got[0].reason), ("revoked", jid, "ttr"))
            self.assertEqual(self.c.job(jid).error, "ttr expired")

    def test_consume_ack_many_and_cancel_consume(self) -> None:
        q = self.q()
        self.c.submit_many(range(5), q)
        with Client(self.srv.address) as w:
            w.consume(q, prefetch=3)
            jobs: list[chanq.Job] = []
            while len(jobs) < 3:
                ev = w.next_event(timeout=5)
                self.assertIsNotNone(ev, "no jobs pushed")
                self.assertEqual(ev.kind, "jobs")
                jobs.extend(ev.jobs)
            self.assertEqual([j.payload for j in jobs], [0, 1, 2])
            self.assertIsNone(w.next_event(timeout=0.3), "more than the prefetch pushed")
            many = w.ack_many([j.id for j in jobs] + ["12345"])
            self.assertEqual(many.done, 3)
            self.assertEqual(len(many.errors), 1)
            self.assertEqual(many.errors[0][0], "12345")
            self.assertIsInstance(many.errors[0][1], chanq.NotFound)
            rest: list[chanq.Job] = []
            while len(rest) < 2:
                ev = w.next_event(timeout=5)
                self.assertIsNotNone(ev)
                rest.extend(ev.jobs)
            w.cancel_consume()
            self.c.submit(5, q)
            self.assertIsNone(w.next_event(timeout=0.3), "pushed after cancel_consume")
            self.assertEqual(w.nack_many([j.id for j in rest], "no", delay_ms=0).done, 2)
        st = self.c.stats(q)
        self.assertEqual((st["acked"], st["nacked"], st["depth"], st["reserved"]), (3, 2, 3, 0))

    def test_fetch_acking(self) -> None:
        q = self.q()
        self.c.submit_many(["a", "b"], q)
        first = self.c.fetch(q, timeout_ms=1000)[0]
        jobs, acks = self.c.fetch_acking(q, [first.id, "999"], timeout_ms=1000)
        self.assertEqual([j.payload for j in jobs], ["b"])
        self.assertEqual((acks.done, [i for i, _ in acks.errors]), (1, ["999"]))
        self.assertEqual(self.c.job(first.id).state, "done")

    def test_pipelining_10000_submits(self) -> None:
        q = self.q()
        self.c.declare(q, capacity=100000)
        t = time.monotonic()
        ids = self.c.submit_many(({"n": i} for i in range(10000)), q, window=2000)
        took = time.monotonic() - t
        self.assertEqual(len(set(ids)), 10000)
        self.assertEqual(self.c.stats(q)["depth"], 10000)
        with self.c.pipeline() as p:
            replies = [p.submit(i, q) for i in range(10000)]
            pings = p.ping()
        self.assertEqual(len({r.result() for r in replies}), 10000)
        self.assertIsNone(pings.result())
        self.assertEqual(self.c.stats(q)["depth"], 20000)
        # a pipeline with errors: each reply raises its own
        with self.c.pipeline() as p:
            p.submit(1, q)
            p.submit(2, "bad name")
            p.submit(3, q)
        res = p.results(return_exceptions=True)
        self.assertIsInstance(res[1], chanq.BadRequest)
        self.assertIsInstance(res[2], str)
        print("  10000 pipelined submits in %.2fs" % took)

    def test_backpressure_submit_waits_for_room(self) -> None:
        q = self.q()
        self.c.declare(q, capacity=2)
        self.c.submit(1, q)
        self.c.submit(2, q)
        with self.assertRaises(chanq.QueueFull) as cm:
            self.c.submit(3, q, wait_ms=0)
        self.assertIn("capacity 2", cm.exception.message)
        out: dict[str, object] = {}

        def producer() -> None:
            with Client(self.srv.address) as p:
                out["id"] = p.submit(3, q, wait_ms=10000)
        t = threading.Thread(target=producer)
        t.start()
        until(lambda: self.c.stats(q)["waiting_submitters"] == 1, what="a waiting submitter")
        time.sleep(0.2)
        self.assertNotIn("id", out)
        j = self.c.fetch(q, timeout_ms=1000)[0]
        self.c.ack(j.id)
        t.join(5)
        self.assertFalse(t.is_alive())
        self.assertIsInstance(out["id"], str)
        self.assertEqual(self.c.stats(q)["depth"], 2)

    def test_thread_safety_many_threads_one_client(self) -> None:
        q = self.q()
        self.c.declare(q, capacity=10000)
        errs: list[BaseException] = []

        def go(k: int) -> None:
            try:
                for i in range(200):
                    self.c.submit([k, i], q)
            except BaseException as e:  # pragma: no cover
                errs.append(e)
        ts = [threading.Thread(target=go, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(errs, [])
        self.assertEqual(self.c.stats(q)["submitted"], 1600)

    def test_closed_connection_raises_connection_lost(self) -> None:
        c = Client(self.srv.address)
        c.close()
        with self.assertRaises(chanq.ConnectionLost):
            c.ping()


class Errors(unittest.TestCase):
    """Every error code of docs/protocol.md surfaces as its typed exception,
    with the server's message, and the connection stays usable."""

    srv: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.srv = Server("--max-frame", "4096", "--max-queues", "20")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.srv.stop()
        cls.srv.cleanup()

    def setUp(self) -> None:
        self.c = Client(self.srv.address)
        self.addCleanup(self.c.close)

    def check(self, cls: type, fn, *args, contains: str = "", **kw) -> chanq.ChanqError:
        with self.assertRaises(cls) as cm:
            fn(*args, **kw)
        e = cm.exception
        self.assertIsInstance(e, chanq.ChanqError)
        self.assertEqual(e.code, cls.code)
        self.assertTrue(e.message)
        self.assertIn(contains, e.message)
        self.c.ping()  # still usable
        return e

    def test_every_code(self) -> None:
        c = self.c
        self.check(chanq.BadRequest, c.submit, 1, "bad name", contains="field 'queue'")
        self.check(chanq.BadRequest, c.fetch, [], contains="field 'queues'")
        self.check(chanq.UnknownOp, c.request, {"op": "frobnicate"}, contains="frobnicate")
        self.check(chanq.FrameTooLarge, c.submit, "x" * 5000, "e")
        self.check(chanq.TooLarge, c.submit, "x" * 3000, "e", contains="field 'payload'")
        self.check(chanq.NotFound, c.job, "12345", contains="12345")
        self.check(chanq.NotFound, c.pause, "nope", contains="nope")
        jid = c.submit(1, "e")
        with Client(self.srv.address) as other:
            j = other.fetch("e", timeout_ms=1000)[0]
            self.check(chanq.NotReserved, c.ack, j.id, contains="not reserved")
            self.check(chanq.NotReserved, c.release, j.id)
            self.check(chanq.Timeout, c.wait, jid, timeout_ms=0)
            c.cancel(jid)
            e = self.check(chanq.Cancelled, other.ack, j.id)
            self.assertEqual(e.code, "cancelled")
        c.declare("full", capacity=1)
        c.submit(1, "full")
        self.check(chanq.QueueFull, c.submit, 2, "full", wait_ms=0, contains="capacity 1")
        c.declare("rendezvous", capacity=0)
        self.check(chanq.Timeout, c.submit, 1, "rendezvous", wait_ms=50)
        self.check(chanq.Conflict, c.declare, "full", capacity=5, contains="capacity 1")
        c.declare("shut")
        c.close_queue("shut")
        self.check(chanq.Closed, c.submit, 1, "shut")
        for i in range(25):
            try:
                c.declare("many-%d" % i)
            except chanq.Limit as e:
                self.assertTrue(e.message)
                break
        else:
            self.fail("no limit error with --max-queues 20")
        self.assertEqual(chanq.ERRORS["internal"], chanq.Internal)
        self.assertIsInstance(chanq.error_from({"ok": False, "error": {"code": "new_code", "message": "m"}}),
                              chanq.ChanqError)

    def test_shutting_down(self) -> None:
        srv = Server()
        try:
            with Client(srv.address) as c:
                out: list[BaseException] = []

                def fetch() -> None:
                    try:
                        c.fetch("q", timeout_ms=20000)
                    except BaseException as e:
                        out.append(e)
                t = threading.Thread(target=fetch)
                t.start()
                until(lambda: srv.log() and Client(srv.address).stats("q")["waiting_fetchers"] == 1,
                      what="a parked fetch")
                srv.signal(signal.SIGTERM)
                t.join(10)
                self.assertIsInstance(out[0], chanq.ShuttingDown, out)
                self.assertTrue(out[0].message)
        finally:
            srv.stop()
            srv.cleanup()

    def test_internal_when_the_journal_cannot_be_written(self) -> None:
        shim = os.path.abspath(os.path.join(TOP_BUILDDIR, "tests", "daemon", "failwrite.so"))
        if not os.path.exists(shim):
            self.skipTest("tests/daemon/failwrite.so is not built")
        from opslib import Daemon
        tmp = tempfile.mkdtemp(prefix="chanq-py-internal-")
        flag = os.path.join(tmp, "disk-full")
        d = Daemon(["--listen", "127.0.0.1:0", "--data-dir", "@DIR@/data"],
                   env={"LD_PRELOAD": shim, "CHANQ_FAILWRITE_FLAG": flag,
                        # An ASan chanqd wants its runtime first; the shim is
                        # preloaded before it on purpose.
                        "ASAN_OPTIONS": "detect_stack_use_after_return=0:verify_asan_link_order=0"})
        try:
            with Client("127.0.0.1:%d" % d.port) as c:
                c.submit(1, "ok")
                open(flag, "w").close()
                with self.assertRaises(chanq.Internal) as cm:
                    c.submit(2, "ok")
                self.assertEqual(cm.exception.code, "internal")
                self.assertIn("journal", cm.exception.message)
                os.unlink(flag)
                c.submit(3, "ok")
        finally:
            d.stop()
            d.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


def token_dir() -> str:
    d = tempfile.mkdtemp(prefix="chanq-py-token-")
    with open(os.path.join(d, "tokens"), "w") as f:
        f.write("s3cret\n")
    return d


class Auth(unittest.TestCase):
    def test_token_hello(self) -> None:
        tdir = token_dir()
        srv = Server("--token-file", os.path.join(tdir, "tokens"))
        try:
            with Client(srv.address) as c:
                with self.assertRaises(chanq.Unauthorized) as cm:
                    c.submit(1, "q")
                self.assertTrue(cm.exception.message)
            with self.assertRaises(chanq.Unauthorized):
                Client(srv.address, token="wrong")
            with Client(srv.address, token="s3cret", client_name="py") as c:
                jid = c.submit(1, "q")
                j = c.fetch("q", timeout_ms=1000)[0]
                c.ack(j.id, "r")
                self.assertEqual(c.wait(jid).result, "r")
        finally:
            srv.stop()
            srv.cleanup()
            shutil.rmtree(tdir, ignore_errors=True)


class TLS(unittest.TestCase):
    d: object

    @classmethod
    def setUpClass(cls) -> None:
        if os.environ.get("CHANQ_TLS") != "yes" and not shutil.which("openssl"):
            raise unittest.SkipTest("a build without TLS")
        import test_tls  # tests/tls: makes a throwaway PKI with the openssl command
        cls.tt = test_tls
        try:
            cls.d = test_tls.TLSDaemon(extra=["--tls-client-ca", test_tls.path("ca.crt")])
        except AssertionError as e:
            if "tls" in str(e).lower():
                raise unittest.SkipTest("chanqd built without TLS")
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.d.stop()
        cls.d.cleanup()
        if cls.tt.CERTS:
            shutil.rmtree(cls.tt.CERTS, ignore_errors=True)

    def addr(self) -> str:
        return "127.0.0.1:%d" % self.d.tport

    def test_mutual_tls(self) -> None:
        p = self.tt.path
        with Client(self.addr(), ca_file=p("ca.crt"), cert_file=p("client.crt"),
                    key_file=p("client.key")) as c:
            jid = c.submit({"big": "x" * 200000}, "tlsq")
            jobs = c.fetch("tlsq", timeout_ms=1000)
            self.assertEqual(jobs[0].payload["big"], "x" * 200000)
            c.ack(jobs[0].id, "done")
            self.assertEqual(c.wait(jid).result, "done")
            c.declare("tlsmany", capacity=100000)
            ids = c.submit_many(range(5000), "tlsmany")
            self.assertEqual(len(set(ids)), 5000)
        ctx = chanq.make_ssl_context(p("ca.crt"), p("client.crt"), p("client.key"))
        with Client(self.addr(), ssl=ctx) as c:
            c.ping()

    def test_untrusted_or_anonymous_clients_fail(self) -> None:
        p = self.tt.path
        with self.assertRaises(chanq.ConnectionLost):
            Client(self.addr(), ca_file=p("other.crt"), cert_file=p("client.crt"),
                   key_file=p("client.key"))
        with self.assertRaises(chanq.ConnectionLost):
            c = Client(self.addr(), ca_file=p("ca.crt"))  # no client certificate
            try:
                c.ping()
            finally:
                c.close()


if __name__ == "__main__":
    sys.exit(run(__name__))
