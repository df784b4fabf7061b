"""Several servers for asyncio: :func:`aconnect_leader` and
:class:`AsyncClusterClient`, the coroutine twins of
:func:`chanq.connect_leader` and :class:`chanq.ClusterClient`, with the
same rules (see :mod:`chanq.cluster`): the leader found through
``hello``, ``not_leader`` followed, a call lost with a dead leader made
again on the next when it may be made twice (submits: at least once),
acks, nacks, touches and releases not."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Iterable, TypeVar

from . import _proto as P
from ._proto import UNSET, Job, JobId, JobInfo, Many, WaitResult
from .aio import AsyncClient, AsyncEventHandler
from .cluster import PROBE_TIMEOUT_S, Backoff, _same, parse_servers, servers_from_env
from .errors import ChanqError, ConnectionLost, NotLeader, ShuttingDown, Unauthorized

T = TypeVar("T")


async def _aprobe(address: Any, connect: dict[str, Any]
                  ) -> tuple[AsyncClient | None, str | None, BaseException | None]:
    opts = dict(connect)
    token, name = opts.pop("token", None), opts.pop("client_name", None)
    given = opts.get("connect_timeout")
    opts["connect_timeout"] = PROBE_TIMEOUT_S if given is None else min(given, PROBE_TIMEOUT_S)
    try:
        c = await AsyncClient.connect(address, **opts)
    except ChanqError as e:
        return None, None, e
    try:
        info = await asyncio.wait_for(c.hello(name, token), PROBE_TIMEOUT_S)
    except Unauthorized:
        await c.close()
        raise
    except (ChanqError, asyncio.TimeoutError) as e:
        await c.close()
        return None, None, e
    c.hello_answer = info
    role = info.get("role")
    if role is None or role == "leader":
        return c, None, None
    await c.close()
    leader = info.get("leader")
    return None, leader if isinstance(leader, str) and leader else None, \
        NotLeader(f"{address} is {role}; leader: {leader or 'unknown'}")


async def aconnect_leader(servers: Any, *, prefer: Any = None, timeout: float = 30.0,
                          **connect: Any) -> AsyncClient:
    """An :class:`~chanq.AsyncClient` connected to the serving leader among
    ``servers``, as :func:`chanq.connect_leader`."""
    addrs = parse_servers(servers)
    deadline = time.monotonic() + timeout
    backoff = Backoff()
    last: BaseException | None = None
    while True:
        order = list(addrs)
        if prefer is not None:
            order = [prefer] + [a for a in order if not _same(a, prefer)]
        tried: list[Any] = []
        i = 0
        while i < len(order):
            addr = order[i]
            i += 1
            tried.append(addr)
            c, leader, why = await _aprobe(addr, connect)
            if c is not None:
                return c
            last = why
            if leader is not None and not any(_same(leader, t) for t in tried):
                order.insert(i, leader)
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConnectionLost(f"no serving leader among {', '.join(map(str, addrs))} "
                                 f"within {timeout:g}s (last: {last})")
        await asyncio.sleep(min(backoff.delay(), left))
        prefer = None


class AsyncClusterClient:
    """:class:`chanq.ClusterClient` for asyncio: the :class:`~chanq.AsyncClient`
    ops, each made on the serving leader. Create it with
    ``await AsyncClusterClient.connect(servers, ...)``."""

    def __init__(self) -> None:
        self.servers: list[Any] = []
        self.failover_timeout = 30.0
        self.connect_opts: dict[str, Any] = {}
        self.on_event: AsyncEventHandler | None = None
        self.failovers = 0
        self.resubmitted = 0
        self._client: AsyncClient | None = None
        self._gen = 0
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, servers: Any = None, *, failover_timeout: float = 30.0,
                      on_event: AsyncEventHandler | None = None,
                      **connect: Any) -> "AsyncClusterClient":
        self = cls()
        self.servers = parse_servers(servers if servers is not None else servers_from_env())
        self.failover_timeout = failover_timeout
        self.on_event = on_event
        self.connect_opts = connect
        self._client = await self._dial(None)
        return self

    async def _dial(self, prefer: Any) -> AsyncClient:
        c = await aconnect_leader(self.servers, prefer=prefer, timeout=self.failover_timeout,
                                  **self.connect_opts)
        c.on_event = self.on_event
        return c

    @property
    def client(self) -> AsyncClient:
        assert self._client is not None
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def __aenter__(self) -> "AsyncClusterClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _reconnect(self, gen: int, prefer: Any = None) -> None:
        async with self._lock:
            assert self._client is not None
            if self._gen == gen or self._client.closed:
                await self._client.close()
                self._client = await self._dial(prefer)
                self._gen += 1
                self.failovers += 1

    async def _run(self, make: Callable[[AsyncClient], Awaitable[T]], again: bool,
                   submit: bool = False) -> T:
        deadline = time.monotonic() + self.failover_timeout
        while True:
            assert self._client is not None
            if self._client.closed:
                await self._reconnect(self._gen)
            c, gen = self._client, self._gen
            try:
                return await make(c)
            except NotLeader as e:
                if time.monotonic() > deadline:
                    raise
                await self._reconnect(gen, e.leader)
            except ShuttingDown:
                if time.monotonic() > deadline:
                    raise
                await self._reconnect(gen)
            except ConnectionLost:
                if not again or time.monotonic() > deadline:
                    raise
                if submit:
                    self.resubmitted += 1
                await self._reconnect(gen)

    async def ping(self) -> None:
        await self._run(lambda c: c.ping(), True)

    async def submit(self, payload: Any, queue: str | None = None, **options: Any) -> JobId:
        """As :meth:`chanq.AsyncClient.submit`; made again on the new leader
        when the answer was lost with the leader (at-least-once)."""
        return await self._run(lambda c: c.submit(payload, queue, **options), True, submit=True)

    async def fetch(self, queues: str | Iterable[str], **options: Any) -> list[Job]:
        qs = queues if isinstance(queues, str) else list(queues)
        return await self._run(lambda c: c.fetch(qs, **options), True)

    async def ack(self, id: str, result: Any = UNSET) -> None:
        await self._run(lambda c: c.ack(id, result), False)

    async def ack_many(self, ids: Iterable[str]) -> Many:
        lst = list(ids)
        return await self._run(lambda c: c.ack_many(lst), False)

    async def nack(self, id: str, error: str | None = None, **options: Any) -> str:
        return await self._run(lambda c: c.nack(id, error, **options), False)

    async def release(self, id: str) -> None:
        await self._run(lambda c: c.release(id), False)

    async def touch(self, id: str, ttr_ms: int | None = None) -> None:
        await self._run(lambda c: c.touch(id, ttr_ms), False)

    async def cancel(self, id: str) -> int:
        return await self._run(lambda c: c.cancel(id), True)

    async def wait(self, id: str, timeout_ms: int | None = None) -> WaitResult:
        return await self._run(lambda c: c.wait(id, timeout_ms), True)

    async def job(self, id: str) -> JobInfo:
        return await self._run(lambda c: c.job(id), True)

    async def declare(self, queue: str, **options: Any) -> dict[str, Any]:
        return await self._run(lambda c: c.declare(queue, **options), True)

    async def stats(self, queue: str | None = None) -> dict[str, Any]:
        return await self._run(lambda c: c.stats(queue), True)

    async def request(self, body: dict[str, Any], wait_s: float | None = 0, *,
                      again: bool = False) -> dict[str, Any]:
        return await self._run(lambda c: c.call(P.raw(dict(body), wait_s)), again)


__all__ = ["AsyncClusterClient", "aconnect_leader"]
