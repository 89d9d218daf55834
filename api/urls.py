"""Absolute URLs for links the service hands out (thumbnails, files, custom data, pagination)."""

from __future__ import annotations

from starlette.requests import Request

from api.services import services


def base_url(request: Request) -> str:
    """`RECOG_PUBLIC_URL` when set (behind a proxy the request's Host is not what clients use),
    else the scheme and host of the request; never with a trailing slash."""
    public: str = services(request).settings.public_url
    return public or str(request.base_url).rstrip("/")
