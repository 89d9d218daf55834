"""The client commands as a user runs them: `recog import`, `search`, `collections`, `tokens` and
`apikey list|revoke`, real processes against a running stack."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from shared.importer import Entry, SourceError, from_folder, from_manifest
from shared.testing.imagegen import encode_jpeg, encode_png, textured
from shared.testing.stack import ADMIN_KEY, Stack, recog_command


def recog(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`recog ARGS` with none of this process's RECOG_* settings, and a data directory of its own
    (so no stack record of another run is found)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECOG_") and k != "REDIS_URL"}
    clean.update(RECOG_DATA_DIR=str(cwd / "data"), **env)
    return subprocess.run(
        [*recog_command(), *args], env=clean, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def on_stack(stack: Stack, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return recog(*args, cwd=cwd, RECOG_API_URL=stack.url, RECOG_API_KEY=ADMIN_KEY)


def posters(folder: Path, count: int, first_seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"poster-{n}.jpg"
        path.write_bytes(encode_jpeg(textured(first_seed + n, 400, 300)))
        paths.append(path)
    return paths


def test_a_folder_is_one_item_per_stem(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.PNG", "a.jpeg", ".hidden.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert from_folder(tmp_path) == [
        Entry("a", (tmp_path / "a.PNG", tmp_path / "a.jpeg")),
        Entry("b", (tmp_path / "b.jpg",)),
    ]


def test_a_manifest_row_is_an_item_with_its_images(tmp_path: Path) -> None:
    manifest = tmp_path / "items.csv"
    manifest.write_text('name,images,url,custom\nPoster,front.jpg; back.png,https://example.com,"{""a"": 1}"\n')
    assert from_manifest(manifest) == [
        Entry("Poster", (tmp_path / "front.jpg", tmp_path / "back.png"), url="https://example.com", custom='{"a": 1}')
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("name,image\nA,a.jpg\n", "columns must be"),
        ("name,images,colour\nA,a.jpg,red\n", "columns must be"),
        ("name,images\nA,\n", "line 2: a row needs a name and at least one image"),
        ("name,images\nA,a.jpg\nA,b.jpg\n", "line 3: the name 'A' is used twice"),
    ],
)
def test_a_bad_manifest_is_refused_before_anything_is_sent(tmp_path: Path, text: str, error: str) -> None:
    manifest = tmp_path / "items.csv"
    manifest.write_text(text)
    with pytest.raises(SourceError, match=error):
        from_manifest(manifest)


def test_import_then_resume_then_search(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "posters"
    paths = posters(folder, 6)
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    collection = f"cli-{uuid.uuid4().hex[:8]}"

    first = on_stack(stack, "import", str(folder), "--collection", collection, "--jobs", "3", cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # the broken file
    assert f"recog: using API {stack.url} (RECOG_API_URL)" in first.stderr
    assert first.stdout.splitlines()[0] == "6 images uploaded (6 new items), 0 already there, 1 failed"
    assert any("broken.jpg" in line and "IMAGE_NOT_LOADED" in line for line in first.stdout.splitlines())

    with stack.admin() as admin:
        found = admin.get("/api/v0/collection/", params={"name": collection}).json()["objects"]
        items = admin.get("/api/v0/item/", params={"collection__uuid": found[0]["uuid"]}).json()["objects"]
        # The broken file's item, which got no image, was deleted again.
        assert sorted(item["name"] for item in items) == [path.stem for path in paths]
        images = [admin.get("/api/v0/image/", params={"item__uuid": item["uuid"]}).json() for item in items]
        assert [page["meta"]["total_count"] for page in images] == [1] * 6

    # A new image of an existing item is added; everything else is skipped.
    (folder / "poster-0.png").write_bytes(encode_png(textured(100, 400, 300)))
    (folder / "broken.jpg").unlink()
    again = on_stack(stack, "import", str(folder), "--collection", collection, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == "1 images uploaded (0 new items), 6 already there, 0 failed"

    third = on_stack(stack, "import", str(folder), "--collection", collection, cwd=tmp_path)
    assert third.stdout.splitlines()[0] == "0 images uploaded (0 new items), 7 already there, 0 failed"

    searched = on_stack(stack, "search", str(paths[3]), "--collection", collection, cwd=tmp_path)
    assert searched.returncode == 0, searched.stderr
    header, best = searched.stdout.splitlines()[:2]
    assert header.split()[:3] == ["item", "score", "image"]
    assert best.split()[0] == "poster-3"
    raw = on_stack(stack, "search", str(paths[3]), "--collection", collection, "--json", cwd=tmp_path)
    assert json.loads(raw.stdout)["results"][0]["item"]["name"] == "poster-3"

    listed = on_stack(stack, "collections", cwd=tmp_path)
    assert any(line.split()[0] == collection and line.split()[2] == "6" for line in listed.stdout.splitlines())
    tokens = on_stack(stack, "tokens", "--collection", collection, cwd=tmp_path)
    assert len(tokens.stdout.splitlines()) == 2 and tokens.stdout.splitlines()[1].split()[1] == collection


def test_client_commands_without_a_stack_say_how_to_name_one(tmp_path: Path) -> None:
    result = recog("collections", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("recog: no `recog up` is running on") and "RECOG_API_URL" in result.stderr


def test_a_wrong_key_is_reported_with_its_code(stack: Stack, tmp_path: Path) -> None:
    result = recog("collections", "--api-key", "wrong", cwd=tmp_path, RECOG_API_URL=stack.url)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("recog: AUTHENTICATION_FAILED: ")


def test_a_revoked_key_is_refused_at_once(stack: Stack, redis_url: str, tmp_path: Path) -> None:
    made = recog("apikey", "create", "--label", "revoke-me", cwd=tmp_path, REDIS_URL=redis_url)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    listed = recog("apikey", "list", cwd=tmp_path, REDIS_URL=redis_url)
    assert key not in listed.stdout
    assert any(line.startswith(f"{key[:8]}...") and line.endswith("revoke-me") for line in listed.stdout.splitlines())

    assert httpx.get(f"{stack.url}/api/v0/collection/", params={"api_key": key}).status_code == 200
    revoked = recog("apikey", "revoke", key[:8], cwd=tmp_path, REDIS_URL=redis_url)
    assert revoked.returncode == 0, revoked.stderr
    refused = httpx.get(f"{stack.url}/api/v0/collection/", params={"api_key": key})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "AUTHENTICATION_FAILED")
    assert recog("apikey", "revoke", key, cwd=tmp_path, REDIS_URL=redis_url).returncode == 1
