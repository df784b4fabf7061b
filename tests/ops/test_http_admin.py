#!/usr/bin/env python3
"""POST /admin/OP on the --http listener, black-box: refused (403, nothing
changed) without --http-admin; refused (403) without a valid page token
(X-Chanq-Page-Token, from GET /admin or the page); with a --token-file,
refused (401) without the token or with a wrong one, and done with it
(/stats then says paused:true); cross-site browser requests refused
(Sec-Fetch-Site, Origin, Referer); fields in a JSON body; only the admin
ops are served; errors come in the protocol's shape; GET /history."""
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opslib import TIMEOUT, Daemon, dial, http_get, main, request  # noqa: E402

TOKEN = "s3cret-admin-token"


def page_token(port):
    status, _, body = http_get(port, "/admin")
    assert status == 200, status
    return json.loads(body)["page_token"]


def post(port, path, headers=None, body=b"", page=True):
    """Returns (status, parsed JSON body). With page, sends a page token
    from GET /admin unless headers name one."""
    headers = dict(headers or {})
    if page and "X-Chanq-Page-Token" not in headers:
        headers["X-Chanq-Page-Token"] = page_token(port)
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body,
                                 method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def queue_state(port, name):
    """(the queue's /stats object, what GET /admin says)."""
    status, _, body = http_get(port, "/stats")
    assert status == 200, status
    q = json.loads(body)["queues"][name]
    status, _, body = http_get(port, "/admin")
    assert status == 200, status
    info = json.loads(body)
    token = info.pop("page_token")
    assert len(token) == 32 and all(c in "0123456789abcdef" for c in token), token
    return q, info


def start(args, token=False):
    d = Daemon(["--memory", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"] + args)
    try:
        port = int(d.wait_log(r"http: status page on http://127\.0\.0\.1:(\d+)/").group(1))
        with dial(("127.0.0.1", d.port)) as s:
            if token:
                assert request(s, {"op": "hello", "token": TOKEN}).get("ok") is True
            assert request(s, {"op": "declare", "queue": "work", "capacity": 5}).get("ok") is True
        return d, port
    except BaseException:
        d.cleanup()
        raise


def test_admin_routes_answer_403_and_change_nothing_without_http_admin():
    d, port = start([])
    try:
        for op in ("pause", "resume", "close", "kick"):
            status, body = post(port, "/admin/%s?queue=work" % op)
            assert status == 403, (op, status, body)
            assert body["ok"] is False and body["error"]["code"] == "forbidden", body
            assert "--http-admin" in body["error"]["message"], body
        q, http = queue_state(port, "work")
        assert q["paused"] is False and q["closed"] is False, q
        assert http == {"admin": False, "token": False}, http
        status, _, _ = http_get(port, "/admin/pause?queue=work")
        assert status == 405, "GET on an admin route: %d" % status
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_with_a_token_file_only_the_token_opens_the_admin_routes():
    d = None
    tf = None
    try:
        fd, tf = tempfile.mkstemp(prefix="chanq-token-")
        os.write(fd, (TOKEN + "\n").encode())
        os.close(fd)
        d, port = start(["--http-admin", "--token-file", tf], token=True)
        q, http = queue_state(port, "work")
        assert http == {"admin": True, "token": True}, http
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            status, body = post(port, "/admin/pause?queue=work", headers)
            assert status == 401 and body["error"]["code"] == "unauthorized", (headers, status, body)
        assert queue_state(port, "work")[0]["paused"] is False, "refused pause changed the queue"
        auth = {"Authorization": "Bearer " + TOKEN}
        status, body = post(port, "/admin/pause?queue=work", auth)
        assert (status, body) == (200, {"ok": True}), (status, body)
        assert queue_state(port, "work")[0]["paused"] is True, "pause did not show in /stats"
        # Another site's page in a browser cannot use it, even with the token.
        status, body = post(port, "/admin/resume?queue=work",
                            dict(auth, **{"Sec-Fetch-Site": "cross-site"}))
        assert status == 403, (status, body)
        status, body = post(port, "/admin/resume?queue=work",
                            dict(auth, Origin="http://evil.example"))
        assert status == 403, (status, body)
        status, body = post(port, "/admin/resume?queue=work",
                            dict(auth, Referer="http://evil.example/127.0.0.1:%d/" % port))
        assert status == 403, (status, body)
        # Nor can a request that lacks this chanqd's page token.
        status, body = post(port, "/admin/resume?queue=work", auth, page=False)
        assert status == 403 and "page token" in body["error"]["message"], (status, body)
        forged = "0" * 16 + page_token(port)[16:]
        status, body = post(port, "/admin/resume?queue=work",
                            dict(auth, **{"X-Chanq-Page-Token": forged}))
        assert status == 403, (status, body)
        assert queue_state(port, "work")[0]["paused"] is True
        status, body = post(port, "/admin/resume?queue=work",
                            dict(auth, **{"Sec-Fetch-Site": "same-origin"}))
        assert status == 200 and queue_state(port, "work")[0]["paused"] is False, (status, body)
        status, body = post(port, "/admin/kick?queue=work", auth)
        assert (status, body) == (200, {"ok": True, "kicked": 0}), (status, body)
        status, body = post(port, "/admin/close?queue=work", auth)
        assert status == 200 and queue_state(port, "work")[0]["closed"] is True, (status, body)
        assert d.stop() == 0
    finally:
        if d:
            d.cleanup()
        if tf:
            os.unlink(tf)


def test_admin_errors_use_the_protocol_codes():
    d, port = start(["--http-admin"])
    try:
        assert "admin routes on without a --token-file" in d.log()
        cases = [
            ("/admin/pause?queue=nope", 404, "not_found"),
            ("/admin/pause", 400, "bad_request"),
            ("/admin/pause?queue=bad%20name", 400, "bad_request"),
            ("/admin/explode?queue=work", 400, "unknown_op"),
        ]
        for path, want_status, want_code in cases:
            status, body = post(port, path)
            assert status == want_status and body["error"]["code"] == want_code, (path, status, body)
        status, body = post(port, "/admin/pause?queue=work")
        assert status == 200 and queue_state(port, "work")[0]["paused"] is True, (status, body)
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_fields_come_in_a_json_body_and_only_admin_ops_run():
    d, port = start(["--http-admin"])
    try:
        status, body = post(port, "/admin/pause", body=b'{"queue":"work"}')
        assert status == 200 and queue_state(port, "work")[0]["paused"] is True, (status, body)
        status, body = post(port, "/admin/queues", body=b'{"count":5}')
        assert status == 200 and "work" in body["queues"], (status, body)
        for raw, code in ((b"[1]", "bad_request"), (b"{nope", "bad_request"),
                          (b'{"queue":5}', "bad_request")):
            status, body = post(port, "/admin/resume", body=raw)
            assert status == 400 and body["error"]["code"] == code, (raw, status, body)
        # Ops that reserve, wait or submit are not admin ops.
        for op in ("submit", "fetch", "wait", "hello", "consume"):
            status, body = post(port, "/admin/" + op, body=b'{"queue":"work"}')
            assert status == 400 and body["error"]["code"] == "unknown_op", (op, status, body)
        assert queue_state(port, "work")[0]["depth"] == 0
        # Two page tokens differ; both are good; another daemon's is not.
        t1, t2 = page_token(port), page_token(port)
        assert t1 != t2
        for t in (t1, t2):
            status, body = post(port, "/admin/resume?queue=work", {"X-Chanq-Page-Token": t})
            assert status == 200, (status, body)
        other, oport = start(["--http-admin"])
        try:
            status, body = post(port, "/admin/pause?queue=work",
                                {"X-Chanq-Page-Token": page_token(oport)})
            assert status == 403, (status, body)
        finally:
            other.cleanup()
        log = d.log()
        assert "http: admin pause queue=work from 127.0.0.1:" in log, log
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_history_is_served_as_json():
    d, port = start([])
    try:
        status, ctype, body = http_get(port, "/history")
        assert status == 200 and ctype.startswith("application/json"), (status, ctype)
        h = json.loads(body)
        assert h["period_ms"] == 10000 and h["slots"] == 360, h
        assert h["totals"] == {"submitted": 0, "processed": 0, "failed": 0}, h
        assert h["points"] == [], "a point before the first period ended: %r" % h
        assert d.stop() == 0
    finally:
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main([
        test_admin_routes_answer_403_and_change_nothing_without_http_admin,
        test_with_a_token_file_only_the_token_opens_the_admin_routes,
        test_admin_errors_use_the_protocol_codes,
        test_fields_come_in_a_json_body_and_only_admin_ops_run,
        test_history_is_served_as_json,
    ]))
