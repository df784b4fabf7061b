#!/usr/bin/env python3
"""A network partition, black-box: three chanqd nodes whose Raft traffic all
goes through TCP proxies this test controls (each node's --peers address
is a proxy port, its --raft-listen the real one). The serving leader is cut
off from both others:

- it stops being the leader within the bound below (checked through
  `hello` on fresh connections, or the node going away);
- no submit sent to it after that is answered `ok` (a client keeps one
  submit in flight on it all along: each answer is `ok` before the cut,
  then an error, `not_leader`, or the connection closed);
- the two others elect a leader that serves;
- once the partition heals, the old leader is a follower again and all
  three report the same state digest, which holds every job ever answered
  `ok`, on either side.

chanqd today ends the process when it loses leadership (docs/cluster.md);
a node that steps down in place is accepted as well: the test restarts
the old leader only if it exited (as systemd's Restart=on-failure would).

The step-down bound: one election timeout, by the node's own clock (the
time of its "stepping down" log line, against the wall-clock time of the
cut). libraft 0.15's leader checks a majority's contact only once per
election timeout (a cut just after a check was noticed up to two timeouts
later); chanqd checks it twenty times per timeout over a window of 0.7 of
one (daemon/cluster/contact.h). Seen from outside, through `hello` on
fresh connections polled every 50 ms, OBSERVE_S more is allowed.

The proxies know which node a connection comes from by libraft's
handshake: every connection a node makes starts with a 64-bit protocol
version and its 64-bit server id, little-endian. A node sends its messages
only on connections it made, so a proxy per destination and the sender's
id name every direction of every link."""
import asyncio
import datetime
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops"))
from opslib import Skip, dial, free_port, main, request  # noqa: E402
from test_cluster_smoke import WAIT, Node, cluster_built, digests, serving, until  # noqa: E402

ELECTION_MS = 500
OBSERVE_S = 0.5
STEP_DOWN_BOUND_S = ELECTION_MS / 1000 + OBSERVE_S
HANDSHAKE = 16  # protocol version, sender id


class Proxies:
    """One TCP proxy per node, on its own asyncio loop in a thread. cut()
    and heal() are called from the test's thread; a cut link's open
    connections are closed and new ones closed right after their
    handshake, in both directions."""

    def __init__(self, targets):
        self.targets = targets  # node id -> (proxy port, real Raft port)
        self.blocked = set()    # (from id, to id)
        self.open = {}          # (from, to) -> set of writers
        self.bytes = {}         # (from, to) -> bytes forwarded
        self.loop = asyncio.new_event_loop()
        self.servers = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        for dst, (port, _) in targets.items():
            self.servers.append(self.call(asyncio.start_server(
                lambda r, w, dst=dst: self.serve(dst, r, w), "127.0.0.1", port)))

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    async def pipe(self, link, reader, writer):
        try:
            while link not in self.blocked:
                data = await reader.read(65536)
                if not data or link in self.blocked:
                    break
                self.bytes[link] = self.bytes.get(link, 0) + len(data)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def serve(self, dst, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readexactly(HANDSHAKE), WAIT)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            writer.close()
            return
        link = (int.from_bytes(head[8:16], "little"), dst)
        if link in self.blocked:
            writer.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.targets[dst][1])
        except OSError:
            writer.close()
            return
        up_w.write(head)
        conns = self.open.setdefault(link, set())
        conns.update((writer, up_w))
        try:
            await asyncio.gather(self.pipe(link, reader, up_w), self.pipe(link, up_r, writer))
        finally:
            conns.discard(writer)
            conns.discard(up_w)

    async def _set(self, links, cut):
        for link in links:
            if cut:
                self.blocked.add(link)
                for w in list(self.open.get(link, ())):
                    w.close()
            else:
                self.blocked.discard(link)

    def cut(self, node, others):
        links = [(node, o) for o in others] + [(o, node) for o in others]
        self.call(self._set(links, True))

    def heal(self):
        self.call(self._set(list(self.blocked), False))

    def close(self):
        async def stop():
            for s in self.servers:
                s.close()
            for conns in self.open.values():
                for w in list(conns):
                    w.close()
        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)


class Submitter(threading.Thread):
    """Keeps one submit in flight on a node, reconnecting when the
    connection goes, and records (sent, answered, answer) for each; the
    answer is the reply, or "closed" / "refused"."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node, self.log, self.stop = node, [], threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            try:
                s = dial(("127.0.0.1", self.node.port))
            except OSError:
                self.log.append((time.monotonic(), time.monotonic(), "refused"))
                time.sleep(0.05)
                continue
            with s:
                s.settimeout(WAIT)
                while not self.stop.is_set():
                    n += 1
                    sent = time.monotonic()
                    try:
                        r = request(s, {"op": "submit", "queue": "q", "payload": {"w": n}})
                    except (OSError, AssertionError):
                        self.log.append((sent, time.monotonic(), "closed"))
                        break
                    self.log.append((sent, time.monotonic(), r))
                    if not r.get("ok"):
                        time.sleep(0.02)


def role(node):
    """The node's role by `hello` on a fresh connection, or None when it
    cannot be asked (gone, or closing connections)."""
    try:
        with dial(("127.0.0.1", node.port)) as s:
            s.settimeout(2)
            r = request(s, {"op": "hello"})
            return r.get("role") if r.get("ok") else None
    except (OSError, AssertionError):
        return None


def try_submit(node, payload):
    """A submit on a fresh connection: the answer, or None when the node
    could not be reached or closed the connection first."""
    try:
        with dial(("127.0.0.1", node.port)) as s:
            return request(s, {"op": "submit", "queue": "q", "payload": payload})
    except (OSError, AssertionError):
        return None


def submit_ok(node, payload):
    r = node.ask({"op": "submit", "queue": "q", "payload": payload})
    assert r.get("ok"), r
    return r["id"]


def logged_step_down(node):
    """The wall-clock time of the node's "stepping down" log line (the
    contact check's), from the line's UTC timestamp."""
    for line in node.log().splitlines():
        if "heard from no majority" in line:
            stamp = line.split()[0].rstrip("Z")
            t = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc)
            return t.timestamp()
    raise AssertionError("no step-down line in node %d's log" % node.nid)


def test_a_leader_cut_off_steps_down_and_rejoins():
    if not cluster_built():
        raise Skip("chanqd built without the cluster code")
    top = tempfile.mkdtemp(prefix="chanq-partition-")
    ids = (1, 2, 3)
    proxy = {i: free_port() for i in ids}
    real = {i: free_port() for i in ids}
    client = {i: free_port() for i in ids}
    peers = ",".join("%d@127.0.0.1:%d/127.0.0.1:%d" % (i, proxy[i], client[i]) for i in ids)
    proxies = Proxies({i: (proxy[i], real[i]) for i in ids})
    nodes = []
    for i in ids:
        n = Node(top, i, peers, client[i])
        n.args[n.args.index("--raft-election-ms") + 1] = str(ELECTION_MS)
        n.args += ["--raft-listen", "127.0.0.1:%d" % real[i]]
        nodes.append(n)
    submitter = None
    try:
        for n in nodes:
            n.start()
        old = until("a serving leader", lambda: serving(nodes))
        rest = [n for n in nodes if n is not old]
        acked = [submit_ok(old, {"before": k}) for k in range(3)]
        until("the submits on every node",
              lambda: len(set(digests(nodes))) == 1 and digests(nodes)[0])
        for n in rest:  # followers talk to the leader only
            for link in ((old.nid, n.nid), (n.nid, old.nid)):
                assert proxies.bytes.get(link, 0) > 0, ("no Raft traffic through", link,
                                                        proxies.bytes)

        submitter = Submitter(old)
        submitter.start()
        until("the submitter's first ok",
              lambda: any(isinstance(x[2], dict) and x[2].get("ok") for x in submitter.log))
        t_cut, t_cut_wall = time.monotonic(), time.time()
        proxies.cut(old.nid, [n.nid for n in rest])
        until("the old leader no longer leads",
              lambda: role(old) != "leader", timeout=STEP_DOWN_BOUND_S + WAIT)
        t_down = time.monotonic()
        step_down_s = t_down - t_cut
        assert step_down_s <= STEP_DOWN_BOUND_S, \
            "stepped down after %.2fs, bound %.2fs" % (step_down_s, STEP_DOWN_BOUND_S)
        own_s = logged_step_down(old) - t_cut_wall
        assert own_s <= ELECTION_MS / 1000, \
            "the node stepped down %.3f s after the cut, election timeout %d ms" % (own_s,
                                                                                 ELECTION_MS)

        # The others elect a leader and serve, with the old one still cut off.
        new = until("a serving leader among the others", lambda: serving(rest))
        t_new = time.monotonic()
        acked.append(submit_ok(new, {"during": 1}))
        # Fresh submits to the old leader: never ok.
        for k in range(5):
            r = try_submit(old, {"cut": k})
            assert r is None or r["error"]["code"] == "not_leader", r
            time.sleep(0.1)
        submitter.stop.set()
        submitter.join(WAIT)
        log = list(submitter.log)
        late_ok = [x for x in log if x[0] > t_down and isinstance(x[2], dict) and x[2].get("ok")]
        assert not late_ok, ("ok from the old leader after it stepped down", late_ok)
        after = [x for x in log if x[0] > t_down]
        assert after, "the submitter asked the old leader after it stepped down"
        acked += [x[2]["id"] for x in log if isinstance(x[2], dict) and x[2].get("ok")]
        answers = sorted({x[2] if isinstance(x[2], str) else x[2]["error"]["code"]
                          for x in after})

        proxies.heal()
        exited = old.proc.poll() is not None
        if exited:
            assert old.proc.returncode == 1, old.proc.returncode
            old.start()
        until("the old leader rejoins as a follower", lambda: role(old) == "follower")
        until("three equal digests",
              lambda: len(set(digests(nodes))) == 1 and None not in digests(nodes))
        leader = until("a serving leader after the heal", lambda: serving(nodes))
        for jid in acked:
            r = leader.ask({"op": "job", "id": jid})
            assert r.get("ok"), ("a job answered ok is missing", jid, r)
        print("partition: the cut-off leader stepped down %.3f s after the cut by its log "
              "(election timeout %d ms), seen from outside after %.2f s (bound %.2f s); "
              "a new leader served %.2f s after the cut; the old "
              "leader %s; its answers after that: %s; %d acknowledged jobs all kept"
              % (own_s, ELECTION_MS, step_down_s, STEP_DOWN_BOUND_S, t_new - t_cut,
                 "exited and was restarted" if exited else "stepped down in place",
                 ", ".join(answers), len(acked)))
    except BaseException:
        for n in nodes:
            sys.stdout.write("--- node %d log:\n%s" % (n.nid, n.log()[-4000:]))
        raise
    finally:
        if submitter:
            submitter.stop.set()
        for n in nodes:
            n.kill()
        proxies.close()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main([test_a_leader_cut_off_steps_down_and_rejoins]))
