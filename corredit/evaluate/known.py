"""Known-fact selection: keep the edits whose true object the model already holds.

Usage::

    from corredit.evaluate.known import select_known, KNOWN_CRITERIA
    sel = select_known(h, requests, criterion="prefers_true")       # or "top_k", k=10
    sel.kept                   # the requests that pass, in input order
    sel.table                  # one row per request: nll_true, nll_new, true_rank, known
    sel.per_relation()         # counts per relation: total, known, fraction
    select_known(h, requests, criterion="prefers_true", limit=50)  # stop after 50 kept

Criteria (scored on each edit's rewrite prompt with the one target encoding):

- ``prefers_true``: the true object is more likely than the new one (mean target-token
  NLL, the comparison the efficacy score ES makes after an edit);
- ``top_k``: the true object's first token is among the ``k`` most likely next tokens.

An edit without a true object cannot be judged and is reported as not known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from corredit.evaluate.scoring import score_targets

__all__ = ["KNOWN_CRITERIA", "KnownSelection", "select_known", "first_token_rank"]

KNOWN_CRITERIA: tuple[str, ...] = ("prefers_true", "top_k")


@dataclass
class KnownSelection:
    """The requests that pass, and one row per judged request."""

    kept: list
    table: pd.DataFrame
    criterion: str
    k: int

    def per_relation(self) -> pd.DataFrame:
        """Per relation id: ``total`` judged, ``known``, ``fraction`` (sorted by total)."""
        g = self.table.groupby("relation_id")["known"]
        out = pd.DataFrame({"total": g.size(), "known": g.sum().astype(int)})
        out["fraction"] = out["known"] / out["total"]
        return out.sort_values(["total", "known"], ascending=False)


def first_token_rank(h: Any, prompts: Sequence[str], targets: Sequence[str], *,
                     batch_size: int = 64) -> np.ndarray:
    """Rank (0 = argmax) of each target's first token among the next-token logits after
    its prompt (:attr:`~corredit.evaluate.scoring.TargetScores.first_rank`)."""
    return score_targets(h, prompts, targets, batch_size).first_rank


def _judge(h: Any, reqs: Sequence, criterion: str, k: int, batch_size: int) -> pd.DataFrame:
    judged = [r for r in reqs if getattr(r, "target_true", None)]
    rows = []
    if judged:
        prompts = [r.rewrite_prompt for r in judged]
        scored_true = score_targets(h, prompts, [r.target_true for r in judged], batch_size)
        true, rank = scored_true.nll, scored_true.first_rank     # one pass gives both
        new = score_targets(h, prompts, [r.target_new for r in judged], batch_size).nll
        for r, t, n, rk in zip(judged, true, new, rank):
            known = bool(t < n) if criterion == "prefers_true" else bool(rk < k)
            rows.append({"case_id": str(r.case_id), "relation_id": r.relation_id, "subject": r.subject,
                         "nll_true": float(t), "nll_new": float(n), "true_rank": int(rk), "known": known})
    for r in reqs:
        if not getattr(r, "target_true", None):
            rows.append({"case_id": str(r.case_id), "relation_id": r.relation_id, "subject": r.subject,
                         "nll_true": float("nan"), "nll_new": float("nan"), "true_rank": -1,
                         "known": False})
    order = {str(r.case_id): i for i, r in enumerate(reqs)}
    return pd.DataFrame(rows).sort_values("case_id", key=lambda s: s.map(order)).reset_index(drop=True)


def select_known(h: Any, requests: Sequence, *, criterion: str = "prefers_true", k: int = 10,
                 limit: int | None = None, chunk: int = 256, batch_size: int = 64,
                 progress: Callable[[int, int], None] | None = None) -> KnownSelection:
    """Judge ``requests`` on model ``h`` (see module docstring), in order and ``chunk`` at
    a time; with ``limit``, stop once that many are kept (the table then covers only the
    requests judged). ``progress(judged, kept)`` is called after every chunk."""
    if criterion not in KNOWN_CRITERIA:
        raise ValueError(f"unknown known-fact criterion {criterion!r}; known: {', '.join(KNOWN_CRITERIA)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    reqs = list(requests)
    parts: list[pd.DataFrame] = []
    n_kept = 0
    for s in range(0, len(reqs), chunk):
        part = _judge(h, reqs[s:s + chunk], criterion, k, batch_size)
        parts.append(part)
        n_kept += int(part["known"].sum())
        if progress is not None:
            progress(s + len(part), n_kept)
        if limit is not None and n_kept >= limit:
            break
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["case_id", "relation_id", "subject", "nll_true", "nll_new", "true_rank", "known"])
    known_ids = set(table.loc[table["known"], "case_id"])
    kept = [r for r in reqs if str(r.case_id) in known_ids]
    if limit is not None:
        kept = kept[:limit]
    return KnownSelection(kept=kept, table=table, criterion=criterion, k=int(k))
