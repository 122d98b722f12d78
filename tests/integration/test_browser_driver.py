"""The CDP browser driver (tests/support/browser.py) against pages served on 127.0.0.1.

A real headless Chromium (the Debian package; missing, these tests fail with the command that
installs it) loads tiny pages from a stdlib `http.server`: a clean one, one that logs an error
and throws, one that fetches a missing file, one whose DOM changes after a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.browser import Browser, BrowserError, JavaScriptError

PAGES = {
    "clean.html": """<!doctype html><html><head><title>clean</title>
<link rel="icon" href="data:,"></head>
<body style="background:#fff"><h1 id="title">Agora</h1>
<ul><li class="row">one</li><li class="row">two</li></ul>
<button id="go" onclick="document.getElementById('title').textContent = 'clicked'">go</button>
</body></html>""",
    "errors.html": """<!doctype html><html><head><link rel="icon" href="data:,"></head><body>
<script>console.error("boom");</script>
<script>throw new Error("kaput");</script>
</body></html>""",
    "missing.html": """<!doctype html><html><head><link rel="icon" href="data:,"></head><body>
<p id="status">loading</p>
<script>fetch("/nothing-here.json").then(r => {
  document.getElementById("status").textContent = "status " + r.status; });</script>
</body></html>""",
    "later.html": """<!doctype html><html><head><link rel="icon" href="data:,"></head><body>
<div id="box">before</div>
<script>setTimeout(() => { document.getElementById("box").textContent = "after"; }, 1000);
</script></body></html>""",
}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The pages on a free port of 127.0.0.1; yields the base URL."""
    root = tmp_path_factory.mktemp("site")
    for name, html in PAGES.items():
        (root / name).write_text(html)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    with Browser(tmp_path / "profile") as opened:
        yield opened


def test_clean_page_reads_clicks_and_screenshots_without_errors(
    browser: Browser, site: str, tmp_path: Path
) -> None:
    browser.goto(f"{site}/clean.html")
    assert browser.evaluate("document.title") == "clean"
    assert browser.evaluate("Promise.resolve(6 * 7)") == 42
    assert browser.evaluate("({a: [1, 'b', null]})") == {"a": [1, "b", None]}
    assert browser.text("#title") == "Agora"
    assert browser.texts("li.row") == ["one", "two"]
    assert browser.texts("li.none") == []
    browser.click("#go")
    assert browser.text("#title") == "clicked"
    with pytest.raises(JavaScriptError, match="no element matches"):
        browser.text("#absent")
    shot = browser.screenshot(tmp_path / "clean.png")
    with Image.open(shot) as image:
        assert image.format == "PNG"
        assert image.size == (1280, 900)
    assert browser.console_errors() == []


def test_console_error_and_uncaught_exception_are_reported(browser: Browser, site: str) -> None:
    browser.goto(f"{site}/errors.html")
    errors = browser.console_errors()
    assert any("console.error" in e and "boom" in e for e in errors), errors
    assert any("uncaught" in e and "kaput" in e for e in errors), errors


def test_a_request_answered_404_is_reported(browser: Browser, site: str) -> None:
    browser.goto(f"{site}/missing.html")
    browser.wait_for("document.getElementById('status').textContent.startsWith('status')", 5)
    errors = browser.console_errors()
    assert any("404" in e and "/nothing-here.json" in e for e in errors), errors


def test_wait_for_sees_the_dom_change_and_times_out_with_the_last_value(
    browser: Browser, site: str
) -> None:
    browser.goto(f"{site}/later.html")
    assert browser.text("#box") == "before"
    started = time.monotonic()
    assert browser.wait_for("document.getElementById('box').textContent === 'after'", 5)
    assert 0.5 < time.monotonic() - started < 4
    with pytest.raises(BrowserError, match=r"last value: 0$"):
        browser.wait_for("document.querySelectorAll('#box.never').length", 0.3)
    with pytest.raises(BrowserError, match="last value: it threw TypeError"):
        browser.wait_for("window.missing.property", 0.3)
    assert browser.console_errors() == []
