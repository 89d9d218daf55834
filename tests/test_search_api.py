"""The recognition contract over HTTP, against real API and worker processes on a real Redis."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from shared.testing import imagegen
from shared.testing.stack import Stack
from shared.testing.wait import wait_until
from tests.stackclient import add_reference, error_code, make_collection, search

FRESH_SECONDS = 1.0  # the contract: an image is searchable, and a removed one or token gone, within 1 s
QUERY_SIZE = (640, 480)
# Where the first reference sits in the perspective query: TL, TR, BL, BR in pixels.
CORNERS = np.array([[150, 90], [470, 120], [130, 400], [500, 380]], dtype=np.float32)


def reference(seed: int) -> bytes:
    return imagegen.encode_jpeg(imagegen.textured(seed, 480, 360), 92)


def photo(seed: int, corners: np.ndarray = CORNERS, background: int = 900) -> bytes:
    scene = imagegen.clutter(background, *QUERY_SIZE)
    return imagegen.encode_jpeg(imagegen.place(scene, imagegen.textured(seed, 480, 360), corners), 85)


def found_items(client: httpx.Client, token: str, query: bytes) -> list[str]:
    return [r["item"]["uuid"] for r in search(client, token, query).json()["results"]]


def finds(client: httpx.Client, token: str, query: bytes, item: str) -> Callable[[], bool]:
    """A check that searching with `query` finds `item`."""
    return lambda: item in found_items(client, token, query)


@pytest.fixture(scope="module")
def indexed(stack: Stack) -> Iterator[dict[str, object]]:
    """A collection with five references (seeds 1-5), the second item with custom data."""
    with stack.admin() as admin:
        collection, token = make_collection(admin)
        items = {}
        for seed in range(1, 6):
            fields = {"custom": "custom-data", "url": "https://example.com/2"} if seed == 2 else {}
            items[seed] = add_reference(admin, collection, reference(seed), name=f"poster {seed}", **fields)
    with stack.client() as client:
        for seed, (item, _) in items.items():
            wait_until(finds(client, token, photo(seed), item), FRESH_SECONDS, f"poster {seed} is searchable")
    yield {"collection": collection, "token": token, "items": items}


def test_perspective_photo_is_found_with_its_corners(stack: Stack, indexed: dict) -> None:
    with stack.client() as client:
        response = search(client, indexed["token"], photo(1), bboxes="true")
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results, "the indexed poster was not found"
    best = results[0]
    item, image = indexed["items"][1]
    assert best["item"]["uuid"] == item
    assert best["item"]["name"] == "poster 1"
    assert best["image"]["uuid"] == image
    assert 0 < best["score"] <= 100
    truth = CORNERS / np.array(QUERY_SIZE, dtype=np.float32)
    assert np.abs(np.array(best["bbox"]) - truth).max() <= 0.05
    assert isinstance(response.json()["search_time"], int)


def test_unrelated_photo_returns_nothing(stack: Stack, indexed: dict) -> None:
    with stack.client() as client:
        response = search(client, indexed["token"], photo(77))
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_two_objects_in_one_photo_are_both_returned(stack: Stack, indexed: dict) -> None:
    scene = imagegen.clutter(901, 1280, 720)
    left = np.array([[40, 120], [600, 140], [60, 580], [610, 560]], dtype=np.float32)
    right = np.array([[680, 130], [1240, 110], [690, 570], [1250, 590]], dtype=np.float32)
    scene = imagegen.place(scene, imagegen.textured(3, 480, 360), left)
    scene = imagegen.place(scene, imagegen.textured(4, 480, 360), right)
    with stack.client() as client:
        response = search(client, indexed["token"], imagegen.encode_jpeg(scene, 88), bbox="True")
    found = {r["item"]["uuid"] for r in response.json()["results"]}
    assert {indexed["items"][3][0], indexed["items"][4][0]} <= found
    scores = [r["score"] for r in response.json()["results"]]
    assert scores == sorted(scores, reverse=True)


def test_v1_links_and_embedding(stack: Stack, indexed: dict) -> None:
    with stack.client() as client:
        linked = search(client, indexed["token"], photo(2)).json()["results"][0]
        embedded = search(client, indexed["token"], photo(2), embed_custom="1").json()["results"][0]
        assert "bbox" not in linked
        assert linked["item"]["url"] == "https://example.com/2"
        assert embedded["item"]["custom"] == "custom-data"
        assert client.get(linked["item"]["custom"]).text == "custom-data"
        thumb = client.get(linked["image"]["thumb_120"])
        assert thumb.status_code == 200
        assert Image.open(io.BytesIO(thumb.content)).size == (120, 120)


def test_v2_response_shape(stack: Stack, indexed: dict) -> None:
    with stack.client() as client:
        body = search(client, indexed["token"], photo(5), api="v2", bbox="true", app_id="app", version="1").json()
        result = body["results"][0]
        item, image = indexed["items"][5]
        assert body["collection"]["uuid"] == indexed["collection"]
        assert result["image"] == image
        assert result["item"]["images"] == [image]
        assert len(result["bbox"]) == 4
        thumb_url = body["collection"]["image_template"].format(indexed["collection"], item, image)
        assert client.get(thumb_url).status_code == 200


def test_max_results_caps_the_answer(stack: Stack, indexed: dict) -> None:
    scene = imagegen.clutter(902, 1280, 720)
    scene = imagegen.place(
        scene,
        imagegen.textured(3, 480, 360),
        np.array([[40, 120], [600, 140], [60, 580], [610, 560]], dtype=np.float32),
    )
    scene = imagegen.place(
        scene,
        imagegen.textured(4, 480, 360),
        np.array([[680, 130], [1240, 110], [690, 570], [1250, 590]], dtype=np.float32),
    )
    with stack.client() as client:
        results = search(client, indexed["token"], imagegen.encode_jpeg(scene, 88), max_results="1").json()["results"]
    assert len(results) == 1


def test_new_image_is_searchable_one_second_after_201(stack: Stack) -> None:
    with stack.admin() as admin, stack.client() as client:
        collection, token = make_collection(admin)
        first, _ = add_reference(admin, collection, reference(10), name="first")
        wait_until(finds(client, token, photo(10), first), FRESH_SECONDS, "the first reference is searchable")
        query = photo(11)
        assert search(client, token, query).json()["results"] == []
        item, _ = add_reference(admin, collection, reference(11), name="fresh")
        results = wait_until(
            lambda: search(client, token, query).json()["results"], FRESH_SECONDS, "the new reference is searchable"
        )
        assert [r["item"]["uuid"] for r in results] == [item]


def test_deleted_image_stops_matching_one_second_after_204(stack: Stack) -> None:
    with stack.admin() as admin, stack.client() as client:
        collection, token = make_collection(admin)
        item, image = add_reference(admin, collection, reference(12))
        query = photo(12)
        wait_until(finds(client, token, query, item), FRESH_SECONDS, "the reference is searchable")
        assert admin.delete(f"/api/v0/image/{image}/").status_code == 204
        wait_until(lambda: found_items(client, token, query) == [], FRESH_SECONDS, "the deleted image stopped matching")


def test_deleted_token_is_refused_by_the_first_search_after_its_204(stack: Stack) -> None:
    """Revocation is immediate: the API has just used the token (it is in its cache), and the very
    next search, with a valid photo, is refused."""
    with stack.admin() as admin, stack.client() as client:
        collection, token = make_collection(admin)
        add_reference(admin, collection, reference(13))
        query = photo(13)
        assert search(client, token, query).status_code == 200
        assert admin.delete(f"/api/v0/token/{token}/").status_code == 204
        for _ in range(3):
            response = search(client, token, query)
            assert (response.status_code, error_code(response)) == (403, "TOKEN_INVALID")


def test_token_over_its_rate_limit_gets_429(stack: Stack, indexed: dict) -> None:
    with stack.admin() as admin, stack.client() as client:
        created = admin.post("/api/v0/token/", json={"collection": indexed["collection"], "rate_limit": 1})
        assert created.status_code == 201, created.text
        assert created.json()["rate_limit"] == 1
        query = photo(1)
        responses = [search(client, created.json()["token"], query) for _ in range(3)]
    refused = [r for r in responses if r.status_code == 429]
    assert refused, [r.status_code for r in responses]
    assert error_code(refused[0]) == "SCAN_QUOTA_EXCEEDED"
    assert refused[0].headers["Retry-After"] == "1"
    assert responses[0].status_code == 200


def _png(mode: str, size: tuple[int, int], alpha: int | None = None) -> bytes:
    image = Image.new(mode, size, (120, 80, 40, alpha) if mode == "RGBA" else 0)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _opaque_rgba_png(jpeg: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGBA").save(out, "PNG")
    return out.getvalue()


def _gif() -> bytes:
    out = io.BytesIO()
    Image.fromarray(imagegen.textured(1, 320, 240)[:, :, 0]).save(out, "GIF")
    return out.getvalue()


# How each case changes a valid search: the token, the image and extra form fields it sends instead.
_BROKEN: dict[str, Callable[[str], tuple[str | None, bytes | None, dict[str, str]]]] = {
    "no token": lambda token: (None, photo(1), {}),
    "short token": lambda token: ("abc", photo(1), {}),
    "unknown token": lambda token: ("0" * 16, photo(1), {}),
    "unknown token, no image": lambda token: ("0" * 16, None, {}),
    "no image": lambda token: (token, None, {}),
    "gif": lambda token: (token, _gif(), {}),
    "jpeg named png": lambda token: (token, photo(1), {"filename": "query.png"}),
    "garbage": lambda token: (token, b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10, {}),
    "transparent png": lambda token: (token, _png("RGBA", (400, 300), alpha=10), {}),
    "opaque rgba png": lambda token: (token, _opaque_rgba_png(photo(1)), {}),
    "tiny": lambda token: (token, imagegen.encode_jpeg(imagegen.textured(1, 90, 90), 90), {}),
    "too many bytes": lambda token: (token, b"\xff\xd8" + bytes(9 * 1024 * 1024), {}),
    "decompression bomb": lambda token: (token, _png("L", (9000, 9000)), {}),
    "white wall": lambda token: (token, imagegen.encode_jpeg(imagegen.flat(640, 480), 90), {}),
    "bad max_results": lambda token: (token, photo(1), {"max_results": "abc"}),
    "bad boolean": lambda token: (token, photo(1), {"bboxes": "perhaps"}),
}


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("no token", 401, "TOKEN_MISSING"),
        ("short token", 400, "TOKEN_WRONG"),
        ("unknown token", 403, "TOKEN_INVALID"),
        ("unknown token, no image", 403, "TOKEN_INVALID"),  # the token is checked first
        ("no image", 400, "IMAGE_MISSING"),
        ("gif", 400, "IMAGE_NOT_LOADED"),
        ("garbage", 400, "IMAGE_NOT_LOADED"),
        ("jpeg named png", 200, None),
        ("transparent png", 400, "IMAGE_TRANSPARENCY"),
        ("opaque rgba png", 200, None),
        ("tiny", 400, "IMAGE_TOO_SMALL"),
        ("too many bytes", 413, "IMAGE_TOO_LARGE"),
        ("decompression bomb", 413, "IMAGE_TOO_LARGE"),
        ("white wall", 400, "IMAGE_NO_DETAILS"),
        ("bad max_results", 400, "PARAMETER_INVALID"),
        ("bad boolean", 400, "PARAMETER_INVALID"),
    ],
)
def test_search_errors(stack: Stack, indexed: dict, case: str, status: int, code: str | None) -> None:
    token, image, fields = _BROKEN[case](indexed["token"])
    with stack.client() as client:
        filename = fields.pop("filename", "query.jpg")
        response = search(client, token, image, filename=filename, **fields)
    assert response.status_code == status, response.text
    if code is not None:
        assert error_code(response) == code
        assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'--xyz\r\nContent-Disposition: form-data; name="token"\r\n\r\nabc', "multipart/form-data; boundary=xyz"),
        (b"garbage", "multipart/form-data"),
        (
            b"--b\r\nContent-Disposition: form-data; name=token\r\n\r\n0123456789abcdef\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
    ],
)
def test_malformed_multipart_is_a_json_400(stack: Stack, body: bytes, content_type: str) -> None:
    response = httpx.post(f"{stack.url}/v1/search", content=body, headers={"content-type": content_type})
    assert response.status_code in (400, 401, 403)  # 403: a well-formed body, but its token does not exist
    assert response.json()["error"]["code"]


@pytest.mark.parametrize(("known", "status"), [(True, 200), (False, 403)])
def test_a_token_sent_after_the_image_is_checked_as_well(stack: Stack, indexed: dict, known: bool, status: int) -> None:
    token = indexed["token"] if known else "0" * 16
    body = (
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n\r\n' + photo(1) + b"\r\n"
        b'--b\r\nContent-Disposition: form-data; name="token"\r\n\r\n' + token.encode() + b"\r\n--b--\r\n"
    )
    headers = {"content-type": "multipart/form-data; boundary=b"}
    response = httpx.post(f"{stack.url}/v1/search", content=body, headers=headers)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("cut", ["inside the token", "inside the image", "before the closing boundary"])
def test_a_cut_off_multipart_body_is_a_400_saying_so(stack: Stack, indexed: dict, cut: str) -> None:
    whole = (
        b'--b\r\nContent-Disposition: form-data; name="token"\r\n\r\n' + indexed["token"].encode() + b"\r\n"
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n\r\n' + photo(1) + b"\r\n--b--\r\n"
    )
    end = {
        "inside the token": whole.index(indexed["token"].encode()) + 8,
        "inside the image": len(whole) // 2,
        "before the closing boundary": len(whole) - len(b"--b--\r\n"),
    }[cut]
    headers = {"content-type": "multipart/form-data; boundary=b"}
    response = httpx.post(f"{stack.url}/v1/search", content=whole[:end], headers=headers)
    assert response.status_code == 400, response.text
    assert "cut off" in response.json()["error"]["message"]
    assert httpx.post(f"{stack.url}/v1/search", content=whole, headers=headers).status_code == 200
