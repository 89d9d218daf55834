"""The contract's image rules, shared by search queries and reference uploads.

Only the header is read (Pillow's `Image.open` is lazy), so an oversized or bogus image is refused
before anything allocates its pixels; the one exception is a PNG that declares transparency, whose
alpha channel has to be decoded to know whether any pixel is actually see-through.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shared.config import Settings
from shared.errors import (
    ImageNotLoaded,
    ImageTooLarge,
    ImageTooSmall,
    ImageTransparency,
)

FORMATS = ("JPEG", "PNG")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def declares_alpha(data: bytes) -> bool:
    """Whether `data` is a PNG whose header declares an alpha channel or a transparent colour."""
    if not data.startswith(PNG_SIGNATURE):
        return False
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _has_alpha(image)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return False


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: `format` is `JPEG` or `PNG`; `width`, `height` in pixels (as stored,
    before any EXIF rotation)."""

    format: str
    width: int
    height: int


def inspect(data: bytes, settings: Settings, *, opacity: bool = True) -> ImageInfo:
    """Checks `data` against the limits in `settings`, in the order a client would fix them: size in
    bytes, format, pixel count, shorter side, transparency. Raises the contract's IMAGE_* errors.

    With `opacity=False` only the header is read: whoever decodes the pixels anyway checks opacity
    (the search workers do, `workers.decode`), so a front end never decodes a 40-megapixel PNG."""
    if len(data) > settings.max_upload_bytes:
        raise ImageTooLarge(f"The image is larger than the {settings.max_upload_bytes} byte limit.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            info = ImageInfo(str(image.format), image.width, image.height)
            _check(info, settings)
            if opacity and info.format == "PNG" and _has_alpha(image) and _min_alpha(image) < 255:
                raise ImageTransparency()
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"The image has more than the {settings.max_pixels} pixel limit.") from None
    except (OSError, ValueError, SyntaxError, EOFError):
        # Pillow reports unreadable or truncated data with any of these, depending on the plugin.
        raise ImageNotLoaded() from None
    return info


def _check(info: ImageInfo, settings: Settings) -> None:
    if info.format not in FORMATS:
        raise ImageNotLoaded(f"The image is {info.format}; send a JPEG or a PNG.")
    if info.width * info.height > settings.max_pixels:
        raise ImageTooLarge(
            f"The image has {info.width}x{info.height} pixels, more than the {settings.max_pixels} pixel limit."
        )
    if min(info.width, info.height) < settings.min_side:
        raise ImageTooSmall(
            f"The image is {info.width}x{info.height} pixels; "
            f"its shorter side must be at least {settings.min_side} pixels."
        )


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _min_alpha(image: Image.Image) -> int:
    """The smallest alpha value of any pixel (255: fully opaque). Decodes the image."""
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    return int(np.asarray(rgba.getchannel("A")).min())
