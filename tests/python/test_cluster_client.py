#!/usr/bin/env python3
"""The Python client with several servers (chanq.ClusterClient,
connect_leader, a Worker given a list) against fake cluster nodes on
loopback: hello's role and leader, not_leader followed, a leader dying
with a submit unanswered (made again on the next) or an ack unanswered
(not made again), the backoff while no node leads, and a Worker that
consumes again from the new leader. tests/cluster/ runs the real thing."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
import time
import unittest
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pylib import run, until  # noqa: E402

import chanq  # noqa: E402


class FakeNode:
    """A cluster node as a client sees it. A node that does not lead
    answers not_leader; the leader may drop the connection on the next
    request of an op without answering (``drop_on``), then run ``on_drop``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.role, self.leader = "follower", None
        self.drop_on: str | None = None
        self.on_drop: Callable[[], None] | None = None
        self.seen: list[str] = []
        self.next_id = 0
        self.stopped = False
        self.conns: list[socket.socket] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def set(self, role: str, leader: "FakeNode | None") -> None:
        with self.lock:
            self.role, self.leader = role, leader.address if leader else None

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            conns, self.conns = self.conns, []
        self.sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def answer(self, req: dict[str, Any]) -> dict[str, Any] | None:
        op = req.get("op")
        with self.lock:
            if self.stopped or (self.drop_on is not None and self.drop_on == op):
                self.drop_on = None
                return None
            if op == "hello":
                return {"ok": True, "server": "chanqd", "version": "test", "protocol": 1,
                        "role": self.role, "leader": self.leader}
            if self.role != "leader":
                return {"ok": False, "error": {"code": "not_leader", "message":
                        "this node is not the leader (%s); leader: %s"
                        % (self.role, self.leader or "unknown")}}
            self.seen.append(op)
            if op == "submit":
                self.next_id += 1
                return {"ok": True, "id": "%s-%d" % (self.address, self.next_id)}
            if op == "consume":
                return {"ok": True}
            return {"ok": True}

    def conn(self, c: socket.socket) -> None:
        f = c.makefile("rb")
        try:
            for line in f:
                req = json.loads(line)
                ans = self.answer(req)
                if ans is None:
                    with self.lock:
                        hook, self.on_drop = self.on_drop, None
                    if hook:
                        hook()  # before the client sees the connection close
                    break
                if "rid" in req:
                    ans["rid"] = req["rid"]
                c.sendall((json.dumps(ans) + "\n").encode())
                if req.get("op") == "consume":
                    job = {"id": "%s-job" % self.address, "queue": "q", "payload": 1,
                           "attempt": 1, "ttr_ms": 30000}
                    c.sendall((json.dumps({"event": "jobs", "jobs": [job]}) + "\n").encode())
        except OSError:
            pass
        finally:
            c.close()


class ClusterClientTest(unittest.TestCase):
    def nodes(self, n: int) -> list[FakeNode]:
        out = [FakeNode() for _ in range(n)]
        for x in out:
            self.addCleanup(x.stop)
        return out

    def test_connect_goes_where_a_follower_points(self) -> None:
        a, b, c = self.nodes(3)
        for x in (a, b, c):
            x.set("follower", c)
        c.set("leader", c)
        client = chanq.connect_leader([a.address, b.address, c.address], timeout=5)
        self.addCleanup(client.close)
        self.assertEqual(client.hello_answer["role"], "leader")
        self.assertEqual(client.hello_answer["leader"], c.address)

    def test_parse_servers_and_the_environment(self) -> None:
        self.assertEqual(chanq.parse_servers(" a:1, ,b:2,"), ["a:1", "b:2"])
        self.assertEqual(chanq.parse_servers(("h", 1)), [("h", 1)])
        with self.assertRaises(ValueError):
            chanq.parse_servers(" , ")
        with self.assertRaises(ValueError):
            chanq.parse_servers("a:1,nocolon")
        old = dict(os.environ)
        try:
            os.environ["CHANQ_SERVER"] = "x:1"
            os.environ["CHANQ_SERVERS"] = "a:1,b:2"
            self.assertEqual(chanq.servers_from_env(), "a:1,b:2")
            del os.environ["CHANQ_SERVERS"]
            self.assertEqual(chanq.servers_from_env(), "x:1")
        finally:
            os.environ.clear()
            os.environ.update(old)

    def test_no_leader_is_a_bounded_wait(self) -> None:
        (a,) = self.nodes(1)
        a.set("candidate", None)
        t0 = time.monotonic()
        with self.assertRaises(chanq.ConnectionLost):
            chanq.connect_leader([a.address], timeout=0.5)
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_not_leader_is_followed(self) -> None:
        a, b = self.nodes(2)
        a.set("leader", a)
        b.set("follower", a)
        cl = chanq.ClusterClient([a.address, b.address], failover_timeout=5)
        self.addCleanup(cl.close)
        a.set("follower", b)
        b.set("leader", b)
        jid = cl.submit(1, "q")
        self.assertEqual(jid, b.address + "-1")
        self.assertEqual((a.seen, b.seen), ([], ["submit"]))
        self.assertEqual(cl.resubmitted, 0)
        self.assertEqual(cl.server, b.address)

    def test_a_submit_lost_with_the_leader_is_made_again(self) -> None:
        a, b = self.nodes(2)
        a.set("leader", a)
        b.set("follower", a)
        cl = chanq.ClusterClient(f"{a.address},{b.address}", failover_timeout=5)
        self.addCleanup(cl.close)

        def die() -> None:
            a.stop()
            b.set("leader", b)
        a.drop_on, a.on_drop = "submit", die
        jid = cl.submit(1, "q")
        self.assertEqual(jid, b.address + "-1")
        self.assertEqual(cl.resubmitted, 1)
        self.assertEqual(cl.failovers, 1)

    def test_submit_many_makes_the_unanswered_ones_again(self) -> None:
        a, b = self.nodes(2)
        a.set("leader", a)
        b.set("follower", a)
        cl = chanq.ClusterClient([a.address, b.address], failover_timeout=5)
        self.addCleanup(cl.close)

        def die() -> None:
            a.stop()
            b.set("leader", b)
        a.drop_on, a.on_drop = "submit", die
        ids = cl.submit_many(range(10), "q", window=4)
        self.assertEqual(len(ids), 10)
        self.assertTrue(all(i.startswith(b.address) for i in ids), ids)

    def test_an_ack_is_not_made_again(self) -> None:
        a, b = self.nodes(2)
        a.set("leader", a)
        b.set("follower", a)
        cl = chanq.ClusterClient([a.address, b.address], failover_timeout=5)
        self.addCleanup(cl.close)
        a.drop_on = "ack"
        with self.assertRaises(chanq.ConnectionLost):
            cl.ack("1")
        a.stop()
        b.set("leader", b)
        cl.ping()  # the next call finds the new leader
        self.assertEqual(b.seen, ["ping"])

    def test_a_worker_consumes_again_from_the_new_leader(self) -> None:
        a, b = self.nodes(2)
        a.set("leader", a)
        b.set("follower", a)
        ran: list[str] = []
        w = chanq.Worker(lambda ctx: ran.append(ctx.id), "q", [a.address, b.address],
                         concurrency=1)
        w.start()
        try:
            until(lambda: ran == [a.address + "-job"], 10, "the job pushed by a")
            b.set("leader", b)
            a.set("follower", b)
            a.stop()
            until(lambda: b.address + "-job" in ran, 10, "the job pushed by b")
        finally:
            w.stop()
            w.join(10)

    def test_the_async_client_follows_and_submits_again(self) -> None:
        a, b = self.nodes(2)
        a.set("leader", a)
        b.set("follower", a)

        async def go() -> tuple[str, str, int, int]:
            cl = await chanq.AsyncClusterClient.connect([b.address, a.address],
                                                        failover_timeout=5)
            try:
                first = await cl.submit(1, "q")

                def die() -> None:
                    a.stop()
                    b.set("leader", b)
                a.drop_on, a.on_drop = "submit", die
                second = await cl.submit(2, "q")
                with self.assertRaises(chanq.ConnectionLost):
                    b.drop_on = "ack"
                    await cl.ack("x")
                return first, second, cl.resubmitted, cl.failovers
            finally:
                await cl.close()
        first, second, resubmitted, failovers = asyncio.run(go())
        self.assertEqual(first, a.address + "-1")
        self.assertEqual(second, b.address + "-1")
        self.assertEqual((resubmitted, failovers), (1, 1))


if __name__ == "__main__":
    sys.exit(run(__name__))
