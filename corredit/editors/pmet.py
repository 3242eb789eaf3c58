"""PMET: MEMIT's batch edit with the value optimised at the attention and the MLP output
of the last layer, and only the MLP's target written.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("pmet")({"layers": [2, 3, 4], "mom2_update_weight": 6000})
    res = ed.apply(h, requests, stats=moments, seed=0)
    res.diagnostics["targets"]                   # (n, d) MLP-output targets at the last layer
    res.diagnostics["attn_delta_norm"]           # the attention vector, optimised, not written

Value optimisation (:class:`~corredit.editors.values.ValueOptimizer`, two sites): one
vector ``a_i`` added to the attention output and one ``d_i`` to the MLP output of the last
layer ``l_L`` at the subject's last token, each clamped to ``clamp_norm_factor`` times its
own unedited value's norm; the weight decay sums both normalised norms. The loss is
adaptive (:class:`~corredit.editors.values.AdaptiveNll`): the NLL term's weight drops to
``top_nll_factor`` once the new target is the top prediction, and a fact stops there once
``kl_factor x KL <= kl_stop``.

Update: the MLP target is ``z_i = m_i + d_i`` with ``m_i`` the unedited MLP output of
``l_L`` at the bare prompt. For each layer ``l_j`` ascending, keys ``K`` and the current
MLP outputs ``M`` of ``l_L`` are read on the partially edited model,

    R = (Z - M) / sqrt(L - j),     dW = R K^T (lam C + K K^T)^-1      (float64)

and applied before the next layer (MEMIT's solve, :meth:`MEMIT._solve`). The attention
vector only shapes the optimisation; no attention weight changes. The targets sit before
any norm that follows the MLP, so ``post_norm_targets`` plays no part.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from corredit.editors.base import register_editor
from corredit.editors.covariance import second_moment_matrices
from corredit.editors.hparams import PmetHParams
from corredit.editors.keys import KeyReader
from corredit.editors.memit import MEMIT
from corredit.editors.templates import flatten_groups
from corredit.editors.values import AdaptiveNll, ValueOptimizer, ValueResult

__all__ = ["PMET", "ATTN", "MLP"]

#: Indices of the two optimised vectors in ``ValueResult.delta[:, site]``.
ATTN, MLP = 0, 1


def _value_sites(layer: int) -> list:
    from corredit.models import Site

    return [Site("attn_out", layer, "output"), Site("mlp_out", layer, "output")]


@register_editor("pmet")
class PMET(MEMIT):
    """Precise model editing in a transformer; see the module docstring."""

    hparams_class = PmetHParams

    def _precompute(self, h, requests: list, hp: PmetHParams, *, stats, seed: int) -> ValueResult:
        """Attention and MLP vectors of the requests, optimised jointly on the current model."""
        units, _ = self._units(h, requests, hp, seed)
        rule = AdaptiveNll(nll_factor=hp.nll_loss_factor, top_factor=hp.top_nll_factor,
                           kl_stop=hp.kl_stop)
        opt = ValueOptimizer(h, _value_sites(hp.layers[-1]), hp,
                             max_batch_tokens=self.max_batch_tokens, adaptive=rule)
        return opt.optimize(units)

    def _edit(self, h, requests: list, hp: PmetHParams, *, stats, seed: int,
              precomputed: ValueResult | None = None) -> dict[str, Any]:
        from corredit.models import Site

        layers = list(hp.layers)
        covs = second_moment_matrices(stats, h, layers, editor=self.name,
                                      precision=hp.mom2_precision)
        vres = precomputed if precomputed is not None else self._precompute(
            h, requests, hp, stats=stats, seed=seed)
        if vres.delta.shape[1] != 2:
            raise ValueError(f"{self.name}: precomputed values hold {vres.delta.shape[1]} "
                             f"vector(s) per case; PMET needs its attention and MLP vectors "
                             f"(precompute them with this editor)")
        groups = self._groups(h, hp, seed)
        _, key_requests = self._units(h, requests, hp, seed)
        z = (vres.v0[:, MLP] + vres.delta[:, MLP]).to(torch.float64)       # (n, d)
        reader = KeyReader(h, key_requests, groups, max_batch_tokens=self.max_batch_tokens)
        m_site = Site("mlp_out", layers[-1], "output")
        dtype = next(h.model.parameters()).dtype
        layer_updates = []
        for j, layer in enumerate(layers):
            k_site = Site("mlp_out", layer, "input")
            vals = reader.read([k_site, m_site])
            keys = reader.average(vals[k_site], hp.key_averaging)         # (n, d_k)
            current = reader.bare(vals[m_site])                           # (n, d)
            resid = (z.to(current.device) - current) / math.sqrt(len(layers) - j)
            d_w, info = self._solve(h, hp, layer, resid, keys, covs[layer])
            h.adapter.add_to_mlp_out_weight(h.model, layer, d_w.to(dtype))
            layer_updates.append({
                "layer": layer,
                "keys": keys.cpu(),
                "resid": resid.cpu(),
                "change": resid.cpu(),
                "resid_norm": resid.norm(dim=1).cpu().tolist(),
                **info,
            })
        final = reader.bare(reader.read([m_site])[m_site])
        scale = vres.delta[:, MLP].double().norm(dim=1).clamp(min=1e-30).to(final.device)
        miss = (z.to(final.device) - final).norm(dim=1) / scale
        diag = vres.diagnostics()
        norms = vres.delta.double().norm(dim=-1)                          # (n, 2)
        v0_norms = vres.v0.double().norm(dim=-1)
        diag.update(
            delta_norm=norms[:, MLP].tolist(),
            v0_norm=v0_norms[:, MLP].tolist(),
            attn_delta_norm=norms[:, ATTN].tolist(),
            attn_v0_norm=v0_norms[:, ATTN].tolist(),
            v_nll_weight=vres.nll_weight.tolist(),
            layers=layers,
            targets=z.cpu(),
            target_miss=miss.cpu().tolist(),          # ||z - m_final|| / ||d|| per fact
            layer_updates=layer_updates,
            templates=list(flatten_groups(groups)),
        )
        diag.update(self._after_batch(h, hp, reader))
        return diag
