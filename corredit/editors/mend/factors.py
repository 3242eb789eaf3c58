"""The passes MEND makes through the language model: the fine-tuning gradient's factors
of every edited ``W_out``, and forward passes with updated weights.

Usage::

    from corredit.editors.mend.factors import TokenRows, edit_factors, edited_logits
    rows = TokenRows.build(h.tokenizer, [("Toma Velik was born in", "Rasko")])
    f = edit_factors(h, (3, 4, 5), rows)        # f.x[i]: (n_tokens, d_k), f.delta[i]: (n, d)
    group = torch.zeros(len(rows.ids), dtype=torch.long)      # row -> which update it sees
    logits = edited_logits(h, {5: [dw]}, group, rows)   # at rows.read positions; grad in dw

The gradient of ``W_out`` at layer ``l`` is ``sum_t delta_t x_t^T``: ``x_t`` is read at the
input of ``W_out`` and ``delta_t`` is the gradient of the loss with respect to a zero
vector added at its output, so no parameter needs ``requires_grad``. Tokens where either
factor is zero (padding, positions after the last target token) are dropped, as in the
reference. The loss is the sum over edits of each edit's mean target-token NLL, so every
edit of a batch contributes what it would alone (``batch_loss="token_mean"``: the
reference's mean over all target tokens of the batch).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch

from corredit.editors.sequences import Packed, pack, prompt_ids, target_ids, token_chunks
from corredit.editors.values import frozen_parameters
from corredit.models import Addition, Site, trace

__all__ = ["TokenRows", "Factors", "edit_factors", "edited_logits", "updated_weights", "target_nll",
           "token_weights", "per_edit_means", "kl_divergence", "BATCH_LOSSES"]

BATCH_LOSSES = ("sum_of_means", "token_mean")


@dataclass
class TokenRows:
    """Teacher-forced rows ``prompt + target[:-1]``: ``labels[r]`` lists
    ``(position, token)`` pairs, ``owner[r]`` the edit the row belongs to, ``read[r]`` the
    positions whose logits the losses need (the label positions; every position of a
    ``full`` row)."""

    ids: list[list[int]]
    labels: list[list[tuple[int, int]]]
    owner: list[int]
    read: list[list[int]]

    @classmethod
    def build(cls, tok, pairs: Sequence[tuple[str, str]], owner: Sequence[int] | None = None,
              *, full: bool = False, cache: dict | None = None) -> "TokenRows":
        """Rows of ``(prompt, target)`` pairs; ``full`` keeps the target's last token in
        the row and reads every position (for a KL over the whole row); ``cache`` (a dict
        kept by the caller for one tokenizer) remembers token ids across calls."""
        cache = {} if cache is None else cache

        def ids_of(kind: str, text: str) -> list[int]:
            key = (kind, text)
            if key not in cache:
                cache[key] = (prompt_ids if kind == "p" else target_ids)(tok, text)
            return cache[key]

        ids, labels, read = [], [], []
        for prompt, target in pairs:
            p, t = ids_of("p", prompt), ids_of("t", target)
            ids.append(p + (t if full else t[:-1]))
            labels.append([(len(p) - 1 + k, tid) for k, tid in enumerate(t)])
            read.append(list(range(len(ids[-1]))) if full else [q for q, _ in labels[-1]])
        return cls(ids, labels, list(range(len(pairs))) if owner is None else list(owner), read)

    def select(self, idx: Sequence[int]) -> "TokenRows":
        return TokenRows([self.ids[i] for i in idx], [self.labels[i] for i in idx],
                         [self.owner[i] for i in idx], [self.read[i] for i in idx])

    def packed(self, h) -> Packed:
        return pack(self.ids, pad_id=h.tokenizer.pad_token_id, device=h.device)

    def logit_positions(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positions, mask)``, both ``(rows, k)``: each row's read positions, padded by
        repeating its last one (mask 0), for ``trace(..., logit_positions=positions)``."""
        k = max(len(r) for r in self.read)
        pos = torch.tensor([r + [r[-1]] * (k - len(r)) for r in self.read], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (k - len(r)) for r in self.read], device=device)
        return pos, mask


def token_weights(rows: TokenRows, batch_loss: str = "sum_of_means") -> list[list[float]]:
    """Weight of each label token in the loss: ``1 / (tokens of its edit)`` (the sum over
    edits of each edit's mean NLL) or ``1 / (all tokens)`` (``"token_mean"``)."""
    if batch_loss not in BATCH_LOSSES:
        raise ValueError(f"batch_loss must be one of {', '.join(BATCH_LOSSES)}, got {batch_loss!r}")
    per_edit: dict[int, int] = {}
    for o, lab in zip(rows.owner, rows.labels):
        per_edit[o] = per_edit.get(o, 0) + len(lab)
    total = sum(per_edit.values())
    return [[1.0 / (per_edit[o] if batch_loss == "sum_of_means" else total)] * len(lab)
            for o, lab in zip(rows.owner, rows.labels)]


def target_nll(logits: torch.Tensor, rows: TokenRows, weights: Sequence[Sequence[float]], *,
               compact: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted NLL sum, NLL of every label token in row order). ``logits`` holds each
    row's read positions (``(rows, k, vocab)``, :meth:`TokenRows.logit_positions`), or
    every position with ``compact=False``."""
    dev = logits.device
    r = torch.tensor([i for i, lab in enumerate(rows.labels) for _ in lab], device=dev)
    if compact:
        col = [rows.read[i].index(q) for i, lab in enumerate(rows.labels) for q, _ in lab]
    else:
        col = [q for lab in rows.labels for q, _ in lab]
    pos = torch.tensor(col, device=dev)
    tid = torch.tensor([t for lab in rows.labels for _, t in lab], device=dev)
    w = torch.tensor([x for ws in weights for x in ws], device=dev)
    nll = -torch.log_softmax(logits[r, pos].float(), -1).gather(1, tid[:, None])[:, 0]
    return (w * nll).sum(), nll


def per_edit_means(rows: TokenRows, nll: torch.Tensor) -> dict[int, float]:
    """Mean label-token NLL of each edit (``nll`` in row order, as :func:`target_nll`)."""
    sums: dict[int, list[float]] = {}
    k = 0
    for o, lab in zip(rows.owner, rows.labels):
        sums.setdefault(o, []).extend(nll[k:k + len(lab)].tolist())
        k += len(lab)
    return {o: sum(v) / len(v) for o, v in sums.items()}


def kl_divergence(pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """KL(p_pre || p_post) of the next-token distributions at every position (``(..., vocab)``
    logits in, ``(...)`` out)."""
    lp_pre = torch.log_softmax(pre.float(), -1)
    lp_post = torch.log_softmax(post.float(), -1)
    return (lp_pre.exp() * (lp_pre - lp_post)).sum(-1)


@dataclass
class Factors:
    """Per edited layer (position in ``layers``): keys ``x`` (n, d_k) and output gradients
    ``delta`` (n, d) of the tokens that carry gradient; the ``loss`` and each edit's mean
    target NLL (``per_edit``, keyed by owner)."""

    layers: tuple[int, ...]
    x: list[torch.Tensor]
    delta: list[torch.Tensor]
    owner: list[torch.Tensor]       # per layer: the owner (edit) of each kept token
    loss: float
    per_edit: dict[int, float]


def edit_factors(h, layers: Sequence[int], rows: TokenRows, *, batch_loss: str = "sum_of_means",
                 max_tokens: int = 16384) -> Factors:
    """One forward/backward pass (per chunk of rows) giving the gradient factors of every
    edited ``W_out`` (module docstring)."""
    layers = tuple(layers)
    ins = [Site("mlp_out", layer, "input") for layer in layers]
    outs = [Site("mlp_out", layer, "output") for layer in layers]
    xs: list[list[torch.Tensor]] = [[] for _ in layers]
    ds: list[list[torch.Tensor]] = [[] for _ in layers]
    os_: list[list[torch.Tensor]] = [[] for _ in layers]
    weights = token_weights(rows, batch_loss)
    total, nlls, order = 0.0, [], []
    with frozen_parameters(h.model):
        for idx in token_chunks([len(s) for s in rows.ids], max_tokens):
            sub = rows.select(idx)
            batch = sub.packed(h)
            b, width = batch.input_ids.shape
            positions = torch.arange(width, device=h.device).expand(b, width)
            zeros = [torch.zeros(b, width, h.hidden_size, dtype=h.dtype, device=h.device,
                                 requires_grad=True) for _ in layers]
            lp, _ = sub.logit_positions(h.device)
            res = trace(h, batch.input_ids, attention_mask=batch.attention_mask, read=ins,
                        add={s: Addition(positions, z) for s, z in zip(outs, zeros)}, grad=True,
                        logit_positions=lp)
            loss, nll = target_nll(res.logits, sub, [weights[i] for i in idx])
            grads = torch.autograd.grad(loss, zeros)
            total += float(loss.detach())
            nlls.append(nll.detach().cpu())
            order += idx
            mask = batch.attention_mask.bool()
            owners = torch.tensor(sub.owner, device=h.device)[:, None].expand(b, width)
            for j, (s, g) in enumerate(zip(ins, grads)):
                x = res.values[s].detach()
                keep = mask & (x != 0).any(-1) & (g != 0).any(-1)
                xs[j].append(x[keep].float())
                ds[j].append(g[keep].float())
                os_[j].append(owners[keep])
    per_edit = per_edit_means(rows.select(order), torch.cat(nlls))
    return Factors(layers, [torch.cat(v) for v in xs], [torch.cat(v) for v in ds],
                   [torch.cat(v) for v in os_], total, per_edit)


@contextmanager
def updated_weights(h, updates: Mapping[int, Sequence[torch.Tensor]], group: torch.Tensor
                    ) -> Iterator[None]:
    """Within the block, row ``b`` of a forward pass sees ``W_out + updates[layer][group[b]]``
    at each layer in ``updates`` (each update ``(d, d_k)``, keys to values): the MLP output
    gets ``x @ update^T`` added, differentiably in the updates; the weights stay untouched."""
    handles = []

    def hook_for(dws: Sequence[torch.Tensor]):
        def hook(module, args, output):
            x = args[0]
            extra = torch.zeros(output.shape, dtype=dws[0].dtype, device=output.device)
            for g, dw in enumerate(dws):
                rows = torch.nonzero(group.to(x.device) == g)[:, 0]
                if rows.numel():
                    extra = extra.index_add(0, rows, x[rows].to(dw.dtype) @ dw.T.to(x.device))
            return output + extra.to(output.dtype)

        return hook

    try:
        for layer, dws in updates.items():
            module = h.adapter.module(h.model, "mlp_out", layer)
            handles.append(module.register_forward_hook(hook_for(list(dws))))
        yield
    finally:
        for handle in handles:
            handle.remove()


def edited_logits(h, updates: Mapping[int, Sequence[torch.Tensor]], group: torch.Tensor,
                  rows: TokenRows) -> torch.Tensor:
    """Logits at each row's read positions (``(rows, k, vocab)``) under
    :func:`updated_weights` (differentiable in the updates)."""
    batch = rows.packed(h)
    lp, _ = rows.logit_positions(h.device)
    with updated_weights(h, updates, group):
        return trace(h, batch.input_ids, attention_mask=batch.attention_mask, grad=True,
                     logit_positions=lp).logits
