"""Where statistics came from: a hash of a model's weights and the provenance record.

Usage::

    from corredit.stats import weights_hash, WeightsHasher
    weights_hash(h.model)          # 'sha256:…' over every parameter and buffer
    hasher = WeightsHasher()       # remembers hashes while the weights stay untouched
    hasher(h.model)
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import torch

__all__ = ["weights_hash", "WeightsHasher", "ProvenanceError", "PROVENANCE_KEYS"]

#: The provenance fields that must agree for a cached entry to be used.
PROVENANCE_KEYS: tuple[str, ...] = (
    "model", "weights_hash", "layer", "corpus", "max_tokens", "max_length", "dtype",
)


class ProvenanceError(ValueError):
    """A cached statistic whose provenance does not match the request."""


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes()


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of all parameters and buffers."""
    h = hashlib.sha256()
    named = dict(model.named_parameters(remove_duplicate=True))
    for name, buf in model.named_buffers(remove_duplicate=True):
        named.setdefault("buffer:" + name, buf)
    for name in sorted(named):
        t = named[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_tensor_bytes(t))
    return "sha256:" + h.hexdigest()


class WeightsHasher:
    """:func:`weights_hash` with memory: the hash of a model is recomputed only when one
    of its tensors was modified in place (tracked by the tensors' version counters) or
    replaced."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[weakref.ref, tuple[Any, ...], str]] = {}

    @staticmethod
    def _state(model: torch.nn.Module) -> tuple[Any, ...]:
        out = []
        for t in list(model.parameters()) + list(model.buffers()):
            out.append((id(t), t.data_ptr(), getattr(t, "_version", None)))
        return tuple(out)

    def __call__(self, model: torch.nn.Module) -> str:
        state = self._state(model)
        hit = self._memo.get(id(model))
        if hit is not None and hit[0]() is model and hit[1] == state:
            return hit[2]
        digest = weights_hash(model)
        self._memo[id(model)] = (weakref.ref(model), state, digest)
        return digest
