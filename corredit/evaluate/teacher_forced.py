"""The teacher-forced suite (the EasyEdit convention), labelled ``suite="teacher_forced"``.

Usage::

    from corredit.evaluate import teacher_forced_reference, score_teacher_forced
    ref = teacher_forced_reference(h, requests)          # on the unedited model
    ...                                                  # edit the model
    rows = score_teacher_forced(h, requests, reference=ref, batch_size=64)
    summarize_teacher_forced(rows)   # {'rewrite_acc': 99.0, 'rephrase_acc': ..., 'locality_acc': ...}

Per prompt, the target's tokens are fed after the prompt (teacher forcing) and the
argmax at each target position is read:

- ``rewrite_acc`` (prompt_kind ``rewrite``): fraction of the tokens of ``target_new``
  that are the argmax after the rewrite prompt;
- ``rephrase_acc`` (``paraphrase``): the same on each paraphrase prompt;
- ``locality_acc`` (``locality``): fraction of positions whose argmax is unchanged
  between the unedited model (the ``reference``) and the model now, on each locality
  prompt followed by its answer: the request's ``locality`` prompts with their targets,
  or, when it has none, its neighbourhood prompts with ``target_true``.

Locality needs the reference; without one (``reference=None``) no locality rows are
produced. All pairs of all requests go through one batched sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from corredit.evaluate.rows import suite_rows, summarize_suite
from corredit.evaluate.scoring import score_targets
from corredit.types import EditRequest

__all__ = [
    "TEACHER_FORCED_METRICS",
    "TeacherForcedReference",
    "target_argmax",
    "locality_pairs",
    "teacher_forced_reference",
    "score_teacher_forced",
    "summarize_teacher_forced",
]

SUITE = "teacher_forced"
TEACHER_FORCED_METRICS = ("rewrite_acc", "rephrase_acc", "locality_acc")


def target_argmax(h: Any, prompts: Sequence[str], targets: Sequence[str],
                  batch_size: int = 64) -> list[np.ndarray]:
    """Teacher-forced argmax token ids: for each pair, the model's argmax at every
    position of ``" " + target`` after ``prompt`` (int64 array, one entry per target
    token; tokenization as :func:`~corredit.evaluate.score_targets`). Pairs are
    deduplicated, sorted by length and run ``batch_size`` at a time, right-padded
    (one pass of :func:`~corredit.evaluate.score_targets`).

    Example: ``target_argmax(h, ["Paris is in"], ["France"])`` -> ``[array([412])]``.
    """
    return list(score_targets(h, prompts, targets, batch_size, with_argmax=True).argmax)


def locality_pairs(req: EditRequest) -> list[tuple[str, str]]:
    """``(prompt, answer)`` pairs on which locality is measured: the request's locality
    prompts, else its neighbourhood prompts with ``target_true`` (none when it has
    neither)."""
    if req.locality:
        return [(lp.prompt, lp.target) for lp in req.locality]
    if req.neighborhood_prompts and req.target_true:
        return [(p, req.target_true) for p in req.neighborhood_prompts]
    return []


@dataclass(frozen=True)
class TeacherForcedReference:
    """Teacher-forced argmax ids of the unedited model per ``(prompt, answer)`` pair."""

    argmax: Mapping[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)

    def get(self, case_id: str, prompt: str, answer: str) -> np.ndarray:
        try:
            return np.asarray(self.argmax[(prompt, answer)], dtype=np.int64)
        except KeyError:
            raise KeyError(f"case {case_id!r}: locality prompt {prompt!r} with answer "
                           f"{answer!r} is not in the teacher-forced reference (compute it "
                           f"with teacher_forced_reference on every request)") from None


def teacher_forced_reference(h: Any, requests: Sequence[EditRequest],
                             batch_size: int = 64) -> TeacherForcedReference:
    """The unedited model's argmax ids on every locality pair of ``requests`` (call
    before editing; pass to :func:`score_teacher_forced`)."""
    pairs = list(dict.fromkeys(p for r in requests for p in locality_pairs(r)))
    ids = target_argmax(h, [p for p, _ in pairs], [a for _, a in pairs], batch_size)
    return TeacherForcedReference({pair: tuple(int(x) for x in v) for pair, v in zip(pairs, ids)})


def score_teacher_forced(h: Any, requests: Sequence[EditRequest], *,
                         reference: TeacherForcedReference | None = None,
                         batch_size: int = 64) -> pd.DataFrame:
    """Tidy rows (suite ``teacher_forced``): ``rewrite_acc`` per rewrite prompt,
    ``rephrase_acc`` per paraphrase, ``locality_acc`` per locality pair (only with a
    ``reference``); see the module doc."""
    acc_items: list[tuple[str, str, int, str]] = []
    prompts: list[str] = []
    targets: list[str] = []
    for req in requests:
        if not req.target_new:
            raise ValueError(f"EditRequest {req.case_id!r}: field 'target_new' is empty")
        acc_items.append((req.case_id, "rewrite", 0, "rewrite_acc"))
        prompts.append(req.rewrite_prompt)
        for i, p in enumerate(req.paraphrase_prompts):
            acc_items.append((req.case_id, "paraphrase", i, "rephrase_acc"))
            prompts.append(p)
        targets += [req.target_new] * (len(prompts) - len(targets))
    acc = score_targets(h, prompts, targets, batch_size).token_accuracy if prompts else []
    records = [(c, k, i, m, float(v)) for (c, k, i, m), v in zip(acc_items, acc)]
    if reference is not None:
        loc = [(r.case_id, i, p, a) for r in requests for i, (p, a) in enumerate(locality_pairs(r))]
        before = [reference.get(c, p, a) for c, _, p, a in loc]
        now = target_argmax(h, [p for _, _, p, _ in loc], [a for _, _, _, a in loc], batch_size)
        for (c, i, _, _), b, n in zip(loc, before, now):
            if b.shape != n.shape:
                raise ValueError(f"case {c!r}: locality prompt {i} has {len(b)} answer tokens "
                                 f"in the reference but {len(n)} now (another tokenizer?)")
            records.append((c, "locality", i, "locality_acc", float(np.mean(b == n))))
    return suite_rows(records, SUITE)


def summarize_teacher_forced(df: pd.DataFrame) -> dict[str, float]:
    """Mean x100 of each teacher-forced metric (prompts within a case, then cases)."""
    return summarize_suite(df, SUITE, TEACHER_FORCED_METRICS)
