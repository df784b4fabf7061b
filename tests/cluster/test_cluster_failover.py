#!/usr/bin/env python3
"""Five failovers under load, black-box, through the multi-server Python
client (chanq.ClusterClient, chanq.Worker with several servers).

Three chanqd nodes on free loopback ports with --raft-election-ms 500.
Producers submit and workers fetch and ack, each through its own
ClusterClient given the three addresses; a holder reserves jobs and never
acks them; a chanq.Worker consumes. The leader is killed with SIGKILL five
times, about 3 s apart, and restarted once another node serves. Passes when:

- each failover (kill to the first submit answered ok by the new leader)
  took at most 2.5 s, their median at most 1.5 s;
- no job whose submit was answered ok is missing at the end (each was
  acked, every ack answered ok or the job's state "done");
- no job acked with an ok answer was delivered again (no delivery with a
  higher attempt than the acked one);
- every job reserved and never acked (the holder's) came back: delivered
  again with a higher attempt, and acked;
- each restarted node catches up within 5 s of its restart (the load
  paused from the restart on, the three state digests equal), and so do
  all three once the load stops;
- the consuming Worker worked again after the last failover.

In a sanitizer build the time bounds are three times as long.

It prints the failover times. Every wait is bounded."""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ops"))
from opslib import (CHANQD, TOP_BUILDDIR, TOP_SRCDIR, Skip, dial, free_port, main,  # noqa: E402
                    request)

sys.path.insert(0, os.path.join(TOP_SRCDIR, "clients", "python", "src"))
import chanq  # noqa: E402

def time_scale():
    """3 for a sanitizer build (chanqd runs several times slower there,
    as tests/clients/go-client.sh and completion.sh allow), else 1: the
    bounds are the plain build's."""
    try:
        with open(os.path.join(TOP_BUILDDIR, "chanq_config.h")) as f:
            text = f.read()
    except OSError:
        return 1
    return 3 if ("define CHANQ_ASAN 1" in text or "define CHANQ_TSAN 1" in text) else 1


SCALE = time_scale()
KILLS = 5
KILL_EVERY_S = 3.0
FAILOVER_MAX_S = 2.5 * SCALE
FAILOVER_MEDIAN_MAX_S = 1.5 * SCALE
CATCH_UP_S = 5.0 * SCALE
WAIT = 30.0
QUEUE = "fo"
PRODUCERS = 3
WORKERS = 2


def cluster_built():
    p = subprocess.run([CHANQD, "--check-config", "--node-id", "1", "--peers", "1@127.0.0.1:1"],
                       capture_output=True, text=True, timeout=10)
    return p.returncode == 0


class Node:
    def __init__(self, top, nid, peers, port):
        self.nid, self.port = nid, port
        self.address = "127.0.0.1:%d" % port
        self.dir = os.path.join(top, "n%d" % nid)
        self.log_path = os.path.join(top, "n%d.log" % nid)
        self.args = [CHANQD, "--listen", self.address, "--data-dir", self.dir,
                     "--node-id", str(nid), "--peers", peers, "--raft-election-ms", "500",
                     "--threads", "2", "--keep-results", "1000000"]
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def ask(self, obj):
        try:
            with dial(("127.0.0.1", self.port)) as s:
                s.settimeout(2)
                return request(s, obj)
        except OSError:
            return None

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()


def until(what, fn, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("%s: not within %gs" % (what, timeout))


def digests(nodes):
    out = []
    for n in nodes:
        r = n.ask({"op": "stats", "digest": True})
        out.append(r["server"]["state_digest"] if r and r.get("ok") else None)
    return out


def agree(nodes):
    d = digests(nodes)
    return None not in d and len(set(d)) == 1


def leader_of(nodes):
    for n in nodes:
        r = n.ask({"op": "hello"})
        if r and r.get("ok") and r.get("role") == "leader":
            return n
    return None


class Ledger:
    """What the clients were answered, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.submitted = {}        # id -> payload key, submit answered ok
        self.ok_times = []         # (monotonic time, server) of each submit ok
        self.deliveries = {}       # id -> [attempt, ...]
        self.acked = {}            # id -> attempt, ack answered ok
        self.ack_unknown = set()   # ack sent, its answer lost with the leader
        self.held = set()          # reserved by the holder, never acked
        self.worker_runs = []      # monotonic times the chanq.Worker ran a job
        self.worker_ids = set()    # the jobs it ran (its acks are not seen one by one)
        self.problems = []

    def deliver(self, jobs):
        with self.lock:
            for j in jobs:
                self.deliveries.setdefault(j.id, []).append(j.attempt)
                a = self.acked.get(j.id)
                if a is not None and j.attempt > a:
                    self.problems.append("job %s acked (attempt %d) delivered again (attempt %d)"
                                         % (j.id, a, j.attempt))


class Load:
    """Producers, fetching workers, a holder and a consuming Worker."""

    def __init__(self, servers, ledger):
        self.servers, self.ledger = servers, ledger
        self.stop = threading.Event()
        self.running = threading.Event()  # cleared: pause between requests
        self.running.set()
        self.busy = 0  # threads inside a request
        self.busy_lock = threading.Lock()
        self.threads = []
        self.clients = []
        self.resubmitted = 0
        self.worker = chanq.Worker(self.work, QUEUE, servers, concurrency=2,
                                   read_timeout=5.0, client_name="failover-worker")

    def client(self):
        c = chanq.ClusterClient(self.servers, failover_timeout=WAIT, read_timeout=5.0,
                                client_name="failover-test")
        self.clients.append(c)
        return c

    def spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        self.threads.append(t)
        t.start()

    def start(self):
        for p in range(PRODUCERS):
            self.spawn(self.produce, p)
        for _ in range(WORKERS):
            self.spawn(self.fetch_and_ack)
        self.spawn(self.hold)
        self.worker.start()

    def gate(self):
        """Waits while paused; False once stopping."""
        while not self.running.wait(0.05):
            if self.stop.is_set():
                return False
        with self.busy_lock:
            self.busy += 1
        return not self.stop.is_set()

    def done(self):
        with self.busy_lock:
            self.busy -= 1

    def pause(self):
        self.running.clear()
        until("the load to pause", lambda: self.busy == 0, WAIT)

    def resume(self):
        self.running.set()

    def produce(self, p):
        c = self.client()
        n = 0
        while self.gate():
            try:
                n += 1
                jid = c.submit({"p": p, "n": n}, QUEUE)
                with self.ledger.lock:
                    self.ledger.submitted[jid] = (p, n)
                    self.ledger.ok_times.append((time.monotonic(), c.client.connected_at))
            except chanq.ChanqError as e:
                with self.ledger.lock:
                    self.ledger.problems.append("submit failed: %s" % e)
            finally:
                self.done()
            time.sleep(0.004)
        self.resubmitted += c.resubmitted
        c.close()

    def fetch_and_ack(self):
        c = self.client()
        while self.gate():
            try:
                jobs = c.fetch(QUEUE, count=20, timeout_ms=200)
                self.ledger.deliver(jobs)
                if jobs:
                    self.ack(c, jobs)
            except chanq.ChanqError:
                pass  # a lost fetch: what it reserved comes back
            finally:
                self.done()
        c.close()

    def ack(self, c, jobs):
        ids = [j.id for j in jobs]
        attempt = {j.id: j.attempt for j in jobs}
        try:
            many = c.ack_many(ids)
        except chanq.ConnectionLost:
            with self.ledger.lock:
                self.ledger.ack_unknown.update(ids)
            return
        except chanq.ChanqError:
            return  # refused as a whole: none acked, they come back
        failed = {i for i, _ in many.errors}
        with self.ledger.lock:
            for i in ids:
                if i not in failed:
                    self.ledger.acked[i] = attempt[i]

    def hold(self):
        """Reserves a few jobs on each leader and never acks them."""
        c = self.client()
        seen_gen = -1
        while self.gate():
            try:
                gen = c.failovers
                if gen != seen_gen:
                    jobs = c.fetch(QUEUE, count=3, timeout_ms=500)
                    self.ledger.deliver(jobs)
                    with self.ledger.lock:
                        self.ledger.held.update(j.id for j in jobs)
                    if jobs:
                        seen_gen = gen
                else:
                    c.ping()
            except chanq.ChanqError:
                pass
            finally:
                self.done()
            time.sleep(0.1)
        c.close()  # what it still holds goes back to the queue

    def work(self, ctx):
        with self.ledger.lock:
            self.ledger.deliveries.setdefault(ctx.id, []).append(ctx.attempt)
            self.ledger.ack_unknown.add(ctx.id)  # the Worker does not say per job
            self.ledger.worker_ids.add(ctx.id)
            self.ledger.worker_runs.append(time.monotonic())
        return None

    def finish(self):
        self.stop.set()
        self.running.set()
        for t in self.threads:
            t.join(WAIT)
            assert not t.is_alive(), "a load thread did not end"


def drain(servers, ledger, load):
    """Fetches and acks what is left until the queue is empty."""
    c = chanq.ClusterClient(servers, failover_timeout=WAIT, read_timeout=5.0)
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            jobs = c.fetch(QUEUE, count=100, timeout_ms=300)
            ledger.deliver(jobs)
            if jobs:
                load.ack(c, jobs)
                continue
            st = c.stats(QUEUE)
            if st["depth"] == 0 and st["reserved"] == 0:
                return
        raise AssertionError("the queue did not drain")
    finally:
        c.close()


def check(ledger, servers):
    probs = list(ledger.problems)
    submit_failures = [p for p in probs if p.startswith("submit failed")]
    assert not submit_failures, submit_failures[:5]
    assert not probs, probs[:10]
    assert ledger.submitted, "nothing was submitted"
    unsure = [i for i in ledger.submitted if i not in ledger.acked]
    c = chanq.ClusterClient(servers, failover_timeout=WAIT, read_timeout=5.0)
    try:
        missing = []
        for i in unsure:
            if i not in ledger.ack_unknown or not ledger.deliveries.get(i):
                missing.append((i, "never acked", ledger.deliveries.get(i)))
                continue
            try:
                state = c.job(i).state
            except chanq.NotFound:
                state = "not_found"
            if state != "done":
                missing.append((i, state, ledger.deliveries.get(i)))
    finally:
        c.close()
    assert not missing, "%d submitted jobs missing, e.g. %s" % (len(missing), missing[:5])
    # A held job whose submit was never answered may be gone with its
    # leader: a job is delivered before its submit is on a majority's disk,
    # and its producer, without an answer, submitted it again.
    c = chanq.ClusterClient(servers, failover_timeout=WAIT, read_timeout=5.0)
    try:
        for i in ledger.held & set(ledger.submitted):
            attempts = ledger.deliveries.get(i, [])
            if len(attempts) < 2:
                info = c.job(i)
                raise AssertionError("held job %s never came back: deliveries %s, on the "
                                     "server %s attempt %s%s" % (i, attempts, info.state,
                                                                 info.attempt,
                                                                 " (acked)" if i in ledger.acked
                                                                 else ""))
    finally:
        c.close()
    return len(ledger.held - set(ledger.submitted))


def test_five_failovers_lose_nothing():
    if not cluster_built():
        raise Skip("chanqd built without the cluster code")
    top = tempfile.mkdtemp(prefix="chanq-failover-")
    raft = [free_port() for _ in range(3)]
    client = [free_port() for _ in range(3)]
    peers = ",".join("%d@127.0.0.1:%d/127.0.0.1:%d" % (i + 1, raft[i], client[i]) for i in range(3))
    nodes = [Node(top, i + 1, peers, client[i]) for i in range(3)]
    servers = ",".join(n.address for n in nodes)
    ledger = Ledger()
    load = None
    try:
        for n in nodes:
            n.start()
        setup = chanq.ClusterClient(servers, failover_timeout=WAIT)
        # Attempts enough that no job dies of unlucky deliveries.
        setup.declare(QUEUE, capacity=1000000, ttr_ms=120000, max_attempts=100)
        setup.close()
        load = Load(servers, ledger)
        load.start()
        time.sleep(KILL_EVERY_S)
        failovers, catch_ups, elections, startups = [], [], [], []
        for k in range(KILLS):
            victim = until("a leader", lambda: leader_of(nodes))
            cycle = time.monotonic()
            victim.kill()
            t_kill = time.monotonic()

            def first_ok():
                # The first ok on a connection made after the kill: not an
                # answer of the old leader read late.
                with ledger.lock:
                    ts = [t for t, since in ledger.ok_times[-5000:] if since > t_kill]
                return min(ts) if ts else None
            rest = [n for n in nodes if n is not victim]
            t_lead = until("a new leader", lambda: leader_of(rest) and time.monotonic(), WAIT)
            t_ok = until("a submit answered by a new leader", first_ok, WAIT)
            elections.append(t_lead - t_kill)
            failovers.append(t_ok - t_kill)
            # Its data dir as it was: it rejoins and catches up. The load
            # pauses meanwhile, so that the digests can be compared.
            load.pause()
            victim.start()
            t_restart = time.monotonic()
            until("the restarted node %d to answer" % victim.nid,
                  lambda: victim.ask({"op": "ping"}), CATCH_UP_S + 5)
            startups.append(time.monotonic() - t_restart)
            until("the restarted node %d to catch up" % victim.nid, lambda: agree(nodes),
                  CATCH_UP_S + 5)
            catch_ups.append(time.monotonic() - t_restart)
            load.resume()
            time.sleep(max(0.0, KILL_EVERY_S - (time.monotonic() - cycle)))
        last_failover = t_ok
        time.sleep(1.0)
        load.finish()
        drain(servers, ledger, load)
        load.worker.stop()
        assert load.worker.join(WAIT), "the Worker did not stop"
        until("three equal digests once settled", lambda: agree(nodes), CATCH_UP_S)
        print("failover: %s s (median %.2f s); a node said leader in hello after %s s; "
              "restarted node answered after %s s, caught up after %s s; "
              "%d jobs submitted ok, %d acked ok, %d acks unanswered, %d resubmits, "
              "%d jobs held and never acked by the holder; the Worker ran %d jobs"
              % (" ".join("%.2f" % f for f in failovers), statistics.median(failovers),
                 " ".join("%.2f" % e for e in elections),
                 " ".join("%.2f" % u for u in startups),
                 " ".join("%.2f" % c for c in catch_ups), len(ledger.submitted),
                 len(ledger.acked), len(ledger.ack_unknown - ledger.worker_ids), load.resubmitted,
                 len(ledger.held), len(ledger.worker_runs)))
        assert all(f <= FAILOVER_MAX_S for f in failovers), failovers
        assert statistics.median(failovers) <= FAILOVER_MEDIAN_MAX_S, failovers
        assert all(c <= CATCH_UP_S for c in catch_ups), catch_ups
        assert any(t > last_failover for t in ledger.worker_runs), \
            "the Worker never worked after the last failover"
        unanswered_held = check(ledger, servers)
        print("%d held jobs had a submit never answered ok (not required back)"
              % unanswered_held)
    except BaseException:
        for n in nodes:
            sys.stdout.write("--- node %d log (tail):\n%s" % (n.nid, n.log()[-3000:]))
        raise
    finally:
        if load is not None:
            load.stop.set()
            load.running.set()
            load.worker.stop()
        for n in nodes:
            n.kill()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main([test_five_failovers_lose_nothing]))
