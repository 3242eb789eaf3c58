"""The uncentred second moment ``C = E[k kᵀ]`` of one layer's MLP keys, in float64.

Usage::

    from corredit.stats import SecondMoment
    m = SecondMoment.zeros(d_k=4, layer=3)
    m.add(keys)                 # keys: Tensor (n, 4), any float dtype; adds Σ k kᵀ and n
    m.count, m.sum              # int, float64 (4, 4)
    C = m.matrix()              # sum / count
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["SecondMoment"]


@dataclass
class SecondMoment:
    """Running ``Σ k kᵀ`` (``sum``, float64) and number of keys (``count``) for one layer.

    ``provenance`` records where the numbers came from (model, weights hash, corpus,
    budget...); it is filled by :func:`corredit.stats.second_moments` and the cache.
    """

    sum: torch.Tensor
    count: int = 0
    layer: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sum.ndim != 2 or self.sum.shape[0] != self.sum.shape[1]:
            raise ValueError(f"SecondMoment.sum must be a square matrix, got {tuple(self.sum.shape)}")
        if self.sum.dtype != torch.float64:
            self.sum = self.sum.to(torch.float64)
        self.count = int(self.count)

    @classmethod
    def zeros(cls, d_k: int, *, layer: int | None = None, device: Any = None) -> "SecondMoment":
        """An empty accumulator of size ``d_k``."""
        return cls(torch.zeros(d_k, d_k, dtype=torch.float64, device=device), 0, layer)

    @property
    def d_k(self) -> int:
        """The key dimension."""
        return int(self.sum.shape[0])

    def add(self, keys: torch.Tensor) -> "SecondMoment":
        """Accumulate keys ``(n, d_k)``: one float64 matrix product."""
        if keys.ndim != 2 or keys.shape[1] != self.d_k:
            raise ValueError(f"keys must have shape (n, {self.d_k}), got {tuple(keys.shape)}")
        k = keys.detach().to(device=self.sum.device, dtype=torch.float64)
        self.sum.addmm_(k.T, k)
        self.count += int(k.shape[0])
        return self

    def matrix(self) -> torch.Tensor:
        """``C = sum / count`` (float64)."""
        if self.count <= 0:
            raise ValueError(f"SecondMoment of layer {self.layer} holds no tokens")
        return self.sum / self.count

    def to(self, device: Any) -> "SecondMoment":
        """A copy on ``device`` (same count, layer and provenance)."""
        return SecondMoment(self.sum.to(device), self.count, self.layer, dict(self.provenance))

    def copy(self) -> "SecondMoment":
        """An independent copy on the CPU."""
        return SecondMoment(self.sum.detach().to("cpu", copy=True), self.count, self.layer,
                            dict(self.provenance))

    def __repr__(self) -> str:
        return (f"SecondMoment(layer={self.layer}, d_k={self.d_k}, count={self.count}, "
                f"device={self.sum.device})")
