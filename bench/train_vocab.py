"""Trains the binary visual vocabulary shipped as `workers/data/vocab-orb-v<N>.npz`.

A two-level k-majority tree (k-means for bit vectors: assign by Hamming distance, centroid =
per-bit majority): `--groups` coarse centroids over every training descriptor, then under each
group as many words as its share of the descriptors (65,536 in all by default), trained on the
group's own descriptors. Training descriptors are what the index stores (`extract_reference`) of
the dev set's references and distractors, never its queries, plus `--generated` pictures of
`shared.testing.imagegen` so the words are not only those of the dev set's pictures.

    .venv/bin/python -m bench.train_vocab ../shared/data/recognition-dev --groups 64 --words 4096

takes ~2 min on one core. `--regroup FLAT.npy` instead groups an existing flat (K, 32) vocabulary
with faiss's binary k-means, as the loader of the flat v1 file did at every start-up.

v2 (shipped) is v1's 4,096 words (`git show c8303eb:workers/data/vocab-orb-v1.npy`, trained on the
dev references' upright features) regrouped that way: `--regroup v1.npy --groups 64`. Shipping
the grouping makes the word assignment identical on every machine, which saved indexes rely on.
Measured on the dev set's tune half with the v2 features (upright, tilted and far views): v2
recall@1 0.898; a 4,096-word tree trained here 0.878. 16,384 words (5 probed) and 65,536 words
(10 probed) lost 2-3 points on the hold-out half, and 65,536 was no faster at 10,000 references
(faiss visits far more lists).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from shared.testing import imagegen
from workers.decode import decode_gray
from workers.features import extract_reference
from workers.vocabulary import VOCABULARY_PATH


def descriptors(root: Path, generated: int) -> np.ndarray:
    """(N, 32) uint8: every indexed ORB descriptor of references/, distractors/ and the generated pictures."""
    files = sorted((root / "references").glob("*.jpg")) + sorted((root / "distractors").glob("*.jpg"))
    out = [
        extract_reference(decode_gray(f.read_bytes())).descriptors for f in tqdm(files, desc="dev images", unit="img")
    ]
    for seed in tqdm(range(generated), desc="generated", unit="img"):
        picture = imagegen.textured(5_000_000 + seed, 640, 480)
        out.append(extract_reference(decode_gray(imagegen.encode_jpeg(picture, 90))).descriptors)
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


def train(data: np.ndarray, groups: int, words: int, iterations: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    coarse, label = k_majority(data, groups, iterations, rng)
    per_group = shares(np.bincount(label, minlength=groups), words)
    leaves = []
    for group in tqdm(range(groups), desc="words", unit="group"):
        members = data[label == group]
        leaves.append(k_majority(members, int(per_group[group]), iterations, rng)[0])
    starts = np.concatenate([[0], np.cumsum([len(w) for w in leaves])]).astype(np.int64)
    return {"coarse": coarse, "words": np.concatenate(leaves), "starts": starts}


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
    parser.add_argument("dev_set", type=Path)
    parser.add_argument("--groups", type=int, default=256)
    parser.add_argument("--words", type=int, default=65536)
    parser.add_argument(
        "--generated", type=int, default=300, help="shared.testing.imagegen pictures added to the training set"
    )
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--regroup", type=Path, help="group this flat (K, 32) uint8 .npy vocabulary instead of training"
    )
    parser.add_argument("--out", type=Path, default=VOCABULARY_PATH)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.regroup:
        tree = regroup(np.load(args.regroup), args.groups)
        save(args.out, tree)
        print(f"wrote {args.out}: {len(tree['coarse'])} groups, {len(tree['words'])} words")
        return
    data = descriptors(args.dev_set, args.generated)
    print(f"{len(data)} descriptors in {time.perf_counter() - started:.0f} s")
    tree = train(data, args.groups, args.words, args.iterations, args.seed)
    save(args.out, tree)
    print(
        f"wrote {args.out}: {len(tree['coarse'])} groups, {len(tree['words'])} words, "
        f"in {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
