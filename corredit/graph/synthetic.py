"""Synthetic embeddings shaped like sentence embeddings, for tests and benchmarks.

Usage::

    from corredit.graph.synthetic import clustered_embeddings
    X, topic, group = clustered_embeddings(21919, 384, seed=0)
    X.shape, X.dtype        # (21919, 384) float32, unit rows

A mixture of Gaussians with the structure sentence embeddings of edit prompts show: a
direction all vectors share (so random pairs have a positive cosine), topics of
Zipf-distributed sizes (like relations), sub-clusters inside each topic (like objects),
and small groups of near-duplicates (like several edits of one subject). ``group[i]``
numbers the near-duplicate group of row ``i`` (rows alone in their group have a group of
their own).
"""

from __future__ import annotations

import numpy as np

__all__ = ["clustered_embeddings"]


def _unit(A: np.ndarray) -> np.ndarray:
    return A / np.linalg.norm(A, axis=-1, keepdims=True)


def clustered_embeddings(
    n: int,
    dim: int = 384,
    *,
    n_topics: int = 40,
    subclusters: int = 12,
    shared: float = 0.35,
    topic_scale: float = 0.75,
    sub_scale: float = 0.55,
    noise: float = 0.85,
    duplicate_fraction: float = 0.07,
    duplicate_noise: float = 0.6,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, topic, group)``: ``n`` unit rows in ``dim`` dimensions (float32), each row's
    topic, and each row's near-duplicate group; see the module docstring. The scales set
    the length of each component before normalisation (noise is spread over all
    dimensions)."""
    if n < 1 or dim < 1:
        raise ValueError(f"need n >= 1 and dim >= 1, got n={n}, dim={dim}")
    rng = np.random.default_rng(seed)
    common = _unit(rng.standard_normal(dim))
    topics = _unit(rng.standard_normal((n_topics, dim)))
    subs = _unit(rng.standard_normal((n_topics, subclusters, dim)))
    weights = 1.0 / np.arange(1, n_topics + 1) ** 0.9
    n_base = max(1, int(round(n * (1.0 - duplicate_fraction))))
    topic = rng.choice(n_topics, size=n_base, p=weights / weights.sum())
    sub = rng.integers(subclusters, size=n_base)
    base = (shared * common + topic_scale * topics[topic] + sub_scale * subs[topic, sub]
            + noise * rng.standard_normal((n_base, dim)) / np.sqrt(dim))
    parent = np.concatenate([np.arange(n_base), rng.integers(n_base, size=n - n_base)])
    X = base[parent] + np.where(
        (np.arange(n) >= n_base)[:, None],
        duplicate_noise * rng.standard_normal((n, dim)) / np.sqrt(dim), 0.0)
    order = rng.permutation(n)
    return (_unit(X[order]).astype(np.float32), topic[parent][order].astype(np.int64),
            parent[order].astype(np.int64))
