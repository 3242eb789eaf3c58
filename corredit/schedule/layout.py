"""Cutting an ordering of edits into batches: consecutive chunks or round-robin dealing.

Usage::

    from corredit.schedule.layout import batch_sizes, chunk, deal
    batch_sizes(7, 3)              # [3, 3, 1]
    chunk([4, 2, 0, 1, 3], 2)      # [[4, 2], [0, 1], [3]]
    deal([4, 2, 0, 1, 3], 2)       # [[4, 1], [2, 3], [0]]: neighbours in the order part

Both give every batch ``batch_size`` edits except the last, which holds the remainder.
``deal`` sends consecutive items of the ordering to different batches, so items that sit
close together in it (similar edits, edits of one subject) end up apart.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["batch_sizes", "chunk", "deal"]


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """Sizes of the batches for ``n`` edits: ``batch_size`` each, the remainder last."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    full, rest = divmod(int(n), int(batch_size))
    return [int(batch_size)] * full + ([rest] if rest else [])


def chunk(order: Sequence[int] | np.ndarray, batch_size: int) -> list[list[int]]:
    """Consecutive pieces of ``order``."""
    items = np.asarray(order, dtype=np.int64).tolist()
    sizes = batch_sizes(len(items), batch_size)
    out, start = [], 0
    for size in sizes:
        out.append(items[start:start + size])
        start += size
    return out


def deal(order: Sequence[int] | np.ndarray, batch_size: int) -> list[list[int]]:
    """Items of ``order`` dealt round-robin to the batches, like cards: item ``p`` goes to
    batch ``p mod B`` while every batch has room, then the short last batch drops out."""
    items = np.asarray(order, dtype=np.int64)
    sizes = batch_sizes(len(items), batch_size)
    n_batches = len(sizes)
    if n_batches == 0:
        return []
    target = np.empty(len(items), dtype=np.int64)
    head = sizes[-1] * n_batches  # rounds in which every batch takes one item
    p = np.arange(len(items), dtype=np.int64)
    target[:head] = p[:head] % n_batches
    if n_batches > 1:
        target[head:] = (p[head:] - head) % (n_batches - 1)
    out: list[list[int]] = [[] for _ in range(n_batches)]
    for item, b in zip(items.tolist(), target.tolist()):
        out[b].append(item)
    return out
