"""Recognition settings: the digests that tell which settings stored features and saved indexes were made under."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, cast

import pytest

from shared.testing import imagegen
from workers import tuning
from workers.decode import decode_gray
from workers.features import extract_reference
from workers.tuning import DEFAULT, RecognitionSettings, extraction_id, index_id


def tagged(affects: str) -> set[str]:
    return {f.name for f in fields(RecognitionSettings) if f.metadata.get("affects") == affects}


def changed(settings: RecognitionSettings, name: str) -> RecognitionSettings:
    """`settings` with one field given another valid value of its type: one more (its last item, for a
    tuple), or one less where more is refused (a score ceiling above 100)."""
    value = getattr(settings, name)
    for step in (1, -1):
        new: dict[str, Any] = {name: (*value[:-1], value[-1] + step) if isinstance(value, tuple) else value + step}
        try:
            return replace(settings, **new)
        except ValueError:
            continue
    raise AssertionError(f"no other valid value for {name}")


def test_default_digests_are_pinned() -> None:
    # Stored features and saved indexes carry these: a change makes workers skip the features
    # stored before it and rebuild saved indexes. Change them only with the settings, on purpose.
    assert extraction_id() == "48e1ab3a2992"
    assert index_id() == "3a5613d8af35"


@pytest.mark.parametrize("name", [f.name for f in fields(RecognitionSettings)])
def test_each_digest_changes_with_its_own_settings_only(name: str) -> None:
    other = changed(DEFAULT, name)
    assert (extraction_id(other) != extraction_id(DEFAULT)) == (name in tagged("extraction"))
    assert (index_id(other) != index_id(DEFAULT)) == (name in tagged("index"))


def test_equal_settings_give_equal_digests() -> None:
    same = replace(DEFAULT, tilt_degrees=60, clahe_clip=2, tilt_directions=(0, 45, 90.0, 135))
    assert same == DEFAULT
    assert extraction_id(RecognitionSettings()) == extraction_id(same) == extraction_id(DEFAULT)
    assert len(extraction_id()) == 12 and int(extraction_id(), 16) >= 0


class Recorder:
    """Settings that note which fields are read."""

    def __init__(self, settings: RecognitionSettings) -> None:
        self.settings = settings
        self.read: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.read.add(name)
        return getattr(self.settings, name)


def test_the_extraction_digest_covers_every_setting_reference_extraction_reads() -> None:
    recorder = Recorder(DEFAULT)
    settings = cast(RecognitionSettings, recorder)
    large = imagegen.encode_jpeg(imagegen.textured(1, 2000, 1500), 85)  # decoded at a reduced size
    extract_reference(decode_gray(large, settings=settings), settings=settings)
    assert recorder.read == tagged("extraction")


def test_max_hamming_scales_with_the_code_bits() -> None:
    assert tuning.DEFAULT.max_hamming == 64
    assert replace(DEFAULT, code_bits=128).max_hamming == 32


@pytest.mark.parametrize(("slope", "ceiling"), [(0.0, 99.0), (-1.0, 99.0), (1.0, 100.5), (1.0, 0.0)])
def test_a_calibrated_score_must_rise_to_at_most_100(slope: float, ceiling: float) -> None:
    with pytest.raises(ValueError, match="score calibration"):
        replace(DEFAULT, score_slope=slope, score_ceiling=ceiling)
