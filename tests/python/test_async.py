#!/usr/bin/env python3
"""The asyncio Python client against a real chanqd: the ops, typed errors,
pipelining 10,000 submits (submit_many and gather), backpressure, events
to a coroutine callback, token auth and TLS."""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pylib import Server, run  # noqa: E402

import chanq  # noqa: E402
from chanq import AsyncClient  # noqa: E402


class Async(unittest.IsolatedAsyncioTestCase):
    srv: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.srv = Server("--max-frame", "65536")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.srv.stop()
        cls.srv.cleanup()

    async def asyncSetUp(self) -> None:
        # IsolatedAsyncioTestCase turns on asyncio's debug mode, which makes
        # every task ten times slower; the client is tested as users run it.
        asyncio.get_running_loop().set_debug(False)
        self.c = await AsyncClient.connect(self.srv.address, client_name="py-async")

    async def asyncTearDown(self) -> None:
        await self.c.close()

    def q(self) -> str:
        return "a-" + self.id().rsplit(".", 1)[-1]

    async def test_every_op(self) -> None:
        c, q = self.c, self.q()
        self.assertEqual(c.hello_answer["protocol"], 1)
        await c.ping()
        st = await c.declare(q, capacity=50, ttr_ms=20000, max_attempts=4)
        self.assertEqual(st["capacity"], 50)
        jid = await c.submit({"k": 1}, q, ttr_ms=10000, max_attempts=2, deadline_ms=60000, wait_ms=100)
        self.assertEqual(jid.queue, q)
        jobs = await c.fetch([q], count=5, timeout_ms=1000, strict=True)
        self.assertEqual(jobs[0].payload, {"k": 1})
        await c.touch(jid, ttr_ms=15000)
        self.assertEqual(await c.nack(jid, "again", delay_ms=0), "queued")
        j = (await c.fetch(q, timeout_ms=1000))[0]
        await c.release(j.id)
        j = (await c.fetch(q, timeout_ms=1000))[0]
        self.assertEqual(j.attempt, 2)
        await c.ack(j.id, [1, 2])
        w = await c.wait(jid, timeout_ms=1000)
        self.assertEqual((w.state, w.result), ("done", [1, 2]))
        self.assertEqual((await c.job(jid)).state, "done")
        d = await c.submit(1, q, delay_ms=60000)
        self.assertEqual(await c.cancel(d), 1)
        dead = await c.submit(2, q, parent=jid)
        j = (await c.fetch(q, timeout_ms=1000))[0]
        self.assertEqual(await c.nack(j.id, "no", dead=True), "dead")
        self.assertEqual(await c.kick(q), 1)
        self.assertEqual((await c.job(dead)).state, "queued")
        await c.pause(q)
        self.assertEqual(await c.fetch(q, timeout_ms=50), [])
        await c.resume(q)
        self.assertEqual((await c.stats(q))["depth"], 1)
        self.assertIn("uptime_s", await c.stats())
        self.assertIn(q, await c.queues(page_size=1))
        await c.close_queue(q)
        with self.assertRaises(chanq.Closed):
            await c.submit(3, q)
        s = await c.submit(1, queues=[q + "-x", q + "-y"])
        self.assertIn(s.queue, (q + "-x", q + "-y"))

    async def test_key_priority_and_run_at(self) -> None:
        q = self.q()
        first = await self.c.submit(1, q, key="k-1")
        again = await self.c.submit(2, q, key="k-1")
        self.assertEqual((again, first.duplicate, again.duplicate), (first, False, True))
        self.assertTrue((await self.c.submit_many([3], q, key="k-1"))[0].duplicate)
        high = await self.c.submit(4, q, priority=9)
        at = int(time.time() * 1000) + 1000
        later = await self.c.submit(5, q, run_at=at, priority=9)
        got = [j.id for j in await self.c.fetch(q, count=3, timeout_ms=0)]
        if later not in got:  # (on a slow host its time may have come already)
            got += [j.id for j in await self.c.fetch(q, timeout_ms=10000)]
        self.assertGreaterEqual(time.time() * 1000, at, "fetched before its run_at")
        got.remove(later)
        self.assertEqual(got, [high, first])
        with self.assertRaises(chanq.BadRequest):
            await self.c.submit(6, q, priority=10)

    async def test_typed_errors(self) -> None:
        c = self.c
        queued = await c.submit(1, "a-e1")
        cases = [
            (chanq.BadRequest, lambda: c.submit(1, "bad name")),
            (chanq.UnknownOp, lambda: c.request({"op": "nope"})),
            (chanq.NotFound, lambda: c.job("999")),
            (chanq.NotReserved, lambda: c.ack(queued)),
            (chanq.FrameTooLarge, lambda: c.submit("x" * 70000, "e")),
            (chanq.TooLarge, lambda: c.submit("x" * 40000, "e")),
        ]
        for cls, make in cases:
            with self.assertRaises(cls) as cm:
                await make()
            self.assertTrue(cm.exception.message)
        await c.declare("a-full", capacity=1)
        await c.submit(1, "a-full")
        with self.assertRaises(chanq.QueueFull):
            await c.submit(2, "a-full", wait_ms=0)
        with self.assertRaises(chanq.Conflict):
            await c.declare("a-full", capacity=3)
        jid = await c.submit(1, "a-e2")
        with self.assertRaises(chanq.Timeout):
            await c.wait(jid, timeout_ms=0)
        await c.ping()

    async def test_pipelining_10000_submits(self) -> None:
        q = self.q()
        await self.c.declare(q, capacity=100000)
        t = time.monotonic()
        ids = await self.c.submit_many(range(10000), q)
        self.assertEqual(len(set(ids)), 10000)
        ids2 = await asyncio.gather(*(self.c.submit(i, q) for i in range(10000)))
        self.assertEqual(len(set(ids2)), 10000)
        self.assertEqual((await self.c.stats(q))["depth"], 20000)
        print("  20000 async pipelined submits in %.2fs" % (time.monotonic() - t))

    async def test_backpressure(self) -> None:
        q = self.q()
        await self.c.declare(q, capacity=1)
        await self.c.submit(0, q)
        other = await AsyncClient.connect(self.srv.address)
        try:
            pending = asyncio.ensure_future(other.submit(1, q, wait_ms=10000))
            await asyncio.sleep(0.3)
            self.assertFalse(pending.done())
            self.assertEqual((await self.c.stats(q))["waiting_submitters"], 1)
            j = (await self.c.fetch(q, timeout_ms=1000))[0]
            await self.c.ack(j.id)
            jid = await asyncio.wait_for(pending, 5)
            self.assertEqual((await self.c.job(jid)).state, "queued")
        finally:
            await other.close()

    async def test_events(self) -> None:
        q = self.q()
        got: asyncio.Queue[chanq.Event] = asyncio.Queue()

        async def on_event(ev: chanq.Event) -> None:
            await got.put(ev)
        w = await AsyncClient.connect(self.srv.address, on_event=on_event)
        try:
            a = await self.c.submit(1, q)
            b = await self.c.submit(2, q, ttr_ms=150)
            await w.fetch(q, count=2, timeout_ms=1000)
            await self.c.cancel(a)
            evs = [await asyncio.wait_for(got.get(), 5), await asyncio.wait_for(got.get(), 5)]
            kinds = {(e.kind, e.id) for e in evs}
            self.assertEqual(kinds, {("cancel", a), ("revoked", b)})
        finally:
            await w.close()
        # without a callback: the events queue
        w = await AsyncClient.connect(self.srv.address)
        q += "-2"
        try:
            a = await self.c.submit(1, q)
            await w.fetch(q, timeout_ms=1000)
            await self.c.cancel(a)
            ev = await w.next_event(5)
            self.assertEqual((ev.kind, ev.id), ("cancel", a))
        finally:
            await w.close()

    async def test_consume(self) -> None:
        q = self.q()
        got: asyncio.Queue[chanq.Event] = asyncio.Queue()
        w = await AsyncClient.connect(self.srv.address, on_event=got.put_nowait)
        try:
            await w.consume(q, prefetch=2)
            ids = await self.c.submit_many([1, 2, 3], q)
            jobs: list[chanq.Job] = []
            while len(jobs) < 2:
                jobs.extend((await asyncio.wait_for(got.get(), 5)).jobs)
            self.assertEqual([j.id for j in jobs], ids[:2])
            self.assertEqual((await w.ack_many([j.id for j in jobs])).done, 2)
            third = (await asyncio.wait_for(got.get(), 5)).jobs
            self.assertEqual([j.id for j in third], ids[2:])
            await w.cancel_consume()
            await w.ack(ids[2])
        finally:
            await w.close()

    async def test_token(self) -> None:
        d = tempfile.mkdtemp(prefix="chanq-py-token-")
        with open(os.path.join(d, "tokens"), "w") as f:
            f.write("tok\n")
        srv = Server("--token-file", os.path.join(d, "tokens"))
        try:
            c = await AsyncClient.connect(srv.address)
            with self.assertRaises(chanq.Unauthorized):
                await c.ping()
            await c.close()
            with self.assertRaises(chanq.Unauthorized):
                await AsyncClient.connect(srv.address, token="bad")
            c = await AsyncClient.connect(srv.address, token="tok")
            await c.submit(1, "q")
            await c.close()
        finally:
            srv.stop()
            srv.cleanup()
            shutil.rmtree(d, ignore_errors=True)

    async def test_tls(self) -> None:
        if not shutil.which("openssl"):
            self.skipTest("no openssl command")
        import test_tls
        try:
            d = test_tls.TLSDaemon()
        except AssertionError as e:
            self.skipTest("chanqd without TLS: %s" % str(e)[:80])
        try:
            c = await AsyncClient.connect("127.0.0.1:%d" % d.tport, ca_file=test_tls.path("ca.crt"))
            jid = await c.submit("secret", "tq")
            j = (await c.fetch("tq", timeout_ms=1000))[0]
            await c.ack(j.id, "ok")
            self.assertEqual((await c.wait(jid)).result, "ok")
            ids = await c.submit_many(range(500), "tq")
            self.assertEqual(len(ids), 500)
            await c.close()
            with self.assertRaises(chanq.ConnectionLost):
                await AsyncClient.connect("127.0.0.1:%d" % d.tport, ca_file=test_tls.path("other.crt"))
        finally:
            d.stop()
            d.cleanup()
            if test_tls.CERTS:
                shutil.rmtree(test_tls.CERTS, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run(__name__))
