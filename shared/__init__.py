"""Code the front end and the workers both use: settings, Redis keys, job codec, shard map, errors."""
