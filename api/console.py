"""The web console: a static page at `/` and its assets under `/console/`, from `api/console_static/`.

The page is a client of the public API only (management with a Bearer key, search with a token),
so it needs no route of its own beyond serving files. Its responses carry a strict
Content-Security-Policy: the console handles an API key and shows user-written names, so no inline
script, no other origin, and nothing may frame it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.config import Settings

ASSETS = Path(__file__).with_name("console_static")
PREFIX = "/console"


def security_headers(public_url: str = "") -> dict[str, str]:
    """Headers of every console response. Thumbnails are links the API builds from
    `RECOG_PUBLIC_URL` when set, which may be another origin than the one the page came from."""
    images = " ".join(filter(None, ("'self'", "blob:", _origin(public_url))))
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        f"img-src {images}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # Assets change with each release under the same names: revalidate (ETag) rather than guess.
        "Cache-Control": "no-cache",
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


class _WithHeaders:
    """Adds fixed headers to every response of the wrapped app (StaticFiles sets only its own)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.raw]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def routes(settings: Settings) -> list[BaseRoute]:
    """`/` (the page) and `/console/*` (its script, style sheet and icon), with the console's headers."""
    headers = security_headers(settings.public_url)

    async def page(request: Request) -> Response:
        return FileResponse(ASSETS / "index.html", headers=headers)

    return [
        Route("/", page, methods=["GET", "HEAD"], include_in_schema=False),  # a page for people, not the API
        Mount(PREFIX, app=_WithHeaders(StaticFiles(directory=ASSETS), headers)),
    ]
