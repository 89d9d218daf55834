"""JPEG/PNG bytes to the grey image the matcher analyses; on the hot path of every search.

OpenCV's `imdecode` applies the EXIF orientation (also for grey and reduced reads), so the result is
the picture as a viewer displays it and corners come back in the displayed orientation. Images much
larger than the analysis size are decoded at 1/2, 1/4 or 1/8 scale: libjpeg then skips most of the
IDCT work, which is several times faster than decoding at full size and resizing afterwards.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from shared.errors import ImageNotLoaded, ImageTransparency
from shared.imagecheck import declares_alpha
from workers.tuning import DEFAULT, RecognitionSettings

_REDUCED = (
    (8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
    (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    (2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
)


def _read_flag(data: bytes, largest_analysis: int) -> int:
    """The largest reduced read that still leaves a long side >= `largest_analysis` px."""
    try:
        with Image.open(io.BytesIO(data)) as header:  # parses the header only, no pixels
            long_side = max(header.size)
    except Exception as exc:  # Pillow raises many unrelated types on garbage
        raise ImageNotLoaded() from exc
    for factor, flag in _REDUCED:
        if long_side >= factor * largest_analysis:
            return flag
    return cv2.IMREAD_GRAYSCALE


def decode_gray(data: bytes, *, settings: RecognitionSettings = DEFAULT, flatten: bool = False) -> np.ndarray:
    """Decodes JPEG or PNG bytes to an upright (h, w) uint8 grey image; raises ImageNotLoaded, or
    ImageTransparency for a PNG with any pixel that is not fully opaque (the front end reads
    headers only: the opacity check is here, where the pixels are decoded anyway). With `flatten`
    such a PNG is laid on white instead, as a product cut-out is printed on a page: what reference
    uploads do (a photo of the product never shows the see-through parts anyway).

    The size may be the original's divided by 2, 4 or 8 while its long side stays at least the
    largest analysis size (`settings.query_long_side`; see module doc); callers must use the
    returned array's shape, never the file's.
    """
    if declares_alpha(data):
        return _alpha_gray(data, flatten)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _read_flag(data, settings.query_long_side))
    if image is None or image.size == 0:
        raise ImageNotLoaded()
    return image


def _alpha_gray(data: bytes, flatten: bool) -> np.ndarray:
    """A PNG with an alpha channel (or a transparent colour), decoded with it: grey if every pixel
    is fully opaque; else laid on white with `flatten`, ImageTransparency without."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageNotLoaded()
    if image.ndim == 3 and image.shape[2] == 4:
        opaque = 255 if image.dtype == np.uint8 else 65535  # 8- or 16-bit PNG
        alpha = image[..., 3]
        if int(alpha.min()) < opaque and not flatten:
            raise ImageTransparency()
        gray = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY).astype(np.float32)
        cover = alpha.astype(np.float32) / opaque
        image = np.rint(gray * cover + opaque * (1 - cover)).astype(image.dtype)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.dtype != np.uint8:
        image = (image // 257).astype(np.uint8)
    return image
