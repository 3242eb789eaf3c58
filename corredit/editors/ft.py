"""FT-L and FT-M: fine-tuning one layer's MLP output weight inside an L-infinity box.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("ft-l")({"layer": 0, "norm_constraint": 5e-4})
    res = ed.apply(h, requests, seed=0)        # no statistics needed
    res.diagnostics["max_abs_change"]          # <= norm_constraint

Adam (``lr``, ``num_steps``) on the weight; after every step each entry is clipped to
``[w0 - eps, w0 + eps]`` around its value at the start of the call. FT-L's loss is the
NLL of the target's first token at the prompt's last position; FT-M's the mean NLL over
all target tokens (teacher forced). Training stops early when the mean loss falls below
``early_stop_loss``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from corredit.editors.base import Editor, register_editor
from corredit.editors.hparams import FTHParams
from corredit.editors.sequences import pack, prompt_ids, target_ids, token_chunks
from corredit.editors.values import frozen_parameters

__all__ = ["FineTune", "FTL", "FTM"]


class FineTune(Editor):
    """Shared fine-tuning loop; subclasses choose ``all_target_tokens``."""

    hparams_class = FTHParams
    all_target_tokens: ClassVar[bool] = False

    def _rows(self, h, requests: list):
        tok = h.tokenizer
        seqs, labels = [], []      # labels: list of (position, token id) per row
        for r in requests:
            p = prompt_ids(tok, r.rewrite_prompt)
            t = target_ids(tok, r.target_new)
            if not self.all_target_tokens:
                t = t[:1]
            seqs.append(p + t[:-1])
            labels.append([(len(p) - 1 + k, tid) for k, tid in enumerate(t)])
        return seqs, labels

    def _losses(self, h, seqs, labels, idx) -> torch.Tensor:
        from corredit.models import trace

        batch = pack([seqs[i] for i in idx], pad_id=h.tokenizer.pad_token_id, device=h.device)
        logits = trace(h, batch.input_ids, attention_mask=batch.attention_mask,
                       grad=torch.is_grad_enabled()).logits
        rows, pos, tids, owner = [], [], [], []
        for j, i in enumerate(idx):
            for p, t in labels[i]:
                rows.append(j); pos.append(p); tids.append(t); owner.append(j)
        dev = logits.device
        sel = logits[torch.tensor(rows, device=dev), torch.tensor(pos, device=dev)]
        lp = torch.log_softmax(sel.float(), -1).gather(1, torch.tensor(tids, device=dev)[:, None])[:, 0]
        counts = torch.tensor([len(labels[i]) for i in idx], dtype=torch.float32, device=dev)
        per = torch.zeros(len(idx), dtype=torch.float32, device=dev).index_add(
            0, torch.tensor(owner, device=dev), -lp)
        return per / counts

    def _edit(self, h, requests: list, hp: FTHParams, *, stats, seed: int,
              precomputed=None) -> dict[str, Any]:
        name = h.adapter.param_name("mlp_out", hp.layer)
        param = h.model.get_parameter(name)
        w0 = param.detach().clone()
        seqs, labels = self._rows(h, requests)
        chunks = token_chunks([len(s) for s in seqs], self.max_batch_tokens)
        n = len(requests)
        history = []
        steps = 0
        with frozen_parameters(h.model):
            param.requires_grad_(True)
            try:
                opt = torch.optim.Adam([param], lr=hp.lr, weight_decay=hp.weight_decay)
                for _ in range(hp.num_steps):
                    opt.zero_grad(set_to_none=True)
                    total = 0.0
                    for idx in chunks:
                        with torch.enable_grad():
                            loss = self._losses(h, seqs, labels, idx).sum() / n
                            loss.backward()
                        total += float(loss.detach())
                    history.append(total)
                    opt.step()
                    steps += 1
                    with torch.no_grad():
                        param.copy_(torch.maximum(torch.minimum(param, w0 + hp.norm_constraint),
                                                  w0 - hp.norm_constraint))
                    if total < hp.early_stop_loss:
                        break
            finally:
                param.grad = None
                param.requires_grad_(False)
        with torch.no_grad():
            final = torch.cat([self._losses(h, seqs, labels, idx) for idx in chunks])
            order = torch.tensor([i for idx in chunks for i in idx])
            per_case = torch.empty(n, dtype=final.dtype)
            per_case[order] = final.cpu()
        return {
            "case_id": [str(r.case_id) for r in requests],
            "ft_loss": per_case.double().tolist(),
            "loss_history": history,
            "steps": steps,
            "layer": hp.layer,
            "max_abs_change": float((param.detach() - w0).abs().max()),
        }


@register_editor("ft-l")
class FTL(FineTune):
    """FT-L: first target token at the prompt's last position."""

    all_target_tokens = False


@register_editor("ft-m")
class FTM(FineTune):
    """FT-M: cross-entropy over all target tokens."""

    all_target_tokens = True
