"""The model test's side of the wire: a chanqd process with one data dir
across restarts, and NDJSON connections that keep the events they read
between answers. Every wait is bounded."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

TOP_BUILDDIR = os.environ.get("top_builddir", ".")
CHANQD = os.path.join(TOP_BUILDDIR, "daemon", "chanqd")
TIMEOUT = 20.0  # seconds for one answer (sanitizer builds are slow)


class ServerGone(Exception):
    """The connection ended before an answer."""


class Daemon:
    """chanqd on a free loopback port with its data dir in a temp dir; the
    same dir across restarts. stderr goes to dir/chanqd.log (appended)."""

    def __init__(self, args, env):
        self.dir = tempfile.mkdtemp(prefix="chanq-model-")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "chanqd.log")
        # CHANQ_TEST_LOG_FORMAT / CHANQ_TEST_LOG_KEEP: as in tests/harness.c.
        self.log_format = os.environ.get("CHANQ_TEST_LOG_FORMAT")
        self.args = args + (["--log-format", self.log_format] if self.log_format else [])
        self.env = dict(os.environ)
        self.env.update(env)
        self.proc = None
        self.port = None
        self.starts = 0

    def start(self):
        off = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [CHANQD, "--data-dir", self.data, "--listen", "127.0.0.1:0"] + self.args,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=self.env)
        self.starts += 1
        rx = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            m = rx.search(self.log(off))
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise AssertionError("chanqd did not start (exit %s); log:\n%s"
                             % (self.proc.poll(), self.log(off)[-4000:]))

    def log(self, off=0):
        with open(self.log_path, "r", errors="replace") as f:
            f.seek(off)
            return f.read()

    def stop(self, crash):
        """SIGKILL (crash) or SIGTERM, and waits for the exit."""
        self.proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        try:
            rc = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("chanqd did not stop within %gs" % TIMEOUT)
        if not crash and rc != 0:
            raise AssertionError("chanqd exited %s after SIGTERM; log tail:\n%s"
                                 % (rc, self.log()[-4000:]))
        self.proc = None

    def check_alive(self, wait=0.0):
        """Raises, with the log's tail, if chanqd has exited (or does
        within `wait` seconds: a dropped connection may be its dying)."""
        if self.proc is not None and wait > 0:
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError("chanqd died (exit %s); log tail:\n%s"
                                 % (self.proc.returncode, self.log()[-4000:]))

    def cleanup(self, keep):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        keep_dir = os.environ.get("CHANQ_TEST_LOG_KEEP")
        if self.log_format and keep_dir and os.path.exists(self.log_path):
            shutil.copyfile(self.log_path, os.path.join(
                keep_dir, "model-%d-%s.log" % (os.getpid(), os.path.basename(self.dir))))
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class Conn:
    """One client connection. Answers are read in order; the events that
    come between them are kept in `events`."""

    def __init__(self, port, cid):
        self.id = cid
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.events = []

    def send(self, reqs):
        data = b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode() for r in reqs)
        self.sock.sendall(data)

    def read_answer(self):
        while True:
            nl = self.buf.find(b"\n")
            while nl < 0:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ServerGone("connection %d closed before an answer" % self.id)
                self.buf += chunk
                nl = self.buf.find(b"\n")
            line, self.buf = self.buf[:nl], self.buf[nl + 1:]
            obj = json.loads(line)
            if "event" in obj and "ok" not in obj:
                self.events.append(obj)
                continue
            return obj

    def call(self, req):
        self.send([req])
        return self.read_answer()

    def pipeline(self, reqs):
        """Sends every request in one write, then reads their answers."""
        if not reqs:
            return []
        self.send(reqs)
        return [self.read_answer() for _ in reqs]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
