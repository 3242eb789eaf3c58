"""The edits a run makes: a request list filtered by a run's ``[data]`` table (torch-free).

Usage::

    from corredit.data.selection import select_requests
    from corredit.config import DataConfig
    select_requests(reqs, DataConfig(min_facts_per_subject=3, n_subjects=80, seed=0))
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from corredit.types import EditRequest

__all__ = ["select_requests"]


def select_requests(requests: Sequence[EditRequest], data: Any) -> list[EditRequest]:
    """The edits a run makes: ``requests`` filtered as ``data`` (a
    :class:`~corredit.config.DataConfig`) says, in input order; case ids must be unique.

    Example: ``select_requests(reqs, DataConfig(min_facts_per_subject=3, n_subjects=80))``.
    """
    reqs = list(requests)
    seen: set[str] = set()
    for r in reqs:
        if r.case_id in seen:
            raise ValueError(f"data source {data.source!r}: case_id {r.case_id!r} appears twice")
        seen.add(r.case_id)
    if data.relations is not None:
        reqs = [r for r in reqs if r.relation_id in set(data.relations)]
    if data.subject_first is not None:
        reqs = [r for r in reqs if r.subject_first == data.subject_first]
    rng = np.random.default_rng(data.seed)
    by_subject: dict[str, list[int]] = {}
    for i, r in enumerate(reqs):
        by_subject.setdefault(r.subject, []).append(i)
    keep_subjects = [s for s, idx in by_subject.items() if len(idx) >= data.min_facts_per_subject]
    if data.n_subjects is not None and data.n_subjects < len(keep_subjects):
        pick = np.sort(rng.choice(len(keep_subjects), size=data.n_subjects, replace=False))
        keep_subjects = [keep_subjects[i] for i in pick]
    keep: list[int] = []
    for s in keep_subjects:
        idx = by_subject[s]
        if data.max_facts_per_subject is not None and len(idx) > data.max_facts_per_subject:
            pick = np.sort(rng.choice(len(idx), size=data.max_facts_per_subject, replace=False))
            idx = [idx[i] for i in pick]
        keep += idx
    keep.sort()
    if data.max_edits is not None and data.max_edits < len(keep):
        pick = np.sort(rng.choice(len(keep), size=data.max_edits, replace=False))
        keep = [keep[i] for i in pick]
    out = [reqs[i] for i in keep]
    if not out:
        raise ValueError(f"data source {data.source!r}: no edit passes the [data] filters "
                         f"(relations={data.relations}, subject_first={data.subject_first}, "
                         f"min_facts_per_subject={data.min_facts_per_subject})")
    return out
