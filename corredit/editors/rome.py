"""ROME / r-ROME: a rank-one update of one layer's MLP output weight per fact.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("rome")({"layer": 3})                   # r-ROME keys (default)
    ed_orig = get_editor("rome")({"layer": 3, "original_key_mismatch": True})
    res = ed.apply(h, requests, stats=moments, seed=0)     # facts applied one after another
    res.diagnostics["keys"], res.diagnostics["targets"]    # k*, v* (float64); W_new k* = v*

``u = C^-1 k*`` (normalised), ``v* = W k* + delta`` with ``delta`` from the value
optimisation at the MLP output, and ``W_new = W + (v* - W k*) u^T / (u^T k*)``. With
``original_key_mismatch`` the denominator and ``W k`` use the bare-prompt key while ``u``
keeps the template average, as in the reference code (``v* = W k_bare + delta`` then).
"""

from __future__ import annotations

from typing import Any

import torch

from corredit.editors.base import Editor, register_editor
from corredit.editors.covariance import second_moment_matrices
from corredit.editors.hparams import RomeHParams
from corredit.editors.keys import KeyReader
from corredit.editors.linalg import SPDSolver, rank_one_update
from corredit.editors.templates import flatten_groups
from corredit.editors.values import ValueOptimizer, ValueResult, units_from_requests

__all__ = ["ROME"]


@register_editor("rome")
class ROME(Editor):
    """Rank-one model editing; see the module docstring."""

    hparams_class = RomeHParams
    sequential_within_batch = True

    def _groups(self, h, hp: RomeHParams, seed: int):
        return self.templates_.groups(h, prompts=hp.context_prompts, lengths=hp.context_templates,
                                      seed=seed, top_k=hp.context_top_k)

    def _optimizer(self, h, hp: RomeHParams) -> ValueOptimizer:
        from corredit.models import Site

        return ValueOptimizer(h, [Site("mlp_out", hp.layer, "output")], hp,
                              max_batch_tokens=self.max_batch_tokens)

    def _precompute(self, h, requests: list, hp: RomeHParams, *, stats, seed: int) -> ValueResult:
        """Value vectors of independent single edits, optimised jointly."""
        groups = self._groups(h, hp, seed)
        units = units_from_requests(requests, flatten_groups(groups), kl_prompt=hp.kl_prompt)
        return self._optimizer(h, hp).optimize(units)

    def _edit(self, h, requests: list, hp: RomeHParams, *, stats, seed: int,
              precomputed: ValueResult | None = None) -> dict[str, Any]:
        from corredit.models import Site

        layer = hp.layer
        cov = second_moment_matrices(stats, h, [layer], editor=self.name)[layer]
        solver = SPDSolver(cov, what=f"second moment of the keys at layer {layer}")
        groups = self._groups(h, hp, seed)
        templates = flatten_groups(groups)
        key_site = Site("mlp_out", layer, "input")
        dtype = next(h.model.parameters()).dtype
        parts, keys, targets, denoms, key_cos, gains = [], [], [], [], [], []
        for i, req in enumerate(requests):
            reader = KeyReader(h, [req], groups, max_batch_tokens=self.max_batch_tokens)
            k_all = reader.read([key_site])[key_site]
            k_avg = reader.average(k_all, hp.key_averaging)[0]
            k_bare = reader.bare(k_all)[0]
            if precomputed is None:
                vr = self._optimizer(h, hp).optimize(
                    units_from_requests([req], templates, kl_prompt=hp.kl_prompt))
            else:
                vr = precomputed.select([i])
            parts.append(vr)
            delta = vr.delta[0, 0].to(torch.float64).to(k_avg.device)
            u = solver.solve(k_avg)
            u = u / u.norm()
            k_star = k_bare if hp.original_key_mismatch else k_avg
            w = h.adapter.read_mlp_out_weight(h.model, layer).to(torch.float64).to(k_avg.device)
            v_star = w @ k_star + delta
            d_w, _ = rank_one_update(u, k_star, v_star - w @ k_star)
            h.adapter.add_to_mlp_out_weight(h.model, layer, d_w.to(dtype))
            keys.append(k_star.cpu())
            targets.append(v_star.cpu())
            denoms.append(float(torch.dot(u, k_star)))
            gains.append(float(torch.dot(u, k_bare) / torch.dot(u, k_star)))
            key_cos.append(float(torch.nn.functional.cosine_similarity(k_avg, k_bare, dim=0)))
        vres = ValueResult.concat(parts)
        diag = vres.diagnostics()
        diag.update(
            layer=layer,
            u_dot_k=denoms,
            bare_key_gain=gains,          # share of delta the bare prompt's key receives
            bare_avg_key_cosine=key_cos,
            keys=torch.stack(keys),
            targets=torch.stack(targets),
            templates=list(templates),
        )
        return diag
