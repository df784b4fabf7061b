"""The asyncio client: :class:`AsyncClient` has the blocking client's
methods as coroutines. A reader task matches answers to requests (in
order, checked by rid) and hands events to ``on_event`` (a function or a
coroutine function) or to the :attr:`AsyncClient.events` queue. Requests
from many tasks on one client are pipelined on the connection."""
from __future__ import annotations

import asyncio
import collections
import ssl as _ssl
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar

from . import _proto as P
from ._proto import UNSET, Event, Job, JobId, JobInfo, Many, WaitResult
from .client import make_ssl_context
from .errors import ChanqError, ClientTimeout, ConnectionLost, ProtocolError

T = TypeVar("T")

AsyncEventHandler = Callable[[Event], "Awaitable[None] | None"]


class AsyncClient:
    """An asyncio connection to chanqd. Create it with :meth:`connect`
    (same options as :class:`chanq.Client`) or ``async with await
    AsyncClient.connect(...)``."""

    def __init__(self) -> None:
        self.read_timeout: float | None = 10.0
        self.on_event: AsyncEventHandler | None = None
        self.events: "asyncio.Queue[Event]" = asyncio.Queue()
        self.hello_answer: dict[str, Any] | None = None
        self._pending: collections.deque[tuple[int, asyncio.Future[dict[str, Any]]]] = \
            collections.deque()
        self._rid = 0
        self._closed: BaseException | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, address: str | tuple[str, int] = P.DEFAULT_ADDRESS, *,
                      token: str | None = None, client_name: str | None = None,
                      ssl: _ssl.SSLContext | None = None, tls: bool = False,
                      ca_file: str | None = None, cert_file: str | None = None,
                      key_file: str | None = None, server_hostname: str | None = None,
                      connect_timeout: float | None = 10.0, read_timeout: float | None = 10.0,
                      on_event: AsyncEventHandler | None = None) -> "AsyncClient":
        """Connects (and says hello with a token or client name)."""
        self = cls()
        self.read_timeout = read_timeout
        self.on_event = on_event
        kind, where = P.parse_address(address)
        ctx = None
        if tls or ssl is not None or ca_file or cert_file:
            ctx = ssl or make_ssl_context(ca_file, cert_file, key_file)
        try:
            if kind == "unix":
                coro = asyncio.open_unix_connection(where, ssl=ctx, limit=1 << 20,
                                                    server_hostname=server_hostname if ctx else None)
            else:
                coro = asyncio.open_connection(
                    where[0], where[1], ssl=ctx, limit=1 << 20,
                    server_hostname=(server_hostname or where[0]) if ctx else None)
            self._reader, self._writer = await asyncio.wait_for(coro, connect_timeout)
        except (OSError, asyncio.TimeoutError, _ssl.SSLError) as e:
            raise ConnectionLost(f"connect {address}: {e!r}") from e
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        if token is not None or client_name is not None:
            try:
                self.hello_answer = await self.hello(client_name, token)
            except BaseException:
                await self.close()
                raise
        return self

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def close(self) -> None:
        """Closes the connection; pending requests fail with :class:`ConnectionLost`."""
        self._fail(ConnectionLost("client closed"))
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._writer is not None:
            try:
                await asyncio.wait_for(self._writer.wait_closed(), 2)
            except (OSError, asyncio.TimeoutError, _ssl.SSLError, ConnectionError):
                pass

    def _fail(self, err: BaseException) -> None:
        if self._closed is None:
            self._closed = err
        if self._writer is not None:
            self._writer.close()
        pending, self._pending = self._pending, collections.deque()
        for _, fut in pending:
            if not fut.done():
                fut.set_exception(self._closed)
                fut.exception()  # no "never retrieved" warning for abandoned ones

    async def _read_loop(self) -> None:
        assert self._reader is not None
        buf = b""
        try:
            while True:
                data = await self._reader.read(262144)
                if not data:
                    raise ConnectionLost("connection closed by the server")
                buf += data
                if b"\n" not in data:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        await self._dispatch(P.decode(line))
        except asyncio.CancelledError:
            raise
        except ChanqError as e:
            self._fail(e)
        except (OSError, _ssl.SSLError, ValueError) as e:
            self._fail(ConnectionLost(f"connection failed: {e!r}"))

    async def _dispatch(self, obj: dict[str, Any]) -> None:
        if P.is_event(obj):
            ev = Event.from_wire(obj)
            if self.on_event is None:
                self.events.put_nowait(ev)
                return
            try:
                r = self.on_event(ev)
                if asyncio.iscoroutine(r):
                    await r
            except Exception:
                pass
            return
        if not self._pending:
            raise ProtocolError(f"answer with no request outstanding: {obj!r}")
        rid, fut = self._pending.popleft()
        got = obj.get("rid")
        if got is not None and got != rid:
            raise ProtocolError(f"answer for rid {got!r} where rid {rid} was next")
        if not fut.done():
            fut.set_result(obj)

    async def send(self, reqs: Sequence[P.Request[Any]]) -> list["asyncio.Future[Any]"]:
        """Sends requests in one write (pipelined); returns a future per
        request that resolves to its parsed value (or its typed error)."""
        if self._closed is not None:
            raise self._closed
        loop = asyncio.get_running_loop()
        parts: list[bytes] = []
        raw: list[asyncio.Future[dict[str, Any]]] = []
        for req in reqs:
            self._rid += 1
            req.body["rid"] = self._rid
            parts.append(P.encode(req.body))
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._pending.append((self._rid, fut))
            raw.append(fut)
        assert self._writer is not None
        self._writer.write(b"".join(parts))
        try:
            async with self._send_lock:
                await self._writer.drain()
        except (OSError, _ssl.SSLError) as e:
            err = ConnectionLost(f"send failed: {e!r}")
            self._fail(err)
            raise err from e
        return [loop.create_task(self._result(f, r)) for f, r in zip(raw, reqs)]

    async def _result(self, fut: "asyncio.Future[dict[str, Any]]", req: P.Request[T]) -> T:
        timeout = None if self.read_timeout is None or req.wait_s is None \
            else req.wait_s + self.read_timeout
        try:
            answer = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            err = ClientTimeout(f"no answer within {timeout:.3f}s")
            self._fail(err)
            raise err from None
        answer = P.check(answer)
        try:
            return req.parse(answer)
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"unexpected answer {answer!r}") from e

    async def call(self, req: P.Request[T]) -> T:
        """Sends one request and returns its parsed answer."""
        if self._closed is not None:
            raise self._closed
        loop = asyncio.get_running_loop()
        self._rid += 1
        req.body["rid"] = self._rid
        line = P.encode(req.body)
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending.append((self._rid, fut))
        assert self._writer is not None
        self._writer.write(line)
        try:
            async with self._send_lock:
                await self._writer.drain()
        except (OSError, _ssl.SSLError) as e:
            err = ConnectionLost(f"send failed: {e!r}")
            self._fail(err)
            raise err from e
        return await self._result(fut, req)

    async def request(self, body: dict[str, Any], wait_s: float | None = 0) -> dict[str, Any]:
        """Any request as a dict; returns the whole answer, raises the typed error."""
        return await self.call(P.raw(body, wait_s))

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """The next queued event (without ``on_event``), or None after ``timeout`` s."""
        try:
            return await asyncio.wait_for(self.events.get(), timeout)
        except asyncio.TimeoutError:
            return None

    # ---- ops (see chanq.Client for the docs of each) -----------------

    async def hello(self, client_name: str | None = None,
                    token: str | None = None) -> dict[str, Any]:
        return await self.call(P.hello(client_name, token))

    async def ping(self) -> None:
        await self.call(P.ping())

    async def submit(self, payload: Any, queue: str | None = None, *,
                     queues: Iterable[str] | None = None, delay_ms: int | None = None,
                     ttr_ms: int | None = None, max_attempts: int | None = None,
                     deadline_ms: int | None = None, parent: str | None = None,
                     wait_ms: int | None = None, traceparent: str | None = None,
                     key: str | None = None, priority: int | None = None,
                     run_at: int | datetime | None = None) -> JobId:
        """As :meth:`chanq.Client.submit`."""
        return await self.call(P.submit(payload, queue, queues, delay_ms, ttr_ms, max_attempts,
                                        deadline_ms, parent, wait_ms, traceparent, key,
                                        priority, run_at))

    async def submit_many(self, payloads: Iterable[Any], queue: str | None = None, *,
                          window: int = 1024, **options: Any) -> list[JobId]:
        """Pipelined submits, at most ``window`` unanswered; ids in order.
        Raises the first error after every submit was answered."""
        out: list[JobId] = []
        inflight: collections.deque[asyncio.Future[JobId]] = collections.deque()
        first_error: BaseException | None = None
        batch: list[P.Request[JobId]] = []

        async def collect(f: "asyncio.Future[JobId]") -> None:
            nonlocal first_error
            try:
                out.append(await f)
            except ChanqError as e:
                if isinstance(e, ConnectionLost):
                    raise
                if first_error is None:
                    first_error = e

        for p in payloads:
            batch.append(P.submit(p, queue, **options))
            if len(batch) >= 128:
                inflight.extend(await self.send(batch))
                batch = []
                while len(inflight) > window:
                    await collect(inflight.popleft())
        if batch:
            inflight.extend(await self.send(batch))
        while inflight:
            await collect(inflight.popleft())
        if first_error is not None:
            raise first_error
        return out

    async def fetch(self, queues: str | Iterable[str], *, count: int | None = None,
                    timeout_ms: int | None = None, strict: bool | None = None) -> list[Job]:
        return await self.call(P.fetch(queues, count, timeout_ms, strict))

    async def fetch_acking(self, queues: str | Iterable[str], ack: Iterable[str], *,
                           count: int | None = None, timeout_ms: int | None = None,
                           strict: bool | None = None) -> tuple[list[Job], Many]:
        return await self.call(P.fetch_acking(queues, ack, count, timeout_ms, strict))

    async def consume(self, queues: str | Iterable[str] | None = None, *,
                      prefetch: int | None = None, strict: bool | None = None) -> None:
        await self.call(P.consume(queues, prefetch, strict))

    async def cancel_consume(self) -> None:
        await self.call(P.cancel_consume())

    async def ack(self, id: str, result: Any = UNSET) -> None:
        await self.call(P.ack(id, result))

    async def ack_many(self, ids: Iterable[str]) -> Many:
        return await self.call(P.ack_many(ids))

    async def nack_many(self, ids: Iterable[str], error: str | None = None, *,
                        delay_ms: int | None = None, dead: bool | None = None) -> Many:
        return await self.call(P.nack_many(ids, error, delay_ms, dead))

    async def nack(self, id: str, error: str | None = None, *, delay_ms: int | None = None,
                   dead: bool | None = None) -> str:
        return await self.call(P.nack(id, error, delay_ms, dead))

    async def release(self, id: str) -> None:
        await self.call(P.release(id))

    async def touch(self, id: str, ttr_ms: int | None = None) -> None:
        await self.call(P.touch(id, ttr_ms))

    async def cancel(self, id: str) -> int:
        return await self.call(P.cancel(id))

    async def wait(self, id: str, timeout_ms: int | None = None) -> WaitResult:
        return await self.call(P.wait(id, timeout_ms))

    async def job(self, id: str) -> JobInfo:
        return await self.call(P.job(id))

    async def declare(self, queue: str, *, capacity: int | None = None,
                      ttr_ms: int | None = None, max_attempts: int | None = None) -> dict[str, Any]:
        return await self.call(P.declare(queue, capacity, ttr_ms, max_attempts))

    async def pause(self, queue: str) -> None:
        await self.call(P.queue_op("pause", queue))

    async def resume(self, queue: str) -> None:
        await self.call(P.queue_op("resume", queue))

    async def close_queue(self, queue: str) -> None:
        """The protocol's ``close`` (:meth:`close` closes the connection)."""
        await self.call(P.queue_op("close", queue))

    async def kick(self, queue: str, count: int | None = None) -> int:
        return await self.call(P.kick(queue, count))

    async def stats(self, queue: str | None = None) -> dict[str, Any]:
        return await self.call(P.stats(queue))

    async def queues_page(self, count: int | None = None,
                          after: str | None = None) -> tuple[dict[str, Any], str | None]:
        return await self.call(P.queues_page(count, after))

    async def queues(self, page_size: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        after: str | None = None
        while True:
            page, after = await self.queues_page(page_size, after)
            out.update(page)
            if after is None:
                return out
