"""A collection's in-memory search index: inverted file over visual words, then geometric checks.

Every reference keypoint is filed under its visual word (`workers.vocabulary`) in a faiss binary
inverted file that keeps the first `code_bits` bits of its descriptor (all 256 by default), so a
query descriptor is compared (Hamming) only with the reference descriptors of its `nprobe` nearest
words, never with the whole collection. Matches within `max_hamming` bits vote for their
reference; the best-voted candidates are screened by how many of their pairs one affine map carries
(`screen_candidates`: votes alone bury a true match with few agreeing points under chance votes),
and the best of those verified geometrically (`workers.verify`), each with its own
correspondences, so two posters in one photo are both found.

`save` writes the index to a directory and `open` maps it back read-only (faiss's on-disk inverted
lists, numpy memmap keypoints) in milliseconds at any size; references added after opening go to
a small in-memory inverted file searched alongside, with the same word assignment. Postings of
mapped references removed after opening stay in the file (tombstoned) until the next `save`.
A saved index records the vocabulary, the code size and the digests of the settings it was built
under (`workers.tuning.extraction_id`, `index_id`); `open` refuses one saved under others.

Posting ids pack (slot, keypoint): `slot << keypoint_bits | keypoint`. A slot is one added version
of a reference; removing or replacing marks the slot dead (a tombstone, O(1)) and its postings are
dropped from the inverted file in one pass once dead postings exceed `compact_fraction`, so `add`
stays O(features) and never rebuilds the index.

The values named in lower case are fields of the index's `workers.tuning.RecognitionSettings`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from workers import tuning, vocabulary
from workers.features import Features
from workers.tuning import RecognitionSettings
from workers.verify import affine_support, verify

_POSTINGS, _REFERENCES, _KEYPOINTS = "postings.faissb", "references.npz", "keypoints.npy"  # `save` files
FIXED = 65535.0  # reference keypoints are kept as uint16 fractions of the size: 4 bytes, not 8
# The layout of the files `save` writes; a change of what they hold or how bumps it, so an older
# (or newer) worker's snapshot is rebuilt rather than misread.
LAYOUT = "2"


def saved_under(settings: RecognitionSettings) -> dict[str, str]:
    """What a saved index records and `open` requires, by name: `layout`, the version of its files;
    `format`, the meaning of its postings (word numbers of this vocabulary, codes of this many
    bits); `extraction`, the
    extraction settings its references' features were accepted under; `index_settings`, the
    settings that shaped its postings (word assignment, id layout)."""
    return {
        "layout": LAYOUT,
        "format": f"{vocabulary.VOCABULARY_PATH.name}/{settings.code_bits}",
        "extraction": tuning.extraction_id(settings),
        "index_settings": tuning.index_id(settings),
    }


_RECORDED = {
    "layout": "file layout",
    "format": "index format",
    "extraction": "extraction settings",
    "index_settings": "index settings",
}


class IncompatibleIndex(ValueError):
    """A saved index made with another vocabulary or other settings than the opener's."""


@dataclass(frozen=True)
class Match:
    """A recognised reference.

    score: 0..100, higher = surer. corners: (4, 2) float64 TL, TR, BL, BR of the reference in the
    query, normalised by the query's width and height, pixel-edge convention.
    """

    image_id: str
    score: float
    corners: np.ndarray


@dataclass(frozen=True)
class Reference:
    """One indexed version of a reference image (a slot of the inverted file)."""

    image_id: str
    keypoints: np.ndarray  # (N, 2) uint16 fractions of the size (x 65535), as in the Features format
    size: tuple[int, int]  # (width, height) pixels

    def points(self, rows: np.ndarray) -> np.ndarray:
        """(M, 2) float32 pixels of the reference for keypoint `rows`."""
        scale = np.array(self.size, np.float32) / np.float32(FIXED)
        points: np.ndarray = self.keypoints[rows].astype(np.float32) * scale
        return points


@dataclass(frozen=True)
class Candidates:
    """The shortlist of one query: per candidate reference, its (M, 2) matched point pairs."""

    references: list[Reference]
    ref_points: list[np.ndarray]
    query_points: list[np.ndarray]
    query_size: tuple[int, int]


class CollectionIndex:
    """Thread-safe: `add`/`remove` may run on one thread while `search` runs on others.

    `settings` are the recognition settings it indexes and searches with; its references'
    features must have been extracted with the same ones."""

    def __init__(self, settings: RecognitionSettings = tuning.DEFAULT) -> None:
        self.settings = settings
        self._quantizer = vocabulary.quantizer(settings.coarse_probes)
        # Words are assigned by `vocabulary` from whole descriptors; the IVF only keeps codes.
        self._ivf = faiss.IndexBinaryIVF(
            _unused_quantizer(settings.code_bits), settings.code_bits, self._quantizer.size
        )
        self._ivf.is_trained = True
        self._ivf.nprobe = settings.nprobe
        self._base: faiss.IndexBinaryIVF | None = None  # read-only, memory-mapped: see `open`
        self._slots: list[Reference | None] = []
        self._slot_of: dict[str, int] = {}
        self._dead: list[np.ndarray] = []  # posting ids of dropped slots, still in the inverted file
        self._dead_postings = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._slot_of)

    def image_ids(self) -> list[str]:
        """The indexed images' ids."""
        return list(self._slot_of)

    def save(self, directory: Path) -> None:
        """Writes the index to `directory` (created if needed): the inverted file (`postings.faissb`,
        dead postings dropped), and the references (`references.npz`, `keypoints.npy`, with what
        `saved_under` records), so a worker can `open` it instead of re-adding every reference.
        Adds and searches wait while the inverted file is written (or, for an opened index, merged
        with its mapped base)."""
        directory.mkdir(parents=True, exist_ok=True)
        # Each file is written aside and renamed over the old one: an index opened from this
        # directory keeps its memory-mapped (old) files intact.
        postings = str(directory / f"{_POSTINGS}.tmp")
        with self._lock:
            slots = list(self._slots)
            merged = None if self._base is None else self._merged()
            if merged is None:
                # Straight from memory: a copy would double the RAM of a 100,000-reference index.
                self._compact()
                faiss.write_index_binary(self._ivf, postings)
        if merged is not None:
            bits = self.settings.keypoint_bits
            dead = [_posting_ids(s, 1 << bits, bits) for s, r in enumerate(slots) if r is None]
            if dead:
                merged.remove_ids(faiss.IDSelectorBatch(np.concatenate(dead)))
            faiss.write_index_binary(merged, postings)
        live = [r for r in slots if r is not None]
        recorded = saved_under(self.settings)
        with open(directory / f"{_KEYPOINTS}.tmp", "wb") as out:
            np.save(out, np.concatenate([r.keypoints for r in live] or [np.zeros((0, 2), np.uint16)]))
        with open(directory / f"{_REFERENCES}.tmp", "wb") as out:
            arrays: dict[str, Any] = {name: np.array(value) for name, value in recorded.items()}
            np.savez(
                out,
                image_ids=np.array([r.image_id if r else "" for r in slots], dtype=str),
                sizes=np.array([r.size if r else (0, 0) for r in slots], np.int64).reshape(-1, 2),
                counts=np.array([len(r.keypoints) if r else 0 for r in slots], np.int64),
                **arrays,
            )
        for name in (_POSTINGS, _KEYPOINTS, _REFERENCES):
            os.replace(directory / f"{name}.tmp", directory / name)

    def _merged(self) -> faiss.IndexBinaryIVF:
        """An in-memory copy of the base and in-memory postings. Lock held."""
        delta = _ivf(faiss.deserialize_index_binary(faiss.serialize_index_binary(self._ivf)))
        if self._base is not None:  # from the mapping, not the path: `save` may have replaced the file
            source, target = self._base.invlists, delta.invlists
            for word in range(self._base.nlist):
                if count := source.list_size(word):
                    target.add_entries(word, count, source.get_ids(word), source.get_codes(word))
            delta.ntotal += self._base.ntotal
        return delta

    @classmethod
    def open(cls, directory: Path, settings: RecognitionSettings = tuning.DEFAULT) -> CollectionIndex:
        """The index `save`d to `directory`, its postings and keypoints memory-mapped (read-only
        pages shared by the page cache, loaded on first touch): ~constant time at any size. Later
        adds go to a small in-memory inverted file searched alongside. Raises IncompatibleIndex (a
        ValueError) for an index saved with another vocabulary or code size (its word numbers would
        mean other words), under other extraction or index settings than `settings`, or before
        those were recorded; ValueError for an unreadable one."""
        index = cls(settings)
        base = _ivf(faiss.read_index_binary(str(directory / _POSTINGS), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY))
        base.nprobe = settings.nprobe
        index._base = base
        keypoints = np.load(directory / _KEYPOINTS, mmap_mode="r")
        with np.load(directory / _REFERENCES, allow_pickle=False) as data:
            for name, expected in saved_under(settings).items():
                saved = str(data[name]) if name in data else "unrecorded"
                if saved != expected:
                    label = _RECORDED[name]
                    raise IncompatibleIndex(f"{directory}: {label} {saved!r}, this worker uses {expected!r}")
            image_ids, sizes, counts = data["image_ids"].tolist(), data["sizes"].tolist(), data["counts"]
        starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
        for slot, (image_id, size) in enumerate(zip(image_ids, sizes, strict=True)):
            if not image_id:
                index._slots.append(None)
                continue
            index._slots.append(Reference(image_id, keypoints[starts[slot] : starts[slot + 1]], (size[0], size[1])))
            index._slot_of[image_id] = slot
        return index

    def add(self, image_id: str, features: Features) -> None:
        """Indexes (or re-indexes) one reference; keeps its first 4096 keypoints at most (with the
        default `keypoint_bits`)."""
        bits = self.settings.keypoint_bits
        count = min(len(features), 1 << bits)
        size = (features.width, features.height)
        fixed = np.clip(np.rint(features.keypoints[:count] / np.array(size, np.float32) * FIXED), 0, FIXED)
        reference = Reference(image_id, fixed.astype(np.uint16), size)
        descriptors = np.ascontiguousarray(features.descriptors[:count], np.uint8)
        words = vocabulary.assign(descriptors, self.settings.coarse_probes)
        codes = _codes(descriptors, self.settings.code_bits)
        with self._lock:
            self._drop(image_id)
            slot = len(self._slots)
            self._slots.append(reference)
            self._slot_of[image_id] = slot
            if count:
                ids = _posting_ids(slot, count, bits)
                # add_core takes precomputed words; faiss's stubs omit it, SWIG exports it.
                add_core = self._ivf.add_core  # type: ignore[attr-defined]
                add_core(count, faiss.swig_ptr(codes), faiss.swig_ptr(ids), faiss.swig_ptr(words))

    def remove(self, image_id: str) -> None:
        """Stops matching `image_id`; no error if it is not indexed."""
        with self._lock:
            self._drop(image_id)

    def _drop(self, image_id: str) -> None:
        """Tombstones the image's slot; compacts the inverted file when enough is dead. Lock held."""
        slot = self._slot_of.pop(image_id, None)
        if slot is None:
            return
        reference = self._slots[slot]
        self._slots[slot] = None
        if reference is not None:
            self._dead.append(_posting_ids(slot, len(reference.keypoints), self.settings.keypoint_bits))
            self._dead_postings += len(reference.keypoints)
        if self._dead_postings > self.settings.compact_fraction * max(self._ivf.ntotal, 1):
            self._compact()

    def _compact(self) -> None:
        """Drops dead slots' postings from the in-memory inverted file: one O(postings) pass,
        amortised over many removals. Lock held."""
        if self._dead:
            self._ivf.remove_ids(faiss.IDSelectorBatch(np.concatenate(self._dead)))
        self._dead, self._dead_postings = [], 0

    def shortlist(self, query: Features) -> Candidates:
        """Word-level matching and voting: the references worth verifying, best first."""
        settings = self.settings
        size = (query.width, query.height)
        if len(query) == 0:
            return Candidates([], [], [], size)
        descriptors = np.ascontiguousarray(query.descriptors, np.uint8)
        with self._lock:
            if self._ivf.ntotal == 0 and self._base is None:
                return Candidates([], [], [], size)
            # Words once for both inverted files (they share the vocabulary's list numbering).
            word_distances, words = self._quantizer.nearest(descriptors, settings.nprobe)
            # Descriptors in word order: consecutive ones then scan the same lists while those are
            # still in cache (10 % faster at 10,000 references, same results).
            order = np.argsort(words[:, 0], kind="stable")
            words, word_distances = np.ascontiguousarray(words[order]), np.ascontiguousarray(word_distances[order])
            codes = np.ascontiguousarray(_codes(descriptors, settings.code_bits)[order])
            distances, ids = self._ivf.search_preassigned(codes, settings.neighbours, words, word_distances)
            slots = self._slots  # entries are only ever replaced by None, so a snapshot is safe
        if self._base is not None:  # read-only: searched outside the lock
            base_distances, base_ids = self._base.search_preassigned(codes, settings.neighbours, words, word_distances)
            distances, ids = np.hstack([distances, base_distances]), np.hstack([ids, base_ids])
            nearest = np.argsort(np.where(ids >= 0, distances, np.iinfo(np.int32).max), axis=1, kind="stable")
            distances = np.take_along_axis(distances, nearest[:, : settings.neighbours], axis=1)
            ids = np.take_along_axis(ids, nearest[:, : settings.neighbours], axis=1)
        keep = (ids >= 0) & (distances <= settings.max_hamming)
        query_index = order[np.nonzero(keep)[0]]
        ids, distances = ids[keep], distances[keep]
        # One-to-one per reference: each query keypoint and each reference keypoint used once,
        # the closest pair winning (repeated texture would otherwise stuff the ballot).
        pairs = _one_to_one(query_index, ids, distances, len(query), settings.keypoint_bits)
        query_index, ids, distances = query_index[pairs], ids[pairs], distances[pairs]
        slot, keypoint = ids >> settings.keypoint_bits, ids & ((1 << settings.keypoint_bits) - 1)
        # Closer descriptor pairs are likelier true matches: weight votes like Hamming embedding.
        weights = np.exp(-((distances / (settings.max_hamming / 2.0)) ** 2))
        voted, inverse, counts = np.unique(slot, return_inverse=True, return_counts=True)
        votes = np.bincount(inverse, weights=weights)
        shortlisted = [i for i in np.argsort(-votes) if counts[i] >= settings.min_inliers]
        screened = max(settings.screen_candidates, settings.max_candidates)
        by_reference = np.argsort(inverse, kind="stable")  # each voted reference's pairs, contiguous
        starts = np.concatenate([[0], np.cumsum(counts)])
        references, ref_points, query_points = [], [], []
        for i in shortlisted[: screened * 2]:
            reference = slots[int(voted[i])]
            if reference is None:
                continue
            pairs = by_reference[starts[i] : starts[i + 1]]
            references.append(reference)
            ref_points.append(reference.points(keypoint[pairs]))
            query_points.append(query.keypoints[query_index[pairs]])
            if len(references) == screened:
                break
        return Candidates(references, ref_points, query_points, size)

    def search(self, query: Features, max_results: int = 10) -> list[Match]:
        """Verified matches, best first, at most one per image and `max_results` in all."""
        return verify_candidates(self.shortlist(query), max_results, settings=self.settings)


@cache
def _unused_quantizer(bits: int) -> faiss.IndexBinaryFlat:
    """An IVF must have a quantizer (and faiss borrows it: cached for the process's lifetime);
    words come from `vocabulary`."""
    return faiss.IndexBinaryFlat(bits)


def _codes(descriptors: np.ndarray, bits: int) -> np.ndarray:
    """(N, bits / 8) uint8: the first bits of each descriptor (ORB orders its tests by how much
    they tell apart, so the first ones are the most informative)."""
    return np.ascontiguousarray(descriptors[:, : bits // 8])


def _ivf(index: faiss.IndexBinary) -> faiss.IndexBinaryIVF:
    """`index` as the binary inverted file it must be (faiss's readers return the base type)."""
    if not isinstance(index, faiss.IndexBinaryIVF):
        raise ValueError(f"expected a binary inverted file, got {type(index).__name__}")
    return index


def _posting_ids(slot: int, count: int, keypoint_bits: int) -> np.ndarray:
    """(count,) int64 inverted-file ids of a slot's first `count` keypoints."""
    return (np.int64(slot) << keypoint_bits) | np.arange(count, dtype=np.int64)


def _one_to_one(
    query_index: np.ndarray, ids: np.ndarray, distances: np.ndarray, query_count: int, keypoint_bits: int
) -> np.ndarray:
    """Indices of the (M,) match arrays keeping, per reference, each query keypoint and each
    reference keypoint (posting id) once: the closest pair wins."""
    order = np.argsort(distances, kind="stable")
    slot = ids[order] >> keypoint_bits
    _, first = np.unique(slot * (query_count + 1) + query_index[order], return_index=True)
    order = order[np.sort(first)]  # still closest first
    _, first = np.unique(ids[order], return_index=True)
    return order[first]


def verify_candidates(
    candidates: Candidates,
    max_results: int,
    min_inliers: int | None = None,
    *,
    settings: RecognitionSettings = tuning.DEFAULT,
) -> list[Match]:
    """Geometric verification of shortlisted references with their own correspondences, with at
    least `min_inliers` (default `settings.min_inliers`).

    Votes rank a true match with few agreeing points below references that only collect chance
    votes, so with `screen_candidates` the shortlist is longer and screened first: the
    `max_candidates` whose pairs best fit one affine map (`workers.verify.affine_support`, ~50 us
    a candidate), with at least `screen_min_fit` pairs on it, are verified (a failing homography
    costs ~1 ms)."""
    chosen = list(range(len(candidates.references)))
    if settings.screen_candidates:
        support = [
            affine_support(ref, found, candidates.query_size, settings=settings)
            for ref, found in zip(candidates.ref_points, candidates.query_points, strict=True)
        ]
        best = sorted(chosen, key=lambda k: -support[k])[: settings.max_candidates]
        chosen = sorted(k for k in best if support[k] >= settings.screen_min_fit)
    matches = []
    for k in chosen:
        reference = candidates.references[k]
        verified = verify(
            candidates.ref_points[k],
            candidates.query_points[k],
            reference.size,
            candidates.query_size,
            min_inliers,
            settings=settings,
        )
        if verified is not None:
            matches.append(Match(reference.image_id, verified.score, verified.corners))
    matches.sort(key=lambda m: m.score, reverse=True)
    return matches[:max_results]
