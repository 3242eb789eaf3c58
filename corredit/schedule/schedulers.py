"""The built-in schedulers, registered in :data:`corredit.schedule.SCHEDULERS`.

Usage::

    from corredit.schedule import make_schedule
    make_schedule("random", requests, 100, seed=0)
    make_schedule("correlated", requests, 100, embeddings=X, seed=0)
    make_schedule("decorrelated", requests, 100, embeddings=X, seed=0)
    make_schedule("same_subject_apart", requests, 100, seed=0)
    make_schedule("correlated", requests, 1, embeddings=X)     # sequential: similar adjacent
    make_schedule("decorrelated", requests, 1, embeddings=X)   # sequential: similar far apart

Schedulers (what they need besides the edit count):

- ``input_order``: the requests as given, cut in chunks.
- ``random``: a seeded permutation, cut in chunks.
- ``correlated`` (embeddings): each batch one compact cluster, a subtree of a balanced
  2-means bisection tree.
- ``decorrelated`` (embeddings): the best measured decorrelator, ``decorrelated_coloring``.
- ``decorrelated_coloring`` (embeddings; ``k=10``): equitable colouring of the kNN graph:
  an edit avoids batches holding its nearest neighbours, then joins the batch it
  resembles least in sum.
- ``decorrelated_greedy`` (embeddings): greedy anticlustering, each edit to the batch with
  room whose members it resembles least in sum.
- ``decorrelated_spread`` (embeddings): chunks of the bisection tree's van der Corput order.
- ``same_subject_together`` (subjects): edits of a subject packed in one batch, split only
  when too many.
- ``same_subject_apart`` (subjects): edits of a subject dealt to different batches.

Measured on 21,919 CounterFact prompts (all-MiniLM-L6-v2) in batches of 100, mean /
nearest-in-batch / maximum within-batch cosine: random 0.088 / 0.393 / 1.00, correlated
0.338 / 0.586 / 1.00, decorrelated_coloring 0.080 / 0.367 / 0.71, decorrelated_greedy
0.080 / 0.376 / 0.89, decorrelated_spread 0.087 / 0.379 / 0.90; no split can bring the
mean below 0.079 (:func:`corredit.schedule.similarity_floor`). With batches of 10 the
mean falls from 0.089 (random) to 0.031.

With ``batch_size=1`` a schedule is a sequential order: ``correlated`` puts similar edits
next to each other, ``decorrelated`` far apart (its batches are ordered so that
consecutive ones differ most). Every scheduler is deterministic for a seed and returns
batches of exactly ``batch_size`` edits except the last.
"""

from __future__ import annotations

import heapq

import numpy as np

from corredit.graph.similarity import top_k_neighbors
from corredit.schedule.blas import one_blas_thread
from corredit.schedule.layout import batch_sizes, chunk, deal
from corredit.schedule.edits import EditSet
from corredit.schedule.registry import register_scheduler
from corredit.schedule.tree import similarity_orders

__all__ = [
    "input_order", "random_order", "correlated", "decorrelated", "decorrelated_coloring",
    "decorrelated_greedy", "decorrelated_spread", "same_subject_together",
    "same_subject_apart",
]


@register_scheduler("input_order")
def input_order(edits: EditSet, batch_size: int, *, seed: int) -> list[list[int]]:
    """The requests in the order given, cut into consecutive batches."""
    return chunk(np.arange(edits.n), batch_size)


@register_scheduler("random")
def random_order(edits: EditSet, batch_size: int, *, seed: int) -> list[list[int]]:
    """A seeded random permutation cut into consecutive batches."""
    return chunk(np.random.default_rng(seed).permutation(edits.n), batch_size)


@register_scheduler("correlated", needs_embeddings=True)
def correlated(edits: EditSet, batch_size: int, *, seed: int, leaf_size: int = 8,
               iters: int = 8) -> list[list[int]]:
    """Batches that are compact clusters: the leaves of a balanced 2-means bisection tree
    whose splits keep multiples of ``batch_size`` together; batches in tree order, so
    consecutive batches are similar too (``batch_size=1``: similar edits adjacent)."""
    X = edits.need_embeddings("correlated")
    near, _ = similarity_orders(X, seed=seed, unit=batch_size, leaf_size=leaf_size, iters=iters)
    return chunk(near, batch_size)


@register_scheduler("decorrelated_spread", needs_embeddings=True)
def decorrelated_spread(edits: EditSet, batch_size: int, *, seed: int, leaf_size: int = 8,
                        iters: int = 8) -> list[list[int]]:
    """Consecutive chunks of the bisection tree's van der Corput order, in which the two
    halves of every subtree alternate: a batch takes about one edit from each subtree of
    ``n / batch_size`` edits, so similar edits land in different batches
    (``batch_size=1``: similar edits far apart in the sequence)."""
    X = edits.need_embeddings("decorrelated_spread")
    _, far = similarity_orders(X, seed=seed, unit=1, leaf_size=leaf_size, iters=iters)
    return chunk(far, batch_size)


def _greedy_assign(
    X: np.ndarray,
    sizes: list[int],
    order: np.ndarray,
    rng: np.random.Generator,
    neighbours: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    candidates: int = 256,
) -> list[list[int]]:
    """Place the edits one by one, in ``order``, into the batch with room that minimises
    (conflicts with already placed graph neighbours, then) the summed similarity to its
    members. ``neighbours`` = CSR ``(indptr, indices, weights)`` of a similarity graph.
    With more than ``candidates`` open batches, each edit weighs a seeded random sample of
    ``candidates`` of them (plus nothing else), so the cost stays ``O(n * candidates * d)``."""
    n_batches = len(sizes)
    room = np.asarray(sizes, dtype=np.int64)
    sums = np.zeros((n_batches, X.shape[1]), dtype=np.float64)
    assigned = np.full(len(X), -1, dtype=np.int64)
    open_ids = np.arange(n_batches, dtype=np.int64)  # batches with room, first n_open
    slot = np.arange(n_batches, dtype=np.int64)  # where each batch sits in open_ids
    n_open = n_batches
    # one unit of neighbour conflict outweighs any summed similarity (|sum| <= batch size)
    penalty = 4.0 * max(sizes) + 1.0
    batches: list[list[int]] = [[] for _ in range(n_batches)]
    with one_blas_thread():
        for i in order.tolist():
            if n_open > candidates:
                cand = np.unique(open_ids[rng.integers(n_open, size=candidates)])
            else:
                cand = open_ids[:n_open]
            cost = sums[cand] @ X[i]
            if neighbours is not None:
                indptr, indices, weights = neighbours
                where = assigned[indices[indptr[i]:indptr[i + 1]]]
                placed = where >= 0
                if placed.any():
                    w = weights[indptr[i]:indptr[i + 1]][placed]
                    conflict = np.bincount(where[placed], weights=w, minlength=n_batches)
                    cost += penalty * conflict[cand]
            j = int(cand[np.argmin(cost)])
            batches[j].append(i)
            assigned[i] = j
            room[j] -= 1
            sums[j] += X[i]
            if room[j] == 0:  # close batch j: swap it behind the open ones
                last = open_ids[n_open - 1]
                open_ids[slot[j]], open_ids[n_open - 1] = last, j
                slot[last], slot[j] = slot[j], n_open - 1
                n_open -= 1
    return batches


def _dissimilar_batch_order(X: np.ndarray, batches: list[list[int]], seed: int) -> list[list[int]]:
    """The full batches reordered so that consecutive ones differ most (van der Corput
    order of the batch means); a short last batch stays last."""
    full = [b for b in batches if len(b) == len(batches[0])]
    rest = batches[len(full):]
    if len(full) < 3:
        return batches
    means = np.stack([X[b].mean(axis=0) for b in full])
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    means = np.divide(means, norms, out=np.zeros_like(means), where=norms > 0)
    _, far = similarity_orders(means, seed=seed)
    return [full[i] for i in far.tolist()] + rest


@register_scheduler("decorrelated_greedy", needs_embeddings=True)
def decorrelated_greedy(edits: EditSet, batch_size: int, *, seed: int) -> list[list[int]]:
    """Greedy anticlustering: edits in seeded random order, each to the batch with room
    whose current members have the smallest summed similarity to it; batches then ordered
    so that consecutive ones differ most."""
    X = edits.need_embeddings("decorrelated_greedy")
    rng = np.random.default_rng(seed)
    batches = _greedy_assign(X, batch_sizes(edits.n, batch_size), rng.permutation(edits.n), rng)
    return _dissimilar_batch_order(X, batches, seed)


def _knn_csr(X: np.ndarray, k: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """The symmetrised kNN graph as CSR ``(indptr, indices, weights)`` (weights: similarity,
    negatives as 0) and each edit's top similarity."""
    n = len(X)
    idx, sim = top_k_neighbors(X, k, normalized=True)
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    rows = np.concatenate([src, idx.ravel()])
    cols = np.concatenate([idx.ravel(), src])
    weight = np.clip(np.concatenate([sim.ravel(), sim.ravel()]), 0.0, None).astype(np.float64)
    key, first = np.unique(rows * n + cols, return_index=True)  # a mutual pair counts once
    rows, cols, weight = key // n, key % n, weight[first]
    return (np.searchsorted(rows, np.arange(n + 1)), cols, weight), sim[:, 0]


def _coloring(name: str, edits: EditSet, batch_size: int, seed: int, k: int) -> list[list[int]]:
    """Colour the kNN graph (see :func:`decorrelated_coloring`); ``name`` for errors."""
    X = edits.need_embeddings(name)
    n = edits.n
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"scheduler {name!r}: k must be a positive integer, got {k!r}")
    sizes = batch_sizes(n, batch_size)
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(n)
    if batch_size == 1 or len(sizes) == 1:  # nothing to choose within the batches
        batches = chunk(tiebreak, batch_size)
    else:
        k = min(int(k), n - 1)
        graph, top = _knn_csr(X, k)
        batches = _greedy_assign(X, sizes, np.lexsort((tiebreak, -top)), rng, graph)
    return _dissimilar_batch_order(X, batches, seed)


@register_scheduler("decorrelated_coloring", needs_embeddings=True)
def decorrelated_coloring(
    edits: EditSet, batch_size: int, *, seed: int, k: int = 10
) -> list[list[int]]:
    """Equitable colouring of the ``k``-nearest-neighbour graph: edits with the most
    similar neighbour first, each to the batch with room holding the least (similarity-
    weighted) of its neighbours, ties to the batch it resembles least in sum; batches then
    ordered so that consecutive ones differ most."""
    return _coloring("decorrelated_coloring", edits, batch_size, seed, k)


@register_scheduler("decorrelated", needs_embeddings=True)
def decorrelated(edits: EditSet, batch_size: int, *, seed: int, k: int = 10) -> list[list[int]]:
    """The best measured decorrelating scheduler, ``decorrelated_coloring``: lowest mean,
    nearest and maximum within-batch similarity of the alternatives (see the module
    docstring)."""
    return _coloring("decorrelated", edits, batch_size, seed, k)


def _subject_groups(subjects: tuple[str, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Indices grouped by subject (input order within a group), groups in random order."""
    codes: dict[str, int] = {}
    labels = np.fromiter((codes.setdefault(s, len(codes)) for s in subjects), dtype=np.int64,
                         count=len(subjects))
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups = np.split(order, bounds)
    return [groups[g] for g in rng.permutation(len(groups))]


@register_scheduler("same_subject_together")
def same_subject_together(edits: EditSet, batch_size: int, *, seed: int) -> list[list[int]]:
    """Edits of one subject in one batch: subject groups, largest first (equal sizes in
    seeded random order), packed best-fit into the batches; a group is split only when no
    batch has room for all of it, and then over as few batches as possible."""
    subjects = edits.need_subjects("same_subject_together")
    groups = _subject_groups(subjects, np.random.default_rng(seed))
    groups.sort(key=len, reverse=True)  # stable: ties keep the seeded order
    sizes = batch_sizes(edits.n, batch_size)
    batches: list[list[int]] = [[] for _ in sizes]
    by_room: dict[int, list[int]] = {}
    for b, size in enumerate(sizes):
        by_room.setdefault(size, []).append(b)
    for heap in by_room.values():
        heapq.heapify(heap)

    def take(need_at_least: int, smallest: bool) -> tuple[int, int] | None:
        rooms = sorted(r for r in by_room if r >= need_at_least)
        if not rooms:
            return None
        room = rooms[0] if smallest else rooms[-1]
        b = heapq.heappop(by_room[room])
        if not by_room[room]:
            del by_room[room]
        return room, b

    for group in groups:
        items = group.tolist()
        while items:
            found = take(len(items), smallest=True) or take(1, smallest=False)
            if found is None:  # cannot happen: the batches' room adds up to the edits
                raise RuntimeError("same_subject_together ran out of room")
            room, b = found
            put, items = items[:room], items[room:]
            batches[b].extend(put)
            left = room - len(put)
            if left:
                heapq.heappush(by_room.setdefault(left, []), b)
    return batches


@register_scheduler("same_subject_apart")
def same_subject_apart(edits: EditSet, batch_size: int, *, seed: int) -> list[list[int]]:
    """Edits of one subject in different batches: the edits, grouped by subject (groups in
    seeded random order; by similarity when embeddings are given), dealt round-robin to
    the batches. Two edits of a subject share a batch only when the subject has more edits
    than there are batches."""
    subjects = edits.need_subjects("same_subject_apart")
    rng = np.random.default_rng(seed)
    groups = _subject_groups(subjects, rng)
    if edits.embeddings is not None:
        near, _ = similarity_orders(edits.embeddings, seed=seed)
        rank = np.empty(edits.n, dtype=np.int64)
        rank[near] = np.arange(edits.n)
        groups = [g[np.argsort(rank[g], kind="stable")] for g in groups]
        groups.sort(key=lambda g: int(rank[g[0]]))
    return deal(np.concatenate(groups), batch_size)
