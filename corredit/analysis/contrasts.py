"""Contrasts that hold up to the design: Score Difference within scheduler x batch size
strata, its curve over the number of related edits, and paired scheduler differences.

Usage::

    from corredit.analysis.contrasts import (score_difference, score_difference_curve,
                                             scheduler_differences)
    score_difference(df)                                   # per editor, within strata
    score_difference(df, by=("editor", "scheduler", "batch_size"))   # per stratum
    score_difference_curve(df)                             # SD at 2, 3-4, 5-8 related edits
    scheduler_differences(df)                              # scheduler - decorrelated, same cases

An edit is *related* when another edit of its subject is in the same batch
(``same_subject_in_batch > 0``). A contrast is computed inside each stratum (the columns of
``STRATA`` not in ``by``: scheduler, batch size, ...) and strata are combined with weights
``n_a n_b / (n_a + n_b)``, so "shares a subject" is never confounded with "was scheduled
by X". Intervals resample units (subjects, else cases) jointly across strata, since every
stratum edits the same cases. Scores x100; differences in points; S is the harmonic mean
of ES, PS, NS inside each stratum.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from corredit.analysis.bootstrap import Resampler, percentile_interval
from corredit.analysis.cases import (
    SCORE_METRICS,
    STRATA,
    case_scores,
    case_table,
    case_units,
    ensure_metric_columns,
    groups,
    with_s,
)

__all__ = ["score_difference", "score_difference_curve", "scheduler_differences",
           "related_bins", "default_reference"]

_ORDER = (*SCORE_METRICS, "S")


def _check_metrics(metrics: Sequence[str], what: str) -> None:
    unknown = [m for m in metrics if m not in _ORDER]
    if unknown:
        raise ValueError(f"{what}: unknown metrics {unknown}; expected ES, PS, NS, S")


def _nanmean(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        ok = ~np.isnan(x)
        return np.where(ok, x, 0.0).sum(axis=0) / ok.sum(axis=0)


def _contrast(g: pd.DataFrame, a: np.ndarray, b: np.ndarray, strata: Sequence[str], unit: str,
              n_boot: int, ci: float, seed: int) -> dict:
    """Group ``a`` minus group ``b`` of ``g`` within strata, combined; see the module."""
    x = ensure_metric_columns(g, SCORE_METRICS)[list(SCORE_METRICS)].to_numpy(float) * 100.0
    labels, name = case_units(g, unit)
    parts = []  # (weight, rows of a, rows of b)
    for _, s in groups(g.assign(_row=np.arange(len(g))), strata):
        rows = s["_row"].to_numpy()
        ra, rb = rows[a[rows]], rows[b[rows]]
        if len(ra) and len(rb):
            parts.append((len(ra) * len(rb) / (len(ra) + len(rb)), ra, rb))
    nan4 = np.full(4, np.nan)
    out = {"a": nan4, "b": nan4, "diff": nan4, "lo": nan4, "hi": nan4, "n_a": 0, "n_b": 0,
           "n_strata": len(parts), "n_units": 0, "unit": name}
    if not parts:
        return out
    w = np.array([p[0] for p in parts])
    point_a = np.array([with_s(_nanmean(x[ra])) for _, ra, _ in parts])
    point_b = np.array([with_s(_nanmean(x[rb])) for _, _, rb in parts])
    out.update(a=w @ point_a / w.sum(), b=w @ point_b / w.sum(),
               n_a=int(sum(len(p[1]) for p in parts)), n_b=int(sum(len(p[2]) for p in parts)))
    out["diff"] = out["a"] - out["b"]
    used = np.unique(np.concatenate([np.concatenate([ra, rb]) for _, ra, rb in parts]))
    out["n_units"] = int(len(set(labels[used])))
    if n_boot <= 0:
        return out
    r = Resampler(labels)
    sums = []
    for _, ra, rb in parts:
        for rows in (ra, rb):
            masked = np.full_like(x, np.nan)
            masked[rows] = x[rows]
            sums.append(r.unit_sums(masked))

    def stat(wt: np.ndarray) -> np.ndarray:
        reps = np.stack([with_s((wt @ s) / (wt @ c)) for s, c in sums])  # (2P, m, 4)
        diffs = reps[0::2] - reps[1::2]                                    # (P, m, 4)
        ok = ~np.isnan(diffs)
        weights = w[:, None, None] * ok
        return (np.where(ok, diffs, 0.0) * weights).sum(0) / weights.sum(0)

    out["lo"], out["hi"] = percentile_interval(r.replicates(stat, n_boot, seed), ci)
    return out


def _strata(t: pd.DataFrame, by: Sequence[str]) -> list[str]:
    return [c for c in STRATA if c in t.columns and c not in by]


def _related_table(df: pd.DataFrame, when: str) -> pd.DataFrame:
    t = case_table(df, when=when, metrics=SCORE_METRICS)
    if "same_subject_in_batch" not in t.columns:
        raise ValueError("no 'same_subject_in_batch' correlation rows in the results, so "
                         "edits sharing a subject cannot be told apart")
    return ensure_metric_columns(t[t["same_subject_in_batch"].notna()], SCORE_METRICS)


def score_difference(df: pd.DataFrame, *, by: Sequence[str] = ("editor",),
                     metrics: Sequence[str] = ("ES", "PS", "NS", "S"), when: str = "immediate",
                     unit: str = "subject", n_boot: int = 1000, ci: float = 0.95,
                     seed: int = 0) -> pd.DataFrame:
    """Score Difference: mean score x100 of related edits minus that of the others,
    within every stratum, combined per group of ``by``.

    Example: ``score_difference(df)`` -> columns ``*by, metric, shared, alone, diff, lo,
    hi, n_shared, n_alone, n_strata, n_units, unit, note``. Negative = edits sharing a
    subject with others in their batch do worse. ``n_strata`` counts the strata holding
    both kinds of edit; a group with none gets NaN and a ``note``.
    """
    _check_metrics(metrics, "score_difference")
    t = _related_table(df, when)
    records = []
    for key, g in groups(t, by):
        shared = (g["same_subject_in_batch"] > 0).to_numpy()
        res = _contrast(g, shared, ~shared, _strata(g, by), unit, n_boot, ci, seed)
        note = ""
        if not shared.any():
            note = "no edit shares its subject with another edit of its batch"
        elif shared.all():
            note = "every edit shares its subject with another edit of its batch"
        elif res["n_strata"] == 0:
            note = "no stratum (scheduler x batch size) holds both kinds of edit"
        for m in metrics:
            i = _ORDER.index(m)
            records.append({**key, "metric": m, "shared": res["a"][i], "alone": res["b"][i],
                            "diff": res["diff"][i], "lo": res["lo"][i], "hi": res["hi"][i],
                            "n_shared": res["n_a"], "n_alone": res["n_b"],
                            "n_strata": res["n_strata"], "n_units": res["n_units"],
                            "unit": res["unit"], "note": note})
    cols = [*by, "metric", "shared", "alone", "diff", "lo", "hi", "n_shared", "n_alone",
            "n_strata", "n_units", "unit", "note"]
    return pd.DataFrame(records, columns=cols)


def related_bins(max_count: int) -> list[tuple[int, int]]:
    """Bins of the number of same-subject edits in a batch (the edit included), doubling:
    ``related_bins(8)`` -> ``[(2, 2), (3, 4), (5, 8)]``."""
    bins, lo = [], 2
    while lo <= max_count:
        hi = 2 if lo == 2 else 2 * (lo - 1)
        bins.append((lo, hi))
        lo = hi + 1
    return bins


def score_difference_curve(df: pd.DataFrame, *, by: Sequence[str] = ("editor",),
                           metrics: Sequence[str] = ("ES", "S"), when: str = "immediate",
                           unit: str = "subject", n_boot: int = 1000, ci: float = 0.95,
                           seed: int = 0) -> pd.DataFrame:
    """Score Difference against the number of related edits: edits whose batch holds
    ``k`` edits of their subject (themselves included; ``k`` binned 2, 3-4, 5-8, ...)
    minus edits alone with their subject (``k == 1``), within strata, combined per group.

    Example: ``score_difference_curve(df, metrics=["ES"])`` -> columns ``*by, related,
    k_low, k_high, k_mean, metric, score, alone, diff, lo, hi, n_related, n_alone,
    n_strata, n_units, unit``; a bin without edits has no row.
    """
    _check_metrics(metrics, "score_difference_curve")
    t = _related_table(df, when)
    k = t["same_subject_in_batch"].to_numpy(float) + 1.0
    records = []
    for lo_k, hi_k in related_bins(int(np.nanmax(k)) if len(k) else 0):
        for key, g in groups(t.assign(_k=k), by):
            gk = g["_k"].to_numpy()
            sel = (gk >= lo_k) & (gk <= hi_k)
            if not sel.any():
                continue
            res = _contrast(g, sel, gk == 1.0, _strata(g, by), unit, n_boot, ci, seed)
            label = str(lo_k) if lo_k == hi_k else f"{lo_k}-{hi_k}"
            for m in metrics:
                i = _ORDER.index(m)
                records.append({**key, "related": label, "k_low": lo_k, "k_high": hi_k,
                                "k_mean": float(gk[sel].mean()), "metric": m,
                                "score": res["a"][i], "alone": res["b"][i],
                                "diff": res["diff"][i], "lo": res["lo"][i], "hi": res["hi"][i],
                                "n_related": res["n_a"], "n_alone": res["n_b"],
                                "n_strata": res["n_strata"], "n_units": res["n_units"],
                                "unit": res["unit"]})
    cols = [*by, "related", "k_low", "k_high", "k_mean", "metric", "score", "alone", "diff",
            "lo", "hi", "n_related", "n_alone", "n_strata", "n_units", "unit"]
    return pd.DataFrame(records, columns=cols)


def default_reference(schedulers: Sequence[str]) -> str:
    """The scheduler others are compared with: ``decorrelated`` when present, else the
    first ``decorrelated*``, else ``random``, else the first in sorted order."""
    names = sorted(str(s) for s in schedulers)
    if not names:
        raise ValueError("no schedulers to compare")
    for pick in (lambda s: s == "decorrelated", lambda s: s.startswith("decorrelated"),
                 lambda s: s == "random"):
        hits = [s for s in names if pick(s)]
        if hits:
            return hits[0]
    return names[0]


def scheduler_differences(df: pd.DataFrame, *, reference: str | None = None,
                          by: Sequence[str] = ("editor", "batch_size"),
                          metrics: Sequence[str] = ("ES", "PS", "NS", "S"),
                          when: str = "final", unit: str = "subject", n_boot: int = 1000,
                          ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Paired scheduler comparison: per group of ``by``, every scheduler minus
    ``reference`` (default :func:`default_reference`) on the cases both edited.

    Example: ``scheduler_differences(df)`` -> columns ``*by, scheduler, reference, metric,
    score, reference_score, diff, lo, hi, n_cases, n_units, unit``. A case's score is its
    mean over the scheduler's trials (seeds); the interval resamples units (subjects, else
    cases) of the paired per-case scores. Model, dataset and mode join ``by`` when they vary.
    """
    _check_metrics(metrics, "scheduler_differences")
    t = ensure_metric_columns(case_scores(df, when=when, metrics=SCORE_METRICS), SCORE_METRICS)
    vary = [c for c in ("model", "dataset", "mode")
            if c in t.columns and c not in by and t[c].nunique(dropna=False) > 1]
    keys = [*vary, *by]
    cols = [*keys, "scheduler", "reference", "metric", "score", "reference_score", "diff",
            "lo", "hi", "n_cases", "n_units", "unit"]
    records = []
    for key, g in groups(t, keys):
        per_case = g.groupby(["scheduler", "case_id"], dropna=False)[list(SCORE_METRICS)].mean()
        names = sorted(str(s) for s in g["scheduler"].dropna().unique())
        if len(names) < 2:
            continue
        ref = reference if reference is not None else default_reference(names)
        if ref not in names:
            continue
        base = per_case.loc[ref]
        subj = (g.drop_duplicates("case_id").set_index("case_id")["subject"]
                if "subject" in g.columns else None)
        for name in names:
            if name == ref:
                continue
            other = per_case.loc[name]
            common = other.index.intersection(base.index)
            xa = other.loc[common].to_numpy(float) * 100.0
            xb = base.loc[common].to_numpy(float) * 100.0
            both = np.isnan(xa) | np.isnan(xb)
            xa[both] = xb[both] = np.nan
            frame = pd.DataFrame({"case_id": common})
            if subj is not None:
                frame["subject"] = subj.reindex(common).to_numpy()
            labels, uname = case_units(frame, unit)
            pa, pb = with_s(_nanmean(xa)), with_s(_nanmean(xb))
            lo = hi = np.full(4, np.nan)
            if n_boot > 0 and len(common) > 1:
                r = Resampler(labels)
                (sa, ca), (sb, cb) = r.unit_sums(xa), r.unit_sums(xb)
                reps = r.replicates(lambda w: with_s((w @ sa) / (w @ ca))
                                    - with_s((w @ sb) / (w @ cb)), n_boot, seed)
                lo, hi = percentile_interval(reps, ci)
            for m in metrics:
                i = _ORDER.index(m)
                records.append({**key, "scheduler": name, "reference": ref, "metric": m,
                                "score": pa[i], "reference_score": pb[i], "diff": pa[i] - pb[i],
                                "lo": lo[i], "hi": hi[i], "n_cases": len(common),
                                "n_units": len(set(labels)), "unit": uname})
    return pd.DataFrame(records, columns=cols)
