"""Cosine similarity between float32 embeddings, computed blockwise so memory stays bounded.

Usage::

    from corredit.graph import top_k_neighbors, pairs_above, cosine_similarity
    idx, sim = top_k_neighbors(X, k=10)        # exact top-10 per row, self excluded
    idx[3], sim[3]                              # the 10 rows most similar to row 3, best first
    i, j, s = pairs_above(X, 0.8)               # every pair i < j with similarity >= 0.8
    S = cosine_similarity(X[:500])              # dense (refuses matrices over ``max_bytes``)

No function here holds more than one block of ``block_bytes`` (64 MiB by default) of
similarities at a time, so 100,000 rows need the embeddings plus a few blocks, never the
40 GB dense matrix.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "as_embedding",
    "normalize_rows",
    "iter_similarity_blocks",
    "cosine_similarity",
    "top_k_neighbors",
    "pairs_above",
    "pair_similarity",
]

#: Memory allowed for one block of similarities.
DEFAULT_BLOCK_BYTES = 64 * 2**20

_GROUP = 64  # columns per group when pre-selecting top-k candidates (a power of two)


def as_embedding(X: object, *, name: str = "embeddings", n_rows: int | None = None) -> np.ndarray:
    """``X`` as a C-contiguous float32 matrix ``(n, d)``; a clear error for a wrong shape,
    a wrong row count or a non-finite value (naming ``name`` and the first bad row)."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_edits, dim), got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"{name}: has {arr.shape[0]} rows but there are {n_rows} edits")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: has 0 columns")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: row {row} holds NaN or inf ({int(bad.sum())} such rows)")
    return arr


def normalize_rows(X: object, *, name: str = "embeddings") -> np.ndarray:
    """Rows scaled to unit length (float32); an all-zero row stays zero (similarity 0 to all)."""
    arr = as_embedding(X, name=name)
    norms = np.linalg.norm(arr.astype(np.float64), axis=1)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return (arr * scale[:, None].astype(np.float32)).astype(np.float32, copy=False)


def _rows_per_block(n_cols: int, block_bytes: int) -> int:
    if block_bytes <= 0:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    return max(1, int(block_bytes // (4 * max(n_cols, 1))))


def iter_similarity_blocks(
    X: object,
    Y: object | None = None,
    *,
    normalized: bool = False,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, S)`` with ``S = cos(X[start:stop], Y)`` (float32), row block by
    row block. ``Y`` defaults to ``X``; ``normalized=True`` skips the row normalisation."""
    Xn = as_embedding(X, name="X") if normalized else normalize_rows(X, name="X")
    if Y is None:
        Yn = Xn
    else:
        Yn = as_embedding(Y, name="Y") if normalized else normalize_rows(Y, name="Y")
        if Yn.shape[1] != Xn.shape[1]:
            raise ValueError(f"X has {Xn.shape[1]} columns but Y has {Yn.shape[1]}")
    rows = _rows_per_block(Yn.shape[0], block_bytes)
    for start in range(0, Xn.shape[0], rows):
        stop = min(start + rows, Xn.shape[0])
        yield start, stop, Xn[start:stop] @ Yn.T


def cosine_similarity(
    X: object, Y: object | None = None, *, max_bytes: int = 512 * 2**20
) -> np.ndarray:
    """The dense cosine similarity matrix (float32). Raises ``ValueError`` when it would
    exceed ``max_bytes``; use :func:`top_k_neighbors` or :func:`pairs_above` then."""
    n = np.shape(X)[0]
    m = n if Y is None else np.shape(Y)[0]
    need = 4 * n * m
    if need > max_bytes:
        raise ValueError(
            f"a dense {n}x{m} similarity matrix needs {need / 2**20:.0f} MiB, over "
            f"max_bytes={max_bytes / 2**20:.0f} MiB; use top_k_neighbors or pairs_above"
        )
    Xn = normalize_rows(X, name="X")
    Yn = Xn if Y is None else normalize_rows(Y, name="Y")
    if Yn.shape[1] != Xn.shape[1]:
        raise ValueError(f"X has {Xn.shape[1]} columns but Y has {Yn.shape[1]}")
    return Xn @ Yn.T


def _group_max(grouped: np.ndarray) -> np.ndarray:
    """Max over the last axis (a power of two) by repeated halving: several times faster
    than ``max(axis=2)`` over short contiguous groups."""
    half = grouped.shape[2] // 2
    acc = np.maximum(grouped[:, :, :half], grouped[:, :, half:])
    while half > 1:
        half //= 2
        np.maximum(acc[:, :, :half], acc[:, :, half:2 * half], out=acc[:, :, :half])
    return acc[:, :, 0]


def top_k_neighbors(
    X: object,
    k: int,
    *,
    exclude_self: bool = True,
    normalized: bool = False,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` cosine neighbours of every row: ``(indices, similarities)``, both
    ``(n, k)``, each row sorted by decreasing similarity (equal similarities by index).

    Works one row block at a time: a matrix product, then a pre-selection of the ``k``
    column groups with the largest maxima (which must hold the top ``k``), then an
    ``argpartition`` over those candidates only. Raises ``ValueError`` when ``k`` exceeds
    the number of other rows.
    """
    Xn = as_embedding(X, name="X") if normalized else normalize_rows(X, name="X")
    n = Xn.shape[0]
    k = int(k)
    available = n - 1 if exclude_self else n
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k > available:
        raise ValueError(
            f"k={k} neighbours asked but only {available} other rows exist (n={n})"
        )
    n_groups = -(-n // _GROUP)
    padded = n_groups * _GROUP
    Xp = np.zeros((padded, Xn.shape[1]), dtype=np.float32)
    Xp[:n] = Xn
    out_idx = np.empty((n, k), dtype=np.int64)
    out_sim = np.empty((n, k), dtype=np.float32)
    rows = _rows_per_block(padded, block_bytes)
    offsets = np.arange(_GROUP, dtype=np.int64)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        r = stop - start
        S = Xn[start:stop] @ Xp.T
        S[:, n:] = -np.inf
        if exclude_self:
            S[np.arange(r), np.arange(start, stop)] = -np.inf
        if n_groups > k:
            grouped = S.reshape(r, n_groups, _GROUP)
            best_groups = np.argpartition(_group_max(grouped), n_groups - k, axis=1)[:, -k:]
            cand = grouped[np.arange(r)[:, None], best_groups].reshape(r, k * _GROUP)
            cand_idx = (best_groups[:, :, None] * _GROUP + offsets).reshape(r, k * _GROUP)
        else:
            cand = S
            cand_idx = np.broadcast_to(np.arange(padded, dtype=np.int64), S.shape)
        width = cand.shape[1]
        part = np.argpartition(cand, width - k, axis=1)[:, -k:]
        idx = np.take_along_axis(cand_idx, part, axis=1)
        sim = np.take_along_axis(cand, part, axis=1)
        order = np.lexsort((idx, -sim), axis=1)
        out_idx[start:stop] = np.take_along_axis(idx, order, axis=1)
        out_sim[start:stop] = np.take_along_axis(sim, order, axis=1)
    return out_idx, out_sim


def pairs_above(
    X: object,
    threshold: float,
    *,
    normalized: bool = False,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    max_pairs: int = 5_000_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` with ``cos(X[i], X[j]) >= threshold``: ``(i, j, similarity)``
    sorted by ``(i, j)``. Raises ``ValueError`` beyond ``max_pairs`` pairs (raise the
    threshold or use a kNN graph)."""
    Xn = as_embedding(X, name="X") if normalized else normalize_rows(X, name="X")
    n = Xn.shape[0]
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    found_s: list[np.ndarray] = []
    total = 0
    rows = _rows_per_block(n, block_bytes)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        S = Xn[start:stop] @ Xn[start:].T  # only columns j >= start can satisfy i < j
        li, lj = np.nonzero(S >= threshold)
        gi = li + start
        gj = lj + start
        keep = gj > gi
        gi, gj = gi[keep], gj[keep]
        total += gi.size
        if total > max_pairs:
            raise ValueError(
                f"more than max_pairs={max_pairs} pairs have similarity >= {threshold}; "
                "raise the threshold or build a kNN graph"
            )
        found_i.append(gi.astype(np.int64))
        found_j.append(gj.astype(np.int64))
        found_s.append(S[li[keep], lj[keep]].astype(np.float32))
    if not found_i:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), np.empty(0, dtype=np.float32)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)


def pair_similarity(
    X: object, i: object, j: object, *, normalized: bool = False, chunk: int = 65536
) -> np.ndarray:
    """``cos(X[i[t]], X[j[t]])`` for each listed pair (float32), a chunk of pairs at a time."""
    Xn = as_embedding(X, name="X") if normalized else normalize_rows(X, name="X")
    ii = np.asarray(i, dtype=np.int64).ravel()
    jj = np.asarray(j, dtype=np.int64).ravel()
    if ii.shape != jj.shape:
        raise ValueError(f"i and j differ in length ({ii.size} vs {jj.size})")
    out = np.empty(ii.size, dtype=np.float32)
    for s in range(0, ii.size, chunk):
        e = min(s + chunk, ii.size)
        out[s:e] = np.einsum("ij,ij->i", Xn[ii[s:e]], Xn[jj[s:e]])
    return out
