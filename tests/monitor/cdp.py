"""cdp.py - drive headless Chromium over the DevTools protocol on a pipe.

No Playwright, no websocket library: Chromium started with
--remote-debugging-pipe reads JSON commands (each ended by a NUL byte) on
file descriptor 3 and writes answers and events on descriptor 4.

    with cdp.Browser() as b:
        page = b.new_page(1440, 1000)
        page.goto("http://127.0.0.1:3000/admin/queues")
        page.wait_for("document.body.dataset.statsUpdates >= 1", 15)
        print(page.eval("document.title"))
        page.click("#jobs-body tr")
        page.screenshot("out.png")
"""
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

# Debian's /usr/bin/chromium is a shell wrapper; run the binary itself
CHROMIUM = os.environ.get("CHROMIUM") or next(
    (p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), "chromium")


class CdpError(Exception):
    pass


class Browser:
    def __init__(self, timeout=20):
        self.profile = tempfile.mkdtemp(prefix="botmesh-chromium-")
        self.timeout = timeout
        # Our ends: we write commands into to_chrome_w, read from from_chrome_r
        to_chrome_r, self.to_chrome_w = os.pipe()
        self.from_chrome_r, from_chrome_w = os.pipe()
        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")

        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                "--remote-debugging-pipe", "--user-data-dir=" + self.profile, "about:blank"]

        def child_fds():
            # Chromium reads commands on fd 3 and writes on fd 4.  Move both
            # ends above 10 first so neither dup2 can clobber the other.
            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        # pass_fds=(3, 4): close_fds runs after preexec_fn and keeps these
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=child_fds, pass_fds=(3, 4))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer = b""
        self.next_id = 0
        self.events = []
        self.call("Browser.getVersion")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("Browser.close")
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
        for fd in (self.to_chrome_w, self.from_chrome_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.to_chrome_w, data)
            data = data[n:]
        return self.next_id

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("no answer from Chromium in time")
            ready, _, _ = select.select([self.from_chrome_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.from_chrome_r, 1 << 20)
            if not chunk:
                raise CdpError("Chromium closed the pipe (rc=%s)" % self.proc.poll())
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, params=None, session=None, timeout=None):
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._read_message(deadline)
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise CdpError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
                del self.events[:-500]

    def new_page(self, width=1440, height=1000):
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page


class Page:
    def __init__(self, browser, session):
        self.browser = browser
        self.session = session

    def call(self, method, params=None, timeout=None):
        return self.browser.call(method, params, self.session, timeout)

    def goto(self, url, timeout=20):
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", timeout)

    def eval(self, expression, timeout=None):
        """Evaluate a JS expression (awaiting promises); return its JSON value."""
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, timeout)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise CdpError("JS exception in %r: %s" % (expression[:200],
                           d.get("exception", {}).get("description") or d.get("text")))
        return res.get("result", {}).get("value")

    def wait_for(self, expression, timeout, what=None, interval=0.05):
        """Poll a JS expression until truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.eval("(function(){try{return (%s);}catch(e){return null;}})()" % expression)
            except CdpError as e:
                last = e
            if last and not isinstance(last, CdpError):
                return last
            time.sleep(interval)
        raise CdpError("timed out after %ss waiting for %s (last: %r)" % (timeout, what or expression, last))

    def click(self, selector, timeout=10):
        """Click the centre of the first element matching selector, like a
        user.  The point is taken only once the element itself is what a
        click there hits (not another element laid over it or moved into
        its place by a re-render), waiting up to timeout seconds for that."""
        box = self.wait_for("""(function(){
            var e = document.querySelector(%s);
            if (!e) return null;
            e.scrollIntoView({block: 'center'});
            var r = e.getBoundingClientRect();
            var x = r.left + r.width / 2, y = r.top + r.height / 2;
            var hit = document.elementFromPoint(x, y);
            return hit && (hit === e || e.contains(hit)) ? [x, y] : null;
        })()""" % json.dumps(selector), timeout, "%s to be there to click" % selector)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                   "button": "left", "clickCount": 1})

    def type_text(self, selector, text):
        self.eval("document.querySelector(%s).focus()" % json.dumps(selector))
        self.call("Input.insertText", {"text": text})

    def screenshot(self, path, full_page=True):
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        data = self.call("Page.captureScreenshot", params, timeout=30)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path
