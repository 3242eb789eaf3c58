"""GRACE: a codebook of (key, value, radius) entries read at one layer; weights never change.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("grace")({"layer": 3, "eps": 1.0})
    results = ed.edit(h, requests, mode="sequential", seed=0)   # one entry per new fact
    ed.memory_for(h).keys.shape                # (entries, d_k): keys at the prompts' last token
    results[-1].diagnostics["grace_action"]    # 'new', 'expand' or 'split' per fact
    ed.restore(h)                              # hook and codebook gone: the model as before

The adaptor sits on the MLP output module of ``layer`` (its input is the key ``k``, its
output the value). At every position whose key lies within the radius ``eps_i`` of its
nearest codebook key ``k_i`` (Euclidean), the module's output is replaced by ``v_i``.

Editing one fact (facts of a batch one after another):

1. the query is the key at the rewrite prompt's last token;
2. codebook update, against the nearest entry ``i`` at distance ``d``: empty codebook or
   ``d > eps + eps_i``: a new entry with radius ``eps``; ``d`` within reach but another
   target (``label``: the target's token ids): a new entry, both radii set to ``d / 2``
   (``eps_i`` just below); the same target: entry ``i`` is reused and its radius grows to
   ``d`` (``eps_expand="coverage"``) or its key moves halfway to the query
   (``"moving_average"``). The nearest entry answers a position, the earliest on ties, so
   a fact whose key equals an earlier entry's of another target (``d = 0``) leaves both
   silent (radii ``-1e-5`` and ``0``), as in the reference;
3. the entry's value (new: uniform ``[0, 1)`` noise, ``val_init="cold"``, or the layer's
   output, ``"warm"``) is trained with Adam (``edit_lr``, ``n_iter`` steps) on the mean NLL
   of the target tokens, the rest of the model frozen.

Facts kept from the reference implementations (Hartvigsen et al.'s GRACE and EasyEdit):
radius 1.0, Adam at lr 1.0, cold values, coverage expansion, keys kept in float32.
They wrap one module (EasyEdit: ``down_proj`` on Llama, ``c_fc`` on GPT-2 XL) and compare
one query per sequence, the last token's, replacing that token's output. Scoring a
teacher-forced sequence in one pass, corredit compares every position's key: a
position's output is what the reference gives when that position is the last token of
its input, so one pass scores every target token as prefix-by-prefix runs would.
(EasyEdit keeps the query position of the last edit for later inputs; corredit does not.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from corredit.editors.base import register_editor
from corredit.editors.hparams import HParams
from corredit.editors.memory import Attachments, MemoryEditor
from corredit.editors.sequences import pack, prompt_ids, target_ids
from corredit.editors.values import frozen_parameters

__all__ = ["GRACE", "GraceHParams", "Codebook", "last_token_keys"]

VAL_INITS = ("cold", "warm")
EPS_EXPANDS = ("coverage", "moving_average")


@dataclass(frozen=True)
class GraceHParams(HParams):
    """GRACE at one layer: ``eps`` is the initial deferral radius in key space."""

    layer: int = 0
    eps: float = 1.0
    n_iter: int = 100
    edit_lr: float = 1.0
    val_init: str = "cold"
    eps_expand: str = "coverage"
    stop_loss: float = 0.0

    def validate(self, *, where: str = "") -> None:
        tag = where or "GraceHParams"
        if self.eps < 0 or self.edit_lr <= 0 or self.n_iter < 1:
            raise ValueError(f"{tag}: eps must be >= 0, edit_lr > 0 and n_iter >= 1")
        if self.val_init not in VAL_INITS:
            raise ValueError(f"{tag}: val_init must be one of {', '.join(VAL_INITS)}, "
                             f"got {self.val_init!r}")
        if self.eps_expand not in EPS_EXPANDS:
            raise ValueError(f"{tag}: eps_expand must be one of {', '.join(EPS_EXPANDS)}, "
                             f"got {self.eps_expand!r}")

    @property
    def layers(self) -> tuple[int, ...]:
        return (self.layer,)


def last_token_keys(h, prompts: Sequence[str], layers: Sequence[int]) -> dict[int, torch.Tensor]:
    """GRACE's keys: per layer, ``(len(prompts), d_k)`` float32, the input of the layer's MLP
    output module at each prompt's last token (one forward pass up to the last layer)."""
    return _last_token_keys(h, [prompt_ids(h.tokenizer, p) for p in prompts], layers)


def _last_token_keys(h, ids: Sequence[Sequence[int]], layers: Sequence[int]
                     ) -> dict[int, torch.Tensor]:
    """:func:`last_token_keys` of prompts already encoded with ``prompt_ids``."""
    from corredit.models import Site, trace

    batch = pack(list(ids), pad_id=h.tokenizer.pad_token_id, device=h.device)
    sites = [Site("mlp_out", layer, "input") for layer in layers]
    with torch.no_grad():
        res = trace(h, batch.input_ids, attention_mask=batch.attention_mask, read=sites,
                    stop_at_layer=max(layers))
    last = batch.attention_mask.sum(1) - 1
    rows = torch.arange(len(ids), device=last.device)
    return {s.layer: res.values[s][rows, last].float() for s in sites}


class Codebook(torch.nn.Module):
    """Keys ``(n, d_k)`` and radii ``(n,)`` (float32), values ``(n, d)`` (float32), the
    target token ids of each entry (``labels``) and the cases it holds (``case_ids``)."""

    def __init__(self, d_key: int, d_value: int) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(0, d_key))
        self.register_buffer("values", torch.zeros(0, d_value))
        self.register_buffer("eps", torch.zeros(0))
        self.labels: list[tuple[int, ...]] = []
        self.case_ids: list[list[str]] = []
        self._training: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean distances ``(m, n)`` of rows ``x`` ``(m, d_k)`` to every key, in float64."""
        x = x.to(torch.float64)
        k = self.keys.to(x.device, torch.float64)
        d2 = (x * x).sum(1, keepdim=True) + (k * k).sum(1)[None] - 2 * x @ k.T
        return d2.clamp_min(0).sqrt()

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance ``(m,)`` and index ``(m,)`` of each row's nearest key; the distance is
        computed directly (exactly 0 for a row equal to its key)."""
        idx = self.distances(x).argmin(1)
        diff = x.to(torch.float64) - self.keys.to(x.device, torch.float64)[idx]
        return diff.norm(dim=1), idx

    def add(self, key: torch.Tensor, value: torch.Tensor, eps: float, label: tuple[int, ...],
            case_id: str) -> int:
        dev = self.keys.device
        self.keys = torch.cat([self.keys, key.float().to(dev)[None]])
        self.values = torch.cat([self.values, value.float().to(dev)[None]])
        self.eps = torch.cat([self.eps, torch.tensor([eps], dtype=torch.float32, device=dev)])
        self.labels.append(label)
        self.case_ids.append([case_id])
        return len(self) - 1

    def current_values(self) -> torch.Tensor:
        """The values, with the entry being trained (if any) as its differentiable vector."""
        if self._training is None:
            return self.values
        j, v = self._training
        return torch.cat([self.values[:j], v[None].to(self.values.dtype), self.values[j + 1:]])

    def replace(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` with every position whose key ``x`` lies within an entry's radius
        replaced by that entry's value."""
        if len(self) == 0:
            return out
        flat = x.reshape(-1, x.shape[-1])
        best, idx = self.nearest(flat)
        hit = best <= self.eps.to(best.device, torch.float64)[idx]
        if not bool(hit.any()):
            return out
        vals = self.current_values().to(out.device, out.dtype)[idx]
        flat_out = torch.where(hit[:, None], vals, out.reshape(-1, out.shape[-1]))
        return flat_out.reshape(out.shape)


@register_editor("grace")
class GRACE(MemoryEditor):
    """GRACE; see the module docstring."""

    hparams_class = GraceHParams
    sequential_within_batch = True
    supported_modes = ("batch", "sequential", "sequential-batch")

    def _new_memory(self, h, hp: GraceHParams) -> Codebook:
        return Codebook(h.key_size, h.hidden_size).to(h.device)

    def _attach(self, h, hp: GraceHParams, memory: Codebook, attachments: Attachments) -> None:
        def hook(module, args, output):
            return memory.replace(args[0], output)

        attachments.forward_hook(h.adapter.module(h.model, "mlp_out", hp.layer), hook,
                                 name=h.adapter.module_name("mlp_out", hp.layer))

    def _edit(self, h, requests: list, hp: GraceHParams, *, stats, seed: int,
              precomputed=None) -> dict[str, Any]:
        book = self._ensure_memory(h, hp)
        diag: dict[str, list] = {k: [] for k in ("case_id", "grace_action", "entry", "key_distance",
                                                  "key_norm", "loss", "steps")}
        for r in requests:
            action, j, dist, key_norm, loss, steps = self._edit_one(h, hp, book, r, seed)
            for k, v in zip(diag, (str(r.case_id), action, j, dist, key_norm, loss, steps)):
                diag[k].append(v)
        return {**diag, "layer": hp.layer, "codebook_size": len(book)}

    # -- one fact ---------------------------------------------------------------------------
    def _sequence(self, h, request) -> tuple[list[int], list[int]]:
        p = prompt_ids(h.tokenizer, request.rewrite_prompt)
        t = target_ids(h.tokenizer, request.target_new)
        return p, t

    def _edit_one(self, h, hp: GraceHParams, book: Codebook, request, seed: int):
        p, t = self._sequence(h, request)
        batch = pack([p + t[:-1]], pad_id=h.tokenizer.pad_token_id, device=h.device)
        query = _last_token_keys(h, [p], [hp.layer])[hp.layer][0]     # p: already encoded
        label = tuple(t)
        dist = math.nan
        if len(book) == 0:
            action, j = "new", None
        else:
            d, i = book.nearest(query[None])
            dist, i = float(d[0]), int(i[0])
            if dist > hp.eps + float(book.eps[i]):
                action, j = "new", None
            elif label != book.labels[i]:
                action, j = "split", None
            else:
                action, j = "expand", i
        if j is None:
            j = book.add(query, self._initial_value(h, hp, query, len(book), seed), hp.eps, label,
                         str(request.case_id))
            if action == "split":
                book.eps[i] = dist / 2 - 1e-5
                book.eps[j] = dist / 2
        else:
            book.case_ids[j].append(str(request.case_id))
            if dist > float(book.eps[j]):
                if hp.eps_expand == "moving_average":
                    book.keys[j] = 0.5 * book.keys[j] + 0.5 * query.to(book.keys.device)
                book.eps[j] = dist
        loss, steps = self._train_value(h, hp, book, j, batch, len(p), len(t), t)
        return action, j, dist, float(query.double().norm()), loss, steps

    def _initial_value(self, h, hp: GraceHParams, query: torch.Tensor, index: int,
                       seed: int) -> torch.Tensor:
        if hp.val_init == "warm":
            w = h.adapter.read_mlp_out_weight(h.model, hp.layer).float()
            b = h.adapter.read_mlp_out_bias(h.model, hp.layer)
            v = w @ query.to(w.device)
            return v if b is None else v + b.float().to(v.device)
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + index)
        return torch.rand(h.hidden_size, generator=gen)

    def _train_value(self, h, hp: GraceHParams, book: Codebook, j: int, batch, n_prompt: int,
                     n_target: int, target: list[int]) -> tuple[float, int]:
        from corredit.models import trace

        dev = batch.input_ids.device
        positions = torch.arange(n_prompt - 1, n_prompt - 1 + n_target, device=dev)[None]
        tids = torch.tensor(target, device=dev)

        def nll() -> torch.Tensor:
            logits = trace(h, batch.input_ids, attention_mask=batch.attention_mask,
                           grad=torch.is_grad_enabled(), logit_positions=positions).logits[0]
            return -torch.log_softmax(logits.float(), -1).gather(1, tids[:, None]).mean()

        value = torch.nn.Parameter(book.values[j].detach().clone())
        book._training = (j, value)
        steps = 0
        try:
            with frozen_parameters(h.model):
                opt = torch.optim.Adam([value], lr=hp.edit_lr)
                for _ in range(hp.n_iter):
                    opt.zero_grad(set_to_none=True)
                    with torch.enable_grad():
                        loss = nll()
                        if not loss.requires_grad:    # the entry answers no position
                            break
                        loss.backward()
                    steps += 1
                    if float(loss.detach()) < hp.stop_loss:
                        break
                    opt.step()
        finally:
            book._training = None
            with torch.no_grad():
                book.values[j] = value.detach()
        with torch.no_grad():
            final = float(nll())
        return final, steps
