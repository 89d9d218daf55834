"""Giving freed heap memory back to the system.

glibc keeps the pages of freed allocations for reuse, and faiss frees an index's inverted lists in
many pieces: a dropped 1,000-reference index left ~170 MB of a process's anonymous memory resident
until `malloc_trim` (2 MB after it). Called where a large index is let go.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc


def release_freed_memory() -> None:
    """Collects garbage, then hands the heap's free pages back to the OS (no-op without glibc)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
