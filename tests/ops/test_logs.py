#!/usr/bin/env python3
"""Log lines, black-box: --log-format json gives one object per line with
time, level, message, pid and the event's fields (connection number, client
name, remote address, error code, op, queue), hostile bytes escaped so
every line still parses; text lines carry an RFC 3339 UTC timestamp unless
stderr is the journal (JOURNAL_STREAM names stderr), where they start with
the syslog priority instead; SIGHUP switches the format."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opslib import CHANQD, TIMEOUT, Daemon, dial, main, request, run_chanqd  # noqa: E402

JSON_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z chanqd\[\d+\]: (error|warn|info|debug): ")


def json_lines(d):
    """Every line of d's log as an object (fails on a line that is not one)."""
    out = []
    with open(d.log_path, "rb") as f:
        for raw in f.read().split(b"\n")[:-1]:
            o = json.loads(raw.decode("utf-8"))
            assert isinstance(o, dict) and list(o)[:4] == ["time", "level", "message", "pid"], raw
            assert JSON_TIME.match(o["time"]), raw
            out.append(o)
    return out


def send_raw(port, data):
    """Sends raw bytes and reads the one answer line."""
    with dial(("127.0.0.1", port)) as s:
        s.sendall(data)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


def test_json_lines_carry_the_events_fields_and_survive_hostile_bytes():
    d = Daemon(["--memory", "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug"])
    try:
        with dial(("127.0.0.1", d.port)) as s:
            assert request(s, {"op": "hello", "client": "billing \"worker\"\n#2"})["ok"] is True
            r = request(s, {"op": "frobnicate", "queue": "mail"})
            assert r["error"]["code"] == "unknown_op", r
            r = request(s, {"op": "ack", "id": "12345"})
            assert r["error"]["code"] == "not_found", r
            r = request(s, {"op": "pause", "queue": "nope"})
            assert r["error"]["code"] == "not_found", r
            local = "127.0.0.1:%d" % s.getsockname()[1]
        # Bytes that are not UTF-8 and control bytes, inside and outside strings.
        send_raw(d.port, b'{"op":"submit","queue":"q\\u0001\xff\xfe","payload":1}\n')
        send_raw(d.port, b'\x00\x01\x1b[31m not json \xc3\x28\n')
        d.wait_log(r"not json|bad_request", timeout=10)
        assert d.stop() == 0
        lines = json_lines(d)
        errs = [o for o in lines if o["message"].startswith("client error unknown_op")]
        assert len(errs) == 1, lines
        e = errs[0]
        assert e["level"] == "debug" and e["code"] == "unknown_op", e
        assert e["client"] == "billing \"worker\"\n#2" and e["remote"] == local, e
        assert isinstance(e["conn"], int) and e["conn"] >= 1, e
        assert "op" not in e, e  # the line did not decode: no op to name
        nf = [o for o in lines if o.get("op") == "ack"]
        assert len(nf) == 1 and nf[0]["code"] == "not_found" and nf[0]["conn"] == e["conn"], lines
        st = [o for o in lines if o.get("op") == "pause"]
        assert len(st) == 1 and st[0]["queue"] == "nope" and st[0]["code"] == "not_found", lines
        bad = [o for o in lines if o.get("code") == "bad_request"]
        assert len(bad) >= 2 and all(o["conn"] > e["conn"] for o in bad), lines
        assert all(o["pid"] == d.proc.pid for o in lines), lines
        listening = [o for o in lines if o["message"].startswith("listening on ")]
        assert listening and listening[0]["listen"] == "127.0.0.1:%d" % d.port, listening
    finally:
        d.cleanup()


def test_text_lines_are_timestamped_unless_stderr_is_the_journal():
    d = Daemon(["--memory", "--listen", "127.0.0.1:0", "--log-format", "text"])
    try:
        assert d.stop() == 0
        lines = d.log().splitlines()
        assert lines and all(TEXT_LINE.match(ln) for ln in lines), lines
    finally:
        d.cleanup()
    # The journal: JOURNAL_STREAM names the device and inode of stderr.
    tmp = tempfile.mkdtemp(prefix="chanq-logs-")
    path = os.path.join(tmp, "journal")
    try:
        with open(path, "wb") as f:
            st = os.fstat(f.fileno())
            env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
            p = subprocess.Popen([CHANQD, "--memory", "--listen", "127.0.0.1:0"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=f, env=env)
        try:
            until_in(path, "listening on")
        finally:
            p.send_signal(signal.SIGTERM)
            assert p.wait(TIMEOUT) == 0
        lines = open(path).read().splitlines()
        assert lines and all(re.match(r"^<[3467]>chanqd\[\d+\]: (error|warn|info|debug): ", ln)
                             for ln in lines), lines
        assert lines[0].startswith("<6>"), lines
    finally:
        shutil.rmtree(tmp)


def until_in(path, needle):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with open(path) as f:
            if needle in f.read():
                return
        time.sleep(0.01)
    raise AssertionError("no %r in %s" % (needle, path))


def test_sighup_switches_the_format():
    tmp = tempfile.mkdtemp(prefix="chanq-logs-")
    conf = os.path.join(tmp, "chanqd.conf")
    with open(conf, "w") as f:
        f.write("memory = true\nlisten = 127.0.0.1:0\nlog-format = text\n")
    d = Daemon(["--config", conf])
    try:
        with open(conf, "w") as f:
            f.write("memory = true\nlisten = 127.0.0.1:0\nlog-format = json\n")
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: log-format text -> json")
        d.signal(signal.SIGHUP)
        d.wait_log(r'"message":"reload: nothing that can change')
        assert d.stop() == 0
        lines = d.log().splitlines()
        cut = next(i for i, ln in enumerate(lines) if "reload: log-format text -> json" in ln)
        assert all(TEXT_LINE.match(ln) for ln in lines[:cut + 1]), lines
        after = [json.loads(ln) for ln in lines[cut + 1:]]
        assert after and after[-1]["message"] == "stopped", after
    finally:
        d.cleanup()
        shutil.rmtree(tmp)


def test_a_config_error_is_a_json_line_when_json_was_asked_for():
    # Found before --log-format was parsed, and after.
    for args in (["--tls-cert", "/nonexistent.crt", "--log-format", "json"],
                 ["--log-format=json", "--tls-listen", "127.0.0.1:0"]):
        rc, _, err = run_chanqd(args)
        assert rc == 2, (args, rc, err)
        lines = err.splitlines()
        assert len(lines) == 1, err
        o = json.loads(lines[0])
        assert o["level"] == "error" and ("tls" in o["message"]), o
    rc, _, err = run_chanqd(["--tls-cert", "/nonexistent.crt"])
    assert rc == 2 and err.startswith("chanqd: --tls-cert: cannot read"), err


if __name__ == "__main__":
    sys.exit(main([
        test_json_lines_carry_the_events_fields_and_survive_hostile_bytes,
        test_text_lines_are_timestamped_unless_stderr_is_the_journal,
        test_sighup_switches_the_format,
        test_a_config_error_is_a_json_line_when_json_was_asked_for,
    ]))
