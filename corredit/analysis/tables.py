"""Score tables with cluster-bootstrap intervals: summaries, scores per group, per bin of a
correlation measure, retention curves, model health.

Usage::

    from corredit.analysis.tables import summary_table, grouped_scores, binned_scores
    summary_table(df)                                  # ES/PS/NS/S x100 per editor x scheduler x batch size
    grouped_scores(df, by=("editor", "scheduler"))     # means x100 with 95% intervals
    binned_scores(df, "max_sim:minilm", n_bins=5)      # scores per similarity bin

Every interval resamples whole units (subjects when the results carry them, else cases;
see :func:`corredit.analysis.cases.case_units`) within the group it describes, so one edit
measured in several trials counts once. Columns ``n`` (cases), ``n_units`` and ``unit``
say how many independent units stand behind each interval. Scores are x100 (points).
"""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from corredit.analysis.bootstrap import bootstrap_ci
from corredit.analysis.cases import (
    CASE_KEYS,
    SCORE_METRICS,
    case_scores,
    case_table,
    case_units,
    ensure_metric_columns,
    groups,
    harmonic_mean,
    trial_config,
)
from corredit.results import CONFIG_COLUMNS

__all__ = [
    "bin_edges",
    "summary_keys",
    "summary_table",
    "suite_table",
    "grouped_scores",
    "binned_scores",
    "retention_curve",
    "health_table",
]

log = logging.getLogger(__name__)
_BASE_KEYS = ("editor", "scheduler", "batch_size")


def bin_edges(values: Iterable[float], n_bins: int = 5, *, binning: str = "quantile") -> np.ndarray:
    """Bin edges over ``values`` (NaNs ignored): equal-count (``"quantile"``) or
    equal-width (``"uniform"``); repeated quantiles are merged, so fewer bins may result.

    Example: ``bin_edges([0, 1, 2, 3], 2)`` -> ``array([0. , 1.5, 3. ])``.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise ValueError("bin_edges: no non-NaN values to bin")
    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins}: expected at least 1")
    if binning == "quantile":
        edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)))
    elif binning == "uniform":
        edges = np.unique(np.linspace(x.min(), x.max(), n_bins + 1))
    else:
        raise ValueError(f"binning={binning!r}: expected 'quantile' or 'uniform'")
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    return edges


def _assign_bins(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value: bins are [e_i, e_i+1), the last one closed."""
    return np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)


def _interval(g: pd.DataFrame, column: str, unit: str, n_boot: int, ci: float,
              seed: int) -> dict:
    """Mean x100 of ``g[column]`` with its cluster-bootstrap interval and unit counts."""
    vals = g[column].to_numpy(float) * 100.0
    labels, name = case_units(g, unit)
    mean, lo, hi = bootstrap_ci(vals, labels, n_boot=n_boot, ci=ci, seed=seed)
    ok = ~np.isnan(vals)
    return {"mean": mean, "lo": lo, "hi": hi, "n": int(ok.sum()),
            "n_units": int(len(set(labels[ok]))), "unit": name}


def summary_keys(table: pd.DataFrame) -> list[str]:
    """The grouping of the report's tables: model, dataset and mode when ``table`` holds
    more than one of them, then editor, scheduler, batch size."""
    vary = [c for c in ("model", "dataset", "mode")
            if c in table.columns and table[c].nunique(dropna=False) > 1]
    return [*vary, *_BASE_KEYS]


def suite_table(df: pd.DataFrame, suite: str, *, when: str = "final") -> pd.DataFrame:
    """Mean of every metric of ``suite`` (e.g. ``"teacher_forced"``, ``"zsre"``) per
    group of :func:`summary_keys`, values as stored (not rescaled), with ``n`` cases.

    Example: ``suite_table(df, "zsre")``; empty when the suite has no rows.
    """
    t = case_scores(df, when=when, suite=suite)
    if t.empty:
        return pd.DataFrame()
    metrics = sorted(c for c in t.columns
                     if c not in (*CASE_KEYS, "step", "subject", *CONFIG_COLUMNS))
    by = summary_keys(t)
    grouped = t.groupby(by, dropna=False, sort=True)
    out = grouped[metrics].mean()
    out.insert(0, "n", grouped.size())
    return out.reset_index()


def summary_table(df: pd.DataFrame, *, when: str = "final") -> pd.DataFrame:
    """ES / PS / NS / S x100 and the number of cases ``n`` per editor x scheduler x batch
    size (plus model / dataset / mode when the table holds more than one).

    Example: ``summary_table(df).round(1)``. Seeds are pooled. S is the harmonic mean of
    the row's ES, PS and NS. ``when`` as in :func:`case_scores` (default: after all edits).
    """
    t = ensure_metric_columns(case_scores(df, when=when, metrics=SCORE_METRICS), SCORE_METRICS)
    if t.empty:
        return pd.DataFrame({c: [] for c in [*_BASE_KEYS, "n", *SCORE_METRICS, "S"]})
    by = summary_keys(t)
    grouped = t.groupby(by, dropna=False, sort=True)
    out = grouped[list(SCORE_METRICS)].mean() * 100.0
    out.insert(0, "n", grouped.size())
    out["S"] = harmonic_mean(out[list(SCORE_METRICS)].to_numpy(), axis=1)
    return out.reset_index()


def grouped_scores(df: pd.DataFrame, *, metrics: Sequence[str] = SCORE_METRICS,
                   by: Sequence[str] = ("batch_size", "editor", "scheduler"),
                   when: str = "final", unit: str = "subject", n_boot: int = 1000,
                   ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Long table of mean scores x100 with cluster-bootstrap intervals per group and
    metric: columns ``*by, metric, mean, lo, hi, n, n_units, unit``.

    Example: ``grouped_scores(df, by=("editor", "scheduler"))`` (the scheduler comparison).
    Units are resampled within each group.
    """
    t = ensure_metric_columns(case_scores(df, when=when, metrics=metrics), metrics)
    records = [{**key, "metric": m, **_interval(g, m, unit, n_boot, ci, seed)}
               for key, g in groups(t, by) for m in metrics]
    return pd.DataFrame(records, columns=[*by, "metric", "mean", "lo", "hi", "n", "n_units",
                                          "unit"])


def binned_scores(df: pd.DataFrame, measure: str, *, metrics: Sequence[str] = SCORE_METRICS,
                  by: Sequence[str] = ("editor",), n_bins: int = 5, binning: str = "quantile",
                  when: str = "immediate", unit: str = "subject", n_boot: int = 1000,
                  ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Scores x100 against a within-batch correlation measure, in bins of that measure.

    Example: ``binned_scores(df, "max_sim:minilm", n_bins=4)`` -> columns ``*by, metric,
    bin, bin_low, bin_high, x, n, n_units, unit, mean, lo, hi`` where ``x`` is the mean of
    the measure over the bin's cases and ``[lo, hi]`` a cluster-bootstrap interval of
    ``mean`` (units resampled within the bin). Bin edges are computed once over all cases.
    Cases whose measure is NaN (batch size 1) are left out.
    """
    t = case_table(df, when=when, metrics=metrics)
    if measure not in t.columns:
        present = sorted(c for c in t.columns if ":" in c or c == "same_subject_in_batch")
        raise ValueError(f"no correlation rows for measure {measure!r}; measures present: {present}")
    valid = t[t[measure].notna()].copy()
    if valid.empty:
        raise ValueError(f"measure {measure!r} is NaN for every case (a batch of size 1 has "
                         "no within-batch correlation)")
    if len(t) > len(valid):
        log.info("binned_scores: %d of %d cases have no %s value and are not binned",
                 len(t) - len(valid), len(t), measure)
    valid = ensure_metric_columns(valid, metrics)
    edges = bin_edges(valid[measure], n_bins, binning=binning)
    valid["bin"] = _assign_bins(valid[measure].to_numpy(float), edges)
    records = []
    for key, g in groups(valid, [*by, "bin"]):
        b = int(key["bin"])
        for m in metrics:
            records.append({**key, "metric": m, "bin_low": float(edges[b]),
                            "bin_high": float(edges[b + 1]), "x": float(g[measure].mean()),
                            **_interval(g, m, unit, n_boot, ci, seed)})
    cols = [*by, "metric", "bin", "bin_low", "bin_high", "x", "n", "n_units", "unit", "mean",
            "lo", "hi"]
    return pd.DataFrame(records, columns=cols).sort_values([*by, "metric", "bin"],
                                                           ignore_index=True)


def retention_curve(df: pd.DataFrame, *, metric: str = "ES",
                    by: Sequence[str] = ("editor", "scheduler", "batch_size"),
                    max_points: int = 12, unit: str = "subject", n_boot: int = 200,
                    ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Score x100 of earlier edits against their age (``step - batch``) in sequential
    trials: columns ``*by, age, n, n_units, unit, mean, lo, hi``.

    Example: ``retention_curve(df)`` — age 0 is the score right after the edit. When a
    group has more than ``max_points`` distinct ages they are pooled into that many
    equal-width age bins and ``age`` is the mean age of each bin. Intervals resample
    units within each group and age. Raises ``ValueError`` without sequential trials.
    """
    t = ensure_metric_columns(case_scores(df, when="all", metrics=[metric]), [metric])
    t = t[t["step"] >= t["batch"]].assign(age=lambda d: d["step"] - d["batch"])
    later = t.loc[t["age"] > 0, ["run", "trial"]].drop_duplicates()
    if later.empty:
        raise ValueError("no case was scored after a later batch was applied (the results "
                         "hold no sequential trial), so there is no retention curve")
    t = t.merge(later, on=["run", "trial"], how="inner")
    records = []
    for key, g in groups(t, by):
        ages = g["age"].to_numpy(float)
        if len(np.unique(ages)) > max_points:
            edges = np.linspace(ages.min(), ages.max() + 1.0, max_points + 1)
            slot = _assign_bins(ages, edges)
        else:
            slot = ages
        for s in np.unique(slot):
            sel = slot == s
            records.append({**key, "age": float(ages[sel].mean()),
                            **_interval(g[sel], metric, unit, n_boot, ci, seed)})
    return pd.DataFrame(records, columns=[*by, "age", "n", "n_units", "unit", "mean", "lo",
                                          "hi"])


def health_table(df: pd.DataFrame, *, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Model health per group (means over its trials): perplexity before any edit
    (step -1), at the trial's last step and its maximum over steps, and the largest
    norm growth ``||W_edited|| / ||W_orig||`` of any edited matrix at any step.

    Example: ``health_table(df)`` -> columns ``*by, trials, perplexity_before,
    perplexity_after, perplexity_max, norm_growth_max``; empty without health rows.
    ``by`` defaults to :func:`summary_keys`.
    """
    rows = df[df["suite"] == "health"]
    by = list(summary_keys(rows) if by is None else by)
    cols = [*by, "trials", "perplexity_before", "perplexity_after", "perplexity_max",
            "norm_growth_max"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    per_trial = []
    for (run, trial), g in rows.groupby(["run", "trial"], dropna=False, sort=True):
        ppl = g[g["metric"] == "perplexity"]
        after = ppl[ppl["step"] >= 0]
        norm = g[(g["metric"] == "norm_growth") & (g["step"] >= 0)]
        per_trial.append({
            "run": run, "trial": trial,
            "perplexity_before": ppl.loc[ppl["step"] < 0, "value"].mean(),
            "perplexity_after": (after.loc[after["step"] == after["step"].max(), "value"].mean()
                                 if len(after) else np.nan),
            "perplexity_max": after["value"].max() if len(after) else np.nan,
            "norm_growth_max": norm["value"].max() if len(norm) else np.nan,
        })
    t = pd.DataFrame(per_trial).merge(trial_config(df), on=["run", "trial"], how="left")
    grouped = t.groupby(list(by), dropna=False, sort=True)
    out = grouped[["perplexity_before", "perplexity_after", "perplexity_max",
                   "norm_growth_max"]].mean()
    out.insert(0, "trials", grouped.size())
    return out.reset_index()[cols]
