"""The image rules shared by searches and uploads, on images made in memory."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from shared.config import Settings
from shared.errors import (
    ImageNotLoaded,
    ImageTooLarge,
    ImageTooSmall,
    ImageTransparency,
)
from shared.imagecheck import ImageInfo, inspect
from workers.decode import decode_gray

SETTINGS = Settings.from_env({})


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    bands = len(mode)
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, bands), dtype=np.uint8)
    return Image.fromarray(pixels[:, :, 0] if bands == 1 else pixels, mode)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` but carries no pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_jpeg_header_is_read() -> None:
    assert inspect(encoded(noise(320, 240), "JPEG"), SETTINGS) == ImageInfo("JPEG", 320, 240)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_opaque_png_is_accepted(mode: str) -> None:
    image = noise(200, 150, mode)
    if mode == "RGBA":
        image.putalpha(255)
    assert inspect(encoded(image, "PNG"), SETTINGS) == ImageInfo("PNG", 200, 150)


def test_png_with_a_transparent_pixel_is_refused() -> None:
    image = noise(200, 150, "RGBA")
    image.putalpha(255)
    image.putpixel((10, 10), (0, 0, 0, 254))
    with pytest.raises(ImageTransparency):
        inspect(encoded(image, "PNG"), SETTINGS)


def test_header_only_check_never_decodes_the_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the search front end runs: a transparent PNG passes (the worker that decodes it refuses
    it), and the pixels are never read."""
    image = noise(200, 150, "RGBA")
    image.putalpha(10)
    data = encoded(image, "PNG")
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("the pixels were decoded"))
    assert inspect(data, SETTINGS, opacity=False) == ImageInfo("PNG", 200, 150)


@pytest.mark.parametrize(("mode", "transparent"), [("RGBA", True), ("RGBA", False), ("LA", True), ("P", True)])
def test_the_worker_decoder_refuses_transparent_pngs(mode: str, transparent: bool) -> None:
    image = noise(200, 150, "RGBA")
    image.putalpha(255)
    if transparent:
        image.putpixel((10, 10), (0, 0, 0, 0))
    converted = image.convert(mode) if mode != "P" else image.convert("RGB").convert("P")
    options = {"transparency": converted.getpixel((10, 10))} if mode == "P" else {}
    data = encoded(converted, "PNG", **options)
    if transparent:
        with pytest.raises(ImageTransparency):
            decode_gray(data)
    else:
        assert decode_gray(data).shape == (150, 200)


def test_a_reference_cut_out_is_decoded_on_white() -> None:
    picture = np.asarray(noise(200, 150, "L"))
    rgba = np.zeros((150, 300, 4), np.uint8)
    rgba[:, 100:, :3] = picture[..., None]
    rgba[:, 100:, 3] = 255
    rgba[:, 50:100, :3], rgba[:, 50:100, 3] = 0, 128  # half see-through black: mid grey on white
    gray = decode_gray(encoded(Image.fromarray(rgba, "RGBA"), "PNG"), flatten=True)
    assert gray.shape == (150, 300)
    assert (gray[:, :50] == 255).all() and np.abs(gray[:, 50:100].astype(int) - 127).max() <= 1
    assert np.abs(gray[:, 100:].astype(int) - picture).max() <= 1


def test_palette_png_with_a_transparent_colour_is_refused() -> None:
    image = noise(200, 150, "L").convert("P")
    with pytest.raises(ImageTransparency):
        inspect(encoded(image, "PNG", transparency=image.getpixel((0, 0))), SETTINGS)


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", encoded(noise(200, 150), "GIF"), encoded(noise(200, 150), "BMP")]
)
def test_other_bytes_and_formats_are_not_loaded(data: bytes) -> None:
    with pytest.raises(ImageNotLoaded):
        inspect(data, SETTINGS)


def test_truncated_png_with_alpha_is_not_loaded() -> None:
    data = encoded(noise(200, 150, "RGBA"), "PNG")
    with pytest.raises(ImageNotLoaded):
        inspect(data[: len(data) // 2], SETTINGS)


def test_shorter_side_below_the_minimum_is_too_small() -> None:
    with pytest.raises(ImageTooSmall, match="100"):
        inspect(encoded(noise(640, 99), "JPEG"), SETTINGS)


def test_bytes_above_the_limit_are_too_large() -> None:
    settings = Settings.from_env({"RECOG_MAX_UPLOAD_BYTES": "2000"})
    with pytest.raises(ImageTooLarge, match="byte"):
        inspect(encoded(noise(320, 240), "PNG"), settings)


def test_pixels_above_the_limit_are_too_large() -> None:
    settings = Settings.from_env({"RECOG_MAX_PIXELS": "10000"})
    with pytest.raises(ImageTooLarge, match="pixel"):
        inspect(encoded(noise(120, 120), "JPEG"), settings)


def test_decompression_bomb_is_refused_from_its_header() -> None:
    with pytest.raises(ImageTooLarge):
        inspect(png_header_only(30_000, 30_000), SETTINGS)
    with pytest.raises(ImageTooLarge):
        inspect(png_header_only(8_000, 6_000), SETTINGS)  # below Pillow's own limit, above ours
