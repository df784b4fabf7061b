#!/usr/bin/env python3
"""SIGHUP reload, black-box: a new log level and limits from the config
file take effect and each change is logged; a change that needs a restart
is logged as such and not applied; a broken file changes nothing and the
daemon keeps serving."""
import os
import re
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opslib import Daemon, dial, http_get, main, ping, request  # noqa: E402


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def reload(d, pattern):
    """Sends SIGHUP and waits for pattern in the log after that point."""
    mark = len(d.log())
    d.signal(signal.SIGHUP)
    return d.wait_log(pattern, after=mark)


def test_sighup_changes_the_log_level_and_limits():
    tmp = tempfile.mkdtemp(prefix="chanq-reload-")
    conf = os.path.join(tmp, "chanqd.conf")
    write(conf, "memory = true\nlisten = 127.0.0.1:0\nhttp = 127.0.0.1:0\n"
                "log-level = info\nmax-connections = 100\n")
    d = Daemon(["--config", conf])
    try:
        hport = int(d.wait_log(r"http: serving \S+ \S+ \S+ on 127\.0\.0\.1:(\d+)").group(1))
        http_get(hport, "/nowhere")
        assert "http: 404" not in d.log(), "debug line logged at level info"
        write(conf, "memory = true\nlisten = 127.0.0.1:0\nhttp = 127.0.0.1:0\n"
                    "log-level = debug\nmax-connections = 1\n")
        reload(d, r"reload: max-connections 100 -> 1")
        log = d.log()
        assert "received SIGHUP: reloading %s" % conf in log, log
        assert "reload: log-level info -> debug" in log, log
        status, _, _ = http_get(hport, "/nowhere")
        assert status == 404
        d.wait_log(r"http: 404 for /nowhere")
        # The new connection limit is in force: one connection, the next refused.
        with dial(("127.0.0.1", d.port)) as first:
            assert request(first, {"op": "ping"}).get("ok") is True
            with dial(("127.0.0.1", d.port)) as second:
                r = request(second, {"op": "ping"})
                assert r.get("ok") is False, "second connection served past max-connections=1: %r" % r
        assert d.stop() == 0
    finally:
        d.cleanup()
        os.unlink(conf)
        os.rmdir(tmp)


def test_a_restart_only_change_is_reported_not_applied():
    tmp = tempfile.mkdtemp(prefix="chanq-reload-")
    conf = os.path.join(tmp, "chanqd.conf")
    write(conf, "memory = true\nmax-frame = 1M\n")
    d = Daemon(["--config", conf, "--listen", "127.0.0.1:0"])
    try:
        write(conf, "memory = true\nmax-frame = 2M\n")
        reload(d, r"reload: max-frame changed \(1048576 -> 2097152\) but needs a restart")
        assert "reload: nothing that can change without a restart changed" in d.log()
        ping(("127.0.0.1", d.port))
        assert d.stop() == 0
    finally:
        d.cleanup()
        os.unlink(conf)
        os.rmdir(tmp)


def test_a_broken_file_at_reload_changes_nothing():
    tmp = tempfile.mkdtemp(prefix="chanq-reload-")
    conf = os.path.join(tmp, "chanqd.conf")
    write(conf, "memory = true\nlog-level = info\n")
    d = Daemon(["--config", conf, "--listen", "127.0.0.1:0"])
    try:
        write(conf, "memory = true\nlog-level = debug\nbogus = 1\n")
        m = reload(d, r"reload failed, keeping the running configuration: (.*)")
        assert m.group(1) == "%s:3: unknown key 'bogus'" % conf, m.group(1)
        assert "log-level info -> debug" not in d.log()
        ping(("127.0.0.1", d.port))
        # Fixed file: the next SIGHUP applies it.
        write(conf, "memory = true\nlog-level = warn\n")
        reload(d, re.escape("reload: log-level info -> warn"))
        assert d.stop() == 0
    finally:
        d.cleanup()
        os.unlink(conf)
        os.rmdir(tmp)


if __name__ == "__main__":
    sys.exit(main([
        test_sighup_changes_the_log_level_and_limits,
        test_a_restart_only_change_is_reported_not_applied,
        test_a_broken_file_at_reload_changes_nothing,
    ]))
