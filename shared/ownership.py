"""Which live workers own which shard: rendezvous (highest-random-weight) hashing.

Every worker and API process computes the same answer from the same list of live workers, with
no coordinator: each (worker, shard) pair gets a pseudo-random weight and a shard's owners are the
`replicas` live workers with the highest weights for it. When a worker joins, it takes over only the
shards where it now ranks among the top `replicas` (about replicas/(N+1) of them); when one dies,
only its shards move.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

# A worker whose heartbeat is older than this is taken for dead. Workers beat every second.
LIVE_SECONDS = 5.0


def weight(worker: str, shard: int) -> int:
    digest = hashlib.blake2b(f"{worker}/{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owners(shard: int, workers: Iterable[str], replicas: int) -> list[str]:
    """The workers that should serve `shard`, most preferred first."""
    return sorted(workers, key=lambda w: weight(w, shard), reverse=True)[:replicas]


def shards_of(worker: str, workers: Iterable[str], shards: int, replicas: int) -> frozenset[int]:
    """The shards `worker` should serve when `workers` (which should include it) are alive."""
    alive = set(workers) | {worker}
    return frozenset(s for s in range(shards) if worker in owners(s, alive, replicas))
