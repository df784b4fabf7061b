"""Shared helpers of the black-box operations tests (tests/ops/test_*.py):
start a real chanqd with a temp dir, read its log, talk NDJSON over TCP or
a Unix socket, fetch HTTP, and a tiny runner that prints one line per test
and the closing "N passed, N failed" line. Every wait is bounded."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

TOP_BUILDDIR = os.environ.get("top_builddir", ".")
TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CHANQD = os.path.join(TOP_BUILDDIR, "daemon", "chanqd")
TIMEOUT = 10.0


def log_format_args(args):
    """CHANQ_TEST_LOG_FORMAT=FORMAT adds --log-format FORMAT to a chanqd
    that names neither its own --config nor --log-format (as tests/harness.c
    does); returns the extra arguments."""
    fmt = os.environ.get("CHANQ_TEST_LOG_FORMAT")
    if not fmt or "--config" in args or "--log-format" in args:
        return []
    return ["--log-format", fmt]


def keep_log(path, name):
    """With CHANQ_TEST_LOG_KEEP=DIR, appends the log at path to a file in
    DIR (for tests/json-logs.py)."""
    keep = os.environ.get("CHANQ_TEST_LOG_KEEP")
    if not keep or not os.path.exists(path):
        return
    with open(path, "rb") as src, open(os.path.join(keep, name), "ab") as dst:
        shutil.copyfileobj(src, dst)


class Daemon:
    """A chanqd process with its own temp dir; stderr goes to dir/chanqd.log."""

    def __init__(self, args, env=None, pass_fds=(), preexec_fn=None, argv0=None, expect_start=True):
        self.dir = tempfile.mkdtemp(prefix="chanq-ops-")
        self.log_path = os.path.join(self.dir, "chanqd.log")
        # env=None keeps os.environ as is, so that a preexec_fn's putenv
        # (LISTEN_PID must name the exec'd process) takes effect.
        full_env = dict(os.environ) if env else None
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        with open(self.log_path, "wb") as log:
            self.log_format = log_format_args(args)
            cmd = (argv0 or []) + [CHANQD] + [a.replace("@DIR@", self.dir) for a in args] + self.log_format
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log, env=full_env, pass_fds=pass_fds,
                                         preexec_fn=preexec_fn)
        self.port = None
        if expect_start:
            m = self.wait_log(r"listening on 127\.0\.0\.1:(\d+)")
            self.port = int(m.group(1))

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=TIMEOUT, after=0):
        """Waits for pattern in the log (from offset after); returns the match."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.log(), after)
            if m:
                return m
            if self.proc.poll() is not None:
                m = rx.search(self.log(), after)
                if m:
                    return m
                raise AssertionError("chanqd exited (%s) before logging %r; log:\n%s"
                                     % (self.proc.returncode, pattern, self.log()))
            time.sleep(0.01)
        raise AssertionError("no %r in the log within %gs; log:\n%s" % (pattern, timeout, self.log()))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("chanqd did not exit within %gs; log:\n%s" % (timeout, self.log()))

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log_format:
            keep_log(self.log_path, "ops-%d-%s.log" % (os.getpid(), os.path.basename(self.dir)))
        shutil.rmtree(self.dir, ignore_errors=True)


def run_chanqd(args, timeout=TIMEOUT):
    """Runs chanqd to completion (--check-config, bad config); returns (rc, stdout, stderr)."""
    p = subprocess.run([CHANQD] + args, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def request(sock, obj):
    """Sends one NDJSON request on a connected socket and returns the answer."""
    sock.settimeout(TIMEOUT)
    sock.sendall((json.dumps(obj) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before an answer (got %r)" % buf)
        buf += chunk
    return json.loads(buf.split(b"\n")[0])


def dial(addr):
    """Connects to ("host", port) over TCP or to a Unix socket path."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(addr)
    return s


def ping(addr):
    with dial(addr) as s:
        r = request(s, {"op": "ping"})
    assert r.get("ok") is True, "ping answer %r" % r


_PORTS_GIVEN = set()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago, and never given
    before in this process: a test that asks for several ports before any
    daemon binds them (a cluster's Raft and client ports) must not get the
    same one twice, which the kernel may hand out again once released."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def http_get(port, path, host="127.0.0.1"):
    """Returns (status, content type, body text)."""
    url = "http://%s:%d%s" % (host, port, path)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def notify_socket(tmpdir=None):
    """A datagram socket to stand in for systemd: abstract when tmpdir is
    None, else a path in tmpdir. Returns (socket, NOTIFY_SOCKET value)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if tmpdir is None:
        name = "@chanq-test-%d-%d" % (os.getpid(), time.monotonic_ns() % 1000000)
        s.bind("\0" + name[1:])
    else:
        name = os.path.join(tmpdir, "notify.sock")
        s.bind(name)
    return s, name


def notify_messages(s, until, timeout=TIMEOUT):
    """Receives datagrams until one contains the assignment `until`; returns
    every message received, in order (each a list of assignments)."""
    deadline = time.monotonic() + timeout
    msgs = []
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(4096)
        except socket.timeout:
            break
        msg = data.decode().split("\n")
        msgs.append(msg)
        if until in msg:
            return msgs
    raise AssertionError("no %s within %gs; got %r" % (until, timeout, msgs))


def main(tests, budget_s=120):
    """Runs each test function; prints PASS/FAIL lines and the summary.
    A test raising Skip counts as skipped. Exit status 1 on any failure,
    77 when everything was skipped."""
    signal.alarm(budget_s)  # a hung test fails the run rather than blocking it
    passed = failed = skipped = 0
    for t in tests:
        start = time.monotonic()
        try:
            t()
            passed += 1
            print("PASS: %s (%.2fs)" % (t.__name__, time.monotonic() - start))
        except Skip as e:
            skipped += 1
            print("SKIP: %s: %s" % (t.__name__, e))
        except Exception:
            failed += 1
            print("FAIL: %s" % t.__name__)
            traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if failed:
        return 1
    return 77 if skipped and not passed else 0


class Skip(Exception):
    pass
