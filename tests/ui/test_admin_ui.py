#!/usr/bin/env python3
"""The status page's admin side in a real browser (Selenium driving
headless Chromium through chromedriver), against a real chanqd with
--http-admin and a --token-file:

- the list: a closed queue offers no Pause button, every rate has one
  format, the cards fill whole rows at 1280 px, the depth bars start at one
  x, and at 420 px nothing scrolls sideways (screenshots at both widths go
  to the build directory: tests/ui/admin-1280.png, admin-1280-job.png,
  admin-420.png, admin-420-drill.png);
- the drill-down: a dead job shows in the Dead tab with its error, its job
  view shows errors and payload; Retry takes it out of the Dead tab and a
  worker then runs it (the view says done, the processed total counts it);
  Delete removes a queued job; Purge empties a queue's queued jobs; the
  Reserved tab names the holder; the busy-workers view lists the worker;
- an admin POST from the page without its page token is refused (403)
  and with it accepted;
- no request leaves the daemon (the browser's network log), and the page
  is under 60 KiB.

Exit 77 (skip) only when Chromium cannot be started here; anything else
that goes wrong fails. Every wait is bounded."""
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ops"))
from opslib import TOP_BUILDDIR, Daemon, dial, request  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException, TimeoutException, WebDriverException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TOKEN = "ui-test-admin-token"
WAIT = 20          # seconds for any one thing to show in the page
PAGE_LIMIT = 60 * 1024
TOTAL_S = 300      # the whole run, however stuck the browser is
SHOTS = os.path.join(os.path.abspath(TOP_BUILDDIR), "tests", "ui")


class Skip(Exception):
    pass


def find_exe(env, *names):
    for n in (os.environ.get(env),) + names:
        if n and shutil.which(n):
            return shutil.which(n)
    return None


def start_browser(profile):
    """Headless Chromium with the network log on; Skip when it cannot start."""
    driver_exe = find_exe("CHROMEDRIVER", "chromedriver")
    browser = find_exe("CHROMIUM", "chromium", "chromium-browser")
    if not driver_exe or not browser:
        raise Skip("chromedriver or chromium not found (Debian packages chromium-driver, "
                   "chromium; scripts/deps.sh test installs them)")
    o = webdriver.ChromeOptions()
    o.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-default-apps",
              "--disable-extensions", "--disable-domain-reliability", "--metrics-recording-only",
              "--window-size=1280,900", "--user-data-dir=" + profile):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    try:
        d = webdriver.Chrome(service=Service(executable_path=driver_exe), options=o)
    except WebDriverException as e:
        raise Skip("Chromium cannot start here: %s" % str(e).strip()[:500])
    d.set_page_load_timeout(30)
    d.set_script_timeout(15)
    return d


class Page:
    """The browser on chanqd's page, with the waits the checks need and
    every URL the browser asked for."""

    def __init__(self, driver, base):
        self.d = driver
        self.base = base
        self.urls = []

    def wait(self, fn, what, timeout=WAIT):
        """fn's first true value; the page redraws its tables as it polls,
        so an element gone stale meanwhile is asked again."""
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.2,
                                 ignored_exceptions=(StaleElementReferenceException,)
                                 ).until(lambda _: fn())
        except TimeoutException:
            raise AssertionError("waited %ds for %s; the page is at %s and says %r; its jobs: %r"
                                 % (timeout, what, self.d.current_url, self.js(
                                     "return document.getElementById('msg').textContent"),
                                     self.js("return [...document.querySelectorAll('#jobs tbody"
                                             " tr')].map(r => r.dataset.job)")))

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def css(self, sel):
        return self.d.find_elements(By.CSS_SELECTOR, sel)

    def one(self, sel):
        return self.wait(lambda: (self.css(sel) or [None])[0], sel)

    def visible(self, sel):
        return self.wait(lambda: next((e for e in self.css(sel) if e.is_displayed()), None),
                         "%s to be shown" % sel)

    def click(self, sel):
        self.wait(lambda: self.visible(sel).click() or True, "a click on " + sel)

    def text(self, sel):
        return self.wait(lambda: self.one(sel).text + "\0", sel)[:-1]

    def click_and_confirm(self, sel):
        """Clicks, then accepts the page's confirm() box."""
        self.click(sel)
        WebDriverWait(self.d, WAIT).until(EC.alert_is_present())
        self.d.switch_to.alert.accept()

    def viewport(self, width, height=900):
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1,
                                "mobile": False})
        self.wait(lambda: self.js("return window.innerWidth") == width, "the viewport at %d" % width)

    def go(self, frag):
        self.d.get(self.base + frag)
        self.wait(lambda: int(self.one("body").get_attribute("data-refreshes") or 0) >= 1,
                  "the page's first refresh")

    def drain_network_log(self):
        for entry in self.d.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            # Requests of chanqd's page (its document's URL is ours), not
            # those of the browser's own pages (the new tab it opens with).
            params = msg.get("params", {})
            if msg.get("method") == "Network.requestWillBeSent" and \
                    params.get("documentURL", "").startswith(self.base):
                self.urls.append(params["request"]["url"])

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        path = os.path.join(SHOTS, name)
        assert self.d.save_screenshot(path), "no screenshot " + path
        assert os.path.getsize(path) > 1000, "empty screenshot " + path
        print("screenshot: %s" % path)


def check_layout(p, width):
    """No sideways scroll; the depth bars of the list start at one x; the
    server cards fill every row they use."""
    over = p.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert over <= 0, "at %d px the page scrolls sideways by %d px" % (width, over)
    lefts = p.js("return [...document.querySelectorAll('#queues tbody .bar')]"
                 ".map(b => Math.round(b.getBoundingClientRect().left))")
    assert len(lefts) >= 3 and len(set(lefts)) == 1, "at %d px the bars start at %r" % (width, lefts)
    tops = p.js("return [...document.querySelectorAll('#server > div')]"
                ".map(c => Math.round(c.getBoundingClientRect().top))")
    per_row = {}
    for t in tops:
        per_row[t] = per_row.get(t, 0) + 1
    counts = [per_row[t] for t in sorted(per_row)]
    assert len(set(counts)) == 1, "at %d px the cards wrap unevenly: %r a row" % (width, counts)
    print("layout at %d px: cards %r a row, bars at x=%d" % (width, counts, lefts[0]))


def setup(d):
    """Queues and jobs through the protocol. Returns (ids, worker socket)."""
    ids = {}
    s = dial(("127.0.0.1", d.port))
    assert request(s, {"op": "hello", "token": TOKEN}).get("ok") is True
    # thumbs' reservations outlast the run (a ttr of 10 min): its job stays held.
    for q, extra in (("mail", {}), ("thumbs", {"ttr_ms": 600000}), ("old", {})):
        r = request(s, dict({"op": "declare", "queue": q, "capacity": 100}, **extra))
        assert r.get("ok") is True, r
    assert request(s, {"op": "close", "queue": "old"}).get("ok") is True
    r = request(s, {"op": "submit", "queue": "mail", "payload": {"to": "dead@example.com"},
                    "max_attempts": 1})
    ids["dead"] = r["id"]
    for i in range(7):
        r = request(s, {"op": "submit", "queue": "thumbs", "payload": {"n": i}})
        assert r.get("ok") is True, r
        ids.setdefault("thumbs", []).append(r["id"])
    # A worker: names itself if this chanqd's hello takes a client name.
    w = dial(("127.0.0.1", d.port))
    r = request(w, {"op": "hello", "token": TOKEN, "client": "billing-worker"})
    if r.get("ok") is not True:
        assert request(w, {"op": "hello", "token": TOKEN}).get("ok") is True
    r = request(w, {"op": "fetch", "queue": "mail", "timeout_ms": 5000})
    assert [j["id"] for j in r["jobs"]] == [ids["dead"]], r
    r = request(w, {"op": "nack", "id": ids["dead"], "error": "smtp timeout", "dead": True})
    assert r.get("ok") is True, r
    r = request(w, {"op": "fetch", "queue": "thumbs", "timeout_ms": 5000})
    ids["held"] = r["jobs"][0]["id"]  # the oldest: the worker keeps it reserved
    ids["delete"] = ids["thumbs"][1]
    s.close()
    return ids, w


def job_state(d, jid):
    with dial(("127.0.0.1", d.port)) as s:
        assert request(s, {"op": "hello", "token": TOKEN}).get("ok") is True
        r = request(s, {"op": "job", "id": jid})
    return r["job"]["state"] if r.get("ok") else r["error"]["code"]


def queue_stats(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/stats" % port, timeout=10) as r:
        return json.loads(r.read().decode())["queues"]


def check_list(p):
    p.go("")
    p.wait(lambda: len(p.css("#queues tbody tr")) == 3, "three queue rows")
    p.wait(lambda: int(p.one("body").get_attribute("data-refreshes")) >= 3, "three refreshes")
    old = p.one('tr[data-queue="old"]')
    assert not old.find_element(By.CSS_SELECTOR, 'button[data-op="pause"]').is_displayed(), \
        "a closed queue offers a Pause button"
    assert not old.find_element(By.CSS_SELECTOR, 'button[data-op="close"]').is_enabled()
    assert p.one('tr[data-queue="mail"] button[data-op="pause"]').is_displayed()
    rates = [e.text for e in p.css("#queues td.submit_rate, #queues td.ack_rate")]
    assert len(rates) == 6 and all(re.fullmatch(r"\d{1,3}(,\d{3})*\.\d", r) for r in rates), \
        "rates formatted unevenly: %r" % rates
    p.viewport(1280)
    check_layout(p, 1280)
    p.shot("admin-1280.png")


def check_dead_retry_and_run(p, d, ids, w):
    p.click('tr[data-queue="mail"] td.name a')
    p.visible("#drill")
    p.click('#tabs [data-tab="dead"]')
    row = 'tr[data-job="%s"]' % ids["dead"]
    p.wait(lambda: any("smtp timeout" in e.text for e in p.css(row + " td.err")),
           "the dead job with its error")
    p.click(row + " td a")
    p.wait(lambda: p.one("#v-state").text == "dead", "the job view of the dead job")
    assert "smtp timeout" in p.one("#v-errors").text, p.one("#v-errors").text
    assert "dead@example.com" in p.one("#v-payload").text, p.one("#v-payload").text
    assert p.one("#v-attempts").text == "1 of 1", p.one("#v-attempts").text
    p.shot("admin-1280-job.png")
    p.click_and_confirm("#v-retry")
    p.wait(lambda: not p.css(row), "the retried job to leave the Dead tab")
    p.wait(lambda: p.one("#v-state").text == "queued", "the job view to say queued")
    r = request(w, {"op": "fetch", "queue": "mail", "timeout_ms": 5000})
    assert [j["id"] for j in r["jobs"]] == [ids["dead"]], r
    assert request(w, {"op": "ack", "id": ids["dead"], "result": {"sent": True}}).get("ok") is True
    p.wait(lambda: p.one("#v-state").text == "done", "the job view to say done")
    assert '"sent":true' in p.one("#v-result").text, p.one("#v-result").text
    # The history samples every 10 s: the ack shows in the processed total.
    p.wait(lambda: p.one("#s-processed").text not in ("", "0", "\u2013"),
           "the processed total to count the retried job", timeout=40)
    print("retried job %s ran; processed total %s" % (ids["dead"], p.one("#s-processed").text))


def check_delete_purge_reserved_workers(p, d, ids):
    p.click("#back")
    p.click('tr[data-queue="thumbs"] td.name a')
    p.click('#tabs [data-tab="queued"]')
    row = 'tr[data-job="%s"]' % ids["delete"]
    p.visible(row)
    p.click_and_confirm(row + ' button[data-op="delete"]')
    p.wait(lambda: not p.css(row), "the deleted job to leave the Queued tab")
    assert job_state(d, ids["delete"]) == "not_found"
    p.wait(lambda: len(p.css("#jobs tbody tr")) == 5, "the five jobs left queued")
    assert p.one("#d-purge").text == "Purge queued"
    p.click_and_confirm("#d-purge")
    p.wait(lambda: not p.css("#jobs tbody tr"), "the Queued tab to empty")
    q = queue_stats(d.http)["thumbs"]
    assert q["depth"] == 0 and q["reserved"] == 1, q
    p.click('#tabs [data-tab="reserved"]')
    row = 'tr[data-job="%s"]' % ids["held"]
    p.wait(lambda: p.css(row) and "127.0.0.1:" in p.css(row)[0].text, "the holder of the reserved job")
    assert not p.css(row + ' button[data-op="retry"]'), "a reserved job offers Retry"
    p.wait(lambda: len(p.css("#wtable tbody tr")) == 1, "one busy worker")
    assert p.text("#wtable td.held") == "1", p.text("#wtable td.held")
    print("busy workers: %s" % p.text("#wtable tbody tr").replace("\n", " | "))


def check_page_token(p, d):
    post = ("var [tok, done] = [arguments[0], arguments[arguments.length - 1]];"
            "var h = {'Content-Type': 'application/json', Authorization: 'Bearer ' + arguments[1]};"
            "if (tok) h['X-Chanq-Page-Token'] = tok;"
            "fetch('admin/pause', {method: 'POST', headers: h, body: '{\"queue\":\"mail\"}'})"
            ".then(r => r.json().then(b => done([r.status, b])), e => done([0, String(e)]));")
    status, body = p.d.execute_async_script(post, None, TOKEN)
    assert status == 403 and "page token" in body["error"]["message"], (status, body)
    assert queue_stats(d.http)["mail"]["paused"] is False, "refused POST paused the queue"
    tok = p.js('return document.querySelector("meta[name=chanq-page-token]").content')
    status, body = p.d.execute_async_script(post, tok, TOKEN)
    assert status == 200 and queue_stats(d.http)["mail"]["paused"] is True, (status, body)
    print("admin POST without the page token: 403; with it: 200")


def check_narrow(p, d):
    p.viewport(420)
    p.go("#")
    p.wait(lambda: len(p.css("#queues tbody tr")) == 3, "three queue cards")
    check_layout(p, 420)
    p.shot("admin-420.png")
    p.go("#queue=thumbs&tab=reserved")
    p.wait(lambda: len(p.css("#jobs tbody tr")) == 1, "the reserved job at 420 px")
    over = p.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert over <= 0, "the drill-down at 420 px scrolls sideways by %d px" % over
    p.shot("admin-420-drill.png")


def check_network_and_size(p, d):
    p.drain_network_log()
    own = p.base.rstrip("/") + "/"
    foreign = [u for u in p.urls if not (u.startswith(own) or u.startswith("data:"))]
    assert p.urls, "the network log is empty: it cannot show anything"
    assert not foreign, "requests left the daemon: %r" % foreign[:10]
    kinds = sorted({re.sub(r"[?#].*", "", u[len(own):]) or "/" for u in p.urls})
    print("network: %d requests, all to %s: %s" % (len(p.urls), own, ", ".join(kinds)))
    with urllib.request.urlopen(own, timeout=10) as r:
        size = len(r.read())
    assert size < PAGE_LIMIT, "the page is %d bytes, over %d" % (size, PAGE_LIMIT)
    print("page: %d bytes (limit %d)" % (size, PAGE_LIMIT))


def run():
    tmp = tempfile.mkdtemp(prefix="chanq-ui-")
    d = drv = w = None
    try:
        token_file = os.path.join(tmp, "tokens")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        profile = os.path.join(tmp, "profile")
        drv = start_browser(profile)
        d = Daemon(["--memory", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                    "--http-admin", "--token-file", token_file])
        d.http = int(d.wait_log(r"http: status page on http://127\.0\.0\.1:(\d+)/").group(1))
        ids, w = setup(d)
        p = Page(drv, "http://127.0.0.1:%d/" % d.http)
        p.go("")
        p.js("sessionStorage.setItem('chanqd-admin-token', arguments[0])", TOKEN)
        steps = (check_list, lambda p: check_dead_retry_and_run(p, d, ids, w),
                 lambda p: check_delete_purge_reserved_workers(p, d, ids),
                 lambda p: check_page_token(p, d), lambda p: check_narrow(p, d),
                 lambda p: check_network_and_size(p, d))
        for step in steps:
            p.drain_network_log()
            step(p)
        assert "http: admin retry id=%s from 127.0.0.1:" % ids["dead"] in d.log(), \
            "the retry is not in the log"
        assert "http: admin purge queue=thumbs from 127.0.0.1:" in d.log()
        w.close()
        w = None
        assert d.stop() == 0
    finally:
        if w:
            w.close()
        if drv:
            drv.quit()
        if d:
            d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def out_of_time(signum, frame):
    raise TimeoutError("the run took over %d s" % TOTAL_S)


if __name__ == "__main__":
    signal.signal(signal.SIGALRM, out_of_time)  # a wedged browser fails the run, cleaned up
    signal.alarm(TOTAL_S)
    try:
        run()
    except Skip as e:
        print("SKIP: %s" % e)
        sys.exit(77)
    except Exception:
        traceback.print_exc()
        print("FAIL: test_admin_ui")
        print("0 passed, 1 failed")
        sys.exit(1)
    print("PASS: test_admin_ui")
    print("1 passed, 0 failed")
