"""Worker pools: run a function per job, N at a time.

:class:`Worker` (threads, blocking client) and :class:`AsyncWorker`
(asyncio tasks) work alike. By default a pool has one connection that
consumes: the server pushes up to ``prefetch`` jobs (default: the
concurrency) as they come, the N slots run them, and the acks and nacks
go back pipelined, several acks in one request, so a job costs no round
trip of its own. ``mode="fetch"`` keeps the polling model instead: each
slot has its own connection (a reservation, and the events about it,
belong to the connection that got the job) and fetches one job at a time.

A slot runs the handler with the job, acks with its return value as the
result (None: no result), or nacks with the exception's text when it
raises. Running jobs are touched every half ttr (or every ``touch_ms``).
A ``cancel`` event, or a ``revoked`` one (ttr or deadline), for a running
job sets ``ctx.cancelled`` (blocking worker: a threading.Event the
function polls) or cancels the handler's task (async worker); the job is
then neither acked nor nacked (the server took it back); a job taken back
before it started is skipped. :meth:`Worker.stop` (or SIGTERM/SIGINT while
:meth:`Worker.run` runs) stops taking jobs (``cancel_consume``) and lets
running jobs finish; a job received after the stop is released (given
back without counting the delivery). Closing every queue ends the pool
once drained.
"""
from __future__ import annotations

import asyncio
import logging
import queue as _queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, Iterable

from . import _proto as P
from ._proto import Event, Job
from .aio import AsyncClient
from .client import Client
from .aio_cluster import aconnect_leader
from .cluster import Backoff, dial, parse_servers
from .errors import ChanqError, Closed, ConnectionLost, NotLeader, ShuttingDown, Unauthorized

log = logging.getLogger("chanq.worker")


@dataclass
class WorkerStats:
    """What a pool did: jobs fetched (pushed or fetched), acked, nacked
    (the handler raised), cancelled (cancel or revoked event while running,
    or before it started), released (received after the stop), failed
    acks/nacks (``errors``) and ``lost``: jobs an :class:`AsyncWorker`
    with several servers held on a connection that died (a failover),
    their verdict dropped or never made; the server gives them back."""

    fetched: int = 0
    acked: int = 0
    nacked: int = 0
    cancelled: int = 0
    released: int = 0
    errors: int = 0
    lost: int = 0


class JobContext:
    """What the handler gets: the job and its cancellation flag.

    ``cancelled`` is set when the server cancels the job or revokes its
    reservation (``cancel_reason``: ``"cancel"``, ``"ttr"`` or
    ``"deadline"``); a long handler should poll it (or wait on it) and give
    up. In the async worker the handler's task is cancelled as well and
    ``cancelled`` is an :class:`asyncio.Event`."""

    def __init__(self, job: Job, cancelled: threading.Event | asyncio.Event) -> None:
        self.job = job
        self.cancelled = cancelled
        self.cancel_reason: str | None = None
        self.next_touch = 0.0
        self._touch: Callable[[int | None], Any] | None = None

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def payload(self) -> Any:
        return self.job.payload

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def traceparent(self) -> str | None:
        """The job's W3C trace context, or None: the parent of the
        handler's span (docs/operations.md, "Tracing")."""
        return self.job.traceparent

    def touch(self, ttr_ms: int | None = None) -> Any:
        """Extends the reservation now (the pool also does it on its own)."""
        assert self._touch is not None
        return self._touch(ttr_ms)

    def __repr__(self) -> str:
        return f"JobContext(id={self.id!r}, queue={self.queue!r}, attempt={self.attempt})"


def _error_text(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return text[:4000]


def _interval_s(job: Job, touch_ms: int | None) -> float:
    ms = touch_ms if touch_ms else max(job.ttr_ms // 2, 1)
    return ms / 1000.0


def _check_mode(mode: str) -> str:
    if mode not in ("consume", "fetch"):
        raise ValueError(f"mode must be 'consume' or 'fetch', not {mode!r}")
    return mode


def _is_json(value: Any) -> BaseException | None:
    """None when value can be a result, else why not."""
    try:
        P.encode({"result": value})
        return None
    except (TypeError, ValueError) as e:
        return e


# What a slot hands the sender: ("ack", id, result), ("nack", id, text) or
# ("release", id), for the connection the job came from.
_Out = tuple[Any, str, str, Any]

# Acks without a result go out in requests of this many ids at most.
_ACK_BATCH = 1000


def _requests(items: list[_Out], nack_delay_ms: int | None
              ) -> list[tuple[P.Request[Any], str, int]]:
    """The requests for one connection's items: the acks without a result
    in one request (or a few), the rest one each; with the stats field
    each counts to and how many jobs it names."""
    plain = [it[2] for it in items if it[1] == "ack" and it[3] is None]
    out: list[tuple[P.Request[Any], str, int]] = []
    for i in range(0, len(plain), _ACK_BATCH):
        ids = plain[i:i + _ACK_BATCH]
        out.append((P.ack(ids[0], P.UNSET) if len(ids) == 1 else P.ack_many(ids), "acked",
                    len(ids)))
    for _, kind, id, arg in items:
        if kind == "ack" and arg is not None:
            out.append((P.ack(id, arg), "acked", 1))
        elif kind == "nack":
            out.append((P.nack(id, arg, nack_delay_ms, None), "nacked", 1))
        elif kind == "release":
            out.append((P.release(id), "released", 1))
    return out


def _account(stats: WorkerStats, field: str, n: int, value: Any) -> None:
    """Counts an answered request (value: its parsed answer)."""
    if isinstance(value, P.Many):
        setattr(stats, field, getattr(stats, field) + value.done)
        stats.errors += len(value.errors)
        for id, err in value.errors:
            log.warning("job %s: %s", id, err)
    else:
        setattr(stats, field, getattr(stats, field) + n)


class Worker:
    """A pool of ``concurrency`` threads running ``handler(ctx)`` per job.

    ``mode="consume"`` (the default): one connection, jobs pushed up to
    ``prefetch`` at a time (default ``concurrency``; more lets jobs wait,
    reserved, behind the running ones, their ttr running), acks pipelined.
    ``mode="fetch"``: a connection per thread, each fetch bounded by
    ``poll_ms``, so a stop takes effect within it. ``connect`` holds the
    :class:`Client` options (``token``, ``ssl``, ``ca_file``...).
    ``address`` may list several servers (``"a:1,b:2,c:3"`` or a list: a
    cluster): the pool then connects to the serving leader, and after a
    failover connects to the next one and consumes (or fetches) again;
    the jobs it held on the dead connection are given back by the server.
    ``nack_delay_ms``: the retry delay after a raise (None: the server's
    backoff)."""

    def __init__(self, handler: Callable[[JobContext], Any], queues: str | Iterable[str],
                 address: str | tuple[str, int] | list[str] = P.DEFAULT_ADDRESS, *, concurrency: int = 1,
                 prefetch: int | None = None, mode: str = "consume", poll_ms: int = 500,
                 touch_ms: int | None = None, nack_delay_ms: int | None = None,
                 strict: bool = False, **connect: Any) -> None:
        self.handler = handler
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.address = address
        self.concurrency = concurrency
        self.prefetch = prefetch or concurrency
        self.mode = _check_mode(mode)
        self.poll_ms = poll_ms
        self.touch_ms = touch_ms
        self.nack_delay_ms = nack_delay_ms
        self.strict = strict
        self.connect = connect
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, tuple[JobContext, Client]] = {}
        self._threads: list[threading.Thread] = []
        self._toucher: threading.Thread | None = None
        self.error: BaseException | None = None
        # consume mode
        self._jobs: "_queue.Queue[tuple[Client, Job, float]]" = _queue.Queue()
        self._waiting: dict[str, str] = {}  # received, not started -> why taken back ("")
        self._input_done = threading.Event()  # no job will be pushed any more
        self._out: "_queue.Queue[_Out | None]" = _queue.Queue()
        self._client: Client | None = None
        self._helpers: list[threading.Thread] = []
        self._finished = False

    # ---- control -------------------------------------------------------

    def start(self) -> None:
        """Connects, starts the slots (threads) and the toucher; returns at
        once. Raises when it cannot connect."""
        if self.mode == "fetch":
            clients = [self._dial() for _ in range(self.concurrency)]
            for i, c in enumerate(clients):
                self._spawn(self._slot, f"chanq-worker-{i}", c)
        else:
            self._client = self._consume()
            for i in range(self.concurrency):
                self._spawn(self._runner, f"chanq-worker-{i}")
            self._helpers = [threading.Thread(target=self._feed, name="chanq-feeder", daemon=True),
                             threading.Thread(target=self._send_loop, name="chanq-sender",
                                              daemon=True)]
            for t in self._helpers:
                t.start()
        self._toucher = threading.Thread(target=self._touch_loop, name="chanq-toucher",
                                         daemon=True)
        self._toucher.start()

    def _dial(self) -> Client:
        """A connection: to the one address, or to the serving leader of
        several (a cluster; each reconnection looks for it again)."""
        return dial(self.address, stop=self._stop, **self.connect)

    def _spawn(self, fn: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def stop(self) -> None:
        """Stops taking jobs; running jobs finish (see :meth:`join`)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Waits for every slot to end (and their acks to be answered);
        True when they all did."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())
        for t in self._threads:
            t.join(left())
        if any(t.is_alive() for t in self._threads):
            return False
        self._stop.set()
        if not self._finished:
            self._out.put(None)  # the sender ends once the rest is answered
            self._finished = True
        for t in self._helpers:
            t.join(left())
        if any(t.is_alive() for t in self._helpers):
            return False
        if self._client is not None:
            self._client.close()
        if self._toucher is not None:
            self._toucher.join(2)
        return True

    def run(self, install_signals: bool = True) -> WorkerStats:
        """Runs the pool until :meth:`stop`, SIGTERM or SIGINT (handled
        when called from the main thread), or until every queue is closed
        and drained; returns the stats."""
        old: dict[int, Any] = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                old[sig] = signal.signal(sig, lambda *_: self.stop())
        try:
            self.start()
            while not self.join(0.2):
                pass
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
        return self.stats

    def _count(self, field: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.stats, field, getattr(self.stats, field) + n)

    # ---- consume mode --------------------------------------------------

    def _consume(self) -> Client:
        """A connection consuming the queues."""
        c = self._dial()
        c.on_event = lambda ev: self._on_push(c, ev)
        try:
            c.consume(self.queues, prefetch=self.prefetch, strict=self.strict or None)
        except BaseException:
            c.close()
            raise
        return c

    def _on_push(self, client: Client, ev: Event) -> None:
        """The reader thread: jobs to the slots, take-backs to the job."""
        if ev.kind == "jobs":
            with self._lock:
                self.stats.fetched += len(ev.jobs)
                for job in ev.jobs:
                    self._waiting[job.id] = ""
            now = time.monotonic()
            for job in ev.jobs:
                self._jobs.put((client, job, now))
        elif ev.kind == "consume_end" and ev.reason == "closed":
            self._input_done.set()
        elif ev.kind in ("cancel", "revoked"):
            why = "cancel" if ev.kind == "cancel" else (ev.reason or "revoked")
            with self._lock:
                if ev.id in self._waiting:
                    self._waiting[ev.id] = why
                    return
            self._on_event(ev)

    def _feed(self) -> None:
        """Keeps the consume going: stops it on stop() (no job is pushed
        after cancel_consume's answer) and reconnects a lost connection."""
        client = self._client
        assert client is not None
        delay = 0.1
        while not self._input_done.is_set():
            if self._stop.wait(0.05):
                try:
                    client.cancel_consume()
                except ChanqError:
                    pass
                self._input_done.set()
                return
            if not client.closed:
                continue
            log.warning("worker connection lost (%s); reconnecting", client._closed)
            try:
                client = self._client = self._consume()
                delay = 0.1
            except Unauthorized as e:
                self.error = e
                self._input_done.set()
            except ChanqError:
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _runner(self) -> None:
        while True:
            try:
                client, job, arrived = self._jobs.get(timeout=0.05)
            except _queue.Empty:
                if self._input_done.is_set():
                    return
                continue
            with self._lock:
                why = self._waiting.pop(job.id, "")
            if why:
                log.info("job %s taken back (%s) before it ran", job.id, why)
                self._count("cancelled")
            elif client.closed:
                pass  # its connection is gone: the server gave the job back
            elif self._stop.is_set():
                self._out.put((client, "release", job.id, None))
            elif self._renewed(client, job, arrived):
                self._run_pushed(client, job)

    def _renewed(self, client: Client, job: Job, arrived: float) -> bool:
        """A job that waited for a slot past half its ttr (a prefetch above
        the concurrency) is touched before it starts; False when the
        server took it back meanwhile."""
        if time.monotonic() - arrived <= job.ttr_ms / 2000.0:
            return True
        try:
            client.touch(job.id)
            return True
        except ChanqError as e:
            log.info("job %s taken back before it ran: %s", job.id, e)
            self._count("cancelled")
            return False

    def _run_pushed(self, client: Client, job: Job) -> None:
        result, failure, cancelled = self._call(client, job)
        if cancelled:
            return
        if failure is None and result is not None:
            failure = _is_json(result)
        if failure is None:
            self._out.put((client, "ack", job.id, result))
        else:
            self._out.put((client, "nack", job.id, _error_text(failure)))

    def _send_loop(self) -> None:
        """Sends what the slots hand over, in batches, without the slots
        waiting: everything waiting goes out in one write per connection
        (the acks without a result as one request), and the answers are
        counted as they come."""
        while True:
            first = self._out.get()
            items = [first]
            while len(items) < 4 * _ACK_BATCH:
                try:
                    items.append(self._out.get_nowait())
                except _queue.Empty:
                    break
            done = any(it is None for it in items)
            by_client: dict[int, tuple[Client, list[_Out]]] = {}
            for it in items:
                if it is not None:
                    by_client.setdefault(id(it[0]), (it[0], []))[1].append(it)
            for client, its in by_client.values():
                self._send(client, its)
            if done:
                return

    def _send(self, client: Client, items: list[_Out]) -> None:
        reqs = _requests(items, self.nack_delay_ms)
        try:
            replies = client.send([r for r, _, _ in reqs])
        except ChanqError as e:
            log.warning("worker: %d answers lost: %s", len(items), e)
            self._count("errors", len(items))
            return
        for reply, (_, field, n) in zip(replies, reqs):
            try:
                value = reply.result()
                with self._lock:
                    _account(self.stats, field, n, value)
            except ChanqError as e:
                log.warning("worker: %s", e)
                self._count("errors", n)

    # ---- fetch mode ----------------------------------------------------

    def _on_event(self, ev: Event) -> None:
        with self._lock:
            entry = self._running.get(ev.id)
        if entry is not None and ev.kind in ("cancel", "revoked"):
            ctx = entry[0]
            ctx.cancel_reason = "cancel" if ev.kind == "cancel" else (ev.reason or "revoked")
            assert isinstance(ctx.cancelled, threading.Event)
            ctx.cancelled.set()

    def _slot(self, client: Client) -> None:
        client.on_event = self._on_event
        try:
            while not self._stop.is_set():
                try:
                    jobs = client.fetch(self.queues, timeout_ms=self.poll_ms,
                                        strict=self.strict or None)
                except (Closed, ShuttingDown):
                    return
                except Unauthorized as e:
                    self.error = e
                    return
                except (ConnectionLost, NotLeader) as e:
                    if self._stop.is_set():
                        return
                    log.warning("worker connection lost (%s); reconnecting", e)
                    client.close()
                    client = self._reconnect()
                    if client is None:
                        return
                    continue
                for job in jobs:
                    self._count("fetched")
                    if self._stop.is_set():
                        try:
                            client.release(job.id)
                            self._count("released")
                        except ChanqError:
                            self._count("errors")
                        continue
                    self._run(client, job)
        finally:
            client.close()

    def _reconnect(self) -> Client | None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                c = self._dial()
                c.on_event = self._on_event
                return c
            except ChanqError:
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        return None

    def _run(self, client: Client, job: Job) -> None:
        result, failure, cancelled = self._call(client, job)
        if cancelled:
            return
        try:
            if failure is None:
                try:
                    client.ack(job.id, result)
                    self._count("acked")
                    return
                except (TypeError, ValueError) as e:  # result is not JSON
                    failure = e
            client.nack(job.id, _error_text(failure), delay_ms=self.nack_delay_ms)
            self._count("nacked")
        except ChanqError as e:
            log.warning("job %s: %s", job.id, e)
            self._count("errors")

    # ---- both ----------------------------------------------------------

    def _call(self, client: Client, job: Job) -> tuple[Any, BaseException | None, bool]:
        """Runs the handler: (result, the exception it raised, whether the
        server took the job back meanwhile)."""
        ctx = JobContext(job, threading.Event())
        ctx._touch = lambda ttr_ms: client.touch(job.id, ttr_ms)
        ctx.next_touch = time.monotonic() + _interval_s(job, self.touch_ms)
        with self._lock:
            self._running[job.id] = (ctx, client)
        result: Any = None
        failure: BaseException | None = None
        try:
            try:
                result = self.handler(ctx)
            except Exception as e:
                failure = e
        finally:
            with self._lock:
                self._running.pop(job.id, None)
        if ctx.cancelled.is_set():
            self._count("cancelled")
            return None, None, True
        return result, failure, False

    def _touch_loop(self) -> None:
        while not (self._stop.is_set() and not any(t.is_alive() for t in self._threads)):
            now = time.monotonic()
            with self._lock:
                entries = list(self._running.values())
            soonest = now + 0.25
            for ctx, client in entries:
                if ctx.next_touch <= now and not ctx.cancelled.is_set():
                    ctx.next_touch = now + _interval_s(ctx.job, self.touch_ms)
                    try:  # do not wait for the answer: the reader drops it
                        client.send([P.touch(ctx.id, None)])
                    except ChanqError:
                        pass
                soonest = min(soonest, ctx.next_touch)
            time.sleep(max(0.005, min(0.25, soonest - time.monotonic())))


async def _adial(address: Any, **connect: Any) -> AsyncClient:
    """One address: an AsyncClient; several: the serving leader's."""
    addrs = parse_servers(address)
    if len(addrs) == 1:
        return await AsyncClient.connect(addrs[0], **connect)
    return await aconnect_leader(addrs, **connect)


# Errors after which a pool with several servers looks for the leader again.
_FAILOVER = (ConnectionLost, NotLeader, ShuttingDown)


class AsyncWorker:
    """A pool of ``concurrency`` asyncio tasks running ``await handler(ctx)``
    per job. A ``cancel`` (or ``revoked``) event cancels the handler's task.
    Same options as :class:`Worker` (``mode="consume"`` by default: one
    connection, jobs pushed, acks pipelined).

    ``address`` may list several servers (``"a:1,b:2,c:3"`` or a list: a
    cluster). In consume mode the pool then consumes from the serving
    leader, and when that connection is lost, or its node stops serving
    (``consume_end`` with ``shutting_down``, or ``not_leader``), it finds
    the leader again (as :func:`chanq.aconnect_leader`, with its backoff;
    tried again until :meth:`stop`) and consumes again with the same
    options. The jobs it held on the lost connection are not acked or
    nacked: their reservation died with the connection, and the server
    (or the new leader) delivers them again, their attempt counted. A
    handler running then finishes, but its verdict is dropped and counted
    in ``stats.lost``, as is a job received and not yet started. Delivery
    is therefore at least once across a failover: make handlers
    idempotent. ``failovers`` counts the reconnections. With one server,
    or in fetch mode, a lost connection ends the pool (``error`` says why).
    """

    def __init__(self, handler: Callable[[JobContext], Awaitable[Any]],
                 queues: str | Iterable[str],
                 address: str | tuple[str, int] | list[str] = P.DEFAULT_ADDRESS, *,
                 concurrency: int = 1, prefetch: int | None = None, mode: str = "consume",
                 poll_ms: int = 500, touch_ms: int | None = None,
                 nack_delay_ms: int | None = None, strict: bool = False,
                 **connect: Any) -> None:
        self.handler = handler
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.address = address
        self.concurrency = concurrency
        self.prefetch = prefetch or concurrency
        self.mode = _check_mode(mode)
        self.poll_ms = poll_ms
        self.touch_ms = touch_ms
        self.nack_delay_ms = nack_delay_ms
        self.strict = strict
        self.connect = connect
        self.stats = WorkerStats()
        self.error: BaseException | None = None
        self.failovers = 0
        self._servers = parse_servers(address)
        self._stop: asyncio.Event | None = None
        self._running: dict[str, tuple[JobContext, "asyncio.Task[Any]"]] = {}
        # consume mode
        self._client: AsyncClient | None = None  # the connection consuming now
        self._leaving: AsyncClient | None = None  # its node said shutting_down
        self._old: list[AsyncClient] = []  # earlier ones, kept for their verdicts
        self._jobs: "asyncio.Queue[tuple[AsyncClient, Job, float] | None]" = asyncio.Queue()
        self._out: "asyncio.Queue[_Out | None]" = asyncio.Queue()
        self._waiting: dict[tuple[AsyncClient, str], str] = {}
        self._input_done = False

    @property
    def _cluster(self) -> bool:
        return self.mode == "consume" and len(self._servers) > 1

    def stop(self) -> None:
        """Stops taking jobs; running jobs finish."""
        if self._stop is not None:
            self._stop.set()

    async def run(self, install_signals: bool = True) -> WorkerStats:
        """Runs the pool until :meth:`stop`, SIGTERM/SIGINT or every queue
        closed and drained; returns the stats."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        sigs: list[int] = []
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
                sigs.append(sig)
        try:
            if self.mode == "fetch":
                clients = [await _adial(self.address, on_event=self._on_event, **self.connect)
                           for _ in range(self.concurrency)]
                await asyncio.gather(*(self._slot(c) for c in clients))
            else:
                await self._run_consume()
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)
        return self.stats

    def _on_event(self, ev: Event) -> None:
        entry = self._running.get(ev.id)
        if entry is not None and ev.kind in ("cancel", "revoked"):
            ctx, task = entry
            ctx.cancel_reason = "cancel" if ev.kind == "cancel" else (ev.reason or "revoked")
            ctx.cancelled.set()
            task.cancel()

    # ---- consume mode --------------------------------------------------

    async def _consume(self, prefer: Any = None) -> AsyncClient:
        """A connection (to the leader, given several servers) consuming
        the queues; the pushes name the connection they came on."""
        if self._cluster:
            client = await aconnect_leader(self._servers, prefer=prefer, **self.connect)
        else:
            client = await _adial(self.address, **self.connect)
        client.on_event = lambda ev: self._on_push(client, ev)
        try:
            await client.consume(self.queues, prefetch=self.prefetch,
                                 strict=self.strict or None)
        except BaseException:
            await client.close()
            raise
        return client

    async def _run_consume(self) -> None:
        self._client = await self._consume()
        sender = asyncio.get_running_loop().create_task(self._send_loop())
        feeder = asyncio.get_running_loop().create_task(self._feed())
        try:
            await asyncio.gather(*(self._runner() for _ in range(self.concurrency)))
        finally:
            feeder.cancel()
            self._out.put_nowait(None)
            try:
                await sender
            finally:
                assert self._client is not None
                for c in self._old + [self._client]:
                    await c.close()

    def _end_input(self) -> None:
        """No job will be pushed any more: the slots end once the rest ran."""
        if not self._input_done:
            self._input_done = True
            for _ in range(self.concurrency):
                self._jobs.put_nowait(None)

    def _on_push(self, client: AsyncClient, ev: Event) -> None:
        if ev.kind == "jobs":
            self.stats.fetched += len(ev.jobs)
            now = time.monotonic()
            for job in ev.jobs:
                self._waiting[(client, job.id)] = ""
                self._jobs.put_nowait((client, job, now))
        elif ev.kind == "consume_end" and client is self._client:
            if ev.reason == "closed":
                self._end_input()
            elif ev.reason == "shutting_down" and self._cluster:
                self._leaving = client  # the feeder finds the next leader
        elif ev.kind in ("cancel", "revoked") and (client, ev.id) in self._waiting:
            self._waiting[(client, ev.id)] = \
                "cancel" if ev.kind == "cancel" else (ev.reason or "revoked")
        else:
            self._on_event(ev)

    async def _feed(self) -> None:
        """Stops the consume on stop() (no job is pushed after
        cancel_consume's answer); a lost connection ends the pool, or,
        given several servers, makes it consume on the leader again."""
        assert self._stop is not None
        while not self._input_done:
            try:
                await asyncio.wait_for(self._stop.wait(), 0.05)
            except asyncio.TimeoutError:
                client = self._client
                assert client is not None
                if not client.closed and self._leaving is not client:
                    continue
                if self._cluster:
                    await self._failover(client)
                else:
                    self.error = client._closed
                    self._end_input()
                continue
            client = self._client
            assert client is not None
            if not client.closed:
                try:
                    await client.cancel_consume()
                except ChanqError:
                    pass
            self._end_input()

    async def _failover(self, lost: AsyncClient) -> None:
        """Consumes on the (new) leader, tried again with a backoff until
        it works or stop(). The lost connection stays open while its node
        keeps it (a node shutting down may still take the verdicts)."""
        assert self._stop is not None
        log.warning("worker connection lost (%s); looking for the leader",
                    lost._closed or "its node stops serving")
        self._old = [c for c in self._old if not c.closed]
        if not lost.closed:
            self._old.append(lost)
        backoff = Backoff()
        prefer: Any = None
        while not self._stop.is_set():
            try:
                client = await self._unless_stopped(self._consume(prefer))
            except Unauthorized as e:
                self.error = e
                self._end_input()
                return
            except NotLeader as e:
                prefer = e.leader
            except ChanqError as e:
                log.info("worker: no leader yet: %s", e)
                prefer = None
            else:
                if client is not None:
                    self._client = client
                    self.failovers += 1
                    log.warning("worker consuming again (failover %d)", self.failovers)
                return
            try:
                await asyncio.wait_for(self._stop.wait(), backoff.delay())
            except asyncio.TimeoutError:
                pass

    async def _unless_stopped(self, coro: Coroutine[Any, Any, AsyncClient]
                              ) -> AsyncClient | None:
        """coro's connection, or None when stop() came first (closing what
        coro made, if it made one anyway)."""
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        task = loop.create_task(coro)
        stopped = loop.create_task(self._stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not task.done():
            # Cancelled again until it ends: Python 3.11's wait_for, inside
            # the search, can swallow a cancel that meets the end of the
            # call it waits for, and the search would go on to its timeout.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            if task.cancelled() or task.exception() is not None:
                return None
            await task.result().close()
            return None
        return task.result()

    async def _runner(self) -> None:
        assert self._stop is not None
        while True:
            item = await self._jobs.get()
            if item is None:
                return
            client, job, arrived = item
            why = self._waiting.pop((client, job.id), "")
            if why:
                log.info("job %s taken back (%s) before it ran", job.id, why)
                self.stats.cancelled += 1
            elif client.closed or any(client is c for c in self._old):
                # The server gave it back with the connection (or will,
                # a connection left for a new leader).
                if self._cluster:
                    self.stats.lost += 1
            elif self._stop.is_set():
                self._out.put_nowait((client, "release", job.id, None))
            elif not await self._renewed(client, job, arrived):
                self.stats.cancelled += 1
            else:
                result, failure, cancelled = await self._execute(client, job)
                if cancelled:
                    continue
                if failure is None and result is not None:
                    failure = _is_json(result)
                if failure is None:
                    self._out.put_nowait((client, "ack", job.id, result))
                else:
                    self._out.put_nowait((client, "nack", job.id, _error_text(failure)))

    async def _renewed(self, client: AsyncClient, job: Job, arrived: float) -> bool:
        """As Worker's: a job that waited past half its ttr is touched first."""
        if time.monotonic() - arrived <= job.ttr_ms / 2000.0:
            return True
        try:
            await client.touch(job.id)
            return True
        except ChanqError as e:
            log.info("job %s taken back before it ran: %s", job.id, e)
            return False

    async def _send_loop(self) -> None:
        """As Worker's sender: what waits goes out in one write per
        connection, the acks without a result as one request, answers
        counted as they come."""
        while True:
            items = [await self._out.get()]
            while len(items) < 4 * _ACK_BATCH and not self._out.empty():
                items.append(self._out.get_nowait())
            by_client: dict[int, tuple[AsyncClient, list[_Out]]] = {}
            for it in items:
                if it is not None:
                    by_client.setdefault(id(it[0]), (it[0], []))[1].append(it)
            for client, its in by_client.values():
                await self._send(client, its)
            if any(it is None for it in items):
                return

    async def _send(self, client: AsyncClient, items: list[_Out]) -> None:
        """Sends one connection's verdicts. Given several servers, those
        of a lost connection (or refused by a node that stopped serving)
        are dropped into ``lost``: the jobs come back on the leader."""
        if self._cluster and client.closed:
            log.warning("worker: %d verdicts dropped: their connection was lost", len(items))
            self.stats.lost += len(items)
            return
        reqs = _requests(items, self.nack_delay_ms)
        try:
            futs = await client.send([r for r, _, _ in reqs])
        except ChanqError as e:
            log.warning("worker: %d answers lost: %s", len(items), e)
            if self._cluster and isinstance(e, _FAILOVER):
                self.stats.lost += len(items)
            else:
                self.stats.errors += len(items)
            return
        for fut, (_, field, n) in zip(futs, reqs):
            try:
                _account(self.stats, field, n, await fut)
            except ChanqError as e:
                log.warning("worker: %s", e)
                if self._cluster and isinstance(e, _FAILOVER):
                    self.stats.lost += n
                    if client is self._client and not isinstance(e, ConnectionLost):
                        self._leaving = client  # not_leader: the feeder fails over
                else:
                    self.stats.errors += n

    # ---- fetch mode ----------------------------------------------------

    async def _slot(self, client: AsyncClient) -> None:
        assert self._stop is not None
        try:
            while not self._stop.is_set():
                try:
                    jobs = await client.fetch(self.queues, timeout_ms=self.poll_ms,
                                              strict=self.strict or None)
                except (Closed, ShuttingDown):
                    return
                except (Unauthorized, ConnectionLost) as e:
                    if not self._stop.is_set():
                        self.error = e
                    return
                for job in jobs:
                    self.stats.fetched += 1
                    if self._stop.is_set():
                        try:
                            await client.release(job.id)
                            self.stats.released += 1
                        except ChanqError:
                            self.stats.errors += 1
                        continue
                    await self._run(client, job)
        finally:
            await client.close()

    async def _run(self, client: AsyncClient, job: Job) -> None:
        result, failure, cancelled = await self._execute(client, job)
        if cancelled:
            return
        try:
            if failure is None:
                try:
                    await client.ack(job.id, result)
                    self.stats.acked += 1
                    return
                except (TypeError, ValueError) as e:
                    failure = e
            await client.nack(job.id, _error_text(failure), delay_ms=self.nack_delay_ms)
            self.stats.nacked += 1
        except ChanqError as e:
            log.warning("job %s: %s", job.id, e)
            self.stats.errors += 1

    # ---- both ----------------------------------------------------------

    async def _execute(self, client: AsyncClient,
                       job: Job) -> tuple[Any, BaseException | None, bool]:
        """Runs the handler as a task, touching the job meanwhile: (result,
        the exception it raised, whether the server took the job back)."""
        ctx = JobContext(job, asyncio.Event())
        ctx._touch = lambda ttr_ms: client.touch(job.id, ttr_ms)
        task = asyncio.get_running_loop().create_task(self.handler(ctx))
        self._running[job.id] = (ctx, task)

        async def toucher() -> None:
            while True:
                await asyncio.sleep(_interval_s(job, self.touch_ms))
                try:
                    await client.touch(job.id)
                except ChanqError:
                    return
        touching = asyncio.get_running_loop().create_task(toucher())
        failure: BaseException | None = None
        result: Any = None
        try:
            result = await task
        except asyncio.CancelledError:
            if not ctx.cancelled.is_set():  # we are being cancelled, not the job
                touching.cancel()
                raise
        except Exception as e:
            failure = e
        finally:
            touching.cancel()
            # A job delivered again (after a failover) may run under the
            # same id meanwhile: leave its entry alone.
            entry = self._running.get(job.id)
            if entry is not None and entry[1] is task:
                del self._running[job.id]
        if ctx.cancelled.is_set():
            self.stats.cancelled += 1
            return None, None, True
        return result, failure, False
