#!/usr/bin/env python3
"""Configuration, black-box: --check-config (0 valid, 2 not), config-file
errors as FILE:LINE: reason with exit status 2 and nothing started, flags
over the file, --unix (stale socket removed, mode 0660, live one refused),
IPv6, and the sample config / man page / docs listing every key with the
defaults chanqd --help prints."""
import os
import re
import shutil
import socket
import stat
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opslib import TOP_SRCDIR, Daemon, Skip, free_port, main, ping, run_chanqd  # noqa: E402


def write(text):
    fd, path = tempfile.mkstemp(prefix="chanq-conf-", suffix=".conf")
    os.write(fd, text.encode())
    os.close(fd)
    return path


def help_keys():
    """{key: default or None} from chanqd --help."""
    rc, out, _ = run_chanqd(["--help"])
    assert rc == 0
    keys = {}
    for m in re.finditer(r"^  --([a-z-]+)(?: \S+)?\s+.*?(?:\(default ([^)]+)\))?(?: \[SIGHUP\])?$", out, re.M):
        if m.group(1) not in ("help", "version"):
            keys[m.group(1)] = m.group(2)
    assert len(keys) >= 20, keys
    return keys


def test_check_config_accepts_a_good_file_and_refuses_a_bad_one():
    good = write("# comment\nlisten = 127.0.0.1:7000\nmax-frame = 2M\nfsync = never\n")
    bad = write("max-frame = 2M\n\n# the next line is wrong\nmax-inflight = lots\n")
    try:
        rc, out, err = run_chanqd(["--config", good, "--check-config"])
        assert rc == 0 and "configuration OK" in out, (rc, out, err)
        rc, out, err = run_chanqd(["--config", bad, "--check-config"])
        assert rc == 2, rc
        assert "%s:4: max-inflight: 'lots' is not a non-negative whole number" % bad in err, err
        rc, out, err = run_chanqd(["--check-config", "--max-job", "2G"])
        assert rc == 2 and "max-job: 2147483648 is out of range" in err, err
    finally:
        os.unlink(good)
        os.unlink(bad)


def test_start_up_stops_at_an_unknown_key_with_file_and_line():
    path = write("listen = 127.0.0.1:0\nmemory = true\nmax-conections = 5\n")
    d = Daemon(["--config", path], expect_start=False)
    try:
        assert d.wait() == 2, "exit status %s" % d.proc.returncode
        assert "chanqd: %s:3: unknown key 'max-conections'" % path in d.log(), d.log()
        assert "listening" not in d.log()
    finally:
        d.cleanup()
        os.unlink(path)


def test_a_server_that_cannot_start_exits_once_with_status_1():
    # The listen port is taken: the server cannot start, and chanqd exits
    # (it once took that for a cluster step-down and started again, for ever).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        d = Daemon(["--memory", "--listen", "127.0.0.1:%d" % port], expect_start=False)
        try:
            assert d.wait() == 1, "exit status %s" % d.proc.returncode
            assert d.log().count("starting") == 1, d.log()
        finally:
            d.cleanup()


def test_flags_override_the_file():
    file_port = free_port()
    path = write("listen = 127.0.0.1:%d\nmemory = true\nlog-level = error\n" % file_port)
    d = Daemon(["--config", path, "--listen", "127.0.0.1:0", "--log-level", "info"])
    try:
        assert d.port != file_port, "the file's listen address was used"
        ping(("127.0.0.1", d.port))
        assert d.stop() == 0
    finally:
        d.cleanup()
        os.unlink(path)


def test_unix_socket_replaces_a_stale_file_and_is_group_only():
    tmp = tempfile.mkdtemp(prefix="chanq-unix-")
    path = os.path.join(tmp, "chanqd.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # bound, never listening, then closed: a stale file
    stale.close()
    d = Daemon(["--memory", "--listen", "127.0.0.1:0", "--unix", path])
    try:
        d.wait_log(r"removed stale socket file " + re.escape(path))
        d.wait_log(r"listening on unix:" + re.escape(path))
        ping(path)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o660, "socket mode %o" % mode
        # A second daemon must not steal a live socket.
        d2 = Daemon(["--memory", "--listen", "127.0.0.1:0", "--unix", path], expect_start=False)
        try:
            assert d2.wait() != 0, "a second chanqd took over a live socket"
            assert "another process is accepting on it" in d2.log(), d2.log()
        finally:
            d2.cleanup()
        ping(path)
        assert d.stop() == 0
        assert not os.path.exists(path), "the socket file was left behind"
        with open(path, "w") as f:
            f.write("not a socket")
        d3 = Daemon(["--memory", "--unix", path], expect_start=False)
        try:
            assert d3.wait() != 0 and "is not a socket" in d3.log(), d3.log()
            assert os.path.isfile(path), "a regular file was removed"
        finally:
            d3.cleanup()
    finally:
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_ipv6_loopback_is_served():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        raise Skip("no IPv6 loopback here")
    d = Daemon(["--memory", "--listen", "127.0.0.1:0", "--listen", "[::1]:0"])
    try:
        m = d.wait_log(r"listening on \[::1\]:(\d+)")
        ping(("::1", int(m.group(1))))
        ping(("127.0.0.1", d.port))
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_sample_config_man_page_and_docs_list_every_key_with_its_default():
    keys = help_keys()
    conf = open(os.path.join(TOP_SRCDIR, "contrib", "chanqd.conf")).read()
    man = open(os.path.join(TOP_SRCDIR, "contrib", "chanqd.8")).read()
    ops = open(os.path.join(TOP_SRCDIR, "docs", "operations.md")).read()
    sample = dict(re.findall(r"^# ([a-z-]+) = ?(.*)$", conf, re.M))
    for key, default in keys.items():
        if key in ("config", "check-config"):
            continue
        assert key in sample, "contrib/chanqd.conf lacks '# %s = ...'" % key
        if default is not None:
            assert sample[key] == default, "chanqd.conf: %s = %s, --help says %s" % (key, sample[key], default)
        assert "\\-\\-" + key.replace("-", "\\-") in man, "chanqd.8 lacks --%s" % key
        assert "`%s`" % key in ops, "docs/operations.md lacks `%s`" % key
    # The sample, uncommented, is a valid configuration.
    path = write("\n".join("%s = %s" % kv for kv in sample.items()) + "\n")
    try:
        rc, out, err = run_chanqd(["--config", path, "--check-config"])
        assert rc == 0, "uncommented sample config refused: %s" % err
    finally:
        os.unlink(path)


if __name__ == "__main__":
    sys.exit(main([
        test_check_config_accepts_a_good_file_and_refuses_a_bad_one,
        test_start_up_stops_at_an_unknown_key_with_file_and_line,
        test_a_server_that_cannot_start_exits_once_with_status_1,
        test_flags_override_the_file,
        test_unix_socket_replaces_a_stale_file_and_is_group_only,
        test_ipv6_loopback_is_served,
        test_sample_config_man_page_and_docs_list_every_key_with_its_default,
    ]))
