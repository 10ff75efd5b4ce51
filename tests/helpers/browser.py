"""Open a local HTML file in headless Chromium; report console problems and network requests.

The browser is driven over the DevTools protocol on `--remote-debugging-pipe` (NUL-separated JSON
on file descriptors 3 and 4), so no Python dependency is needed. Only the page's own session is
watched: the browser's background traffic (component updates, spell-check dictionaries) is not a
request made by the page and is not reported. `--host-resolver-rules` maps every host to
NOTFOUND, so a request the page makes is seen here but never leaves the machine.

Stderr of Chromium is not parsed: its `CONSOLE` lines carry no level, so `console.log` could not
be told apart from `console.error`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
QUIET_SECONDS = 0.3  # after the load event, wait this long without events before the screenshot
VIEWPORT = (1280, 2000)  # CSS pixels, device scale 1: the screenshot's minimum size


def find_chromium() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class PageResult:
    console: list[str]  # console errors and warnings, uncaught exceptions, CSP and load failures
    requests: list[str]  # every URL requested other than the page itself and data: URLs
    screenshot: Path
    blocked: dict[str, str] = field(default_factory=dict)  # URL -> why Chromium refused it
    seconds: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)  # raw, for debugging


class BrowserError(RuntimeError):
    """Chromium could not be started, crashed, or did not finish in time."""


class _Pipe:
    """The DevTools protocol over a pair of pipes: one command at a time, events kept in order."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float) -> None:
        self._write_fd = write_fd
        self._read_fd = read_fd
        self._deadline = deadline
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._write_fd, data) :]
        while True:
            reply = self._receive(self._deadline)
            if reply is None:
                raise BrowserError(f"no answer to {method} before the timeout")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            event = self._receive(self._deadline)
            if event is None:
                raise BrowserError(f"no {method} before the timeout")
            self.events.append(event)

    def drain(self, quiet: float) -> None:
        """Collect events until none arrives for `quiet` seconds (or the deadline passes)."""
        while (event := self._receive(min(time.monotonic() + quiet, self._deadline))) is not None:
            self.events.append(event)

    def _receive(self, until: float) -> dict[str, Any] | None:
        while b"\0" not in self._buffer:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._read_fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed the DevTools pipe (crashed?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed


def open_page(html: Path, screenshot: Path, *, timeout: float = 60) -> PageResult:
    """Load `html` in a fresh headless Chromium, save a PNG of the full page to `screenshot`.

    Waits for the load event, then until no DevTools event arrives for QUIET_SECONDS. Raises
    BrowserError when Chromium is missing, crashes or exceeds `timeout` seconds; the browser and
    all its helper processes are killed in every case.
    """
    browser = find_chromium()
    if browser is None:
        raise BrowserError("no Chromium on PATH (tried " + ", ".join(CANDIDATES) + ")")
    url = html.resolve().as_uri()
    started = time.monotonic()
    deadline = started + timeout
    with tempfile.TemporaryDirectory(prefix="compressgate-chromium-") as profile:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def wire_pipes() -> None:
            # In the child, before exec: Chromium reads commands on fd 3 and answers on fd 4.
            # Copy above 9 first so that a pipe end that is itself 3 or 4 is not overwritten.
            # Our other descriptors are non-inheritable (PEP 446) and close on exec.
            commands = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            answers = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(commands, 3)
            os.dup2(answers, 4)
            os.close(commands)
            os.close(answers)

        args = [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--mute-audio",
            "about:blank",
        ]
        stderr_path = Path(profile) / "stderr.log"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                preexec_fn=wire_pipes,
                close_fds=False,
                start_new_session=True,  # one process group: a timeout kills every helper
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        pipe = _Pipe(to_browser_w, from_browser_r, deadline)
        try:
            image = _drive(pipe, url)
            with contextlib.suppress(BrowserError):  # the pipe may close before the answer
                pipe.send("Browser.close")
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except (BrowserError, OSError) as exc:
            log = stderr_path.read_text(errors="replace")[-2000:]
            raise BrowserError(f"{exc} while opening {url}; Chromium said:\n{log}") from exc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            os.close(to_browser_w)
            os.close(from_browser_r)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(image)
    return PageResult(
        console=_console(pipe.events),
        requests=_requests(pipe.events, url),
        screenshot=screenshot,
        blocked=_blocked(pipe.events),
        seconds=time.monotonic() - started,
        events=pipe.events,
    )


def _drive(pipe: _Pipe, url: str) -> bytes:
    target = pipe.send("Target.createTarget", url="about:blank")["targetId"]
    session = pipe.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.send(f"{domain}.enable", session)
    width, height = VIEWPORT
    pipe.send(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )
    pipe.events.clear()  # anything about about:blank is not about the page
    pipe.send("Page.navigate", session, url=url)
    pipe.wait_for("Page.loadEventFired")
    pipe.drain(QUIET_SECONDS)
    content = pipe.send("Page.getLayoutMetrics", session)["cssContentSize"]
    clip = {  # the whole page: at least the viewport, longer when the content is
        "x": 0,
        "y": 0,
        "width": max(width, math.ceil(content["width"])),
        "height": max(height, math.ceil(content["height"])),
        "scale": 1,
    }
    shot = pipe.send(
        "Page.captureScreenshot", session, format="png", clip=clip, captureBeyondViewport=True
    )
    return base64.b64decode(shot["data"])


def _console(events: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in {
            "error",
            "warning",
            "assert",
        }:
            text = " ".join(_remote_object(arg) for arg in params.get("args", []))
            lines.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            exception = details.get("exception", {})
            lines.append(f"uncaught: {exception.get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in {"error", "warning"}:
            entry = params["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            lines.append(f"{entry['source']} {entry['level']}: {entry['text']}{where}")
    return lines


def _remote_object(value: dict[str, Any]) -> str:
    if "value" in value:
        return str(value["value"])
    return str(value.get("description", value.get("type", "?")))


def _requests(events: list[dict[str, Any]], page: str) -> list[str]:
    urls: list[str] = []
    for event in events:
        if event.get("method") == "Network.requestWillBeSent":
            url = event["params"]["request"]["url"]
            if url != page and not url.startswith("data:") and url not in urls:
                urls.append(url)
    return urls


def _blocked(events: list[dict[str, Any]]) -> dict[str, str]:
    """Requests Chromium refused before they left (e.g. `csp`), by URL."""
    urls = {
        e["params"]["requestId"]: e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    }
    return {
        urls[e["params"]["requestId"]]: e["params"]["blockedReason"]
        for e in events
        if e.get("method") == "Network.loadingFailed"
        and e["params"].get("blockedReason")
        and e["params"]["requestId"] in urls
    }
