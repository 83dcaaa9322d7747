"""Cache-sized batch tiles for the elementwise state updates of neurons and pools.

On CPU a per-step activation ``[B, ...]`` of a wide layer is larger than the cache,
and each of a neuron's elementwise ops (add, div, floor, clamp, mul, sub) would
stream it from memory once.  Running all of them on a few samples at a time keeps
the tile in cache: the same ops on the same elements (identical results), a
fraction of the memory traffic.  Other devices get one tile (the whole batch).

The tile ops run on one thread (``tile_threads``): each multi-threaded op is a
barrier, and on a busy machine every barrier can wait a scheduler time slice for
a descheduled worker; in cache one thread keeps up with the memory anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

# Elements of one tile per tensor on CPU (256 Ki float32 = 1 MiB): a neuron's
# few tile-sized operands fit the L2/L3 cache of current CPUs.
TILE_ELEMENTS = 1 << 18


def batch_tiles(state: Tensor) -> list[slice]:
    """state: one step ``[B, ...]`` -> slices of the batch dim covering 0..B, each
    at most ``TILE_ELEMENTS`` elements (at least one sample) on CPU; ``[0:B]`` elsewhere."""
    batch = state.shape[0]
    if state.device.type != "cpu":
        return [slice(0, batch)]
    rows = max(1, TILE_ELEMENTS // max(1, state[0].numel()))
    return [slice(b, min(b + rows, batch)) for b in range(0, batch, rows)]


@contextmanager
def tile_threads(state: Tensor) -> Iterator[None]:
    """Within the block, torch uses one CPU thread if ``state`` is on CPU."""
    threads = torch.get_num_threads()
    if state.device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
