"""bench.tiers' near-duplicates: one small edit, where the picture has texture, and nothing else changed."""

from __future__ import annotations

import numpy as np
import pytest

from bench.tiers import EDIT_AREA, near_duplicate, textured_box


def picture(seed: int = 0) -> np.ndarray:
    """A flat grey picture with one textured corner (bottom right)."""
    rng = np.random.default_rng(seed)
    image = np.full((300, 400, 3), 128, np.uint8)
    image[200:, 250:] = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    return image


def test_the_edit_box_has_the_asked_area_and_lies_where_the_texture_is() -> None:
    gray = picture()[..., 0]
    x0, y0, x1, y1 = textured_box(gray, 0.03, np.random.default_rng(1))
    assert (x1 - x0) * (y1 - y0) == pytest.approx(0.03 * 400 * 300, rel=0.1)
    assert x1 > 250 and y1 > 200  # overlaps the textured corner


@pytest.mark.parametrize("seed", range(6))
def test_a_near_duplicate_differs_from_its_reference_only_inside_its_small_edit(seed: int) -> None:
    reference = picture(seed)
    donor = np.random.default_rng(seed + 100).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    edited, edit = near_duplicate(reference, donor, np.random.default_rng(seed))
    x0, y0, x1, y1 = edit["edit_box"]
    outside = np.ones(reference.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(edited[outside], reference[outside])
    assert not np.array_equal(edited[~outside], reference[~outside])
    assert EDIT_AREA[0] <= edit["edit_area"] <= EDIT_AREA[1] and edit["edit"] in ("label", "patch")
