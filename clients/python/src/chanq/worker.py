"""Worker pools: run a function per job, N at a time.

:class:`Worker` (threads, blocking client) and :class:`AsyncWorker`
(asyncio tasks) share the model of ``chanq work``: each of the N slots has
its own connection, because a reservation and the events about it belong
to the connection that fetched. A slot fetches one job, runs the handler,
acks with its return value as the result, or nacks with the exception's
text when it raises. Running jobs are touched every half ttr (or every
``touch_ms``). A ``cancel`` event, or a ``revoked`` one (ttr or deadline),
for a running job sets ``ctx.cancelled`` (blocking worker: a
threading.Event the function polls) or cancels the handler's task (async
worker); the job is then neither acked nor nacked (the server took it back).
:meth:`Worker.stop` (or SIGTERM/SIGINT while :meth:`Worker.run` runs) stops
fetching and lets running jobs finish; a job fetched after the stop is
released (given back without counting the delivery). Closing every queue
ends the pool once drained.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

from . import _proto as P
from ._proto import Event, Job
from .aio import AsyncClient
from .client import Client
from .errors import ChanqError, Closed, ConnectionLost, ShuttingDown, Unauthorized

log = logging.getLogger("chanq.worker")


@dataclass
class WorkerStats:
    """What a pool did: jobs fetched, acked, nacked (the handler raised),
    cancelled (cancel or revoked event while running), released (fetched
    after the stop) and failed acks/nacks (``errors``)."""

    fetched: int = 0
    acked: int = 0
    nacked: int = 0
    cancelled: int = 0
    released: int = 0
    errors: int = 0


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


class Worker:
    """A pool of ``concurrency`` threads running ``handler(ctx)`` per job.

    ``connect`` holds the :class:`Client` options (``token``, ``ssl``,
    ``ca_file``...). ``poll_ms`` bounds each fetch, so a stop takes effect
    within it. ``nack_delay_ms``: the retry delay after a raise (None: the
    server's backoff)."""

    def __init__(self, handler: Callable[[JobContext], Any], queues: str | Iterable[str],
                 address: str | tuple[str, int] = P.DEFAULT_ADDRESS, *, concurrency: int = 1,
                 poll_ms: int = 500, touch_ms: int | None = None,
                 nack_delay_ms: int | None = None, strict: bool = False,
                 **connect: Any) -> None:
        self.handler = handler
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.address = address
        self.concurrency = concurrency
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

    # ---- control -------------------------------------------------------

    def start(self) -> None:
        """Starts the slots (threads) and the toucher; returns at once."""
        clients = [Client(self.address, **self.connect) for _ in range(self.concurrency)]
        for i, c in enumerate(clients):
            t = threading.Thread(target=self._slot, args=(c,), name=f"chanq-worker-{i}",
                                 daemon=True)
            self._threads.append(t)
            t.start()
        self._toucher = threading.Thread(target=self._touch_loop, name="chanq-toucher",
                                         daemon=True)
        self._toucher.start()

    def stop(self) -> None:
        """Stops fetching; running jobs finish (see :meth:`join`)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Waits for every slot to end; True when they all did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done = not any(t.is_alive() for t in self._threads)
        if done:
            self._stop.set()
            if self._toucher is not None:
                self._toucher.join(2)
        return done

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

    # ---- the slots -----------------------------------------------------

    def _count(self, field: str) -> None:
        with self._lock:
            setattr(self.stats, field, getattr(self.stats, field) + 1)

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
                except ConnectionLost as e:
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
                c = Client(self.address, **self.connect)
                c.on_event = self._on_event
                return c
            except ChanqError:
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        return None

    def _run(self, client: Client, job: Job) -> None:
        ctx = JobContext(job, threading.Event())
        ctx._touch = lambda ttr_ms: client.touch(job.id, ttr_ms)
        ctx.next_touch = time.monotonic() + _interval_s(job, self.touch_ms)
        with self._lock:
            self._running[job.id] = (ctx, client)
        try:
            try:
                result = self.handler(ctx)
                failure: BaseException | None = None
            except Exception as e:
                failure = e
        finally:
            with self._lock:
                self._running.pop(job.id, None)
        if ctx.cancelled.is_set():
            self._count("cancelled")
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


class AsyncWorker:
    """A pool of ``concurrency`` asyncio tasks running ``await handler(ctx)``
    per job. A ``cancel`` (or ``revoked``) event cancels the handler's task.
    Same options as :class:`Worker`."""

    def __init__(self, handler: Callable[[JobContext], Awaitable[Any]],
                 queues: str | Iterable[str],
                 address: str | tuple[str, int] = P.DEFAULT_ADDRESS, *, concurrency: int = 1,
                 poll_ms: int = 500, touch_ms: int | None = None,
                 nack_delay_ms: int | None = None, strict: bool = False,
                 **connect: Any) -> None:
        self.handler = handler
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.address = address
        self.concurrency = concurrency
        self.poll_ms = poll_ms
        self.touch_ms = touch_ms
        self.nack_delay_ms = nack_delay_ms
        self.strict = strict
        self.connect = connect
        self.stats = WorkerStats()
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._running: dict[str, tuple[JobContext, "asyncio.Task[Any]"]] = {}

    def stop(self) -> None:
        """Stops fetching; running jobs finish."""
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
            clients = [await AsyncClient.connect(self.address, on_event=self._on_event,
                                                 **self.connect)
                       for _ in range(self.concurrency)]
            await asyncio.gather(*(self._slot(c) for c in clients))
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
            self._running.pop(job.id, None)
        if ctx.cancelled.is_set():
            self.stats.cancelled += 1
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
