"""What the tests and the benches share to start a real stack and feed it pictures.

- `stack`: an API process and its workers on a Redis database (`Stack`, `stack_env`, `start_api`,
  `serving`, `private_db`), and waits on shard ownership (`converged`, `wait_converged`);
- `imagegen`: deterministic synthetic pictures;
- `wait`: `wait_until`, a bounded poll that fails a test saying what did not happen in time.

Only tests and benches import this package: the API and the workers never do.
"""
