"""zsRE token accuracy (the MEMIT paper's zsRE metrics), labelled ``suite="zsre"``.

Usage::

    from corredit.evaluate import score_zsre, summarize_zsre
    rows = score_zsre(h, requests, batch_size=64)
    summarize_zsre(rows)     # {'efficacy': 96.7, 'generalization': 89.7, 'specificity': 24.1, ...}

Token accuracy of a target after a question: for each target token i, the question
followed by target[:i] is fed and the argmax must equal token i; the fraction of right
tokens (one causal forward pass gives every i at once, see
:func:`~corredit.evaluate.score_targets`). Per request:

- ``efficacy`` (prompt_kind ``rewrite``): ``target_new`` after the rewrite prompt;
- ``generalization`` (``paraphrase``): ``target_new`` after each paraphrase prompt;
- ``specificity`` (``locality``): each locality prompt's own answer after it (a
  request without locality prompts has no specificity rows).
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from corredit.evaluate.rows import suite_rows, summarize_suite
from corredit.evaluate.scoring import score_targets
from corredit.types import EditRequest

__all__ = ["ZSRE_METRICS", "score_zsre", "summarize_zsre"]

SUITE = "zsre"
ZSRE_METRICS = ("efficacy", "generalization", "specificity")


def score_zsre(h: Any, requests: Sequence[EditRequest], batch_size: int = 64) -> pd.DataFrame:
    """Tidy rows (suite ``zsre``) of per-prompt token accuracy; see the module doc."""
    items: list[tuple[str, str, int, str]] = []
    prompts: list[str] = []
    targets: list[str] = []
    for req in requests:
        if not req.target_new:
            raise ValueError(f"EditRequest {req.case_id!r}: field 'target_new' is empty")
        mine = [("rewrite", 0, "efficacy", req.rewrite_prompt, req.target_new)]
        mine += [("paraphrase", i, "generalization", p, req.target_new)
                 for i, p in enumerate(req.paraphrase_prompts)]
        mine += [("locality", i, "specificity", lp.prompt, lp.target)
                 for i, lp in enumerate(req.locality)]
        for kind, i, metric, prompt, target in mine:
            items.append((req.case_id, kind, i, metric))
            prompts.append(prompt)
            targets.append(target)
    acc = score_targets(h, prompts, targets, batch_size).token_accuracy if prompts else []
    return suite_rows(((c, k, i, m, float(v)) for (c, k, i, m), v in zip(items, acc)), SUITE)


def summarize_zsre(df: pd.DataFrame) -> dict[str, float]:
    """Mean x100 of efficacy, generalization and specificity (prompts within a case,
    then cases), and ``n_cases``."""
    return summarize_suite(df, SUITE, ZSRE_METRICS)
