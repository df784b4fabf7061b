#!/usr/bin/env python3
"""Three chanqd processes as one cluster, black-box, on free loopback ports
with --raft-election-ms 500: a leader serves, a follower answers not_leader
with the leader's client address, kill -9 of the leader lets another one
serve the acknowledged jobs (a job reserved on the old leader comes back
with its attempt counted), the restarted node catches up until all three
report the same state digest, and a leader left alone steps down (its
connections close and it starts again, in the same process, as a follower). Every wait is bounded; nothing depends
on how fast the machine is."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops"))
from opslib import CHANQD, Skip, dial, free_port, main, request  # noqa: E402

WAIT = 30.0  # seconds: bound of every wait for the cluster to settle


def cluster_built():
    p = subprocess.run([CHANQD, "--check-config", "--node-id", "1", "--peers", "1@127.0.0.1:1"],
                       capture_output=True, text=True, timeout=10)
    return p.returncode == 0


class Node:
    def __init__(self, top, nid, peers, client_port):
        self.nid, self.port = nid, client_port
        self.dir = os.path.join(top, "n%d" % nid)
        self.log_path = os.path.join(top, "n%d.log" % nid)
        self.args = [CHANQD, "--listen", "127.0.0.1:%d" % client_port, "--data-dir", self.dir,
                     "--node-id", str(nid), "--peers", peers, "--raft-election-ms", "500",
                     "--threads", "2"]
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def ask(self, obj):
        with dial(("127.0.0.1", self.port)) as s:
            return request(s, obj)

    def try_ask(self, obj):
        try:
            return self.ask(obj)
        except OSError:
            return None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@contextlib.contextmanager
def cluster_run(nodes, top, tail=4000):
    """The body of a cluster test: on failure, the tail of each node's log
    is printed; in any case every node is killed and top removed."""
    try:
        yield
    except BaseException:
        for n in nodes:
            if os.path.exists(n.log_path):
                sys.stdout.write("--- node %d log (tail):\n%s" % (n.nid, n.log()[-tail:]))
        raise
    finally:
        for n in nodes:
            n.kill()
        shutil.rmtree(top, ignore_errors=True)


def until(what, fn, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("%s: not within %gs" % (what, timeout))


def serving(nodes):
    """The node that accepts a declare (the ready, promoted leader), or None."""
    for n in nodes:
        r = n.try_ask({"op": "declare", "queue": "q"})
        if r and r.get("ok"):
            return n
    return None


def digests(nodes):
    out = []
    for n in nodes:
        r = n.try_ask({"op": "stats", "digest": True})
        out.append(r["server"]["state_digest"] if r and r.get("ok") else None)
    return out


def test_three_nodes_fail_over_and_agree():
    if not cluster_built():
        raise Skip("chanqd built without the cluster code")
    top = tempfile.mkdtemp(prefix="chanq-cluster-")
    raft = [free_port() for _ in range(3)]
    client = [free_port() for _ in range(3)]
    peers = ",".join("%d@127.0.0.1:%d/127.0.0.1:%d" % (i + 1, raft[i], client[i]) for i in range(3))
    nodes = [Node(top, i + 1, peers, client[i]) for i in range(3)]
    with cluster_run(nodes, top):
        for n in nodes:
            n.start()
        leader = until("a serving leader", lambda: serving(nodes))
        t0 = time.monotonic()
        a = leader.ask({"op": "submit", "queue": "q", "payload": {"n": 1}})
        commit_ms = (time.monotonic() - t0) * 1000
        assert a.get("ok"), a
        b = leader.ask({"op": "submit", "queue": "q", "payload": {"n": 2}})
        assert b.get("ok"), b
        before = until("the submits on every node",
                       lambda: len(set(digests(nodes))) == 1 and digests(nodes)[0])
        with dial(("127.0.0.1", leader.port)) as s:
            got = request(s, {"op": "fetch", "queue": "q", "timeout_ms": 0})
            assert got.get("ok") and len(got["jobs"]) == 1, got
            reserved = got["jobs"][0]["id"]
            assert reserved == a["id"] and got["jobs"][0]["attempt"] == 1, got

            # A follower serves hello, ping and stats, and points elsewhere.
            follower = next(n for n in nodes if n is not leader)
            h = follower.ask({"op": "hello"})
            assert h.get("ok") and h["role"] == "follower", h
            assert h["leader"] == "127.0.0.1:%d" % leader.port, h
            r = follower.ask({"op": "submit", "queue": "q", "payload": 3})
            assert r.get("ok") is False and r["error"]["code"] == "not_leader", r
            assert "leader: 127.0.0.1:%d" % leader.port in r["error"]["message"], r
            assert follower.ask({"op": "ping"}).get("ok"), "ping on a follower"
            assert leader.ask({"op": "hello"})["role"] == "leader"
            # A delivery is recorded without waiting (docs/durability.md):
            # wait until every node has it, so that it must survive.
            until("the delivery on every node",
                  lambda: len(set(digests(nodes))) == 1 and digests(nodes)[0] not in (None, before))

            t0 = time.monotonic()
            leader.kill()
        rest = [n for n in nodes if n is not leader]
        new = until("a new serving leader", lambda: serving(rest))
        failover_s = time.monotonic() - t0
        got = new.ask({"op": "fetch", "queue": "q", "count": 10, "timeout_ms": 0})
        assert got.get("ok"), got
        jobs = {j["id"]: j for j in got["jobs"]}
        assert set(jobs) == {a["id"], b["id"]}, got
        assert jobs[reserved]["attempt"] == 2, jobs  # its first delivery was counted
        assert jobs[b["id"]]["attempt"] == 1, jobs

        leader.start()  # the same data dir: it rejoins and catches up
        until("three equal digests",
              lambda: len(set(digests(nodes))) == 1 and None not in digests(nodes))
        print("cluster: first commit %.1f ms; failover (kill -9 to a serving leader) %.2f s"
              % (commit_ms, failover_s))

        # A leader cut off from both others steps down: its connections
        # close and it starts again (same process) as a follower.
        with dial(("127.0.0.1", new.port)) as s:
            assert request(s, {"op": "ping"}).get("ok")
            for n in nodes:
                if n is not new:
                    n.kill()
            s.settimeout(WAIT)
            assert s.recv(1) == b"", "the connection closes"
        until("started again as a follower", lambda: "starting again as a follower" in new.log())
        assert new.proc.poll() is None, "the same process goes on"
        h = until("hello from the node started again", lambda: new.try_ask({"op": "hello"}))
        assert h.get("ok") and h["role"] != "leader", h


if __name__ == "__main__":
    sys.exit(main([test_three_nodes_fail_over_and_agree]))
