"""Exceptions: one class per error code of the protocol, plus transport errors.

Every server error is a :class:`ChanqError` carrying the server's ``code``
and ``message``; :func:`error_from` picks the subclass for a code. After a
server error the connection stays usable and the server changed nothing
(except for ``internal``, see docs/protocol.md). A :class:`ConnectionLost`
or :class:`ClientTimeout` means the connection is gone: make a new client.
"""
from __future__ import annotations

from typing import Any


class ChanqError(Exception):
    """An error answer from chanqd (or a local failure with a code)."""

    code: str = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message: str = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BadRequest(ChanqError):
    """Not JSON, not an object, a missing or mistyped field."""
    code = "bad_request"


class FrameTooLarge(ChanqError):
    """The request line was longer than the server's ``--max-frame``."""
    code = "frame_too_large"


class UnknownOp(ChanqError):
    """The server does not know the op."""
    code = "unknown_op"


class Unauthorized(ChanqError):
    """The server needs a token and the connection has not said hello with it."""
    code = "unauthorized"


class NotFound(ChanqError):
    """No such job or queue."""
    code = "not_found"


class NotReserved(ChanqError):
    """The job is not reserved by this connection."""
    code = "not_reserved"


class QueueFull(ChanqError):
    """The queue is at capacity and the submit's wait ran out (or was 0)."""
    code = "queue_full"


class Timeout(ChanqError):
    """A blocking request's time ran out on the server."""
    code = "timeout"


class Closed(ChanqError):
    """The queue is closed (for fetch: closed and drained)."""
    code = "closed"


class Cancelled(ChanqError):
    """The job was cancelled."""
    code = "cancelled"


class Conflict(ChanqError):
    """``declare`` with settings that differ from the existing queue's."""
    code = "conflict"


class TooLarge(ChanqError):
    """A payload or result over the server's ``--max-job``."""
    code = "too_large"


class Limit(ChanqError):
    """A server limit (connections, queues, memory) would be passed."""
    code = "limit"


class ShuttingDown(ChanqError):
    """The server is stopping; retry elsewhere or later."""
    code = "shutting_down"


class NotLeader(ChanqError):
    """A cluster node that is not the serving leader (docs/cluster.md): it
    did nothing. :attr:`leader` is the leader's client address when the
    node knows it. :class:`~chanq.ClusterClient` follows it on its own."""
    code = "not_leader"

    @property
    def leader(self) -> str | None:
        _, sep, addr = self.message.rpartition("leader: ")
        addr = addr.strip()
        return addr if sep and addr and addr != "unknown" else None


class Internal(ChanqError):
    """The server could not do it; the change may have happened."""
    code = "internal"


class ConnectionLost(ChanqError, ConnectionError):
    """The connection closed or failed; requests in flight have no answer."""
    code = "io"


class ClientTimeout(ConnectionLost):
    """No answer within the client's read timeout (on top of the op's own
    wait); the client closes the connection, which gives its reserved jobs
    back to the server."""
    code = "io_timeout"


class ProtocolError(ConnectionLost):
    """The server sent something that is not the protocol."""
    code = "protocol"


ERRORS: dict[str, type[ChanqError]] = {
    cls.code: cls
    for cls in (BadRequest, FrameTooLarge, UnknownOp, Unauthorized, NotFound, NotReserved,
                QueueFull, Timeout, Closed, Cancelled, Conflict, TooLarge, Limit,
                ShuttingDown, NotLeader, Internal)
}


def error_from(answer: dict[str, Any]) -> ChanqError:
    """The exception for an ``{"ok":false,"error":{...}}`` answer."""
    err = answer.get("error")
    if not isinstance(err, dict):
        return ProtocolError(f"error answer without an error object: {answer!r}")
    code = str(err.get("code", "internal"))
    message = str(err.get("message", ""))
    cls = ERRORS.get(code)
    if cls is None:
        return ChanqError(message, code)
    return cls(message)
