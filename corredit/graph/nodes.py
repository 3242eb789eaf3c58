"""The fields of each edit that graphs and schedules carry, from requests or a DataFrame.

Usage::

    from corredit.graph import request_table
    table = request_table(requests)      # list[EditRequest] or a DataFrame
    table.columns.tolist()
    # ['case_id', 'subject', 'relation_id', 'target_new', 'target_true', 'subject_first']

A DataFrame needs the columns ``case_id``, ``subject``, ``relation_id`` and ``target_new``;
``target_true`` may be absent (then ``None``), and ``subject_first`` is taken from the
column of that name or else computed from a ``prompt`` column.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from corredit.types import EditRequest, subject_comes_first

__all__ = ["NODE_FIELDS", "request_table"]

#: The request fields copied onto every node, in order.
NODE_FIELDS: tuple[str, ...] = (
    "case_id", "subject", "relation_id", "target_new", "target_true", "subject_first",
)
_REQUIRED = ("case_id", "subject", "relation_id", "target_new")


def _text(value: Any, *, row: int, field: str, optional: bool = False) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        if optional:
            return None
        raise ValueError(f"request {row}: field {field!r} is missing")
    if not isinstance(value, str):
        raise ValueError(f"request {row}: field {field!r} must be a string, got {value!r}")
    return value


def request_table(requests: Sequence[EditRequest] | pd.DataFrame) -> pd.DataFrame:
    """One row per edit (in input order, index ``0..n-1``) with the :data:`NODE_FIELDS`."""
    rows: list[dict[str, Any]] = []
    if isinstance(requests, pd.DataFrame):
        missing = [c for c in _REQUIRED if c not in requests.columns]
        if missing:
            raise ValueError(f"requests DataFrame lacks column(s) {missing}; "
                             f"needs {list(_REQUIRED)}")
        has_flag = "subject_first" in requests.columns
        if not has_flag and "prompt" not in requests.columns:
            raise ValueError(
                "requests DataFrame needs a 'subject_first' column or a 'prompt' column "
                "to compute it from"
            )
        records = requests.to_dict("records")
        for row, rec in enumerate(records):
            out = {f: _text(rec[f], row=row, field=f) for f in _REQUIRED}
            out["target_true"] = _text(rec.get("target_true"), row=row, field="target_true",
                                       optional=True)
            if has_flag:
                flag = rec["subject_first"]
                if not isinstance(flag, (bool, np.bool_)):
                    raise ValueError(f"request {row}: field 'subject_first' must be a bool, "
                                     f"got {flag!r}")
                out["subject_first"] = bool(flag)
            else:
                prompt = _text(rec["prompt"], row=row, field="prompt")
                out["subject_first"] = subject_comes_first(prompt)
            rows.append(out)
    else:
        for row, req in enumerate(requests):
            if not isinstance(req, EditRequest):
                raise ValueError(
                    f"request {row}: expected an EditRequest, got {type(req).__name__}"
                )
            rows.append({
                "case_id": req.case_id, "subject": req.subject, "relation_id": req.relation_id,
                "target_new": req.target_new, "target_true": req.target_true,
                "subject_first": req.subject_first,
            })
    columns = {
        f: pd.Series([r[f] for r in rows], dtype=bool if f == "subject_first" else object)
        for f in NODE_FIELDS
    }
    return pd.DataFrame(columns)
