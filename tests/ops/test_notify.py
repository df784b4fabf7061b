#!/usr/bin/env python3
"""systemd notify protocol, black-box: READY=1 only once chanqd accepts,
STATUS= lines, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on
SIGTERM, in that order; WATCHDOG=1 at half of WATCHDOG_USEC; no READY=1
when start-up fails."""
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opslib import Daemon, main, notify_messages, notify_socket, ping  # noqa: E402


def assignments(msgs):
    return [a.split("=", 1)[0] + ("=1" if a.endswith("=1") else "") for m in msgs for a in m]


def test_ready_reload_stopping_in_order_on_an_abstract_socket():
    ns, name = notify_socket()
    d = Daemon(["--memory", "--listen", "127.0.0.1:0"], env={"NOTIFY_SOCKET": name})
    try:
        msgs = notify_messages(ns, "READY=1")
        # READY=1 means accepting: a ping works right away.
        ping(("127.0.0.1", d.port))
        assert any(a.startswith("STATUS=serving") for m in msgs for a in m), msgs
        d.signal(signal.SIGHUP)
        msgs2 = notify_messages(ns, "READY=1")
        flat = assignments(msgs2)
        assert "RELOADING=1" in flat and flat.index("RELOADING=1") < flat.index("READY=1"), msgs2
        assert any(a.startswith("MONOTONIC_USEC=") for m in msgs2 for a in m), msgs2
        d.signal(signal.SIGTERM)
        msgs3 = notify_messages(ns, "STOPPING=1")
        assert "READY=1" not in assignments(msgs3), "READY=1 after SIGTERM: %r" % msgs3
        assert d.wait() == 0, "exit status %s" % d.proc.returncode
        order = assignments(msgs + msgs2 + msgs3)
        assert order.index("READY=1") < order.index("STOPPING=1")
    finally:
        d.cleanup()
        ns.close()


def test_messages_reach_a_path_socket_and_the_watchdog_pings():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="chanq-notify-")
    ns, name = notify_socket(tmp)
    d = Daemon(["--memory", "--listen", "127.0.0.1:0"],
               env={"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": None})
    try:
        notify_messages(ns, "READY=1")
        pings = 0
        for _ in range(3):  # every 100 ms
            notify_messages(ns, "WATCHDOG=1", timeout=2)
            pings += 1
        d.wait_log(r"systemd watchdog: pinging every 100 ms")
        assert d.stop() == 0
    finally:
        d.cleanup()
        ns.close()
        os.unlink(name)
        os.rmdir(tmp)


def test_no_ready_when_start_up_fails():
    ns, name = notify_socket()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    d = Daemon(["--memory", "--listen", "127.0.0.1:%d" % port], env={"NOTIFY_SOCKET": name},
               expect_start=False)
    try:
        rc = d.wait()
        assert rc != 0, "chanqd started on a busy port"
        ns.settimeout(0.2)
        try:
            data = ns.recv(4096).decode()
        except socket.timeout:
            data = ""
        assert "READY=1" not in data, "READY=1 although start-up failed: %r" % data
    finally:
        d.cleanup()
        busy.close()
        ns.close()


if __name__ == "__main__":
    sys.exit(main([
        test_ready_reload_stopping_in_order_on_an_abstract_socket,
        test_messages_reach_a_path_socket_and_the_watchdog_pings,
        test_no_ready_when_start_up_fails,
    ]))
