#!/usr/bin/env python3
"""The Python worker pools against a real chanqd: a Worker of 8 runs
10,000 jobs, stopped half-way by SIGTERM (in a child process) and then by
its stop method, with no job lost or run twice; results and nack texts;
long jobs touched past their ttr; a job cancelled while its function runs
(threading.Event in the blocking worker, task cancellation in the async
one); a stop lets the running job finish."""
from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pylib import TOP_SRCDIR, Server, run, until  # noqa: E402

import chanq  # noqa: E402
from chanq import AsyncWorker, Client, JobContext, Worker  # noqa: E402

CHILD = r"""
import sys, chanq
out = open(sys.argv[2], "a", buffering=1)
def handle(ctx):
    out.write("%d\n" % ctx.payload)
    return ctx.payload * 2
w = chanq.Worker(handle, "many", sys.argv[1], concurrency=8, poll_ms=200)
stats = w.run()
print("stopped", stats)
"""


class Workers(unittest.TestCase):
    srv: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.srv.stop()
        cls.srv.cleanup()

    def setUp(self) -> None:
        self.c = Client(self.srv.address)
        self.addCleanup(self.c.close)

    def test_10000_jobs_sigterm_then_stop_none_lost_none_twice(self) -> None:
        n = 10000
        self.c.declare("many", capacity=n)
        self.c.submit_many(range(n), "many")
        tmp = tempfile.mkdtemp(prefix="chanq-py-worker-")
        done_file = os.path.join(tmp, "done")
        env = dict(os.environ, PYTHONPATH=os.path.join(TOP_SRCDIR, "clients", "python", "src"))
        child = subprocess.Popen([sys.executable, "-c", CHILD, self.srv.address, done_file],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            until(lambda: self.c.stats("many")["acked"] >= 2000, timeout=30, what="2000 acks")
            child.send_signal(signal.SIGTERM)
            out, _ = child.communicate(timeout=15)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        self.assertEqual(child.returncode, 0, out)
        self.assertIn("stopped", out)
        st = self.c.stats("many")
        self.assertEqual(st["reserved"], 0)
        with open(done_file) as f:
            first = [int(x) for x in f.read().split()]
        self.assertEqual(st["acked"], len(first))
        self.assertLess(len(first), n, "the SIGTERM came after the last job")
        # the rest with an in-process pool, stopped by its stop method
        seen: list[int] = []
        lock = threading.Lock()

        def handle(ctx: JobContext) -> int:
            with lock:
                seen.append(ctx.payload)
            return ctx.payload * 2
        w = Worker(handle, "many", self.srv.address, concurrency=8, poll_ms=200)
        w.start()
        until(lambda: self.c.stats("many")["acked"] >= n, timeout=40, what="every job acked")
        w.stop()
        self.assertTrue(w.join(10))
        everything = first + seen
        dup = [k for k, v in collections.Counter(everything).items() if v > 1]
        self.assertEqual(dup, [])
        self.assertEqual(sorted(everything), list(range(n)))
        st = self.c.stats("many")
        self.assertEqual((st["acked"], st["depth"], st["reserved"], st["nacked"]), (n, 0, 0, 0))
        self.assertEqual(w.stats.acked, len(seen))
        ids = self.c.submit_many([21], "many")
        w2 = Worker(handle, "many", self.srv.address, concurrency=1)
        w2.start()
        self.assertEqual(self.c.wait(ids[0], timeout_ms=5000).result, 42)
        w2.stop()
        self.assertTrue(w2.join(5))

    def test_result_nack_text_and_touch(self) -> None:
        def handle(ctx: JobContext) -> object:
            if ctx.payload == "boom":
                raise ValueError("boom happened")
            if ctx.payload == "slow":
                time.sleep(2.5)  # ttr is 1 s: the pool must touch it, twice or more
                return {"slept": True, "attempt": ctx.attempt}
            if ctx.payload == "unjson":
                return object()
            return {"echo": ctx.payload}
        w = Worker(handle, "rt", self.srv.address, concurrency=3, poll_ms=100, nack_delay_ms=0)
        w.start()
        try:
            ok = self.c.submit("hi", "rt")
            bad = self.c.submit("boom", "rt", max_attempts=1)
            # A ttr long enough for a loaded 2-core machine (a sanitizer
            # build next to other builds) to schedule the touch in time.
            slow = self.c.submit("slow", "rt", ttr_ms=1000)
            unj = self.c.submit("unjson", "rt", max_attempts=1)
            self.assertEqual(self.c.wait(ok, timeout_ms=5000).result, {"echo": "hi"})
            wb = self.c.wait(bad, timeout_ms=5000)
            self.assertEqual((wb.state, wb.error), ("dead", "ValueError: boom happened"))
            ws = self.c.wait(slow, timeout_ms=10000)
            self.assertEqual((ws.state, ws.result), ("done", {"slept": True, "attempt": 1}))
            self.assertEqual(self.c.job(slow).attempt, 1)
            wu = self.c.wait(unj, timeout_ms=5000)
            self.assertEqual(wu.state, "dead")
            self.assertIn("TypeError", wu.error)
        finally:
            w.stop()
            self.assertTrue(w.join(5))
        self.assertEqual((w.stats.acked, w.stats.nacked, w.stats.cancelled), (2, 2, 0))

    def test_cancel_while_running(self) -> None:
        started = threading.Event()
        outcome: dict[str, object] = {}

        def handle(ctx: JobContext) -> str:
            started.set()
            outcome["cancelled"] = ctx.cancelled.wait(10)
            outcome["reason"] = ctx.cancel_reason
            return "should not be acked"
        w = Worker(handle, "cx", self.srv.address, concurrency=2, poll_ms=100)
        w.start()
        try:
            jid = self.c.submit("long", "cx")
            self.assertTrue(started.wait(5))
            self.assertEqual(self.c.cancel(jid), 1)
            until(lambda: w.stats.cancelled == 1, what="the pool to count the cancel")
            self.assertEqual(outcome, {"cancelled": True, "reason": "cancel"})
            self.assertEqual(self.c.job(jid).state, "cancelled")
        finally:
            w.stop()
            self.assertTrue(w.join(5))
        self.assertEqual((w.stats.acked, w.stats.errors), (0, 0))

    def test_stop_lets_the_running_job_finish(self) -> None:
        started = threading.Event()

        def handle(ctx: JobContext) -> str:
            started.set()
            time.sleep(0.5)
            return "finished"
        w = Worker(handle, "gs", self.srv.address, concurrency=2, poll_ms=100)
        w.start()
        jid = self.c.submit(1, "gs")
        self.assertTrue(started.wait(5))
        w.stop()
        self.c.submit(2, "gs")  # not taken after the stop
        self.assertTrue(w.join(5))
        self.assertEqual(self.c.wait(jid, timeout_ms=0).result, "finished")
        st = self.c.stats("gs")
        self.assertEqual((st["depth"], st["reserved"]), (1, 0))

    def test_fetch_mode_polls(self) -> None:
        done: list[int] = []
        lock = threading.Lock()

        def handle(ctx: JobContext) -> None:
            with lock:
                done.append(ctx.payload)
        self.c.submit_many(range(200), "fm")
        w = Worker(handle, "fm", self.srv.address, concurrency=4, mode="fetch", poll_ms=100)
        w.start()
        until(lambda: self.c.stats("fm")["acked"] == 200, what="200 acks")
        w.stop()
        self.assertTrue(w.join(5))
        self.assertEqual(sorted(done), list(range(200)))
        self.assertEqual((w.stats.fetched, w.stats.acked), (200, 200))
        with self.assertRaises(ValueError):
            Worker(handle, "fm", self.srv.address, mode="poll")

    def test_a_prefetched_job_taken_back_before_it_runs_is_skipped(self) -> None:
        release = threading.Event()
        ran: list[object] = []

        def handle(ctx: JobContext) -> None:
            ran.append(ctx.payload)
            if ctx.payload == "first":
                release.wait(10)
        first = self.c.submit("first", "pf")
        w = Worker(handle, "pf", self.srv.address, concurrency=1, prefetch=3)
        w.start()
        try:
            until(lambda: ran == ["first"], what="the first job to start")
            second = self.c.submit("second", "pf")
            until(lambda: self.c.job(second).state == "reserved", what="the second pushed")
            self.assertEqual(self.c.cancel(second), 1)
            third = self.c.submit("third", "pf")
            time.sleep(0.2)
            release.set()
            self.assertEqual(self.c.wait(third, timeout_ms=5000).state, "done")
        finally:
            w.stop()
            self.assertTrue(w.join(5))
        self.assertEqual(ran, ["first", "third"])
        self.assertEqual(self.c.job(first).state, "done")
        self.assertEqual((w.stats.acked, w.stats.cancelled, w.stats.errors), (2, 1, 0))

    def test_a_job_waiting_past_half_its_ttr_is_touched_before_it_runs(self) -> None:
        attempts: list[int] = []

        def handle(ctx: JobContext) -> None:
            attempts.append(ctx.attempt)
            time.sleep(0.4)  # the second job waits longer than half its ttr
        a = self.c.submit("a", "tw", ttr_ms=600)
        b = self.c.submit("b", "tw", ttr_ms=600)
        w = Worker(handle, "tw", self.srv.address, concurrency=1, prefetch=2)
        w.start()
        try:
            self.assertEqual(self.c.wait(a, timeout_ms=5000).state, "done")
            self.assertEqual(self.c.wait(b, timeout_ms=5000).state, "done")
        finally:
            w.stop()
            self.assertTrue(w.join(5))
        self.assertEqual(attempts, [1, 1], "a job ran again: its reservation ran out")

    def test_acks_are_batched_on_one_connection(self) -> None:
        n = 3000
        self.c.declare("batch", capacity=n)
        self.c.submit_many(range(n), "batch")
        before = self.c.stats()["connections"]
        w = Worker(lambda ctx: None, "batch", self.srv.address, concurrency=8)
        w.start()
        try:
            until(lambda: self.c.stats("batch")["acked"] == n, timeout=30, what="every ack")
            self.assertEqual(self.c.stats()["connections"], before + 1, "one connection")
        finally:
            w.stop()
            self.assertTrue(w.join(5))
        self.assertEqual((w.stats.fetched, w.stats.acked, w.stats.errors), (n, n, 0))

    def test_async_worker(self) -> None:
        asyncio.run(self._async_worker())

    async def _async_worker(self) -> None:
        c = await chanq.AsyncClient.connect(self.srv.address)
        await c.declare("aw", capacity=5000)
        seen: list[int] = []
        cancelled = asyncio.Event()

        async def handle(ctx: JobContext) -> object:
            if ctx.payload == "long":
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise
            if ctx.payload == "boom":
                raise RuntimeError("async boom")
            seen.append(ctx.payload)
            await asyncio.sleep(0)
            return ctx.payload + 1
        w = AsyncWorker(handle, ["aw"], self.srv.address, concurrency=8, poll_ms=100,
                        nack_delay_ms=0)
        runner = asyncio.ensure_future(w.run(install_signals=False))
        try:
            ids = await c.submit_many(range(1000), "aw")
            long_id = await c.submit("long", "aw")
            boom = await c.submit("boom", "aw", max_attempts=1)
            self.assertEqual((await c.wait(ids[-1], timeout_ms=20000)).result, 1000)
            wb = await c.wait(boom, timeout_ms=5000)
            self.assertEqual((wb.state, wb.error), ("dead", "RuntimeError: async boom"))
            for _ in range(200):
                if (await c.job(long_id)).state == "reserved":
                    break
                await asyncio.sleep(0.02)
            self.assertEqual(await c.cancel(long_id), 1)
            await asyncio.wait_for(cancelled.wait(), 5)
            for _ in range(250):
                if w.stats.acked >= 1000 and w.stats.cancelled == 1:
                    break
                await asyncio.sleep(0.02)
        finally:
            w.stop()
            await asyncio.wait_for(runner, 10)
            await c.close()
        self.assertEqual(sorted(seen), list(range(1000)))
        self.assertEqual((w.stats.acked, w.stats.nacked, w.stats.cancelled), (1000, 1, 1))


if __name__ == "__main__":
    sys.exit(run(__name__))
