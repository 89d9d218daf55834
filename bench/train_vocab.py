"""Trains the binary visual vocabulary shipped as `workers/data/vocab-orb-v<N>.npz`.

The training pictures are never the evaluation's: `bench/vocab_sources.json` names Debian packages
that are not sources of the dev set (nor of its held-out twin), the globs of the pictures used in
each and their licences. `--fetch` downloads those packages (`apt-get download`, nothing is
installed) and unpacks them (`dpkg -x`) into `--cache`, outside the repository; training then reads
the cache. `--generated` pictures of `shared.testing.imagegen` are added. Training descriptors are
what the index stores of a reference (`extract_reference`, PNG cut-outs laid on white as uploads
are), so the words cover the upright, tilted and far views alike; with `--upright`, only the
upright view's (`extract`), as v1 was trained.

    .venv/bin/python -m bench.train_vocab --fetch --groups 64 --words 4096 --out /tmp/vocab-orb-v3.npz

Two ways to build the two-level tree the loader reads (`--method`):
- `flat` (default): k-majority (k-means for bit vectors: assign by Hamming distance, centroid =
  per-bit majority) of `--words` words over every descriptor, then faiss's binary k-means groups
  the words themselves into `--groups` cells. This is how v2 was made (v1's flat words regrouped).
- `tree`: `--groups` coarse centroids over every descriptor, then under each group as many words
  as its share of the descriptors, trained on the group's own descriptors.

Measured on the dev set's tune half with the v2 features: v1/v2's flat words (trained on the dev
references) recall@1 0.898, a `tree` of 4,096 words trained on the dev references 0.878; 16,384
words (5 probed) and 65,536 words (10 probed) lost 2-3 points on the hold-out half, and 65,536 was
no faster at 10,000 references (faiss visits far more lists). Shipping the grouping makes the word
assignment identical on every machine, which saved indexes rely on. Trained on the sources list
instead (v3, 2026-12-02), 4,096 words lost 1-4 points on each half against v2, whatever the
method, views, word count or added pictures (README, "Visual vocabulary"), so v2 is still shipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from shared.errors import RecogError
from shared.testing import imagegen
from workers.decode import decode_gray
from workers.features import Features, extract, extract_reference

SOURCES = Path(__file__).with_name("vocab_sources.json")
DEFAULT_CACHE = Path.home() / ".cache" / "recog" / "vocab-sources"


def fetch(sources: list[dict[str, Any]], cache: Path) -> None:
    """Downloads and unpacks each source package not yet in `cache` (cache/<package>/ holds its
    files as installed). Warns when Debian now serves another version than the list names: the
    words may then differ slightly from the shipped ones."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for source in sources:
        package = source["package"]
        if (cache / package).is_dir():
            continue
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        deb = max(debs.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
        version = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
        ).stdout.strip()
        if version != source["version"]:
            print(f"warning: {package} {version} fetched, the vocabulary was trained on {source['version']}")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / package)], check=True)


def pictures(sources: list[dict[str, Any]], cache: Path) -> list[Path]:
    """The training pictures the list names: each glob's sorted matches, evenly thinned to its
    `max` (so one large folder of similar art does not outweigh the rest)."""
    out: list[Path] = []
    for source in sources:
        root = cache / source["package"]
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is missing: run with --fetch")
        for spec in source["files"]:
            matches = sorted(root.glob(spec["glob"]))
            if not matches:
                raise FileNotFoundError(f"{source['package']}: nothing matches {spec['glob']}")
            keep = spec.get("max", len(matches))
            out += [
                matches[i] for i in np.unique(np.linspace(0, len(matches) - 1, min(keep, len(matches))).astype(int))
            ]
    return out


def descriptors(files: list[Path], generated: int, upright: bool = False) -> np.ndarray:
    """(N, 32) uint8: every indexed ORB descriptor (only the upright view's with `upright`) of
    `files` and of the generated pictures. A file the service would refuse (undecodable, too few
    details) is skipped."""
    features: Callable[[np.ndarray], Features] = extract if upright else extract_reference
    out = []
    for path in tqdm(files, desc="pictures", unit="img"):
        try:
            out.append(features(decode_gray(path.read_bytes(), flatten=True)).descriptors)
        except RecogError:
            continue
    for seed in tqdm(range(generated), desc="generated", unit="img"):
        picture = imagegen.textured(5_000_000 + seed, 640, 480)
        out.append(features(decode_gray(imagegen.encode_jpeg(picture, 90))).descriptors)
    return np.concatenate(out)


def k_majority(data: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(k, 32) uint8 centroids of (N, 32) uint8 `data` and the (N,) label of each row."""
    centroids = data[rng.choice(len(data), k, replace=False)].copy()
    bits = np.unpackbits(data, axis=1)
    label = np.zeros(len(data), np.int64)
    for _ in range(iterations):
        index = faiss.IndexBinaryFlat(data.shape[1] * 8)
        index.add(centroids)
        label = index.search(data, 1)[1][:, 0]
        order = np.argsort(label, kind="stable")
        present, starts, counts = np.unique(label[order], return_index=True, return_counts=True)
        sums = np.add.reduceat(bits[order].astype(np.uint32), starts, axis=0)
        centroids[present] = np.packbits(sums * 2 > counts[:, None], axis=1)
        empty = np.setdiff1d(np.arange(k), present)
        centroids[empty] = data[rng.choice(len(data), len(empty), replace=False)]
    return centroids, label


def shares(counts: np.ndarray, total: int) -> np.ndarray:
    """Words per group: proportional to its descriptors, at least 1, never more than its descriptors,
    summing to `total` (largest remainders first)."""
    exact = counts / counts.sum() * total
    words: np.ndarray = np.clip(np.floor(exact).astype(np.int64), 1, counts)
    for group in np.argsort(-(exact - np.floor(exact))):
        if words.sum() >= total:
            break
        if words[group] < counts[group]:
            words[group] += 1
    return words


def tree(data: np.ndarray, groups: int, words: int, iterations: int, seed: int) -> dict[str, np.ndarray]:
    """`--method tree`: coarse centroids of `data`, then each group's own words (see module doc)."""
    rng = np.random.default_rng(seed)
    coarse, label = k_majority(data, groups, iterations, rng)
    per_group = shares(np.bincount(label, minlength=groups), words)
    leaves = []
    for group in tqdm(range(groups), desc="words", unit="group"):
        members = data[label == group]
        leaves.append(k_majority(members, int(per_group[group]), iterations, rng)[0])
    starts = np.concatenate([[0], np.cumsum([len(w) for w in leaves])]).astype(np.int64)
    return {"coarse": coarse, "words": np.concatenate(leaves), "starts": starts}


def flat(data: np.ndarray, groups: int, words: int, iterations: int, seed: int) -> dict[str, np.ndarray]:
    """`--method flat`: `words` k-majority words of all of `data`, then grouped (see module doc)."""
    return regroup(k_majority(data, words, iterations, np.random.default_rng(seed))[0], groups)


def regroup(flat: np.ndarray, groups: int) -> dict[str, np.ndarray]:
    """A tree of an existing flat vocabulary: faiss's binary k-means groups the words themselves."""
    quantizer = faiss.IndexBinaryFlat(flat.shape[1] * 8)
    ivf = faiss.IndexBinaryIVF(quantizer, flat.shape[1] * 8, groups)
    ivf.train(flat)
    ivf.add(flat)
    coarse = faiss.vector_to_array(quantizer.xb).reshape(groups, -1)  # type: ignore[attr-defined]  # SWIG, unstubbed
    members = [faiss.rev_swig_ptr(ivf.invlists.get_ids(g), ivf.invlists.list_size(g)).copy() for g in range(groups)]
    starts = np.concatenate([[0], np.cumsum([len(m) for m in members])]).astype(np.int64)
    return {"coarse": coarse, "words": flat[np.concatenate(members)], "starts": starts}


def save(path: Path, tree: dict[str, np.ndarray]) -> None:
    """The tree as the loader reads it: one .npz with its coarse centroids, words and group starts."""
    np.savez(path, coarse=tree["coarse"], words=tree["words"], starts=tree["starts"])


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_vocab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=Path, default=SOURCES, help="the list of training packages and globs")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the packages are unpacked")
    parser.add_argument("--fetch", action="store_true", help="download and unpack the packages not yet in --cache")
    parser.add_argument("--method", choices=("flat", "tree"), default="flat")
    parser.add_argument("--upright", action="store_true", help="train on the upright view's descriptors only")
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--words", type=int, default=4096)
    parser.add_argument(
        "--generated", type=int, default=300, help="shared.testing.imagegen pictures added to the training set"
    )
    parser.add_argument(
        "--sample", type=int, default=2_000_000, help="train on at most this many descriptors (a random sample)"
    )
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the tree file to write: a new name, never a shipped one (saved indexes know a vocabulary by its name)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    sources = json.loads(args.sources.read_text())["sources"]
    if args.fetch:
        fetch(sources, args.cache)
    files = pictures(sources, args.cache)
    data = descriptors(files, args.generated, args.upright)
    if len(data) > args.sample:
        data = data[np.random.default_rng(args.seed).choice(len(data), args.sample, replace=False)]
    print(f"{len(data)} descriptors of {len(files)} pictures in {time.perf_counter() - started:.0f} s")
    build = flat if args.method == "flat" else tree
    vocabulary = build(data, args.groups, args.words, args.iterations, args.seed)
    save(args.out, vocabulary)
    print(
        f"wrote {args.out}: {len(vocabulary['coarse'])} groups, {len(vocabulary['words'])} words, "
        f"in {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
