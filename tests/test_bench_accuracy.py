"""bench.accuracy's settings variants: `--set FIELD=VALUE` parsed to a RecognitionSettings."""

from __future__ import annotations

import pytest

from bench.accuracy import settings_with
from workers.tuning import DEFAULT


def test_no_assignment_is_the_default() -> None:
    assert settings_with([]) == DEFAULT


def test_values_take_the_fields_types() -> None:
    settings = settings_with(["view_features=200", "tilt_degrees=55", "tilt_directions=0,90", "clahe_tiles=4,4"])
    assert settings.view_features == 200 and settings.tilt_degrees == 55.0
    assert settings.tilt_directions == (0.0, 90.0) and settings.clahe_tiles == (4, 4)
    assert settings_with(["far_factors="]).far_factors == ()
    assert settings_with(["score_calibrated=false"]).score_calibrated is False


@pytest.mark.parametrize(
    "assignment", ["view_feature=200", "view_features=2.5", "view_features", "score_calibrated=False"]
)
def test_unknown_fields_and_bad_values_fail(assignment: str) -> None:
    with pytest.raises(ValueError):
        settings_with([assignment])
