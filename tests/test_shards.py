import uuid

from shared.shards import queue_name, shard_of


def test_shard_is_in_range_and_spread_evenly() -> None:
    ids = [uuid.uuid4().hex for _ in range(2000)]
    shards = [shard_of(i, 8) for i in ids]
    assert set(shards) == set(range(8))
    # Roughly even: no shard gets more than twice its share.
    assert max(shards.count(s) for s in range(8)) < 2 * len(ids) / 8


def test_known_values_do_not_change() -> None:
    # Every API process and worker, of any version, must agree: a changed hash would strand
    # every collection on a shard whose workers do not hold its index.
    assert [shard_of(c, 8) for c in ("a" * 32, "b" * 32, "0123456789abcdef0123456789abcdef")] == [7, 4, 6]
    assert shard_of("0" * 32, 1) == 0


def test_queue_names_are_distinct() -> None:
    assert len({queue_name(s) for s in range(64)}) == 64
