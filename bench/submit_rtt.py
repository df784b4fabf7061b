#!/usr/bin/env python3
"""Submit round trips with one submit in flight: N sequential `submit`s
of a 100-byte payload on one connection to a chanqd (a single node or a
cluster's leader), each timed from the write to its answer. Every answer
must be `ok`. Prints p50/p90/p99/max and a machine-readable RESULT line;
bench/cluster.sh runs it (docs/performance.md).

    bench/submit_rtt.py --port PORT [--host 127.0.0.1] [--count 500]
        [--label NAME] [--queue rtt]

One in flight is the case where a batch holds a single record, so on a
cluster every submit is one Raft entry committed on its own: it shows a
transport that waits on Nagle and delayed ACKs (~40 ms a commit) at once.
"""
import argparse
import json
import socket
import sys
import time


def percentile(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100.0 * len(sorted_ms)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--label", default="chanqd")
    ap.add_argument("--queue", default="rtt")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per answer")
    a = ap.parse_args()
    payload = "x" * 100
    times = []
    with socket.create_connection((a.host, a.port), timeout=a.timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        for i in range(a.count):
            line = json.dumps({"op": "submit", "queue": a.queue, "payload": payload}) + "\n"
            t0 = time.perf_counter()
            s.sendall(line.encode())
            answer = f.readline()
            times.append((time.perf_counter() - t0) * 1000.0)
            if not answer:
                sys.exit("submit_rtt: connection closed after %d submits" % i)
            r = json.loads(answer)
            if not r.get("ok"):
                sys.exit("submit_rtt: submit %d answered %r" % (i, r))
    times.sort()
    p50, p90, p99 = (percentile(times, p) for p in (50, 90, 99))
    print("%s: %d submits, one in flight: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms"
          % (a.label, a.count, p50, p90, p99, times[-1]))
    print("RESULT mode=rtt server=%s count=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f"
          % (a.label, a.count, p50, p90, p99, times[-1]))


if __name__ == "__main__":
    main()
