"""What the blocking and the asyncio clients share: the data types, the
request builders (one per op, with how long the server may wait and how
to read the answer) and the line codec. No I/O here."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Generic, Iterable, TypeVar

from .errors import ChanqError, ProtocolError, error_from

T = TypeVar("T")

DEFAULT_ADDRESS = "127.0.0.1:7420"


class _Unset:
    """The type of :data:`UNSET`: "field absent", as opposed to JSON null."""

    _instance: "_Unset | None" = None

    def __new__(cls) -> "_Unset":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()
"""Marks an optional JSON value (``ack``'s result) as absent; ``None`` sends null."""


class JobId(str):
    """A job id (a ``str``) that also says which queue the job went to:
    with a send-side select (``queues=[...]``) the server picks it; and,
    for a submit with a ``key``, whether it is the id of the job that
    already held the key (``duplicate``: no job was made; ``queue`` is
    then None, as the server does not say where that job is)."""

    queue: str | None
    duplicate: bool

    def __new__(cls, value: str, queue: str | None = None, duplicate: bool = False) -> "JobId":
        self = super().__new__(cls, value)
        self.queue = queue
        self.duplicate = duplicate
        return self


@dataclass(frozen=True)
class Job:
    """A reserved job, as ``fetch`` returns it."""

    id: str
    queue: str
    payload: Any
    attempt: int
    ttr_ms: int
    deadline: int | None = None
    """ms since the epoch, or None when the job has no deadline."""
    traceparent: str | None = None
    """The W3C trace context it was submitted with, or None: a worker's
    span for the job takes it as its parent."""

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "Job":
        try:
            return cls(id=d["id"], queue=d["queue"], payload=d.get("payload"),
                       attempt=d["attempt"], ttr_ms=d["ttr_ms"], deadline=d.get("deadline"),
                       traceparent=d.get("traceparent"))
        except (KeyError, TypeError) as e:
            raise ProtocolError(f"malformed job in fetch answer: {d!r}") from e


@dataclass(frozen=True)
class WaitResult:
    """``wait``'s answer: the final state and the result (done) or error (dead)."""

    state: str
    result: Any = None
    error: str | None = None


@dataclass(frozen=True)
class JobInfo:
    """``job``'s answer: everything the server knows about a job."""

    id: str
    queue: str
    state: str
    attempt: int
    max_attempts: int
    ttr_ms: int
    created: int
    deadline: int | None
    parent: str | None
    error: str | None
    result: Any
    payload: Any
    traceparent: str | None = None
    """The W3C trace context it was submitted with, or None."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields a newer server adds."""

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "JobInfo":
        names = ("id", "queue", "state", "attempt", "max_attempts", "ttr_ms", "created",
                 "deadline", "parent", "error", "result", "payload", "traceparent")
        return cls(**{n: d.get(n) for n in names},
                   extra={k: v for k, v in d.items() if k not in names})


@dataclass(frozen=True)
class Event:
    """An event the server sent between answers: ``kind`` is ``"cancel"``
    (the job ``id`` was cancelled), ``"revoked"`` (its reservation ended:
    ``reason`` ``"ttr"`` or ``"deadline"``), ``"jobs"`` (``jobs`` pushed
    to a consuming connection, reserved to it like fetched ones) or
    ``"consume_end"`` (the server ended the consume: ``reason``
    ``"closed"`` or ``"shutting_down"``)."""

    kind: str
    id: str
    reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    jobs: tuple[Job, ...] = ()

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "Event":
        kind = str(d.get("event"))
        jobs: tuple[Job, ...] = ()
        if kind == "jobs":
            wire = d.get("jobs")
            if not isinstance(wire, list):
                raise ProtocolError(f"jobs event without a jobs list: {d!r}")
            jobs = tuple(Job.from_wire(j) for j in wire)
        ident = d.get("id")
        return cls(kind=kind, id="" if ident is None else str(ident), reason=d.get("reason"),
                   raw=d, jobs=jobs)


@dataclass(frozen=True)
class Many:
    """The answer to an ``ack`` or ``nack`` of several ids (or the acks a
    ``fetch`` carried): how many were done, and why each of the others
    was not (``(id, error)`` pairs, the error typed as for a single id)."""

    done: int
    errors: tuple[tuple[str, ChanqError], ...] = ()

    @classmethod
    def from_wire(cls, done: Any, errors: Any) -> "Many":
        out = []
        for e in errors or ():
            if not isinstance(e, dict):
                raise ProtocolError(f"malformed error entry {e!r}")
            out.append((str(e.get("id")), error_from({"error": e})))
        return cls(int(done or 0), tuple(out))


@dataclass
class Request(Generic[T]):
    """One request: its JSON object, how long the server may hold it
    (seconds, None: without limit) and how to turn the answer into a value."""

    body: dict[str, Any]
    wait_s: float | None
    parse: Callable[[dict[str, Any]], T]


def encode(body: dict[str, Any]) -> bytes:
    """One request line: compact, strict JSON (no NaN), UTF-8, ending in \\n."""
    return (json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"invalid JSON from the server: {line[:200]!r}") from e
    if not isinstance(obj, dict):
        raise ProtocolError(f"not a JSON object from the server: {line[:200]!r}")
    return obj


def is_event(obj: dict[str, Any]) -> bool:
    return "event" in obj and "ok" not in obj


def check(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer if it is ``ok``, else raises its typed error."""
    ok = answer.get("ok")
    if ok is True:
        return answer
    if ok is False:
        raise error_from(answer)
    raise ProtocolError(f"answer without 'ok': {answer!r}")


def parse_address(address: str | tuple[str, int]) -> tuple[str, Any]:
    """("tcp", (host, port)) or ("unix", path) for HOST:PORT, [V6]:PORT,
    unix:PATH or a (host, port) tuple."""
    if isinstance(address, tuple):
        return "tcp", address
    if address.startswith("unix:"):
        return "unix", address[5:]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} is not HOST:PORT, [V6]:PORT or unix:PATH")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return "tcp", (host or "127.0.0.1", int(port))


def _ms(v: int | None) -> float | None:
    return None if v is None else v / 1000.0


def _opt(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    for k, v in kw.items():
        if v is not None:
            body[k] = v
    return body


def _none(_: dict[str, Any]) -> None:
    return None


def _queue_list(queues: str | Iterable[str]) -> list[str]:
    return [queues] if isinstance(queues, str) else list(queues)


# ---- request builders, one per op -------------------------------------

def hello(client: str | None, token: str | None) -> Request[dict[str, Any]]:
    return Request(_opt({"op": "hello"}, client=client, token=token), 0, lambda a: a)


def ping() -> Request[None]:
    return Request({"op": "ping"}, 0, _none)


def epoch_ms(t: int | datetime) -> int:
    """ms since the epoch of an int (as is) or a datetime (a naive one is
    local time, as :meth:`datetime.timestamp` reads it)."""
    if isinstance(t, datetime):
        return round(t.timestamp() * 1000)
    return t


def submit(payload: Any, queue: str | None, queues: Iterable[str] | None = None,
           delay_ms: int | None = None, ttr_ms: int | None = None,
           max_attempts: int | None = None, deadline_ms: int | None = None,
           parent: str | None = None, wait_ms: int | None = None,
           traceparent: str | None = None, key: str | None = None,
           priority: int | None = None,
           run_at: int | datetime | None = None) -> Request[JobId]:
    """The submit request. Values go to the server as given: it checks
    them (ranges, ``run_at`` with ``delay_ms``) and a bad one raises its
    :class:`BadRequest`, as for every other field."""
    body: dict[str, Any] = {"op": "submit"}
    if queues is not None:
        body["queues"] = _queue_list(queues)
    if queue is not None:
        body["queue"] = queue
    body["payload"] = payload
    _opt(body, delay_ms=delay_ms, ttr_ms=ttr_ms, max_attempts=max_attempts,
         deadline_ms=deadline_ms, parent=parent, wait_ms=wait_ms, traceparent=traceparent,
         key=key, priority=priority, run_at=None if run_at is None else epoch_ms(run_at))
    return Request(body, _ms(wait_ms) if wait_ms is not None else None,
                   _submitted(queue))


def _submitted(queue: str | None) -> Callable[[dict[str, Any]], JobId]:
    def parse(a: dict[str, Any]) -> JobId:
        if a.get("duplicate") is True:  # the job holding the key, wherever it is
            return JobId(a["id"], a.get("queue"), True)
        return JobId(a["id"], a.get("queue", queue))
    return parse


def fetch(queues: str | Iterable[str], count: int | None, timeout_ms: int | None,
          strict: bool | None, ack: Iterable[str] | None = None) -> Request[list[Job]]:
    body = _opt({"op": "fetch", "queues": _queue_list(queues)},
                count=count, timeout_ms=timeout_ms, strict=strict)
    if ack is not None:
        body["ack"] = list(ack)
    return Request(body, _ms(timeout_ms), lambda a: [Job.from_wire(j) for j in a["jobs"]])


def fetch_acking(queues: str | Iterable[str], ack: Iterable[str], count: int | None,
                 timeout_ms: int | None, strict: bool | None) -> Request[tuple[list[Job], Many]]:
    """A fetch that acks ``ack`` first; its value also says how the acks went."""
    ids = list(ack)
    req = fetch(queues, count, timeout_ms, strict, ids)

    def parse(a: dict[str, Any]) -> tuple[list[Job], Many]:
        errors = a.get("ack_errors") or []
        return [Job.from_wire(j) for j in a["jobs"]], Many.from_wire(len(ids) - len(errors),
                                                                      errors)
    return Request(req.body, req.wait_s, parse)


def consume(queues: str | Iterable[str] | None, prefetch: int | None,
            strict: bool | None) -> Request[None]:
    body: dict[str, Any] = {"op": "consume"}
    if queues is not None:
        body["queues"] = _queue_list(queues)
    return Request(_opt(body, prefetch=prefetch, strict=strict), 0, _none)


def cancel_consume() -> Request[None]:
    return Request({"op": "cancel_consume"}, 0, _none)


def ack_many(ids: Iterable[str]) -> Request[Many]:
    return Request({"op": "ack", "ids": list(ids)}, 0,
                   lambda a: Many.from_wire(a["acked"], a.get("errors")))


def nack_many(ids: Iterable[str], error: str | None, delay_ms: int | None,
              dead: bool | None) -> Request[Many]:
    body = _opt({"op": "nack", "ids": list(ids)}, error=error, delay_ms=delay_ms, dead=dead)
    return Request(body, 0, lambda a: Many.from_wire(a["nacked"], a.get("errors")))


def ack(id: str, result: Any) -> Request[None]:
    body: dict[str, Any] = {"op": "ack", "id": id}
    if result is not UNSET:
        body["result"] = result
    return Request(body, 0, _none)


def nack(id: str, error: str | None, delay_ms: int | None, dead: bool | None) -> Request[str]:
    body = _opt({"op": "nack", "id": id}, error=error, delay_ms=delay_ms, dead=dead)
    return Request(body, 0, lambda a: a.get("state", ""))


def release(id: str) -> Request[None]:
    return Request({"op": "release", "id": id}, 0, _none)


def touch(id: str, ttr_ms: int | None) -> Request[None]:
    return Request(_opt({"op": "touch", "id": id}, ttr_ms=ttr_ms), 0, _none)


def cancel(id: str) -> Request[int]:
    return Request({"op": "cancel", "id": id}, 0, lambda a: int(a.get("cancelled", 0)))


def wait(id: str, timeout_ms: int | None) -> Request[WaitResult]:
    return Request(_opt({"op": "wait", "id": id}, timeout_ms=timeout_ms), _ms(timeout_ms),
                   lambda a: WaitResult(a["state"], a.get("result"), a.get("error")))


def job(id: str) -> Request[JobInfo]:
    return Request({"op": "job", "id": id}, 0, lambda a: JobInfo.from_wire(a["job"]))


def declare(queue: str, capacity: int | None, ttr_ms: int | None,
            max_attempts: int | None) -> Request[dict[str, Any]]:
    body = _opt({"op": "declare", "queue": queue}, capacity=capacity, ttr_ms=ttr_ms,
                max_attempts=max_attempts)
    return Request(body, 0, lambda a: a["queue"])


def queue_op(op: str, queue: str) -> Request[None]:
    return Request({"op": op, "queue": queue}, 0, _none)


def kick(queue: str, count: int | None) -> Request[int]:
    return Request(_opt({"op": "kick", "queue": queue}, count=count), 0,
                   lambda a: int(a.get("kicked", 0)))


def stats(queue: str | None) -> Request[dict[str, Any]]:
    return Request(_opt({"op": "stats"}, queue=queue), 0,
                   lambda a: a["queue"] if queue is not None else a["server"])


def queues_page(count: int | None, after: str | None) -> Request[tuple[dict[str, Any], str | None]]:
    return Request(_opt({"op": "queues"}, count=count, after=after), 0,
                   lambda a: (a["queues"], a.get("next")))


def raw(body: dict[str, Any], wait_s: float | None) -> Request[dict[str, Any]]:
    return Request(dict(body), wait_s, lambda a: a)
