"""The reference model of chanq's job lifecycle (docs/protocol.md, "Queues
and jobs" and the op sections; docs/durability.md for what a restart
keeps), written without looking at the broker's data structures: queues
with their settings, flags, buffered jobs and dead lists, jobs with their
state, attempt, holder, parent and children, error and result, the kept
results, and what a restart does.

Each op is one method that takes the request and the server's answer,
checks the answer against what the model allows and applies the effect.
Where the protocol leaves a choice to the server (which queue a
multi-queue submit or a non-strict fetch picks), the answer resolves it
once the model has checked that the choice was a legal one. A mismatch
raises Mismatch naming the differing fields.

Time is the one thing the model does not follow by itself: a job with a
short timer (delay, ttr or deadline of ~100-200 ms) is "hot" until the
driver says the time has passed (fire_timers); until then it may be in
either state, and the generator keeps away from it.
"""
import json

FINAL = ("done", "dead", "cancelled", "expired")
# States whose payload is dropped (docs/protocol.md, the `job` op).
PAYLOAD_GONE = ("done", "cancelled", "expired")
# The broker gives a closing connection's jobs back newest reservation
# first: the job fetched last re-enters its queue first. The protocol does
# not say; this pins what chanqd does.
DISCONNECT_NEWEST_FIRST = True


class Mismatch(Exception):
    """The server's observable state differs from the model's."""


def compact(value):
    """The compact JSON text chanqd stores for a payload or result we sent
    compact: what counts in payload_bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Job:
    """A job as the model knows it (state names as the `job` op spells them)."""
    __slots__ = ("id", "queue", "state", "attempt", "max_attempts", "ttr_ms", "payload",
                 "payload_len", "parent", "children", "error", "result", "has_result",
                 "deadline_rel", "created", "holder", "recseq", "short_ttr", "timer",
                 "traceparent")

    def __init__(self, jid, queue, payload, ttr_ms, max_attempts):
        self.id = jid
        self.queue = queue          # Queue
        self.state = "queued"
        self.attempt = 0
        self.max_attempts = max_attempts
        self.ttr_ms = ttr_ms
        self.payload = payload      # the Python value
        self.payload_len = len(compact(payload).encode())
        self.parent = None          # Job, while both are tracked
        self.children = []          # Jobs, in submit order
        self.error = None
        self.result = None
        self.has_result = False
        self.deadline_rel = None    # deadline_ms of the submit
        self.created = None         # learned from the first `job` answer
        self.holder = None          # connection id while reserved
        self.recseq = 0             # position of the job's last journal record
        self.short_ttr = False      # its ttr is one of the short ones
        self.timer = None           # pending short timer: (due, kind)
        self.traceparent = None     # the submit's W3C trace context, kept for good

    def final(self):
        return self.state in FINAL


class Queue:
    """A queue: settings, flags, the channel's contents and the dead list."""
    COUNTERS = ("submitted", "delivered", "acked", "nacked", "expired", "cancelled",
                "rejected_full")

    def __init__(self, name, capacity, ttr_ms, max_attempts):
        self.name = name
        self.capacity = capacity
        self.ttr_ms = ttr_ms
        self.max_attempts = max_attempts
        self.paused = False
        self.closed = False
        self.drained = False        # chanqd's "drained" signal, once sent, stays sent
        self.buf = []               # Jobs in the channel, in order
        self.dead = []              # dead Jobs, oldest first (kick order)
        self.count = dict.fromkeys(self.COUNTERS, 0)
        self.durable = False        # a QUEUE record exists (declare, pause, resume, close)
        self.submit_record = False  # a SUBMIT record naming it may exist

    def live(self):
        """Buffered jobs that are not tombstones, in delivery order."""
        return [j for j in self.buf if j.state == "queued"]

    def room(self):
        """Buffer slots left."""
        return self.capacity - len(self.buf)



class Model:
    """The whole broker state; one method per op."""

    def __init__(self, default_capacity, keep_results, default_ttr=30000, default_attempts=3):
        self.default_capacity = default_capacity
        self.default_ttr = default_ttr
        self.default_attempts = default_attempts
        self.keep = keep_results
        self.queues = {}            # name -> Queue
        self.maybe_queues = {}      # after a restart: name -> Queue that may or may not be back
        self.jobs = {}              # id -> Job (tracked)
        self.fin = []               # finished Jobs kept for wait/job, oldest first
        self.conns = {}             # connection id -> [Job] reserved, in fetch order
        self.events = {}            # connection id -> [event dict] expected, not yet seen
        self.seq = 0                # journal record counter
        self.totals = {"done": 0, "cancelled": 0, "expired": 0}
        self.ids_seen = set()       # every id the server ever gave
        self.forgotten = []         # ids evicted since the driver last looked
        self.forgotten_all = []     # the last ids evicted (for ops naming a forgotten job)
        self.timers = {}            # id -> Job with a pending short timer

    def queue(self, name, create=False):
        """The queue, made with the defaults on first use when create."""
        q = self.queues.get(name)
        if q is None and create:
            q = Queue(name, self.default_capacity, self.default_ttr, self.default_attempts)
            self.queues[name] = q
        return q

    def record(self, j):
        """j's state change is a journal record: its position decides where
        a queued j goes in a replay."""
        self.seq += 1
        j.recseq = self.seq

    def expect_error(self, ans, code, what):
        if ans.get("ok") is not False or ans.get("error", {}).get("code") != code:
            raise Mismatch("%s: expected error %s, got %s" % (what, code, json.dumps(ans)))

    def expect_ok(self, ans, what):
        if ans.get("ok") is not True:
            raise Mismatch("%s: expected ok, got %s" % (what, json.dumps(ans)))

    def enqueue(self, j):
        """j goes to the tail of its queue's buffer (the generator made sure
        there is room: a returning job never has to wait for it)."""
        q = j.queue
        if len(q.buf) >= q.capacity:
            raise AssertionError("model: %s would overflow %s (generator bug)" % (j.id, q.name))
        j.state = "queued"
        q.buf.append(j)

    def unreserve(self, j):
        held = self.conns.get(j.holder)
        if held is not None and j in held:
            held.remove(j)
        j.holder = None

    def finalize(self, j, state):
        """done, cancelled, expired: the payload goes, the job joins the kept
        results and the oldest kept one may be forgotten. A queued job's
        place in its queue's channel goes at once: it holds no capacity."""
        if j.state == "queued" and j in j.queue.buf:
            j.queue.buf.remove(j)
        j.state = state
        j.payload = None
        self.totals[state] += 1
        self.fin.append(j)
        if len(self.fin) > self.keep:
            self.evict(self.fin.pop(0))

    def evict(self, old):
        del self.jobs[old.id]
        self.forgotten.append(old.id)
        self.forgotten_all = self.forgotten_all[-99:] + [old.id]
        if old.parent is not None:
            old.parent.children.remove(old)
            old.parent = None
        # Children do not keep a forgotten parent (it is gone for them too).
        for c in old.children:
            c.parent = None
        old.children = []

    def bury(self, j):
        j.state = "dead"
        j.queue.dead.append(j)

    def retry_or_bury(self, j, delay, bury):
        """A reservation ended without an ack: the attempt is used."""
        if bury or j.attempt >= j.max_attempts:
            self.bury(j)
        elif delay > 0:
            j.state = "delayed"
        else:
            self.enqueue(j)
        self.record(j)

    def would_requeue(self, j):
        """True when a reservation ending now without an ack (a closed
        connection, a revoked ttr) puts j back in its queue."""
        return j.attempt < j.max_attempts

    def settle_drained(self):
        """chanqd signals "drained" once a closed queue's channel is empty,
        and the signal stays; every way a closed queue's channel empties
        checks for it at once."""
        for q in self.queues.values():
            if q.closed and not q.buf:
                q.drained = True

    def submit(self, conn, req, ans, short_ttr=False):
        names = req.get("queues") or [req["queue"]]
        qs = [self.queue(n, create=True) for n in names]
        what = "submit to %s" % names
        open_qs = [q for q in qs if not q.closed]
        if not open_qs:
            return self.expect_error(ans, "closed", what)
        parent = None
        if "parent" in req:
            parent = self.jobs.get(req["parent"])
            if parent is None:
                return self.expect_error(ans, "not_found", what)
            if parent.state in ("cancelled", "expired"):
                return self.expect_error(ans, "cancelled", what)
        first = open_qs[0]
        ttr = req.get("ttr_ms", first.ttr_ms)
        attempts = req.get("max_attempts", first.max_attempts)
        delay = req.get("delay_ms", 0)
        # From here the submit is in the journal (a SUBMIT record naming the
        # first open queue), even if it then finds no room.
        first.submit_record = True
        if delay > 0:
            target = first
        else:
            # docs/protocol.md: capacity counts queued jobs.
            with_room = [q for q in open_qs if q.room() > 0]
            if not with_room:
                for q in open_qs:
                    q.count["rejected_full"] += 1
                codes = set("timeout" if q.capacity == 0 else "queue_full" for q in open_qs)
                got = ans.get("error", {}).get("code") if ans.get("ok") is False else None
                if got not in codes:
                    raise Mismatch("%s: expected error %s, got %s"
                                   % (what, "/".join(sorted(codes)), json.dumps(ans)))
                return None
            self.expect_ok(ans, what)
            if "queues" in req:
                target = self.queues.get(ans.get("queue"))
                if target not in with_room:
                    raise Mismatch("%s: answer names queue %r, one of %s had room"
                                   % (what, ans.get("queue"), [q.name for q in with_room]))
            else:
                target = first
                if "queue" in ans:
                    raise Mismatch("%s: a one-queue submit answers no queue: %s"
                                   % (what, json.dumps(ans)))
        self.expect_ok(ans, what)
        if "queues" in req and ans.get("queue") != target.name:
            raise Mismatch("%s: expected queue %s in %s" % (what, target.name, json.dumps(ans)))
        jid = ans.get("id")
        if not isinstance(jid, str) or jid in self.ids_seen:
            raise Mismatch("%s: id %r is not a new id" % (what, jid))
        self.ids_seen.add(jid)
        j = Job(jid, target, req["payload"], ttr, attempts)
        j.short_ttr = short_ttr
        j.deadline_rel = req.get("deadline_ms")
        j.traceparent = req.get("traceparent")
        if parent is not None:
            j.parent = parent
            parent.children.append(j)
        self.jobs[jid] = j
        target.count["submitted"] += 1
        self.record(j)
        if delay > 0:
            j.state = "delayed"
        else:
            self.enqueue(j)
        return j

    def take(self, q, room):
        """What chanqd's take loop does to one queue: pop from the head while
        fewer than `room` jobs were taken, skipping tombstones."""
        got = []
        while len(got) < room and q.buf:
            j = q.buf.pop(0)
            if j.state == "queued":
                got.append(j)
        return got

    def preview_fetch(self, names, count, strict):
        """The jobs a fetch would return when the answer does not depend on
        the server's random queue order; None when it does."""
        qs = [self.queues[n] for n in names if n in self.queues]
        active = [q for q in qs if not q.paused]
        avail = {q.name: len(q.live()) for q in active}
        total = sum(avail.values())
        if not strict and len(active) > 1 and total >= count:
            having = [q for q in active if avail[q.name] > 0]
            if len(having) > 1:
                return None
            if any(q.buf and avail[q.name] == 0 for q in active):
                return None  # whether its tombstones are skipped depends on the order
        out = []
        order = active if strict else sorted(active, key=lambda q: -avail[q.name])
        for q in order:
            live = q.live()
            out.extend(live[:count - len(out)])
            if len(out) >= count:
                break
        return out

    def fetch(self, conn, req, ans):
        names = req.get("queues") or [req["queue"]]
        qs = [self.queue(n, create=True) for n in names]
        count = req.get("count", 1)
        what = "fetch from %s" % names
        if ans.get("ok") is not True:
            # Only an empty fetch of closed, drained queues fails.
            got_code = ans.get("error", {}).get("code")
            if got_code != "closed":
                raise Mismatch("%s: expected ok, got %s" % (what, json.dumps(ans)))
        answered = ans.get("jobs", []) if ans.get("ok") is True else []
        # Group the answer by queue, in answer order (the visit order).
        order, per = [], {}
        for a in answered:
            qn = a.get("queue")
            if qn not in per:
                if qn not in names:
                    raise Mismatch("%s: got a job of queue %r" % (what, qn))
                order.append(qn)
                per[qn] = []
            elif order[-1] != qn:
                raise Mismatch("%s: the jobs of %s are not together: %s"
                               % (what, qn, json.dumps(answered)))
            per[qn].append(a)
        active = [q for q in qs if not q.paused]
        if req.get("strict"):
            visit = [q.name for q in active]
        else:
            # The server visited the queues it took from in answer order;
            # the others (which gave nothing) before, between or after:
            # the generator only lets through fetches where that is moot.
            rest = [q.name for q in active if q.name not in per]
            visit = order + rest
            if rest and len(answered) >= count and any(self.queues[n].buf for n in rest):
                raise AssertionError("model: order-dependent fetch let through (generator bug)")
        taken = []
        for qn in visit:
            if len(taken) >= count:
                break
            taken.extend(self.take(self.queues[qn], count - len(taken)))
        # The answer lists the jobs in the order they were taken: queue by
        # queue in the visit order, each queue's in FIFO order.
        exp_ids = [j.id for j in taken]
        got_ids = [a.get("id") for a in answered]
        if got_ids != exp_ids:
            raise Mismatch("%s: expected jobs %s, got %s" % (what, exp_ids, got_ids))
        if ans.get("ok") is not True:
            for q in qs:
                if q.closed and not q.buf:
                    q.drained = True
            if not all(q.drained for q in qs):
                raise Mismatch("%s: answered closed, but not every queue is closed and drained"
                               % what)
            return []
        if not taken:
            for q in qs:
                if q.closed and not q.buf:
                    q.drained = True
            if all(q.drained for q in qs):
                raise Mismatch("%s: expected closed (every queue closed and drained), got %s"
                               % (what, json.dumps(ans)))
        byid = {j.id: j for j in taken}
        for a in answered:
            j = byid[a["id"]]
            j.state = "reserved"
            j.attempt += 1
            j.holder = conn
            self.conns.setdefault(conn, []).append(j)
            j.queue.count["delivered"] += 1
            self.record(j)
            exp = {"id": j.id, "queue": j.queue.name, "payload": j.payload,
                   "attempt": j.attempt, "ttr_ms": j.ttr_ms}
            if j.deadline_rel is not None and j.created is not None:
                exp["deadline"] = j.created + j.deadline_rel
            if j.traceparent is not None:
                exp["traceparent"] = j.traceparent
            got = dict(a)
            if j.deadline_rel is not None and j.created is None:
                if not isinstance(got.pop("deadline", None), int):
                    raise Mismatch("%s: job %s has no deadline: %s" % (what, j.id, a))
            if got != exp:
                raise Mismatch("%s: job %s: %s" % (what, j.id, diff(exp, got)))
        return taken

    def _reserved_by(self, conn, jid, ans, what):
        """The checks of ack, nack, release and touch. Returns the job, or
        None after checking the error."""
        j = self.jobs.get(jid)
        if j is None:
            self.expect_error(ans, "not_found", what)
            return None
        if j.state == "cancelled":
            self.expect_error(ans, "cancelled", what)
            return None
        if j.state != "reserved" or j.holder != conn:
            self.expect_error(ans, "not_reserved", what)
            return None
        return j

    def ack(self, conn, req, ans):
        what = "ack %s" % req["id"]
        j = self._reserved_by(conn, req["id"], ans, what)
        if j is None:
            return None
        self.expect_ok(ans, what)
        if ans != {"ok": True}:
            raise Mismatch("%s: %s" % (what, json.dumps(ans)))
        if "result" in req:
            j.result, j.has_result = req["result"], True
        self.unreserve(j)
        j.queue.count["acked"] += 1
        self.finalize(j, "done")
        self.record(j)
        return j

    def nack(self, conn, req, ans, backoff=False):
        what = "nack %s" % req["id"]
        j = self._reserved_by(conn, req["id"], ans, what)
        if j is None:
            return None
        self.expect_ok(ans, what)
        if req.get("error"):
            j.error = req["error"]
        self.unreserve(j)
        j.queue.count["nacked"] += 1
        delay = 1 if backoff else req.get("delay_ms", 0)
        self.retry_or_bury(j, delay, req.get("dead", False))
        if ans != {"ok": True, "state": j.state}:
            raise Mismatch("%s: expected state %s: %s" % (what, j.state, json.dumps(ans)))
        return j

    def release(self, conn, req, ans):
        what = "release %s" % req["id"]
        j = self._reserved_by(conn, req["id"], ans, what)
        if j is None:
            return None
        self.expect_ok(ans, what)
        self.unreserve(j)
        if j.attempt > 0:
            j.attempt -= 1
        self.enqueue(j)
        self.record(j)
        return j

    def touch(self, conn, req, ans):
        what = "touch %s" % req["id"]
        j = self._reserved_by(conn, req["id"], ans, what)
        if j is None:
            return None
        self.expect_ok(ans, what)
        return j

    def cancel_walk(self, j):
        """The tree as cancel walks it: the job, then each child's subtree,
        newest child first."""
        out = [j]
        for c in reversed(j.children):
            out.extend(self.cancel_walk(c))
        return out

    def cancel_cut_short(self, j):
        """True when today's chanqd would stop this cancel half way: a job
        of the tree forgotten (pushed out of the kept results) while the
        walk runs takes its links to the rest of the tree with it."""
        walk = self.cancel_walk(j)
        newly = [n for n in walk if not n.final()]
        excess = len(self.fin) + len(newly) - self.keep
        if excess <= 0:
            return False
        gone = set(map(id, (self.fin + newly)[:excess]))
        return any(id(n) in gone for n in walk)

    def cancel(self, conn, req, ans):
        what = "cancel %s" % req["id"]
        j = self.jobs.get(req["id"])
        if j is None:
            self.expect_error(ans, "not_found", what)
            return []
        self.expect_ok(ans, what)
        walk = self.cancel_walk(j)
        changed = []
        for n in walk:
            if n.final():
                continue
            if n.state == "reserved":
                self.events.setdefault(n.holder, []).append({"event": "cancel", "id": n.id})
                self.unreserve(n)
            n.queue.count["cancelled"] += 1
            self.finalize(n, "cancelled")
            self.record(n)
            changed.append(n)
        if ans != {"ok": True, "cancelled": len(changed)}:
            raise Mismatch("%s: expected cancelled %d: %s" % (what, len(changed), json.dumps(ans)))
        return walk

    def wait(self, conn, req, ans):
        what = "wait %s" % req["id"]
        j = self.jobs.get(req["id"])
        if j is None:
            return self.expect_error(ans, "not_found", what)
        if not j.final():
            return self.expect_error(ans, "timeout", what)
        exp = {"ok": True, "state": j.state}
        if j.state == "done":
            exp["result"] = j.result
        elif j.state == "dead":
            exp["error"] = j.error
        if ans != exp:
            raise Mismatch("%s: %s" % (what, diff(exp, ans)))
        return None

    def expect_job(self, j):
        """The `job` answer's job object, as far as the model knows it."""
        return {
            "id": j.id, "queue": j.queue.name, "state": j.state, "attempt": j.attempt,
            "max_attempts": j.max_attempts, "ttr_ms": j.ttr_ms, "created": j.created,
            "deadline": None if j.deadline_rel is None or j.created is None
            else j.created + j.deadline_rel,
            "parent": j.parent.id if j.parent is not None else None,
            "key": None,  # the model submits no idempotency keys
            "priority": 0,  # nor priorities
            "error": j.error, "result": j.result if j.has_result else None,
            "payload": None if j.state in PAYLOAD_GONE else j.payload,
            "traceparent": j.traceparent,
        }

    def pending_eviction(self):
        """The kept result a pending short deadline will push out when it
        fires (the expired job joins the kept results), or None."""
        if len(self.fin) >= self.keep and any(
                j.timer[1] == "deadline" and not j.final() for j in self.hot_jobs()):
            return self.fin[0]
        return None

    def check_job(self, jid, ans):
        """Checks a `job` answer. A hot job may be in its state before or
        after its short timer, and so may the kept result its expiry would
        push out (and that one's children, which would lose their parent)."""
        j = self.jobs.get(jid)
        what = "job %s" % jid
        if j is None:
            return self.expect_error(ans, "not_found", what)
        gone = self.pending_eviction()
        if gone is j and ans.get("ok") is False:
            return self.expect_error(ans, "not_found", what)
        self.expect_ok(ans, what)
        got = ans.get("job", {})
        if gone is not None and j.parent is gone and got.get("parent") is None:
            got = dict(got, parent=gone.id)
        if j.created is None:
            if not isinstance(got.get("created"), int):
                raise Mismatch("%s: no created time: %s" % (what, got))
            j.created = got["created"]
        exp = self.expect_job(j)
        if got == exp:
            return None
        if j.timer is not None:
            alt = dict(exp)
            alt.update(self.timer_outcome(j))
            if got == alt:
                return None
            raise Mismatch("%s (short timer pending): %s; or %s"
                           % (what, diff(exp, got), diff(alt, got)))
        raise Mismatch("%s: %s" % (what, diff(exp, got)))

    def declare(self, conn, req, ans):
        name = req["queue"]
        what = "declare %s" % name
        q = self.queues.get(name)
        fields = (("capacity", "capacity"), ("ttr_ms", "ttr_ms"), ("max_attempts", "max_attempts"))
        if q is not None:
            for f, attr in fields:
                if f in req and req[f] != getattr(q, attr):
                    return self.expect_error(ans, "conflict", what)
        else:
            q = Queue(name, req.get("capacity", self.default_capacity),
                      req.get("ttr_ms", self.default_ttr),
                      req.get("max_attempts", self.default_attempts))
            self.queues[name] = q
        self.expect_ok(ans, what)
        q.durable = True
        got = ans.get("queue", {})
        exp = self.expect_queue(q)
        exp["name"] = name
        self.compare_queue(what, exp, got)
        return q

    def close(self, conn, req, ans):
        q = self.queues.get(req["queue"])
        what = "close %s" % req["queue"]
        if q is None:
            return self.expect_error(ans, "not_found", what)
        if ans != {"ok": True}:
            raise Mismatch("%s: %s" % (what, json.dumps(ans)))
        if not q.closed:
            q.closed = True
            q.durable = True
        return q

    def set_paused(self, conn, req, ans, paused):
        q = self.queues.get(req["queue"])
        what = "%s %s" % (req["op"], req["queue"])
        if q is None:
            return self.expect_error(ans, "not_found", what)
        if ans != {"ok": True}:
            raise Mismatch("%s: %s" % (what, json.dumps(ans)))
        if q.paused != paused:
            q.paused = paused
            q.durable = True
        return q

    def kick(self, conn, req, ans):
        q = self.queues.get(req["queue"])
        what = "kick %s" % req["queue"]
        if q is None:
            self.expect_error(ans, "not_found", what)
            return []
        n = min(req.get("count", len(q.dead)), len(q.dead))
        kicked = q.dead[:n]
        del q.dead[:n]
        for j in kicked:
            j.attempt = 0
            self.enqueue(j)
            self.record(j)
        if ans != {"ok": True, "kicked": n}:
            raise Mismatch("%s: expected kicked %d: %s" % (what, n, json.dumps(ans)))
        return kicked

    def retry(self, conn, req, ans):
        """A dead job is queued again with fresh attempts, a delayed one now
        (its attempt unchanged); other states are a conflict."""
        what = "retry %s" % req["id"]
        j = self.jobs.get(req["id"])
        if j is None:
            return self.expect_error(ans, "not_found", what)
        if j.state == "dead":
            j.queue.dead.remove(j)
            j.attempt = 0
        elif j.state != "delayed":
            return self.expect_error(ans, "conflict", what)
        self.enqueue(j)
        self.record(j)
        if ans != {"ok": True, "state": "queued"}:
            raise Mismatch("%s: expected state queued: %s" % (what, json.dumps(ans)))
        return j

    def forget(self, j):
        """An operator deleted j: it leaves the table (its children forget
        it, as when a kept result is evicted) and its lists."""
        if j.state == "dead":
            j.queue.dead.remove(j)
        elif j in self.fin:
            self.fin.remove(j)
        self.evict(j)

    def delete(self, conn, req, ans):
        """A job in a state the generator deletes (delayed, dead, finished)
        goes; the answer names the state it was in."""
        what = "delete %s" % req["id"]
        j = self.jobs.get(req["id"])
        if j is None:
            return self.expect_error(ans, "not_found", what)
        was = j.state
        self.forget(j)
        if ans != {"ok": True, "state": was}:
            raise Mismatch("%s: expected state %s: %s" % (what, was, json.dumps(ans)))
        return j

    def purge(self, conn, req, ans):
        """Every dead (or finished) job of the queue goes."""
        what = "purge %s %s" % (req["queue"], req["state"])
        q = self.queues.get(req["queue"])
        if q is None:
            return self.expect_error(ans, "not_found", what)
        if req["state"] == "dead":
            gone = list(q.dead)
        else:
            gone = [j for j in self.fin if j.queue is q]
        for j in gone:
            self.forget(j)
        if ans != {"ok": True, "purged": len(gone)}:
            raise Mismatch("%s: expected purged %d: %s" % (what, len(gone), json.dumps(ans)))
        return gone

    def disconnect(self, conn):
        """A connection closes: its reserved jobs go back at once, the
        attempt used, with the error "connection lost"."""
        held = self.conns.pop(conn, [])
        self.events.pop(conn, None)
        order = list(reversed(held)) if DISCONNECT_NEWEST_FIRST else list(held)
        for j in order:
            j.holder = None
            j.error = "connection lost"
            self.retry_or_bury(j, 0, False)
        return order

    def set_timer(self, j, due, kind):
        j.timer = (due, kind)
        self.timers[j.id] = j

    def timer_outcome(self, j):
        """The fields a hot job's timer changes when it fires."""
        due, kind = j.timer
        if kind in ("delay", "backoff"):
            return {"state": "queued"}
        if kind == "ttr":
            return {"state": "dead" if j.attempt >= j.max_attempts else "queued",
                    "error": "ttr expired"}
        return {"state": "expired", "payload": None}

    def hot_jobs(self):
        return list(self.timers.values())

    def fire_timers(self):
        """Every pending short timer has fired: applies them in due order.
        Returns the jobs they touched (including any forgotten)."""
        hot = sorted(self.hot_jobs(), key=lambda j: j.timer[0])
        self.timers = {}
        for j in hot:
            _, kind = j.timer
            j.timer = None
            if kind in ("delay", "backoff"):
                if j.state == "delayed":
                    self.enqueue(j)
                    self.record(j)
            elif kind == "ttr":
                if j.state == "reserved":
                    self.events.setdefault(j.holder, []).append(
                        {"event": "revoked", "id": j.id, "reason": "ttr"})
                    j.queue.count["expired"] += 1
                    self.unreserve(j)
                    j.error = "ttr expired"
                    self.retry_or_bury(j, 0, False)
            elif kind == "deadline":
                if not j.final():
                    if j.state == "reserved":
                        self.events.setdefault(j.holder, []).append(
                            {"event": "revoked", "id": j.id, "reason": "deadline"})
                        self.unreserve(j)
                    j.queue.count["expired"] += 1
                    self.finalize(j, "expired")
                    self.record(j)
        return hot

    def restart(self, crash):
        """chanqd stops (SIGTERM: connections close first, as if each had
        closed; SIGKILL: nothing more happens) and replays its journal
        (docs/durability.md, "Replay")."""
        orphans = []
        if crash:
            orphans = [j for held in self.conns.values() for j in held]
            self.conns = {}
        else:
            for conn in sorted(self.conns):
                self.disconnect(conn)
        self.events = {}
        # Queued jobs are back in the order they had (every way into a queue
        # is a record, and a compaction's snapshot keeps the order);
        # tombstones are gone; counters start again.
        for q in self.queues.values():
            q.buf = []
            q.count = dict.fromkeys(Queue.COUNTERS, 0)
        for j in sorted(self.jobs.values(), key=lambda j: j.recseq):
            if j.state == "queued":
                j.queue.buf.append(j)
        # A job reserved when the log ended goes to the tail of its queue,
        # after the queued ones, the delivery counted, in the order of the
        # deliveries (of their RESERVE records).
        for j in sorted(orphans, key=lambda j: j.recseq):
            j.holder = None
            j.state = "queued"
            j.queue.buf.append(j)
            self.record(j)
        for q in self.queues.values():
            if len(q.buf) > q.capacity:
                raise AssertionError("model: replay overfills %s (generator bug)" % q.name)
            q.drained = q.closed and not q.buf
        # A queue comes back when a record names it: a QUEUE record, or the
        # SUBMIT of a job the journal keeps. Others may (an old SUBMIT not
        # compacted away yet) or may not.
        kept = set(j.queue.name for j in self.jobs.values())
        self.maybe_queues = {}
        for name, q in list(self.queues.items()):
            if q.durable or name in kept:
                continue
            del self.queues[name]
            if q.submit_record:
                self.maybe_queues[name] = q
        self.totals = None  # learned again from the first stats answer

    def resolve_queues(self, names):
        """After a restart: the queues the server listed settle which of the
        maybe-queues came back."""
        for name, q in list(self.maybe_queues.items()):
            if name in names:
                q.submit_record = True
                self.queues[name] = q
        self.maybe_queues = {}

    def state_counts(self):
        """(queue name, state) -> how many tracked jobs."""
        n = {}
        for j in self.jobs.values():
            k = (j.queue.name, j.state)
            n[k] = n.get(k, 0) + 1
        return n

    def expect_queue(self, q, counts=None):
        n = counts if counts is not None else self.state_counts()
        depth, reserved, delayed, dead = (len(q.live()), n.get((q.name, "reserved"), 0),
                                          n.get((q.name, "delayed"), 0), len(q.dead))
        exp = {"capacity": q.capacity, "ttr_ms": q.ttr_ms, "max_attempts": q.max_attempts,
               "depth": depth, "reserved": reserved, "delayed": delayed, "dead": dead,
               "waiting_submitters": 0, "waiting_fetchers": 0, "paused": q.paused,
               "closed": q.closed}
        exp.update(q.count)
        return exp

    def compare_queue(self, what, exp, got):
        got = dict(got)
        blocked = got.pop("blocked_ms", None)
        age = got.pop("oldest_age_ms", None)
        if not isinstance(blocked, int) or blocked < 0:
            raise Mismatch("%s: blocked_ms %r" % (what, blocked))
        if not isinstance(age, int) or age < 0 or (exp["depth"] == 0 and age != 0):
            raise Mismatch("%s: oldest_age_ms %r with depth %d" % (what, age, exp["depth"]))
        if got != exp:
            raise Mismatch("%s: %s" % (what, diff(exp, got)))

    def expect_server_jobs(self):
        queued = reserved = delayed = dead = 0
        n = self.state_counts()
        for q in self.queues.values():
            e = self.expect_queue(q, n)
            queued += e["depth"]
            reserved += e["reserved"]
            delayed += e["delayed"]
            dead += e["dead"]
        exp = {"queued": queued, "reserved": reserved, "delayed": delayed, "dead": dead,
               "tracked": len(self.jobs),
               "payload_bytes": sum(j.payload_len for j in self.jobs.values()
                                    if j.state not in PAYLOAD_GONE)}
        if self.totals is not None:
            exp.update(self.totals)
        return exp


def diff(exp, got):
    """The differing fields of two dicts, as text."""
    if not isinstance(exp, dict) or not isinstance(got, dict):
        return "expected %s, got %s" % (json.dumps(exp), json.dumps(got))
    parts = []
    for k in sorted(set(exp) | set(got)):
        if exp.get(k, "<absent>") != got.get(k, "<absent>"):
            parts.append("%s: expected %s, got %s" % (k, json.dumps(exp.get(k, "<absent>")),
                                                      json.dumps(got.get(k, "<absent>"))))
    return "; ".join(parts) if parts else "equal"


def short(obj, limit=400):
    """obj as JSON text, cut to limit characters."""
    s = json.dumps(obj, ensure_ascii=False)
    return s if len(s) <= limit else s[:limit] + "..."


