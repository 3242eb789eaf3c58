"""Generation metrics of the probability suite: generation entropy (GE) and reference
score (RS), rows labelled ``suite="probability"``, ``prompt_kind="generation"``.

Usage::

    from corredit.evaluate import score_generation, summarize_generation
    w = load_world()
    snippets = {o: w.snippets(o) for o in {r.target_new for r in requests}}
    rows = score_generation(h, requests, snippets=snippets, max_new_tokens=100, seed=0)
    summarize_generation(rows)        # {'GE': 612.3, 'RS': 31.0, 'n_cases': 40.0}

Per generation prompt, one text is sampled: top-k (k = 5) sampling for
``max_new_tokens`` tokens (EOS does not stop it), the text being the prompt and its
continuation decoded. Each prompt draws from its own generator seeded by ``(seed,
case_id, prompt index)``, so a text does not depend on the batch it is sampled in.
Prompts are batched by token length (equal lengths share a batch: no padding inside a
sampled sequence), with a KV cache.

- ``GE`` (one row per prompt): ``(2/3·H₂ + 4/3·H₃) / 2`` with ``Hₙ`` the entropy in bits
  of the frequencies of the text's word n-grams (words: runs of word characters, and
  each other non-space character on its own; ``Hₙ = 0`` for a text with no n-gram);
  summaries report it x100 (healthy text ≈ 600).
- ``RS`` (one row per case, prompt_index 0; only with ``snippets``): cosine similarity
  of the TF-IDF vectors of the case's texts joined and of the snippets about its
  ``target_new`` joined. The TF-IDF vocabulary and IDF are fitted on every snippet of
  ``snippets`` (one document per snippet), so a case's RS does not depend on which other
  cases are scored with it; pass the same mapping throughout a run.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from corredit.evaluate.rows import suite_rows, summarize_suite
from corredit.evaluate.scoring import encode_prompt
from corredit.models.tracing import eval_mode
from corredit.types import EditRequest

__all__ = [
    "GENERATION_METRICS",
    "ngram_entropy",
    "generation_entropy",
    "sample_texts",
    "reference_scores",
    "score_generation",
    "summarize_generation",
]

SUITE = "probability"
GENERATION_METRICS = ("GE", "RS")
_WORD = re.compile(r"\w+|[^\w\s]")


def ngram_entropy(text: str, n: int) -> float:
    """Entropy in bits of the frequencies of the word n-grams of ``text`` (0 when it has
    none). Example: ``ngram_entropy("a b a b", 2)`` = H(2/3, 1/3) = 0.918..."""
    words = _WORD.findall(text)
    counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    if not counts:
        return 0.0
    p = np.array(list(counts.values()), dtype=np.float64)
    p /= p.sum()
    return float(-(p * np.log2(p)).sum())


def generation_entropy(text: str) -> float:
    """``(2/3·H₂ + 4/3·H₃) / 2`` of ``text`` (not x100)."""
    return (2.0 / 3.0 * ngram_entropy(text, 2) + 4.0 / 3.0 * ngram_entropy(text, 3)) / 2.0


def _seed_of(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") >> 1


def _cache_argument(model: Any) -> str:
    """The forward argument taking the KV cache (``cache``; ``past_key_values`` in older
    transformers)."""
    names = inspect.signature(model.forward).parameters
    return "cache" if "cache" in names else "past_key_values"


def sample_texts(h: Any, prompts: Sequence[str], *, keys: Sequence[str] | None = None,
                 max_new_tokens: int = 100, top_k: int = 5, seed: int = 0,
                 batch_size: int = 16) -> list[str]:
    """One top-k sample of ``max_new_tokens`` tokens per prompt, decoded with the prompt;
    prompt ``i`` draws from a generator seeded by ``(seed, keys[i])`` (``keys`` default
    to the prompt indices). Example: ``sample_texts(h, ["Paris is"], max_new_tokens=20)``."""
    if keys is None:
        keys = [str(i) for i in range(len(prompts))]
    if len(keys) != len(prompts):
        raise ValueError(f"sample_texts: {len(prompts)} prompts but {len(keys)} keys")
    if max_new_tokens < 0 or top_k < 1 or batch_size < 1:
        raise ValueError(f"sample_texts: need max_new_tokens >= 0, top_k >= 1, batch_size >= 1 "
                         f"(got {max_new_tokens}, {top_k}, {batch_size})")
    tok = h.tokenizer
    encoded = [encode_prompt(tok, p) for p in prompts]
    for p, ids in zip(prompts, encoded):
        if not ids:
            raise ValueError(f"generation prompt {p!r} has no tokens")
    by_len: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_len.setdefault(len(ids), []).append(i)
    out: list[str] = [""] * len(prompts)
    dev = h.device
    model = h.model
    cache_arg = _cache_argument(model)
    with eval_mode(model), torch.no_grad():
        for length in sorted(by_len):
            group = by_len[length]
            for s in range(0, len(group), batch_size):
                idx = group[s:s + batch_size]
                gens = [torch.Generator().manual_seed(_seed_of(seed, keys[i])) for i in idx]
                ids = torch.tensor([encoded[i] for i in idx], dtype=torch.long, device=dev)
                seqs = ids.cpu()
                step_in, past = ids, None
                for _ in range(max_new_tokens):
                    kwargs = {} if past is None else {cache_arg: past}
                    res = model(input_ids=step_in, use_cache=True, **kwargs)
                    past = getattr(res, "cache", None) or getattr(res, "past_key_values", None)
                    top_v, top_i = res.logits[:, -1].float().topk(min(top_k, res.logits.shape[-1]))
                    probs = torch.softmax(top_v, dim=-1).cpu()
                    pick = torch.stack([torch.multinomial(probs[r], 1, generator=g)
                                        for r, g in enumerate(gens)])
                    nxt = top_i.cpu().gather(1, pick)
                    seqs = torch.cat([seqs, nxt], dim=1)
                    step_in = nxt.to(dev)
                for r, i in enumerate(idx):
                    out[i] = tok.decode(seqs[r].tolist(), skip_special_tokens=True)
    return out


def reference_scores(texts: Sequence[str], references: Sequence[str],
                     corpus: Sequence[str]) -> np.ndarray:
    """Cosine similarity of the TF-IDF vectors of ``texts[i]`` and ``references[i]``,
    with vocabulary and IDF fitted on ``corpus``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if len(texts) != len(references):
        raise ValueError(f"reference_scores: {len(texts)} texts but {len(references)} references")
    if not texts:
        return np.zeros(0)
    vec = TfidfVectorizer().fit(list(corpus))
    a = vec.transform(list(texts))
    b = vec.transform(list(references))
    return np.asarray(a.multiply(b).sum(axis=1), dtype=np.float64).ravel()  # rows have unit norm


def score_generation(h: Any, requests: Sequence[EditRequest], *,
                     snippets: Mapping[str, Sequence[str]] | None = None,
                     max_new_tokens: int = 100, seed: int = 0, top_k: int = 5,
                     batch_size: int = 16) -> pd.DataFrame:
    """Tidy rows (suite ``probability``, prompt_kind ``generation``): ``GE`` per
    generation prompt and, with ``snippets`` (object -> reference texts), ``RS`` per
    case; see the module doc."""
    items = [(r.case_id, i, p) for r in requests for i, p in enumerate(r.generation_prompts)]
    texts = sample_texts(h, [p for _, _, p in items], keys=[f"{c}:{i}" for c, i, _ in items],
                         max_new_tokens=max_new_tokens, top_k=top_k, seed=seed,
                         batch_size=batch_size)
    records = [(c, "generation", i, "GE", generation_entropy(t))
               for (c, i, _), t in zip(items, texts)]
    if snippets is not None:
        joined: dict[str, list[str]] = {}
        for (c, _, _), t in zip(items, texts):
            joined.setdefault(c, []).append(t)
        cases = [r for r in requests if r.case_id in joined]
        refs = []
        for r in cases:
            if r.target_new not in snippets or not snippets[r.target_new]:
                raise KeyError(f"case {r.case_id!r}: no reference snippets about its "
                               f"target_new {r.target_new!r}")
            refs.append(" ".join(snippets[r.target_new]))
        corpus = [s for texts_ in snippets.values() for s in texts_]
        rs = reference_scores([" ".join(joined[r.case_id]) for r in cases], refs, corpus)
        records += [(r.case_id, "generation", 0, "RS", float(v)) for r, v in zip(cases, rs)]
    return suite_rows(records, SUITE)


def summarize_generation(df: pd.DataFrame) -> dict[str, float]:
    """Mean x100 of GE (texts within a case, then cases) and RS, and ``n_cases``."""
    return summarize_suite(df, SUITE, GENERATION_METRICS)
