"""bench.train_vocab: the training pictures come from the sources list, and both tree builders give a
tree the worker loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.train_vocab import SOURCES, descriptors, flat, pictures, save, tree
from workers import vocabulary

Build = Callable[[np.ndarray, int, int, int, int], dict[str, np.ndarray]]


def test_sources_list_names_package_version_licence_and_globs() -> None:
    for source in json.loads(SOURCES.read_text())["sources"]:
        assert source["package"] and source["version"] and source["license"]
        assert all(spec["glob"] for spec in source["files"])


def test_pictures_takes_each_glob_thinned_evenly_to_its_max(tmp_path: Path) -> None:
    art = tmp_path / "pkg" / "usr" / "art"
    art.mkdir(parents=True)
    for i in range(10):
        (art / f"{i:02}.png").write_bytes(b"")
    sources = [{"package": "pkg", "files": [{"glob": "usr/art/*.png", "max": 4}, {"glob": "usr/art/09.png"}]}]
    assert [p.name for p in pictures(sources, tmp_path)] == ["00.png", "03.png", "06.png", "09.png", "09.png"]


def test_pictures_refuses_a_missing_package_or_an_empty_glob(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--fetch"):
        pictures([{"package": "absent", "files": [{"glob": "*"}]}], tmp_path)
    (tmp_path / "pkg").mkdir()
    with pytest.raises(FileNotFoundError, match="nothing matches"):
        pictures([{"package": "pkg", "files": [{"glob": "*.jpg"}]}], tmp_path)


@pytest.mark.parametrize("build", [flat, tree])
def test_both_methods_give_a_tree_the_loader_accepts(build: Build, tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, (3000, 32), dtype=np.uint8)
    save(tmp_path / "v.npz", build(data, 4, 64, 3, 1))
    loaded = vocabulary.load(tmp_path / "v.npz")
    assert loaded.coarse.shape == (4, 32) and loaded.words.shape == (64, 32)


def test_upright_training_takes_only_the_upright_view() -> None:
    upright, every_view = descriptors([], 1, upright=True), descriptors([], 1)
    assert upright.dtype == np.uint8 and upright.shape[1] == 32
    assert 0 < len(upright) < len(every_view)
