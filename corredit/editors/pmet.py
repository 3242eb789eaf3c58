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

and applied before the next layer (MEMIT's loop and solve, with PMET's sites and spreading
as its hooks). The attention
vector only shapes the optimisation; no attention weight changes. The targets sit before
any norm that follows the MLP, so ``post_norm_targets`` plays no part.
"""

from __future__ import annotations

import math
from typing import Any

from corredit.editors.base import register_editor
from corredit.editors.hparams import PmetHParams
from corredit.editors.memit import MEMIT
from corredit.editors.values import AdaptiveNll, ValueResult

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
    target_index = MLP

    def _value_sites(self, h, hp: PmetHParams) -> list:
        from corredit.models import Site

        return [Site("attn_out", hp.layers[-1], "output"), Site("mlp_out", hp.layers[-1], "output")]

    def _value_rule(self, hp: PmetHParams) -> AdaptiveNll:
        return AdaptiveNll(nll_factor=hp.nll_loss_factor, top_factor=hp.top_nll_factor,
                           kl_stop=hp.kl_stop)

    def _target_site(self, hp: PmetHParams):
        from corredit.models import Site

        return Site("mlp_out", hp.layers[-1], "output")

    def _spread(self, j: int, n_layers: int) -> float:
        return math.sqrt(n_layers - j)

    def _change(self, h, hp, layer, resid, reader):
        return resid                     # the targets sit before any norm after the MLP

    def _value_diagnostics(self, vres: ValueResult) -> dict[str, Any]:
        norms = vres.delta.double().norm(dim=-1)                          # (n, 2)
        v0_norms = vres.v0.double().norm(dim=-1)
        return dict(
            delta_norm=norms[:, MLP].tolist(),
            v0_norm=v0_norms[:, MLP].tolist(),
            attn_delta_norm=norms[:, ATTN].tolist(),
            attn_v0_norm=v0_norms[:, ATTN].tolist(),
            v_nll_weight=vres.nll_weight.tolist(),
        )
