"""MEMIT: a batch of facts spread over a range of MLP layers.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("memit")({"layers": [2, 3, 4], "mom2_update_weight": 15000})
    res = ed.apply(h, requests, stats=moments, seed=0)
    res.diagnostics["layer_updates"][0]["keys"]   # K at the first layer (n, d_k), float64

Targets ``z_i = h_i + delta_i`` at the residual stream after the last layer; for each layer
``l_j`` ascending, keys ``K`` and hidden states ``H`` are recomputed on the partially edited
model, ``R = (Z - H) / (L - j)`` and ``dW = R K^T (lam C + K K^T)^-1`` (float64).
Subclasses of the family (EMMET, AlphaEdit, MEMIT-Merge) reuse this loop through three
hooks: :meth:`MEMIT._units` (the value units and the requests whose keys are read, one
per unit), :meth:`MEMIT._solve` (one layer's update) and :meth:`MEMIT._after_batch`;
PMET changes where the targets live (:meth:`MEMIT._value_sites`, :meth:`MEMIT._target_site`,
:meth:`MEMIT._spread`, :meth:`MEMIT._change`).
Where a norm follows the MLP (Gemma-3's ``post_feedforward_layernorm``), the value is
optimised at the last MLP's output before that norm and becomes the residual target
``h0 + N(m0 + d) - N(m0)``, and each layer's residual target is mapped through its norm
(:mod:`corredit.editors.post_norm`; ``post_norm_targets = false`` turns both off). ``mom2_precision="float32"`` rounds ``C`` to float32 before that solve, as the reference
code's float32 statistics do (see :class:`~corredit.editors.hparams.Mom2HParams`).
"""

from __future__ import annotations

from typing import Any

import torch

from corredit.editors.base import Editor, register_editor
from corredit.editors.covariance import second_moment_matrices
from corredit.editors.hparams import MemitHParams
from corredit.editors.keys import KeyReader
from corredit.editors.linalg import memit_update
from corredit.editors.post_norm import mlp_output_change
from corredit.editors.templates import flatten_groups
from corredit.editors.values import ValueOptimizer, ValueResult, ValueUnit, units_from_requests

__all__ = ["MEMIT"]


@register_editor("memit")
class MEMIT(Editor):
    """Mass-editing memory in a transformer; see the module docstring."""

    hparams_class = MemitHParams

    def _groups(self, h, hp: MemitHParams, seed: int):
        return self.templates_.groups(h, prompts=hp.context_prompts, lengths=hp.context_templates,
                                      seed=seed, top_k=hp.context_top_k)

    def _units(self, h, requests: list, hp: MemitHParams, seed: int
               ) -> tuple[list[ValueUnit], list]:
        """The value units of a batch and, for each, the request whose keys it writes at:
        one unit per request here."""
        groups = self._groups(h, hp, seed)
        return units_from_requests(requests, flatten_groups(groups), kl_prompt=hp.kl_prompt), requests

    def _solve(self, h, hp: MemitHParams, layer: int, change: torch.Tensor, keys: torch.Tensor,
               cov: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """One layer's ``dW`` (d, d_k) from the changes (n, d) and keys (n, d_k), and
        diagnostics for that layer."""
        return memit_update(change.T, keys.T, cov, hp.mom2_update_weight), {}

    def _after_batch(self, h, hp: MemitHParams, reader: KeyReader) -> dict[str, Any]:
        """Called once every layer is updated (``reader`` reads the batch's keys on the
        edited model); returns extra diagnostics."""
        return {}

    # -- where the targets live (PMET overrides these) ------------------------------------
    #: Index of the written vector in ``ValueResult.delta[:, site]``.
    target_index = 0

    def _value_sites(self, h, hp: MemitHParams) -> list:
        """Sites whose vectors the value optimisation finds: the residual stream after the
        last layer, or, where a norm follows the MLP, the last MLP's output before it (see
        :meth:`_targets`)."""
        from corredit.models import Site

        if self._post_norm(h, hp, hp.layers[-1]) is not None:
            return [Site("mlp_out", hp.layers[-1], "output")]
        return [Site("block", hp.layers[-1], "output")]

    def _post_norm(self, h, hp: MemitHParams, layer: int):
        """The norm between layer ``layer``'s MLP and the residual stream, when targets are
        mapped through it (``post_norm_targets``); else None."""
        return h.adapter.post_norm_module(h.model, layer) if hp.post_norm_targets else None

    def value_changes(self, h, hp: MemitHParams, vres: ValueResult) -> torch.Tensor:
        """(n, d) float64: the change each fact's value asks of the stream at
        :meth:`_target_site`: its ``delta``, or, for a value found before a norm that
        follows the MLP, the normalised change ``N(m0 + d) - N(m0)``."""
        t = self.target_index
        v0, d = vres.v0[:, t].to(torch.float64), vres.delta[:, t].to(torch.float64)
        if self._value_sites(h, hp)[t] == self._target_site(hp):
            return d
        norm = self._post_norm(h, hp, hp.layers[-1])
        p = next(norm.parameters())
        with torch.no_grad():
            return (norm((v0 + d).to(p)).to(torch.float64)
                    - norm(v0.to(p)).to(torch.float64)).to(d.device)

    def _targets(self, h, hp: MemitHParams, vres: ValueResult, reader: KeyReader, out_site
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, scale)``: the targets at ``out_site`` (n, d) and the size of each fact's
        change there (n,), float64. A value found before a norm that follows the MLP
        becomes the residual-stream target ``h0 + N(m0 + d) - N(m0)``: reachable through
        the norm by construction, where a target optimised in the residual stream itself
        may not be (Gemma-3's norm gains span 1 to 585)."""
        t = self.target_index
        change = self.value_changes(h, hp, vres)
        if self._value_sites(h, hp)[t] == out_site:
            return vres.v0[:, t].to(torch.float64) + change, change.norm(dim=1)
        h0 = reader.bare(reader.read([out_site])[out_site]).to(torch.float64)
        change = change.to(h0.device)
        return h0 + change, change.norm(dim=1)

    def _value_rule(self, hp: MemitHParams):
        """The value loss's adaptive NLL rule (None: MEMIT's fixed loss)."""
        return None

    def _target_site(self, hp: MemitHParams):
        """Where the target ``z`` is compared with the partially edited model."""
        from corredit.models import Site

        return Site("block", hp.layers[-1], "output")

    def _spread(self, j: int, n_layers: int) -> float:
        """Divisor of the remaining residual at the ``j``-th of ``n_layers`` layers."""
        return float(n_layers - j)

    def _change(self, h, hp: MemitHParams, layer: int, resid: torch.Tensor,
                reader: KeyReader) -> torch.Tensor:
        """The MLP output change that delivers ``resid``: mapped through a norm that
        follows the MLP (Gemma-3), else ``resid`` itself."""
        from corredit.models import Site

        norm = self._post_norm(h, hp, layer)
        if norm is None:
            return resid
        m_site = Site("mlp_out", layer, "output")
        m = reader.bare(reader.read([m_site])[m_site])
        return mlp_output_change(norm, m, resid.to(m.device)).to(resid.device)

    def _value_diagnostics(self, vres: ValueResult) -> dict[str, Any]:
        """Diagnostics of the optimised values beyond :meth:`ValueResult.diagnostics`
        (which an override may also replace, e.g. ``delta_norm``)."""
        return {}

    # -- the loop ---------------------------------------------------------------------------
    def _precompute(self, h, requests: list, hp: MemitHParams, *, stats, seed: int) -> ValueResult:
        """Target vectors of the requests, optimised jointly on the current model."""
        units, _ = self._units(h, requests, hp, seed)
        opt = ValueOptimizer(h, self._value_sites(h, hp), hp, max_batch_tokens=self.max_batch_tokens,
                             adaptive=self._value_rule(hp))
        return opt.optimize(units)

    def _edit(self, h, requests: list, hp: MemitHParams, *, stats, seed: int,
              precomputed: ValueResult | None = None) -> dict[str, Any]:
        from corredit.models import Site

        layers = list(hp.layers)
        covs = second_moment_matrices(stats, h, layers, editor=self.name,
                                      precision=hp.mom2_precision)
        vres = precomputed if precomputed is not None else self._precompute(
            h, requests, hp, stats=stats, seed=seed)
        n_sites = len(self._value_sites(h, hp))
        if vres.delta.shape[1] != n_sites:
            raise ValueError(f"{self.name}: precomputed values hold {vres.delta.shape[1]} "
                             f"vector(s) per case where this editor optimises {n_sites} "
                             f"(precompute them with this editor)")
        groups = self._groups(h, hp, seed)
        _, key_requests = self._units(h, requests, hp, seed)
        reader = KeyReader(h, key_requests, groups, max_batch_tokens=self.max_batch_tokens)
        out_site = self._target_site(hp)
        z, scale = self._targets(h, hp, vres, reader, out_site)           # (n, d), (n,)
        dtype = next(h.model.parameters()).dtype
        layer_updates = []
        for j, layer in enumerate(layers):
            k_site = Site("mlp_out", layer, "input")
            vals = reader.read([k_site, out_site])
            keys = reader.average(vals[k_site], hp.key_averaging)         # (n, d_k)
            current = reader.bare(vals[out_site])                         # (n, d)
            resid = (z.to(current.device) - current) / self._spread(j, len(layers))
            change = self._change(h, hp, layer, resid, reader)
            d_w, info = self._solve(h, hp, layer, change, keys, covs[layer])
            h.adapter.add_to_mlp_out_weight(h.model, layer, d_w.to(dtype))
            layer_updates.append({
                "layer": layer,
                "keys": keys.cpu(),
                "resid": resid.cpu(),
                "change": change.cpu(),
                "resid_norm": resid.norm(dim=1).cpu().tolist(),
                **info,
            })
        final = reader.bare(reader.read([out_site])[out_site])
        miss = (z.to(final.device) - final).norm(dim=1) / scale.clamp(min=1e-30).to(final.device)
        diag = vres.diagnostics()
        diag.update(self._value_diagnostics(vres))
        diag.update(
            layers=layers,
            targets=z.cpu(),
            target_miss=miss.cpu().tolist(),          # ||z - current|| / ||delta|| per fact
            layer_updates=layer_updates,
            templates=list(flatten_groups(groups)),
        )
        diag.update(self._after_batch(h, hp, reader))
        return diag
