"""Benchmarks of the service, each a module run from the repository root: `python -m bench.NAME --help`.

`harness` is what the load, fault, front-end and throughput benches share; `accuracy` and `scale`
run the recognition code in process; `train_vocab` trains the shipped visual vocabulary.
"""
