"""The probability suite (ROME / MEMIT papers): ES/PS/NS and their magnitudes.

Usage::

    from corredit.evaluate import score_probability, summarize_probability
    rows = score_probability(h, requests, batch_size=64)
    summarize_probability(rows)    # {'ES': 100.0, 'PS': 87.5, 'NS': 75.0, 'S': ..., ...}

Every request contributes its rewrite prompt, paraphrase prompts and neighbourhood
prompts, each scored with ``target_new`` and ``target_true``; all pairs of all requests
go through one batched sweep (identical pairs scored once).
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from corredit.evaluate.metrics import probability_rows, summarize_probability
from corredit.evaluate.scoring import score_targets
from corredit.types import EditRequest

__all__ = ["score_probability", "summarize_probability", "probability_prompts"]


def probability_prompts(requests: Sequence[EditRequest]) -> list[tuple[str, str, int, str]]:
    """``(case_id, prompt_kind, prompt_index, prompt)`` for every prompt of the suite."""
    out = []
    for req in requests:
        if not req.target_true:
            raise ValueError(f"EditRequest {req.case_id!r}: field 'target_true' is required "
                             f"by the probability suite")
        if not req.target_new:
            raise ValueError(f"EditRequest {req.case_id!r}: field 'target_new' is empty")
        out.append((req.case_id, "rewrite", 0, req.rewrite_prompt))
        out += [(req.case_id, "paraphrase", i, p) for i, p in enumerate(req.paraphrase_prompts)]
        out += [(req.case_id, "neighborhood", i, p)
                for i, p in enumerate(req.neighborhood_prompts)]
    return out


def score_probability(h: Any, requests: Sequence[EditRequest], batch_size: int = 64
                      ) -> pd.DataFrame:
    """Tidy rows ``case_id, prompt_kind, prompt_index, metric, value, suite`` with metrics
    ES/EM (rewrite), PS/PM (paraphrase), NS/NM (neighborhood) per prompt, plus the
    prompt's ``nll_true`` and ``nll_new``."""
    items: list[tuple[str, str, int, str]] = []
    prompts: list[str] = []
    targets: list[str] = []
    for req in requests:
        mine = probability_prompts([req])
        items += mine
        for _, _, _, prompt in mine:
            prompts += [prompt, prompt]
            targets += [req.target_true, req.target_new]
    nll = score_targets(h, prompts, targets, batch_size).nll
    return probability_rows(
        [c for c, _, _, _ in items], [k for _, k, _, _ in items], [i for _, _, i, _ in items],
        nll_true=nll[0::2], nll_new=nll[1::2])
