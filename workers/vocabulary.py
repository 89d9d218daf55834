"""The binary visual vocabulary: ORB descriptors to visual words.

Words are k-majority centroids of ORB descriptors (`bench/train_vocab.py`), shipped with their
grouping as `data/vocab-orb-v2.npz`: `coarse` centroids, and under each the words of its cell. A
descriptor is compared with the coarse centroids, then with the words of its `coarse_probes`
(`workers.tuning`) nearest groups only: ~10x fewer Hamming distances than a flat search of every word (4.4 -> 0.9 ms
for 1000 descriptors at 4,096 words). The result is approximate but deterministic and the same for
references and queries, which is all an inverted file needs.

The grouping is shipped rather than computed at start-up (faiss's k-means, as v1 did), so the
assignment is the same on every machine and faiss version: an index saved by one worker is read
by another (`workers.snapshots`), and a different grouping would silently lose matches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import faiss
import numpy as np

from workers.tuning import DEFAULT

SHIPPED = Path(__file__).with_name("data") / "vocab-orb-v2.npz"
# RECOG_VOCABULARY names another tree file, to measure one without replacing the shipped file
# (`bench.accuracy`). Read once: every index of the process must use the same words, and saved
# indexes record the file's name (`workers.index.saved_under`), so one made with another is rebuilt.
VOCABULARY_PATH = Path(os.environ.get("RECOG_VOCABULARY") or SHIPPED)
BITS = 256  # ORB descriptor length


@dataclass(frozen=True)
class Tree:
    """The shipped tree: coarse (G, 32) uint8 centroids; words (K, 32) uint8, group g's words at
    rows starts[g]:starts[g + 1]."""

    coarse: np.ndarray
    words: np.ndarray
    starts: np.ndarray


def load(path: Path = VOCABULARY_PATH) -> Tree:
    """The tree in `path`; raises ValueError if it is not a well-formed one (a bad data file must
    stop the worker, not mis-assign every descriptor)."""
    with np.load(path, allow_pickle=False) as data:
        tree = Tree(data["coarse"], data["words"], data["starts"].astype(np.int64))
    for name, array in (("coarse", tree.coarse), ("words", tree.words)):
        if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] * 8 != BITS:
            raise ValueError(f"{path}: {name} must be (N, 32) uint8, got {array.shape} {array.dtype}")
    if len(tree.starts) != len(tree.coarse) + 1 or tree.starts[-1] != len(tree.words):
        raise ValueError(f"{path}: group starts do not match the words")
    return tree


class Quantizer:
    """The tree as a faiss binary inverted file: its lists are the groups and its entries the
    words, so a search of it gives each descriptor's nearest words among those of its `probes`
    nearest groups.

    Holds the coarse index too: faiss borrows it, so it must live as long as the inverted file.
    """

    def __init__(self, tree: Tree, probes: int = DEFAULT.coarse_probes) -> None:
        self.size = len(tree.words)
        self._coarse = faiss.IndexBinaryFlat(BITS)
        self._coarse.add(tree.coarse)
        self._index = faiss.IndexBinaryIVF(self._coarse, BITS, len(tree.coarse))
        self._index.is_trained = True
        for group in range(len(tree.coarse)):
            first, end = int(tree.starts[group]), int(tree.starts[group + 1])
            if end > first:
                ids = np.arange(first, end, dtype=np.int64)
                codes = np.ascontiguousarray(tree.words[first:end])
                self._index.invlists.add_entries(group, end - first, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        self._index.ntotal = self.size
        self._index.nprobe = probes

    def nearest(self, descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) int32 Hamming distances and (N, k) int64 words of (N, 32) uint8 descriptors,
        nearest first; a word of -1 where fewer than k words were compared."""
        distances, labels = self._index.search(np.ascontiguousarray(descriptors, np.uint8), k)
        return distances, labels


def quantizer(probes: int = DEFAULT.coarse_probes) -> Quantizer:
    """The process's word assigner comparing `probes` groups, built once and shared by every
    collection's index: they only read it, and concurrent faiss searches are thread-safe."""
    return _quantizer(probes)


@cache
def _quantizer(probes: int) -> Quantizer:  # one cache key per value, however the caller passes it
    return Quantizer(load(), probes)


def assign(descriptors: np.ndarray, probes: int = DEFAULT.coarse_probes) -> np.ndarray:
    """(N,) int64 word of each (N, 32) uint8 descriptor (what a reference keypoint is filed under)."""
    if len(descriptors) == 0:
        return np.zeros(0, np.int64)
    return quantizer(probes).nearest(descriptors, 1)[1][:, 0]
