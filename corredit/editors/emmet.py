"""EMMET: MEMIT's batch of targets written as equality constraints, one layer at a time.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("emmet")({"layers": [2], "emmet_lambda": 0.1})
    res = ed.apply(h, requests, stats=moments, seed=0)
    res.diagnostics["layer_updates"][0]["pseudo_inverse"]    # True where D was singular

Targets, residual spreading and keys are MEMIT's (:class:`~corredit.editors.memit.MEMIT`);
each layer's update is the least change on the preserved keys subject to
``(W + dW) K_E = W K_E + R``:

    dW = R (K_E^T C'^-1 K_E + eps I)^-1 K_E^T C'^-1,   C' = mom2_update_weight C + update_norm_lambda I

with ``eps = emmet_lambda`` only when the batch holds more than one fact, and a
pseudo-inverse where ``D = K_E^T C'^-1 K_E (+ eps I)`` is not positive definite
(coinciding keys). At one fact and one layer this is ROME's rank-one update
``R u^T / (u^T k)``, ``u ∝ C^-1 k``.
"""

from __future__ import annotations

from typing import Any

import torch

from corredit.editors.base import register_editor
from corredit.editors.hparams import EmmetHParams
from corredit.editors.linalg import SPDSolver, as_float64
from corredit.editors.memit import MEMIT

__all__ = ["EMMET", "emmet_update"]


def emmet_update(resid: torch.Tensor, keys: torch.Tensor, cov: torch.Tensor, *,
                 eps: float = 0.0) -> tuple[torch.Tensor, bool]:
    """``dW = R (K^T C^-1 K + eps I)^-1 K^T C^-1`` with ``R`` (d, n), ``K`` (d_k, n), ``C``
    (d_k, d_k), float64; returns ``(dW, used_pseudo_inverse)``."""
    resid, keys, cov = as_float64(resid), as_float64(keys), as_float64(cov)
    c_inv_k = SPDSolver(cov, what="scaled second moment C'").solve(keys)    # (d_k, n)
    d = keys.T @ c_inv_k
    d = 0.5 * (d + d.T)
    if eps:
        d = d + eps * torch.eye(d.shape[0], dtype=d.dtype, device=d.device)
    factor, info = torch.linalg.cholesky_ex(d)
    if int(info) == 0:
        x = torch.cholesky_solve(c_inv_k.T, factor)                          # (n, d_k)
        return resid @ x, False
    return resid @ (torch.linalg.pinv(d, hermitian=True) @ c_inv_k.T), True


@register_editor("emmet")
class EMMET(MEMIT):
    """Equality-constrained mass editing; see the module docstring."""

    hparams_class = EmmetHParams

    def _solve(self, h, hp: EmmetHParams, layer: int, change: torch.Tensor, keys: torch.Tensor,
               cov: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        c = hp.mom2_update_weight * as_float64(cov)
        if hp.update_norm_lambda:
            c = c + hp.update_norm_lambda * torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
        eps = hp.emmet_lambda if keys.shape[0] > 1 else 0.0
        d_w, pinv = emmet_update(change.T, keys.T, c, eps=eps)
        return d_w, {"pseudo_inverse": pinv, "emmet_eps": eps}
