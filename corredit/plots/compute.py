"""Numbers behind the figures and the report, as pure functions of the tidy results table.

Usage::

    from corredit.plots.compute import summary_table, binned_scores, score_difference
    df = RunFolder("runs/demo").read_results()
    summary_table(df)                              # ES/PS/NS/S x100 per editor x scheduler x batch size
    binned_scores(df, "max_sim:minilm", n_bins=5)  # ES/PS/NS x100 per similarity bin, bootstrap CIs
    score_difference(df)                           # same-subject minus lone-subject scores, per editor
    interference_auc(df)                           # ROC-AUC of max similarity for predicting ES == 0

Conventions (see the row conventions in ``corredit.results``):

* A *case* is one edit request inside one trial: the key ``(run, trial, case_id, batch)``.
  Per case, a probability metric is the mean over that case's prompts of the metric
  (ES on the rewrite prompt, PS over paraphrases, NS over neighbours).
* ``when`` picks the measurement of each case: ``"immediate"`` = right after its own batch
  was applied (``step == batch``; what within-batch interference is about), ``"final"`` =
  the last step at which the case was measured (after every edit of a sequential run; in
  mode ``batch`` the same as immediate), ``"all"`` = every step (retention).
* Scores are reported x100 (points), as in the literature. Score Difference is in points.
  ROC-AUC is in [0, 1].
* Confidence intervals are percentile bootstraps over cases, seeded (same seed, same
  interval). NaN values mean "not measured" (e.g. ``max_sim`` with batch size 1) and are
  left out of means and counts, never treated as zero.
"""

from __future__ import annotations

import logging
import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from corredit.results import CONFIG_COLUMNS

__all__ = [
    "CASE_KEYS",
    "SCORE_METRICS",
    "case_scores",
    "case_measures",
    "case_table",
    "correlation_measures",
    "has_retention",
    "bootstrap_ci",
    "harmonic_mean",
    "bin_edges",
    "summary_keys",
    "summary_table",
    "suite_table",
    "grouped_scores",
    "binned_scores",
    "retention_curve",
    "score_difference",
    "interference_auc",
    "interference_roc_curve",
    "health_table",
]

log = logging.getLogger(__name__)

#: The columns that identify one edit case inside a results table.
CASE_KEYS: tuple[str, ...] = ("run", "trial", "case_id", "batch")
#: The three headline probability scores; S is their harmonic mean.
SCORE_METRICS: tuple[str, ...] = ("ES", "PS", "NS")
_WHEN = ("immediate", "final", "all")
_MIN_COLUMNS = ("run", "trial", "step", "batch", "case_id", "suite", "metric", "value")


def _check_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: results table lacks columns {missing}")


def _trial_config(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, trial) with its configuration columns."""
    cols = [c for c in CONFIG_COLUMNS if c in df.columns]
    return df.groupby(["run", "trial"], dropna=False, sort=False)[cols].first().reset_index()


def case_scores(df: pd.DataFrame, *, when: str = "immediate",
                metrics: Sequence[str] | None = None, suite: str = "probability") -> pd.DataFrame:
    """Per-case scores as a wide table: ``CASE_KEYS`` (+ ``step`` when ``when="all"``),
    the configuration columns, and one column per metric (value in [0, 1]).

    Example: ``case_scores(df)[["editor", "case_id", "ES", "PS", "NS"]]``.
    Rows of the unedited model (``step == -1``) are not cases of an edit and are left out.
    """
    _check_columns(df, _MIN_COLUMNS, "case_scores")
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
    return wide.merge(_trial_config(df), on=["run", "trial"], how="left")


def case_measures(df: pd.DataFrame) -> pd.DataFrame:
    """Per-case correlation measures (suite ``correlation``) as a wide table keyed by
    ``(run, trial, case_id)``: ``max_sim:<embedding>``, ``mean_sim:<embedding>``,
    ``same_subject_in_batch``. Raises ``ValueError`` if a case carries two different
    values for one measure."""
    _check_columns(df, _MIN_COLUMNS, "case_measures")
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


# -- statistics ------------------------------------------------------------------------

def _resample_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the column means of ``x`` (shape ``(n, k)``), NaN-aware:
    shape ``(n_boot, k)``. Drawn in chunks so memory stays bounded."""
    n, k = x.shape
    chunk = max(1, 2_000_000 // max(1, n * k))
    out = np.empty((n_boot, k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column in a replicate
        for start in range(0, n_boot, chunk):
            m = min(chunk, n_boot - start)
            idx = rng.integers(0, n, size=(m, n))
            out[start:start + m] = np.nanmean(x[idx], axis=1)
    return out


def _percentiles(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - ci) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(samples, [alpha, 1.0 - alpha], axis=0)
    return lo, hi


def bootstrap_ci(values: Iterable[float], *, n_boot: int = 1000, ci: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of ``values``: ``(mean, lo, hi)``.

    Example: ``bootstrap_ci([0, 1, 1, 1], seed=0)`` -> ``(0.75, 0.25, 1.0)``.
    NaNs are left out; no values gives NaNs, one value gives a zero-width interval.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci={ci}: expected a level in (0, 1)")
    x = np.asarray(list(values) if not isinstance(values, (np.ndarray, pd.Series)) else values,
                   dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (float("nan"),) * 3
    mean = float(x.mean())
    if x.size == 1 or n_boot <= 0:
        return mean, mean, mean
    reps = _resample_means(x[:, None], n_boot, np.random.default_rng(seed))[:, 0]
    lo, hi = _percentiles(reps, ci)
    return mean, float(lo), float(hi)


def harmonic_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Harmonic mean along ``axis``: 0 when any value is 0, NaN when any is NaN.

    Example: ``harmonic_mean(np.array([100., 50., 100.]))`` -> ``75.0``.
    """
    a = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore"):
        inv = 1.0 / a
    return a.shape[axis] / inv.sum(axis=axis)


def _with_s(means: np.ndarray) -> np.ndarray:
    """Append S (harmonic mean of the last axis: ES, PS, NS) to ``means``."""
    return np.concatenate([means, harmonic_mean(means, axis=-1)[..., None]], axis=-1)


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


def _groups(df: pd.DataFrame, by: Sequence[str]):
    """Iterate ``(key_dict, frame)`` over the groups of ``by`` (one group when empty)."""
    by = list(by)
    if not by:
        yield {}, df
        return
    for key, g in df.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield dict(zip(by, key)), g


def _ensure_metric_columns(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        table = table.assign(**{m: np.nan for m in missing})
    return table


# -- tables ------------------------------------------------------------------------------

_BASE_KEYS = ("editor", "scheduler", "batch_size")


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
                     if c not in (*CASE_KEYS, "step", *CONFIG_COLUMNS))
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
    t = _ensure_metric_columns(case_scores(df, when=when, metrics=SCORE_METRICS), SCORE_METRICS)
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
                   when: str = "final", n_boot: int = 1000, ci: float = 0.95,
                   seed: int = 0) -> pd.DataFrame:
    """Long table of mean scores x100 with bootstrap CIs per group and metric:
    columns ``*by, metric, mean, lo, hi, n``.

    Example: ``grouped_scores(df, by=("editor", "scheduler"))`` (the scheduler comparison).
    """
    t = _ensure_metric_columns(case_scores(df, when=when, metrics=metrics), metrics)
    records = []
    for key, g in _groups(t, by):
        for m in metrics:
            vals = g[m].to_numpy(float) * 100.0
            mean, lo, hi = bootstrap_ci(vals, n_boot=n_boot, ci=ci, seed=seed)
            records.append({**key, "metric": m, "mean": mean, "lo": lo, "hi": hi,
                            "n": int(np.sum(~np.isnan(vals)))})
    return pd.DataFrame(records, columns=[*by, "metric", "mean", "lo", "hi", "n"])


def binned_scores(df: pd.DataFrame, measure: str, *, metrics: Sequence[str] = SCORE_METRICS,
                  by: Sequence[str] = ("editor",), n_bins: int = 5, binning: str = "quantile",
                  when: str = "immediate", n_boot: int = 1000, ci: float = 0.95,
                  seed: int = 0) -> pd.DataFrame:
    """Scores x100 against a within-batch correlation measure, in bins of that measure.

    Example: ``binned_scores(df, "max_sim:minilm", n_bins=4)`` -> columns ``*by, metric,
    bin, bin_low, bin_high, x, n, mean, lo, hi`` where ``x`` is the mean of the measure
    over the bin's cases and ``[lo, hi]`` a bootstrap CI of ``mean``. Bin edges are
    computed once over all cases (every group shares them). Cases whose measure is NaN
    (batch size 1) are left out.
    """
    t = case_table(df, when=when, metrics=metrics)
    if measure not in t.columns:
        present = sorted(c for c in t.columns if ":" in c or c == "same_subject_in_batch")
        raise ValueError(f"no correlation rows for measure {measure!r}; measures present: {present}")
    valid = t[t[measure].notna()].copy()
    if valid.empty:
        raise ValueError(f"measure {measure!r} is NaN for every case (a batch of size 1 has "
                         "no within-batch correlation)")
    dropped = len(t) - len(valid)
    if dropped:
        log.info("binned_scores: %d of %d cases have no %s value and are not binned",
                 dropped, len(t), measure)
    valid = _ensure_metric_columns(valid, metrics)
    edges = bin_edges(valid[measure], n_bins, binning=binning)
    valid["bin"] = _assign_bins(valid[measure].to_numpy(float), edges)
    records = []
    for key, g in _groups(valid, [*by, "bin"]):
        b = int(key["bin"])
        for m in metrics:
            vals = g[m].to_numpy(float) * 100.0
            mean, lo, hi = bootstrap_ci(vals, n_boot=n_boot, ci=ci, seed=seed)
            records.append({**key, "metric": m, "bin_low": float(edges[b]),
                            "bin_high": float(edges[b + 1]), "x": float(g[measure].mean()),
                            "n": int(np.sum(~np.isnan(vals))), "mean": mean, "lo": lo, "hi": hi})
    cols = [*by, "metric", "bin", "bin_low", "bin_high", "x", "n", "mean", "lo", "hi"]
    return pd.DataFrame(records, columns=cols).sort_values([*by, "metric", "bin"],
                                                           ignore_index=True)


def retention_curve(df: pd.DataFrame, *, metric: str = "ES",
                    by: Sequence[str] = ("editor", "scheduler", "batch_size"),
                    max_points: int = 12, n_boot: int = 200, ci: float = 0.95,
                    seed: int = 0) -> pd.DataFrame:
    """Score x100 of earlier edits against their age (``step - batch``) in sequential
    trials: columns ``*by, age, n, mean, lo, hi``.

    Example: ``retention_curve(df)`` — age 0 is the score right after the edit. When a
    group has more than ``max_points`` distinct ages they are pooled into that many
    equal-width age bins and ``age`` is the mean age of each bin. Only trials in which
    some case was re-scored later take part; raises ``ValueError`` when there are none.
    """
    t = case_scores(df, when="all", metrics=[metric])
    t = _ensure_metric_columns(t, [metric])
    t = t[t["step"] >= t["batch"]].assign(age=lambda d: d["step"] - d["batch"])
    later = t.loc[t["age"] > 0, ["run", "trial"]].drop_duplicates()
    if later.empty:
        raise ValueError("no case was scored after a later batch was applied (the results "
                         "hold no sequential trial), so there is no retention curve")
    t = t.merge(later, on=["run", "trial"], how="inner")
    records = []
    for key, g in _groups(t, by):
        ages = g["age"].to_numpy(float)
        if len(np.unique(ages)) > max_points:
            edges = np.linspace(ages.min(), ages.max() + 1.0, max_points + 1)
            slot = _assign_bins(ages, edges)
        else:
            slot = ages
        for s in np.unique(slot):
            sel = slot == s
            vals = g[metric].to_numpy(float)[sel] * 100.0
            mean, lo, hi = bootstrap_ci(vals, n_boot=n_boot, ci=ci, seed=seed)
            records.append({**key, "age": float(ages[sel].mean()),
                            "n": int(np.sum(~np.isnan(vals))), "mean": mean, "lo": lo, "hi": hi})
    return pd.DataFrame(records, columns=[*by, "age", "n", "mean", "lo", "hi"])


def score_difference(df: pd.DataFrame, *, by: Sequence[str] = ("editor",),
                     metrics: Sequence[str] = ("ES", "PS", "NS", "S"), when: str = "immediate",
                     n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Score Difference: mean score x100 of edits whose subject has other edits in the same
    batch (``same_subject_in_batch > 0``) minus that of edits whose subject has none.

    Example: ``score_difference(df)`` -> columns ``*by, metric, shared, alone, diff, lo,
    hi, n_shared, n_alone, note``; ``[lo, hi]`` is a bootstrap CI of ``diff`` (both groups
    resampled independently). S is the harmonic mean of the group's ES, PS, NS means.
    Negative = edits sharing a subject do worse. A group with no case on one side gets
    NaN and a ``note``.
    """
    unknown = [m for m in metrics if m not in (*SCORE_METRICS, "S")]
    if unknown:
        raise ValueError(f"score_difference: unknown metrics {unknown}; expected ES, PS, NS, S")
    t = case_table(df, when=when, metrics=SCORE_METRICS)
    if "same_subject_in_batch" not in t.columns:
        raise ValueError("no 'same_subject_in_batch' correlation rows in the results, so "
                         "edits sharing a subject cannot be told apart")
    t = _ensure_metric_columns(t[t["same_subject_in_batch"].notna()], SCORE_METRICS)
    order = [*SCORE_METRICS, "S"]
    records = []
    for key, g in _groups(t, by):
        shared_mask = (g["same_subject_in_batch"] > 0).to_numpy()
        x = g[list(SCORE_METRICS)].to_numpy(float) * 100.0
        shared, alone = x[shared_mask], x[~shared_mask]
        note = ""
        if len(shared) == 0 or len(alone) == 0:
            note = ("no edit shares its subject with another edit of its batch" if len(shared) == 0
                    else "every edit shares its subject with another edit of its batch")
            point_s = point_a = np.full(4, np.nan)
            lo = hi = np.full(4, np.nan)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                point_s = _with_s(np.nanmean(shared, axis=0))
                point_a = _with_s(np.nanmean(alone, axis=0))
            if n_boot > 0:
                rng = np.random.default_rng(seed)
                reps = (_with_s(_resample_means(shared, n_boot, rng))
                        - _with_s(_resample_means(alone, n_boot, rng)))
                lo, hi = _percentiles(reps, ci)
            else:
                lo = hi = np.full(4, np.nan)
        for m in metrics:
            i = order.index(m)
            records.append({**key, "metric": m, "shared": point_s[i], "alone": point_a[i],
                            "diff": point_s[i] - point_a[i], "lo": lo[i], "hi": hi[i],
                            "n_shared": len(shared), "n_alone": len(alone), "note": note})
    cols = [*by, "metric", "shared", "alone", "diff", "lo", "hi", "n_shared", "n_alone", "note"]
    return pd.DataFrame(records, columns=cols)


def _interference_groups(df: pd.DataFrame, measures: Sequence[str] | None, by: Sequence[str],
                         when: str, fail_below: float):
    """Yield ``(key, measure, failed, score, note)`` per group and measure."""
    t = _ensure_metric_columns(case_table(df, when=when, metrics=["ES"]), ["ES"])
    if measures is None:
        measures = sorted(c for c in t.columns if str(c).startswith("max_sim:"))
        if not measures:
            raise ValueError("no 'max_sim:<embedding>' correlation rows in the results")
    for m in measures:
        if m not in t.columns:
            raise ValueError(f"no correlation rows for measure {m!r}")
    for key, g in _groups(t, by):
        for m in measures:
            sub = g[g[m].notna() & g["ES"].notna()]
            failed = (sub["ES"].to_numpy(float) < fail_below)
            score = sub[m].to_numpy(float)
            note = ""
            if len(sub) == 0:
                note = f"no case has both ES and {m} (batch size 1 has no within-batch similarity)"
            elif failed.all() or not failed.any():
                state = "failed" if failed.all() else "succeeded"
                note = (f"only one class: all {len(sub)} edits {state}, so ROC-AUC is "
                        "undefined")
            yield key, m, failed, score, note


def interference_auc(df: pd.DataFrame, *, measures: Sequence[str] | None = None,
                     by: Sequence[str] = ("editor",), when: str = "immediate",
                     fail_below: float = 0.5) -> pd.DataFrame:
    """ROC-AUC of each ``max_sim:<embedding>`` measure for predicting that an edit fails
    (ES < ``fail_below``, i.e. ES == 0 for the 0/1 efficacy score).

    Example: ``interference_auc(df)`` -> columns ``*by, measure, embedding, auc, n,
    n_failed, note``. AUC > 0.5: edits more similar to the rest of their batch fail more
    often. A group with only one class gets ``auc = NaN`` and a ``note`` saying why.
    """
    from sklearn.metrics import roc_auc_score

    records = []
    for key, m, failed, score, note in _interference_groups(df, measures, by, when, fail_below):
        auc = float("nan") if note else float(roc_auc_score(failed, score))
        if note:
            log.info("interference_auc %s %s: %s", key, m, note)
        records.append({**key, "measure": m, "embedding": m.split(":", 1)[-1], "auc": auc,
                        "n": len(score), "n_failed": int(failed.sum()), "note": note})
    cols = [*by, "measure", "embedding", "auc", "n", "n_failed", "note"]
    return pd.DataFrame(records, columns=cols)


def interference_roc_curve(df: pd.DataFrame, *, measures: Sequence[str] | None = None,
                           by: Sequence[str] = ("editor",), when: str = "immediate",
                           fail_below: float = 0.5) -> pd.DataFrame:
    """ROC curve points of the interference prediction of :func:`interference_auc`:
    columns ``*by, measure, embedding, fpr, tpr, threshold, auc``. Groups with a single
    class have no curve (logged; :func:`interference_auc` carries the reason)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    frames = []
    for key, m, failed, score, note in _interference_groups(df, measures, by, when, fail_below):
        if note:
            log.info("interference_roc_curve %s %s: %s", key, m, note)
            continue
        fpr, tpr, thr = roc_curve(failed, score)
        frames.append(pd.DataFrame({**{k: [v] * len(fpr) for k, v in key.items()},
                                    "measure": m, "embedding": m.split(":", 1)[-1],
                                    "fpr": fpr, "tpr": tpr, "threshold": thr,
                                    "auc": float(roc_auc_score(failed, score))}))
    cols = [*by, "measure", "embedding", "fpr", "tpr", "threshold", "auc"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


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
    t = pd.DataFrame(per_trial).merge(_trial_config(df), on=["run", "trial"], how="left")
    grouped = t.groupby(list(by), dropna=False, sort=True)
    out = grouped[["perplexity_before", "perplexity_after", "perplexity_max",
                   "norm_growth_max"]].mean()
    out.insert(0, "trials", grouped.size())
    return out.reset_index()[cols]
