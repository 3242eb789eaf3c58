"""How correlated the edits inside each batch of a schedule are.

Usage::

    from corredit.schedule import batch_correlation, summarize_correlation, similarity_floor
    per_batch = batch_correlation(schedule, {"subject_minilm": X1, "prompt_tfidf": X2}, requests)
    # batch, size, n_pairs, embedding, mean_similarity, max_similarity,
    # mean_nearest_similarity, same_subject_pairs, same_relation_pairs
    summarize_correlation(schedule, X1, requests)
    # {'mean_similarity': ..., 'mean_nearest_similarity': ..., 'adjacent_similarity': ...}
    similarity_floor(X1, schedule.sizes)    # no schedule with these sizes goes lower

Similarities are cosines. ``mean_similarity`` of a schedule weighs every within-batch
pair equally; ``mean_nearest_similarity`` averages, over edits, the similarity to the most
similar other edit of the same batch: an edit is disturbed mostly by its closest batch-mate
(for MEMIT the off-diagonal whitened key products), so this is the measure that tracks
interference, where the mean dilutes one close pair among many distant ones.

For unit vectors the pairs of a batch sum to ``(|sum of batch|^2 - size) / 2``, so the
mean over all within-batch pairs can never drop below :func:`similarity_floor`: with
batches of 100, about ``1/99`` of ``1 - (mean similarity of all pairs)`` under a random
schedule. With large batches, decorrelation shows in the nearest and maximum
similarities far more than in the mean.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from corredit.graph.similarity import normalize_rows, pair_similarity, top_k_neighbors
from corredit.schedule.edits import edit_set

if TYPE_CHECKING:  # pragma: no cover
    from corredit.schedule.schedule import Schedule

__all__ = ["batch_correlation", "summarize_correlation", "similarity_floor"]

_DENSE_LIMIT = 2048  # batches up to this size get a dense Gram matrix


def _batch_figures(Xb: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(mean pairwise, max pairwise, nearest-other similarity per edit) for unit rows."""
    m = len(Xb)
    if m < 2:
        return float("nan"), float("nan"), np.full(m, np.nan)
    if m <= _DENSE_LIMIT:
        G = (Xb @ Xb.T).astype(np.float64)
        mean = (G.sum() - np.trace(G)) / (m * (m - 1))
        np.fill_diagonal(G, -np.inf)
        nearest = G.max(axis=1)
        return float(mean), float(nearest.max()), nearest
    total = Xb.astype(np.float64).sum(axis=0)
    sq = float((Xb.astype(np.float64) ** 2).sum())
    mean = (float(total @ total) - sq) / (m * (m - 1))
    _, sim = top_k_neighbors(Xb, 1, normalized=True)
    nearest = sim[:, 0].astype(np.float64)
    return mean, float(nearest.max()), nearest


def _pair_counts(labels: Sequence[str] | None, batch: Sequence[int]) -> int:
    if labels is None:
        return -1
    return sum(c * (c - 1) // 2 for c in Counter(labels[i] for i in batch).values())


def _labels(requests: Any, n: int) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    if requests is None:
        return None, None
    edits = edit_set(requests)
    if edits.n != n:
        raise ValueError(f"the schedule places {n} edits but {edits.n} requests were given")
    return edits.subjects, edits.relation_ids


def _named(embeddings: Any) -> dict[str, np.ndarray]:
    if isinstance(embeddings, Mapping):
        return {str(k): v for k, v in embeddings.items()}
    return {"similarity": embeddings}


def batch_correlation(schedule: "Schedule", embeddings: Any, requests: Any = None) -> pd.DataFrame:
    """One row per (batch, embedding): ``batch``, ``size``, ``n_pairs``, ``embedding``
    (``"similarity"`` for a bare array), ``mean_similarity``, ``max_similarity``,
    ``mean_nearest_similarity`` (NaN for single-edit batches), and, when ``requests`` are
    given, ``same_subject_pairs`` and ``same_relation_pairs`` (-1 when unknown)."""
    n = schedule.n_edits
    subjects, relations = _labels(requests, n)
    rows = []
    for name, X in _named(embeddings).items():
        if np.ndim(X) != 2 or np.shape(X)[0] != n:
            raise ValueError(f"embedding {name!r}: expected shape ({n}, dim), got {np.shape(X)}")
        Xn = normalize_rows(X, name=f"embedding {name!r}")
        for b, batch in enumerate(schedule.batches):
            mean, peak, nearest = _batch_figures(Xn[list(batch)])
            row = {
                "batch": b, "size": len(batch), "n_pairs": len(batch) * (len(batch) - 1) // 2,
                "embedding": name, "mean_similarity": mean, "max_similarity": peak,
                "mean_nearest_similarity": float(nearest.mean()) if len(batch) > 1 else np.nan,
            }
            if requests is not None:
                row["same_subject_pairs"] = _pair_counts(subjects, batch)
                row["same_relation_pairs"] = _pair_counts(relations, batch)
            rows.append(row)
    return pd.DataFrame(rows)


def similarity_floor(embeddings: Any, sizes: Sequence[int]) -> float:
    """The lowest pair-weighted mean within-batch cosine that any split of these edits into
    batches of ``sizes`` could reach (every batch's sum equal to ``total / n_batches``);
    NaN when no batch holds two edits."""
    Xn = normalize_rows(embeddings).astype(np.float64)
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.sum() != len(Xn):
        raise ValueError(f"sizes add up to {int(sizes.sum())} but there are {len(Xn)} edits")
    pairs = float((sizes * (sizes - 1)).sum())
    if pairs == 0:
        return float("nan")
    total = Xn.sum(axis=0)
    return float((total @ total / len(sizes) - (Xn ** 2).sum()) / pairs)


def summarize_correlation(
    schedule: "Schedule", embeddings: Any, requests: Any = None
) -> dict[str, float]:
    """Whole-schedule figures under one embedding: ``mean_similarity`` (all within-batch
    pairs weighted equally), ``mean_batch_max_similarity``, ``max_similarity``,
    ``mean_nearest_similarity`` (over edits in batches of two or more),
    ``adjacent_similarity`` (consecutive edits in application order, across batches),
    ``floor_similarity`` (:func:`similarity_floor`), and with ``requests`` the totals
    ``same_subject_pairs`` and ``same_relation_pairs``."""
    n = schedule.n_edits
    if np.ndim(embeddings) != 2 or np.shape(embeddings)[0] != n:
        raise ValueError(f"embeddings: expected shape ({n}, dim), got {np.shape(embeddings)}")
    Xn = normalize_rows(embeddings)
    subjects, relations = _labels(requests, n)
    pair_sum = 0.0
    pairs = 0
    maxima, nearest_all = [], []
    same_subject = same_relation = 0
    for batch in schedule.batches:
        m = len(batch)
        mean, peak, nearest = _batch_figures(Xn[list(batch)])
        if m > 1:
            pair_sum += mean * m * (m - 1) / 2
            pairs += m * (m - 1) // 2
            maxima.append(peak)
            nearest_all.append(nearest)
        if requests is not None:
            same_subject += _pair_counts(subjects, batch)
            same_relation += _pair_counts(relations, batch)
    order = np.asarray(schedule.order, dtype=np.int64)
    out = {
        "mean_similarity": pair_sum / pairs if pairs else float("nan"),
        "mean_batch_max_similarity": float(np.mean(maxima)) if maxima else float("nan"),
        "max_similarity": float(np.max(maxima)) if maxima else float("nan"),
        "mean_nearest_similarity": float(np.concatenate(nearest_all).mean()) if nearest_all
        else float("nan"),
        "adjacent_similarity": float(pair_similarity(Xn, order[:-1], order[1:], normalized=True)
                                     .astype(np.float64).mean()) if n > 1 else float("nan"),
        "floor_similarity": similarity_floor(Xn, schedule.sizes),
    }
    if requests is not None:
        out["same_subject_pairs"] = same_subject
        out["same_relation_pairs"] = same_relation
    return out
