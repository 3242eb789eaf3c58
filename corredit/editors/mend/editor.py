"""The ``mend`` editor: one forward/backward pass per batch, the gradient factors mapped
through a trained MEND network to updates of the last layers' ``W_out``.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("mend")({"network": "runs/mend-world"})     # a folder or a name
    res = ed.apply(h, requests, seed=0)                         # no statistics needed
    res.diagnostics["inner_nll"]                                # per edit, before the edit

The network is trained beforehand (``corredit train-editor mend``) for this model; its
``mend.json`` names the edited layers, which are this editor's declared parameters. A
batch is one edit of all its requests together: the loss whose gradient is transformed
sums each request's mean target NLL (``batch_loss``), and ``lr_scale`` multiplies the
update.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from corredit.editors.base import Editor, register_editor
from corredit.editors.hparams import HParams
from corredit.editors.mend.factors import BATCH_LOSSES, TokenRows, edit_factors
from corredit.editors.mend.io import load_network, resolve_network
from corredit.editors.mend.network import MendNetwork

__all__ = ["MendHParams", "Mend"]


@dataclass(frozen=True)
class MendHParams(HParams):
    """``network``: folder or name of a trained network (required); ``lr_scale``: factor on
    the update; ``batch_loss``: see :mod:`corredit.editors.mend.factors`."""

    network: str = ""
    lr_scale: float = 1.0
    batch_loss: str = "sum_of_means"

    def validate(self, *, where: str = "") -> None:
        if self.batch_loss not in BATCH_LOSSES:
            raise ValueError(f"{where or 'MendHParams'}: batch_loss must be one of "
                             f"{', '.join(BATCH_LOSSES)}, got {self.batch_loss!r}")


@register_editor("mend")
class Mend(Editor):
    """MEND (module docstring)."""

    hparams_class = MendHParams
    #: Needs a network trained beforehand (``corredit train-editor mend``): default
    #: hyperparameters alone cannot edit.
    requires_training: ClassVar[bool] = True

    def network_for(self, h, hp: MendHParams | None = None) -> MendNetwork:
        """The trained network named by the hyperparameters, loaded once and checked
        against model ``h``."""
        hp = hp or self.hparams_for(h)
        if not hp.network:
            raise ValueError("mend: no trained network; set hparams network = FOLDER or NAME "
                             "(train one with 'corredit train-editor mend --model MODEL "
                             "--data DATA --out FOLDER')")
        folder = resolve_network(hp.network)
        cache = getattr(self, "networks_", None)
        if cache is None:
            cache = self.networks_ = {}
        if folder not in cache:
            cache[folder] = load_network(folder)
        net, doc = cache[folder]
        cfg = net.config
        where = folder / "mend.json"
        if (cfg.key_size, cfg.hidden_size) != (h.key_size, h.hidden_size):
            raise ValueError(f"{where}: trained for widths d_k={cfg.key_size}, d={cfg.hidden_size}; "
                             f"model {h.name!r} has d_k={h.key_size}, d={h.hidden_size}")
        if max(cfg.layers) >= h.n_layers:
            raise ValueError(f"{where}: edits layers {list(cfg.layers)}; model {h.name!r} has "
                             f"{h.n_layers}")
        if cfg.model and cfg.model != h.name:
            warnings.warn(f"mend: network {where} was trained on model {cfg.model!r}, used on "
                          f"{h.name!r}", stacklevel=2)
        return net

    def declared_parameters(self, h, hp: MendHParams | None = None) -> list[str]:
        net = self.network_for(h, hp)
        return [h.adapter.param_name("mlp_out", layer) for layer in net.config.layers]

    def _edit(self, h, requests: list, hp: MendHParams, *, stats, seed: int,
              precomputed=None) -> dict[str, Any]:
        net = self.network_for(h, hp)
        rows = TokenRows.build(h.tokenizer, [(r.rewrite_prompt, r.target_new) for r in requests])
        f = edit_factors(h, net.config.layers, rows, batch_loss=hp.batch_loss,
                         max_tokens=self.max_batch_tokens)
        with torch.no_grad():
            for i, layer in enumerate(net.config.layers):
                dw = net.update(i, f.x[i], f.delta[i]) * hp.lr_scale
                h.adapter.add_to_mlp_out_weight(h.model, layer, dw)
        return {
            "case_id": [str(r.case_id) for r in requests],
            "inner_nll": [f.per_edit[i] for i in range(len(requests))],
            "edit_lrs": net.edit_lrs.detach().tolist(),
            "n_tokens": int(f.x[0].shape[0]),
        }
