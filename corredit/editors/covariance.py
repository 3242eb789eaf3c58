"""Resolve the ``stats`` argument of an editor into float64 second-moment matrices.

Usage::

    from corredit.editors.covariance import second_moment_matrices
    C = second_moment_matrices(stats, h, [3, 4])      # {3: Tensor(d_k, d_k) float64, ...}

``stats`` is either a mapping ``{layer: SecondMoment | Tensor | ndarray}`` (a
``SecondMoment`` contributes ``.matrix()``, the mean ``E[k k^T]``) or a callable
``stats(h, layers) -> mapping`` (e.g. ``lambda h, ls: cache.get(h, ls, corpus, 20000)``).
``precision="float32"`` rounds each ``C`` to float32 (returned as float64), as the
reference implementations' float32 statistics are::

    C32 = second_moment_matrices(stats, h, [3], precision="float32")   # MEMIT's get_cov
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from corredit.editors.linalg import as_float64

__all__ = ["second_moment_matrices", "StatsLike"]

StatsLike = Mapping[int, Any] | Callable[[Any, Sequence[int]], Mapping[int, Any]]


def second_moment_matrices(stats: StatsLike | None, h, layers: Sequence[int], *,
                           editor: str = "editor", precision: str = "float64"
                           ) -> dict[int, torch.Tensor]:
    """``{layer: C}`` for ``layers`` as float64 tensors on ``h.device``, rounded to float32
    first when ``precision`` is ``"float32"``."""
    if precision not in ("float64", "float32"):
        raise ValueError(f"{editor}: unknown second-moment precision {precision!r}; "
                         f"known: float64, float32")
    layers = [int(l) for l in layers]
    if stats is None:
        raise ValueError(
            f"{editor} needs second-moment statistics of the MLP keys at layers {layers}: pass "
            f"stats={{layer: SecondMoment}} (corredit.stats.second_moments) or a callable "
            f"stats(h, layers)"
        )
    if callable(stats) and not isinstance(stats, Mapping):
        stats = stats(h, layers)
    out = {}
    for layer in layers:
        if layer not in stats:
            raise KeyError(f"{editor}: stats hold no second moment for layer {layer}; "
                           f"they hold layers {sorted(stats)}")
        m = stats[layer]
        mat = m.matrix() if hasattr(m, "matrix") else m
        mat = as_float64(mat).to(h.device)
        d_k = int(h.key_size)
        if tuple(mat.shape) != (d_k, d_k):
            raise ValueError(f"{editor}: second moment at layer {layer} has shape "
                             f"{tuple(mat.shape)}, expected ({d_k}, {d_k}) (key size)")
        if not torch.isfinite(mat).all():
            raise ValueError(f"{editor}: second moment at layer {layer} holds non-finite values")
        out[layer] = mat.to(torch.float32).to(torch.float64) if precision == "float32" else mat
    return out
