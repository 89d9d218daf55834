"""The shipped visual vocabulary and word assignment."""

from __future__ import annotations

import numpy as np

from workers import vocabulary


def test_shipped_vocabulary_is_binary_words() -> None:
    words = vocabulary.words()
    assert words.dtype == np.uint8 and words.shape[1] == 32
    assert len(np.unique(words, axis=0)) == len(words) >= 1024
    assert vocabulary.VOCABULARY_PATH.stat().st_size < 2_000_000


def test_each_word_is_assigned_to_itself_and_noise_to_a_near_word() -> None:
    words = vocabulary.words()
    assert np.array_equal(vocabulary.assign(words), np.arange(len(words), dtype=np.int32))
    rng = np.random.default_rng(0)
    flipped = np.unpackbits(words[:200], axis=1) ^ (rng.random((200, 256)) < 0.02)
    noisy = np.packbits(flipped.astype(np.uint8), axis=1)
    assigned = vocabulary.assign(noisy)
    assert assigned.dtype == np.int32 and (assigned == np.arange(200)).mean() > 0.9
    assert vocabulary.assign(np.zeros((0, 32), np.uint8)).shape == (0,)
