"""What a scheduler knows about the edits: an :class:`EditSet`.

Usage::

    from corredit.schedule import edit_set
    edits = edit_set(requests, embeddings=X)   # list[EditRequest], a DataFrame, or a count
    edits.n, edits.case_ids, edits.subjects, edits.relation_ids
    edits.need_embeddings("correlated")        # unit-row float32 (n, d), or a clear error
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from corredit.graph.similarity import normalize_rows
from corredit.types import EditRequest

__all__ = ["EditSet", "edit_set"]


@dataclass(frozen=True, eq=False)
class EditSet:
    """What a scheduler may know about the edits. Optional parts are ``None`` when the
    caller gave no such information; :meth:`need_embeddings` / :meth:`need_subjects` raise
    a clear error then."""

    n: int
    case_ids: tuple[str, ...] | None = None
    subjects: tuple[str, ...] | None = None
    relation_ids: tuple[str, ...] | None = None
    embeddings: np.ndarray | None = None  # (n, d) float32, unit rows

    def need_embeddings(self, scheduler: str) -> np.ndarray:
        """The unit-row embeddings, or a ``ValueError`` naming ``scheduler``."""
        if self.embeddings is None:
            raise ValueError(f"scheduler {scheduler!r} needs embeddings=(n_edits, dim) array")
        return self.embeddings

    def need_subjects(self, scheduler: str) -> tuple[str, ...]:
        """The subjects, or a ``ValueError`` naming ``scheduler``."""
        if self.subjects is None:
            raise ValueError(f"scheduler {scheduler!r} needs the edits' subjects: pass "
                             "EditRequests or a DataFrame with a 'subject' column")
        return self.subjects


def _column(frame: pd.DataFrame, name: str) -> tuple[str, ...] | None:
    if name not in frame.columns:
        return None
    values = frame[name].tolist()
    if name == "case_id":  # numeric case ids are common; they name the edit as text
        values = [str(v) if isinstance(v, (int, np.integer)) else v for v in values]
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(f"requests DataFrame row {row}: field {name!r} must be a string, "
                             f"got {value!r}")
    return tuple(values)


def edit_set(
    requests: Sequence[EditRequest] | pd.DataFrame | int, embeddings: Any = None
) -> EditSet:
    """An :class:`EditSet` from requests (a list of ``EditRequest``, a DataFrame with
    ``case_id``/``subject``/``relation_id`` columns, each optional, or just a count)."""
    if isinstance(requests, (int, np.integer)) and not isinstance(requests, bool):
        n = int(requests)
        case_ids = subjects = relations = None
    elif isinstance(requests, pd.DataFrame):
        n = len(requests)
        case_ids = _column(requests, "case_id")
        subjects = _column(requests, "subject")
        relations = _column(requests, "relation_id")
    else:
        reqs = list(requests)
        for row, req in enumerate(reqs):
            if not isinstance(req, EditRequest):
                raise ValueError(f"request {row}: expected an EditRequest, got "
                                 f"{type(req).__name__}")
        n = len(reqs)
        case_ids = tuple(r.case_id for r in reqs)
        subjects = tuple(r.subject for r in reqs)
        relations = tuple(r.relation_id for r in reqs)
    if n < 1:
        raise ValueError("there are no edits to schedule")
    unit = None
    if embeddings is not None:
        if np.ndim(embeddings) != 2 or np.shape(embeddings)[0] != n:
            raise ValueError(f"embeddings: expected shape ({n}, dim) for {n} edits, "
                             f"got {np.shape(embeddings)}")
        unit = normalize_rows(embeddings, name="embeddings")
    return EditSet(n=n, case_ids=case_ids, subjects=subjects, relation_ids=relations,
                   embeddings=unit)
