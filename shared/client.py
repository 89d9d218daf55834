"""The service's HTTP API as the client commands use it: management calls and search, with httpx.

Every failure is one `ApiError` carrying the contract's error code: the service's own JSON error
body, `HTTP_<status>` for a body that is not one (a proxy's error page), or `CONNECTION_FAILED`
when nothing answers. The commands report codes; they never see an httpx exception.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.config import Settings
from shared.failures import CommandFailed
from shared.launcher import ADMIN_KEY_FILE

PAGE_SIZE = 1000  # the largest page the API serves
TIMEOUT_SECONDS = 60.0  # an upload is checked, decoded and analysed before its answer


class ApiError(CommandFailed):
    """A call that did not succeed: `code` as in the contract, `status` 0 when nothing answered."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class NoApiKey(CommandFailed):
    """No management API key was given and none is kept in the data directory."""


def api_key(given: str, settings: Settings) -> str:
    """The key to send: `--api-key`, else RECOG_API_KEY, else RECOG_ADMIN_API_KEY, else the admin
    key `recog up` keeps in RECOG_DATA_DIR (the one it printed)."""
    for key in (given, settings.api_key, settings.admin_api_key):
        if key:
            return key
    kept = settings.data_dir / ADMIN_KEY_FILE
    try:
        return kept.read_text().strip()
    except OSError:
        raise NoApiKey(f"no API key: pass --api-key, set RECOG_API_KEY, or run this where {kept} is readable") from None


def _error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(str(error["code"]), str(error["message"]), response.status_code)
    except (ValueError, KeyError, TypeError):
        return ApiError(f"HTTP_{response.status_code}", response.text.strip()[:200], response.status_code)


class Client:
    """One connection pool to the API, shared by the threads of an import (httpx's is thread-safe)."""

    def __init__(self, base_url: str, key: str, *, connections: int = 4) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=TIMEOUT_SECONDS,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError("CONNECTION_FAILED", f"{self.base_url}: {exc or type(exc).__name__}") from None
        if response.is_error:
            raise _error(response)
        return response

    def objects(self, resource: str, **filters: str) -> list[dict[str, Any]]:
        """Every object of `resource` matching `filters`, all pages, in creation order."""
        found: list[dict[str, Any]] = []
        while True:
            params = {**filters, "limit": str(PAGE_SIZE), "offset": str(len(found))}
            page = self._send("GET", f"/api/v0/{resource}/", params=params).json()
            found += page["objects"]
            if not page["objects"] or len(found) >= page["meta"]["total_count"]:
                return found

    def count(self, resource: str, **filters: str) -> int:
        page = self._send("GET", f"/api/v0/{resource}/", params={**filters, "limit": "1"}).json()
        return int(page["meta"]["total_count"])

    def create(self, resource: str, fields: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self._send("POST", f"/api/v0/{resource}/", json=fields).json()
        return created

    def delete(self, resource: str, object_id: str) -> None:
        self._send("DELETE", f"/api/v0/{resource}/{object_id}/")

    def collection(self, name: str) -> dict[str, Any] | None:
        """The collection called `name` (names are unique), or None."""
        found = self.objects("collection", name=name)
        return found[0] if found else None

    def upload_image(self, item: str, path: Path, data: bytes) -> dict[str, Any]:
        files = {"file": (path.name, data)}
        image: dict[str, Any] = self._send(
            "POST", "/api/v0/image/", data={"item": f"/api/v0/item/{item}/"}, files=files
        ).json()
        return image

    def download(self, url: str) -> bytes:
        """A file the API links to, fetched from `base_url` whatever host the link names (links
        follow RECOG_PUBLIC_URL, which may not be reachable from here)."""
        parts = urlsplit(url)
        return self._send("GET", parts.path + (f"?{parts.query}" if parts.query else "")).content

    def search(self, token: str, path: Path, data: bytes, **fields: str) -> dict[str, Any]:
        """`POST /v1/search` with bounding boxes."""
        form = {"token": token, "bboxes": "true", **fields}
        result: dict[str, Any] = self._send("POST", "/v1/search", data=form, files={"image": (path.name, data)}).json()
        return result
