#!/usr/bin/env python3
"""Throughput of the Python client (clients/python): 8 producer and 8
worker processes, each with its own blocking connection, move N jobs
through one chanqd; prints jobs/s (submit to ack). When redis-py and
redis-server are installed (Debian: python3-redis, redis-server), the same
shape runs against a local redis-server with LPUSH/BRPOP, interleaved with
the chanq runs, and the medians are printed side by side.

    bench/python_client.py [--jobs 20000] [--rounds 3] [--pipelined]
        [--chanqd build/daemon/chanqd] [--no-redis]

Not part of `make check`. Modes: "one by one" (a round trip per submit)
and, with --pipelined, also pipelined producers (chanq submit_many, a
redis pipeline of LPUSHes). The chanq workers are chanq.Worker pools of
one thread each, run twice: consuming (the default: jobs pushed, acks
pipelined) and with mode="fetch" (fetch, run, ack). Note the semantics
differ: BRPOP hands a job over with no reservation and no ack (a crashed
worker loses it); a chanq job is reserved and acked.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "clients", "python", "src"))
import chanq  # noqa: E402

PAYLOAD = {"to": "ann@example.org", "body": "x" * 60}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- chanq -------------------------------------------------------------

def chanq_producer(addr: str, q: str, n: int, pipelined: bool, go: mp.Event) -> None:
    with chanq.Client(addr) as c:
        go.wait()
        if pipelined:
            c.submit_many((PAYLOAD for _ in range(n)), q, window=512)
        else:
            for _ in range(n):
                c.submit(PAYLOAD, q)


def chanq_worker(addr: str, q: str, mode: str, go: mp.Event) -> None:
    go.wait()
    chanq.Worker(lambda ctx: None, q, addr, concurrency=1, mode=mode,
                 poll_ms=200).run(install_signals=False)


def run_chanq(addr: str, jobs: int, procs: int, pipelined: bool, mode: str, tag: int) -> float:
    q = "bench-%d" % tag
    with chanq.Client(addr) as c:
        c.declare(q, capacity=10 * jobs)
        go = mp.Event()
        per = jobs // procs
        ps = [mp.Process(target=chanq_producer, args=(addr, q, per, pipelined, go)) for _ in range(procs)]
        ws = [mp.Process(target=chanq_worker, args=(addr, q, mode, go)) for _ in range(procs)]
        for p in ps + ws:
            p.start()
        time.sleep(0.5)  # let every process connect
        t0 = time.monotonic()
        go.set()
        for p in ps:
            p.join()
        c.close_queue(q)  # workers end once it is drained
        for w in ws:
            w.join()
        took = time.monotonic() - t0
        st = c.stats(q)
        assert st["acked"] == per * procs, st
    return per * procs / took


# ---- redis -------------------------------------------------------------

def redis_producer(port: int, q: str, n: int, pipelined: bool, go: mp.Event) -> None:
    import redis
    r = redis.Redis(port=port)
    r.ping()
    go.wait()
    data = json.dumps(PAYLOAD)
    if pipelined:
        for start in range(0, n, 512):
            p = r.pipeline(transaction=False)
            for _ in range(min(512, n - start)):
                p.lpush(q, data)
            p.execute()
    else:
        for _ in range(n):
            r.lpush(q, data)


def redis_worker(port: int, q: str, go: mp.Event) -> None:
    import redis
    r = redis.Redis(port=port)
    r.ping()
    go.wait()
    while True:
        item = r.brpop(q, timeout=5)
        if item is None or item[1] == b"STOP":
            return
        json.loads(item[1])


def run_redis(port: int, jobs: int, procs: int, pipelined: bool, tag: int) -> float:
    import redis
    q = "bench-%d" % tag
    r = redis.Redis(port=port)
    go = mp.Event()
    per = jobs // procs
    ps = [mp.Process(target=redis_producer, args=(port, q, per, pipelined, go)) for _ in range(procs)]
    ws = [mp.Process(target=redis_worker, args=(port, q, go)) for _ in range(procs)]
    for p in ps + ws:
        p.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    go.set()
    for p in ps:
        p.join()
    r.lpush(q, *([b"STOP"] * procs))  # behind every job: workers stop once drained
    for w in ws:
        w.join()
    took = time.monotonic() - t0
    assert r.llen(q) == 0
    return per * procs / took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--procs", type=int, default=8, help="producers and workers (each)")
    ap.add_argument("--pipelined", action="store_true", help="also run pipelined producers")
    ap.add_argument("--chanqd", default=os.path.join(TOP, "build", "daemon", "chanqd"))
    ap.add_argument("--no-redis", action="store_true")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="chanq-pybench-")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        log = open(os.path.join(tmp, "chanqd.log"), "wb")
        cq = subprocess.Popen([a.chanqd, "--memory", "--listen", "127.0.0.1:0"], stderr=log,
                              stdout=subprocess.DEVNULL)
        procs.append(cq)
        port = None
        for _ in range(100):
            with open(os.path.join(tmp, "chanqd.log")) as f:
                for line in f:
                    if "listening on 127.0.0.1:" in line:
                        port = int(line.rsplit(":", 1)[1].split()[0])
            if port:
                break
            time.sleep(0.05)
        assert port, "chanqd did not start"
        addr = "127.0.0.1:%d" % port

        redis_port = None
        if not a.no_redis and shutil.which("redis-server"):
            try:
                import redis  # noqa: F401
                redis_port = free_port()
                procs.append(subprocess.Popen(
                    ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", tmp],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                import redis as _r
                for _ in range(100):
                    try:
                        _r.Redis(port=redis_port).ping()
                        break
                    except Exception:
                        time.sleep(0.05)
            except ImportError:
                print("(redis-py not importable by %s: chanq only)" % sys.executable)
                redis_port = None

        modes = [False, True] if a.pipelined else [False]
        results: dict[tuple[str, bool], list[float]] = {}
        tag = 0
        for rnd in range(a.rounds):
            for pipelined in modes:
                systems = [
                    ("chanq", lambda t: run_chanq(addr, a.jobs, a.procs, pipelined, "consume", t)),
                    ("chanq-fetch",
                     lambda t: run_chanq(addr, a.jobs, a.procs, pipelined, "fetch", t)),
                ]
                if redis_port:
                    systems.append(("redis", lambda t: run_redis(redis_port, a.jobs, a.procs, pipelined, t)))
                if rnd % 2:
                    systems.reverse()  # interleave: neither always goes first
                for name, fn in systems:
                    tag += 1
                    rate = fn(tag)
                    results.setdefault((name, pipelined), []).append(rate)
                    print("round %d  %-11s %-10s %8.0f jobs/s" % (rnd + 1, name,
                          "pipelined" if pipelined else "one-by-one", rate), flush=True)
        print("\n%d jobs per run, %d producer + %d worker processes, medians of %d rounds:"
              % (a.jobs, a.procs, a.procs, a.rounds))
        for pipelined in modes:
            row = "  %-11s chanq consume %8.0f jobs/s   chanq fetch %8.0f jobs/s" % (
                "pipelined" if pipelined else "one-by-one",
                statistics.median(results[("chanq", pipelined)]),
                statistics.median(results[("chanq-fetch", pipelined)]))
            if redis_port:
                row += "   redis LPUSH/BRPOP %8.0f jobs/s" % statistics.median(results[("redis", pipelined)])
            print(row)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main())
