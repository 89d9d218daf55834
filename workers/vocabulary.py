"""The binary visual vocabulary: ORB descriptors to visual words.

Words are k-majority centroids of ORB descriptors (trained by `bench/train_vocab.py`, shipped as
`data/vocab-orb-v1.npy`, (K, 32) uint8). The index uses the words as the coarse quantizer of its
inverted file: a query descriptor is compared only with the reference descriptors filed under the
same word(s).

Assignment is two-level: the words are grouped under `COARSE_WORDS` coarse centroids and a
descriptor is compared with the words of its `COARSE_PROBES` nearest groups only, ~10x fewer Hamming
distances than a flat search of all K words (4.4 -> 0.9 ms for 1000 descriptors, K = 4096). The
result is approximate but deterministic, and the same for references and queries, which is all an
inverted file needs. A bigger vocabulary keeps this shape (more groups, or a third level).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import faiss
import numpy as np

VOCABULARY_PATH = Path(__file__).with_name("data") / "vocab-orb-v1.npy"
BITS = 256  # ORB descriptor length
COARSE_WORDS = 64
COARSE_PROBES = 4


@cache
def words() -> np.ndarray:
    """(K, 32) uint8 centroids, loaded once per process."""
    centroids: np.ndarray = np.load(VOCABULARY_PATH)
    if centroids.dtype != np.uint8 or centroids.ndim != 2 or centroids.shape[1] * 8 != BITS:
        raise ValueError(f"{VOCABULARY_PATH}: expected (K, 32) uint8, got {centroids.shape} {centroids.dtype}")
    return centroids


class Quantizer:
    """The two-level word assigner as a faiss index (`.index`), usable as an IVF's quantizer.

    Holds the coarse index too: faiss borrows it, so it must live as long as `.index`.
    """

    def __init__(self) -> None:
        self._coarse = faiss.IndexBinaryFlat(BITS)
        self.index = faiss.IndexBinaryIVF(self._coarse, BITS, COARSE_WORDS)
        self.index.train(words())  # faiss's k-means has a fixed seed: the grouping is reproducible
        self.index.add(words())
        self.index.nprobe = COARSE_PROBES


@cache
def quantizer() -> Quantizer:
    """The process's word assigner, built once (~80 ms) and shared by every collection's inverted
    file: they only read it, and concurrent faiss searches are thread-safe."""
    return Quantizer()


def assign(descriptors: np.ndarray) -> np.ndarray:
    """(N,) int32 word of each (N, 32) uint8 descriptor: the Hamming-nearest word among the
    `COARSE_PROBES` groups nearest to it (the same assignment the inverted files use)."""
    if len(descriptors) == 0:
        return np.zeros(0, np.int32)
    label: np.ndarray = quantizer().index.search(np.ascontiguousarray(descriptors, np.uint8), 1)[1]
    return label[:, 0].astype(np.int32)
