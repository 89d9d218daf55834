"""What logs, banners and error messages may show of a Redis URL: everything but its password."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit


def redacted_url(url: str) -> str:
    """`url` with its password, in the user part or the query (`?password=`, which redis-py reads
    too), replaced by `***`: what logs, banners and error messages show of a Redis URL."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = netloc.rpartition("@")[0].partition(":")[0]
        netloc = f"{user}:***@{netloc.rpartition('@')[2]}"
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    return f"{shown}?{urlencode(query, safe='*')}" if query else shown
