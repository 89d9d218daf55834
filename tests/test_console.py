"""The web console (`api.console`): the page, its assets and their headers, over HTTP on the real
stack, and static checks of the script that a browser would only catch when exploited."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from api.console import ASSETS, security_headers
from shared.testing.stack import Stack

CONTENT_TYPES = {
    ".js": {"text/javascript", "application/javascript"},
    ".css": {"text/css"},
    ".svg": {"image/svg+xml"},
}
# Ways a script turns a string into markup (or code): the console must only ever create text nodes.
MARKUP_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function")


class _Page(HTMLParser):
    """Collects what the page loads and anything that would run inline."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.assets += [value for name, value in attrs if name in ("src", "href") and value and value != "#"]
        self.inline += [f"{tag} {name}" for name, _ in attrs if name.startswith("on") or name == "style"]
        if tag == "style" or (tag == "script" and not found.get("src")):
            self.inline.append(f"inline <{tag}>")
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("script body")


def _page(stack: Stack) -> _Page:
    with stack.client() as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    parsed = _Page()
    parsed.feed(response.text)
    return parsed


def test_page_is_served_with_a_strict_policy(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_page_has_nothing_inline(stack: Stack) -> None:
    assert _page(stack).inline == []


def test_page_loads_only_local_assets_that_exist(stack: Stack) -> None:
    assets = _page(stack).assets
    assert {Path(asset).suffix for asset in assets} == set(CONTENT_TYPES)
    with stack.client() as client:
        for asset in assets:
            assert asset.startswith("/") and not asset.startswith("//"), asset
            response = client.get(asset)
            assert response.status_code == 200, asset
            assert response.headers["content-type"].split(";")[0] in CONTENT_TYPES[Path(asset).suffix], asset
            assert response.headers["content-security-policy"] == security_headers()["Content-Security-Policy"]


def test_console_leaves_the_other_routes_alone(stack: Stack) -> None:
    with stack.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200
        assert client.get("/metrics").headers["content-type"].startswith("text/plain")
        assert client.get("/api/v0/collection/").json()["error"]["code"] == "AUTHENTICATION_FAILED"
        assert client.post("/v1/search").json()["error"]["code"] == "TOKEN_MISSING"
        for missing in ("/console/nothing.js", "/nothing"):
            response = client.get(missing)
            assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


def test_page_answers_head(stack: Stack) -> None:
    with stack.client() as client:
        response = client.head("/")
    assert response.status_code == 200 and "content-security-policy" in response.headers


def test_thumbnails_may_come_from_the_public_url() -> None:
    policy = security_headers("https://recog.example.com/base")["Content-Security-Policy"]
    assert "img-src 'self' blob: https://recog.example.com;" in policy
    assert "img-src 'self' blob:;" in security_headers("")["Content-Security-Policy"]


@pytest.mark.parametrize("sink", MARKUP_SINKS)
def test_script_never_writes_markup(sink: str) -> None:
    assert sink not in (ASSETS / "console.js").read_text()


def test_script_keeps_the_key_out_of_urls() -> None:
    assert "api_key" not in (ASSETS / "console.js").read_text()
