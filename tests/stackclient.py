"""Small helpers that drive a running stack over HTTP the way a user's script would."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def make_collection(admin: httpx.Client, name: str | None = None) -> tuple[str, str]:
    """Creates a collection; returns its uuid and the token created with it."""
    response = admin.post("/api/v0/collection/", json={"name": name or f"test-{uuid.uuid4().hex[:12]}"})
    assert response.status_code == 201, response.text
    collection = response.json()["uuid"]
    tokens = admin.get("/api/v0/token/", params={"collection__uuid": collection}).json()["objects"]
    assert len(tokens) == 1
    return collection, tokens[0]["token"]


def make_item(admin: httpx.Client, collection: str, name: str = "item", **fields: Any) -> str:
    response = admin.post(
        "/api/v0/item/", json={"collection": f"/api/v0/collection/{collection}/", "name": name, **fields}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["uuid"])


def upload_image(admin: httpx.Client, item: str, data: bytes, filename: str = "ref.jpg") -> httpx.Response:
    return admin.post("/api/v0/image/", data={"item": f"/api/v0/item/{item}/"}, files={"file": (filename, data)})


def add_reference(
    admin: httpx.Client, collection: str, data: bytes, name: str = "item", **fields: Any
) -> tuple[str, str]:
    """An item with one reference image; returns (item uuid, image uuid)."""
    item = make_item(admin, collection, name, **fields)
    response = upload_image(admin, item, data)
    assert response.status_code == 201, response.text
    return item, str(response.json()["uuid"])


def search(
    client: httpx.Client,
    token: str | None,
    image: bytes | None,
    api: str = "v1",
    filename: str = "query.jpg",
    **fields: str,
) -> httpx.Response:
    data = dict(fields)
    if token is not None:
        data["token"] = token
    files = {"image": (filename, image, "image/jpeg")} if image is not None else None
    if files is None:
        # httpx sends a urlencoded body without files; force multipart with a dummy part
        files = {"unused": ("unused.txt", b"", "text/plain")}
    return client.post(f"/{api}/search", data=data, files=files)


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])
