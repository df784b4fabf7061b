#!/usr/bin/env python3
"""Cluster flags, black-box: --node-id, --raft-listen, --peers and
--raft-election-ms are validated with --check-config (exit 0 valid, 2 with
the reason), and a chanqd built --without-cluster refuses them by name."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops"))
from opslib import main, run_chanqd  # noqa: E402

GOOD = ["--node-id", "2", "--peers", "1@127.0.0.1:7501/127.0.0.1:7421,2@127.0.0.1:7502,3@127.0.0.1:7503"]


def built_with_cluster():
    rc, out, err = run_chanqd(["--check-config"] + GOOD)
    if "built without cluster support" in err:
        assert rc == 2, (rc, err)
        return False
    assert rc == 0 and "configuration OK" in out, (rc, out, err)
    return True


def refused(args, why):
    rc, out, err = run_chanqd(["--check-config"] + args)
    assert rc == 2 and why in err, (args, rc, out, err)


def test_a_build_without_cluster_refuses_every_cluster_flag():
    if built_with_cluster():
        return
    for args in (GOOD, ["--node-id", "1"], ["--raft-listen", "127.0.0.1:7501"]):
        refused(args, "node-id, raft-listen, peers: this chanqd was built without cluster support")
    rc, out, err = run_chanqd(["--check-config", "--raft-election-ms", "500"])
    assert rc == 0, (rc, err)  # a timeout alone changes nothing


def test_cluster_flags_are_checked_together():
    if not built_with_cluster():
        return
    rc, out, err = run_chanqd(["--check-config", "--raft-listen", "0.0.0.0:7502",
                               "--raft-election-ms", "500"] + GOOD)
    assert rc == 0, (rc, err)
    refused(["--node-id", "4"] + GOOD[2:], "node-id 4 is not among peers")
    refused(["--node-id", "1"], "cluster mode needs both node-id and peers")
    refused(GOOD[2:], "cluster mode needs both node-id and peers")
    refused(GOOD + ["--memory"], "cannot run with memory")
    refused(["--node-id", "1", "--peers", "1@localhost:7501"],
            "'localhost:7501' is not an IPv4 address and port")
    refused(["--node-id", "1", "--peers", "1@127.0.0.1:7501,1@127.0.0.1:7502"], "listed twice")
    refused(["--node-id", "1", "--peers", "x@127.0.0.1:7501"], "is not ID@IPV4:PORT")
    refused(["--node-id", "1", "--peers", "1@127.0.0.1:7501/nope"], "client address 'nope'")
    refused(["--raft-election-ms", "50"] + GOOD, "raft-election-ms: 50 is out of range")


if __name__ == "__main__":
    sys.exit(main([test_a_build_without_cluster_refuses_every_cluster_flag,
                   test_cluster_flags_are_checked_together]))
