"""The model test's runner: one chanqd, the model, the connections, the
checks after every step, the short-timer windows and the restarts."""
import collections
import json
import random
import time

from driver import Conn, Daemon, ServerGone
from model import Mismatch, Model, diff, short
from ops import Ops

MARGIN = 0.04             # s slept past the last short timer's due time (then polled)
SETTLE = 10.0             # s: how long to poll for the server to catch up with a change
HISTORY = 20              # steps shown on a mismatch
FULL_CHECK_EVERY = 20     # steps between checks of every live job, the server and events
SWEEP_FINISHED = 100      # finished jobs looked at by each periodic check


class Failure(Exception):
    """The run cannot go on (a connection broke, time ran out)."""


class Run(Ops):
    """One seed's run: python3 test_model.py makes one and calls run()."""

    def __init__(self, seed, steps, bugs, verbose):
        self.seed = seed
        self.steps = steps
        self.bugs = bugs
        self.verbose = verbose
        self.rng = random.Random(seed)
        rng = self.rng
        # The daemon's settings vary with the seed: small queues made on
        # first use, few or many kept results, compaction by its size
        # policy only or also at random moments.
        self.default_capacity = rng.choice([3, 5, 8])
        self.keep = rng.choice([3, 8, 30, 10000])
        self.compact_ms = rng.choice([None, 5, 30, 200])
        args = ["--default-capacity", str(self.default_capacity),
                "--keep-results", str(self.keep), "--submit-wait", "0",
                "--journal-segment", "64K", "--journal-compact", "64K"]
        env = {"CHANQ_TEST_COMPACT_MS": str(self.compact_ms)} if self.compact_ms else {}
        self.config = " ".join(args) + (" CHANQ_TEST_COMPACT_MS=%d" % self.compact_ms
                                         if self.compact_ms else "")
        self.daemon = Daemon(args, env)
        self.model = Model(self.default_capacity, self.keep)
        self.conns = {}           # id -> Conn; 0 is the control connection
        self.next_conn = 1
        self.history = collections.deque(maxlen=HISTORY)
        self.step = 0
        self.touched = set()
        self.sweep_at = 0
        self.window_since = None  # step when the pending short timers began
        self.names = ["q0", "q1", "q2", "q3", "a.b:c-d_e"]
        self.fresh = 0
        self.restarts = 0
        self.digests = 0
        self.windows = 0
        self.tally = collections.Counter()  # op:outcome -> how many
        self.spent = collections.Counter()  # seconds spent in timer windows, restarts

    def log(self, text):
        self.history.append("%6d %s" % (self.step, text))
        if self.verbose:
            print("%6d %s" % (self.step, text))

    def do(self, conn, req):
        """Sends req on connection conn, logs it and returns the answer."""
        c = self.conns[conn]
        try:
            ans = c.call(req)
        except (ServerGone, OSError) as e:
            self.daemon.check_alive(wait=2.0)
            raise Failure("connection %d: %s" % (conn, e))
        self.log("c%d %s -> %s" % (conn, short(req), short(ans)))
        outcome = "ok" if ans.get("ok") is True else ans.get("error", {}).get("code", "?")
        self.tally[req.get("op", "?") + ":" + outcome] += 1
        return ans

    def ctl(self):
        return self.conns[0]

    def workers(self):
        return sorted(c for c in self.conns if c != 0)

    def connect(self):
        cid = self.next_conn
        self.next_conn += 1
        self.conns[cid] = Conn(self.daemon.port, cid)
        return cid

    def check_jobs(self, ids):
        ids = sorted(ids)
        answers = self.ctl().pipeline([{"op": "job", "id": i} for i in ids])
        for jid, ans in zip(ids, answers):
            self.model.check_job(jid, ans)

    def check_queues(self):
        ans = self.ctl().call({"op": "queues"})
        if ans.get("ok") is not True:
            raise Mismatch("queues: %s" % short(ans))
        got = ans["queues"]
        if self.model.maybe_queues:
            self.model.resolve_queues(set(got))
        if set(got) != set(self.model.queues):
            raise Mismatch("queues: expected %s, got %s"
                           % (sorted(self.model.queues), sorted(got)))
        hot = self.hot_queues()
        counts = self.model.state_counts()
        for name, q in self.model.queues.items():
            if name not in hot:
                self.model.compare_queue("stats of %s" % name, self.model.expect_queue(q, counts),
                                         got[name])

    def check_stats(self):
        """The same figures through `stats` with "queue", one per queue."""
        names = sorted(self.model.queues)
        answers = self.ctl().pipeline([{"op": "stats", "queue": n} for n in names])
        counts = self.model.state_counts()
        for name, ans in zip(names, answers):
            self.model.expect_ok(ans, "stats of %s" % name)
            self.model.compare_queue("stats of %s" % name,
                                     self.model.expect_queue(self.model.queues[name], counts),
                                     ans.get("queue", {}))

    def check_server(self):
        ans = self.ctl().call({"op": "stats"})
        jobs = ans.get("server", {}).get("jobs")
        if not isinstance(jobs, dict):
            raise Mismatch("stats: %s" % short(ans))
        if self.model.totals is None:
            self.model.totals = {k: jobs[k] for k in ("done", "cancelled", "expired")}
        exp = self.model.expect_server_jobs()
        got = {k: jobs.get(k) for k in exp}
        if got != exp:
            raise Mismatch("server stats jobs: %s" % diff(exp, got))

    def check_events(self):
        """A ping on each worker connection brings in the events sent to it
        so far; they must be the model's, in any order (timers race)."""
        for cid in self.workers():
            self.conns[cid].call({"op": "ping"})
            got = sorted(self.conns[cid].events, key=json.dumps)
            exp = sorted(self.model.events.get(cid, []), key=json.dumps)
            if got != exp:
                raise Mismatch("events on connection %d: expected %s, got %s"
                               % (cid, json.dumps(exp), json.dumps(got)))
            self.conns[cid].events = []
            self.model.events[cid] = []

    def check_step(self):
        self.model.settle_drained()
        ids = set(self.touched) | set(self.model.forgotten)
        self.touched.clear()
        self.model.forgotten.clear()
        if self.step % FULL_CHECK_EVERY == 0:
            ids |= self.sweep()
        self.check_jobs(ids)
        self.check_queues()
        if self.window_since is None and self.step % FULL_CHECK_EVERY == 0:
            self.check_stats()
            self.check_server()
            self.check_events()

    def sweep(self):
        """The jobs a periodic check looks at: every live one, and a window
        of the finished ones that moves on each time (with a large
        --keep-results they outnumber the rest and rarely change)."""
        m = self.model
        ids = set(j.id for j in m.jobs.values() if j.state not in ("done", "cancelled", "expired"))
        fin = [j.id for j in m.fin]
        if len(fin) <= SWEEP_FINISHED:
            return ids | set(fin)
        self.sweep_at = self.sweep_at % len(fin)
        part = (fin + fin)[self.sweep_at:self.sweep_at + SWEEP_FINISHED]
        self.sweep_at += SWEEP_FINISHED
        return ids | set(part)

    def check_all(self):
        self.check_jobs(set(self.model.jobs) | set(self.model.forgotten))
        self.model.forgotten.clear()
        self.check_queues()
        self.check_stats()
        self.check_server()
        self.check_events()

    def settle(self, what, check):
        """Polls check() until it stops raising Mismatch (the server acts on
        a closed connection or a timer on its own time)."""
        deadline = time.monotonic() + SETTLE
        while True:
            try:
                return check()
            except Mismatch:
                if time.monotonic() > deadline:
                    self.log("gave up waiting for %s" % what)
                    raise
                time.sleep(0.01)

    def disconnect(self, conn):
        m = self.model
        held = list(m.conns.get(conn, []))
        returns = [j for j in held if m.would_requeue(j)]
        if any(j.timer is not None for j in held) or not self.room_for(returns) or \
                set(j.queue.name for j in held) & self.hot_queues():
            return False
        self.check_events()
        self.conns.pop(conn).close()
        order = m.disconnect(conn)
        self.log("c%d closed, holding %s" % (conn, [j.id for j in order]))
        self.touched.update(j.id for j in order)
        # The server notices the close on its own time.
        self.settle("connection %d's jobs to go back" % conn,
                    lambda: self.check_jobs([j.id for j in order]))
        return True

    def fire_timers(self):
        hot = self.model.hot_jobs()
        due = max(j.timer[0] for j in hot)
        wait = max(0.0, due - time.monotonic()) + MARGIN
        self.log("time passes: %.0f ms, short timers of %s fire"
                 % (wait * 1000, [j.id for j in hot]))
        t0 = time.monotonic()
        time.sleep(wait)
        fired = self.model.fire_timers()
        self.window_since = None
        self.model.settle_drained()
        ids = [j.id for j in fired] + list(self.model.forgotten)
        self.settle("short timers to fire", lambda: (self.check_jobs(ids), self.check_queues()))
        self.touched.update(ids)
        self.spent["timers"] += time.monotonic() - t0

    def op_restart(self):
        if self.window_since is not None:
            return False
        rng, m = self.rng, self.model
        holders = [c for c in self.workers() if m.conns.get(c)]
        variant = rng.choice(["term", "term", "kill", "kill", "kill-held", "term-held"])
        if variant == "kill-held":
            # Replay puts every reserved job back in its queue.
            for q in m.queues.values():
                back = len(q.live()) + sum(1 for j in m.jobs.values()
                                           if j.queue is q and j.state == "reserved")
                if back > q.capacity:
                    return False
        else:
            keep = holders[0] if variant == "term-held" and holders else None
            for c in self.workers():
                if c != keep and not self.disconnect(c):
                    return False
            if keep is not None:
                self.check_events()
                returns = [j for j in m.conns.get(keep, []) if m.would_requeue(j)]
                if not self.room_for(returns):
                    return False
        self.tally["restart:" + variant] += 1
        t0 = time.monotonic()
        crash = variant.startswith("kill")
        compare = variant in ("term", "kill")
        if compare and rng.random() < 0.8:
            # Only queues a record names come back; declaring the others
            # (their settings unchanged) writes one for each.
            for name in sorted(m.queues):
                if not m.queues[name].durable:
                    req = {"op": "declare", "queue": name}
                    m.declare(0, req, self.do(0, req))
        if m.queues:
            # A durable answer after every record so far (a kill -9 would
            # lose the records nobody waited for: RESERVE, a closed
            # connection's STATE).
            name = sorted(m.queues)[0]
            req = {"op": "declare", "queue": name}
            m.declare(0, req, self.do(0, req))
        compare = compare and all(q.durable or any(j.queue is q for j in m.jobs.values())
                                  for q in m.queues.values())
        self.check_all()
        before = self.digest() if compare else None
        self.log("restart: %s%s" % ("SIGKILL" if crash else "SIGTERM",
                                     ", digest %s" % before[:16] if before else ""))
        self.daemon.stop(crash)
        for c in self.conns.values():
            c.close()
        self.conns = {}
        m.restart(crash)
        self.daemon.start()
        self.conns[0] = Conn(self.daemon.port, 0)
        self.check_queues()  # settles which maybe-queues came back
        if before is not None:
            after = self.digest()
            if after != before:
                raise Mismatch("state digest after the restart %s differs from before it %s"
                               % (after, before))
            self.digests += 1
        self.check_all()
        self.restarts += 1
        self.spent["restarts"] += time.monotonic() - t0
        return True

    def digest(self):
        ans = self.ctl().call({"op": "stats", "digest": True})
        d = ans.get("server", {}).get("state_digest")
        if not isinstance(d, str) or len(d) != 64:
            raise Mismatch("stats digest: %s" % short(ans))
        return d

    def choose(self):
        if self.window_since is not None:
            age = self.step - self.window_since
            if age >= 15 or self.rng.random() < age * 0.03:
                return self.op_time_passes
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        return getattr(self, "op_" + self.rng.choices(names, weights)[0])

    def run(self):
        self.daemon.start()
        self.conns[0] = Conn(self.daemon.port, 0)
        self.check_all()
        while self.step < self.steps:
            self.step += 1
            for _ in range(100):
                if self.choose()():
                    break
            self.check_step()
            self.daemon.check_alive()
        if self.window_since is not None:
            self.fire_timers()
        self.check_all()
        # One last restart, checked like the others.
        self.op_restart()

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}

    def report(self, err):
        print("FAIL: seed %d, step %d: %s" % (self.seed, self.step, err))
        print("replay: CHANQ_MODEL_SEED=%d CHANQ_MODEL_STEPS=%d%s"
              % (self.seed, self.steps,
                 " CHANQ_MODEL_BUGS=%s" % ",".join(sorted(self.bugs)) if self.bugs else ""))
        print("chanqd %s; its data and log are kept in %s" % (self.config, self.daemon.dir))
        print("last %d steps:" % len(self.history))
        for line in self.history:
            print("  " + line)
