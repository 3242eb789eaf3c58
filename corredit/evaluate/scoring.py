"""Batched scoring of targets after prompts: NLL, first-token and token accuracy.

Usage::

    from corredit.evaluate import target_nll, score_targets
    nll = target_nll(h, ["The Eiffel Tower is in"], ["Paris"])          # array([1.93])
    s = score_targets(h, prompts, targets, batch_size=64)
    s.nll, s.first_token_correct, s.token_accuracy, s.n_target_tokens

``NLL(p, o)`` is the mean over the tokens of ``" " + o`` of ``-log P(token | p, earlier
tokens)``. The prompt is tokenized with the tokenizer's special tokens (a BOS-adding
tokenizer puts its BOS at the very start), ``" " + o`` without them, and the two id lists
are concatenated (for SentencePiece tokenizers with a dummy prefix, which would render
the space as a lone ``"▁"`` token, ``o`` itself is tokenized: see :func:`encode_target`).
Pairs are deduplicated, sorted by length, run ``batch_size`` at a time with right
padding and an attention mask, and returned in the input order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from corredit.models.subject import prompt_token_ids
from corredit.models.targets import adds_word_prefix, encode_target
from corredit.models.tracing import eval_mode

__all__ = [
    "TargetScores",
    "score_targets",
    "target_nll",
    "target_first_token_correct",
    "encode_prompt",
    "encode_target",
    "adds_word_prefix",
]


@dataclass(frozen=True)
class TargetScores:
    """Per (prompt, target) pair, in input order."""

    nll: np.ndarray                  # float64: mean NLL of the target tokens
    first_token_correct: np.ndarray  # bool: argmax at the prompt's last position = 1st target token
    token_accuracy: np.ndarray       # float64: fraction of target tokens that are the argmax
    n_target_tokens: np.ndarray      # int64
    argmax: tuple[np.ndarray, ...] = ()  # int64 per pair: argmax at each target position
                                         # (only with ``with_argmax=True``)
    first_rank: np.ndarray | None = None  # int64: rank of the 1st target token (0 = argmax)


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt`` with the tokenizer's leading special tokens (a BOS) kept
    and any special tokens it appends (an EOS) dropped
    (:func:`corredit.models.prompt_token_ids`)."""
    return prompt_token_ids(tokenizer, prompt)


def _pad_id(tokenizer: Any) -> int:
    for pid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if pid is not None:
            return int(pid)
    return 0


def score_targets(h: Any, prompts: Sequence[str], targets: Sequence[str],
                  batch_size: int = 64, with_argmax: bool = False) -> TargetScores:
    """Score every ``(prompts[i], targets[i])`` (see module doc); ``with_argmax`` also keeps
    the teacher-forced argmax token ids at every target position."""
    if len(prompts) != len(targets):
        raise ValueError(f"score_targets: {len(prompts)} prompts but {len(targets)} targets")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(prompts)
    pairs = list(zip(prompts, targets))
    unique = list(dict.fromkeys(pairs))
    index = {p: i for i, p in enumerate(unique)}
    tok = h.tokenizer
    word_prefix = adds_word_prefix(tok)
    p_cache: dict[str, list[int]] = {}
    t_cache: dict[str, list[int]] = {}
    encoded = []
    for i, (p, t) in enumerate(unique):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"target {t!r} (after prompt {p!r}) is empty")
        if p not in p_cache:
            p_cache[p] = encode_prompt(tok, p)
        if t not in t_cache:
            t_cache[t] = encode_target(tok, t, word_prefix=word_prefix)
        pi, ti = p_cache[p], t_cache[t]
        if not pi:
            raise ValueError(f"prompt {p!r} has no tokens and the tokenizer adds no BOS: "
                             f"nothing to condition the target {t!r} on")
        if not ti:
            raise ValueError(f"target {t!r} (after prompt {p!r}) has no tokens")
        encoded.append((pi, ti))

    m = len(unique)
    nll = np.zeros(m)
    first = np.zeros(m, dtype=bool)
    acc = np.zeros(m)
    rank = np.zeros(m, dtype=np.int64)
    ntok = np.array([len(t) for _, t in encoded], dtype=np.int64)
    best: list[np.ndarray] = [np.zeros(0, np.int64)] * m
    order = sorted(range(m), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    pad = _pad_id(tok)
    model = h.model
    with eval_mode(model), torch.no_grad():
        for s in range(0, m, batch_size):
            idx = order[s:s + batch_size]
            rows = [encoded[i][0] + encoded[i][1] for i in idx]
            width = max(len(r) for r in rows)
            tmax = max(len(encoded[i][1]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            pos = torch.zeros((len(idx), tmax), dtype=torch.long)
            tgt = torch.zeros((len(idx), tmax), dtype=torch.long)
            tmask = torch.zeros((len(idx), tmax), dtype=torch.bool)
            for r, i in enumerate(idx):
                p_ids, t_ids = encoded[i]
                ids[r, : len(rows[r])] = torch.as_tensor(rows[r])
                mask[r, : len(rows[r])] = 1
                k = len(t_ids)
                # logits at position j predict token j + 1
                pos[r, :k] = torch.arange(len(p_ids) - 1, len(p_ids) - 1 + k)
                tgt[r, :k] = torch.as_tensor(t_ids)
                tmask[r, :k] = True
            dev = h.device
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                           use_cache=False).logits
            pos_d, tgt_d, tmask_d = pos.to(dev), tgt.to(dev), tmask.to(dev)
            sel = logits.gather(1, pos_d[:, :, None].expand(-1, -1, logits.shape[-1]))
            logp = torch.log_softmax(sel.float(), dim=-1)
            tok_lp = logp.gather(2, tgt_d[:, :, None])[:, :, 0]
            hit = (sel.argmax(-1) == tgt_d) & tmask_d
            k = tmask_d.sum(1).double()
            nll_b = -(tok_lp.double() * tmask_d).sum(1) / k
            nll[idx] = nll_b.cpu().numpy()
            first[idx] = hit[:, 0].cpu().numpy()
            first_logits = sel[:, 0]
            rank[idx] = (first_logits > first_logits.gather(1, tgt_d[:, :1])).sum(1).cpu().numpy()
            acc[idx] = (hit.sum(1).double() / k).cpu().numpy()
            if with_argmax:
                arg = sel.argmax(-1).cpu().numpy().astype(np.int64)
                for r, i in enumerate(idx):
                    best[i] = arg[r, :len(encoded[i][1])]
            del logits, sel, logp
    back = np.array([index[p] for p in pairs], dtype=np.int64) if n else np.zeros(0, np.int64)
    argmax = tuple(best[i] for i in back) if with_argmax else ()
    return TargetScores(nll[back], first[back], acc[back], ntok[back], argmax, rank[back])


def target_nll(h: Any, prompts: Sequence[str], targets: Sequence[str],
               batch_size: int = 64) -> np.ndarray:
    """Mean NLL of each target after its prompt (float64 array, input order)."""
    return score_targets(h, prompts, targets, batch_size).nll


def target_first_token_correct(h: Any, prompts: Sequence[str], targets: Sequence[str],
                               batch_size: int = 64) -> np.ndarray:
    """Whether the model's argmax after each prompt is the target's first token."""
    return score_targets(h, prompts, targets, batch_size).first_token_correct
