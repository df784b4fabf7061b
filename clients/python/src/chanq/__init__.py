"""chanq: a Python client for chanqd, the chanq job-queue daemon.

- :class:`Client`: blocking, thread-safe, pipelined (``pipeline()``,
  ``submit_many()``), events to a callback or a queue.
- :class:`AsyncClient`: the same methods for asyncio.
- :class:`ClusterClient` (:class:`AsyncClusterClient` for asyncio): the
  client's methods on a cluster of servers: finds the leader, follows
  ``not_leader``, fails over.
- :class:`Worker` / :class:`AsyncWorker`: run a function per job, N at a
  time, with touches, acks, nacks, cancellation and a graceful stop; jobs
  are pushed to them (``consume``), acks pipelined.
- One exception class per protocol error code (:class:`QueueFull`,
  :class:`NotFound`, ...), all :class:`ChanqError`.

The protocol is docs/protocol.md of the chanq source tree.
"""
from ._proto import UNSET, Event, Job, JobId, JobInfo, Many, Request, WaitResult
from .aio import AsyncClient
from .aio_cluster import AsyncClusterClient, aconnect_leader
from .client import Client, Pipeline, Reply, iter_jobs, make_ssl_context
from .cluster import ClusterClient, connect_leader, parse_servers, servers_from_env
from .errors import (ERRORS, BadRequest, Cancelled, ChanqError, ClientTimeout, Closed,
                     Conflict, ConnectionLost, FrameTooLarge, Internal, Limit, NotFound,
                     NotLeader, NotReserved, ProtocolError, QueueFull, ShuttingDown, Timeout,
                     TooLarge, Unauthorized, UnknownOp, error_from)
from .worker import AsyncWorker, JobContext, Worker, WorkerStats

__version__ = "0.1.0"

__all__ = [
    "UNSET", "Event", "Job", "JobId", "JobInfo", "Many", "Request", "WaitResult",
    "AsyncClient", "AsyncClusterClient", "aconnect_leader", "Client", "ClusterClient", "connect_leader", "parse_servers",
    "servers_from_env", "Pipeline", "Reply", "iter_jobs", "make_ssl_context",
    "ERRORS", "BadRequest", "Cancelled", "ChanqError", "ClientTimeout", "Closed", "Conflict",
    "ConnectionLost", "FrameTooLarge", "Internal", "Limit", "NotFound", "NotLeader",
    "NotReserved",
    "ProtocolError", "QueueFull", "ShuttingDown", "Timeout", "TooLarge", "Unauthorized",
    "UnknownOp", "error_from",
    "AsyncWorker", "JobContext", "Worker", "WorkerStats",
]
