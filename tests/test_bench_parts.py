"""The 4-part bench's fillers and placement: derived references are other references to the index,
and the dev set's pictures are spread over every part."""

from __future__ import annotations

import numpy as np

from bench.parts import derived, dev_positions
from tests.test_index import features_of


def test_a_derived_filler_flips_about_one_bit_in_16_and_keeps_its_keypoints() -> None:
    base = features_of(1)
    filler = derived(base, 7)
    flipped = np.unpackbits(base.descriptors ^ filler.descriptors).mean()
    assert 0.04 < flipped < 0.09
    assert np.array_equal(filler.keypoints, base.keypoints)
    assert np.array_equal(derived(base, 7).descriptors, filler.descriptors)  # a function of its seed
    assert not np.array_equal(derived(base, 8).descriptors, filler.descriptors)


def test_the_dev_pictures_are_spread_over_every_part() -> None:
    positions = dev_positions(200_000, 293)
    assert sorted(positions.values()) == list(range(293))
    per_part = np.bincount([p // 50_000 for p in positions], minlength=4)
    assert per_part.min() >= 73 and per_part.max() <= 74
