from shared.ownership import owners, shards_of

SHARDS = 64


def assignment(workers: list[str], replicas: int) -> dict[int, set[str]]:
    return {s: set(owners(s, workers, replicas)) for s in range(SHARDS)}


def test_every_shard_gets_replicas_owners() -> None:
    workers = [f"w{n}" for n in range(5)]
    assert all(len(o) == 2 for o in assignment(workers, 2).values())
    # Fewer workers than replicas: every worker serves every shard.
    assert assignment(["solo"], 2) == {s: {"solo"} for s in range(SHARDS)}


def test_shards_of_agrees_with_owners() -> None:
    workers = [f"w{n}" for n in range(4)]
    for worker in workers:
        mine = shards_of(worker, workers, SHARDS, 2)
        assert mine == {s for s in range(SHARDS) if worker in owners(s, workers, 2)}


def test_a_joining_worker_moves_only_its_share() -> None:
    before = assignment([f"w{n}" for n in range(4)], 1)
    after = assignment([f"w{n}" for n in range(5)], 1)
    moved = [s for s in range(SHARDS) if before[s] != after[s]]
    assert all(after[s] == {"w4"} for s in moved)  # only to the newcomer
    assert 0 < len(moved) <= 2 * SHARDS / 5


def test_a_dead_worker_loses_only_its_shards() -> None:
    workers = [f"w{n}" for n in range(4)]
    before = assignment(workers, 2)
    after = assignment(workers[1:], 2)
    for shard in range(SHARDS):
        if "w0" not in before[shard]:
            assert after[shard] == before[shard]
        else:
            assert before[shard] - {"w0"} <= after[shard]
