"""The shipped visual vocabulary and word assignment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workers import vocabulary


def test_shipped_vocabulary_is_a_tree_of_binary_words() -> None:
    tree = vocabulary.load()
    assert tree.words.dtype == np.uint8 and tree.words.shape[1] == 32
    assert len(np.unique(tree.words, axis=0)) == len(tree.words) >= 1024
    assert np.all(np.diff(tree.starts) > 0) and tree.starts[-1] == len(tree.words)
    assert vocabulary.VOCABULARY_PATH.stat().st_size < 2_000_000


def test_a_malformed_vocabulary_file_is_refused(tmp_path: Path) -> None:
    tree = vocabulary.load()
    np.savez(tmp_path / "v.npz", coarse=tree.coarse, words=tree.words, starts=tree.starts[:-1])
    with pytest.raises(ValueError, match="group starts"):
        vocabulary.load(tmp_path / "v.npz")


def test_each_word_is_assigned_to_itself_and_noise_to_a_near_word() -> None:
    words = vocabulary.load().words
    assert np.array_equal(vocabulary.assign(words), np.arange(len(words)))
    rng = np.random.default_rng(0)
    flipped = np.unpackbits(words[:200], axis=1) ^ (rng.random((200, 256)) < 0.02)
    noisy = np.packbits(flipped.astype(np.uint8), axis=1)
    assigned = vocabulary.assign(noisy)
    assert (assigned == np.arange(200)).mean() > 0.9
    assert vocabulary.assign(np.zeros((0, 32), np.uint8)).shape == (0,)


def test_recog_vocabulary_names_the_file_measured_instead_of_the_shipped_one(tmp_path: Path) -> None:
    code = "from workers import vocabulary; print(vocabulary.VOCABULARY_PATH)"
    other = tmp_path / "other.npz"
    run = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={**os.environ, "RECOG_VOCABULARY": str(other)},
        capture_output=True,
        text=True,
    )
    assert run.stdout.strip() == str(other)
    assert vocabulary.VOCABULARY_PATH == vocabulary.SHIPPED  # the tests run without it
