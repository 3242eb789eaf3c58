"""Token sequences for editing: prompt + target ids, subject positions, padding.

Usage::

    from corredit.editors.sequences import prompt_ids, target_ids, pack
    ids = prompt_ids(h.tokenizer, "Toma Velik was born in")
    tgt = target_ids(h.tokenizer, "Rasko")          # the ids the evaluators score
    batch = pack([ids + tgt[:-1]], pad_id=h.tokenizer.pad_token_id, device=h.device)

Prompts are tokenized on their own and the target's ids appended, so the prompt part of
every sequence tokenizes exactly as the prompt alone (no merges across the boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from corredit.models.subject import prompt_token_ids
from corredit.models.targets import encode_target

__all__ = ["prompt_ids", "target_ids", "pack", "Packed", "subject_position", "target_logprobs",
           "token_chunks"]


def prompt_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a prompt as the model sees it (:func:`corredit.models.prompt_token_ids`)."""
    return prompt_token_ids(tokenizer, text)


def target_ids(tokenizer, target: str) -> list[int]:
    """Token ids of the target as it follows a prompt: the one encoding
    :func:`corredit.models.targets.encode_target` that the evaluators use too."""
    return encode_target(tokenizer, target)


def subject_position(tokenizer, text: str, subject: str, *, case_id: str = "?") -> int:
    """Index of the subject's last token in ``prompt_ids(tokenizer, text)``; the error
    names the case when the subject is absent."""
    from corredit.models import SubjectNotFoundError, subject_token_index

    try:
        return int(subject_token_index(tokenizer, text, subject))
    except SubjectNotFoundError:
        raise SubjectNotFoundError(subject, text, reason=f"of case {case_id} does not occur in") from None


@dataclass
class Packed:
    """Right-padded batch of token sequences."""

    input_ids: torch.Tensor       # (n, T) long
    attention_mask: torch.Tensor  # (n, T) long
    lengths: torch.Tensor         # (n,) long


def pack(seqs: Sequence[Sequence[int]], *, pad_id: int, device: torch.device | str | None = None
         ) -> Packed:
    """Right-pad ``seqs`` into tensors on ``device``."""
    if not seqs:
        raise ValueError("pack: no sequences")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            raise ValueError(f"pack: sequence {i} is empty")
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    lengths = mask.sum(1)
    return Packed(ids.to(device), mask.to(device), lengths.to(device))


@torch.no_grad()
def target_logprobs(h, prompts: Sequence[str], targets: Sequence[str], *,
                    max_batch: int = 32) -> torch.Tensor:
    """Mean log-probability of each ``" " + target`` after its prompt (teacher forced);
    float64 tensor of shape (n,). Used for quick checks inside the editors package."""
    from corredit.models import trace

    tok = h.tokenizer
    out = []
    for start in range(0, len(prompts), max_batch):
        rows, spans = [], []
        for p, t in zip(prompts[start:start + max_batch], targets[start:start + max_batch]):
            pi, ti = prompt_ids(tok, p), target_ids(tok, t)
            rows.append(pi + ti[:-1])
            spans.append((len(pi), ti))
        batch = pack(rows, pad_id=tok.pad_token_id, device=h.device)
        logits = trace(h, batch.input_ids, attention_mask=batch.attention_mask).logits
        logp = torch.log_softmax(logits.double(), dim=-1)
        for r, (plen, ti) in enumerate(spans):
            pos = torch.arange(plen - 1, plen - 1 + len(ti), device=logp.device)
            tid = torch.tensor(ti, device=logp.device)
            out.append(logp[r, pos, tid].mean())
    return torch.stack(out).cpu()


def token_chunks(lengths: Sequence[int], max_tokens: int, *, max_padding: float = 0.25,
                 max_rows: int | None = None) -> list[list[int]]:
    """Split row indices, sorted by length, into chunks whose padded size (rows x longest
    row) stays within ``max_tokens``, whose padding stays under ``max_padding`` of the
    padded size and (with ``max_rows``) that hold at most that many rows (a chunk holds at
    least one row)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks: list[list[int]] = []
    cur: list[int] = []
    real = 0
    for i in order:
        n, width = len(cur) + 1, lengths[i]          # ascending: the new row is the longest
        if cur and (n * width > max_tokens or (n * width - real - width) > max_padding * n * width
                    or (max_rows is not None and n > max_rows)):
            chunks.append(cur)
            cur, real = [], 0
        cur.append(i)
        real += lengths[i]
    if cur:
        chunks.append(cur)
    return chunks
