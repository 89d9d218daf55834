"""The recognition workers: RQ worker process, shard index state and the matching pipeline."""

import os

# One search at a time per process, one process per core: OpenMP threads inside faiss only spin
# against the other threads and processes (3x slower p50 measured on a busy 2-core host; index
# changes applied by the event thread took 20+ s to land under concurrent uploads). faiss's
# `omp_set_num_threads` applies to the calling thread only, so the default for every thread is set
# here, before any module of this package can start the OpenMP runtime by importing faiss.
os.environ["OMP_NUM_THREADS"] = "1"
