"""On-disk cache of embeddings, keyed by (dataset, embedder identity, model, layer, texts).

Usage::

    from corredit.embed import EmbeddingCache, embed_requests, make_embedder
    cache = EmbeddingCache("~/.cache/corredit/embeddings")
    X = embed_requests(requests, make_embedder("tfidf", field="subject"),
                       cache=cache, dataset="counterfact")   # computed, stored
    X = embed_requests(...same...)                            # read back, no recompute
    cache.hits, cache.misses                                  # (1, 1)

The key is a SHA-256 over the dataset name, ``embedder.identity()`` (name, parameters,
model fingerprint, layer) and every request's subject, template, relation id and new
target, so any change to the inputs gives a new entry. Entries are written atomically
(``.npy`` plus a ``.json`` provenance record).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from corredit.atomic import atomic_path, atomic_write_text
from corredit.paths import cache_root
from corredit.embed.base import Embedder
from corredit.embed.fields import request_fingerprint_rows
from corredit.types import EditRequest

__all__ = ["EmbeddingCache", "embed_requests", "cache_key", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``embeddings`` below :func:`corredit.paths.cache_root`."""
    return cache_root() / "embeddings"


def cache_key(requests: Sequence[EditRequest], identity: dict[str, Any],
              dataset: str = "") -> str:
    """Hex SHA-256 identifying one embedding of ``requests``."""
    h = hashlib.sha256()
    h.update(json.dumps({"dataset": dataset, "identity": identity}, sort_keys=True,
                        default=str).encode())
    for row in request_fingerprint_rows(requests):
        h.update(b"\x1e")
        h.update(row.encode())
    return h.hexdigest()


class EmbeddingCache:
    """A folder of cached embedding matrices; counts its ``hits`` and ``misses``."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def load(self, key: str, n_rows: int | None = None) -> np.ndarray | None:
        """The stored matrix for ``key`` (with ``n_rows`` rows when given), or ``None``."""
        path = self._path(key)
        arr = None
        if path.is_file():
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError):  # truncated or foreign file: recompute
                arr = None
        if arr is None or (n_rows is not None and (arr.ndim != 2 or arr.shape[0] != n_rows)):
            self.misses += 1
            return None
        self.hits += 1
        return arr

    def save(self, key: str, array: np.ndarray, provenance: dict[str, Any]) -> Path:
        """Store ``array`` (and a JSON provenance record) under ``key``; atomic."""
        path = self._path(key)
        with atomic_path(path) as tmp:
            np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
        atomic_write_text(json.dumps(provenance, sort_keys=True, default=str, indent=1),
                          path.with_suffix(".json"))
        return path


def embed_requests(requests: Sequence[EditRequest], embedder: Embedder, *,
                   cache: EmbeddingCache | None = None, dataset: str = "") -> np.ndarray:
    """``embedder.fit(requests).transform(requests)`` through ``cache`` when given."""
    if cache is None:
        return embedder.fit_transform(requests)
    identity = embedder.identity()
    key = cache_key(requests, identity, dataset)
    hit = cache.load(key, n_rows=len(requests))
    if hit is not None:
        return hit
    X = embedder.fit_transform(requests)
    cache.save(key, X, {"dataset": dataset, "identity": identity, "n": len(requests),
                        "shape": list(X.shape), "dtype": str(X.dtype)})
    return X
