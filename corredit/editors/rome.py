"""ROME / r-ROME: a rank-one update of one layer's MLP output weight per fact.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("rome")({"layer": 3})                   # r-ROME, the authors' update
    ed_orig = get_editor("rome")({"layer": 3, "original_key_mismatch": True})   # ROME's code
    res = ed.apply(h, requests, stats=moments, seed=0)     # facts applied one after another
    d = res.diagnostics
    d["keys"], d["targets"]       # k*, v* per fact (float64): W_new k* = v*
    d["bare_keys"], d["value_delta"]    # k_bare and the optimised vector delta

With ``k_avg`` the key averaged over the context templates, ``k_bare`` the bare prompt's
key, ``delta`` the optimised vector at the MLP output and ``u = C^-1 k_avg / |C^-1 k_avg|``,
every variant adds ``dW = (numerator / denominator) u^T``:

==============================  ==============================  ==============
variant (hyperparameters)       numerator                       denominator
==============================  ==============================  ==============
r-ROME (default)                ``delta + W (k_bare - k_avg)``  ``u^T k_avg``
``rome_target="template_mean"`` ``delta``                       ``u^T k_avg``
``original_key_mismatch``       ``delta``                       ``u^T k_bare``
==============================  ==============================  ==============

r-ROME's numerator is the authors' ``(v_bare + delta) - mean_templates(v)`` (the mean
taken like ``k_avg``, per ``key_averaging``; the output bias cancels): the weight
then maps ``k_avg`` to the bare prompt's edited value ``W k_bare + delta``. The
``template_mean`` variant maps it to ``W k_avg + delta`` instead. The original code maps
``k_bare`` to ``W k_bare + delta`` through ``u`` built from ``k_avg``; the mismatch makes
the denominator small for some facts ("disabling edits"). ``mom2_precision="float32"``
forms ``u`` with the reference's float32 inverse (see :class:`~corredit.editors.hparams.Mom2HParams`).
"""

from __future__ import annotations

from typing import Any

import torch

from corredit.editors.base import Editor, register_editor
from corredit.editors.covariance import second_moment_matrices
from corredit.editors.hparams import RomeHParams
from corredit.editors.keys import KeyReader
from corredit.editors.linalg import rank_one_update, second_moment_solver
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
        cov = second_moment_matrices(stats, h, [layer], editor=self.name,
                                     precision=hp.mom2_precision)[layer]
        solver = second_moment_solver(cov, hp.mom2_precision,
                                      what=f"second moment of the keys at layer {layer}")
        groups = self._groups(h, hp, seed)
        templates = flatten_groups(groups)
        key_site = Site("mlp_out", layer, "input")
        dtype = next(h.model.parameters()).dtype
        parts, keys, bare_keys, targets, deltas = [], [], [], [], []
        denoms, key_cos, gains = [], [], []
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
            w = h.adapter.read_mlp_out_weight(h.model, layer).to(torch.float64).to(k_avg.device)
            k_star = k_bare if hp.original_key_mismatch else k_avg
            v_from = k_avg if hp.rome_target == "template_mean" else k_bare
            v_star = w @ v_from + delta
            d_w, _ = rank_one_update(u, k_star, v_star - w @ k_star)
            h.adapter.add_to_mlp_out_weight(h.model, layer, d_w.to(dtype))
            keys.append(k_star.cpu())
            bare_keys.append(k_bare.cpu())
            targets.append(v_star.cpu())
            deltas.append(delta.cpu())
            denoms.append(float(torch.dot(u, k_star)))
            gains.append(float(torch.dot(u, k_bare) / torch.dot(u, k_star)))
            key_cos.append(float(torch.nn.functional.cosine_similarity(k_avg, k_bare, dim=0)))
        vres = ValueResult.concat(parts)
        diag = vres.diagnostics()
        diag.update(
            layer=layer,
            u_dot_k=denoms,
            bare_key_gain=gains,          # u^T k_bare / u^T k*: the bare prompt's share of the update
            bare_avg_key_cosine=key_cos,
            keys=torch.stack(keys),
            bare_keys=torch.stack(bare_keys),
            targets=torch.stack(targets),
            value_delta=torch.stack(deltas),
            templates=list(templates),
        )
        return diag
