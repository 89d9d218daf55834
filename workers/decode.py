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

from shared.errors import ImageNotLoaded
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


def decode_gray(data: bytes, *, settings: RecognitionSettings = DEFAULT) -> np.ndarray:
    """Decodes JPEG or PNG bytes to an upright (h, w) uint8 grey image; raises ImageNotLoaded.

    The size may be the original's divided by 2, 4 or 8 while its long side stays at least the
    largest analysis size (`settings.query_long_side`; see module doc); callers must use the
    returned array's shape, never the file's.
    """
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _read_flag(data, settings.query_long_side))
    if image is None or image.size == 0:
        raise ImageNotLoaded()
    return image
