"""Trains the binary visual vocabulary shipped as `workers/data/vocab-orb-v<N>.npy`.

k-majority clustering (k-means for bit vectors: assign by Hamming distance, centroid = per-bit
majority) on the ORB descriptors of the dev set's references and distractors, never its queries.
Descriptors come from `workers.features.extract`, the same pipeline the service runs.

    .venv/bin/python bench/train_vocab.py /work/shared/data/recognition-dev --words 4096
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
from workers.features import extract  # noqa: E402
from workers.vocabulary import VOCABULARY_PATH  # noqa: E402


def descriptors(root: Path) -> np.ndarray:
    """(N, 32) uint8: every ORB descriptor of references/ and distractors/."""
    files = sorted((root / "references").glob("*.jpg")) + sorted((root / "distractors").glob("*.jpg"))
    return np.concatenate([extract(decode_gray(f.read_bytes())).descriptors for f in files])


def k_majority(data: np.ndarray, words: int, iterations: int, seed: int) -> np.ndarray:
    """(words, 32) uint8 centroids of (N, 32) uint8 `data`."""
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
        print(f"iteration {iteration}: mean distance {distance.mean():.1f} bits, {len(empty)} empty words")
    return centroids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dev_set", type=Path)
    parser.add_argument("--words", type=int, default=4096)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=VOCABULARY_PATH)
    args = parser.parse_args()
    started = time.perf_counter()
    data = descriptors(args.dev_set)
    print(f"{len(data)} descriptors in {time.perf_counter() - started:.0f} s")
    np.save(args.out, k_majority(data, args.words, args.iterations, args.seed))
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
