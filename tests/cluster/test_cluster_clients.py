#!/usr/bin/env python3
"""libchanq with several servers, through the chanq CLI, on a real
three-node cluster (--raft-election-ms 500, free loopback ports):

- `--servers` and CHANQ_SERVERS with the followers listed first reach the
  leader (ping, submit, job);
- `chanq submit` of NDJSON lines from stdin, pipelined (--window 32),
  while the leader is killed: every line gets an id, printed in order,
  and every printed id is a job on the new leader;
- `chanq work` (libchanq's worker) with --servers keeps working after the
  leader it consumed from was killed: jobs submitted after the failover
  are run.

Every wait is bounded; SKIP (77) in a --without-cluster build."""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_cluster_failover import (WAIT, Node, chanq, cluster_built, free_port,  # noqa: E402
                                   leader_of, until)
from test_cluster_smoke import cluster_run  # noqa: E402
from opslib import TOP_BUILDDIR, Skip, main  # noqa: E402

CLI = os.path.join(TOP_BUILDDIR, "clients", "chanq")
QUEUE = "cq"


def cli(args, env=None, stdin=None, timeout=WAIT):
    e = dict(os.environ)
    e.pop("CHANQ_SERVER", None)
    e.pop("CHANQ_SERVERS", None)
    e.update(env or {})
    return subprocess.run([CLI] + args, input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=e)


def start_cluster(top):
    raft = [free_port() for _ in range(3)]
    client = [free_port() for _ in range(3)]
    peers = ",".join("%d@127.0.0.1:%d/127.0.0.1:%d" % (i + 1, raft[i], client[i]) for i in range(3))
    nodes = [Node(top, i + 1, peers, client[i]) for i in range(3)]
    for n in nodes:
        n.start()
    return nodes


def followers_first(nodes):
    leader = until("a leader", lambda: leader_of(nodes))
    return leader, ",".join(n.address for n in nodes if n is not leader) + "," + leader.address


def check_reach_the_leader(nodes):
    leader, servers = followers_first(nodes)
    p = cli(["ping", "--servers", servers])
    assert p.returncode == 0, p.stderr
    p = cli(["declare", QUEUE, "--capacity", "100000", "--servers", servers])
    assert p.returncode == 0, p.stderr
    p = cli(["submit", QUEUE, '{"n":0}'], env={"CHANQ_SERVERS": servers})
    assert p.returncode == 0, p.stderr
    jid = p.stdout.strip()
    p = cli(["job", jid, "--servers", servers])
    assert p.returncode == 0 and json.loads(p.stdout)["job"]["state"] == "queued", p.stdout
    # One follower alone: it serves ping, and refuses a submit, naming the leader.
    follower = next(n for n in nodes if n is not leader)
    p = cli(["submit", QUEUE, "1", "--server", follower.address])
    assert p.returncode != 0 and "not_leader" in p.stderr and leader.address in p.stderr, p.stderr
    return jid


def check_stdin_submit_across_a_kill(nodes, servers):
    lines = 1500
    e = dict(os.environ, CHANQ_SERVERS=servers)
    proc = subprocess.Popen([CLI, "submit", QUEUE, "--window", "32"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    ids, out = [], {}

    def read_ids():
        for line in proc.stdout:
            ids.append(line.strip())
    readers = [threading.Thread(target=read_ids, daemon=True),
               threading.Thread(target=lambda: out.__setitem__("stderr", proc.stderr.read()),
                                daemon=True)]
    for r in readers:
        r.start()
    leader = until("a leader", lambda: leader_of(nodes))
    for i in range(lines):
        proc.stdin.write(json.dumps({"line": i}) + "\n")
        if i % 50 == 0:
            proc.stdin.flush()
            time.sleep(0.02)
        if i == lines // 3:
            # Once the CLI surely talks to this leader (answers came back).
            until("answers to the first submits", lambda: len(ids) > 100)
            leader.kill()
    proc.stdin.close()
    for r in readers:
        r.join(WAIT)
    assert proc.wait(WAIT) == 0, out.get("stderr")
    assert len(ids) == lines, (len(ids), out["stderr"][-2000:])
    assert "the leader changed" in out["stderr"], out["stderr"][-2000:]
    leader.start()
    c = chanq.ClusterClient(servers, failover_timeout=WAIT)
    try:
        for jid in ids:
            c.job(jid)  # raises NotFound when an id answered ok is missing
        payloads = {c.job(jid).payload["line"] for jid in ids[:: max(1, lines // 100)]}
        assert payloads, "payloads"
    finally:
        c.close()
    return len(ids)


def check_worker_after_a_kill(nodes, servers, top):
    done = os.path.join(top, "done")
    c = chanq.ClusterClient(servers, failover_timeout=WAIT)
    worker = subprocess.Popen([CLI, "work", "wq", "--servers", servers, "--", "sh", "-c",
                               "cat >> %s; echo >> %s" % (done, done)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def ran():
            try:
                with open(done) as f:
                    return {json.loads(x)["k"] for x in f.read().split("\n") if x.strip()}
            except FileNotFoundError:
                return set()
        for k in range(5):
            c.submit({"k": k}, "wq")
        until("the worker to run the first jobs", lambda: ran() >= set(range(5)))
        leader = until("a leader", lambda: leader_of(nodes))
        leader.kill()
        t0 = time.monotonic()
        for k in range(5, 10):
            c.submit({"k": k}, "wq")
        until("the worker to run jobs after the failover", lambda: ran() >= set(range(10)))
        resumed_s = time.monotonic() - t0
        leader.start()
        return resumed_s
    finally:
        c.close()
        worker.terminate()
        try:
            worker.wait(WAIT)
        except subprocess.TimeoutExpired:
            worker.kill()


def test_cli_and_libchanq_follow_the_leader():
    if not cluster_built():
        raise Skip("chanqd built without the cluster code")
    top = tempfile.mkdtemp(prefix="chanq-clients-")
    nodes = start_cluster(top)
    with cluster_run(nodes, top, tail=2000):
        check_reach_the_leader(nodes)
        servers = ",".join(n.address for n in nodes)
        n = check_stdin_submit_across_a_kill(nodes, servers)
        resumed_s = check_worker_after_a_kill(nodes, servers, top)
        print("chanq submit: %d lines across a kill, every id a job; chanq work ran jobs "
              "again %.2f s after its leader was killed" % (n, resumed_s))


if __name__ == "__main__":
    sys.exit(main([test_cli_and_libchanq_follow_the_leader]))
