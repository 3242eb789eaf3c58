"""Orderings of edits from a balanced bisection tree of their embeddings.

Usage::

    from corredit.schedule.tree import similarity_orders
    near, far = similarity_orders(X, seed=0, unit=100)
    near      # similar edits next to each other; every aligned run of 100 is one subtree
    far       # similar edits as far apart as the tree allows

The tree splits the edits in two, again and again, by a balanced 2-means: a few Lloyd
steps where the split keeps a fixed size (the ``left`` share of edits closest to the first
centroid). Splits keep a multiple of ``unit`` edits on the left while a node holds more
than ``unit`` edits, so cutting ``near`` into chunks of ``unit`` gives whole subtrees
(compact clusters). Nodes of at most ``leaf_size`` edits (or of at most ``unit`` <= 256)
are ordered by a greedy nearest-neighbour chain. ``far`` interleaves the two halves of
every node evenly, recursively (a van der Corput order of the leaves): the edits of a
subtree of ``s`` edits sit about ``n / s`` positions apart, so ``m`` consecutive edits of
``far`` hold about one edit of each subtree of ``n / m`` edits.

Cost: ``O(n d log n)`` arithmetic and about ``n / leaf_size`` small NumPy calls; no
``n x n`` matrix.
"""

from __future__ import annotations

import numpy as np

from corredit.schedule.blas import one_blas_thread

__all__ = ["similarity_orders", "interleave"]

_MAX_CHAIN = 256  # largest node ordered by a greedy chain instead of further splits


def interleave(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` and ``b`` merged so that each is spread evenly over the result
    (item ``i`` of ``a`` at relative place ``(i + 1/2) / len(a)``, likewise ``b``)."""
    if len(a) == 0:
        return b
    if len(b) == 0:
        return a
    keys = np.concatenate([(np.arange(len(a)) + 0.5) / len(a), (np.arange(len(b)) + 0.5) / len(b)])
    merged = np.concatenate([a, b])
    return merged[np.argsort(keys, kind="stable")]


def _spread(seq: np.ndarray) -> np.ndarray:
    if len(seq) <= 2:
        return seq
    half = len(seq) // 2
    return interleave(_spread(seq[:half]), _spread(seq[half:]))


def _chain(P: np.ndarray) -> np.ndarray:
    """Greedy nearest-neighbour chain through a few points (start: the least central)."""
    m = len(P)
    if m <= 2:
        return np.arange(m)
    S = P @ P.T
    np.fill_diagonal(S, -np.inf)
    current = int(np.argmin(np.where(np.isfinite(S), S, 0.0).sum(axis=1)))
    order = [current]
    S[:, current] = -np.inf
    for _ in range(m - 1):
        current = int(np.argmax(S[current]))
        order.append(current)
        S[:, current] = -np.inf
    return np.asarray(order)


def _balanced_split(
    P: np.ndarray, left_size: int, rng: np.random.Generator, iters: int
) -> np.ndarray:
    """Boolean mask of the ``left_size`` rows of ``P`` forming the first of two compact groups."""
    m = len(P)
    a = int(rng.integers(m))
    b = int(np.argmin(P @ P[a]))
    c = int(np.argmin(P @ P[b]))
    direction = P[b] - P[c]
    mask = np.zeros(m, dtype=bool)
    for _ in range(iters):
        score = P @ direction
        top = np.argpartition(-score, left_size - 1)[:left_size]
        new = np.zeros(m, dtype=bool)
        new[top] = True
        if np.array_equal(new, mask):
            break
        mask = new
        direction = P[mask].mean(axis=0) - P[~mask].mean(axis=0)
    return mask


def similarity_orders(
    X: np.ndarray,
    *,
    seed: int = 0,
    unit: int = 1,
    leaf_size: int = 8,
    iters: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """``(near, far)`` orderings of the rows of ``X`` (unit rows expected): see the module
    docstring. Deterministic for a given ``X`` and ``seed``."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = len(X)
    for label, value in (("unit", unit), ("leaf_size", leaf_size), ("iters", iters)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    rng = np.random.default_rng(seed)

    def build(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = len(idx)
        if m <= leaf_size or (m <= unit and m <= _MAX_CHAIN):
            chain = idx[_chain(X[idx])]
            return chain, _spread(chain)
        left_size = (-(-m // unit) // 2) * unit if m > unit else m // 2
        mask = _balanced_split(X[idx], left_size, rng, iters)
        near_l, far_l = build(idx[mask])
        near_r, far_r = build(idx[~mask])
        return np.concatenate([near_l, near_r]), interleave(far_l, far_r)

    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy()
    with one_blas_thread():
        near, far = build(np.arange(n, dtype=np.int64))
    return near, far
