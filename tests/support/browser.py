"""A tiny headless-Chromium driver over the Chrome DevTools Protocol, for the web tests.

`Browser` starts the system Chromium (the Debian package; `.ci/run` installs it) with a
DevTools port, opens one page and talks CDP to it over a websocket (the `websockets` package's
sync client, already installed with web3): navigate, evaluate JavaScript, wait for a condition,
read and click elements, take screenshots, and collect every console error, uncaught exception
and failed request the page produced. No playwright, no selenium.

    with Browser(tmp_path / "profile") as browser:
        browser.goto("http://127.0.0.1:8000/")
        browser.wait_for("document.querySelectorAll('tr').length > 10", timeout=5)
        assert browser.console_errors() == []

Where Chromium is missing, `find_chromium` raises `ChromiumMissing` naming the command that
installs it: a test using the browser fails, it never skips.

Errors:

    BrowserError             the browser did not start, died, timed out or refused a command
    ├── ChromiumMissing      no Chromium on PATH
    └── JavaScriptError      the page's JavaScript threw (evaluate, text, click)
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

INSTALL = "apt-get install -y chromium"
"""The command that installs the Chromium these tests need (Debian)."""

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)
"""The flags every test browser starts with (headless, as root in CI, nothing phoning home)."""

_LEGACY: dict[str, Any] = (
    {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}
)
"""websockets 16+ warns unless told that `connect` returns the connection itself."""

START_TIMEOUT_S = 20.0
COMMAND_TIMEOUT_S = 20.0


class BrowserError(Exception):
    """The browser did not start, died, timed out, or refused a DevTools command."""


class ChromiumMissing(BrowserError):
    """No Chromium on PATH."""


class JavaScriptError(BrowserError):
    """JavaScript run in the page threw; the message is its description."""


def find_chromium() -> str:
    """Return the path of the Chromium executable.

    Raises:
        ChromiumMissing: none of chromium, chromium-browser, google-chrome is on PATH.
    """
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise ChromiumMissing(f"headless Chromium is required and missing; install it with: {INSTALL}")


class Browser:
    """One headless Chromium with one page, driven over the DevTools Protocol.

    Use as a context manager (or call `start` and `close`). Every wait has a timeout; events
    that arrive while a command waits for its reply are handled in order, so no console error
    is lost.

    Args:
        profile_dir: Chromium's user data directory (created; a fresh one per browser).
        chromium: the executable (default: `find_chromium()`).
        timeout_s: how long a single DevTools command may take.
        extra_flags: flags added to `FLAGS`.
        report_favicon: also report a failed `/favicon.ico`. Off by default: Chromium asks
            for it by itself, sometimes, for a page that declares no icon, so reporting it
            would make a test flaky; a page's own icon link to another path is reported.
    """

    def __init__(
        self,
        profile_dir: Path | str,
        *,
        chromium: str | None = None,
        timeout_s: float = COMMAND_TIMEOUT_S,
        extra_flags: tuple[str, ...] = (),
        report_favicon: bool = False,
    ) -> None:
        self.profile_dir = Path(profile_dir)
        self.chromium = chromium
        self.timeout_s = timeout_s
        self.extra_flags = extra_flags
        self.report_favicon = report_favicon
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._socket: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._errors: list[str] = []
        self._urls: dict[str, str] = {}
        self._loads = 0

    # --- life cycle ---------------------------------------------------------------------
    def __enter__(self) -> Browser:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start Chromium, open a page and enable the Runtime, Log, Network and Page domains.

        Raises:
            ChromiumMissing: no Chromium on PATH.
            BrowserError: it exited or did not open its DevTools port in time.
        """
        executable = self.chromium or find_chromium()
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.profile_dir / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a stale one from an earlier browser
        self._log = (self.profile_dir / "chromium.log").open("wb")
        self._process = subprocess.Popen(
            [
                executable,
                *FLAGS,
                *self.extra_flags,
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={self.profile_dir}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `close` kills every child
        )
        try:
            self.port = self._wait_for_port(port_file)
            self._socket = connect(
                self._page_socket_url(),
                open_timeout=self.timeout_s,
                close_timeout=2,
                max_size=None,  # screenshots are megabytes
                compression=None,
                ping_interval=None,
                proxy=None,
                **_LEGACY,
            )
            for domain in ("Runtime", "Log", "Network", "Page"):
                self.send(f"{domain}.enable")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection, kill Chromium's process group and wait for it."""
        if self._socket is not None:
            with contextlib.suppress(OSError, WebSocketException):
                self._socket.close()
            self._socket = None
        process, self._process = self._process, None
        if process is not None:
            # the browser first, so that it shuts its own children down and reaps them
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                process.wait(timeout=10)
            _kill_group(process.pid)  # whatever it left behind
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_for_port(self, port_file: Path) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BrowserError(
                    f"Chromium exited with code {self._process.returncode} before opening its "
                    f"DevTools port: {self._log_tail()}"
                )
            try:
                lines = port_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 2 and lines[0].strip().isdigit():
                return int(lines[0])
            time.sleep(0.05)
        raise BrowserError(
            f"Chromium did not write {port_file} within {START_TIMEOUT_S:.0f} s: {self._log_tail()}"
        )

    def _page_socket_url(self) -> str:
        """Return the websocket of the page Chromium opened (or of a new one)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        base = f"http://127.0.0.1:{self.port}/json"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with opener.open(f"{base}/list", timeout=self.timeout_s) as response:
                    targets = json.load(response)
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
                request = urllib.request.Request(f"{base}/new?about:blank", method="PUT")
                with opener.open(request, timeout=self.timeout_s) as response:
                    return str(json.load(response)["webSocketDebuggerUrl"])
            except (OSError, ValueError, KeyError) as e:
                if time.monotonic() > deadline:
                    raise BrowserError(f"cannot open a page over DevTools at {base}: {e}") from e
                time.sleep(0.1)

    def _log_tail(self) -> str:
        try:
            text = (self.profile_dir / "chromium.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-2000:] or "(empty log)"

    # --- the protocol -------------------------------------------------------------------
    def send(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send one DevTools command and return its result, handling the events before it.

        Raises:
            BrowserError: no reply within `timeout` (default: the browser's), the connection
                closed, or Chromium answered with an error.
        """
        socket = self._connected()
        message_id = next(self._ids)
        wait_s = self.timeout_s if timeout is None else timeout
        try:
            socket.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        except (OSError, WebSocketException) as e:
            raise BrowserError(f"cannot send {method}: {e}") from e
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            message = self._receive(left) if left > 0 else None
            if message is None:
                raise BrowserError(f"{method}: no reply within {wait_s:g} s")
            if message.get("id") == message_id:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error']}")
                return dict(message.get("result", {}))
            if "method" in message:
                self._on_event(message["method"], message.get("params", {}))

    def _connected(self) -> ClientConnection:
        if self._socket is None:
            raise BrowserError("the browser is not started (use it as a context manager)")
        return self._socket

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        """Return the next message, or None if none arrives within `timeout`."""
        try:
            raw = self._connected().recv(timeout=max(timeout, 0.0))
        except TimeoutError:
            return None
        except (OSError, WebSocketException) as e:
            raise BrowserError(f"the DevTools connection closed: {e}; {self._log_tail()}") from e
        return dict(json.loads(raw))

    def _drain(self, wait_s: float = 0.0) -> None:
        """Handle the events that arrived (waiting up to `wait_s` for further ones)."""
        deadline = time.monotonic() + wait_s
        while True:
            message = self._receive(max(deadline - time.monotonic(), 0.0))
            if message is None:
                return
            if "method" in message:
                self._on_event(message["method"], message.get("params", {}))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self._loads += 1
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            text = " ".join(_remote_text(a) for a in args)
            self._errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            self._errors.append(f"uncaught: {_exception_text(params.get('exceptionDetails', {}))}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error" and entry.get("source") != "network":
                self._errors.append(f"log ({entry.get('source')}): {entry.get('text')}")
        elif method == "Network.requestWillBeSent":
            self._urls[params["requestId"]] = params.get("request", {}).get("url", "?")
        elif method == "Network.responseReceived":
            response = params.get("response", {})
            status = int(response.get("status", 0))
            if status >= 400 and self._reported(response.get("url", "")):
                self._errors.append(f"HTTP {status}: {response.get('url', '?')}")
        elif method == "Network.loadingFailed":
            url = self._urls.get(params.get("requestId", ""), "?")
            if self._reported(url):
                self._errors.append(f"request failed ({params.get('errorText')}): {url}")
        elif method in ("Inspector.detached", "Inspector.targetCrashed"):
            raise BrowserError(f"the page is gone ({method}: {params})")

    def _reported(self, url: str) -> bool:
        return self.report_favicon or urllib.parse.urlsplit(url).path != "/favicon.ico"

    # --- the page -----------------------------------------------------------------------
    def goto(self, url: str, timeout: float = 20) -> None:
        """Navigate to `url` and wait for its load event.

        Raises:
            BrowserError: the navigation failed (connection refused, bad URL) or the page did
                not load within `timeout` seconds.
        """
        loads = self._loads
        result = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        if "loaderId" not in result:
            return  # a same-document navigation (#fragment): no load event
        deadline = time.monotonic() + timeout
        while self._loads == loads:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{url} did not finish loading within {timeout:g} s")
            self._drain_one(left)

    def _drain_one(self, timeout: float) -> None:
        message = self._receive(timeout)
        if message is not None and "method" in message:
            self._on_event(message["method"], message.get("params", {}))

    def evaluate(self, js: str, *, timeout: float | None = None) -> Any:
        """Return the value of a JavaScript expression (awaited if a promise), as JSON data.

        Raises:
            JavaScriptError: the expression threw (or its promise rejected).
            BrowserError: no reply in time.
        """
        result = self.send(
            "Runtime.evaluate",
            {"expression": js, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise JavaScriptError(f"{_exception_text(result['exceptionDetails'])} (in: {js})")
        return result.get("result", {}).get("value")

    def wait_for(self, js_condition: str, timeout: float = 10, interval_s: float = 0.05) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value.

        An expression that throws counts as not yet true (the element may not exist yet).

        Raises:
            BrowserError: still falsy after `timeout` seconds; the message has its last value.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(js_condition, timeout=max(timeout, 1.0))
                if value:
                    return value
                last = repr(value)
            except JavaScriptError as e:
                last = f"it threw {e}"
            if time.monotonic() >= deadline:
                raise BrowserError(
                    f"timed out after {timeout:g} s waiting for {js_condition!r}; "
                    f"last value: {last}"
                )
            self._drain(min(interval_s, max(deadline - time.monotonic(), 0.0)))

    def text(self, selector: str) -> str:
        """Return the innerText of the first element matching a CSS selector.

        Raises:
            JavaScriptError: no element matches.
        """
        return str(self.evaluate(f"{_first(selector)}.innerText"))

    def texts(self, selector: str) -> list[str]:
        """Return the innerText of every element matching a CSS selector (maybe none)."""
        found = self.evaluate(
            f"Array.from(document.querySelectorAll({json.dumps(selector)}), e => e.innerText)"
        )
        return [str(t) for t in found]

    def click(self, selector: str) -> None:
        """Click the first element matching a CSS selector (scrolled into view first).

        Raises:
            JavaScriptError: no element matches.
        """
        self.evaluate(f"(e => {{ e.scrollIntoView(); e.click(); }})({_first(selector)})")

    def console_errors(self) -> list[str]:
        """Return every error the page reported since it opened, oldest first.

        Console errors and failed asserts, uncaught exceptions, error log entries, failed
        requests and responses with status >= 400, each as one line.
        """
        self._drain()
        return list(self._errors)

    def screenshot(self, path: Path | str, width: int = 1280, height: int = 900) -> Path:
        """Write a PNG of the page's viewport at `width` x `height` CSS pixels; return the path."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        shot = self.send("Page.captureScreenshot", {"format": "png"})
        target = Path(path)
        target.write_bytes(base64.b64decode(shot["data"]))
        return target


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _first(selector: str) -> str:
    """A JavaScript expression for the first match of `selector`, throwing if there is none."""
    quoted = json.dumps(selector)
    return (
        f"(() => {{ const e = document.querySelector({quoted}); "
        f"if (!e) throw new Error('no element matches ' + {quoted}); return e; }})()"
    )


def _remote_text(value: dict[str, Any]) -> str:
    """The text of a console argument (a CDP RemoteObject)."""
    if "value" in value:
        return str(value["value"])
    return str(value.get("description") or value.get("unserializableValue") or value.get("type"))


def _exception_text(details: dict[str, Any]) -> str:
    """The description of a thrown exception (CDP ExceptionDetails)."""
    exception = details.get("exception") or {}
    return str(exception.get("description") or exception.get("value") or details.get("text"))


def rendered_page(page: Path, profile: Path) -> tuple[str, list[str]]:
    """Open a local HTML page in headless Chromium (no network): its DOM once scripts ran, and
    every console line that reports an error. Fails (never skips) without Chromium."""
    import pytest

    try:
        chromium = find_chromium()
    except ChromiumMissing as missing:
        pytest.fail(str(missing))
    done = subprocess.run(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    return done.stdout, [line for line in console if re.search(r"error|uncaught", line, re.I)]
