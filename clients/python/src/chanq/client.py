"""The blocking client.

One :class:`Client` is one connection to chanqd. A background thread reads
the connection: answers go, in request order, to the calls waiting for
them; events (``cancel``, ``revoked``, and the ``jobs`` a :meth:`Client.consume`
pushes) go to the ``on_event`` callback or to :attr:`Client.events`. So a client may be shared by threads, requests
may be pipelined (:meth:`Client.pipeline`, :meth:`Client.submit_many`),
and events arrive while the caller is busy with a job.
"""
from __future__ import annotations

import collections
import queue as _queue
import socket
import ssl as _ssl
import threading
from datetime import datetime
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

from . import _proto as P
from ._proto import UNSET, Event, Job, JobId, JobInfo, Many, WaitResult
from .errors import ChanqError, ClientTimeout, ConnectionLost, ProtocolError

T = TypeVar("T")

EventHandler = Callable[[Event], None]


def make_ssl_context(ca_file: str | None = None, cert_file: str | None = None,
                     key_file: str | None = None) -> _ssl.SSLContext:
    """A client TLS context: verifies the server against ``ca_file`` (else
    the system's CAs), presents ``cert_file``/``key_file`` when given."""
    ctx = _ssl.create_default_context(cafile=ca_file)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class _Plain:
    """A cleartext connection; writers serialize on send_lock."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.send_lock = threading.Lock()

    def recv(self) -> bytes:
        return self.sock.recv(262144)


class _TLS:
    """TLS over a plain socket through memory BIOs, so that the reader
    thread and writers never call into one SSL object at the same time
    (OpenSSL's objects are not safe for that) while network I/O, which may
    block, happens outside the SSL lock."""

    def __init__(self, sock: socket.socket, ctx: _ssl.SSLContext, hostname: str | None) -> None:
        self.sock = sock
        self.inc = _ssl.MemoryBIO()
        self.out = _ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=False, server_hostname=hostname)
        self.ssl_lock = threading.Lock()
        self.send_lock = threading.Lock()
        while True:
            try:
                self.obj.do_handshake()
                break
            except _ssl.SSLWantReadError:
                self._flush()
                data = sock.recv(65536)
                if not data:
                    raise ConnectionLost("connection closed during the TLS handshake")
                self.inc.write(data)
        self._flush()

    def _flush(self) -> None:
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def recv(self) -> bytes:
        while True:
            data = self.sock.recv(262144)
            if not data:
                return b""
            chunks = []
            with self.ssl_lock:
                self.inc.write(data)
                try:
                    while True:
                        chunks.append(self.obj.read(262144))
                except _ssl.SSLWantReadError:
                    pass
                except _ssl.SSLZeroReturnError:
                    return b"".join(chunks)
                pending = self.out.pending
            # Post-handshake bytes of our own (rare) go out now if no writer
            # is busy; else the writer's next send takes them along (never
            # wait here for a writer the server may be pushing back).
            if pending and self.send_lock.acquire(blocking=False):
                try:
                    with self.ssl_lock:
                        out = self.out.read()
                    self.sock.sendall(out)
                finally:
                    self.send_lock.release()
            got = b"".join(chunks)
            if got:
                return got


class Reply(Generic[T]):
    """The answer to one sent request; :meth:`result` waits for it."""

    __slots__ = ("_client", "_lock", "_answer", "_error", "_parse", "_wait_s", "rid")

    def __init__(self, client: "Client", parse: Callable[[dict[str, Any]], T],
                 wait_s: float | None, rid: int) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._lock.acquire()
        self._answer: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._parse = parse
        self._wait_s = wait_s
        self.rid = rid

    def _set(self, answer: dict[str, Any] | None, error: BaseException | None) -> None:
        self._answer, self._error = answer, error
        self._lock.release()

    def done(self) -> bool:
        return self._answer is not None or self._error is not None

    def result(self, timeout: float | None = ...) -> T:  # type: ignore[assignment]
        """Waits for the answer and returns its value or raises its typed
        error. By default waits the server's own wait plus the client's
        read timeout; past it the connection is closed (:class:`ClientTimeout`)."""
        if timeout is ...:
            rt = self._client.read_timeout
            timeout = None if rt is None or self._wait_s is None else self._wait_s + rt
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            err = ClientTimeout(f"no answer within {timeout:.3f}s")
            self._client._fail(err)
            raise err
        self._lock.release()
        if self._error is not None:
            raise self._error
        assert self._answer is not None
        answer = P.check(self._answer)
        try:
            return self._parse(answer)
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"unexpected answer {answer!r}") from e


class Client:
    """A blocking connection to chanqd.

    ``address`` is ``HOST:PORT``, ``[V6]:PORT``, ``unix:PATH`` or a
    ``(host, port)`` tuple. TLS: pass an ``ssl`` context, or ``tls=True``
    with optional ``ca_file``, ``cert_file`` and ``key_file``. With a
    ``token`` or ``client_name`` the client says ``hello`` first.
    ``read_timeout`` (seconds, None: none) is granted on top of a request's
    own waiting (a fetch's ``timeout_ms``, a submit's ``wait_ms``); requests
    whose server-side wait is unbounded are never cut short.
    Events go to ``on_event`` (called on the reader thread: keep it short)
    or, without one, to the :attr:`events` queue.
    """

    def __init__(self, address: str | tuple[str, int] = P.DEFAULT_ADDRESS, *,
                 token: str | None = None, client_name: str | None = None,
                 ssl: _ssl.SSLContext | None = None, tls: bool = False,
                 ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, server_hostname: str | None = None,
                 connect_timeout: float | None = 10.0, read_timeout: float | None = 10.0,
                 on_event: EventHandler | None = None) -> None:
        self.read_timeout = read_timeout
        self.on_event = on_event
        self.events: "_queue.Queue[Event]" = _queue.Queue()
        self.hello_answer: dict[str, Any] | None = None
        self._pending: collections.deque[Reply[Any]] = collections.deque()
        self._rid = 0
        self._lock = threading.Lock()  # rid, pending order, closed flag
        self._closed: BaseException | None = None
        kind, where = P.parse_address(address)
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(connect_timeout)
            try:
                sock.connect(where)
            except OSError as e:
                sock.close()
                raise ConnectionLost(f"connect {address}: {e}") from e
        else:
            try:
                sock = socket.create_connection(where, timeout=connect_timeout)
            except OSError as e:
                raise ConnectionLost(f"connect {where[0]}:{where[1]}: {e}") from e
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        if tls or ssl is not None or ca_file or cert_file:
            ctx = ssl or make_ssl_context(ca_file, cert_file, key_file)
            host = server_hostname or (where[0] if kind == "tcp" else None)
            try:
                self._io: _Plain | _TLS = _TLS(sock, ctx, host)
            except (OSError, _ssl.SSLError) as e:
                sock.close()
                if isinstance(e, ConnectionLost):
                    raise
                raise ConnectionLost(f"TLS handshake: {e}") from e
        else:
            self._io = _Plain(sock)
        sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name="chanq-reader", daemon=True)
        self._reader.start()
        if token is not None or client_name is not None:
            try:
                self.hello_answer = self.hello(client_name, token)
            except BaseException:
                self.close()
                raise

    # ---- plumbing ------------------------------------------------------

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection (the server gives this connection's
        reserved jobs back at once). Pending requests fail."""
        self._fail(ConnectionLost("client closed"))
        if self._reader is not threading.current_thread():
            self._reader.join(5)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def _fail(self, err: BaseException) -> None:
        with self._lock:
            if self._closed is None:
                self._closed = err
            pending = list(self._pending)
            self._pending.clear()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        for r in pending:
            r._set(None, self._closed)

    def _read_loop(self) -> None:
        buf = b""
        try:
            while True:
                data = self._io.recv()
                if not data:
                    raise ConnectionLost("connection closed by the server")
                buf += data
                if b"\n" not in data:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._dispatch(P.decode(line))
        except ChanqError as e:
            self._fail(e)
        except (OSError, _ssl.SSLError, ValueError) as e:
            self._fail(ConnectionLost(f"connection failed: {e}"))

    def _dispatch(self, obj: dict[str, Any]) -> None:
        if P.is_event(obj):
            ev = Event.from_wire(obj)
            if self.on_event is not None:
                try:
                    self.on_event(ev)
                except Exception:  # a failing handler must not kill the reader
                    pass
            else:
                self.events.put(ev)
            return
        try:
            r = self._pending.popleft()
        except IndexError:
            raise ProtocolError(f"answer with no request outstanding: {obj!r}") from None
        rid = obj.get("rid")
        if rid is not None and rid != r.rid:
            raise ProtocolError(f"answer for rid {rid!r} where rid {r.rid} was next")
        r._set(obj, None)

    def send(self, reqs: Sequence[P.Request[Any]]) -> list[Reply[Any]]:
        """Sends requests in one write (pipelined) and returns their
        :class:`Reply` handles, in order."""
        replies: list[Reply[Any]] = []
        parts: list[bytes] = []
        with self._lock:
            if self._closed is not None:
                raise self._closed
            for req in reqs:
                self._rid += 1
                req.body["rid"] = self._rid
                parts.append(P.encode(req.body))
                replies.append(Reply(self, req.parse, req.wait_s, self._rid))
        data = b"".join(parts)
        # Order on the wire must be the order in _pending: one send lock.
        send_lock = self._io.send_lock
        with send_lock:
            with self._lock:
                if self._closed is not None:
                    raise self._closed
                self._pending.extend(replies)
            try:
                if isinstance(self._io, _TLS):
                    with self._io.ssl_lock:
                        self._io.obj.write(data)
                        data = self._io.out.read()
                self._sock.sendall(data)
            except (OSError, _ssl.SSLError) as e:
                err = ConnectionLost(f"send failed: {e}")
                self._fail(err)
                raise err from e
        return replies

    def call(self, req: P.Request[T]) -> T:
        """Sends one request and returns its parsed answer."""
        return self.send([req])[0].result()

    def request(self, body: dict[str, Any], wait_s: float | None = 0) -> dict[str, Any]:
        """Any request as a dict (``{"op": ...}``); returns the whole answer,
        raises the typed error. ``wait_s``: how long the server may hold it."""
        return self.call(P.raw(body, wait_s))

    def pipeline(self) -> "Pipeline":
        """A context that queues requests and sends them in large writes;
        each call returns a :class:`Reply`. Leaving the block sends the rest
        (and waits for every answer unless ``wait=False`` on :meth:`Pipeline.flush`)."""
        return Pipeline(self)

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next queued event (without an ``on_event`` handler), or None
        after ``timeout`` seconds."""
        try:
            return self.events.get(timeout=timeout)
        except _queue.Empty:
            return None

    # ---- ops -----------------------------------------------------------

    def hello(self, client_name: str | None = None, token: str | None = None) -> dict[str, Any]:
        """Says who the client is and gives the token; returns the server's answer."""
        return self.call(P.hello(client_name, token))

    def ping(self) -> None:
        self.call(P.ping())

    def submit(self, payload: Any, queue: str | None = None, *,
               queues: Iterable[str] | None = None, delay_ms: int | None = None,
               ttr_ms: int | None = None, max_attempts: int | None = None,
               deadline_ms: int | None = None, parent: str | None = None,
               wait_ms: int | None = None, traceparent: str | None = None,
               key: str | None = None, priority: int | None = None,
               run_at: int | datetime | None = None) -> JobId:
        """Submits a job to ``queue``, or to one of ``queues`` with room
        (send-side select; the returned id's ``.queue`` says which).
        Waits for room up to ``wait_ms`` (server default when None), then
        raises :class:`QueueFull` (or :class:`Timeout` on an unbuffered queue).
        ``traceparent`` (a W3C trace context, "00-TRACEID-PARENTID-FLAGS")
        is kept with the job and comes back as :attr:`Job.traceparent`; a
        malformed one raises :class:`BadRequest`.

        ``key`` (1..128 bytes) is an idempotency key: while a job submitted
        with it is live, and for the server's key-window after, a submit
        with it makes no job and returns that job's id, with
        ``.duplicate`` true. ``priority`` (0..9, default 0): a queue
        delivers its higher levels first. ``run_at`` (ms since the epoch,
        or a datetime; at most 365 days ahead, not with ``delay_ms``): the
        job is ready then. The server checks them: a bad value raises
        :class:`BadRequest` and makes no job."""
        return self.call(P.submit(payload, queue, queues, delay_ms, ttr_ms, max_attempts,
                                  deadline_ms, parent, wait_ms, traceparent, key, priority,
                                  run_at))

    def submit_many(self, payloads: Iterable[Any], queue: str | None = None, *,
                    window: int = 1024, **options: Any) -> list[JobId]:
        """Submits many jobs pipelined, at most ``window`` unanswered at a
        time; returns their ids in order. Raises the first error (the
        submits sent before and after it were still made)."""
        out: list[JobId] = []
        inflight: collections.deque[Reply[JobId]] = collections.deque()
        batch: list[P.Request[JobId]] = []
        first_error: BaseException | None = None

        def collect(r: Reply[JobId]) -> None:
            nonlocal first_error
            try:
                out.append(r.result())
            except ChanqError as e:
                if isinstance(e, ConnectionLost):
                    raise
                if first_error is None:
                    first_error = e

        for p in payloads:
            batch.append(P.submit(p, queue, **options))
            if len(batch) >= 128:
                inflight.extend(self.send(batch))
                batch = []
                while len(inflight) > window:
                    collect(inflight.popleft())
        if batch:
            inflight.extend(self.send(batch))
        while inflight:
            collect(inflight.popleft())
        if first_error is not None:
            raise first_error
        return out

    def fetch(self, queues: str | Iterable[str], *, count: int | None = None,
              timeout_ms: int | None = None, strict: bool | None = None) -> list[Job]:
        """Reserves up to ``count`` jobs from the queues; waits up to
        ``timeout_ms`` (None: until a job comes) and returns [] on timeout.
        Raises :class:`Closed` once every listed queue is closed and drained."""
        return self.call(P.fetch(queues, count, timeout_ms, strict))

    def fetch_acking(self, queues: str | Iterable[str], ack: Iterable[str], *,
                     count: int | None = None, timeout_ms: int | None = None,
                     strict: bool | None = None) -> tuple[list[Job], Many]:
        """A fetch that first acks the jobs in ``ack`` (one round trip per
        job for a polling worker); returns the jobs and how the acks went."""
        return self.call(P.fetch_acking(queues, ack, count, timeout_ms, strict))

    def consume(self, queues: str | Iterable[str] | None = None, *, prefetch: int | None = None,
                strict: bool | None = None) -> None:
        """Subscribes this connection to ``queues``: the server pushes up to
        ``prefetch`` unacked jobs at a time as ``jobs`` events (to
        ``on_event`` or :attr:`events`; :attr:`Event.jobs`), each reserved
        as if fetched. Called again, changes the queues or (without
        queues) only the prefetch. A ``consume_end`` event says the server
        ended it (every queue closed and drained, or the server stopping)."""
        self.call(P.consume(queues, prefetch, strict))

    def cancel_consume(self) -> None:
        """Stops the pushes; no ``jobs`` event comes after this returns.
        Jobs already pushed stay reserved to the connection."""
        self.call(P.cancel_consume())

    def ack(self, id: str, result: Any = UNSET) -> None:
        """Marks a reserved job done, with an optional result (any JSON)."""
        self.call(P.ack(id, result))

    def ack_many(self, ids: Iterable[str]) -> Many:
        """Acks several reserved jobs (1 to 1000) in one request; the ones
        that could not be acked are in the answer's ``errors``."""
        return self.call(P.ack_many(ids))

    def nack_many(self, ids: Iterable[str], error: str | None = None, *,
                  delay_ms: int | None = None, dead: bool | None = None) -> Many:
        """Fails several reserved jobs the same way in one request."""
        return self.call(P.nack_many(ids, error, delay_ms, dead))

    def nack(self, id: str, error: str | None = None, *, delay_ms: int | None = None,
             dead: bool | None = None) -> str:
        """Fails a reserved job; returns its new state (delayed, queued, dead)."""
        return self.call(P.nack(id, error, delay_ms, dead))

    def release(self, id: str) -> None:
        """Gives a reserved job back without counting the delivery."""
        self.call(P.release(id))

    def touch(self, id: str, ttr_ms: int | None = None) -> None:
        """Extends a reservation: it now runs ``ttr_ms`` (default the job's ttr) from now."""
        self.call(P.touch(id, ttr_ms))

    def cancel(self, id: str) -> int:
        """Cancels a job and its descendants; returns how many were cancelled."""
        return self.call(P.cancel(id))

    def wait(self, id: str, timeout_ms: int | None = None) -> WaitResult:
        """Waits until the job is final; raises :class:`Timeout` if it is not in time."""
        return self.call(P.wait(id, timeout_ms))

    def job(self, id: str) -> JobInfo:
        """Everything the server knows about a job."""
        return self.call(P.job(id))

    def declare(self, queue: str, *, capacity: int | None = None, ttr_ms: int | None = None,
                max_attempts: int | None = None) -> dict[str, Any]:
        """Creates a queue (or checks its settings: :class:`Conflict`); returns its stats."""
        return self.call(P.declare(queue, capacity, ttr_ms, max_attempts))

    def pause(self, queue: str) -> None:
        self.call(P.queue_op("pause", queue))

    def resume(self, queue: str) -> None:
        self.call(P.queue_op("resume", queue))

    def close_queue(self, queue: str) -> None:
        """The protocol's ``close``: submits fail, fetches drain, then :class:`Closed`.
        (:meth:`close` closes the connection.)"""
        self.call(P.queue_op("close", queue))

    def kick(self, queue: str, count: int | None = None) -> int:
        """Brings dead jobs back with fresh attempts; returns how many."""
        return self.call(P.kick(queue, count))

    def stats(self, queue: str | None = None) -> dict[str, Any]:
        """A queue's stats, or the server's without a queue."""
        return self.call(P.stats(queue))

    def queues_page(self, count: int | None = None,
                    after: str | None = None) -> tuple[dict[str, Any], str | None]:
        """One page of ``queues``: (name -> stats, the ``next`` cursor or None)."""
        return self.call(P.queues_page(count, after))

    def queues(self, page_size: int | None = None) -> dict[str, Any]:
        """Every queue with its stats, following the ``next`` pages."""
        out: dict[str, Any] = {}
        after: str | None = None
        while True:
            page, after = self.queues_page(page_size, after)
            out.update(page)
            if after is None:
                return out


class Pipeline:
    """Requests queued by a :meth:`Client.pipeline` block, sent in large
    writes; every method mirrors the :class:`Client` op and returns a
    :class:`Reply`."""

    def __init__(self, client: Client, flush_at: int = 256) -> None:
        self.client = client
        self.flush_at = flush_at
        self.replies: list[Reply[Any]] = []
        self._queued: list[P.Request[Any]] = []

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.flush()
            for r in self.replies:
                r._lock.acquire()
                r._lock.release()

    def add(self, req: P.Request[T]) -> Reply[T]:
        """Queues any request; returns its reply handle (valid once sent)."""
        self._queued.append(req)
        if len(self._queued) >= self.flush_at:
            self.flush()
        # The handle is created by send(); hand out a proxy that resolves to it.
        return _LateReply(self, len(self.replies) + len(self._queued) - 1)  # type: ignore[return-value]

    def flush(self) -> None:
        """Sends what is queued."""
        if self._queued:
            reqs, self._queued = self._queued, []
            self.replies.extend(self.client.send(reqs))

    def results(self, return_exceptions: bool = False) -> list[Any]:
        """Every answer's value in order (sends what is queued first);
        the first error is raised unless ``return_exceptions``."""
        self.flush()
        out: list[Any] = []
        for r in self.replies:
            try:
                out.append(r.result())
            except ChanqError as e:
                if not return_exceptions or isinstance(e, ConnectionLost):
                    raise
                out.append(e)
        return out

    def submit(self, payload: Any, queue: str | None = None, *, queues: Iterable[str] | None = None,
               delay_ms: int | None = None, ttr_ms: int | None = None,
               max_attempts: int | None = None, deadline_ms: int | None = None,
               parent: str | None = None, wait_ms: int | None = None,
               traceparent: str | None = None, key: str | None = None,
               priority: int | None = None,
               run_at: int | datetime | None = None) -> Reply[JobId]:
        return self.add(P.submit(payload, queue, queues, delay_ms, ttr_ms, max_attempts,
                                 deadline_ms, parent, wait_ms, traceparent, key, priority,
                                 run_at))

    def ack(self, id: str, result: Any = UNSET) -> Reply[None]:
        return self.add(P.ack(id, result))

    def ack_many(self, ids: Iterable[str]) -> Reply[Many]:
        return self.add(P.ack_many(ids))

    def nack(self, id: str, error: str | None = None, *, delay_ms: int | None = None,
             dead: bool | None = None) -> Reply[str]:
        return self.add(P.nack(id, error, delay_ms, dead))

    def touch(self, id: str, ttr_ms: int | None = None) -> Reply[None]:
        return self.add(P.touch(id, ttr_ms))

    def cancel(self, id: str) -> Reply[int]:
        return self.add(P.cancel(id))

    def job(self, id: str) -> Reply[JobInfo]:
        return self.add(P.job(id))

    def ping(self) -> Reply[None]:
        return self.add(P.ping())


class _LateReply:
    """A pipeline's handle for a request that may not be sent yet."""

    __slots__ = ("_pipe", "_index")

    def __init__(self, pipe: Pipeline, index: int) -> None:
        self._pipe, self._index = pipe, index

    def _reply(self) -> Reply[Any]:
        if self._index >= len(self._pipe.replies):
            self._pipe.flush()
        return self._pipe.replies[self._index]

    def result(self, timeout: float | None = ...) -> Any:  # type: ignore[assignment]
        return self._reply().result(timeout)

    def done(self) -> bool:
        return self._index < len(self._pipe.replies) and self._pipe.replies[self._index].done()


def iter_jobs(client: Client, queues: str | Iterable[str], *, count: int = 1,
              timeout_ms: int | None = 1000) -> Iterator[Job]:
    """Fetches jobs until every queue is closed and drained."""
    from .errors import Closed
    while True:
        try:
            jobs = client.fetch(queues, count=count, timeout_ms=timeout_ms)
        except Closed:
            return
        yield from jobs
