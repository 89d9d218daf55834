"""Deterministic synthetic images for the tests and benches (no files from outside the repo).

Every function is a pure function of its arguments: the same seed and size give the same pixels on
every run, so a failing test can be replayed. Images are BGR uint8 (OpenCV's order), shape (h, w, 3).

- `textured`: a rich, ORB-friendly "poster" (gradient, shapes, text, noise blobs), distinct per seed.
- `clutter`: a busy background with a different style, so it never contains a `textured` picture.
- `place`: the picture seen in perspective on a background, corners given exactly.
- `flat`: a featureless image (IMAGE_NO_DETAILS).
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

# Pillow's inverse of what `ImageOps.exif_transpose` does for each EXIF orientation: applying it
# to the displayed picture gives the pixels a camera would store with that tag.
_STORE_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX)
_LETTERS = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789#&%@"))


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A linear two-colour gradient in a random direction, (h, w, 3) uint8."""
    angle = rng.uniform(0, 2 * np.pi)
    xs, ys = np.meshgrid(np.linspace(0, 1, w, dtype=np.float32), np.linspace(0, 1, h, dtype=np.float32))
    t = np.cos(angle) * xs + np.sin(angle) * ys
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    out: np.ndarray = (a + t[..., None] * (b - a)).astype(np.uint8)
    return out


def textured(seed: int, w: int, h: int) -> np.ndarray:
    """A distinct, feature-rich picture for `seed`, (h, w, 3) BGR uint8.

    Shapes are drawn in a size-relative way with high-contrast colours and edges, so ORB finds many
    stable corners at any size from ~90 px up.
    """
    rng = np.random.default_rng(seed)
    img = _gradient(rng, w, h)
    scale = max(w, h) / 480.0
    for _ in range(int(rng.integers(40, 60))):
        kind = int(rng.integers(0, 4))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = max(2, int(rng.uniform(8, 70) * scale))
        thick = -1 if rng.random() < 0.6 else max(1, int(rng.integers(1, 5) * scale))
        colour = _colour(rng)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + size, y + int(size * rng.uniform(0.4, 1.6))), colour, thick, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(img, (x, y), size // 2, colour, thick, cv2.LINE_AA)
        elif kind == 2:
            points = rng.integers(-size, size, (int(rng.integers(3, 7)), 2)) + np.array([x, y])
            cv2.fillPoly(img, [points.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = (x + int(rng.integers(-2 * size, 2 * size)), y + int(rng.integers(-2 * size, 2 * size)))
            cv2.line(img, (x, y), end, colour, max(1, int(rng.integers(1, 6) * scale)), cv2.LINE_AA)
    for _ in range(int(rng.integers(6, 12))):
        text = "".join(rng.choice(_LETTERS, int(rng.integers(3, 8))))
        org = (int(rng.integers(0, max(1, w - 40))), int(rng.integers(15, max(16, h))))
        font = _FONTS[int(rng.integers(0, len(_FONTS)))]
        cv2.putText(
            img, text, org, font, rng.uniform(0.5, 1.6) * scale, _colour(rng), max(1, int(2 * scale)), cv2.LINE_AA
        )
    # Noise blobs: small random-valued patches, blurred a little, for fine texture.
    coarse = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    noise = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST)
    blobs = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (max(2, int(rng.uniform(15, 60) * scale)), max(2, int(rng.uniform(15, 60) * scale)))
        cv2.ellipse(blobs, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    img[blobs > 0] = noise[blobs > 0]
    blurred: np.ndarray = cv2.GaussianBlur(img, (3, 3), 0.6)
    return blurred


def clutter(seed: int, w: int, h: int) -> np.ndarray:
    """A busy, low-contrast background (hatching, ellipses, speckle), (h, w, 3) BGR uint8.

    Drawn with different primitives and an RNG stream apart from `textured`'s, so it never contains
    a reference; it does have corners, like a real desk or wall would.
    """
    rng = np.random.default_rng([seed, 0xC1077E2])
    img = (_gradient(rng, w, h) // 2 + 64).astype(np.uint8)
    for _ in range(int(rng.integers(60, 120))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(3, 40)), int(rng.integers(3, 40)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, _colour(rng), int(rng.integers(1, 3)))
    spacing = int(rng.integers(12, 30))
    for offset in range(-h, w, spacing):
        cv2.line(img, (offset, 0), (offset + h, h), _colour(rng), 1, cv2.LINE_AA)
    speckle = rng.normal(0, 12, (h, w, 1)).astype(np.float32)
    out: np.ndarray = np.clip(img.astype(np.float32) + speckle, 0, 255).astype(np.uint8)
    return out


def flat(w: int, h: int) -> np.ndarray:
    """A uniform mid-grey picture with no features at all, (h, w, 3) BGR uint8."""
    return np.full((h, w, 3), 128, np.uint8)


def place(background: np.ndarray, picture: np.ndarray, corners_px: np.ndarray) -> np.ndarray:
    """`picture` warped onto a copy of `background` so its TL, TR, BL, BR corners land on `corners_px`.

    corners_px: (4, 2) x, y in pixels of the background, pixel-edge convention ((0, 0) is the outer
    corner of the top-left pixel), so `corners_px / (w, h)` is exactly the normalised ground truth.
    Edges are anti-aliased by warping a coverage mask with the same homography.
    """
    ph, pw = picture.shape[:2]
    bh, bw = background.shape[:2]
    source = np.array([[0, 0], [pw, 0], [0, ph], [pw, ph]], np.float32)
    edge_h = cv2.getPerspectiveTransform(source, np.asarray(corners_px, np.float32))
    # warpPerspective works on pixel centres: shift into the edge convention and back out.
    to_edge = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    from_edge = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    centre_h = from_edge @ edge_h @ to_edge
    warped = cv2.warpPerspective(picture, centre_h, (bw, bh), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), centre_h, (bw, bh), flags=cv2.INTER_LINEAR)[..., None]
    out = background.astype(np.float32) * (1 - mask) + warped.astype(np.float32) * mask
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def encode_jpeg(img: np.ndarray, quality: int = 90, orientation: int = 1) -> bytes:
    """JPEG bytes of a BGR image. With `orientation` 2..8, `img` is what a viewer should DISPLAY:
    the stored pixels are transposed accordingly and the EXIF Orientation tag is written."""
    if orientation == 1:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return buf.tobytes()
    stored = Image.fromarray(np.ascontiguousarray(img[:, :, ::-1])).transpose(_STORE_TRANSPOSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a BGR (or grey) image."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
