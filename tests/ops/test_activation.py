#!/usr/bin/env python3
"""Socket activation, black-box: chanqd serves on the TCP and Unix sockets
passed as fds 3.. with LISTEN_FDS/LISTEN_PID (as systemd does), binds none
of its configured addresses then, leaves systemd's socket file alone, and
ignores LISTEN_FDS meant for another pid. Also through systemd's own
systemd-socket-activate when it is installed."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opslib import CHANQD, Daemon, Skip, free_port, main, ping  # noqa: E402


def activation_preexec(socks, pid_offset=0):
    """A preexec_fn that puts socks at fds 3.. and sets LISTEN_* for the
    exec'd process itself (same pid after exec)."""
    high = [os.dup(s.fileno()) for s in socks]
    for fd in high:
        os.set_inheritable(fd, True)

    def preexec():
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i)
        os.putenv("LISTEN_FDS", str(len(socks)))
        os.putenv("LISTEN_PID", str(os.getpid() + pid_offset))
        os.putenv("LISTEN_FDNAMES", ":".join("s%d" % i for i in range(len(socks))))
    return preexec, high


def test_tcp_and_unix_sockets_from_systemd_are_served():
    tmp = tempfile.mkdtemp(prefix="chanq-act-")
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)
    port = tcp.getsockname()[1]
    upath = os.path.join(tmp, "chanqd.sock")
    uni = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    uni.bind(upath)
    uni.listen(16)
    configured = free_port()
    preexec, high = activation_preexec([tcp, uni])
    d = Daemon(["--memory", "--listen", "127.0.0.1:%d" % configured, "--unix", "@DIR@/other.sock"],
               pass_fds=(3, 4), preexec_fn=preexec)
    try:
        for fd in high:
            os.close(fd)
        tcp.close()  # only chanqd holds them now
        uni.close()
        assert d.port == port, "served on %s, want the passed port %d" % (d.port, port)
        d.wait_log(r"listening on 127\.0\.0\.1:%d \(socket activation\)" % port)
        d.wait_log(r"listening on unix:%s \(socket activation\)" % upath)
        ping(("127.0.0.1", port))
        ping(upath)
        try:
            socket.create_connection(("127.0.0.1", configured), timeout=1).close()
            raise AssertionError("the configured --listen address was bound too")
        except ConnectionRefusedError:
            pass
        assert not os.path.exists(os.path.join(d.dir, "other.sock")), "--unix was bound too"
        assert d.stop() == 0, "exit status"
        assert os.path.exists(upath), "chanqd removed systemd's socket file"
    finally:
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_listen_fds_for_another_pid_are_ignored():
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)
    passed_port = tcp.getsockname()[1]
    preexec, high = activation_preexec([tcp], pid_offset=1)
    d = Daemon(["--memory", "--listen", "127.0.0.1:0"], pass_fds=(3,), preexec_fn=preexec)
    try:
        for fd in high:
            os.close(fd)
        tcp.close()
        assert d.port != passed_port, "served on a socket meant for another process"
        assert "socket activation" not in d.log()
        ping(("127.0.0.1", d.port))
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_a_non_socket_fd_is_refused():
    r, w = os.pipe()
    high = os.dup(r)
    os.set_inheritable(high, True)

    def preexec():
        os.dup2(high, 3)
        os.putenv("LISTEN_FDS", "1")
        os.putenv("LISTEN_PID", str(os.getpid()))
    d = Daemon(["--memory"], pass_fds=(3,), preexec_fn=preexec, expect_start=False)
    try:
        for fd in (r, w, high):
            os.close(fd)
        assert d.wait() != 0, "chanqd served on a pipe"
        d.wait_log(r"fd 3 is not a listening stream socket")
    finally:
        d.cleanup()


def test_systemd_socket_activate_starts_chanqd_on_first_connection():
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        raise Skip("systemd-socket-activate not installed (Debian package systemd)")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="chanq-ssa-")
    log = open(os.path.join(tmp, "log"), "wb")
    p = subprocess.Popen([tool, "-l", "127.0.0.1:%d" % port, CHANQD, "--memory",
                          "--listen", "127.0.0.1:1"],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:  # the tool binds first, then waits for a connection
            try:
                ping(("127.0.0.1", port))
                break
            except (ConnectionRefusedError, ConnectionResetError):
                if time.monotonic() > deadline or p.poll() is not None:
                    raise
                time.sleep(0.02)
        ping(("127.0.0.1", port))
        p.terminate()
        assert p.wait(10) == 0, "exit status %s" % p.returncode
        text = open(os.path.join(tmp, "log")).read()
        assert "listening on 127.0.0.1:%d (socket activation)" % port in text, text
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main([
        test_tcp_and_unix_sockets_from_systemd_are_served,
        test_listen_fds_for_another_pid_are_ignored,
        test_a_non_socket_fd_is_refused,
        test_systemd_socket_activate_starts_chanqd_on_first_connection,
    ]))
