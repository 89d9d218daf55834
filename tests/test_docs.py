"""`GET /docs`: Swagger UI from the installed package's files, with nothing fetched from elsewhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from starlette.testclient import TestClient

from api.app import create_app
from shared.config import Settings


class _Links(HTMLParser):
    """Every URL the page makes the browser load: script sources, stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        url = found.get("src") if tag == "script" else found.get("href") if tag == "link" else None
        if url:
            self.urls.append(url)


def test_docs_page_loads_only_local_assets_and_each_answers() -> None:
    client = TestClient(create_app(Settings.from_env({})))  # no Redis needed: no lifespan
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    links = _Links()
    links.feed(page.text)
    assert len(links.urls) >= 2
    for url in links.urls:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not on this server"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    # the page points Swagger UI at the served document, by path
    assert re.search(r'url: "/openapi\.json"', page.text)
    assert "http://" not in page.text and "https://" not in page.text
