"""The model test's operations: each op_* method makes one random request
(or a connection close, or time passing) that the model can predict, sends
it and has the model check the answer. An op that finds no such request
returns False and the runner picks another.

Determinism: given a seed the sequence is the same run after run, except
for the moments short timers fire. Requests whose answer would depend on a
choice the server makes at random (which queue a multi-queue submit or a
non-strict fetch serves first) are only made where that choice cannot
change the outcome. Short timers (SHORT) only run inside a "window": while
one is pending, its queue is "hot" and nothing else touches that queue, so
a job's place in a queue or dead list never races a timer; a "time passes"
step ends the window once they have all fired."""
import collections
import time

from model import Queue, short

LONG = 86400000           # ms: a day, never fires during a run
SHORT = (100, 200)        # ms: fires within a window, resolved by a "time passes" step
MAX_WORKERS = 3


def rand_payload(rng, depth=0):
    """A random JSON value: strings with escapes and non-ASCII text,
    numbers, nested objects and arrays."""
    k = rng.random()
    if depth > 2 or k < 0.35:
        return rng.choice([rng.randint(-1000, 10 ** 9), rng.random() * 100, True, False, None,
                           "", "x" * rng.randint(1, 40), "\u00e9\u00fc\u4e2d\U0001F600",
                           'q"uo\\te\n\t', "\u0001ctl"])
    if k < 0.65:
        return {("k%d" % i): rand_payload(rng, depth + 1) for i in range(rng.randint(0, 4))}
    return [rand_payload(rng, depth + 1) for _ in range(rng.randint(0, 4))]


# Today's daemon has these bugs; the generator steers around them unless
# CHANQ_MODEL_BUGS names them (the model always expects the documented
# behaviour, so such a run fails where the bug shows). Delete an entry, and
# the steering it names, once the bug is fixed.
KNOWN_BUGS = {}


class Ops:
    """Mixed into Run (run.py), which provides rng, model, conns, do(),
    touched, tally, bugs, window_since and the checks."""

    OPS = [("submit", 24), ("fetch", 20), ("ack", 10), ("nack", 7), ("release", 3),
           ("touch", 3), ("cancel", 5), ("wait", 3), ("kick", 3), ("pause_resume", 3),
           ("close", 0.4), ("declare", 2), ("disconnect", 1.5), ("time_passes", 0.6),
           ("restart", 0.25), ("bad_request", 1),
           ("retry", 1.5), ("delete", 1.5), ("purge", 0.4)]

    def hot_queues(self):
        return set(j.queue.name for j in self.model.hot_jobs())

    def deadline_pending(self):
        return any(j.timer[1] == "deadline" for j in self.model.hot_jobs())

    def bug_on(self, name):
        return name in self.bugs

    def start_timer(self, j, ms, kind):
        self.tally["timer:" + kind] += 1
        self.model.set_timer(j, time.monotonic() + ms / 1000.0, kind)
        if self.window_since is None:
            self.window_since = self.step
            self.windows += 1
        self.touched.add(j.id)

    def short_ms(self):
        return self.rng.randint(*SHORT)

    def may_start_timer(self):
        """Short timers join an open window more readily than they open one."""
        return self.rng.random() < (0.8 if self.window_since is not None else 0.05)

    def room_for(self, returns):
        """True when every queue has room for the jobs that would go back
        into it: a returning job must never wait for room (its place in
        the queue would then depend on goroutine timing)."""
        need = collections.Counter(j.queue.name for j in returns)
        return all(self.model.queues[n].room() >= k for n, k in need.items())

    def pick_queue_name(self):
        """Mostly a queue that takes submits (closed ones stay closed)."""
        m = self.model
        usable = [n for n in self.names if n not in m.queues or not m.queues[n].closed]
        if usable and self.rng.random() < 0.9:
            return self.rng.choice(usable)
        return self.rng.choice(self.names)

    def pick_queue_names(self, n):
        names = [self.pick_queue_name()]
        for _ in range(n - 1):
            rest = [x for x in self.names if x not in names]
            if not rest:
                break
            names.append(self.rng.choice(rest))
        return names

    def pick_job(self, pred=None):
        """A tracked job not touched by a pending short timer."""
        gone = self.model.pending_eviction()
        js = [j for j in self.model.jobs.values()
              if j.timer is None and j is not gone and (pred is None or pred(j))]
        return self.rng.choice(js) if js else None

    def unknown_id(self):
        return self.rng.choice(["1", "18446744073709551615", "nope", "00"])

    def pick_parent(self):
        r = self.rng.random()
        if r < 0.8:
            # Grow trees: mostly a job that already has a parent or children.
            j = None
            if self.rng.random() < 0.6:
                j = self.pick_job(lambda j: j.parent is not None or j.children)
            j = j or self.pick_job()
            return j.id if j else None
        if r < 0.9 and self.model.forgotten_all:
            return self.rng.choice(self.model.forgotten_all[-50:])
        return self.unknown_id()

    def op_submit(self):
        rng, m = self.rng, self.model
        conn = rng.choice(sorted(self.conns))
        multi = rng.random() < 0.15
        if multi:
            names = self.pick_queue_names(rng.randint(2, 3))
            req = {"op": "submit", "queues": names}
        else:
            names = [self.pick_queue_name()]
            req = {"op": "submit", "queue": names[0]}
        if set(names) & self.hot_queues():
            return False
        req["payload"] = rand_payload(rng)
        # The queues as they will be (the ones it names first are made with
        # the defaults); the first open one gives the job's defaults.
        qobjs = [m.queues.get(n) or Queue(n, m.default_capacity, m.default_ttr,
                                          m.default_attempts) for n in names]
        open_qs = [q for q in qobjs if not q.closed]
        first = open_qs[0] if open_qs else None
        parent = None
        # A new queue's ttr is 30 s, which could fire during a run: jobs
        # get a day unless their queue was declared with it.
        r = rng.random()
        short_ttr = False
        if r < 0.04:
            req["ttr_ms"] = self.short_ms()
            short_ttr = True
        elif r < 0.5 or first is None or first.ttr_ms < LONG:
            req["ttr_ms"] = LONG
        if rng.random() < 0.5:
            req["max_attempts"] = rng.randint(1, 4)
        r = rng.random()
        delay = 0
        if r < 0.12:
            delay = req["delay_ms"] = LONG
        elif r < 0.17:
            req["delay_ms"] = 0
        elif r < 0.25 and self.may_start_timer():
            delay = req["delay_ms"] = self.short_ms()
        short_deadline = False
        r = rng.random()
        if r < 0.1:
            req["deadline_ms"] = LONG
        elif r < 0.16 and delay == 0 and not short_ttr and not self.deadline_pending() \
                and self.may_start_timer():
            req["deadline_ms"] = self.short_ms()
            short_deadline = True
        if rng.random() < 0.35:
            p = self.pick_parent()
            if p is not None:
                req["parent"] = p
                parent = m.jobs.get(p)
        if rng.random() < 0.2:
            req["traceparent"] = "00-%032x-%016x-%02x" % (
                rng.getrandbits(128) | 1, rng.getrandbits(64) | 1, rng.choice((0, 1)))
        r = rng.random()
        if r < 0.6:
            req["wait_ms"] = 0
        elif r < 0.63:
            req["wait_ms"] = 20  # parks briefly when full: nobody makes room
        # Where it lands, to keep the run deterministic and away from
        # known bugs.
        placed = first is not None and ("parent" not in req or (
            parent is not None and parent.state not in ("cancelled", "expired")))
        if placed and delay == 0:
            with_room = [q for q in open_qs if q.room() > 0]
            if len(with_room) > 1:
                return False  # the server would pick one at random
        if placed and 0 < delay < LONG and first.room() < 1:
            return False  # it could not enter its queue when due
        ans = self.do(conn, req)
        j = m.submit(conn, req, ans, short_ttr=short_ttr)
        if j is not None:
            self.touched.add(j.id)
            if j.parent is not None:
                self.touched.add(j.parent.id)
            if 0 < delay < LONG:
                self.start_timer(j, delay, "delay")
            if short_deadline:
                self.start_timer(j, req["deadline_ms"], "deadline")
        return True

    def op_fetch(self):
        rng, m = self.rng, self.model
        workers = self.workers()
        if len(workers) < MAX_WORKERS and (not workers or rng.random() < 0.1):
            conn = self.connect()
        else:
            conn = rng.choice(workers)
        n = 1 if rng.random() < 0.7 else rng.randint(2, 3)
        names = self.pick_queue_names(n)
        if set(names) & self.hot_queues():
            return False
        req = {"op": "fetch", "timeout_ms": 0}
        if len(names) == 1 and rng.random() < 0.5:
            req["queue"] = names[0]
        else:
            req["queues"] = names
        count = 1 if rng.random() < 0.5 else rng.randint(2, 4)
        if count > 1 or rng.random() < 0.3:
            req["count"] = count
        if len(names) > 1 and rng.random() < 0.4:
            req["strict"] = True
        preview = m.preview_fetch(names, count, req.get("strict", False))
        if preview is None:
            return False  # its answer would depend on the server's random order
        shorts = [j for j in preview if j.short_ttr]
        if shorts and (not self.may_start_timer() or
                       len(set(j.queue.name for j in shorts)) < len(shorts)):
            return False  # one moving timer per queue and window
        ans = self.do(conn, req)
        got = m.fetch(conn, req, ans)
        for j in got:
            self.touched.add(j.id)
            if j.short_ttr:
                self.start_timer(j, j.ttr_ms, "ttr")
        return True

    def calm(self, j):
        """Not in a queue with a pending short timer: what happens to it
        cannot race a timer for a place in that queue or its dead list."""
        return not self.model.timers or j.queue.name not in self.hot_queues()

    def target_for_reserved_op(self):
        """(connection, job id, job or None): mostly a job reserved by the
        connection asking, sometimes one it does not hold, or no job."""
        rng = self.rng
        j = self.pick_job(lambda j: j.state == "reserved" and self.calm(j))
        r = rng.random()
        if j is not None and r < 0.85:
            if rng.random() < 0.92:
                return j.holder, j.id, j
            return rng.choice(sorted(self.conns)), j.id, j
        if r < 0.95:
            k = self.pick_job(self.calm)
            if k is not None:
                return rng.choice(sorted(self.conns)), k.id, k
        return rng.choice(sorted(self.conns)), self.unknown_id(), None

    def op_ack(self):
        if self.deadline_pending():
            return False  # a final state now would race the expiry for its place in the results
        conn, jid, j = self.target_for_reserved_op()
        req = {"op": "ack", "id": jid}
        if self.rng.random() < 0.6:
            req["result"] = rand_payload(self.rng)
        ans = self.do(conn, req)
        if self.model.ack(conn, req, ans) is not None or j is not None:
            self.touched.add(jid)
        return True

    def op_nack(self):
        rng, m = self.rng, self.model
        conn, jid, j = self.target_for_reserved_op()
        req = {"op": "nack", "id": jid}
        r = rng.random()
        if r < 0.3:
            req["error"] = rng.choice(["boom", "", "smtp timeout \u00e9", "x" * 200])
        backoff = False
        r = rng.random()
        if r < 0.15:
            req["dead"] = True
        r = rng.random()
        if r < 0.4:
            req["delay_ms"] = 0
        elif r < 0.65:
            req["delay_ms"] = LONG
        elif r < 0.9:
            req["delay_ms"] = self.short_ms()
        else:
            backoff = True  # 1 s * 2^(attempt-1), jittered
        mine = j is not None and j.state == "reserved" and j.holder == conn
        if mine:
            delay = 1 if backoff else req.get("delay_ms", 0)
            dead = req.get("dead", False) or j.attempt >= j.max_attempts
            if not dead and delay == 0 and not self.room_for([j]):
                return False
            if not dead and delay > 0 and delay != LONG:
                if backoff and (j.attempt > 1 or rng.random() < 0.6):
                    return False  # a 0.5-1 s backoff now and then; never longer
                if j.queue.name in self.hot_queues() or not self.may_start_timer() \
                        or not self.room_for([j]):
                    return False
        ans = self.do(conn, req)
        if m.nack(conn, req, ans, backoff=backoff) is not None and mine:
            if j.state == "delayed" and req.get("delay_ms") != LONG:
                self.start_timer(j, 1000 if backoff else req["delay_ms"],
                                 "backoff" if backoff else "delay")
        if j is not None:
            self.touched.add(jid)
        return True

    def op_release(self):
        conn, jid, j = self.target_for_reserved_op()
        if j is not None and j.state == "reserved" and j.holder == conn and \
                (not self.room_for([j]) or j.queue.name in self.hot_queues()):
            return False
        ans = self.do(conn, {"op": "release", "id": jid})
        self.model.release(conn, {"op": "release", "id": jid}, ans)
        if j is not None:
            self.touched.add(jid)
        return True

    def op_touch(self):
        rng = self.rng
        conn, jid, j = self.target_for_reserved_op()
        req = {"op": "touch", "id": jid}
        short_ttr = False
        r = rng.random()
        if r < 0.4:
            req["ttr_ms"] = LONG
        elif r < 0.5:
            short_ttr = True
            req["ttr_ms"] = self.short_ms()
        mine = j is not None and j.state == "reserved" and j.holder == conn
        if mine and (short_ttr or j.short_ttr and "ttr_ms" not in req):
            if j.queue.name in self.hot_queues() or not self.may_start_timer():
                return False
            if j.attempt < j.max_attempts and not self.room_for([j]):
                return False
        ans = self.do(conn, req)
        if self.model.touch(conn, req, ans) is not None:
            if short_ttr or (j.short_ttr and "ttr_ms" not in req):
                self.start_timer(j, req.get("ttr_ms", j.ttr_ms), "ttr")
        if j is not None:
            self.touched.add(jid)
        return True

    def op_cancel(self):
        if self.deadline_pending():
            return False
        rng, m = self.rng, self.model
        j = self.pick_job() if rng.random() < 0.93 else None
        jid = j.id if j is not None else self.unknown_id()
        walk = m.cancel_walk(j) if j is not None else []
        hot = self.hot_queues()
        if any(n.timer is not None or n.queue.name in hot for n in walk):
            return False
        conn = rng.choice(sorted(self.conns))
        ans = self.do(conn, {"op": "cancel", "id": jid})
        m.cancel(conn, {"op": "cancel", "id": jid}, ans)
        self.touched.update(n.id for n in walk)
        return True

    def op_wait(self):
        j = self.pick_job() if self.rng.random() < 0.9 else None
        jid = j.id if j is not None else self.unknown_id()
        conn = self.rng.choice(sorted(self.conns))
        req = {"op": "wait", "id": jid, "timeout_ms": 0}
        ans = self.do(conn, req)
        self.model.wait(conn, req, ans)
        return True

    def op_kick(self):
        rng, m = self.rng, self.model
        name = self.pick_queue_name()
        if name in self.hot_queues():
            return False
        req = {"op": "kick", "queue": name}
        if rng.random() < 0.6:
            req["count"] = rng.randint(1, 3)
        q = m.queues.get(name)
        if q is not None:
            n = min(req.get("count", len(q.dead)), len(q.dead))
            if not self.room_for(q.dead[:n]):
                return False
        ans = self.do(rng.choice(sorted(self.conns)), req)
        for j in m.kick(0, req, ans):
            self.touched.add(j.id)
        return True

    def op_retry(self):
        """retry: mostly a dead or (long) delayed job, sometimes one in
        another state (conflict) or an unknown id."""
        rng, m = self.rng, self.model
        r = rng.random()
        if r < 0.85:
            j = self.pick_job(lambda j: j.state in ("dead", "delayed"))
        elif r < 0.95:
            j = self.pick_job(lambda j: j.state not in ("dead", "delayed"))
        else:
            j = None
        if j is not None and (j.queue.name in self.hot_queues() or
                              (j.state in ("dead", "delayed") and not self.room_for([j]))):
            return False
        jid = j.id if j is not None else self.unknown_id()
        ans = self.do(rng.choice(sorted(self.conns)), {"op": "retry", "id": jid})
        m.retry(0, {"id": jid}, ans)
        if j is not None:
            self.touched.add(j.id)
        return True

    def op_delete(self):
        """delete of a delayed, dead or finished job (queued ones would
        leave tombstones the model does not follow; reserved ones need
        force), or an unknown id."""
        rng, m = self.rng, self.model
        j = self.pick_job(lambda j: j.state in ("delayed", "dead", "done", "cancelled",
                                                "expired"))
        if j is not None and j.queue.name in self.hot_queues():
            return False
        jid = j.id if j is not None and rng.random() < 0.95 else self.unknown_id()
        req = {"op": "delete", "id": jid}
        ans = self.do(rng.choice(sorted(self.conns)), req)
        m.delete(0, req, ans)
        return True

    def op_purge(self):
        rng, m = self.rng, self.model
        name = self.pick_queue_name()
        if name in self.hot_queues() or (m.pending_eviction() is not None):
            return False
        req = {"op": "purge", "queue": name, "state": rng.choice(["dead", "dead", "finished"])}
        ans = self.do(rng.choice(sorted(self.conns)), req)
        m.purge(0, req, ans)
        return True

    def op_pause_resume(self):
        name = self.pick_queue_name()
        if name in self.hot_queues():
            return False
        op = self.rng.choice(["pause", "resume", "resume"])
        req = {"op": op, "queue": name}
        ans = self.do(self.rng.choice(sorted(self.conns)), req)
        self.model.set_paused(0, req, ans, op == "pause")
        return True

    def op_close(self):
        m = self.model
        name = self.pick_queue_name()
        closed = [n for n in self.names if n in m.queues and m.queues[n].closed]
        if name in self.hot_queues() or (name not in closed and len(closed) >= 2):
            return False  # a closed queue stays closed: keep most of them open
        req = {"op": "close", "queue": name}
        ans = self.do(self.rng.choice(sorted(self.conns)), req)
        m.close(0, req, ans)
        return True

    def op_declare(self):
        rng, m = self.rng, self.model
        r = rng.random()
        if r < 0.25 and len(self.names) < 10:
            self.fresh += 1
            name = "n%d" % self.fresh
            self.names.append(name)
        else:
            name = self.pick_queue_name()
        if name in self.hot_queues():
            return False
        req = {"op": "declare", "queue": name}
        q = m.queues.get(name)
        for field, choices in (("capacity", [0, 1, 2, 3, 5, 50]), ("ttr_ms", [LONG]),
                               ("max_attempts", [1, 2, 3, 5])):
            if rng.random() < 0.5:
                same = q is not None and rng.random() < 0.7
                req[field] = getattr(q, field) if same else rng.choice(choices)
        ans = self.do(rng.choice(sorted(self.conns)), req)
        m.declare(0, req, ans)
        return True

    def op_disconnect(self):
        workers = self.workers()
        if not workers:
            return False
        conn = self.rng.choice(workers)
        return self.disconnect(conn)

    def op_time_passes(self):
        if self.window_since is not None:
            self.fire_timers()
        else:
            ms = self.rng.randint(5, 30)
            self.log("time passes: %d ms" % ms)
            time.sleep(ms / 1000.0)
        return True

    def op_bad_request(self):
        """A request the server must refuse, changing nothing."""
        reqs = [
            ({"op": "submit", "queue": "q0", "payload": 1, "ttr_ms": 0}, "bad_request"),
            ({"op": "submit", "queue": "bad name", "payload": 1}, "bad_request"),
            ({"op": "submit", "queue": "q0"}, "bad_request"),
            ({"op": "submit", "queue": "q0", "payload": 1,
              "traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, "bad_request"),
            ({"op": "submit", "queues": ["q0", "q0"], "payload": 1}, "bad_request"),
            ({"op": "fetch", "queues": []}, "bad_request"),
            ({"op": "fetch", "queue": "q0", "count": 0}, "bad_request"),
            ({"op": "nack", "id": "1", "delay_ms": -1}, "bad_request"),
            ({"op": "ack"}, "bad_request"),
            ({"op": "kick", "queue": "q0", "count": "3"}, "bad_request"),
            ({"op": "declare", "queue": "q0", "capacity": None}, "bad_request"),
            ({"op": "frobnicate"}, "unknown_op"),
            # Ops on a queue nobody made do not make it.
            ({"op": "pause", "queue": "none"}, "not_found"),
            ({"op": "close", "queue": "none"}, "not_found"),
            ({"op": "kick", "queue": "none"}, "not_found"),
            ({"op": "stats", "queue": "none"}, "not_found"),
        ]
        req, code = self.rng.choice(reqs)
        ans = self.do(self.rng.choice(sorted(self.conns)), req)
        self.model.expect_error(ans, code, "bad request %s" % short(req))
        return True

