"""How well a model knows a world: first-token argmax recall of true objects.

Usage::

    from corredit.world.measure import first_token_hits, recall_report
    hits = first_token_hits(model, tokenizer, ["Toma Velik was born in"], ["Belun"])
    rep = recall_report(model, tokenizer, world.requests())
    rep["recall"], rep["paraphrase_recall"]

A hit: the model's most likely next token after the prompt is the first token of
``" " + target``. ``recall`` is the hit rate on the requests' rewrite prompts,
``paraphrase_recall`` on their paraphrase prompts (the facts' other phrasings).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from corredit.types import EditRequest

__all__ = ["first_token_hits", "recall_report"]


def first_token_hits(model: Any, tokenizer: Any, prompts: Sequence[str], targets: Sequence[str],
                     batch_size: int = 256) -> np.ndarray:
    """Boolean array: argmax next token after each prompt == first token of " " + target."""
    import torch

    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    if not prompts:
        return np.zeros(0, dtype=bool)
    device = next(model.parameters()).device
    encoded = [list(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    first = [tokenizer(" " + t, add_special_tokens=False)["input_ids"][0] for t in targets]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    hits = np.zeros(len(encoded), dtype=bool)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                width = max(len(encoded[i]) for i in idx)
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    ids[r, :len(encoded[i])] = torch.tensor(encoded[i])
                    mask[r, :len(encoded[i])] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                last = mask.sum(1) - 1
                pred = logits[torch.arange(len(idx)), last.to(device)].argmax(-1).cpu().numpy()
                for r, i in enumerate(idx):
                    hits[i] = pred[r] == first[i]
    finally:
        model.train(was_training)
    return hits


def recall_report(model: Any, tokenizer: Any, requests: Sequence[EditRequest],
                  batch_size: int = 256) -> dict[str, Any]:
    """Recall on rewrite and paraphrase prompts, overall, by relation and by phrasing kind."""
    prompts: list[str] = []
    targets: list[str] = []
    kinds: list[tuple[str, str, bool]] = []  # (prompt kind, relation, subject first)
    for r in requests:
        rel_first = bool(r.meta.get("subject_first", r.subject_first))
        prompts.append(r.rewrite_prompt)
        targets.append(r.target_true)
        kinds.append(("rewrite", r.relation_id, rel_first))
        for p in r.paraphrase_prompts:
            prompts.append(p)
            targets.append(r.target_true)
            kinds.append(("paraphrase", r.relation_id, p.startswith(r.subject)))
    hits = first_token_hits(model, tokenizer, prompts, targets, batch_size=batch_size)
    groups: dict[str, list[bool]] = defaultdict(list)
    for h, (kind, rel, first) in zip(hits, kinds):
        groups[kind].append(bool(h))
        groups[f"relation:{rel}"].append(bool(h))
        groups["subject_first" if first else "subject_last"].append(bool(h))
    rate = {k: float(np.mean(v)) if v else float("nan") for k, v in groups.items()}
    return {
        "recall": rate.get("rewrite", float("nan")),
        "paraphrase_recall": rate.get("paraphrase", float("nan")),
        "subject_first_recall": rate.get("subject_first", float("nan")),
        "subject_last_recall": rate.get("subject_last", float("nan")),
        "by_relation": {k.split(":", 1)[1]: v for k, v in sorted(rate.items())
                        if k.startswith("relation:")},
        "n_requests": len(requests),
        "n_prompts": len(prompts),
    }
