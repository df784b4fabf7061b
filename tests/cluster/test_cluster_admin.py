#!/usr/bin/env python3
"""The cluster's own ops, black-box on three (then four) chanqd processes on
free loopback ports: `cluster` reports members, roles, indexes and the state
digest on every node; `cluster_transfer` hands leadership to a named node;
a fourth node started with --join is added by `cluster_add`, catches up and
votes, and `cluster_remove` takes it out again; SIGTERM on the leader hands
its leadership over before it exits (status 0), so the next leader serves
without waiting for an election timeout; /metrics shows the cluster
figures. Every wait is bounded."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cluster_smoke import Node, cluster_built, cluster_run, digests, serving, until  # noqa: E402
from opslib import TOP_BUILDDIR, Skip, free_port, main  # noqa: E402

CHANQ = os.path.join(TOP_BUILDDIR, "clients", "chanq")


def status(node):
    r = node.try_ask({"op": "cluster"})
    return r["cluster"] if r and r.get("ok") else None


def settled(nodes):
    """Every node answers, all agree on one leader, one digest and one
    membership (each node learns a change to it from the log, as it learns
    the jobs, but the digest covers the jobs only)."""
    views = [status(n) for n in nodes]
    if None in views or len({v["leader_id"] for v in views}) != 1 or views[0]["leader_id"] is None:
        return None
    if len({v["state_digest"] for v in views}) != 1:
        return None
    members = {json.dumps([(m["id"], m["voter"]) for m in v["members"]]) for v in views}
    if len(members) != 1:
        return None
    return views


def admin_post(http, op, fields):
    """POST /admin/OP with a fresh page token: (HTTP status, answer)."""
    base = "http://127.0.0.1:%d/admin" % http
    token = json.loads(urllib.request.urlopen(base, timeout=10).read())["page_token"]
    req = urllib.request.Request(base + "/" + op, data=json.dumps(fields).encode(),
                                 headers={"X-Chanq-Page-Token": token}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_cluster_ops_membership_and_handover():
    if not cluster_built():
        raise Skip("chanqd built without the cluster code")
    top = tempfile.mkdtemp(prefix="chanq-cluster-admin-")
    raft = [free_port() for _ in range(4)]
    client = [free_port() for _ in range(4)]
    http = free_port()
    addr = ["127.0.0.1:%d/127.0.0.1:%d" % (raft[i], client[i]) for i in range(4)]
    peers = ",".join("%d@%s" % (i + 1, addr[i]) for i in range(3))
    nodes = [Node(top, i + 1, peers, client[i]) for i in range(3)]
    nodes[0].args += ["--http", "127.0.0.1:%d" % http, "--http-admin"]
    fourth = Node(top, 4, peers, client[3])
    fourth.args = [a for a in fourth.args if a not in ("--peers", peers)]
    fourth.args += ["--join", "--raft-listen", "127.0.0.1:%d" % raft[3]]
    everyone = nodes + [fourth]
    with cluster_run(everyone, top):
        for n in nodes:
            n.start()
        leader = until("a serving leader", lambda: serving(nodes))
        assert leader.ask({"op": "submit", "queue": "q", "payload": 1}).get("ok")
        views = until("one leader and one digest on all three", lambda: settled(nodes))
        v = views[0]
        assert [m["id"] for m in v["members"]] == [1, 2, 3], v
        assert all(m["voter"] for m in v["members"]), v
        assert {m["client"] for m in v["members"]} == {"127.0.0.1:%d" % p for p in client[:3]}, v
        roles = {m["id"]: m["role"] for m in v["members"]}
        assert roles[leader.nid] == "leader" and list(roles.values()).count("leader") == 1, v
        mine = status(leader)
        assert mine["role"] == "leader" and mine["serving"], mine
        assert mine["commit_index"] >= 1 and mine["applied_index"] >= 1, mine
        assert mine["commit"]["count"] >= 1, mine
        follower = next(n for n in nodes if n is not leader)
        r = follower.ask({"op": "cluster_transfer", "node": follower.nid})
        assert r["error"]["code"] == "not_leader", r

        # Transfer to a named node: it serves next.
        target = next(n for n in nodes if n is not leader and n is not follower)
        r = leader.ask({"op": "cluster_transfer", "node": target.nid})
        assert r.get("ok"), r
        assert until("the target serving", lambda: serving(nodes)) is target
        leader = target

        # A new node joins: added, caught up, voting, same digest.
        fourth.start()
        h = until("node 4 up", lambda: fourth.try_ask({"op": "hello"}))
        assert h["role"] == "follower" and h["leader"] is None, h
        bad = leader.ask({"op": "cluster_add", "node": 4, "address": "127.0.0.1:%d" % raft[3]})
        assert bad["error"]["code"] == "bad_request", bad
        dup = leader.ask({"op": "cluster_add", "node": 1, "address": addr[3]})
        assert dup["error"]["code"] == "conflict", dup
        r = leader.ask({"op": "cluster_add", "node": 4, "address": addr[3]})
        assert r.get("ok"), r
        views = until("four nodes agree, node 4 voting",
                      lambda: (lambda v: v if v and all(m["voter"] for m in v[0]["members"])
                               else None)(settled(everyone)))
        assert [m["id"] for m in views[0]["members"]] == [1, 2, 3, 4], views[0]
        assert all(m["voter"] for m in views[0]["members"]), views[0]
        h = fourth.ask({"op": "hello"})
        assert h["role"] == "follower" and h["leader"] == "127.0.0.1:%d" % leader.port, h
        # The CLI asks every member for its own view.
        out = subprocess.run([CHANQ, "--server", "127.0.0.1:%d" % fourth.port, "cluster",
                              "--json"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out
        members = json.loads(out.stdout)["members"]
        assert [m["id"] for m in members] == [1, 2, 3, 4], members
        assert len({m["view"]["state_digest"] for m in members}) == 1, members
        assert [m["view"]["role"] for m in members].count("leader") == 1, members
        table = subprocess.run([CHANQ, "--server", "127.0.0.1:%d" % leader.port, "cluster"],
                               capture_output=True, text=True, timeout=30)
        assert table.returncode == 0 and table.stdout.count("\n") == 5, table
        r = leader.ask({"op": "cluster_remove", "node": 4})
        assert r.get("ok"), r
        until("node 4 gone from the configuration",
              lambda: [m["id"] for m in (status(leader) or {}).get("members", [])] == [1, 2, 3])
        fourth.kill()

        # /metrics (on node 1) has the cluster's figures.
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http, timeout=10).read()
        for name in (b"chanq_cluster_term ", b"chanq_cluster_leader ",
                     b"chanq_cluster_leader_changes_total ",
                     b"chanq_cluster_commit_duration_seconds_bucket"):
            assert name in text, name

        # The admin routes (on node 1) act on the leader's state, and on a
        # follower answer 421 naming the leader: both, leadership moved
        # between the two checks.
        def check_admin():
            code, body = admin_post(http, "pause", {"queue": "q"})
            if nodes[0] is leader:
                assert code == 200 and body.get("ok"), (code, body)
                assert admin_post(http, "resume", {"queue": "q"})[0] == 200
            else:
                assert code == 421 and body["error"]["code"] == "not_leader", (code, body)
                assert "127.0.0.1:%d" % leader.port in body["error"]["message"], body
        check_admin()
        to = nodes[1] if nodes[0] is leader else nodes[0]
        assert leader.ask({"op": "cluster_transfer", "node": to.nid}).get("ok")
        assert until("node %d serving" % to.nid, lambda: serving(nodes)) is to
        leader = to
        check_admin()
        # The node that handed over starts again as a follower: the SIGTERM
        # below hands over to the most up-to-date voter, so let it be back.
        until("all three again on one leader and one digest", lambda: settled(nodes))

        # SIGTERM on the leader: it hands over, then exits 0.
        assert leader.ask({"op": "submit", "queue": "q", "payload": 2}).get("ok")
        t0 = time.monotonic()
        leader.proc.send_signal(signal.SIGTERM)
        rest = [n for n in nodes if n is not leader]
        until("a new serving leader", lambda: serving(rest))
        handover_s = time.monotonic() - t0
        leader.proc.wait(30)
        assert leader.proc.returncode == 0, leader.proc.returncode
        assert "handed its leadership over" in leader.log(), leader.log()[-2000:]
        leader.start()
        until("three equal digests again",
              lambda: len(set(digests(nodes))) == 1 and None not in digests(nodes))
        print("cluster: SIGTERM to a serving successor %.2f s (election timeout 0.5 s)"
              % handover_s)


if __name__ == "__main__":
    sys.exit(main([test_cluster_ops_membership_and_handover]))
