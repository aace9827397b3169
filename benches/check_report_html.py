#!/usr/bin/env python3
"""Open an HTML report in headless Chromium and fail on anything a reader's browser would
complain about: console errors, uncaught exceptions, Content-Security-Policy violations,
resources that fail to load (or answer >= 400). Saves a full-page screenshot.

Usage: check_report_html.py CHROMIUM REPORT_HTML SCREENSHOT_PNG
Exit: 0 clean, 1 the page has problems (each printed), 2 the check itself could not run.

Standard library only: Chromium speaks the DevTools protocol over a pipe
(--remote-debugging-pipe: it reads NUL-terminated JSON on fd 3 and writes on fd 4), so no
websocket client is needed.
"""

import base64
import fcntl
import json
import os
import pathlib
import select
import shutil
import subprocess
import sys
import tempfile
import time

LOAD_TIMEOUT_S = 30.0
# After the load event, how long to keep listening for late errors.
SETTLE_S = 1.0
VIEWPORT = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
MAX_SCREENSHOT_HEIGHT = 16000
# Audits issues that mean the page broke its own rules or was blocked.
FAILING_ISSUES = {
    "ContentSecurityPolicyIssue",
    "MixedContentIssue",
    "BlockedByResponseIssue",
    "CorsIssue",
}


class CheckError(Exception):
    """The check could not run (exit 2), as opposed to the page having problems (exit 1)."""


def high_fds(pipe, child_end):
    """`pipe` with its child's end (index `child_end`) moved to a descriptor >= 10."""
    ends = list(pipe)
    high = fcntl.fcntl(ends[child_end], fcntl.F_DUPFD, 10)
    os.close(ends[child_end])
    ends[child_end] = high
    return ends


class Browser:
    """A Chromium process and its DevTools pipe."""

    def __init__(self, chromium):
        self.profile = tempfile.mkdtemp(prefix="check-report-html-")
        self.log = tempfile.TemporaryFile()
        # The child's ends are moved to fds >= 10, so moving them onto 3 and 4 in the child
        # cannot clobber one with the other.
        to_chrome_r, self.to_chrome = high_fds(os.pipe(), 0)
        self.from_chrome, from_chrome_w = high_fds(os.pipe(), 1)
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--mute-audio",
            "--hide-scrollbars",
            f"--user-data-dir={self.profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # bash moves the pipe ends to the fds Chromium expects (3 and 4) and closes the
        # originals, then becomes Chromium.
        wrapper = f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        try:
            self.proc = subprocess.Popen(
                ["bash", "-c", wrapper, "bash", chromium, *flags],
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=self.log,
                pass_fds=(to_chrome_r, from_chrome_w),
            )
        except OSError as err:
            raise CheckError(f"cannot start {chromium}: {err}") from err
        finally:
            os.close(to_chrome_r)
            os.close(from_chrome_w)
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None, timeout=LOAD_TIMEOUT_S):
        """Sends a command and returns its result; events that arrive meanwhile are kept."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            os.write(self.to_chrome, data)
        except BrokenPipeError as err:
            raise CheckError(f"chromium exited before {method}{self.log_tail()}") from err
        deadline = time.monotonic() + timeout
        while True:
            for reply in self.read(deadline):
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise CheckError(f"{method} failed: {reply['error']}")
                    return reply.get("result", {})
                self.events.append(reply)
            if time.monotonic() >= deadline:
                raise CheckError(f"no answer to {method} in {timeout:.0f}s{self.log_tail()}")

    def read(self, deadline):
        """Messages that arrive before `deadline` (at least one unless it passes)."""
        while True:
            if b"\0" in self.buffer:
                *messages, self.buffer = self.buffer.split(b"\0")
                return [json.loads(m) for m in messages if m]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            ready, _, _ = select.select([self.from_chrome], [], [], remaining)
            if not ready:
                return []
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise CheckError(f"chromium closed the DevTools pipe{self.log_tail()}")
            self.buffer += chunk

    def wait_for(self, method, session, timeout):
        """Waits until event `method` arrives (or the time is up); returns whether it did."""
        deadline = time.monotonic() + timeout
        while True:
            if any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
                return True
            if time.monotonic() >= deadline:
                return False
            self.events.extend(self.read(deadline))

    def listen(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.events.extend(self.read(deadline))

    def log_tail(self):
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()[-15:]
        return ("\nchromium said:\n  " + "\n  ".join(lines)) if lines else ""

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", timeout=5)
                except CheckError:
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            os.close(self.to_chrome)
            os.close(self.from_chrome)
            shutil.rmtree(self.profile, ignore_errors=True)


def describe_remote_object(obj):
    if "value" in obj:
        return str(obj["value"])
    return obj.get("description") or obj.get("type", "?")


def problems_in(events, session):
    """Every event that shows the page misbehaving, as one line each."""
    problems = []
    urls = {}
    for event in events:
        if event.get("sessionId") != session:
            if event.get("method") == "Target.targetCrashed":
                problems.append("the page crashed")
            continue
        method = event.get("method")
        params = event.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            what = describe_remote_object(details.get("exception", {})) if details.get("exception") else details.get("text")
            problems.append(f"uncaught exception: {what}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(describe_remote_object(a) for a in params.get("args", []))
            problems.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            problems.append(f"console error [{entry.get('source')}]: {entry.get('text')}{where}")
        elif method == "Network.loadingFailed":
            url = urls.get(params["requestId"], "?")
            why = [params.get("errorText"), params.get("blockedReason")]
            if params.get("corsErrorStatus"):
                why.append(json.dumps(params["corsErrorStatus"]))
            problems.append(
                f"resource failed to load: {url}: {', '.join(w for w in why if w) or 'unknown'}"
            )
        elif method == "Network.responseReceived" and params["response"].get("status", 0) >= 400:
            response = params["response"]
            problems.append(f"resource answered {response['status']}: {response['url']}")
        elif method == "Audits.issueAdded":
            issue = params["issue"]
            if issue.get("code") in FAILING_ISSUES:
                details = json.dumps(issue.get("details", {}), sort_keys=True)[:300]
                problems.append(f"{issue['code']}: {details}")
        elif method == "Inspector.targetCrashed":
            problems.append("the page crashed")
    return problems, len(urls)


def check(chromium, html, png):
    path = pathlib.Path(html).resolve()
    if not path.is_file():
        raise CheckError(f"{html}: no such file")
    browser = Browser(chromium)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Network", "Page", "Audits", "Inspector"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", VIEWPORT, session=session)
        navigation = browser.send("Page.navigate", {"url": path.as_uri()}, session=session)
        if navigation.get("errorText"):
            return [f"navigation failed: {navigation['errorText']}"], 0
        if not browser.wait_for("Page.loadEventFired", session, LOAD_TIMEOUT_S):
            return [f"no load event within {LOAD_TIMEOUT_S:.0f}s"], 0
        browser.listen(SETTLE_S)

        metrics = browser.send("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {
            "x": 0,
            "y": 0,
            "width": max(VIEWPORT["width"], int(size["width"])),
            "height": max(1, min(MAX_SCREENSHOT_HEIGHT, int(size["height"]))),
            "scale": 1,
        }
        shot = browser.send(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            session=session,
        )
        pathlib.Path(png).write_bytes(base64.b64decode(shot["data"]))
        browser.listen(0.2)
        return problems_in(browser.events, session)
    finally:
        browser.close()


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[3], file=sys.stderr)
        return 2
    _, chromium, html, png = argv
    try:
        problems, requests = check(chromium, html, png)
    except CheckError as err:
        print(f"check_report_html: {err}", file=sys.stderr)
        return 2
    if problems:
        for problem in problems:
            print(f"FAIL {html}: {problem}")
        print(f"check_report_html: {len(problems)} problem(s) in {html}")
        return 1
    print(f"check_report_html: {html}: clean ({requests} request(s)); screenshot {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
