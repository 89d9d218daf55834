"""The v0 management API and the public file routes, through the real app on Redis database 15."""

from __future__ import annotations

import hashlib
import io
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import redis
from PIL import Image
from starlette.testclient import TestClient

from api.app import create_app
from shared import keys
from shared.blobs import FEATURES
from shared.codec import decode_event, decode_feature_record
from shared.config import Settings
from shared.heartbeats import live_serving
from shared.shards import shard_of
from shared.testing import imagegen
from shared.testing.stack import db_url, private_db, recog_command, stack_env, with_db
from shared.testing.wait import wait_until
from workers.tuning import extraction_id

KEY = "management-test-key"
SHARDS = 4
MakeClient = Callable[..., TestClient]


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    with private_db(redis_url, 15) as connection:
        yield connection


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("management")


@pytest.fixture(scope="module")
def worker(redis_url: str, data_dir: Path) -> Iterator[None]:
    """A real worker process on the tests' database and data directory: uploads are prepared by
    workers (every worker serves every shard's upload queue)."""
    env = stack_env(with_db(redis_url, 15), data_dir, RECOG_SHARDS=str(SHARDS))
    proc = subprocess.Popen([*recog_command(), "worker"], env=env)
    yield
    proc.terminate()
    proc.wait(timeout=15)


@pytest.fixture
def worker_beating(db: redis.Redis, worker: None) -> None:
    """The worker's heartbeat went with the last test's data; an upload is refused while no worker
    is seen (api.ingest), so tests that upload wait for its next beat (within a second)."""
    wait_until(lambda: any(live_serving(db).values()), 30, "the worker to beat with its shards")


@pytest.fixture
def make_client(db: redis.Redis, data_dir: Path, worker: None) -> Iterator[MakeClient]:
    """Starts the app with extra settings; the client sends the admin key unless told otherwise."""
    started: list[TestClient] = []

    def make(authorized: bool = True, **env: str) -> TestClient:
        settings = Settings.from_env(
            {
                "REDIS_URL": db_url(db),
                "RECOG_DATA_DIR": str(data_dir),
                "RECOG_ADMIN_API_KEY": KEY,
                "RECOG_SHARDS": str(SHARDS),
                **env,
            }
        )
        headers = {"Authorization": f"Bearer {KEY}"} if authorized else {}
        client = TestClient(create_app(settings), headers=headers, raise_server_exceptions=False).__enter__()
        started.append(client)
        return client

    yield make
    for client in started:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


def reference(seed: int = 1, fmt: str = "JPEG") -> bytes:
    picture = imagegen.textured(seed, 480, 360)
    return imagegen.encode_jpeg(picture, 92) if fmt == "JPEG" else imagegen.encode_png(picture)


def code(response: Any) -> str:
    return str(response.json()["error"]["code"])


def make_collection(client: TestClient, name: str | None = None) -> dict[str, Any]:
    response = client.post("/api/v0/collection/", json={"name": name or f"c-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    return dict(response.json())


def make_item(client: TestClient, collection: str, **fields: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v0/item/", json={"collection": f"/api/v0/collection/{collection}/", "name": "poster", **fields}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def upload(client: TestClient, item: str, data: bytes, filename: str = "ref.jpg") -> Any:
    return client.post(
        "/api/v0/image/", data={"item": f"/api/v0/item/{item}/"}, files={"file": (filename, data, "image/jpeg")}
    )


def events(db: redis.Redis, collection: str) -> list[tuple[str, str]]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], db.xrange(keys.shard_events(shard_of(collection, SHARDS))))
    return [(e.op, e.image) for e in (decode_event(fields) for _, fields in entries) if e.collection == collection]


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({}, {}),
        ({"api_key": "wrong"}, {}),
        ({}, {"Authorization": "Bearer wrong"}),
        ({}, {"Authorization": f"Basic {KEY}"}),
    ],
)
def test_missing_or_wrong_key_is_refused(
    make_client: MakeClient, params: dict[str, str], headers: dict[str, str]
) -> None:
    response = make_client(authorized=False).get("/api/v0/collection/", params=params, headers=headers)
    assert response.status_code == 403
    assert code(response) == "AUTHENTICATION_FAILED"


@pytest.mark.parametrize("path", ["/api/v0/item/", f"/api/v0/image/{'a' * 32}/", "/api/v0/token/"])
def test_every_resource_needs_a_key(make_client: MakeClient, path: str) -> None:
    assert code(make_client(authorized=False).get(path)) == "AUTHENTICATION_FAILED"


def test_key_in_query_string(make_client: MakeClient) -> None:
    assert make_client(authorized=False).get("/api/v0/collection/", params={"api_key": KEY}).status_code == 200


def test_listing_links_never_carry_the_api_key(make_client: MakeClient) -> None:
    client = make_client(authorized=False)
    for n in range(3):
        assert client.post("/api/v0/collection/", params={"api_key": KEY}, json={"name": f"k{n}"}).status_code == 201
    meta = client.get("/api/v0/collection/", params={"api_key": KEY, "limit": 1, "offset": 1}).json()["meta"]
    assert meta["next"] and meta["previous"]
    assert KEY not in meta["next"] + meta["previous"] and "api_key" not in meta["next"] + meta["previous"]


# --- collections -----------------------------------------------------------------------------


def test_collection_lifecycle(client: TestClient) -> None:
    created = make_collection(client, "posters")
    assert set(created) == {"uuid", "name", "created_at", "resource_uri", "token"}
    cid = created["uuid"]
    assert len(cid) == 32 and created["resource_uri"] == f"/api/v0/collection/{cid}/"
    assert client.get(f"/api/v0/collection/{cid}/").json() == {k: v for k, v in created.items() if k != "token"}

    renamed = client.put(f"/api/v0/collection/{cid}/", json={"name": "covers", "uuid": cid})
    assert renamed.status_code == 202 and renamed.json()["name"] == "covers"
    assert client.get("/api/v0/collection/", params={"name": "posters"}).json()["meta"]["total_count"] == 0
    make_collection(client, "posters")  # the old name is free again

    assert client.delete(f"/api/v0/collection/{cid}/").status_code == 204
    assert code(client.get(f"/api/v0/collection/{cid}/")) == "NOT_FOUND"
    assert client.delete(f"/api/v0/collection/{cid}/").status_code == 404


def test_collection_comes_with_a_token(client: TestClient, db: redis.Redis) -> None:
    created = make_collection(client)
    cid = created["uuid"]
    tokens = client.get("/api/v0/token/", params={"collection__uuid": cid}).json()["objects"]
    assert len(tokens) == 1
    token = tokens[0]
    assert created["token"] == token["token"]  # the create answer names it: no listing needed to search
    assert len(token["token"]) == 16 and int(token["token"], 16) >= 0
    assert token["collection"] == f"/api/v0/collection/{cid}/"
    assert token["resource_uri"] == f"/api/v0/token/{token['token']}/"
    assert db.sismember(keys.shard_collections(shard_of(cid, SHARDS)), cid)


def test_collection_names_are_unique(client: TestClient) -> None:
    make_collection(client, "taken")
    other = make_collection(client, "free")["uuid"]
    for response in (
        client.post("/api/v0/collection/", json={"name": "taken"}),
        client.put(f"/api/v0/collection/{other}/", json={"name": "taken"}),
    ):
        assert response.status_code == 400
        assert code(response) == "VALIDATION_ERROR"
        assert response.json()["error"]["details"] == {"name": "already taken"}


@pytest.mark.parametrize(
    "path",
    [f"/api/v0/collection/{'0' * 32}/", "/api/v0/collection/../", "/api/v0/collection/XYZ/", "/api/v0/token/abc/"],
)
def test_unknown_or_malformed_ids_are_not_found(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert code(response) == "NOT_FOUND"


# --- request bodies --------------------------------------------------------------------------


def test_body_must_be_declared_json(client: TestClient) -> None:
    response = client.post("/api/v0/collection/", data={"name": "x"})
    assert response.status_code == 415 and code(response) == "WRONG_CONTENT_TYPE"
    cid = make_collection(client)["uuid"]
    response = client.put(
        f"/api/v0/collection/{cid}/", content=b'{"name": "y"}', headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b"[1, 2]", b""])
def test_unreadable_json(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/api/v0/collection/", content=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 400 and code(response) == "INVALID_JSON"


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": NaN}',
        b'{"name": "i", "content": {"x": Infinity}}',
        b'{"name": "i", "content": {"x": -Infinity}}',
        b'{"name": "\\udc80"}',
        b'{"name": "i", "content": {"\\ud800": 1}}',
        b'{"name": "i", "content": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}",
        b'{"name": "i", "content": ' + b"[" * 40 + b"]" * 40 + b"}",
    ],
    ids=["NaN", "Infinity", "-Infinity", "lone surrogate", "surrogate key", "100000 deep", "40 deep"],
)
def test_json_that_could_not_be_rendered_is_refused_and_nothing_stored(client: TestClient, body: bytes) -> None:
    collection = make_collection(client)["uuid"]
    items_before = client.get("/api/v0/item/").json()["meta"]["total_count"]
    for path, payload in (
        ("/api/v0/collection/", body),
        ("/api/v0/item/", body.replace(b"{", b'{"collection": "' + collection.encode() + b'", ', 1)),
    ):
        response = client.post(path, content=payload, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and code(response) == "INVALID_JSON", response.text
        assert response.json()["error"]["message"]
    assert client.get("/api/v0/item/").json()["meta"]["total_count"] == items_before
    assert client.get("/api/v0/collection/").status_code == 200


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({}, {"name": "required"}),
        ({"name": ""}, {"name": "must not be empty"}),
        ({"name": 5}, {"name": "must be a string"}),
    ],
)
def test_collection_validation_names_the_fields(
    client: TestClient, body: dict[str, Any], details: dict[str, str]
) -> None:
    response = client.post("/api/v0/collection/", json=body)
    assert response.status_code == 400 and code(response) == "VALIDATION_ERROR"
    assert response.json()["error"]["details"] == details


def test_fields_we_do_not_keep_are_ignored(client: TestClient) -> None:
    """CraftAR's official client sends `offline` with a new collection and `tags` with items."""
    response = client.post("/api/v0/collection/", json={"name": "offline", "offline": False})
    assert response.status_code == 201 and "offline" not in response.json()
    item = make_item(client, response.json()["uuid"], tags=[])
    assert "tags" not in item


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v0/collection/", {"name": "misspelt", "nmae": "x", "colour": "red"}),
        ("POST", "/api/v0/item/", {"collection": "{cid}", "name": "n", "nmae": "x", "colour": "red"}),
        ("POST", "/api/v0/token/", {"collection": "{cid}", "nmae": "x", "colour": "red"}),
        ("PUT", "/api/v0/collection/{cid}/", {"nmae": "x", "colour": "red"}),
        ("PUT", "/api/v0/item/{iid}/", {"name": "kept?", "nmae": "x", "colour": "red"}),
        ("PUT", "/api/v0/token/{token}/", {"rate_limit": 5, "nmae": "x", "colour": "red"}),
    ],
)
def test_unknown_fields_are_refused_by_name(client: TestClient, method: str, path: str, body: dict[str, Any]) -> None:
    cid = make_collection(client)["uuid"]
    item = make_item(client, cid)
    token = client.get("/api/v0/token/", params={"collection__uuid": cid}).json()["objects"][0]["token"]
    names = {"cid": cid, "iid": item["uuid"], "token": token}
    filled = {k: v.format(**names) if isinstance(v, str) else v for k, v in body.items()}
    response = client.request(method, path.format(**names), json=filled)
    assert response.status_code == 400 and code(response) == "VALIDATION_ERROR", response.text
    assert response.json()["error"]["details"] == {"nmae": "unknown field", "colour": "unknown field"}
    assert client.get(f"/api/v0/item/{item['uuid']}/").json()["name"] == item["name"]  # nothing changed


def test_an_object_sent_back_as_fetched_is_accepted(client: TestClient) -> None:
    cid = make_collection(client)["uuid"]
    item = make_item(client, cid, url="https://example.com")
    response = client.put(item["resource_uri"], json={**item, "name": "renamed"})
    assert response.status_code == 202 and response.json() == {**item, "name": "renamed"}
    fetched = client.get(f"/api/v0/collection/{cid}/").json()
    assert client.put(fetched["resource_uri"], json=fetched).status_code == 202


def test_unknown_names_in_an_error_are_bounded(client: TestClient) -> None:
    body = {"name": "many", **{f"field-{n:04}-{'x' * 200}": 1 for n in range(1000)}}
    response = client.post("/api/v0/collection/", json=body)
    assert response.status_code == 400 and code(response) == "VALIDATION_ERROR"
    details = response.json()["error"]["details"]
    assert len(details) == 20 and all(len(name) <= 100 for name in details)
    assert "980 more" in response.json()["error"]["message"]


def test_item_validation(client: TestClient) -> None:
    response = client.post("/api/v0/item/", json={"collection": "nope", "trackable": "yes", "content": [1], "url": 3})
    details = response.json()["error"]["details"]
    assert code(response) == "VALIDATION_ERROR"
    assert set(details) == {"collection", "trackable", "content", "url", "name"}
    response = client.post("/api/v0/item/", json={"collection": "0" * 32, "name": "x"})
    assert response.json()["error"]["details"] == {"collection": "no such collection"}


# --- listing ---------------------------------------------------------------------------------


def test_pagination(client: TestClient) -> None:
    created = [make_collection(client, f"page-{n}")["uuid"] for n in range(5)]
    first = client.get("/api/v0/collection/", params={"limit": 2}).json()
    assert first["meta"]["total_count"] == 5 and first["meta"]["previous"] is None
    assert [o["uuid"] for o in first["objects"]] == created[:2]
    second = client.get(first["meta"]["next"]).json()
    assert second["meta"]["offset"] == 2 and [o["uuid"] for o in second["objects"]] == created[2:4]
    last = client.get("/api/v0/collection/", params={"limit": 2, "offset": 4}).json()
    assert last["meta"]["next"] is None and [o["uuid"] for o in last["objects"]] == created[4:]
    assert client.get(last["meta"]["previous"]).json()["meta"]["offset"] == 2
    default = client.get("/api/v0/collection/").json()["meta"]
    assert (default["limit"], default["offset"]) == (20, 0)
    assert client.get("/api/v0/collection/", params={"limit": 0}).json()["meta"]["limit"] == 1000
    for bad in (
        {"limit": "x"},
        {"offset": "-1"},
        {"limit": "²"},
        {"offset": "¹"},
        {"offset": str(2**63)},
        {"offset": str(10**30)},
        {"limit": str(10**30)},
    ):
        response = client.get("/api/v0/collection/", params=bad)
        assert code(response) == "VALIDATION_ERROR" and set(response.json()["error"]["details"]) == set(bad)


def test_next_link_uses_the_public_url(make_client: MakeClient) -> None:
    client = make_client(RECOG_PUBLIC_URL="https://recog.example.com/")
    for n in range(2):
        make_collection(client, f"n{n}")
    meta = client.get("/api/v0/collection/", params={"limit": 1, "name__contains": "n"}).json()["meta"]
    assert meta["next"].startswith("https://recog.example.com/api/v0/collection/?")
    assert "name__contains=n" in meta["next"] and "offset=1" in meta["next"]


def test_collection_filters(client: TestClient) -> None:
    posters = make_collection(client, "city posters")["uuid"]
    make_collection(client, "book covers")
    by_name = client.get("/api/v0/collection/", params={"name": "city posters"}).json()
    assert [o["uuid"] for o in by_name["objects"]] == [posters]
    contains = client.get("/api/v0/collection/", params={"name__contains": "o"}).json()
    assert contains["meta"]["total_count"] == 2
    assert (
        client.get("/api/v0/collection/", params={"name__contains": "poster"}).json()["objects"][0]["uuid"] == posters
    )
    assert client.get("/api/v0/collection/", params={"name": "city"}).json()["objects"] == []


def test_child_filters(client: TestClient) -> None:
    one, two = make_collection(client)["uuid"], make_collection(client)["uuid"]
    item_one = make_item(client, one)["uuid"]
    make_item(client, two)
    listed = client.get("/api/v0/item/", params={"collection__uuid": one}).json()
    assert [o["uuid"] for o in listed["objects"]] == [item_one]
    assert client.get("/api/v0/item/").json()["meta"]["total_count"] == 2
    assert client.get("/api/v0/token/").json()["meta"]["total_count"] == 2
    response = client.get("/api/v0/image/", params={"item__uuid": "bad"})
    assert code(response) == "VALIDATION_ERROR" and "item__uuid" in response.json()["error"]["details"]


# --- items -----------------------------------------------------------------------------------


def test_item_lifecycle_and_public_texts(client: TestClient, make_client: MakeClient) -> None:
    cid = make_collection(client)["uuid"]
    item = make_item(
        client, cid, url="https://example.com", custom="hello", tracking="t-1", content={"a": [1]}, trackable=True
    )
    assert item["collection"] == f"/api/v0/collection/{cid}/"
    assert (item["custom"], item["content"], item["trackable"]) == ("hello", {"a": [1]}, True)
    iid = item["uuid"]
    response = client.put(f"/api/v0/item/{iid}/", json={**item, "custom": "changed"})  # a fetched object sent back
    assert response.status_code == 202
    assert client.get(f"/api/v0/item/{iid}/").json() == {**item, "custom": "changed"}

    public = make_client(authorized=False)
    custom = public.get(f"/api/v0/item/{iid}/custom")
    assert (
        custom.status_code == 200
        and custom.text == "changed"
        and custom.headers["content-type"].startswith("text/plain")
    )
    assert public.get(f"/api/v0/item/{iid}/tracking").text == "t-1"
    assert public.get(f"/api/v0/item/{'0' * 32}/custom").status_code == 404

    other = make_collection(client)["uuid"]
    moved = client.put(f"/api/v0/item/{iid}/", json={"collection": other})
    assert code(moved) == "VALIDATION_ERROR" and moved.json()["error"]["details"] == {"collection": "cannot be changed"}


def test_item_defaults(client: TestClient) -> None:
    item = make_item(client, make_collection(client)["uuid"])
    assert {k: item[k] for k in ("url", "custom", "tracking", "content", "trackable")} == {
        "url": "",
        "custom": "",
        "tracking": "",
        "content": {},
        "trackable": False,
    }


# --- images ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker_beating")
def test_image_upload_is_indexed_with_thumbnails(client: TestClient, db: redis.Redis, data_dir: Path) -> None:
    cid = make_collection(client)["uuid"]
    iid = make_item(client, cid)["uuid"]
    data = reference(1)
    response = upload(client, iid, data)
    assert response.status_code == 201, response.text
    image = response.json()
    mid = image["uuid"]
    base = f"http://testserver/files/{cid}/{iid}/{mid}"
    assert image["item"] == f"/api/v0/item/{iid}/" and image["resource_uri"] == f"/api/v0/image/{mid}/"
    assert (image["file"], image["thumb_120"], image["thumb_60"]) == (
        f"{base}/original.jpg",
        f"{base}/thumb_120.jpg",
        f"{base}/thumb_60.jpg",
    )
    assert image["status"] == "indexed" and 1 <= image["recognisability"] <= 5

    assert client.get(image["file"]).content == data
    for field, side in (("thumb_120", 120), ("thumb_60", 60)):
        served = client.get(image[field], headers={"Authorization": ""})
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        thumb = Image.open(io.BytesIO(served.content))
        assert (thumb.format, thumb.size) == ("JPEG", (side, side))

    assert db.hget(keys.collection_references(cid), mid) == iid.encode()
    stored = decode_feature_record((data_dir / "blobs" / cid / iid / mid / FEATURES).read_bytes())
    assert stored.item == iid and stored.extraction == extraction_id()
    assert not db.exists(keys.legacy_features(cid))  # no feature data in Redis
    assert events(db, cid) == [("add", mid)]
    assert client.get(f"{base}/{FEATURES}").status_code == 404  # features are not served
    listed = client.get("/api/v0/image/", params={"item__uuid": iid}).json()
    assert [o["uuid"] for o in listed["objects"]] == [mid]
    assert client.get(f"/api/v0/image/{mid}/").json() == image

    assert client.delete(f"/api/v0/image/{mid}/").status_code == 204
    assert db.hget(keys.collection_references(cid), mid) is None
    assert not (data_dir / "blobs" / cid / iid / mid).exists()
    assert events(db, cid) == [("add", mid), ("remove", mid)]
    assert client.get(image["thumb_120"]).status_code == 404
    assert client.get(f"/api/v0/image/{mid}/").status_code == 404


@pytest.mark.usefixtures("worker_beating")
def test_the_same_picture_is_one_reference_per_collection(client: TestClient, data_dir: Path) -> None:
    cid = make_collection(client)["uuid"]
    first, second = make_item(client, cid)["uuid"], make_item(client, cid)["uuid"]
    data = reference(3)
    image = upload(client, first, data).json()
    assert image["sha256"] == hashlib.sha256(data).hexdigest()
    again = upload(client, second, data)
    assert (again.status_code, code(again)) == (400, "VALIDATION_ERROR")
    assert again.json()["error"]["details"] == {"file": f"the same picture as image {image['uuid']}"}
    assert not (data_dir / "blobs" / cid / second).exists()
    other = make_collection(client)["uuid"]
    assert upload(client, make_item(client, other)["uuid"], data).status_code == 201  # another collection
    assert client.delete(image["resource_uri"]).status_code == 204
    assert upload(client, second, data).status_code == 201  # free again once deleted


@pytest.mark.usefixtures("worker_beating")
def test_a_transparent_cut_out_is_laid_on_white(client: TestClient) -> None:
    """A product cut-out (a PNG whose background is see-through) is a reference as printed on white;
    a search photo with transparency is still refused (tests/test_search_api.py)."""
    picture = imagegen.textured(11, 320, 240)
    canvas = np.zeros((400, 480, 4), np.uint8)  # fully transparent
    canvas[80:320, 80:400, :3] = picture[..., None] if picture.ndim == 2 else picture
    canvas[80:320, 80:400, 3] = 255
    iid = make_item(client, make_collection(client)["uuid"])["uuid"]
    response = upload(client, iid, encoded(canvas, "PNG"), "cut-out.png")
    assert response.status_code == 201, response.text
    assert response.json()["recognisability"] >= 1
    thumb = np.asarray(Image.open(io.BytesIO(client.get(response.json()["thumb_120"]).content)).convert("L"))
    assert thumb[:8, :8].min() > 240 and thumb[-8:, -8:].min() > 240  # the see-through corners are white


@pytest.mark.usefixtures("worker_beating")
def test_png_original_is_served_as_png(client: TestClient) -> None:
    iid = make_item(client, make_collection(client)["uuid"])["uuid"]
    image = upload(client, iid, reference(2, "PNG"), "ref.png").json()
    served = client.get(image["file"])
    assert served.headers["content-type"] == "image/png"


@pytest.mark.usefixtures("worker_beating")
def test_thumbnails_follow_the_exif_orientation(client: TestClient) -> None:
    iid = make_item(client, make_collection(client)["uuid"])["uuid"]
    picture = imagegen.textured(7, 480, 320)
    thumbs = []
    for orientation in (1, 6):
        image = upload(client, iid, imagegen.encode_jpeg(picture, 95, orientation=orientation)).json()
        thumbs.append(np.asarray(Image.open(io.BytesIO(client.get(image["thumb_120"]).content)), np.float32))
    assert np.abs(thumbs[0] - thumbs[1]).mean() < 8  # the same upright picture, not a rotated one


def encoded(pixels: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def transparent_png() -> bytes:
    rgba = np.dstack([imagegen.textured(3, 320, 240), np.full((240, 320), 128, np.uint8)])
    return encoded(rgba, "PNG")


@pytest.mark.usefixtures("worker_beating")
@pytest.mark.parametrize(
    ("make_data", "status", "error"),
    [
        (lambda: b"definitely not an image", 400, "IMAGE_NOT_LOADED"),
        (lambda: encoded(imagegen.textured(4, 320, 240), "GIF"), 400, "IMAGE_NOT_LOADED"),
        (lambda: imagegen.encode_jpeg(imagegen.textured(5, 90, 90)), 400, "IMAGE_TOO_SMALL"),
        (lambda: imagegen.encode_jpeg(imagegen.flat(640, 480)), 400, "IMAGE_NO_DETAILS"),
        (
            lambda: encoded(np.random.default_rng(6).integers(0, 256, (480, 640, 3), np.uint8), "PNG"),
            413,
            "IMAGE_TOO_LARGE",
        ),
    ],
)
def test_upload_image_errors(
    make_client: MakeClient, data_dir: Path, make_data: Callable[[], bytes], status: int, error: str
) -> None:
    client = make_client(RECOG_MAX_UPLOAD_BYTES="400000")
    cid = make_collection(client)["uuid"]
    iid = make_item(client, cid)["uuid"]
    response = upload(client, iid, make_data())
    assert (response.status_code, code(response)) == (status, error), response.text
    assert client.get("/api/v0/image/").json()["objects"] == []
    assert not (data_dir / "blobs" / cid).exists()  # nothing stored, not even the original


def test_upload_form_errors(client: TestClient) -> None:
    iid = make_item(client, make_collection(client)["uuid"])["uuid"]
    missing = client.post("/api/v0/image/", data={"other": "x"}, files={"unused": ("u.txt", b"", "text/plain")})
    assert code(missing) == "VALIDATION_ERROR" and missing.json()["error"]["details"] == {
        "item": "required",
        "file": "required (a file part)",
    }
    gone = client.post("/api/v0/image/", data={"item": "0" * 32}, files={"file": ("r.jpg", reference(1))})
    assert gone.json()["error"]["details"] == {"item": "no such item"}
    as_json = client.post("/api/v0/image/", json={"item": iid})
    assert as_json.status_code == 415 and code(as_json) == "WRONG_CONTENT_TYPE"
    broken = client.post(
        "/api/v0/image/", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert broken.status_code == 400


# --- cascades and tokens ---------------------------------------------------------------------


@pytest.mark.usefixtures("worker_beating")
def test_deleting_an_item_deletes_its_images(client: TestClient, db: redis.Redis) -> None:
    cid = make_collection(client)["uuid"]
    iid = make_item(client, cid)["uuid"]
    images = [upload(client, iid, reference(seed)).json() for seed in (1, 2)]
    assert client.delete(f"/api/v0/item/{iid}/").status_code == 204
    for image in images:
        assert client.get(image["resource_uri"]).status_code == 404
        assert client.get(image["thumb_60"]).status_code == 404
    assert db.hlen(keys.collection_references(cid)) == 0
    assert [op for op, _ in events(db, cid)] == ["add", "add", "remove", "remove"]
    assert client.get(f"/api/v0/collection/{cid}/").status_code == 200


@pytest.mark.usefixtures("worker_beating")
def test_deleting_a_collection_deletes_everything_in_it(client: TestClient, db: redis.Redis, data_dir: Path) -> None:
    cid = make_collection(client, "doomed")["uuid"]
    token = client.get("/api/v0/token/", params={"collection__uuid": cid}).json()["objects"][0]["token"]
    iid = make_item(client, cid)["uuid"]
    image = upload(client, iid, reference(1)).json()
    keep = make_collection(client)["uuid"]

    assert client.delete(f"/api/v0/collection/{cid}/").status_code == 204
    for uri in (f"/api/v0/item/{iid}/", image["resource_uri"], f"/api/v0/token/{token}/"):
        assert client.get(uri).status_code == 404, uri
    assert client.get(image["file"]).status_code == 404
    assert not (data_dir / "blobs" / cid).exists()
    assert events(db, cid)[-1] == ("drop", "")
    assert not db.sismember(keys.shard_collections(shard_of(cid, SHARDS)), cid)
    leftovers = [
        k.decode() for k in db.scan_iter() if cid.encode() in k or iid.encode() in k or image["uuid"].encode() in k
    ]
    assert leftovers == []
    assert [o["uuid"] for o in client.get("/api/v0/collection/").json()["objects"]] == [keep]
    make_collection(client, "doomed")


def test_tokens_are_created_and_revoked(client: TestClient) -> None:
    cid = make_collection(client)["uuid"]
    response = client.post("/api/v0/token/", json={"collection": f"http://testserver/api/v0/collection/{cid}/"})
    assert response.status_code == 201
    token = response.json()
    assert len(token["token"]) == 16 and token["collection"] == f"/api/v0/collection/{cid}/"
    assert client.get("/api/v0/token/", params={"collection__uuid": cid}).json()["meta"]["total_count"] == 2
    assert client.put(token["resource_uri"], json={"collection": cid}).status_code == 202
    assert client.delete(token["resource_uri"]).status_code == 204
    assert client.get(token["resource_uri"]).status_code == 404
    assert client.get("/api/v0/token/", params={"collection__uuid": cid}).json()["meta"]["total_count"] == 1
    missing = client.post("/api/v0/token/", json={})
    assert missing.json()["error"]["details"] == {"collection": "required"}


def test_token_rate_limit_is_set_changed_and_checked(client: TestClient) -> None:
    cid = make_collection(client)["uuid"]
    token = client.post("/api/v0/token/", json={"collection": cid, "rate_limit": 5}).json()
    assert token["rate_limit"] == 5
    assert client.put(token["resource_uri"], json={"rate_limit": None}).json()["rate_limit"] is None
    for bad in (0, -1, 2.5, "10", True):
        response = client.post("/api/v0/token/", json={"collection": cid, "rate_limit": bad})
        assert response.status_code == 400, bad
        assert "rate_limit" in response.json()["error"]["details"]


def test_hosts_outside_the_allowed_list_are_refused(make_client: MakeClient) -> None:
    """Links follow the Host header: a forged one must not make the service link to another site."""
    client = make_client(RECOG_ALLOWED_HOSTS="recog.example.com, localhost")
    assert client.get("/api/v0/collection/", headers={"Host": "recog.example.com"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "localhost:8080"}).status_code == 200
    refused = client.get("/api/v0/collection/", headers={"Host": "evil.example.net"})
    assert refused.status_code == 400 and code(refused) == "BAD_REQUEST"
    assert "evil.example.net" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "location"),
    [
        ("GET", "/api/v0/collection?limit=5", "/api/v0/collection/?limit=5"),
        ("POST", "/api/v0/collection", "/api/v0/collection/"),
        ("DELETE", f"/api/v0/item/{'a' * 32}", f"/api/v0/item/{'a' * 32}/"),
        ("POST", "/v1/search/", "/v1/search"),
    ],
)
def test_a_wrong_trailing_slash_is_a_redirect_with_a_json_body(
    client: TestClient, method: str, path: str, location: str
) -> None:
    response = client.request(method, path, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["Location"] == location
    assert code(response) == "TRAILING_SLASH" and location in response.json()["error"]["message"]


def test_a_client_that_follows_the_redirect_keeps_its_method_and_body(client: TestClient) -> None:
    response = client.post("/api/v0/collection", json={"name": "followed"}, follow_redirects=True)
    assert response.status_code == 201 and response.json()["name"] == "followed"


def test_unknown_paths_and_methods_stay_json_errors(client: TestClient) -> None:
    assert client.get("/api/v0/nothing/").status_code == 404 and code(client.get("/api/v0/nothing/")) == "NOT_FOUND"
    response = client.patch("/api/v0/collection/")
    assert response.status_code == 405 and code(response) == "METHOD_NOT_ALLOWED"
