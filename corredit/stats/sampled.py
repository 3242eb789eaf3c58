"""A statistics corpus that needs nothing but the model: text sampled from it, seeded and
cached.

Usage::

    from corredit.stats.sampled import ModelSampleCorpus
    corpus = ModelSampleCorpus(h, n_docs=256, length=128, seed=0)   # sampled once, cached
    moments = second_moments(h, [4], corpus, max_tokens=30_000)
    # in a run config: [stats] corpus = "model"   (or "model:256:128" = n_docs:length)

Each document is sampled from the model's document-start token (``h.document_start_id``)
with ancestral sampling at temperature 1 (every token drawn from the model's own
next-token distribution), ``length`` tokens long, in batches under a seeded generator.
Texts are cached under ``<cache root>/corpora`` keyed by the model's name and weights,
the seed and the sizes, so a second run reads them instead of sampling.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from corredit.atomic import atomic_write_text
from corredit.paths import cache_root

__all__ = ["ModelSampleCorpus", "sample_documents"]


@torch.no_grad()
def sample_documents(h: Any, *, n_docs: int, length: int, seed: int, batch_size: int = 32) -> list[str]:
    """``n_docs`` texts of ``length`` sampled tokens each (see module docstring)."""
    from transformers import DynamicCache

    if n_docs < 1 or length < 1:
        raise ValueError(f"n_docs and length must be >= 1, got {n_docs}, {length}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    start = int(h.document_start_id)
    tok = h.tokenizer
    out: list[str] = []
    model = h.model
    # the KV-cache argument is ``cache`` in recent transformers, ``past_key_values`` before
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    for s in range(0, n_docs, batch_size):
        n = min(batch_size, n_docs - s)
        ids = torch.full((n, 1), start, dtype=torch.long, device=h.device)
        cache = DynamicCache()
        step_ids = ids
        rows = []
        for t in range(length):
            mask = torch.ones((n, t + 1), dtype=torch.long, device=h.device)
            res = model(input_ids=step_ids, attention_mask=mask, use_cache=True, **{cache_kw: cache})
            probs = torch.softmax(res.logits[:, -1].double().cpu(), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen)
            rows.append(nxt)
            step_ids = nxt.to(h.device)
        sampled = torch.cat(rows, dim=1).tolist()
        out += [tok.decode(r, skip_special_tokens=True).strip() for r in sampled]
    return out


class ModelSampleCorpus:
    """Documents sampled from the model (see module docstring); a :class:`Corpus`."""

    def __init__(self, h: Any, *, n_docs: int = 256, length: int = 128, seed: int = 0,
                 cache_dir: "str | os.PathLike[str] | None" = None) -> None:
        self.h = h
        self.n_docs, self.length, self.seed = int(n_docs), int(length), int(seed)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "corpora"
        self._texts: list[str] | None = None
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """Model name and weights, seed and sizes (statistics caches key on it)."""
        if self._identity is None:
            from corredit.stats.provenance import weights_hash

            self._identity = (f"model-sample:{self.h.name}:{weights_hash(self.h.model)[:23]}:"
                              f"seed{self.seed}:n{self.n_docs}:len{self.length}")
        return self._identity

    def _path(self) -> Path:
        key = hashlib.sha256(self.identity.encode()).hexdigest()[:16]
        return self.cache_dir / f"{Path(str(self.h.name)).name}-{key}.jsonl"

    def texts(self) -> list[str]:
        """The sampled documents (read from the cache, or sampled and written there)."""
        if self._texts is None:
            path = self._path()
            if path.is_file():
                self._texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line]
            else:
                self._texts = sample_documents(self.h, n_docs=self.n_docs, length=self.length,
                                               seed=self.seed)
                atomic_write_text("".join(json.dumps({"text": t}) + "\n"
                                          for t in self._texts), path)
        return self._texts

    def documents(self, start: int = 0) -> Iterator[str]:
        """The documents from index ``start`` on."""
        yield from self.texts()[start:]

    def __iter__(self) -> Iterator[str]:
        return self.documents()

    def __repr__(self) -> str:
        return f"ModelSampleCorpus({self.h.name!r}, n_docs={self.n_docs}, length={self.length}, seed={self.seed})"
