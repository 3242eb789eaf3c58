"""AlphaEdit: MEMIT's targets written only into the null space of the preserved keys.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("alphaedit")({"layers": [2, 3], "l2_weight": 10.0})
    for batch in batches:                                  # sequential batches
        ed.apply(h, batch, stats=moments, seed=0)          # C_hat grows by K K^T per batch
    ed.state_for(h)[2]["c_hat"]                            # (d_k, d_k) float64
    ed.restore(h)                                          # weights back, C_hat reset

Per layer, with ``P`` the projector onto the eigenvectors of ``C`` that carry little energy
(:func:`nullspace_projector`; rule in :class:`~corredit.editors.hparams.AlphaEditHParams`),
``K`` the batch's keys (d_k, n), ``R`` MEMIT's spread residual and ``C_hat`` the sum of
``K K^T`` over this editor's earlier batches on the model:

    dW^T = (P (K K^T + C_hat) + alpha I)^-1 P K R^T        (float64)

so ``dW^T`` lies in the range of ``P`` and ``dW k0 = 0`` for every ``k0`` with ``P k0 = 0``.
After the batch, its keys are read again on the edited model at every layer and added to
``C_hat``. ``C_hat`` and the projectors live on this editor instance, per model; ``restore``
resets them.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any, Callable, Sequence

import torch

from corredit.editors.base import register_editor
from corredit.editors.hparams import AlphaEditHParams
from corredit.editors.keys import KeyReader
from corredit.editors.linalg import as_float64
from corredit.editors.memit import MEMIT

__all__ = ["AlphaEdit", "nullspace_projector", "alphaedit_update"]


def nullspace_projector(cov: torch.Tensor, *, rule: str = "energy", energy: float = 1e-2,
                        threshold: float = 2e-2) -> torch.Tensor:
    """``P = U_0 U_0^T`` over the eigenvectors ``U_0`` of ``cov`` (float64): ``"energy"``,
    the smallest eigenvalues whose sum is at most ``energy`` of the trace; ``"absolute"``,
    the eigenvalues below ``threshold`` (the reference's rule)."""
    c = as_float64(cov)
    evals, evecs = torch.linalg.eigh(0.5 * (c + c.T))               # ascending
    evals = evals.clamp(min=0)
    if rule == "energy":
        keep = torch.cumsum(evals, 0) <= energy * evals.sum()
    elif rule == "absolute":
        keep = evals < threshold
    else:
        raise ValueError(f"unknown null-space rule {rule!r}; known: energy, absolute")
    u0 = evecs[:, keep]
    return u0 @ u0.T


def alphaedit_update(resid: torch.Tensor, keys: torch.Tensor, proj: torch.Tensor,
                     c_hat: torch.Tensor, alpha: float) -> torch.Tensor:
    """``dW = [(P (K K^T + C_hat) + alpha I)^-1 P K R^T]^T`` with ``R`` (d, n), ``K``
    (d_k, n), ``P`` and ``C_hat`` (d_k, d_k); float64."""
    resid, keys, proj, c_hat = (as_float64(x) for x in (resid, keys, proj, c_hat))
    eye = torch.eye(proj.shape[0], dtype=proj.dtype, device=proj.device)
    a = proj @ (keys @ keys.T + c_hat) + alpha * eye
    return torch.linalg.solve(a, proj @ keys @ resid.T).T


@register_editor("alphaedit")
class AlphaEdit(MEMIT):
    """Null-space constrained editing; see the module docstring."""

    hparams_class = AlphaEditHParams

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._state: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()

    def state_for(self, h) -> dict[int, dict[str, Any]]:
        """``{layer: {"projector", "c_hat", "nullspace_dim", "batches"}}`` on ``h`` (live)."""
        return self._state.setdefault(h.model, {})

    def reset(self, h) -> None:
        """Forget ``C_hat`` and the projectors for ``h`` (``restore`` also calls this)."""
        super().reset(h)
        self._state.pop(h.model, None)

    def edit_each(self, h, requests: Sequence, callback: Callable, *, stats=None,
                  seed: int = 0) -> list[Any]:
        """Independent single edits: ``C_hat`` is put back after each, like the weights."""
        saved = copy.deepcopy(self.state_for(h))

        def each(handle, request, result):
            try:
                return callback(handle, request, result)
            finally:
                self._state[h.model] = copy.deepcopy(saved)

        return super().edit_each(h, requests, each, stats=stats, seed=seed)

    def _layer_state(self, h, hp: AlphaEditHParams, layer: int, cov: torch.Tensor) -> dict:
        st = self.state_for(h).get(layer)
        if st is None:
            proj = nullspace_projector(cov, rule=hp.nullspace_rule, energy=hp.nullspace_energy,
                                       threshold=hp.nullspace_threshold)
            st = {"projector": proj, "c_hat": torch.zeros_like(proj),
                  "nullspace_dim": int(round(float(torch.trace(proj)))), "batches": 0}
            self.state_for(h)[layer] = st
        return st

    def _solve(self, h, hp: AlphaEditHParams, layer: int, change: torch.Tensor,
               keys: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        st = self._layer_state(h, hp, layer, cov)
        proj, c_hat = st["projector"].to(keys.device), st["c_hat"].to(keys.device)
        d_w = alphaedit_update(change.T, keys.T, proj, c_hat, hp.l2_weight)
        return d_w, {"nullspace_dim": st["nullspace_dim"]}

    def _after_batch(self, h, hp: AlphaEditHParams, reader: KeyReader) -> dict[str, Any]:
        from corredit.models import Site

        sites = {layer: Site("mlp_out", layer, "input") for layer in hp.layers}
        vals = reader.read(list(sites.values()))
        trace = {}
        for layer, site in sites.items():
            keys = reader.average(vals[site], hp.key_averaging)         # (n, d_k), edited model
            st = self.state_for(h)[layer]
            st["c_hat"] = st["c_hat"].to(keys.device) + keys.T @ keys
            st["batches"] += 1
            trace[layer] = float(torch.trace(st["c_hat"]))
        return {"c_hat_trace": trace}
