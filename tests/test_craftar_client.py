"""CraftAR's official Python client (PyPI `craftar` 1.3.9) works against us with only its hosts changed."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from shared.testing import imagegen
from shared.testing.stack import ADMIN_KEY, Stack
from shared.testing.wait import wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # 2018 code: invalid escape sequences in its regexes
    craftar = pytest.importorskip("craftar", reason="install with: pip install --no-deps craftar==1.3.9")


@pytest.fixture
def client(stack: Stack) -> Iterator[ModuleType]:
    saved = craftar.settings.RECOGNITION_HOSTNAME, craftar.settings.MANAGEMENT_HOSTNAME
    craftar.settings.RECOGNITION_HOSTNAME = craftar.settings.MANAGEMENT_HOSTNAME = stack.url
    yield craftar
    craftar.settings.RECOGNITION_HOSTNAME, craftar.settings.MANAGEMENT_HOSTNAME = saved


# The client opens uploads without closing them (its code, not ours).
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_management_and_search_through_the_official_client(client: ModuleType, tmp_path: Path) -> None:
    reference = tmp_path / "reference.jpg"
    reference.write_bytes(imagegen.encode_jpeg(imagegen.textured(21, 480, 360), 92))
    query = tmp_path / "query.jpg"
    corners = np.array([[120, 80], [520, 110], [110, 420], [530, 400]], dtype=np.float32)
    query.write_bytes(
        imagegen.encode_jpeg(
            imagegen.place(imagegen.clutter(921, 640, 480), imagegen.textured(21, 480, 360), corners), 90
        )
    )

    collection = client.create_collection(ADMIN_KEY, f"craftar-{uuid.uuid4().hex[:8]}")
    assert len(collection["uuid"]) == 32
    tokens = client.get_token_list(ADMIN_KEY, 20, 0, collection=collection["uuid"])
    token = tokens[0]["token"]
    item = client.create_item(ADMIN_KEY, collection["uuid"], "cover", url="https://example.com", custom="hello")
    assert item["collection"] == collection["uuid"]
    image = client.create_image(ADMIN_KEY, item["uuid"], str(reference))
    assert image["item"] == item["uuid"]
    assert client.update_item(ADMIN_KEY, item["uuid"], name="cover v2") is True

    def answer_with_results() -> dict[str, Any] | None:
        # Grayscale JPEG, shorter side 240 px, v2, bbox as a string: what the client really sends.
        answer: dict[str, Any] = client.search(token, str(query), bbox=True, embed_custom=True)
        return answer if answer["results"] else None

    # The contract: searchable within 1 s of the upload's 201.
    found = wait_until(answer_with_results, 1.0, "the uploaded reference is found through the client")
    assert [r["item"]["uuid"] for r in found["results"]] == [item["uuid"]]
    result = found["results"][0]
    assert result["image"] == image["uuid"]
    assert result["item"]["name"] == "cover v2"
    assert result["item"]["custom"] == "hello"
    truth = corners / np.array([640, 480], dtype=np.float32)
    assert np.abs(np.array(result["bbox"]) - truth).max() <= 0.05

    assert [i["uuid"] for i in client.get_item_list(ADMIN_KEY, 20, 0, collection=collection["uuid"])] == [item["uuid"]]
    assert client.get_image(ADMIN_KEY, image["uuid"])["uuid"] == image["uuid"]
    new_token = client.create_token(ADMIN_KEY, collection["uuid"])
    assert len(new_token["token"]) == 16
    assert client.delete_token(ADMIN_KEY, new_token["token"]) is True
    assert client.delete_image(ADMIN_KEY, image["uuid"]) is True
    assert client.delete_item(ADMIN_KEY, item["uuid"]) is True
    assert client.delete_collection(ADMIN_KEY, collection["uuid"]) is True
