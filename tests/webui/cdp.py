"""Drives the management web UI in a real (headless) Chromium over the
DevTools protocol, for tests/webui.rs: logs in through the form, finds the
queue the test filled, opens its page and purges it with clicks, and writes
a screenshot. Standard library only: the DevTools websocket is spoken here
(RFC 6455 client frames, masked; text frames only).

Usage: cdp.py DEVTOOLS_PORT UI_URL USER PASSWORD QUEUE MESSAGES HOSTILE_QUEUE SCREENSHOT MONITOR MONITOR_PASSWORD
              CHANNEL PREFETCH EXCHANGE DEFINITIONS_FILE DOWNLOAD_DIR

USER is an administrator; MONITOR a user with the monitoring tag alone,
to whom the page must not offer changes. CHANNEL is an open AMQP channel
(its name in /api/channels) in confirm mode with a prefetch of PREFETCH and
one consumer; EXCHANGE an exchange bound to QUEUE. The page also publishes
with a delivery mode, headers and properties, and finds them again in the
message it gets; downloads the definitions (into DOWNLOAD_DIR, where the
file must hold QUEUE) and uploads DEFINITIONS_FILE from the Definitions
page; the queues page shows the queue's rates once it has read it twice;
and the overview's charts take a sample on each poll.

Exits 0 when every step passed; otherwise prints the step that failed (and
any console error or exception the page raised) and exits 1. Every wait is
bounded; the Rust test bounds the whole run and kills the browser.
"""
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.request

STEP_S = 8.0


class Ws:
    def __init__(self, url):
        assert url.startswith("ws://")
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=STEP_S)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1)
            if not chunk:
                raise RuntimeError("devtools closed during the websocket handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"devtools refused the websocket: {head!r}")

    def send(self, text):
        data = text.encode()
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("devtools closed the websocket")
            buf += chunk
        return buf

    def recv(self):
        """One whole message (fragments joined); control frames skipped."""
        parts = []
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            if n > 64 << 20:
                raise RuntimeError(f"a devtools frame of {n} bytes")
            payload = self._exact(n)
            op = b0 & 0x0F
            if op in (0x8, 0x9, 0xA):
                if op == 0x8:
                    raise RuntimeError("devtools closed the websocket")
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.problems = []

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + STEP_S
        while time.monotonic() < deadline:
            m = json.loads(self.ws.recv())
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.event(m)
        raise RuntimeError(f"{method}: no answer within {STEP_S} s")

    def event(self, m):
        """Keeps the page's errors: exceptions, console errors (a CSP
        violation is one)."""
        method, p = m.get("method"), m.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.problems.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            # The login form's wrong-password probe is no fault of the page.
            if "401" not in e.get("text", ""):
                self.problems.append("console: " + e.get("text", "")[:500])
        elif method == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.problems.append("console.error: " + json.dumps(p.get("args", []))[:500])

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def wait(self, what, expr):
        deadline = time.monotonic() + STEP_S
        while time.monotonic() < deadline:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.1)
        raise RuntimeError(f"waited {STEP_S} s for {what} ({expr}); page text: {self.js('document.body.innerText')[:1500]!r}")

    def click(self, selector):
        """A real mouse click in the middle of the element."""
        box = self.wait(f"{selector} to be shown", f"""(() => {{
            const e = document.querySelector({json.dumps(selector)});
            if (!e || e.offsetParent === null) return null;
            e.scrollIntoView({{block: "center"}});
            const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2];
        }})()""")
        for t in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=t, x=box[0], y=box[1], button="left", clickCount=1)

    def type_into(self, selector, text):
        """Empties the field, clicks into it and types `text`."""
        self.js(f"document.querySelector({json.dumps(selector)}).value = ''")
        self.click(selector)
        self.call("Input.insertText", text=text)


def main():
    port, url, user, password, queue, messages, hostile, shot, monitor, monitor_password = sys.argv[1:11]
    channel, prefetch, exchange, defs_file, download_dir = sys.argv[11:16]
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=STEP_S))
    page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
    p = Page(Ws(page_ws))
    step = "start"
    t0 = time.monotonic()
    times = []
    try:
        for domain in ("Page", "Runtime", "Log"):
            p.call(domain + ".enable")
        p.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        times.append((step, time.monotonic() - t0)); step = "open the UI"
        p.call("Page.navigate", url=url)
        p.wait("the login form", "document.getElementById('login') && !document.getElementById('login').hidden")
        times.append((step, time.monotonic() - t0)); step = "a wrong password is refused"
        p.type_into("#login-user", user)
        p.type_into("#login-password", "not-" + password)
        p.click("#login-submit")
        p.wait("the refusal", "document.getElementById('login-error').textContent.includes('Wrong')")
        times.append((step, time.monotonic() - t0)); step = "log in"
        p.type_into("#login-password", password)
        p.click("#login-submit")
        p.wait("the overview", "document.getElementById('total-queues') !== null")
        times.append((step, time.monotonic() - t0)); step = "the queues page lists the queue"
        p.click("a[data-view=queues]")
        name = json.dumps(queue)
        row = f"[...document.querySelectorAll('a.queue-link')].find(a => a.textContent === {name})"
        p.wait("the queue's row", f"!!({row})")
        ready = p.wait("its ready count", f"({row}).closest('tr').children[3].textContent")
        if ready != messages:
            raise RuntimeError(f"the queues page shows {ready} ready, the test published {messages}")
        times.append((step, time.monotonic() - t0)); step = "a hostile queue name is shown as text"
        hname = json.dumps(hostile)
        p.wait("the hostile name as text", f"[...document.querySelectorAll('a.queue-link')].some(a => a.textContent === {hname})")
        if p.js("window.__xss === undefined") is not True or p.js("document.querySelector('#view img') === null") is not True:
            raise RuntimeError("the hostile queue name became markup")
        times.append((step, time.monotonic() - t0)); step = "sort and filter the queues"
        p.click("th[data-key=messages_ready]")
        p.wait("sorted by ready, most first", "document.querySelector('th[data-key=messages_ready]').classList.contains('sorted-desc')")
        first = p.js("document.querySelector('#view tbody a.queue-link').textContent")
        if first != queue:
            raise RuntimeError(f"sorted by ready, the first queue is {first!r}, not the one with messages")
        p.type_into("#filter", "img")
        p.wait("the filter applied", f"[...document.querySelectorAll('a.queue-link')].map(a => a.textContent).join() === {hname}")
        p.type_into("#filter", queue)
        p.wait("the filter applied", f"[...document.querySelectorAll('a.queue-link')].map(a => a.textContent).join() === {name}")
        times.append((step, time.monotonic() - t0)); step = "open the queue's page"
        p.click(f"a.queue-link[href$={json.dumps('/' + queue)}]")
        p.wait("the queue page", f"document.getElementById('queue-name') && document.getElementById('queue-name').textContent === {name}")
        p.wait("its ready figure", f"document.getElementById('queue-ready').textContent === {json.dumps(messages)}")
        times.append((step, time.monotonic() - t0)); step = "publish from the page, with headers and properties"
        p.type_into("#publish-payload", "from the page")
        p.js("document.getElementById('publish-delivery-mode').value = '2'")
        p.type_into("#publish-headers .header-row:nth-child(1) .header-name", "x-from")
        p.type_into("#publish-headers .header-row:nth-child(1) .header-value", "page")
        p.click("#publish-add-header")
        p.type_into("#publish-headers .header-row:nth-child(2) .header-name", "n")
        p.type_into("#publish-headers .header-row:nth-child(2) .header-value", "7")
        p.js("document.querySelector('#publish-headers .header-row:nth-child(2) .header-type').value = 'number'")
        p.type_into("#publish-prop-content_type", "text/plain")
        p.type_into("#publish-prop-message_id", "page-1")
        p.type_into("#publish-prop-priority", "3")
        p.click("#publish")
        p.wait("the publish's report", "document.getElementById('status').textContent === 'message published'")
        more = str(int(messages) + 1)
        p.wait("one more message", f"document.getElementById('queue-ready').textContent === {json.dumps(more)}")
        times.append((step, time.monotonic() - t0)); step = "get (peek) from the page"
        p.js("document.getElementById('get-count').value = '10'")
        p.click("#get")
        p.wait("the messages shown", f"document.querySelectorAll('#get-messages pre.payload').length === {more}")
        last = p.js("[...document.querySelectorAll('#get-messages pre.payload')].pop().textContent")
        if last != "from the page":
            raise RuntimeError(f"the last message got shows {last!r}")
        props = p.js("[...document.querySelectorAll('#get-messages .message .tags')].pop().textContent")
        for want in ('content_type: text/plain', 'message_id: page-1', 'delivery_mode: 2', 'priority: 3',
                     'headers: {', '"x-from":"page"', '"n":7'):
            if want not in props:
                raise RuntimeError(f"the message got shows {props!r}, without {want!r}")
        p.wait("the peek left them queued", f"document.getElementById('queue-ready').textContent === {json.dumps(more)}")
        # The queue's page, its forms filled and a message shown, beside
        # the overview's screenshot.
        page_png = base64.b64decode(p.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
        with open(shot.replace(".png", "-queue.png"), "wb") as f:
            f.write(page_png)
        times.append((step, time.monotonic() - t0)); step = "purge it from the page"
        p.click("#purge")
        p.wait("the armed purge", "document.getElementById('purge').classList.contains('armed')")
        p.click("#purge")
        p.wait("the purge's report", "document.getElementById('status').textContent === 'queue purged'")
        p.wait("no message left", "document.getElementById('queue-ready').textContent === '0'")
        times.append((step, time.monotonic() - t0)); step = "the channels page lists the AMQP channel"
        p.click("a[data-view=channels]")
        crow = f"[...document.querySelectorAll('#view tbody tr')].find(r => r.children[0].textContent === {json.dumps(channel)})"
        p.wait("the channel's row", f"!!({crow})")
        cells = p.js(f"[...({crow}).children].map(c => c.textContent)")
        # Channel, Connection, User, Virtual host, Mode, Prefetch, Unacked, Unconfirmed, Consumers, State, Shard
        if cells[2] != user or cells[3] != "/" or cells[4] != "C" or cells[5] != prefetch or cells[8] != "1":
            raise RuntimeError(f"the channel's row shows {cells}")
        times.append((step, time.monotonic() - t0)); step = "exchanges, bindings and connections"
        p.click("a[data-view=exchanges]")
        xname = json.dumps(exchange)
        p.wait("the exchange", f"[...document.querySelectorAll('#view tbody tr')].some(r => r.children[1].textContent === {xname} && r.children[2].textContent === 'direct')")
        p.click("a[data-view=bindings]")
        p.wait("the binding", f"[...document.querySelectorAll('#view tbody tr')].some(r => r.children[1].textContent === {xname} && r.children[2].textContent === {name})")
        p.click("a[data-view=connections]")
        p.wait("the AMQP connection", "[...document.querySelectorAll('#view tbody tr')].some(r => r.children[1].textContent === 'AMQP 0-9-1')")
        times.append((step, time.monotonic() - t0)); step = "the queues page shows rates"
        # Its second reading of the queue (the first was at the start):
        # incoming and deliver/get per second over the time between.
        p.js("document.getElementById('filter') && (document.getElementById('filter').value = '')")
        p.click("a[data-view=queues]")
        rates = p.wait("the queue's rates", f"(() => {{ const r = {row}; if (!r) return null; const c = r.closest('tr').children; "
                       "return c[7].textContent && c[8].textContent ? [c[7].textContent, c[8].textContent] : null; })()")
        if not all(r.endswith("/s") for r in rates):
            raise RuntimeError(f"the queue's rates read {rates}")
        times.append((step, time.monotonic() - t0)); step = "definitions: download and upload"
        p.call("Page.setDownloadBehavior", behavior="allow", downloadPath=download_dir)
        p.click("a[data-view=admin]")
        p.click("#defs-download")
        got = os.path.join(download_dir, "ringmq-definitions.json")
        deadline = time.monotonic() + STEP_S
        defs = None
        while time.monotonic() < deadline and defs is None:
            try:
                with open(got) as f:
                    defs = json.load(f)
            except (OSError, ValueError):
                time.sleep(0.1)
        if defs is None:
            raise RuntimeError(f"no definitions downloaded to {got}")
        if not any(q.get("name") == queue for q in defs.get("queues", [])):
            raise RuntimeError(f"the downloaded definitions lack the queue {queue}: {str(defs)[:500]}")
        node = p.call("Runtime.evaluate", expression="document.getElementById('defs-file')")["result"]["objectId"]
        p.call("DOM.setFileInputFiles", files=[defs_file], objectId=node)
        p.click("#defs-upload")
        p.wait("the import's report", "document.getElementById('status').textContent === 'definitions imported'")
        times.append((step, time.monotonic() - t0)); step = "the overview's charts update"
        p.click("a[data-view=overview]")
        # A sample on each page drawn and each poll: several by now, and
        # the rate chart has had two readings to make a rate from.
        p.wait("samples in both charts", "(() => { const d = document.getElementById('chart-depth'), r = document.getElementById('chart-rates'); "
               "return !!d && !!r && Number(d.dataset.samples) >= 3 && Number(r.dataset.samples) >= 2; })()")
        times.append((step, time.monotonic() - t0)); step = "screenshot"
        p.js("window.scrollTo(0, 0)")
        png = base64.b64decode(p.call("Page.captureScreenshot", format="png")["data"])
        with open(shot, "wb") as f:
            f.write(png)
        times.append((step, time.monotonic() - t0)); step = "a monitoring user is offered no changes"
        p.click("#logout")
        p.wait("the login form again", "!document.getElementById('login').hidden")
        p.type_into("#login-user", monitor)
        p.type_into("#login-password", monitor_password)
        p.click("#login-submit")
        p.wait("the login", f"document.getElementById('who-name').textContent === {json.dumps(monitor)}")
        if p.js("document.getElementById('nav-admin').hidden") is not True:
            raise RuntimeError("the definitions page is offered to a monitoring user")
        p.js(f"location.hash = '#/queue/%2F/' + encodeURIComponent({name})")
        p.wait("the queue page", f"document.getElementById('queue-name') && document.getElementById('queue-name').textContent === {name}")
        offered = p.js("['publish', 'get', 'purge', 'delete'].filter(id => document.getElementById(id))")
        if offered:
            raise RuntimeError(f"a monitoring user is offered {offered}")
        if p.problems:
            raise RuntimeError("the page reported errors")
    except Exception as e:  # the step and why, for the test's output
        print(f"FAILED at step '{step}': {e}", file=sys.stderr)
        for problem in p.problems:
            print("  page: " + problem, file=sys.stderr)
        sys.exit(1)
    print(f"passed; screenshot {shot} ({len(png)} bytes)")
    print("steps (seconds since start): " + ", ".join(f"{n} {t:.2f}" for n, t in times))


main()
