"""Per-case tables: one row per edit case, the unit every statistic starts from.

Usage::

    from corredit.analysis.cases import case_scores, case_table, case_units
    t = case_table(df)                 # ES / PS / NS in [0, 1] + correlation measures, per case
    labels, unit = case_units(t)       # resampling unit of each row: subject, else case id

Conventions (see the row conventions in ``corredit.results``):

* A *case* is one edit request inside one trial: the key ``(run, trial, case_id, batch)``.
  Per case, a probability metric is the mean over that case's prompts of the metric.
* ``when`` picks the measurement of each case: ``"immediate"`` = right after its own batch
  (``step == batch``), ``"final"`` = the last step at which the case was measured,
  ``"all"`` = every step (retention).
* When the results carry a ``subject`` column (:func:`attach_subjects`; ``read_run`` adds
  it from the run's ``edits.jsonl``), every case keeps its subject: the independent unit
  of the bootstrap. One edit appears in many trials and several edits share a subject.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from corredit.results import CONFIG_COLUMNS

__all__ = [
    "CASE_KEYS",
    "SCORE_METRICS",
    "STRATA",
    "case_scores",
    "case_measures",
    "case_table",
    "case_units",
    "attach_subjects",
    "read_edit_subjects",
    "correlation_measures",
    "has_retention",
    "harmonic_mean",
    "with_s",
    "check_columns",
    "ensure_metric_columns",
    "trial_config",
    "groups",
]

#: The columns that identify one edit case inside a results table.
CASE_KEYS: tuple[str, ...] = ("run", "trial", "case_id", "batch")
#: The three headline probability scores; S is their harmonic mean.
SCORE_METRICS: tuple[str, ...] = ("ES", "PS", "NS")
#: Configuration columns that define a stratum: contrasts are computed inside one stratum
#: (e.g. one scheduler x batch size) and never across strata.
STRATA: tuple[str, ...] = ("model", "dataset", "editor", "mode", "scheduler", "batch_size")
_WHEN = ("immediate", "final", "all")
_MIN_COLUMNS = ("run", "trial", "step", "batch", "case_id", "suite", "metric", "value")


def check_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` naming the columns of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: results table lacks columns {missing}")


def trial_config(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, trial) with its configuration columns."""
    cols = [c for c in CONFIG_COLUMNS if c in df.columns]
    return df.groupby(["run", "trial"], dropna=False, sort=False)[cols].first().reset_index()


def ensure_metric_columns(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """``table`` with a NaN column for every metric of ``metrics`` it lacks."""
    missing = [m for m in metrics if m not in table.columns]
    return table.assign(**{m: np.nan for m in missing}) if missing else table


def groups(df: pd.DataFrame, by: Sequence[str]):
    """Iterate ``(key_dict, frame)`` over the groups of ``by`` (one group when empty)."""
    by = list(by)
    if not by:
        yield {}, df
        return
    for key, g in df.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield dict(zip(by, key)), g


def attach_subjects(df: pd.DataFrame, subjects: Mapping[str, str] | pd.Series | pd.DataFrame
                    ) -> pd.DataFrame:
    """``df`` with a ``subject`` column looked up by ``case_id``.

    Example: ``attach_subjects(df, {"0": "Paris", "1": "Paris", "2": "Rome"})``; a
    DataFrame needs ``case_id`` and ``subject`` columns (e.g. the run's ``edits.jsonl``).
    Rows without a known subject (health rows, unknown cases) get NaN.
    """
    if isinstance(subjects, pd.DataFrame):
        check_columns(subjects, ("case_id", "subject"), "attach_subjects")
        subjects = dict(zip(subjects["case_id"].astype(str), subjects["subject"]))
    mapping = {str(k): v for k, v in dict(subjects).items()}
    return df.assign(subject=df["case_id"].astype(str).map(mapping))


def case_units(table: pd.DataFrame, unit: str = "subject") -> tuple[np.ndarray, str]:
    """The resampling unit of each row of a per-case table and its name.

    Example: ``labels, name = case_units(case_table(df))``. ``unit="subject"`` uses the
    ``subject`` column where known (``name == "subject"``) and falls back to the case id
    when no row has one (``name == "case"``); ``unit="case"`` always uses the case id.
    A case keeps its label across trials, so all its trials are resampled together.
    """
    if unit not in ("subject", "case"):
        raise ValueError(f"unit={unit!r}: expected 'subject' or 'case'")
    cases = "case:" + table["case_id"].astype(str)
    if unit == "subject" and "subject" in table.columns and table["subject"].notna().any():
        labels = ("subject:" + table["subject"].astype(str)).where(table["subject"].notna(),
                                                                     cases)
        return labels.to_numpy(), "subject"
    return cases.to_numpy(), "case"


def _case_subjects(df: pd.DataFrame) -> pd.DataFrame | None:
    if "subject" not in df.columns:
        return None
    known = df.loc[df["subject"].notna(), ["case_id", "subject"]]
    return known.drop_duplicates("case_id")


def case_scores(df: pd.DataFrame, *, when: str = "immediate",
                metrics: Sequence[str] | None = None, suite: str = "probability") -> pd.DataFrame:
    """Per-case scores as a wide table: ``CASE_KEYS`` (+ ``step`` when ``when="all"``),
    the configuration columns, ``subject`` when known, and one column per metric (in [0, 1]).

    Example: ``case_scores(df)[["editor", "case_id", "ES", "PS", "NS"]]``.
    Rows of the unedited model (``step == -1``) are not cases of an edit and are left out.
    """
    check_columns(df, _MIN_COLUMNS, "case_scores")
    if when not in _WHEN:
        raise ValueError(f"when={when!r}: expected one of {list(_WHEN)}")
    rows = df[(df["suite"] == suite) & (df["step"] >= 0)]
    if metrics is not None:
        rows = rows[rows["metric"].isin(list(metrics))]
    keys = list(CASE_KEYS)
    if when == "immediate":
        rows = rows[rows["step"] == rows["batch"]]
    elif when == "final":
        last = rows.groupby(["run", "trial", "case_id", "metric"], dropna=False)["step"].transform("max")
        rows = rows[rows["step"] == last]
    else:
        keys.append("step")
    wanted = list(metrics) if metrics is not None else []
    if rows.empty:
        cols = [*keys, *[c for c in CONFIG_COLUMNS if c in df.columns], *wanted]
        return pd.DataFrame({c: pd.Series(dtype=df[c].dtype if c in df.columns else "float64")
                             for c in cols})
    wide = rows.groupby([*keys, "metric"], dropna=False)["value"].mean().unstack("metric")
    wide.columns.name = None
    wide = wide.reset_index()
    for m in wanted:  # a metric never measured is a column of NaN, not a KeyError later
        if m not in wide.columns:
            wide[m] = np.nan
    out = wide.merge(trial_config(df), on=["run", "trial"], how="left")
    subjects = _case_subjects(df)
    if subjects is not None:
        out = out.merge(subjects, on="case_id", how="left")
    return out


def case_measures(df: pd.DataFrame) -> pd.DataFrame:
    """Per-case correlation measures (suite ``correlation``) as a wide table keyed by
    ``(run, trial, case_id)``: ``max_sim:<embedding>``, ``mean_sim:<embedding>``,
    ``same_subject_in_batch``. Raises ``ValueError`` if a case carries two different
    values for one measure."""
    check_columns(df, _MIN_COLUMNS, "case_measures")
    rows = df[df["suite"] == "correlation"]
    keys = ["run", "trial", "case_id"]
    if rows.empty:
        return pd.DataFrame({k: pd.Series(dtype=df[k].dtype) for k in keys})
    grouped = rows.groupby([*keys, "metric"], dropna=False)["value"]
    distinct = grouped.nunique(dropna=False)
    if (distinct > 1).any():
        (run, trial, case, metric), k = next(iter(distinct[distinct > 1].items()))
        raise ValueError(f"correlation rows disagree: run {run!r} trial {trial!r} case {case!r} "
                         f"measure {metric!r} has {k} different values")
    wide = grouped.first().unstack("metric")
    wide.columns.name = None
    return wide.reset_index()


def case_table(df: pd.DataFrame, *, when: str = "immediate",
               metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`case_scores` joined with :func:`case_measures` (one row per case)."""
    scores = case_scores(df, when=when, metrics=metrics)
    measures = case_measures(df)
    return scores.merge(measures, on=["run", "trial", "case_id"], how="left")


def correlation_measures(df: pd.DataFrame, prefix: str = "max_sim:") -> list[str]:
    """Names of the correlation measures starting with ``prefix`` that have at least
    one non-NaN value, sorted (e.g. ``['max_sim:minilm', 'max_sim:tfidf']``)."""
    rows = df[(df["suite"] == "correlation") & df["metric"].str.startswith(prefix).fillna(False)
              & df["value"].notna()]
    return sorted(str(m) for m in rows["metric"].unique())


def has_retention(df: pd.DataFrame) -> bool:
    """True when some case was scored after a later batch was applied (a sequential run)."""
    rows = df[(df["suite"] == "probability") & (df["batch"] >= 0)]
    return bool((rows["step"] > rows["batch"]).any())


def harmonic_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Harmonic mean along ``axis``: 0 when any value is 0, NaN when any is NaN.

    Example: ``harmonic_mean(np.array([100., 50., 100.]))`` -> ``75.0``.
    """
    a = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore"):
        inv = 1.0 / a
    return a.shape[axis] / inv.sum(axis=axis)


def with_s(means: np.ndarray) -> np.ndarray:
    """``means`` (last axis: ES, PS, NS) with S, their harmonic mean, appended."""
    return np.concatenate([means, harmonic_mean(means, axis=-1)[..., None]], axis=-1)


def read_edit_subjects(path: str | os.PathLike[str]) -> pd.DataFrame:
    """``case_id`` and ``subject`` of every edit in an ``edits.jsonl`` (a run's inputs).

    Example: ``attach_subjects(df, read_edit_subjects("runs/demo/edits.jsonl"))``.
    Lines without a subject are left out.
    """
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                if rec.get("subject") is not None and rec.get("case_id") is not None:
                    records.append((str(rec["case_id"]), str(rec["subject"])))
    return pd.DataFrame(records, columns=["case_id", "subject"])
