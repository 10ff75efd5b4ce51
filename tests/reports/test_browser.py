"""The headless-Chromium harness the report tests use: console problems, requests, screenshots."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers.browser import BrowserError, PageResult, find_chromium, open_page

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no Chromium on PATH")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def render(tmp_path: Path, body: str, *, head: str = "", timeout: float = 60) -> PageResult:
    page = tmp_path / "page.html"
    page.write_text(
        f'<!doctype html><html><head><meta charset="utf-8">{head}</head><body>{body}</body></html>',
        encoding="utf-8",
    )
    return open_page(page, tmp_path / "shots" / "page.png", timeout=timeout)


def test_self_contained_page_has_no_console_output_no_requests_and_a_screenshot(
    tmp_path: Path,
) -> None:
    result = render(
        tmp_path,
        '<h1>Gate passed</h1><svg width="120" height="40" role="img">'
        '<rect width="120" height="40" fill="teal"/><text x="8" y="26">ok</text></svg>',
        head="<style>body{font-family:sans-serif;margin:2em}h1{color:#234}</style>",
    )

    assert result.console == []
    assert result.requests == []
    assert result.screenshot == tmp_path / "shots" / "page.png"
    assert png_size(result.screenshot) == (1280, 2000)


def test_screenshot_covers_a_page_longer_than_the_viewport(tmp_path: Path) -> None:
    result = render(
        tmp_path, '<div style="height:3000px">tall</div>', head="<style>body{margin:0}</style>"
    )

    assert png_size(result.screenshot) == (1280, 3000)


def test_console_errors_warnings_and_uncaught_exceptions_are_reported_but_not_logs(
    tmp_path: Path,
) -> None:
    result = render(
        tmp_path,
        '<script>console.log("fine"); console.info("fine too"); console.error("boom");'
        'console.warn("careful"); missing();</script>',
    )

    assert result.console[:2] == ["console.error: boom", "console.warning: careful"]
    assert result.console[2].startswith("uncaught: ReferenceError: missing is not defined")
    assert len(result.console) == 3
    assert result.requests == []


def test_external_image_and_stylesheet_are_reported_as_requests_and_fail_offline(
    tmp_path: Path,
) -> None:
    result = render(
        tmp_path,
        '<img src="https://example.com/x.png" alt="">',
        head='<link rel=stylesheet href="http://example.org/a.css">',
    )

    assert sorted(result.requests) == ["http://example.org/a.css", "https://example.com/x.png"]
    # --host-resolver-rules maps every host to NOTFOUND: nothing leaves the machine.
    assert sorted(result.console) == [
        f"network error: Failed to load resource: net::ERR_NAME_NOT_RESOLVED ({url})"
        for url in ("http://example.org/a.css", "https://example.com/x.png")
    ]
    assert result.blocked == {}


def test_content_security_policy_blocks_an_external_image_and_says_so(tmp_path: Path) -> None:
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    result = render(
        tmp_path,
        '<p>x</p><img src="https://example.com/x.png" alt="">',
        head=f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        "<style>p{color:red}</style>",
    )

    # Chromium announces the attempt (Network.requestWillBeSent) and fails it before it is sent.
    assert result.requests == ["https://example.com/x.png"]
    assert result.blocked == {"https://example.com/x.png": "csp"}
    assert len(result.console) == 1
    assert result.console[0].startswith(
        "security error: Loading the image 'https://example.com/x.png' violates the following"
        ' Content Security Policy directive: "img-src data:". The action has been blocked.'
    )


def test_a_page_that_never_finishes_loading_times_out(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(BrowserError, match="before the timeout"):
        render(tmp_path, "<script>while (true) {}</script>", timeout=3)
    assert time.monotonic() - started < 10
    assert not (tmp_path / "shots" / "page.png").exists()
