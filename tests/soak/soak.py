#!/usr/bin/env python3
"""Soak test: well-behaved producers and workers, hostile clients of every
kind, and kill -9 of chanqd every few seconds, for a chosen time. At the end
it proves, from the clients' own ledger:

  - zero acknowledged jobs lost: every submit answered ok and never acked is
    still there after the last restart;
  - zero acked jobs delivered again;
  - chanqd's RSS stayed within the budget (--max-memory plus a fixed
    allowance for the runtime);
  - the well-behaved clients' p99 request latency (outside the moments
    around a kill) stayed within the stated bound.

Not part of `make check` (docs/hacking.md): run it by hand, e.g.

    tests/soak/soak.py --minutes 30 --kill-every 20

It talks to 127.0.0.1 only, every loop is bounded by the run time, and it
stops chanqd and removes its temp dir when it ends.
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOKEN = "soak-token-" + "%08x" % random.getrandbits(32)
QUEUE = "soak"

# Ledger bits per job key.
SENT, SUBMIT_OK, ACK_SENT, ACK_OK = 1, 2, 4, 8


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Chanqd:
    """chanqd with a data dir that survives kill -9 and restarts."""

    def __init__(self, binary, max_memory, extra):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="chanq-soak-")
        self.port = free_port()
        self.http_port = free_port()
        self.max_memory = max_memory
        with open(os.path.join(self.dir, "token"), "w") as f:
            f.write(TOKEN + "\n")
        self.args = [binary, "--listen", "127.0.0.1:%d" % self.port,
                     "--data-dir", os.path.join(self.dir, "data"),
                     "--token-file", os.path.join(self.dir, "token"),
                     "--http", "127.0.0.1:%d" % self.http_port,
                     "--max-memory", str(max_memory),
                     "--max-connections", "3000"] + extra
        self.proc = None
        self.log = open(os.path.join(self.dir, "chanqd.log"), "ab")
        self.lock = threading.Lock()
        self.generation = 0

    def start(self):
        with self.lock:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=self.log)
            self.generation += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("chanqd exited with %s at start; see %s/chanqd.log"
                                     % (self.proc.returncode, self.dir))
                time.sleep(0.02)
        raise SystemExit("chanqd did not listen within 60 s")

    def kill9(self):
        with self.lock:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        with self.lock:
            if self.proc and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()

    def rss_bytes(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0


class Conn:
    """One NDJSON connection with hello; raises OSError when the daemon goes."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        r = self.call({"op": "hello", "token": TOKEN, "client": "soak"})
        if not r.get("ok"):
            raise OSError("hello refused: %r" % r)

    def send(self, obj):
        self.sock.sendall((json.dumps(obj) + "\n").encode())

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, obj):
        self.send(obj)
        while True:
            r = self.recv()
            if "event" not in r:
                return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Run:
    def __init__(self, args, daemon):
        self.args = args
        self.d = daemon
        self.until = time.monotonic() + args.minutes * 60
        self.stop_load = threading.Event()
        self.lock = threading.Lock()
        self.state = bytearray(args.max_keys)
        self.next_key = 0
        self.revived = []
        self.latencies = []       # (start, seconds) of well-behaved requests
        self.outages = []         # (from, to) around each kill, excluded from p99
        self.max_rss = 0
        self.kills = 0
        self.hostile_counts = {}

    def running(self):
        return not self.stop_load.is_set() and time.monotonic() < self.until

    def new_key(self):
        with self.lock:
            if self.next_key >= len(self.state):
                return None
            k = self.next_key
            self.next_key += 1
            self.state[k] |= SENT
            return k

    def timed(self, conn, obj):
        t0 = time.monotonic()
        r = conn.call(obj)
        with self.lock:
            self.latencies.append((t0, time.monotonic() - t0))
        return r

    def connect(self):
        """A well-behaved connection, retried while the daemon restarts."""
        while self.running():
            try:
                return Conn(self.d.port)
            except OSError:
                time.sleep(0.05)
        return None

    # ---- well-behaved clients ----

    def producer(self):
        conn = None
        while self.running():
            if conn is None:
                conn = self.connect()
                if conn is None:
                    return
            k = self.new_key()
            if k is None:
                time.sleep(0.1)
                continue
            try:
                r = self.timed(conn, {"op": "submit", "queue": QUEUE,
                                      "payload": {"k": k, "pad": "x" * 40}, "wait_ms": 1000})
                if r.get("ok"):
                    with self.lock:
                        self.state[k] |= SUBMIT_OK
            except (OSError, ValueError):
                conn.close()
                conn = None

    def worker(self):
        conn = None
        while self.running():
            if conn is None:
                conn = self.connect()
                if conn is None:
                    return
            try:
                r = self.timed(conn, {"op": "fetch", "queue": QUEUE, "count": 8,
                                      "timeout_ms": 200})
                for job in r.get("jobs", []):
                    self.work_on(conn, job)
            except (OSError, ValueError):
                conn.close()
                conn = None

    def work_on(self, conn, job):
        k = job["payload"]["k"]
        with self.lock:
            if self.state[k] & ACK_OK:
                self.revived.append((k, job.get("attempt")))
        if random.random() < 0.05:
            self.timed(conn, {"op": "nack", "id": job["id"], "delay_ms": 0, "error": "soak"})
            return
        with self.lock:
            self.state[k] |= ACK_SENT
        r = self.timed(conn, {"op": "ack", "id": job["id"]})
        if r.get("ok"):
            with self.lock:
                self.state[k] |= ACK_OK

    # ---- hostile clients ----

    def count(self, kind, n=1):
        with self.lock:
            self.hostile_counts[kind] = self.hostile_counts.get(kind, 0) + n

    def raw_socks(self, n):
        socks = []
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", self.d.port), timeout=2)
                s.setblocking(False)
                socks.append(s)
            except OSError:
                break
        return socks

    def hostile_loop(self, kind, body):
        while self.running():
            try:
                body()
                self.count(kind)
            except OSError:
                pass
            time.sleep(0.05)

    def unauth_trickle(self):
        """Unfinished hello lines of growing size from many connections."""
        socks = self.raw_socks(self.args.hostile_conns)
        try:
            for s in socks:
                s.send(b'{"op":"hello","token":"')
            for _ in range(50):
                if not self.running():
                    break
                for s in socks:
                    try:
                        s.send(b"a" * 16384)
                    except OSError:
                        pass
                time.sleep(0.1)
        finally:
            for s in socks:
                s.close()

    def queues_flood(self):
        """Many queues, then `queues` requests that are never read."""
        conn = Conn(self.d.port)
        try:
            for i in range(0, 5000, 500):
                for j in range(i, i + 500):
                    conn.send({"op": "declare", "queue": "flood%04d" % j})
                for _ in range(500):
                    conn.recv()
            for _ in range(40):
                conn.send({"op": "queues"})
            time.sleep(2)
        finally:
            conn.close()

    def token_guesser(self):
        conn = socket.create_connection(("127.0.0.1", self.d.port), timeout=5)
        try:
            f = conn.makefile("rwb")
            for i in range(200):
                f.write(b'{"op":"hello","token":"guess%d"}\n' % i)
                f.flush()
                if not f.readline():
                    break
        finally:
            conn.close()

    def idle_hog(self):
        socks = self.raw_socks(self.args.hostile_conns)
        time.sleep(3)
        for s in socks:
            s.close()

    def slow_reader(self):
        """Pipelines submits and never reads the answers."""
        conn = Conn(self.d.port)
        try:
            conn.sock.setblocking(False)
            line = (json.dumps({"op": "submit", "queue": "slowreader", "payload": "x" * 200,
                                "wait_ms": 0}) + "\n").encode() * 100
            for _ in range(200):
                try:
                    conn.sock.send(line)
                except BlockingIOError:
                    time.sleep(0.01)
        finally:
            conn.close()

    def garbage(self):
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=2)
        try:
            s.sendall(os.urandom(4096) + b"\n" + b"{\"op\":\n" + b"[1,2]\n")
            s.settimeout(1)
            try:
                s.recv(65536)
            except OSError:
                pass
        finally:
            s.close()

    # ---- the daemon's life ----

    def killer(self):
        while self.running():
            end = time.monotonic() + self.args.kill_every
            while self.running() and time.monotonic() < end:
                time.sleep(0.2)
            if not self.running():
                return
            t0 = time.monotonic()
            self.d.kill9()
            self.d.start()
            self.kills += 1
            with self.lock:
                self.outages.append((t0 - 0.5, time.monotonic() + 1.0))

    def sampler(self):
        while self.running():
            self.max_rss = max(self.max_rss, self.d.rss_bytes())
            time.sleep(0.5)

    # ---- the verdict ----

    def drain_and_verify(self):
        """After a clean restart: fetch and ack everything left."""
        conn = Conn(self.d.port)
        seen = set()
        while True:
            r = conn.call({"op": "fetch", "queue": QUEUE, "count": 500, "timeout_ms": 0})
            jobs = r.get("jobs", [])
            if not jobs:
                break
            for job in jobs:
                k = job["payload"]["k"]
                if self.state[k] & ACK_OK:
                    self.revived.append((k, job.get("attempt")))
                seen.add(k)
                conn.call({"op": "ack", "id": job["id"]})
        dead = conn.call({"op": "stats", "queue": QUEUE}).get("queue", {}).get("dead", 0)
        if dead:
            print("soak: %d jobs are dead (attempts used up): counted as lost" % dead)
        conn.close()
        lost = [k for k in range(self.next_key)
                if self.state[k] & SUBMIT_OK and not self.state[k] & ACK_SENT and k not in seen]
        return seen, lost

    def p99_ms(self):
        samples = sorted(d for t, d in self.latencies
                         if not any(a <= t <= b for a, b in self.outages))
        if not samples:
            return 0.0, 0
        return samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000, len(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2)
    ap.add_argument("--kill-every", type=float, default=20, help="seconds between kill -9")
    ap.add_argument("--chanqd", default=os.path.join(os.environ.get("BUILD_DIR", "build"),
                                                     "daemon", "chanqd"))
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--hostile-conns", type=int, default=300)
    ap.add_argument("--max-memory", type=int, default=256 << 20)
    ap.add_argument("--rss-allowance", type=int, default=128 << 20,
                    help="RSS allowed on top of --max-memory (runtime, stacks, buffers)")
    ap.add_argument("--p99-ms", type=float, default=250.0)
    ap.add_argument("--max-keys", type=int, default=20_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()

    d = Chanqd(args.chanqd, args.max_memory, [])
    d.start()
    setup = Conn(d.port)
    # Deliveries cut short by a kill count as attempts: allow plenty, so that
    # no job goes to the dead list (which the drain would not see).
    setup.call({"op": "declare", "queue": QUEUE, "capacity": 100000, "max_attempts": 1000})
    setup.close()
    run = Run(args, d)
    threads = [threading.Thread(target=run.producer) for _ in range(args.producers)]
    threads += [threading.Thread(target=run.worker) for _ in range(args.workers)]
    for kind in ("unauth_trickle", "queues_flood", "token_guesser", "idle_hog", "slow_reader",
                 "garbage"):
        threads.append(threading.Thread(target=run.hostile_loop, args=(kind, getattr(run, kind))))
    threads += [threading.Thread(target=run.killer), threading.Thread(target=run.sampler)]
    t0 = time.monotonic()
    for t in threads:
        t.daemon = True
        t.start()
    while time.monotonic() < run.until:
        time.sleep(1)
    run.stop_load.set()
    for t in threads:
        t.join(30)
    d.stop()
    d.start()
    seen, lost = run.drain_and_verify()
    d.stop()
    p99, n = run.p99_ms()
    acked = sum(1 for k in range(run.next_key) if run.state[k] & ACK_OK)
    promised = sum(1 for k in range(run.next_key) if run.state[k] & SUBMIT_OK)
    budget = args.max_memory + args.rss_allowance
    print("soak: %.1f min, %d kill -9, %d jobs answered ok, %d acked, %d back after the last "
          "restart" % ((time.monotonic() - t0) / 60, run.kills, promised, acked, len(seen)))
    print("soak: hostile rounds %s" % json.dumps(run.hostile_counts, sort_keys=True))
    print("soak: lost %d, acked delivered again %d, max RSS %.1f MiB (budget %.1f MiB), "
          "p99 %.1f ms over %d requests (bound %.0f ms)"
          % (len(lost), len(run.revived), run.max_rss / 2**20, budget / 2**20, p99, n,
             args.p99_ms))
    failed = []
    if lost:
        failed.append("lost acknowledged jobs: %s" % lost[:10])
    if run.revived:
        failed.append("acked jobs delivered again: %s" % run.revived[:10])
    if run.max_rss > budget:
        failed.append("RSS %d over budget %d" % (run.max_rss, budget))
    if p99 > args.p99_ms:
        failed.append("p99 %.1f ms over %.0f ms" % (p99, args.p99_ms))
    if promised == 0:
        failed.append("no job was submitted: the load never ran")
    if failed:
        print("soak: FAILED: " + "; ".join(failed) + " (log in %s)" % d.dir)
        return 1
    if not args.keep:
        shutil.rmtree(d.dir, ignore_errors=True)
    print("soak: passed")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main())
