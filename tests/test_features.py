"""ORB features: decoding (EXIF, garbage), extraction, serialisation, recognisability."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.errors import CodecError, ImageNoDetails, ImageNotLoaded
from shared.testing import imagegen
from workers.decode import decode_gray
from workers.features import Features, extract, extract_reference, recognisability, require_details


def test_decode_applies_exif_orientation() -> None:
    picture = imagegen.textured(1, 320, 240)
    for orientation in (6, 8):
        gray = decode_gray(imagegen.encode_jpeg(picture, 95, orientation=orientation))
        assert gray.shape == (240, 320)
        expected = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY).astype(np.float32)
        assert np.abs(gray.astype(np.float32) - expected).mean() < 3  # JPEG loss only, not a rotation


def test_decode_reads_png_and_rejects_garbage() -> None:
    assert decode_gray(imagegen.encode_png(imagegen.textured(2, 200, 100))).shape == (100, 200)
    with pytest.raises(ImageNotLoaded):
        decode_gray(b"not an image at all")
    with pytest.raises(ImageNotLoaded):
        decode_gray(imagegen.encode_jpeg(imagegen.textured(2, 200, 100))[:200])


def test_large_images_are_decoded_reduced_but_keep_the_aspect() -> None:
    gray = decode_gray(imagegen.encode_jpeg(imagegen.textured(3, 2600, 1950), 85))
    assert gray.shape[1] >= 640 and abs(gray.shape[1] / gray.shape[0] - 2600 / 1950) < 0.01


def test_keypoints_are_in_the_callers_pixels() -> None:
    gray = decode_gray(imagegen.encode_png(imagegen.textured(4, 1000, 700)))
    features = extract(gray)
    assert (features.width, features.height) == (1000, 700)
    assert features.keypoints.dtype == np.float32 and features.descriptors.dtype == np.uint8
    assert features.descriptors.shape == (len(features), 32)
    assert features.keypoints[:, 0].max() > 700 and features.keypoints[:, 1].max() > 450
    assert features.keypoints.min() >= -0.5 and features.keypoints[:, 0].max() < 1000


def test_round_trip_through_bytes() -> None:
    features = extract(decode_gray(imagegen.encode_jpeg(imagegen.textured(5, 640, 480))))
    again = Features.from_bytes(features.to_bytes())
    assert (again.width, again.height) == (640, 480)
    assert np.array_equal(again.descriptors, features.descriptors)
    assert np.abs(again.keypoints - features.keypoints).max() < 0.02


@pytest.mark.parametrize("data", [b"", b"ORB1" + bytes(12), b"XXXX" + bytes(40)])
def test_garbage_bytes_raise_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        Features.from_bytes(data)


def test_truncated_record_raises_codec_error() -> None:
    data = extract(decode_gray(imagegen.encode_jpeg(imagegen.textured(6, 320, 240)))).to_bytes()
    with pytest.raises(CodecError):
        Features.from_bytes(data[:-1])


def test_featureless_image_has_no_details() -> None:
    features = extract(decode_gray(imagegen.encode_jpeg(imagegen.flat(640, 480))))
    assert recognisability(features) == 0
    with pytest.raises(ImageNoDetails):
        require_details(features)


def test_textured_image_is_well_rated() -> None:
    features = extract(decode_gray(imagegen.encode_jpeg(imagegen.textured(7, 640, 480))))
    assert recognisability(features) >= 4
    require_details(features)


def test_reference_features_add_tilted_views_in_the_images_own_pixels() -> None:
    gray = decode_gray(imagegen.encode_png(imagegen.textured(8, 1000, 700)))
    upright, reference = extract(gray), extract_reference(gray)
    assert (reference.width, reference.height) == (1000, 700)
    assert len(reference) > 1.5 * len(upright)
    assert np.array_equal(reference.descriptors[: len(upright)], upright.descriptors)
    assert reference.keypoints.min() >= -0.5
    assert reference.keypoints[:, 0].max() <= 999.5 and reference.keypoints[:, 1].max() <= 699.5
