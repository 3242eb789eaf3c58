"""Model health: perplexity on held-out text and norm growth of edited matrices, rows
labelled ``suite="health"``.

Usage::

    from corredit.evaluate import perplexity, token_perplexity, norm_growth, health_rows
    ppl = perplexity(h, w.heldout_texts(), batch_size=8, max_length=128)
    original = snapshot(h.model, names)            # before editing
    ...                                            # edit
    growth = norm_growth(original, h.model)        # {name: ||W_edited||_F / ||W_orig||_F}
    rows = health_rows(perplexity=ppl, norm_growth=growth)
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from corredit.evaluate.rows import suite_rows
from corredit.evaluate.scoring import _pad_id
from corredit.models.subject import start_token_ids
from corredit.models.tracing import eval_mode

__all__ = ["text_windows", "heldout_windows", "token_perplexity", "perplexity", "norm_growth", "health_rows"]

SUITE = "health"


def _cut(start: Sequence[int], ids: Sequence[int], max_length: int) -> list[list[int]]:
    """``ids`` cut into consecutive pieces, each read after the ``start`` tokens so that
    every window begins as a text the model reads does; windows with nothing to predict
    (under 2 tokens) are left out."""
    step = max_length - len(start)
    if step < 1:
        raise ValueError(f"max_length {max_length} leaves no room after the {len(start)} "
                         f"start token(s)")
    windows = [list(start) + list(ids[s:s + step]) for s in range(0, len(ids), step)]
    return [w for w in windows if len(w) >= 2]


def text_windows(tokenizer: Any, texts: Sequence[str], max_length: int = 128
                 ) -> list[list[int]]:
    """Each non-blank text tokenized and cut into consecutive windows of at most
    ``max_length`` tokens, each window starting with the tokens the tokenizer puts before
    a text (a BOS; :func:`corredit.models.start_token_ids`)."""
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    start = start_token_ids(tokenizer)
    out: list[list[int]] = []
    for text in texts:
        if not text.strip():
            continue
        out += _cut(start, tokenizer(text, add_special_tokens=False)["input_ids"], max_length)
    return out


def heldout_windows(tokenizer: Any, texts: Sequence[str], *, max_tokens: int,
                    max_length: int) -> list[list[int]]:
    """Token windows of held-out text: the texts tokenised, joined by the EOS token, cut
    to ``max_tokens`` tokens and split into windows of ``max_length``, each window starting
    with the tokens the tokenizer puts before a text (Gemma's BOS, SmolLM2's
    ``<|endoftext|>``, nothing for GPT-2), as every prompt the model is scored on does."""
    sep = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        if not text.strip():
            continue
        if ids and sep is not None:
            ids.append(int(sep))
        ids += list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) >= max_tokens:
            break
    windows = _cut(start_token_ids(tokenizer), ids[:max_tokens], max_length)
    if not windows:
        raise ValueError("held-out texts: fewer than 2 tokens, no perplexity to measure")
    return windows


def token_perplexity(h: Any, windows: Sequence[Sequence[int]], batch_size: int = 8) -> float:
    """exp of the mean next-token NLL over every predicted position of the token
    ``windows`` (each token weighs the same; padding excluded), batched with right
    padding. Example: ``token_perplexity(h, [[464, 3290, 318]])``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    windows = [list(w) for w in windows if len(w) >= 2]
    if not windows:
        raise ValueError("perplexity: no window of 2 or more tokens")
    pad = _pad_id(h.tokenizer)
    total, count = 0.0, 0
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
    with eval_mode(h.model), torch.no_grad():
        for s in range(0, len(order), batch_size):
            chunk = [windows[i] for i in order[s:s + batch_size]]
            width = max(len(w) for w in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, w in enumerate(chunk):
                ids[r, :len(w)] = torch.as_tensor(w)
                mask[r, :len(w)] = 1
            ids, mask = ids.to(h.device), mask.to(h.device)
            logits = h.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            tok_lp = logp.gather(2, ids[:, 1:, None])[:, :, 0]
            valid = mask[:, 1:].bool()
            total -= float(tok_lp.double()[valid].sum())
            count += int(valid.sum())
            del logits, logp
    return math.exp(total / count)


def perplexity(h: Any, texts: Sequence[str], batch_size: int = 8, max_length: int = 128
               ) -> float:
    """Token-weighted perplexity of held-out ``texts`` (:func:`text_windows`, then
    :func:`token_perplexity`)."""
    return token_perplexity(h, text_windows(h.tokenizer, texts, max_length), batch_size)


def norm_growth(original: Mapping[str, torch.Tensor], model: Any) -> dict[str, float]:
    """``||W_edited||_F / ||W_orig||_F`` for every parameter named in ``original`` (a
    :func:`~corredit.models.snapshot` taken before editing), read from ``model``."""
    params = dict(model.named_parameters())
    missing = [n for n in original if n not in params]
    if missing:
        raise KeyError(f"norm_growth: the model has no parameter(s) {missing}")
    out = {}
    with torch.no_grad():
        for name, before in original.items():
            ref = float(before.detach().double().norm())
            if ref == 0.0:
                raise ValueError(f"norm_growth: parameter {name!r} had norm 0 before the edit")
            out[name] = float(params[name].detach().double().norm()) / ref
    return out


def health_rows(*, perplexity: float | None = None,
                norm_growth: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Tidy rows (suite ``health``, case_id ``""``, prompt_index 0): ``perplexity`` with
    prompt_kind ``model``; ``norm_growth`` with prompt_kind = parameter name."""
    records: list[tuple[str, str, int, str, float]] = []
    if perplexity is not None:
        records.append(("", "model", 0, "perplexity", float(perplexity)))
    for name, value in (norm_growth or {}).items():
        records.append(("", name, 0, "norm_growth", float(value)))
    return suite_rows(records, SUITE)
