"""Context templates sampled from the model itself, seeded and cached per model.

Usage::

    from corredit.editors.templates import TemplateSampler
    sampler = TemplateSampler()                    # the cache lives on this instance
    groups = sampler.groups(h, prompts=("The", "I"), lengths=((10, 1),), seed=0)
    # ((' {}',), ('The cat sat on the mat and. {}', 'I think it is. {}'))
    # group 0 is always the bare template "{}"

Each ``(length, n)`` pair yields a group of ``n`` continuations of every prompt, sampled
with top-k sampling to ``length`` tokens (the prompt's tokens included), braces removed and
``". {}"`` appended, as the reference implementations do. A prompt ``""`` starts from a
document boundary, ``h.document_start_id`` (the model's declared document-start token,
else the tokenizer's BOS, else its EOS), as ROME's code starts from ``<|endoftext|>``; a
chat model's BOS (SmolLM2-Instruct's ``<|im_start|>``) would start a chat turn instead.
Samples draw from a ``torch.Generator`` seeded with ``seed``; the cache key holds the
model's name, the settings, the seed and the start token.
"""

from __future__ import annotations

import unicodedata
import weakref
from typing import Sequence

import torch

__all__ = ["TemplateSampler", "flatten_groups", "BARE_TEMPLATE"]

BARE_TEMPLATE = "{}"

Groups = tuple[tuple[str, ...], ...]


def flatten_groups(groups: Groups) -> tuple[str, ...]:
    """All templates in group order."""
    return tuple(t for g in groups for t in g)


class TemplateSampler:
    """Samples and caches context templates; one cache per instance, keyed by the model
    object (weakly) and the sampling settings."""

    def __init__(self) -> None:
        self._cache: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()

    def groups(self, h, *, prompts: Sequence[str], lengths: Sequence[tuple[int, int]],
               seed: int, top_k: int = 5) -> Groups:
        """Template groups for ``h`` (first group ``("{}",)``), sampled once per
        (model, settings, seed) and then served from the cache."""
        start = h.document_start_id if "" in prompts else None
        key = (getattr(h, "name", None), tuple(prompts), tuple(tuple(x) for x in lengths),
               int(seed), int(top_k), start)
        per_model = self._cache.setdefault(h.model, {})
        if key not in per_model:
            per_model[key] = self._sample(h, prompts, lengths, seed, top_k)
        return per_model[key]

    def clear(self) -> None:
        """Forget every cached template."""
        self._cache = weakref.WeakKeyDictionary()

    @torch.no_grad()
    def _sample(self, h, prompts, lengths, seed, top_k) -> Groups:
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        out: list[tuple[str, ...]] = [(BARE_TEMPLATE,)]
        for length, n in lengths:
            group: list[str] = []
            for prompt in prompts:
                if n <= 0:
                    continue
                for text in sample_texts(h, prompt, n=n, length=length, top_k=top_k, generator=gen):
                    group.append(text.replace("{", " ").replace("}", " ") + ". {}")
            if group:
                out.append(tuple(group))
        return tuple(out)


def _start_ids(h, prompt: str) -> list[int]:
    """Token ids a sample starts from: the prompt's, or the document start for ``""``."""
    ids = list(h.tokenizer(prompt)["input_ids"]) if prompt else []
    return ids or [h.document_start_id]


def sample_texts(h, prompt: str, *, n: int, length: int, top_k: int,
                 generator: torch.Generator) -> list[str]:
    """``n`` top-k samples continuing ``prompt`` to ``length`` tokens in total, decoded
    without special tokens (all rows share the prompt, so no padding is needed)."""
    from corredit.models import trace

    tok = h.tokenizer
    start = _start_ids(h, prompt)
    ids = torch.tensor([start] * n, dtype=torch.long)
    for _ in range(max(0, length - len(start))):
        ids_d = ids.to(h.device)
        logits = trace(h, ids_d, attention_mask=torch.ones_like(ids_d)).logits[:, -1, :].float().cpu()
        k = min(top_k, logits.shape[-1])
        top_vals, top_idx = logits.topk(k, dim=-1)
        probs = torch.softmax(top_vals, dim=-1)
        choice = torch.multinomial(probs, 1, generator=generator)
        ids = torch.cat([ids, top_idx.gather(1, choice)], dim=1)
    texts = []
    for row in ids.tolist():
        text = tok.decode(row, skip_special_tokens=True)
        text = unicodedata.normalize("NFKD", text).replace("\n\n", " ").replace("\n", " ")
        texts.append(text.strip())
    return texts
