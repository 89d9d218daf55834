"""Trains the binary visual vocabulary shipped as `workers/data/vocab-orb-v<N>.npy`.

k-majority clustering (k-means for bit vectors: assign by Hamming distance, centroid = per-bit
majority) on the ORB descriptors of the dev set's references and distractors, never its queries.
Descriptors come from `workers.features.extract` (upright, as v1 was trained), or with
`--reference-views` from `extract_reference` (upright plus tilted views: what the index stores).

    v1 (shipped): .venv/bin/python bench/train_vocab.py /work/shared/data/recognition-dev --words 4096

A 16k-word candidate (`--words 16384 --iterations 5 --reference-views`, ~5 min on one core) was
measured and not shipped: hold-out recall@1 0.945 -> 0.904 (hard 0.860 -> 0.767) with 2 probed
words, and no faster search on the dev set (the two-level word assignment costs more).
The centroids are saved after every iteration, so a long run can be stopped early.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workers.decode import decode_gray  # noqa: E402
from workers.features import extract, extract_reference  # noqa: E402
from workers.vocabulary import VOCABULARY_PATH  # noqa: E402


def descriptors(root: Path, reference_views: bool) -> np.ndarray:
    """(N, 32) uint8: every ORB descriptor of references/ and distractors/."""
    files = sorted((root / "references").glob("*.jpg")) + sorted((root / "distractors").glob("*.jpg"))
    extractor = extract_reference if reference_views else extract
    return np.concatenate([extractor(decode_gray(f.read_bytes())).descriptors for f in files])


def k_majority(data: np.ndarray, words: int, iterations: int, seed: int, out: Path) -> np.ndarray:
    """(words, 32) uint8 centroids of (N, 32) uint8 `data`, saved to `out` after every iteration."""
    rng = np.random.default_rng(seed)
    centroids = data[rng.choice(len(data), words, replace=False)].copy()
    bits = np.unpackbits(data, axis=1)  # (N, 256) 0/1
    for iteration in range(iterations):
        index = faiss.IndexBinaryFlat(data.shape[1] * 8)
        index.add(centroids)
        distance, label = index.search(data, 1)
        label = label[:, 0]
        order = np.argsort(label, kind="stable")
        present, starts, counts = np.unique(label[order], return_index=True, return_counts=True)
        sums = np.add.reduceat(bits[order].astype(np.uint32), starts, axis=0)
        centroids[present] = np.packbits(sums * 2 > counts[:, None], axis=1)
        empty = np.setdiff1d(np.arange(words), present)
        centroids[empty] = data[rng.choice(len(data), len(empty), replace=False)]
        print(f"iteration {iteration}: mean distance {distance.mean():.1f} bits, {len(empty)} empty words", flush=True)
        np.save(out, centroids)
    return centroids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dev_set", type=Path)
    parser.add_argument("--words", type=int, default=4096)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reference-views", action="store_true", help="train on extract_reference's features")
    parser.add_argument("--out", type=Path, default=VOCABULARY_PATH)
    args = parser.parse_args()
    started = time.perf_counter()
    data = descriptors(args.dev_set, args.reference_views)
    print(f"{len(data)} descriptors in {time.perf_counter() - started:.0f} s")
    k_majority(data, args.words, args.iterations, args.seed, args.out)
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
