"""Several servers: a chanqd cluster (docs/cluster.md), seen as one.

:func:`connect_leader` finds the serving leader among the servers (each
node's ``hello`` says its ``role`` and the ``leader``'s address) and
returns a plain :class:`~chanq.Client` connected to it. A
:class:`ClusterClient` keeps such a connection and makes every call again
elsewhere when the node it talks to is not the leader (``not_leader``:
nothing was done, the call goes to the leader it names) or dies (the
connection is made again to whichever node leads next, with a bounded
backoff).

What a call lost with the connection becomes is the part to know: a
submit whose answer never came is **submitted again** on the new leader.
The first one may have been committed before the leader died, so a job
can then exist twice (at-least-once). Idempotency keys (``key`` on
submit) make such a resubmit safe once the server has them. Reads and
the ops that are the same when done twice (declare, pause, resume,
close, cancel, stats, job, wait, fetch) are made again too. Acks, nacks,
touches and releases are not: a reservation belongs to the connection
that had it, and when that connection dies the server gives the job back
(to be delivered again), so the call raises :class:`ConnectionLost`.
"""
from __future__ import annotations

import os
import random
import threading
import time
from datetime import datetime
from typing import Any, Callable, Iterable, TypeVar

from . import _proto as P
from ._proto import UNSET, Job, JobId, JobInfo, Many, WaitResult
from .client import Client, EventHandler
from .errors import ChanqError, ConnectionLost, NotLeader, ShuttingDown, Unauthorized

T = TypeVar("T")

# How long a hello may take before the node counts as unreachable: a node
# cut off from the network must not hold up finding the leader elsewhere.
PROBE_TIMEOUT_S = 2.0
# Backoff between rounds over the servers while no leader serves: short
# at first (an election takes about one election timeout), never long.
BACKOFF_FIRST_S = 0.025
BACKOFF_MAX_S = 0.25


def parse_servers(servers: "str | tuple[str, int] | Iterable[str | tuple[str, int]]"
                  ) -> list[str | tuple[str, int]]:
    """The list of addresses in ``"a:1,b:2"``, a ``(host, port)`` tuple or
    a list of addresses; ValueError when it names none or one is malformed."""
    if isinstance(servers, str):
        out: list[str | tuple[str, int]] = [s.strip() for s in servers.split(",") if s.strip()]
    elif isinstance(servers, tuple) and len(servers) == 2 and isinstance(servers[1], int):
        out = [servers]  # type: ignore[list-item]
    else:
        out = list(servers)  # type: ignore[arg-type]
    if not out:
        raise ValueError("no server address given")
    for a in out:
        P.parse_address(a)  # raises ValueError for a malformed one
    return out


def servers_from_env(default: str = P.DEFAULT_ADDRESS) -> str:
    """``CHANQ_SERVERS`` (a comma-separated list), else ``CHANQ_SERVER``,
    else ``default``: the same choice as the ``chanq`` CLI."""
    return os.environ.get("CHANQ_SERVERS") or os.environ.get("CHANQ_SERVER") or default


class Backoff:
    """Delays that double from ``first`` up to ``most``, with jitter so
    that many clients do not knock on the new leader at the same moment."""

    def __init__(self, first: float = BACKOFF_FIRST_S, most: float = BACKOFF_MAX_S) -> None:
        self.first, self.most, self.next = first, most, first

    def delay(self) -> float:
        d = self.next
        self.next = min(self.next * 2, self.most)
        return d * random.uniform(0.5, 1.0)


def _same(a: str | tuple[str, int], b: str | tuple[str, int]) -> bool:
    try:
        return P.parse_address(a) == P.parse_address(b)
    except ValueError:
        return False


def _probe(address: str | tuple[str, int], connect: dict[str, Any]
           ) -> tuple[Client | None, str | None, BaseException | None]:
    """Connects and says hello: (the client when this node serves, the
    leader it names otherwise, why not)."""
    opts = dict(connect)
    token, name = opts.pop("token", None), opts.pop("client_name", None)
    given = opts.get("connect_timeout")
    opts["connect_timeout"] = PROBE_TIMEOUT_S if given is None else min(given, PROBE_TIMEOUT_S)
    try:
        c = Client(address, **opts)
    except ChanqError as e:
        return None, None, e
    try:
        info = c.send([P.hello(name, token)])[0].result(timeout=PROBE_TIMEOUT_S)
    except Unauthorized:
        c.close()
        raise
    except ChanqError as e:
        c.close()
        return None, None, e
    c.hello_answer = info
    c.connected_at = time.monotonic()  # type: ignore[attr-defined]
    role = info.get("role")
    if role is None or role == "leader":  # a single node serves by itself
        return c, None, None
    c.close()
    leader = info.get("leader")
    return None, leader if isinstance(leader, str) and leader else None, \
        NotLeader(f"{address} is {role}; leader: {leader or 'unknown'}")


def connect_leader(servers: Any, *, prefer: str | tuple[str, int] | None = None,
                   timeout: float = 30.0, stop: threading.Event | None = None,
                   **connect: Any) -> Client:
    """A :class:`~chanq.Client` connected to the serving leader among
    ``servers`` (see :func:`parse_servers`), trying ``prefer`` first (a
    leader named by a ``not_leader`` answer). A node whose ``hello`` names
    the leader sends it there at once; while none serves (an election),
    the servers are tried again after a backoff (25 ms doubling to 250 ms).
    A server without a ``role`` (a single chanqd) serves. ``connect``
    holds the :class:`~chanq.Client` options (``token``, ``client_name``,
    TLS...). Raises :class:`ConnectionLost` after ``timeout`` seconds (or
    once ``stop`` is set), :class:`Unauthorized` at once."""
    addrs = parse_servers(servers)
    deadline = time.monotonic() + timeout
    backoff = Backoff()
    last: BaseException | None = None
    while True:
        order = list(addrs)
        if prefer is not None:
            order = [prefer] + [a for a in order if not _same(a, prefer)]
        tried: list[str | tuple[str, int]] = []
        i = 0
        while i < len(order):
            addr = order[i]
            i += 1
            tried.append(addr)
            c, leader, why = _probe(addr, connect)
            if c is not None:
                return c
            last = why
            # The node knows who leads: ask that one next (once per round).
            if leader is not None and not any(_same(leader, t) for t in tried):
                order.insert(i, leader)
        left = deadline - time.monotonic()
        if left <= 0 or (stop is not None and stop.is_set()):
            raise ConnectionLost(f"no serving leader among {', '.join(map(str, addrs))} "
                                 f"within {timeout:g}s (last: {last})")
        pause = min(backoff.delay(), left)
        if stop is not None:
            stop.wait(pause)
        else:
            time.sleep(pause)
        prefer = None


def dial(servers: Any, *, timeout: float = 30.0, stop: threading.Event | None = None,
         **connect: Any) -> Client:
    """One address: a plain :class:`~chanq.Client`; several: the leader's
    (:func:`connect_leader`)."""
    addrs = parse_servers(servers)
    if len(addrs) == 1:
        return Client(addrs[0], **connect)
    return connect_leader(addrs, timeout=timeout, stop=stop, **connect)


class ClusterClient:
    """A client of a chanqd cluster: the :class:`~chanq.Client` ops, each
    made on the serving leader, following ``not_leader`` and failing over
    when the leader dies (see the module's notes on what is made again).

    ``servers``: ``"a:1,b:2,c:3"`` or a list (default: ``CHANQ_SERVERS``,
    ``CHANQ_SERVER``, 127.0.0.1:7420). ``failover_timeout``: how long one
    call may look for a serving leader before it raises
    :class:`ConnectionLost`. ``on_event`` receives every connection's
    events (else they go to :attr:`events`); the other keywords are the
    :class:`~chanq.Client` options. Thread-safe like :class:`~chanq.Client`.
    """

    def __init__(self, servers: Any = None, *, failover_timeout: float = 30.0,
                 on_event: EventHandler | None = None, **connect: Any) -> None:
        self.servers = parse_servers(servers if servers is not None else servers_from_env())
        self.failover_timeout = failover_timeout
        self.on_event = on_event
        self.connect_opts = connect
        self.events: Any = None
        self.failovers = 0
        """How many times the connection was made again after the first."""
        self.resubmitted = 0
        """Submits made again after their connection died unanswered."""
        self._lock = threading.Lock()
        self._gen = 0
        self._client = self._dial(None)
        self.events = self._client.events

    # ---- plumbing ------------------------------------------------------

    def _dial(self, prefer: Any) -> Client:
        c = connect_leader(self.servers, prefer=prefer, timeout=self.failover_timeout,
                           **self.connect_opts)
        if self.on_event is not None:
            c.on_event = self.on_event
        elif self.events is not None:
            c.events = self.events  # one queue across reconnections
        return c

    @property
    def client(self) -> Client:
        """The connection in use now (to the leader, as far as known)."""
        return self._client

    @property
    def server(self) -> str:
        """The address of the node in use now, as ``HOST:PORT``."""
        kind, where = P.parse_address(self._addr())
        return where if kind == "unix" else "%s:%d" % where

    def _addr(self) -> Any:
        try:
            host, port = self._client._sock.getpeername()[:2]
            return (host, port)
        except (OSError, ValueError):
            return self.servers[0]

    def close(self) -> None:
        with self._lock:
            self._client.close()

    def __enter__(self) -> "ClusterClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _current(self) -> tuple[Client, int]:
        with self._lock:
            if self._client.closed:
                self._replace(None)
            return self._client, self._gen

    def _replace(self, prefer: Any) -> None:
        """Under _lock: a new connection to the leader."""
        self._client.close()
        self._client = self._dial(prefer)
        self._gen += 1
        self.failovers += 1

    def reconnect(self, gen: int, prefer: Any = None) -> None:
        """Moves to the leader unless another thread already did since
        generation ``gen`` (of :meth:`_current`)."""
        with self._lock:
            if self._gen == gen or self._client.closed:
                self._replace(prefer)

    def _run(self, make: Callable[[], P.Request[T]], again: bool, submit: bool = False) -> T:
        """Makes a request on the leader. ``again``: may it be sent again
        after its connection died unanswered."""
        deadline = time.monotonic() + self.failover_timeout
        while True:
            c, gen = self._current()
            try:
                return c.call(make())
            except NotLeader as e:  # nothing was done: go where it points
                if time.monotonic() > deadline:
                    raise
                self.reconnect(gen, e.leader)
            except ShuttingDown:  # the node stops: nothing was done
                if time.monotonic() > deadline:
                    raise
                self.reconnect(gen)
            except ConnectionLost:
                if not again or time.monotonic() > deadline:
                    raise
                if submit:
                    self.resubmitted += 1
                self.reconnect(gen)

    # ---- ops -----------------------------------------------------------

    def hello(self, client_name: str | None = None, token: str | None = None) -> dict[str, Any]:
        return self._run(lambda: P.hello(client_name, token), True)

    def ping(self) -> None:
        self._run(P.ping, True)

    def request(self, body: dict[str, Any], wait_s: float | None = 0, *,
                again: bool = False) -> dict[str, Any]:
        """Any request; made again after a failover only with ``again``."""
        return self._run(lambda: P.raw(dict(body), wait_s), again)

    def submit(self, payload: Any, queue: str | None = None, *,
               queues: Iterable[str] | None = None, delay_ms: int | None = None,
               ttr_ms: int | None = None, max_attempts: int | None = None,
               deadline_ms: int | None = None, parent: str | None = None,
               wait_ms: int | None = None, traceparent: str | None = None,
               key: str | None = None, priority: int | None = None,
               run_at: int | datetime | None = None) -> JobId:
        """As :meth:`chanq.Client.submit`; made again on the new leader when
        the answer was lost with the leader (at-least-once; with a ``key``
        the second one returns the first job, ``.duplicate`` true)."""
        qs = None if queues is None else list(queues)
        return self._run(lambda: P.submit(payload, queue, qs, delay_ms, ttr_ms, max_attempts,
                                          deadline_ms, parent, wait_ms, traceparent, key,
                                          priority, run_at), True, submit=True)

    def submit_many(self, payloads: Iterable[Any], queue: str | None = None, *,
                    window: int = 256, **options: Any) -> list[JobId]:
        """Submits pipelined, ``window`` at a time; the ones whose answers
        were lost with a leader are submitted again on the next. Returns
        the ids in order; raises the first error (the others were made)."""
        reqs = [(lambda p=p: P.submit(p, queue, **options)) for p in payloads]
        out: list[JobId | None] = [None] * len(reqs)
        first_error: BaseException | None = None
        start = 0
        while start < len(reqs):
            chunk = range(start, min(start + window, len(reqs)))
            todo = list(chunk)
            deadline = time.monotonic() + self.failover_timeout
            while todo:
                c, gen = self._current()
                lost: list[int] = []
                prefer: Any = None
                try:
                    replies = c.send([reqs[i]() for i in todo])
                except ConnectionLost:
                    replies, lost = [], todo
                for i, r in zip(todo, replies):
                    try:
                        out[i] = r.result()
                    except NotLeader as e:
                        lost.append(i)
                        prefer = e.leader
                    except (ConnectionLost, ShuttingDown):
                        lost.append(i)
                    except ChanqError as e:
                        first_error = first_error or e
                if lost:
                    if time.monotonic() > deadline:
                        raise ConnectionLost(f"{len(lost)} submits found no leader "
                                             f"within {self.failover_timeout:g}s")
                    self.resubmitted += len(lost)
                    self.reconnect(gen, prefer)
                todo = lost
            start += window
        if first_error is not None:
            raise first_error
        return [x for x in out if x is not None]

    def fetch(self, queues: str | Iterable[str], *, count: int | None = None,
              timeout_ms: int | None = None, strict: bool | None = None) -> list[Job]:
        """As :meth:`chanq.Client.fetch`; a fetch lost with its connection
        reserved nothing that stays reserved (the server gives it back), so
        it is made again."""
        qs = queues if isinstance(queues, str) else list(queues)
        return self._run(lambda: P.fetch(qs, count, timeout_ms, strict), True)

    def ack(self, id: str, result: Any = UNSET) -> None:
        self._run(lambda: P.ack(id, result), False)

    def ack_many(self, ids: Iterable[str]) -> Many:
        lst = list(ids)
        return self._run(lambda: P.ack_many(lst), False)

    def nack(self, id: str, error: str | None = None, *, delay_ms: int | None = None,
             dead: bool | None = None) -> str:
        return self._run(lambda: P.nack(id, error, delay_ms, dead), False)

    def nack_many(self, ids: Iterable[str], error: str | None = None, *,
                  delay_ms: int | None = None, dead: bool | None = None) -> Many:
        lst = list(ids)
        return self._run(lambda: P.nack_many(lst, error, delay_ms, dead), False)

    def release(self, id: str) -> None:
        self._run(lambda: P.release(id), False)

    def touch(self, id: str, ttr_ms: int | None = None) -> None:
        self._run(lambda: P.touch(id, ttr_ms), False)

    def consume(self, queues: str | Iterable[str] | None = None, *, prefetch: int | None = None,
                strict: bool | None = None) -> None:
        """Subscribes the current connection; a consume ends with its
        connection, so after a failover call it again (or use a
        :class:`~chanq.Worker` with several servers, which does)."""
        qs = queues if queues is None or isinstance(queues, str) else list(queues)
        self._run(lambda: P.consume(qs, prefetch, strict), False)

    def cancel(self, id: str) -> int:
        return self._run(lambda: P.cancel(id), True)

    def wait(self, id: str, timeout_ms: int | None = None) -> WaitResult:
        return self._run(lambda: P.wait(id, timeout_ms), True)

    def job(self, id: str) -> JobInfo:
        return self._run(lambda: P.job(id), True)

    def declare(self, queue: str, *, capacity: int | None = None, ttr_ms: int | None = None,
                max_attempts: int | None = None) -> dict[str, Any]:
        return self._run(lambda: P.declare(queue, capacity, ttr_ms, max_attempts), True)

    def pause(self, queue: str) -> None:
        self._run(lambda: P.queue_op("pause", queue), True)

    def resume(self, queue: str) -> None:
        self._run(lambda: P.queue_op("resume", queue), True)

    def close_queue(self, queue: str) -> None:
        self._run(lambda: P.queue_op("close", queue), True)

    def kick(self, queue: str, count: int | None = None) -> int:
        """Not made again after a failover (a second kick may move other jobs)."""
        return self._run(lambda: P.kick(queue, count), False)

    def stats(self, queue: str | None = None) -> dict[str, Any]:
        return self._run(lambda: P.stats(queue), True)

    def queues(self, page_size: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        after: str | None = None
        while True:
            page, after = self._run(lambda: P.queues_page(page_size, after), True)
            out.update(page)
            if after is None:
                return out


__all__ = ["Backoff", "ClusterClient", "connect_leader", "dial", "parse_servers",
           "servers_from_env"]
