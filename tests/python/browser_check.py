"""Opens a local HTML page in headless Chromium and reports, as JSON, what a reader would see:
which `data-section` sections it has, whether every image loaded (naturalWidth > 0), every
request the page made (URL and scheme), and every console message, exception or log entry of
level error. Optionally saves a PNG screenshot of the top of the page.

It talks to Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: NUL-separated
JSON on file descriptors 3 and 4), so it needs only the standard library and no free port. The
browser is started here and stopped by its PID, with a throwaway profile folder.

usage: browser_check.py CHROMIUM PAGE.html [SCREENSHOT.png]
"""

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

TIMEOUT_S = 60


class Browser:
    def __init__(self, chromium, profile):
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def wire_fds():
            # Through fresh descriptors first: the pipe ends may be 3 or 4 themselves, and
            # dup2 onto the same number would leave them close-on-exec.
            read_end, write_end = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds,
            close_fds=False,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            if time.time() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        deadline = time.time() + TIMEOUT_S
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method):
        deadline = time.time() + TIMEOUT_S
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event


PAGE_FACTS = """
JSON.stringify({
  title: document.title,
  sections: Array.from(document.querySelectorAll('section[data-section]')).map(s => s.id),
  images: Array.from(document.images).map(i => ({
    complete: i.complete, naturalWidth: i.naturalWidth, src: i.src.slice(0, 40)})),
  video_tiles: document.querySelectorAll('figure.tile.video img').length,
  waveforms: document.querySelectorAll('svg.wave path').length,
  histograms: Array.from(document.querySelectorAll('[data-histogram]')).map(h => h.dataset.histogram),
  thresholds: document.querySelectorAll('svg.chart line[stroke-dasharray]').length,
  height: document.documentElement.scrollHeight,
})
"""


def main():
    chromium, page = sys.argv[1], os.path.abspath(sys.argv[2])
    screenshot = sys.argv[3] if len(sys.argv) > 3 else None
    url = "file://" + page
    # Chromium may still be writing to its profile when it exits: cleaning up must not fail the check.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = Browser(chromium, profile)
        try:
            target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.call(
                "Target.attachToTarget", {"targetId": target, "flatten": True}
            )["sessionId"]
            for domain in ["Page", "Runtime", "Log", "Network"]:
                browser.call(f"{domain}.enable", session=session)
            browser.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            browser.events.clear()
            browser.call("Page.navigate", {"url": url}, session=session)
            browser.wait_for("Page.loadEventFired")
            facts = browser.call(
                "Runtime.evaluate",
                {"expression": PAGE_FACTS, "returnByValue": True},
                session=session,
            )["result"]["value"]
            facts = json.loads(facts)
            if screenshot:
                shot = browser.call(
                    "Page.captureScreenshot",
                    {
                        "format": "png",
                        "captureBeyondViewport": True,
                        "clip": {"x": 0, "y": 0, "width": 1280,
                                 "height": min(facts["height"], 2400), "scale": 1},
                    },
                    session=session,
                )
                with open(screenshot, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
            # Let late events (a failed request, an error logged after load) arrive.
            browser.call("Runtime.evaluate", {"expression": "1"}, session=session)
        finally:
            browser.stop()

    requests, errors = [], []
    for event in browser.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            requests.append(params["request"]["url"][:80])
        elif method == "Network.loadingFailed":
            errors.append(f"request failed: {params.get('errorText')}")
        elif method == "Runtime.exceptionThrown":
            errors.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(f"log: {params['entry'].get('text')}")
    facts.update({"url": url, "requests": requests, "errors": errors})
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
