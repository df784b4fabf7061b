#!/usr/bin/env python3
"""chanq.AsyncWorker given the three servers of a real cluster
(--raft-election-ms 500, free loopback ports) keeps consuming across a
failover:

- the pool (4 tasks, each job taking 20 ms) starts on the leader and runs
  the first jobs submitted through a ClusterClient;
- the leader is killed with SIGKILL while jobs run, the rest are
  submitted (through the ClusterClient, which follows the new leader) and
  the killed node is restarted on its data dir;
- every submitted job is run by the pool at least once (the jobs it held
  on the dead connection come back from the new leader), the pool is
  still running and counted a failover;
- every job is then done on the leader (no ack owed);
- the leader is stopped gracefully (SIGTERM): the pool goes on with the
  next leader and runs the jobs submitted after;
- two nodes are killed (no majority, no leader): stop() while the pool
  looks for a leader ends it within 5 s.

Every wait is bounded; SKIP (77) in a --without-cluster build."""
import asyncio
import os
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_cluster_failover import WAIT, chanq, cluster_built, leader_of, until  # noqa: E402
from test_cluster_clients import start_cluster  # noqa: E402
from test_cluster_smoke import cluster_run  # noqa: E402
from opslib import Skip, main  # noqa: E402

QUEUE = "awq"
BEFORE = 100  # jobs submitted before the kill
AFTER = 100  # jobs submitted after it
STOPPED = 50  # jobs submitted after a graceful stop (SIGTERM) of the leader
STOP_MAX_S = 5.0  # stop() while it looks for a leader: far below WAIT


class Pool:
    """An AsyncWorker on its own event loop thread, and what it ran."""

    def __init__(self, servers):
        self.lock = threading.Lock()
        self.ran = set()
        self.runs = 0
        self.loop = asyncio.new_event_loop()
        self.worker = chanq.AsyncWorker(self.handle, QUEUE, servers, concurrency=4)
        self.result = {}
        self.thread = threading.Thread(target=self.main, daemon=True)

    async def handle(self, ctx):
        await asyncio.sleep(0.02)  # so that jobs are running at the kill
        with self.lock:
            self.ran.add(ctx.payload["k"])
            self.runs += 1
        return None

    def main(self):
        try:
            self.result["stats"] = self.loop.run_until_complete(
                self.worker.run(install_signals=False))
        except BaseException as e:  # reported by the test
            self.result["error"] = e

    def start(self):
        self.thread.start()

    def done(self):
        with self.lock:
            return set(self.ran)

    def stop(self):
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the pool did not stop within %gs" % WAIT
        self.loop.close()


def check_async_worker_across_a_kill(nodes, servers):
    c = chanq.ClusterClient(servers, failover_timeout=WAIT)
    pool = Pool(servers)
    try:
        until("a leader", lambda: leader_of(nodes))
        pool.start()
        ids = [c.submit({"k": k}, QUEUE) for k in range(BEFORE)]
        until("the pool to run the first jobs", lambda: len(pool.done()) >= BEFORE // 2)
        leader = until("a leader", lambda: leader_of(nodes))
        leader.kill()
        t0 = time.monotonic()
        assert pool.thread.is_alive(), pool.result
        ids += [c.submit({"k": k}, QUEUE) for k in range(BEFORE, BEFORE + AFTER)]
        until("another leader", lambda: leader_of([n for n in nodes if n is not leader]))
        leader.start()
        every = set(range(BEFORE + AFTER))
        until("the pool to run every job", lambda: pool.done() >= every or "error" in pool.result)
        resumed_s = time.monotonic() - t0
        assert "error" not in pool.result and pool.thread.is_alive(), pool.result
        assert pool.worker.failovers >= 1, pool.worker.failovers
        # Its acks reach the leader: nothing stays queued or reserved.
        until("every job done", lambda: all(c.job(i).state == "done" for i in ids))
        # A graceful stop of the leader (consume_end shutting_down, then
        # the connection closes): the pool goes on with the next leader.
        leader = until("a leader", lambda: leader_of(nodes))
        leader.proc.send_signal(signal.SIGTERM)
        total = BEFORE + AFTER + STOPPED
        ids += [c.submit({"k": k}, QUEUE) for k in range(BEFORE + AFTER, total)]
        until("the pool to run the jobs after a graceful stop",
              lambda: pool.done() >= set(range(total)) or "error" in pool.result)
        assert "error" not in pool.result and pool.thread.is_alive(), pool.result
        assert pool.worker.failovers >= 2, pool.worker.failovers
        leader.proc.wait(WAIT)
        leader.start()
        until("every job done", lambda: all(c.job(i).state == "done" for i in ids))
        failovers = pool.worker.failovers
        # With no majority left no node serves: stop() ends the search.
        leader = until("a leader", lambda: leader_of(nodes))
        leader.kill()
        next(n for n in nodes if n is not leader).kill()
        until("the pool to lose its connection", lambda: pool.worker._client.closed)
        time.sleep(0.5)  # into its search for a leader
        assert pool.thread.is_alive() and pool.worker.failovers == failovers, pool.result
        t1 = time.monotonic()
        pool.stop()
        stop_s = time.monotonic() - t1
        assert stop_s < STOP_MAX_S, stop_s
    finally:
        c.close()
        if pool.thread.is_alive():
            pool.stop()
    stats = pool.result.get("stats")
    assert stats is not None and pool.worker.error is None, (pool.result, pool.worker.error)
    # Every job was acked, or its ack went out on a connection that was
    # lost before the answer came (the old leader may have taken it: every
    # job is done, checked above, and none is run twice unless its verdict
    # was lost).
    assert stats.acked + stats.lost >= len(set(ids)), stats
    assert stats.fetched <= len(set(ids)) + stats.lost, stats
    return resumed_s, stop_s, pool.runs, stats


def test_async_worker_follows_the_leader():
    if not cluster_built():
        raise Skip("chanqd built without the cluster code")
    top = tempfile.mkdtemp(prefix="chanq-asyncworker-")
    nodes = start_cluster(top)
    with cluster_run(nodes, top, tail=2000):
        servers = ",".join(n.address for n in nodes)
        resumed_s, stop_s, runs, stats = check_async_worker_across_a_kill(nodes, servers)
        print("AsyncWorker across a kill and a SIGTERM: %d jobs, %d runs, every job run %.2f s after the "
              "kill; stopped in %.2f s while no node served; %s"
              % (BEFORE + AFTER + STOPPED, runs, resumed_s, stop_s, stats))


if __name__ == "__main__":
    sys.exit(main([test_async_worker_follows_the_leader]))
