#!/usr/bin/env python3
"""TLS, black-box: a real chanqd with --tls-listen and
certificates this test makes with the openssl CLI (a throwaway CA, server
certificates for 127.0.0.1/localhost, client certificates, a second CA
nobody trusts). Submit/fetch/ack with the chanq CLI over TLS; a client
that does not trust the CA, or checks another name, is refused; mutual
TLS refuses a client without a certificate (or with one from the other
CA) and serves one the CA signed; a cleartext client on the TLS port is
just disconnected; SIGHUP gives new connections the new certificate while
old ones go on; start-up names an unusable file; pipelining, events and
backpressure work as over TCP. Skips (77) in a --without-tls build."""
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops"))
from opslib import TOP_BUILDDIR, TIMEOUT, Daemon, Skip, main, ping, request  # noqa: E402

CHANQ = os.path.join(TOP_BUILDDIR, "clients", "chanq")
CERTS = None  # the directory of certificates, made once


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", os.path.join(d, name + ".key"), "-out", os.path.join(d, name + ".crt"),
            "-days", "2", "-subj", "/CN=chanq test %s" % name)


def make_cert(d, name, ca, cn, ext):
    key, csr, crt = (os.path.join(d, name + s) for s in (".key", ".csr", ".crt"))
    extfile = os.path.join(d, name + ".ext")
    with open(extfile, "w") as f:
        f.write(ext + "\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
    openssl("x509", "-req", "-in", csr, "-CA", os.path.join(d, ca + ".crt"), "-CAkey",
            os.path.join(d, ca + ".key"), "-CAcreateserial", "-out", crt, "-days", "2",
            "-extfile", extfile)


def certs():
    """The test PKI: ca (trusted), other (not), server1/2 (127.0.0.1 and
    localhost), elsewhere (only DNS:elsewhere.example), client (ca),
    stranger (a client certificate from other)."""
    global CERTS
    if CERTS:
        return CERTS
    d = tempfile.mkdtemp(prefix="chanq-tls-")
    server_ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
    make_ca(d, "ca")
    make_ca(d, "other")
    make_cert(d, "server1", "ca", "chanq-server-1", server_ext)
    make_cert(d, "server2", "ca", "chanq-server-2", server_ext)
    make_cert(d, "elsewhere", "ca", "chanq-elsewhere", "subjectAltName=DNS:elsewhere.example")
    make_cert(d, "client", "ca", "chanq-client", "extendedKeyUsage=clientAuth")
    make_cert(d, "stranger", "other", "chanq-stranger", "extendedKeyUsage=clientAuth")
    CERTS = d
    return d


def path(name):
    return os.path.join(certs(), name)


class TLSDaemon(Daemon):
    """chanqd with a plain and a TLS listener; self.tport is the TLS port."""

    def __init__(self, extra=(), cert="server1", expect_start=True):
        args = ["--memory", "--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0",
                "--tls-cert", path(cert + ".crt"), "--tls-key", path(cert + ".key"),
                "--log-level", "debug"] + list(extra)
        super().__init__(args, expect_start=expect_start)
        self.tport = None
        if expect_start:
            self.tport = int(self.wait_log(r"listening on tls:127\.0\.0\.1:(\d+)").group(1))


def cq(args, d=None, server=None, check=True):
    """Runs the chanq CLI (bounded); returns (rc, stdout, stderr)."""
    env = dict(os.environ)
    env.pop("CHANQ_SERVER", None)
    if server is None and d is not None:
        server = "127.0.0.1:%d" % d.tport
    cmd = [CHANQ] + args + (["--server", server] if server else [])
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30, env=env)
    if check:
        assert p.returncode == 0, "%s: exit %d\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr)
    return p.returncode, p.stdout, p.stderr


def tls_context(ca="ca", cert=None):
    ctx = ssl.create_default_context(cafile=path(ca + ".crt"))
    if cert:
        ctx.load_cert_chain(path(cert + ".crt"), path(cert + ".key"))
    return ctx


def tls_dial(d, ctx=None):
    raw = socket.create_connection(("127.0.0.1", d.tport), timeout=TIMEOUT)
    return (ctx or tls_context()).wrap_socket(raw, server_hostname="127.0.0.1")


def lines(sock, n):
    """Reads n NDJSON lines; returns them parsed."""
    buf = b""
    while buf.count(b"\n") < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed after %r" % buf)
        buf += chunk
    return [json.loads(x) for x in buf.split(b"\n")[:n]]


def peer_cn(d):
    with tls_dial(d) as s:
        subject = dict(x[0] for x in s.getpeercert()["subject"])
        return subject["commonName"]


def test_submit_fetch_ack_over_tls_with_the_cli():
    d = TLSDaemon()
    try:
        assert d.tport != d.port
        tls = ["--tls-ca", path("ca.crt")]
        cq(["ping"] + tls, d)
        cq(["ping"] + tls, server="localhost:%d" % d.tport)
        _, jid, _ = cq(["submit", "mail", '{"to":"a@example.com"}'] + tls, d)
        jid = jid.strip()
        _, out, _ = cq(["fetch", "mail", "--ack", "--timeout-ms", "2000"] + tls, d)
        job = json.loads(out)
        assert job["id"] == jid and job["payload"] == {"to": "a@example.com"}, out
        _, out, _ = cq(["wait", jid, "--timeout-ms", "2000"] + tls, d)
        assert json.loads(out)["state"] == "done", out
        # The same daemon still speaks cleartext on its plain port.
        ping(("127.0.0.1", d.port))
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_a_client_that_does_not_trust_the_ca_or_checks_another_name_is_refused():
    d = TLSDaemon()
    try:
        rc, _, err = cq(["ping", "--tls"], d, check=False)  # the system's CAs only
        assert rc == 3 and "certificate is not accepted" in err, (rc, err)
        rc, _, err = cq(["ping", "--tls-ca", path("other.crt")], d, check=False)
        assert rc == 3 and "certificate is not accepted" in err, (rc, err)
        rc, _, err = cq(["ping", "--tls-ca", path("ca.crt"), "--tls-server-name",
                         "elsewhere.example"], d, check=False)
        assert rc == 3 and "mismatch" in err, (rc, err)
        rc, out, err = cq(["ping", "--tls-insecure"], d)
        assert "warning: --tls-insecure" in err, err
        # The refused handshakes cost the daemon nothing.
        cq(["ping", "--tls-ca", path("ca.crt")], d)
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_mutual_tls_refuses_clients_without_a_signed_certificate_and_serves_signed_ones():
    d = TLSDaemon(["--tls-client-ca", path("ca.crt")])
    try:
        tls = ["--tls-ca", path("ca.crt")]
        # TLS 1.3: the client's handshake ends before the server has judged
        # its certificate, so the refusal shows on the first read (an alert,
        # or a reset when the request was still unread).
        rc, out, err = cq(["ping"] + tls, d, check=False)
        assert rc == 3 and "ok" not in out, (rc, out, err)
        rc, out, err = cq(["ping"] + tls + ["--tls-cert", path("stranger.crt"), "--tls-key",
                                            path("stranger.key")], d, check=False)
        assert rc == 3 and "ok" not in out, (rc, out, err)
        cq(["ping"] + tls + ["--tls-cert", path("client.crt"), "--tls-key", path("client.key")], d)
        _, jid, _ = cq(["submit", "m", "1"] + tls + ["--tls-cert", path("client.crt"),
                                                    "--tls-key", path("client.key")], d)
        assert jid.strip(), jid
        d.wait_log(r"tls: connection failed: .*(certificate|unknown ca)")
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_a_cleartext_client_on_the_tls_port_is_disconnected():
    d = TLSDaemon()
    try:
        for payload in (b'{"op":"ping"}\n', b"GET / HTTP/1.0\r\n\r\n", b"\x16\x03\x01\x00\x05hello"):
            with socket.create_connection(("127.0.0.1", d.tport), timeout=TIMEOUT) as s:
                s.sendall(payload)
                got = b""
                while True:
                    try:
                        chunk = s.recv(4096)  # times out (fails) if never closed
                    except ConnectionResetError:
                        break  # closed with our bytes unread: a reset
                    if not chunk:
                        break
                    got += chunk
                assert b'"ok"' not in got, "a cleartext client got an answer: %r" % got
        # At debug level, as text or (CHANQ_TEST_LOG_FORMAT=json) a JSON line.
        d.wait_log(r'(debug: |"level":"debug","message":")tls: connection failed')
        # A client that connects and says nothing is dropped too, but only
        # after the handshake time; meanwhile everyone else is served.
        idle = socket.create_connection(("127.0.0.1", d.tport), timeout=TIMEOUT)
        ping(("127.0.0.1", d.port))
        cq(["ping", "--tls-ca", path("ca.crt")], d)
        idle.close()
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_sighup_gives_new_connections_the_new_certificate_and_keeps_old_ones():
    tmp = tempfile.mkdtemp(prefix="chanq-tls-reload-")
    crt, key = os.path.join(tmp, "live.crt"), os.path.join(tmp, "live.key")
    shutil.copy(path("server1.crt"), crt)
    shutil.copy(path("server1.key"), key)
    d = Daemon(["--memory", "--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0",
                "--tls-cert", crt, "--tls-key", key])
    try:
        d.tport = int(d.wait_log(r"listening on tls:127\.0\.0\.1:(\d+)").group(1))
        assert peer_cn(d) == "chanq-server-1"
        old = tls_dial(d)
        assert request(old, {"op": "ping"}).get("ok") is True
        # A renewal replaces the files in place, then says SIGHUP.
        shutil.copy(path("server2.crt"), crt)
        shutil.copy(path("server2.key"), key)
        mark = len(d.log())
        d.signal(signal.SIGHUP)
        d.wait_log(r"tls: reloaded certificate", after=mark)
        assert peer_cn(d) == "chanq-server-2", "a new connection still sees the old certificate"
        assert request(old, {"op": "ping"}).get("ok") is True, "the old connection was dropped"
        # A broken file on reload keeps the running certificate.
        with open(key, "w") as f:
            f.write("not a key\n")
        mark = len(d.log())
        d.signal(signal.SIGHUP)
        d.wait_log(r"tls: reload failed, new connections keep the running certificate", after=mark)
        assert key in d.log()[mark:], d.log()[mark:]
        assert peer_cn(d) == "chanq-server-2"
        assert request(old, {"op": "ping"}).get("ok") is True
        old.close()
        assert d.stop() == 0
    finally:
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_start_up_names_the_file_when_a_certificate_or_key_is_unusable():
    cases = [
        (["--tls-cert", path("server1.crt"), "--tls-key", path("server2.key")],
         r"tls-key %s does not match the certificate in tls-cert %s" % (
             re.escape(path("server2.key")), re.escape(path("server1.crt")))),
        (["--tls-cert", path("server1.csr"), "--tls-key", path("server1.key")],
         r"tls-cert %s: not a usable PEM certificate" % re.escape(path("server1.csr"))),
        (["--tls-cert", path("server1.crt"), "--tls-key", path("server1.crt")],
         r"tls-key %s: not a usable PEM private key" % re.escape(path("server1.crt"))),
    ]
    for args, pattern in cases:
        d = Daemon(["--memory", "--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"] + args,
                   expect_start=False)
        try:
            assert d.wait() != 0, "chanqd started with %s" % args
            assert re.search(pattern, d.log()), "no %r in:\n%s" % (pattern, d.log())
            assert "listening" not in d.log()
        finally:
            d.cleanup()
    d = Daemon(["--memory", "--tls-listen", "127.0.0.1:0", "--tls-cert", "/nonexistent.crt",
                "--tls-key", path("server1.key")], expect_start=False)
    try:
        assert d.wait() == 2 and "tls-cert: cannot read '/nonexistent.crt'" in d.log(), d.log()
    finally:
        d.cleanup()
    d = Daemon(["--memory", "--tls-listen", "127.0.0.1:0"], expect_start=False)
    try:
        assert d.wait() == 2 and "tls-listen needs tls-cert and tls-key" in d.log(), d.log()
    finally:
        d.cleanup()


def test_pipelining_events_and_loadtest_work_over_tls():
    d = TLSDaemon()
    try:
        with tls_dial(d) as s:
            reqs = [{"op": "declare", "queue": "p", "capacity": 100, "ttr_ms": 300}]
            reqs += [{"op": "submit", "queue": "p", "payload": i, "rid": i} for i in range(50)]
            reqs += [{"op": "fetch", "queues": ["p"], "count": 1, "rid": "f"}]
            s.sendall(b"".join((json.dumps(r) + "\n").encode() for r in reqs))
            answers = lines(s, len(reqs))
            assert [a.get("rid") for a in answers[1:51]] == list(range(50)), answers[:5]
            job = answers[51]["jobs"][0]
            # Not acked within ttr_ms: the server sends the revoked event.
            s.settimeout(5)
            ev = lines(s, 1)[0]
            assert ev == {"event": "revoked", "id": job["id"], "reason": "ttr"}, ev
        _, out, err = cq(["loadtest", "-p", "2", "-c", "2", "-n", "2000", "--tls-ca",
                          path("ca.crt")], d)
        assert re.search(r"\b2000\b", out + err), out + err
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_a_tls_client_that_stops_being_read_is_pushed_back():
    d = TLSDaemon()
    try:
        with tls_dial(d) as s:
            assert request(s, {"op": "declare", "queue": "bp", "capacity": 1}).get("ok")
            assert request(s, {"op": "submit", "queue": "bp", "payload": 0}).get("ok")
            # The queue is full: the next submit waits, the server stops
            # reading this connection, and our writes stall.
            line = (json.dumps({"op": "submit", "queue": "bp", "payload": "x" * 1000,
                                "wait_ms": 20000}) + "\n").encode()
            s.setblocking(False)
            sent, stalled = 0, False
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and sent < (256 << 20):
                try:
                    sent += s.send(line * 64)
                except (ssl.SSLWantWriteError, BlockingIOError):
                    _, w, _ = select.select([], [s], [], 1.0)
                    if not w:
                        stalled = True
                        break
            assert stalled, "the server kept reading %d bytes past a full queue" % sent
            assert sent < (64 << 20), "%d bytes accepted before the stall" % sent
            with tls_dial(d) as other:
                st = request(other, {"op": "stats", "queue": "bp"})
                assert st["queue"]["waiting_submitters"] == 1, st
                # Closing the queue ends the wait (every submit now fails
                # at once): the server reads the stalled connection again.
                assert request(other, {"op": "close", "queue": "bp"}).get("ok")
            _, w, _ = select.select([], [s], [], 10)
            assert w, "the connection did not move again once the submit wait ended"
        assert d.stop() == 0
    finally:
        d.cleanup()


def run():
    if os.environ.get("CHANQ_TLS") != "yes":
        print("SKIP: chanq was built without TLS (configure --without-tls)")
        return 77
    if not shutil.which("openssl"):
        print("SKIP: no openssl command to make test certificates (Debian package openssl)")
        return 77
    try:
        return main([
            test_submit_fetch_ack_over_tls_with_the_cli,
            test_a_client_that_does_not_trust_the_ca_or_checks_another_name_is_refused,
            test_mutual_tls_refuses_clients_without_a_signed_certificate_and_serves_signed_ones,
            test_a_cleartext_client_on_the_tls_port_is_disconnected,
            test_sighup_gives_new_connections_the_new_certificate_and_keeps_old_ones,
            test_start_up_names_the_file_when_a_certificate_or_key_is_unusable,
            test_pipelining_events_and_loadtest_work_over_tls,
            test_a_tls_client_that_stops_being_read_is_pushed_back,
        ])
    finally:
        if CERTS:
            shutil.rmtree(CERTS, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
