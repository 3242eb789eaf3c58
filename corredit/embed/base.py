"""The embedder interface and its registry.

Usage::

    from corredit.embed import make_embedder, EMBEDDERS
    emb = make_embedder("tfidf", field="subject")
    X = emb.fit(requests).transform(requests)      # float32 (n, dim)
    EMBEDDERS.names()                              # ['editor_key', 'hidden', 'minilm', ...]

An embedder follows scikit-learn's shape: the constructor only stores parameters,
``fit(requests)`` returns ``self`` and ``transform(requests)`` returns one float32 row
per request. ``identity()`` lists what determines the output (used as cache key).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from corredit.registry import Registry
from corredit.types import EditRequest

__all__ = ["Embedder", "EMBEDDERS", "make_embedder", "as_float32_rows"]

#: Embedders by name; ``make_embedder(name, **params)`` builds one.
EMBEDDERS: Registry[type["Embedder"]] = Registry(
    "embedder", hint="register one with @EMBEDDERS.register(name) in corredit.embed"
)


class Embedder:
    """Maps edit requests to float32 vectors (override ``transform``; ``fit`` if it learns)."""

    #: Registry name; set by subclasses.
    name: str = ""

    def fit(self, requests: Sequence[EditRequest]) -> "Embedder":
        """Learn from ``requests`` (no-op for embedders that learn nothing); returns self."""
        return self

    def transform(self, requests: Sequence[EditRequest]) -> np.ndarray:
        """One float32 row per request."""
        raise NotImplementedError

    def fit_transform(self, requests: Sequence[EditRequest]) -> np.ndarray:
        """``fit(requests).transform(requests)``."""
        return self.fit(requests).transform(requests)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters that shape the output."""
        return {}

    def identity(self) -> dict[str, Any]:
        """Everything that determines the output apart from the requests: name,
        parameters and, for model-based embedders, the model fingerprint and layer."""
        return {"embedder": self.name, **self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def make_embedder(name: str, **params: Any) -> Embedder:
    """The registered embedder ``name`` built with ``params``."""
    return EMBEDDERS.get(name)(**params)


def as_float32_rows(x: Any, n: int, *, source: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 (n, dim) array; checks the row count."""
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{source}: expected {n} rows, got array of shape {arr.shape}")
    return arr
