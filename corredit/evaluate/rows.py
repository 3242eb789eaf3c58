"""Tidy rows of the non-probability suites, typed like :func:`probability_rows`.

Usage::

    from corredit.evaluate.rows import suite_rows
    suite_rows([("7", "rewrite", 0, "rewrite_acc", 1.0)], "teacher_forced")
    # one row: case_id, prompt_kind, prompt_index, metric, value, suite
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

__all__ = ["ROW_COLUMNS", "suite_rows", "summarize_suite"]

ROW_COLUMNS = ("case_id", "prompt_kind", "prompt_index", "metric", "value", "suite")


def suite_rows(records: Iterable[tuple[str, str, int, str, float]], suite: str) -> pd.DataFrame:
    """A frame of ``(case_id, prompt_kind, prompt_index, metric, value)`` records, every
    row labelled ``suite``."""
    frame = pd.DataFrame(list(records), columns=list(ROW_COLUMNS[:-1]))
    frame["suite"] = suite
    return frame.astype({"case_id": "string", "prompt_kind": "string", "prompt_index": "int64",
                         "metric": "string", "value": "float64", "suite": "string"})[
        list(ROW_COLUMNS)]


def summarize_suite(df: pd.DataFrame, suite: str, metrics: Iterable[str]) -> dict[str, float]:
    """Per metric: mean over prompts within a case, then over cases, x100 (NaN when the
    metric has no row); only rows of ``suite`` count; plus ``n_cases``."""
    missing = [c for c in ("case_id", "metric", "value") if c not in df.columns]
    if missing:
        raise KeyError(f"summary of suite {suite!r}: rows lack columns {missing}")
    if "suite" in df.columns:
        df = df[df["suite"] == suite]
    metrics = list(metrics)
    sub = df[df["metric"].isin(metrics)]
    per_case = sub.groupby(["metric", "case_id"], observed=True)["value"].mean()
    means = per_case.groupby(level="metric", observed=True).mean() * 100.0
    out = {m: float(means.get(m, float("nan"))) for m in metrics}
    out["n_cases"] = float(sub["case_id"].nunique())
    return out
