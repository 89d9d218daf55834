"""The recognition workers: RQ worker process, shard index state and the matching pipeline."""
