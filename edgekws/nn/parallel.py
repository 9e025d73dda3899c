"""Cache blocking and threading over the batch axis for the memory-bound layers.

numpy ufuncs and einsum release the GIL, so a memory-bound layer (depthwise conv, BatchNorm)
runs faster when the batch is cut into blocks that fit in the L2 cache (several passes over a
block then hit the cache instead of RAM) and the blocks are shared among a few threads.
The number of threads is ours to set (BLAS threads are set separately, e.g. by threadpoolctl).
Work arrays that a layer reuses from call to call are kept per thread (`thread_scratch`).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from edgekws.errors import is_int

_BLOCK_BYTES = 1024 * 1024  # about one L2 cache (measured best of 64 KB .. 64 MB)
_state = {"threads": None, "pool": None}


def _default_threads() -> int:
    env = os.environ.get("EDGEKWS_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = -1
        if not 0 <= n <= 256:
            from edgekws.errors import EdgekwsError

            raise EdgekwsError(f"EDGEKWS_NUM_THREADS={env}: expected a whole number from 0 to 256 (0 and 1: "
                               "one thread)")
        return max(1, n)
    return 1  # safe next to a multi-threaded BLAS; see set_num_threads


def get_num_threads() -> int:
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


def set_num_threads(n: int) -> None:
    """Threads used by the engine's own batch-parallel loops (default 1, or $EDGEKWS_NUM_THREADS).

    With n > 1 the matrix products run on these threads too: limit BLAS to one thread
    (OPENBLAS_NUM_THREADS=1 before numpy loads, or threadpoolctl), or the two pools oversubscribe
    the cores (measured 50x slower matrix products on 2 cores)."""
    if not is_int(n, numpy=False) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    if _state["pool"] is not None:
        _state["pool"].shutdown(wait=True)
        _state["pool"] = None
    _state["threads"] = n


@contextmanager
def more_threads(n: int):
    """Within the block, the engine's loops use n threads if they use fewer (set_num_threads), then
    the count returns to what it was. For work during which other cores idle (training's validation
    and hard-negative scoring, while the batch workers wait): per-example results are the same bits
    for any thread count."""
    before = get_num_threads()
    if n <= before:
        yield
        return
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(before)


def batch_blocks(n: int, bytes_per_example: int, block_bytes: int | None = None) -> list[slice]:
    """Cut range(n) into slices of about block_bytes (default _BLOCK_BYTES), at least one example each."""
    step = max(1, (block_bytes or _BLOCK_BYTES) // max(1, bytes_per_example))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def run_blocks(fn, blocks: list[slice]) -> list:
    """Call fn(block) for every slice, on the engine's threads; returns results in order."""
    threads = get_num_threads()
    if threads == 1 or len(blocks) == 1:
        return [fn(b) for b in blocks]
    if _state["pool"] is None:
        _state["pool"] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="edgekws-nn")
    # contiguous runs of blocks per thread keep each thread's memory together
    per = -(-len(blocks) // threads)
    groups = [blocks[i:i + per] for i in range(0, len(blocks), per)]
    futures = [_state["pool"].submit(lambda g=g: [fn(b) for b in g]) for g in groups]
    return [r for f in futures for r in f.result()]


def thread_scratch(store: dict, name, shape: tuple, dtype) -> np.ndarray:
    """A work array private to the calling thread, kept in `store` (a dict of the layer or of its
    module) and returned again by later calls with the same name, shape and dtype: no allocation
    (and no page faults) per step. Zeroed when first made; its contents are the caller's from
    then on."""
    key = (threading.get_ident(), name, shape, dtype)
    buf = store.get(key)
    if buf is None:
        buf = store[key] = np.zeros(shape, dtype)
    return buf


def one_blas_thread(fn):
    """Decorator: run `fn` with BLAS limited to one thread (threadpoolctl).

    The engine parallelizes over the batch itself (set_num_threads); a multi-threaded BLAS inside
    its many small matrix products only spins. Measured on 2 cores with another process busy:
    2 training epochs took 10.2 s with OpenBLAS' default 2 threads and 2.5 s with 1."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper
