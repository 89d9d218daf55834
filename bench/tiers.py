"""Two tiers the development set lacks, built from its references with a fixed seed, then measured
with `bench.accuracy` (same index: the dev references and distractors):

- `low-res`: one per reference, what a video SDK sends: 320x240 grayscale frames of a small object
  (8-30 % of the frame), motion blur of 2-6 px, JPEG quality 15-35. Positives.
- `near-duplicate`: one per reference, a copy with a small local edit (a price or code drawn over a
  textured patch, or a patch of another reference pasted in; 1.5-5 % of the picture), photographed
  like the dev set's positives. Negatives: a printed set differing in one label must not match.

Then, in a second data set (`tiers-seed<SEED>-pairs/`, report `tiers-pairs.json`), each edited
picture is indexed beside its original: the near-duplicates' photos must find the edited picture
first, and the dev set's positives still the original (a collection holding a printed set's variants).

Both are rendered by the dev set's own phone simulator (`tools/phonesim.py` of the data set, imported
from there, not copied), over backgrounds cropped from the set's unrelated negative photos (never
indexed). The data set is written to `bench/results/cache/tiers-seed<SEED>/` (references and
distractors are links to the dev set's folders) and kept, so `bench.accuracy` can be re-run on it.

    .venv/bin/python -m bench.tiers [--dev DIR] [--seed 1] [--out bench/results/tiers.json] [--set FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from bench.accuracy import DEFAULT_DATASET, ROOT, add_settings_option, measure, parsed_settings

CACHE = ROOT / "bench" / "results" / "cache"
DEFAULT_OUT = ROOT / "bench" / "results" / "tiers.json"
VIDEO_SIZE = (320, 240)
EDIT_AREA = (0.015, 0.05)  # share of the reference a near-duplicate's edit covers
_LABEL_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
REFERENCE_QUALITY = 90  # JPEG quality of the dev set's references, and of the edited pictures
EDIT_CANDIDATES = 12  # places tried for an edit; the most textured wins (an edit of a blank wall changes nothing)


def load_phonesim(dev: Path) -> ModuleType:
    """The data set's own renderer, so tiers are photographed exactly like its queries."""
    spec = importlib.util.spec_from_file_location("phonesim", dev / "tools" / "phonesim.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(dev / "tools" / "phonesim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def key_rng(seed: int, key: str) -> np.random.Generator:
    """A query is a pure function of (seed, its key), as in the data set's own build."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def low_res_params(ps: ModuleType, rng: np.random.Generator) -> dict[str, Any]:
    """phonesim's parameters of a random photo, turned into a small, blurred, compressed video frame."""
    params: dict[str, Any] = ps.sample_params(rng)
    width, height = VIDEO_SIZE
    params.update(
        W=width,
        H=height,
        f=float(rng.uniform(0.75, 1.3) * width),
        cover=float(rng.uniform(0.08, 0.3)),
        motion=float(rng.uniform(2.0, 6.0)),
        defocus=float(rng.uniform(0.0, 1.0)),
        q=int(rng.integers(15, 36)),
        sharpen=0.0,
    )
    return params


def textured_box(gray: np.ndarray, area: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a box of `area` (share of the picture) over the most textured of a few
    random places: a label or a price, where the features that identify a picture are."""
    h, w = gray.shape
    aspect = rng.uniform(1.5, 3.0)  # labels are wider than tall
    bw = min(w - 2, max(8, round(np.sqrt(area * w * h * aspect))))
    bh = min(h - 2, max(6, round(area * w * h / bw)))
    edges = np.abs(cv2.Laplacian(gray, cv2.CV_32F))
    boxes = [
        (int(x), int(y), int(x) + bw, int(y) + bh)
        for x, y in zip(rng.integers(0, w - bw, EDIT_CANDIDATES), rng.integers(0, h - bh, EDIT_CANDIDATES), strict=True)
    ]
    return max(boxes, key=lambda b: float(edges[b[1] : b[3], b[0] : b[2]].sum()))


def draw_label(picture: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    """Paints over `box` with its median colour and writes a random price or code on it, in place."""
    x0, y0, x1, y1 = box
    patch = picture[y0:y1, x0:x1]
    ground = tuple(int(v) for v in np.median(patch.reshape(-1, 3), axis=0))
    ink = (0, 0, 0) if sum(ground) > 3 * 127 else (255, 255, 255)  # printed to be read
    if rng.random() < 0.5:
        text = f"{rng.integers(1, 100)}.{rng.integers(0, 100):02d}"
    else:
        text = "".join(rng.choice(list(_LABEL_LETTERS), size=int(rng.integers(3, 6))))
    image = Image.fromarray(patch)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, x1 - x0, y1 - y0), fill=ground)
    font = ImageFont.load_default(size=max(6, round((y1 - y0) * 0.8)))
    draw.text(((x1 - x0) / 2, (y1 - y0) / 2), text, fill=ink, font=font, anchor="mm")
    picture[y0:y1, x0:x1] = np.asarray(image)


def paste_patch(
    picture: np.ndarray, box: tuple[int, int, int, int], donor: np.ndarray, rng: np.random.Generator
) -> None:
    """Replaces `box` by a random region of another reference (a logo or picture swapped), in place."""
    x0, y0, x1, y1 = box
    dh, dw = donor.shape[:2]
    side = rng.uniform(0.2, 0.5)
    cw, ch = max(2, round(dw * side)), max(2, round(dh * side))
    cx, cy = int(rng.integers(0, dw - cw + 1)), int(rng.integers(0, dh - ch + 1))
    region = donor[cy : cy + ch, cx : cx + cw]
    picture[y0:y1, x0:x1] = cv2.resize(region, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)


def near_duplicate(
    reference: np.ndarray, donor: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """A copy of `reference` (uint8 RGB) with one small local edit, and what was edited; `donor`
    (uint8 RGB, another reference) gives the pasted patches."""
    edited = reference.copy()
    area = float(rng.uniform(*EDIT_AREA))
    box = textured_box(cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY), area, rng)
    edit = "label" if rng.random() < 0.5 else "patch"
    if edit == "label":
        draw_label(edited, box, rng)
    else:
        paste_patch(edited, box, donor, rng)
    return edited, {"edit": edit, "edit_box": list(box), "edit_area": round(area, 4)}


def photograph(
    ps: ModuleType, picture: np.ndarray, params: dict[str, Any], backgrounds: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """phonesim's render of `picture` over a random background; a degenerate pose is drawn again."""
    for _ in range(10):
        try:
            background = backgrounds[int(rng.integers(len(backgrounds)))]
            image, corners, measured = ps.render(picture, params, background, rng)
            return image, corners, measured
        except ValueError:
            params = {**params, "azim": float(rng.uniform(0, 360)), "tilt": float(rng.uniform(0, 48))}
    raise ValueError("no valid pose in 10 draws")


class _Tiers:
    """Renders the two tiers' queries of one reference each (see module doc) into `out`/queries."""

    def __init__(self, dev: Path, out: Path, seed: int) -> None:
        self.ps = load_phonesim(dev)
        self.dev, self.out, self.seed = dev, out, seed
        self.manifest = json.loads((dev / "manifest.json").read_text())
        self.backgrounds = [
            self.ps.to3(self.ps.load_rgb(dev / q["file"]))
            for q in self.manifest["queries"]
            if q.get("kind") == "negative-unrelated"
        ]

    def picture(self, entry: dict[str, Any]) -> np.ndarray:
        return self.ps.to3(self.ps.load_rgb(self.dev / entry["file"]))  # type: ignore[no-any-return]

    def low_res(self, number: int, entry: dict[str, Any]) -> dict[str, Any]:
        rng = key_rng(self.seed, f"low-res:{entry['id']}")
        image, corners, measured = photograph(
            self.ps, self.picture(entry), low_res_params(self.ps, rng), self.backgrounds, rng
        )
        name = f"queries/L{number:03d}.jpg"
        self.ps.save_jpeg(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), self.out / name, measured["q"])
        edges = corners + (self.ps.SS - 1) / (2 * self.ps.SS)  # render's corners: supersampled pixel centres
        return {
            "id": f"L{number:03d}",
            "file": name,
            "expected": entry["id"],
            "kind": "low-res",
            "tier": self.ps.tier_of(measured),
            "corners": (edges / np.array(VIDEO_SIZE)).round(5).tolist(),
            "size": list(VIDEO_SIZE),
        }

    def near_duplicate(self, number: int, entry: dict[str, Any]) -> dict[str, Any]:
        rng = key_rng(self.seed, f"near-duplicate:{entry['id']}")
        references = self.manifest["references"]
        donor = references[(number + int(rng.integers(len(references) - 1))) % len(references)]  # never `entry`
        edited, edit = near_duplicate(self.picture(entry), self.picture(donor), rng)
        self.ps.save_jpeg(edited, self.out / "variants" / f"V{number:03d}.jpg", REFERENCE_QUALITY)
        image, _, measured = photograph(self.ps, edited, self.ps.sample_params(rng), self.backgrounds, rng)
        name = f"queries/N{number:03d}.jpg"
        self.ps.save_jpeg(image, self.out / name, measured["q"])
        return {
            "id": f"N{number:03d}",
            "file": name,
            "expected": None,
            "kind": "near-duplicate",
            "tier": self.ps.tier_of(measured),
            "source": entry["id"],
            "size": measured["size"],
            "params": edit,
        }


def folder(seed: int) -> Path:
    return CACHE / f"tiers-seed{seed}"


def link(out: Path, targets: dict[str, Path]) -> None:
    """Folders of `out` that are links to others (no image is copied)."""
    for name, target in targets.items():
        if not (out / name).exists():
            (out / name).symlink_to(target.resolve(), target_is_directory=True)


def build(dev: Path, seed: int) -> Path:
    """Writes the tiers' data set (see module doc) and returns its folder."""
    out = folder(seed)
    for part in ("queries", "variants"):
        (out / part).mkdir(parents=True, exist_ok=True)
    link(out, {"references": dev / "references", "distractors": dev / "distractors"})
    tiers = _Tiers(dev, out, seed)
    references = tiers.manifest["references"]
    queries = []
    for number, entry in enumerate(tqdm(references, desc="render", unit="ref"), start=1):
        queries += [tiers.low_res(number, entry), tiers.near_duplicate(number, entry)]
    keep = ("id", "file")
    indexed = {
        part: [{k: e[k] for k in keep} for e in tiers.manifest.get(part, [])] for part in ("references", "distractors")
    }
    (out / "manifest.json").write_text(json.dumps({"seed": seed, **indexed, "queries": queries}, indent=1))
    return out


def build_pairs(dev: Path, tiers: Path) -> Path:
    """A data set with each near-duplicate's edited picture indexed beside its original: do the photos
    of the edited picture find it first, and do the dev set's photos still find the original? (What a
    collection holding both variants of a printed set asks of the engine.)"""
    out = tiers.with_name(tiers.name + "-pairs")
    out.mkdir(parents=True, exist_ok=True)
    link(
        out,
        {
            "references": dev / "references",
            "distractors": dev / "distractors",
            "variants": tiers / "variants",
            "queries": tiers / "queries",
            "dev-queries": dev / "queries",
        },
    )
    manifest = json.loads((tiers / "manifest.json").read_text())
    near = [q for q in manifest["queries"] if q["kind"] == "near-duplicate"]
    variants = [{"id": "V" + q["id"][1:], "file": f"variants/V{q['id'][1:]}.jpg"} for q in near]
    queries = [{**q, "expected": "V" + q["id"][1:], "kind": "edited, both indexed"} for q in near]
    queries += [
        {**q, "file": "dev-" + q["file"], "kind": "original, both indexed"}
        for q in json.loads((dev / "manifest.json").read_text())["queries"]
        if q.get("expected")
    ]
    indexed = {"references": manifest["references"] + variants, "distractors": manifest["distractors"]}
    (out / "manifest.json").write_text(json.dumps({**manifest, **indexed, "queries": queries}, indent=1))
    return out


def cached(dev: Path, seed: int) -> Path:
    """The tiers' data set of `seed`, built unless a previous run left it (rendering takes minutes)."""
    out = folder(seed)
    return out if (out / "manifest.json").exists() else build(dev, seed)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tiers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dev", type=Path, default=DEFAULT_DATASET, help="the development set (references, tools/)")
    parser.add_argument("--seed", type=int, default=1, help="every query is a function of (seed, reference)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    add_settings_option(parser)
    args = parser.parse_args()
    settings = parsed_settings(parser, args.assignments)
    tiers = build(args.dev, args.seed)
    measure(tiers, args.out, settings)
    measure(build_pairs(args.dev, tiers), args.out.with_name(args.out.stem + "-pairs.json"), settings)


if __name__ == "__main__":
    main()
