#!/usr/bin/env python3
"""The status page (GET / on --http) in a real browser: a chanqd with two
queues, one filled to capacity, opened in headless Chromium; the DOM after
the page's first refreshes lists both queues with their depth and capacity
and marks the full one, and a screenshot is a PNG that shows something
(and the full queue's red bar). Skipped, exit 77, without Chromium."""
import html.parser
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opslib import Daemon, Skip, dial, http_get, main, request  # noqa: E402

CHROMIUM_TIMEOUT = 60  # seconds for one browser run; it can hang
PAGE_LIMIT = 60 * 1024
FULL_RED = (0xD3, 0x2F, 0x2F)  # --full in daemon/status_page.html


def chromium_path():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def chromium(url, *args):
    """Runs headless Chromium on url with a fresh profile; returns stdout.
    --virtual-time-budget lets the page run its timers (the refresh) for
    3 virtual seconds before the dump or the screenshot."""
    exe = chromium_path()
    profile = tempfile.mkdtemp(prefix="chanq-chromium-")
    cmd = ["timeout", "-k", "5", str(CHROMIUM_TIMEOUT), exe,
           "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--user-data-dir=" + profile,
           "--virtual-time-budget=3000"] + list(args) + [url]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=CHROMIUM_TIMEOUT + 15)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if p.returncode != 0:
        raise AssertionError("chromium exited %d:\n%s" % (p.returncode,
                                                          p.stderr.decode(errors="replace")[-3000:]))
    return p.stdout.decode(errors="replace")


class Rows(html.parser.HTMLParser):
    """The queue rows of a dumped DOM: {name: {"class", "depth",
    "capacity", "num", "state"}}, and the body's attributes."""

    def __init__(self):
        super().__init__()
        self.rows = {}
        self.order = []
        self.body = {}
        self.row = None
        self.cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "body":
            self.body = a
        elif tag == "tr" and "data-queue" in a:
            self.row = {"class": cls, "num": "", "state": "", "buttons": []}
            self.rows[a["data-queue"]] = self.row
            self.order.append(a["data-queue"])
        elif self.row is not None and tag == "td":
            self.cell = cls[0] if cls else None
            if self.cell == "depth":
                self.row["depth"] = int(a["data-depth"])
                self.row["capacity"] = int(a["data-capacity"])
        elif self.row is not None and tag == "span" and "num" in cls:
            self.cell = "num"
        elif self.row is not None and tag == "button" and "hidden" not in a:
            self.row["buttons"].append(a.get("data-op"))

    def handle_endtag(self, tag):
        if tag == "tr":
            self.row = None
        if tag == "td":
            self.cell = None

    def handle_data(self, data):
        if self.row is not None and self.cell in ("num", "state"):
            self.row[self.cell] += data


def png_pixels(data):
    """Decodes an 8-bit RGB or RGBA PNG: returns (width, height, rows of
    pixel tuples). Only what Chromium writes; anything else fails."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0], \
            "bad CRC in chunk %r" % kind
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert hdr, "no IHDR chunk"
    width, height, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, "unexpected PNG format %r" % (hdr,)
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    assert len(raw) == height * (stride + 1), "IDAT holds %d bytes, want %d" % (len(raw), height * (stride + 1))
    rows, prior = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prior[i]) & 0xFF
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prior[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prior[i]
                c = prior[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        else:
            assert f == 0, "bad filter type %d" % f
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prior = line
    return width, height, rows


def start_with_two_queues(extra=()):
    """chanqd with "mail" full (4 of 4) and "thumbs" at 3 of 10."""
    d = Daemon(["--memory", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"] + list(extra))
    try:
        port = int(d.wait_log(r"http: status page on http://127\.0\.0\.1:(\d+)/").group(1))
        with dial(("127.0.0.1", d.port)) as s:
            for name, cap, n in (("mail", 4, 4), ("thumbs", 10, 3)):
                r = request(s, {"op": "declare", "queue": name, "capacity": cap})
                assert r.get("ok") is True, r
                for i in range(n):
                    r = request(s, {"op": "submit", "queue": name, "payload": {"n": i}, "wait_ms": 0})
                    assert r.get("ok") is True, r
        return d, port
    except BaseException:
        d.cleanup()
        raise


def need_chromium():
    if not chromium_path():
        raise Skip("Chromium not found (Debian package chromium; ./test.sh installs it): "
                   "the status page is not checked in a browser")


def test_page_is_one_small_self_contained_document():
    d, port = start_with_two_queues()
    try:
        status, ctype, body = http_get(port, "/")
        assert status == 200 and ctype.startswith("text/html"), (status, ctype)
        size = len(body.encode())
        print("page: %d bytes (limit %d)" % (size, PAGE_LIMIT))
        assert size < PAGE_LIMIT, "the page is %d bytes, over %d" % (size, PAGE_LIMIT)
        low = body.lower()
        for ext in ("src=", "href=", "@import", "url(", "//cdn", "http://", "https://"):
            assert ext not in low, "the page refers to something outside itself: %r" % ext
        assert '("stats"' in body and "setTimeout" in body, "the page does not poll /stats"
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_browser_lists_both_queues_and_marks_the_full_one():
    need_chromium()
    d, port = start_with_two_queues()
    try:
        dom = chromium("http://127.0.0.1:%d/" % port, "--dump-dom")
        p = Rows()
        p.feed(dom)
        print("DOM rows: %r" % p.rows)
        # 3 virtual seconds at one poll a second: refreshed in place, twice or more.
        assert int(p.body.get("data-refreshes", 0)) >= 2, "the page did not keep refreshing: %r" % p.body
        assert set(p.rows) == {"mail", "thumbs"}, "queues listed: %r" % sorted(p.rows)
        mail, thumbs = p.rows["mail"], p.rows["thumbs"]
        assert (mail["depth"], mail["capacity"]) == (4, 4), mail
        assert (thumbs["depth"], thumbs["capacity"]) == (3, 10), thumbs
        assert mail["num"].strip() == "4 / 4" and thumbs["num"].strip() == "3 / 10", (mail, thumbs)
        assert "full" in mail["class"] and "full" in mail["state"], "mail is not marked full: %r" % mail
        assert "full" not in thumbs["class"] and "full" not in thumbs["state"], thumbs
        assert "admin-off" in p.body.get("class", ""), "admin controls shown without --http-admin"
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_screenshot_is_a_png_that_shows_the_full_bar():
    need_chromium()
    d, port = start_with_two_queues()
    out = tempfile.mkdtemp(prefix="chanq-shot-")
    try:
        shot = os.path.join(out, "status.png")
        chromium("http://127.0.0.1:%d/" % port, "--window-size=800,500", "--screenshot=" + shot)
        with open(shot, "rb") as f:
            width, height, rows = png_pixels(f.read())
        colours = {px for row in rows for px in row}
        red = sum(1 for row in rows for px in row
                  if all(abs(px[i] - FULL_RED[i]) <= 40 for i in range(3)))
        print("screenshot: %dx%d, %d colours, %d red pixels" % (width, height, len(colours), red))
        assert (width, height) == (800, 500), (width, height)
        assert len(colours) > 16, "the screenshot is blank: %d colours" % len(colours)
        assert red >= 200, "no full (red) bar in the screenshot: %d red pixels" % red
        assert d.stop() == 0
    finally:
        shutil.rmtree(out, ignore_errors=True)
        d.cleanup()


def test_sorting_and_filtering_follow_the_url_fragment():
    need_chromium()
    d, port = start_with_two_queues()
    try:
        # Default: by name, ascending (mail, thumbs); each case differs from it.
        for frag, want in (("#sort=name&dir=desc", ["thumbs", "mail"]),
                           ("#sort=fill&dir=asc", ["thumbs", "mail"]),
                           ("#q=HUM", ["thumbs"])):
            p = Rows()
            p.feed(chromium("http://127.0.0.1:%d/%s" % (port, frag), "--dump-dom"))
            assert p.order == want, "%r: rows %r, want %r" % (frag, p.order, want)
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_admin_buttons_appear_only_with_http_admin():
    need_chromium()
    d, port = start_with_two_queues(["--http-admin"])
    try:
        p = Rows()
        p.feed(chromium("http://127.0.0.1:%d/" % port, "--dump-dom"))
        assert "admin-off" not in p.body.get("class", ""), p.body
        assert p.rows["mail"]["buttons"] == ["pause", "close", "kick"], p.rows["mail"]
        assert d.stop() == 0
    finally:
        d.cleanup()


if __name__ == "__main__":
    tests = [
        test_page_is_one_small_self_contained_document,
        test_browser_lists_both_queues_and_marks_the_full_one,
        test_screenshot_is_a_png_that_shows_the_full_bar,
        test_sorting_and_filtering_follow_the_url_fragment,
        test_admin_buttons_appear_only_with_http_admin,
    ]
    if not chromium_path():
        print("SKIP: Chromium not found (install Debian's chromium; ./test.sh does): "
              "the status page is not checked in a browser")
        sys.exit(77)
    # Five browser runs, each up to CHROMIUM_TIMEOUT on a loaded machine.
    sys.exit(main(tests, budget_s=5 * CHROMIUM_TIMEOUT))
