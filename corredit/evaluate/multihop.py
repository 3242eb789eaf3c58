"""Multi-hop accuracy (MQuAKE-style), labelled ``suite="multihop"``.

Usage::

    from corredit.evaluate import score_multihop, summarize_multihop
    rows = score_multihop(h, requests, batch_size=64)
    summarize_multihop(rows)    # {'multihop_acc': 41.0, 'new_answer': ..., 'old_answer': ..., ...}

A question is answered with an answer when the model's greedy continuation of the
question starts with the tokens of ``" " + answer``. That holds exactly when, feeding
the answer's tokens after the question (teacher forcing), the argmax at every answer
position is the answer's next token, i.e. its token accuracy is 1
(:func:`~corredit.evaluate.score_targets`), so all questions and answer candidates go
through one batched sweep and no decoding loop is needed.

Per question (prompt_kind ``question``, prompt_index = its index in the unit):
``new_answer`` = 1 when answered with ``new_answer`` or one of ``new_answer_aliases``,
``old_answer`` = 1 when answered with ``answer`` or one of ``answer_aliases``.
``answer_changed`` = 1 when the new answers and the old ones share no string (a
question whose answer the edit does not change, as a new birthplace in the same
country, cannot tell an edited model from an unedited one).
Per unit (prompt_kind ``case``, prompt_index 0): ``multihop_acc`` = 1 when any of its
questions with a changed answer is answered with the new answer; a unit whose
questions all keep their answer has no ``multihop_acc`` row (its question rows say so).

A unit is a request, or all requests sharing a ``group_id`` (a MQuAKE case: its edits
are applied together); a group's rows carry the case_id of its first request in input
order, and its questions are those of its requests (MQuAKE puts them on the first
edit), without repeats. A unit without questions has no rows.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from corredit.evaluate.rows import suite_rows, summarize_suite
from corredit.evaluate.scoring import score_targets
from corredit.types import EditRequest, MultiHopQuestion

__all__ = ["MULTIHOP_METRICS", "multihop_units", "score_multihop", "summarize_multihop"]

SUITE = "multihop"
MULTIHOP_METRICS = ("multihop_acc", "new_answer", "old_answer", "answer_changed")


def multihop_units(requests: Sequence[EditRequest]
                   ) -> list[tuple[str, list[MultiHopQuestion]]]:
    """``(case_id, questions)`` per unit (request or group) that has questions."""
    units: dict[str, tuple[str, list[MultiHopQuestion]]] = {}
    for req in requests:
        key = f"group:{req.group_id}" if req.group_id is not None else f"case:{req.case_id}"
        case_id, questions = units.setdefault(key, (req.case_id, []))
        for q in req.multi_hop:
            if q not in questions:
                questions.append(q)
    return [(c, qs) for c, qs in units.values() if qs]


def _candidates(answer: str, aliases: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(a for a in (answer, *aliases) if isinstance(a, str) and a.strip()))


def score_multihop(h: Any, requests: Sequence[EditRequest], batch_size: int = 64
                   ) -> pd.DataFrame:
    """Tidy rows (suite ``multihop``); see the module doc."""
    units = multihop_units(requests)
    prompts: list[str] = []
    targets: list[str] = []
    spans: list[tuple[str, int, int, int, int, bool]] = []  # case, question, new [a, b),
    # old [b, c), answer changed
    for case_id, questions in units:
        for qi, q in enumerate(questions):
            new = _candidates(q.new_answer, q.new_answer_aliases)
            old = _candidates(q.answer, q.answer_aliases)
            if not new:
                raise ValueError(f"case {case_id!r}: multi-hop question {q.question!r} has "
                                 f"no new answer")
            a = len(prompts)
            prompts += [q.question] * (len(new) + len(old))
            targets += new + old
            spans.append((case_id, qi, a, a + len(new), a + len(new) + len(old),
                          not set(new) & set(old)))
    acc = score_targets(h, prompts, targets, batch_size).token_accuracy if prompts else []
    exact = np.asarray(acc) >= 1.0
    records: list[tuple[str, str, int, str, float]] = []
    hit_new: dict[str, bool] = {}
    for case_id, qi, a, b, c, changed in spans:
        new_hit = bool(exact[a:b].any())
        records.append((case_id, "question", qi, "new_answer", float(new_hit)))
        records.append((case_id, "question", qi, "old_answer", float(exact[b:c].any())))
        records.append((case_id, "question", qi, "answer_changed", float(changed)))
        if changed:
            hit_new[case_id] = hit_new.get(case_id, False) or new_hit
    records += [(c, "case", 0, "multihop_acc", float(v)) for c, v in hit_new.items()]
    return suite_rows(records, SUITE)


def summarize_multihop(df: pd.DataFrame) -> dict[str, float]:
    """``multihop_acc`` x100 (mean over units that have it), the per-question rates of
    answering with the new / old answer and of changed answers (mean within a unit,
    then over units), and ``n_cases``."""
    return summarize_suite(df, SUITE, MULTIHOP_METRICS)
