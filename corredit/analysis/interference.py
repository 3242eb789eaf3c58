"""Interference prediction: how well a correlation measure (an edit's maximum similarity
to the rest of its batch) predicts that the edit fails, as a stratified ROC-AUC with a
cluster-bootstrap interval.

Usage::

    from corredit.analysis.interference import interference_auc, interference_roc_curve
    interference_auc(df)            # per editor x measure: auc, lo, hi, n, n_failed, n_units
    interference_roc_curve(df)      # ROC points (pooled within each group) for drawing

The AUC is the share of (failed, succeeded) pairs *of the same stratum* (scheduler x batch
size x ...) in which the failed edit is the more similar one, ties counting one half, so a
scheduler that changes both similarity and success does not make the measure look
predictive. Units (subjects, else cases) are resampled jointly across strata.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from corredit.analysis.bootstrap import Resampler, percentile_interval, weighted_auc
from corredit.analysis.cases import STRATA, case_table, case_units, ensure_metric_columns, groups

__all__ = ["interference_auc", "interference_roc_curve"]

log = logging.getLogger(__name__)


def _interference_groups(df: pd.DataFrame, measures: Sequence[str] | None, by: Sequence[str],
                         when: str, fail_below: float):
    """Yield ``(key, measure, frame, failed, score, note)`` per group and measure."""
    t = ensure_metric_columns(case_table(df, when=when, metrics=["ES"]), ["ES"])
    if measures is None:
        measures = sorted(c for c in t.columns if str(c).startswith("max_sim:"))
        if not measures:
            raise ValueError("no 'max_sim:<embedding>' correlation rows in the results")
    for m in measures:
        if m not in t.columns:
            raise ValueError(f"no correlation rows for measure {m!r}")
    for key, g in groups(t, by):
        for m in measures:
            sub = g[g[m].notna() & g["ES"].notna()]
            failed = sub["ES"].to_numpy(float) < fail_below
            note = ""
            if len(sub) == 0:
                note = f"no case has both ES and {m} (batch size 1 has no within-batch similarity)"
            elif failed.all() or not failed.any():
                state = "failed" if failed.all() else "succeeded"
                note = f"only one class: all {len(sub)} edits {state}, so ROC-AUC is undefined"
            yield key, m, sub, failed, sub[m].to_numpy(float), note


def interference_auc(df: pd.DataFrame, *, measures: Sequence[str] | None = None,
                     by: Sequence[str] = ("editor",), when: str = "immediate",
                     fail_below: float = 0.5, unit: str = "subject", n_boot: int = 1000,
                     ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Stratified ROC-AUC of each ``max_sim:<embedding>`` measure for predicting that an
    edit fails (ES < ``fail_below``), with a cluster-bootstrap interval.

    Example: ``interference_auc(df)`` -> columns ``*by, measure, embedding, auc, lo, hi,
    n, n_failed, n_strata, n_units, unit, note``. AUC > 0.5: edits more similar to the
    rest of their batch fail more often. ``n_strata`` counts strata with both classes; a
    group without such a stratum gets ``auc = NaN`` and a ``note`` saying why.
    """
    records = []
    for key, m, sub, failed, score, note in _interference_groups(df, measures, by, when,
                                                                 fail_below):
        auc = lo = hi = float("nan")
        strata = [c for c in STRATA if c in sub.columns and c not in by]
        parts = []
        for _, s in groups(sub.assign(_row=np.arange(len(sub))), strata):
            rows = s["_row"].to_numpy()
            if failed[rows].any() and not failed[rows].all():
                parts.append(rows)
        if not note and not parts:
            note = "no stratum (scheduler x batch size) holds both failed and successful edits"
        labels, uname = case_units(sub, unit)
        if not note:
            ones = np.ones((1, len(sub)))
            nums, dens = zip(*(weighted_auc(score[p], failed[p], ones[:, p]) for p in parts))
            auc = float(np.sum(nums) / np.sum(dens))
            if n_boot > 0:
                r = Resampler(labels)

                def stat(w: np.ndarray) -> np.ndarray:
                    rw = w[:, r.codes]
                    num = den = 0.0
                    for p in parts:
                        a, b = weighted_auc(score[p], failed[p], rw[:, p])
                        num, den = num + a, den + b
                    return num / den

                lo, hi = (float(v) for v in percentile_interval(r.replicates(stat, n_boot, seed),
                                                                ci))
        else:
            log.info("interference_auc %s %s: %s", key, m, note)
        records.append({**key, "measure": m, "embedding": m.split(":", 1)[-1], "auc": auc,
                        "lo": lo, "hi": hi, "n": len(score), "n_failed": int(failed.sum()),
                        "n_strata": len(parts), "n_units": len(set(labels)), "unit": uname,
                        "note": note})
    cols = [*by, "measure", "embedding", "auc", "lo", "hi", "n", "n_failed", "n_strata",
            "n_units", "unit", "note"]
    return pd.DataFrame(records, columns=cols)


def interference_roc_curve(df: pd.DataFrame, *, measures: Sequence[str] | None = None,
                           by: Sequence[str] = ("editor",), when: str = "immediate",
                           fail_below: float = 0.5) -> pd.DataFrame:
    """ROC curve points of the interference prediction, pooled within each group of
    ``by``: columns ``*by, measure, embedding, fpr, tpr, threshold, auc`` (``auc`` of the
    pooled curve; :func:`interference_auc` gives the stratified one with its interval).
    Groups with a single class have no curve."""
    from sklearn.metrics import roc_auc_score, roc_curve

    frames = []
    for key, m, _, failed, score, note in _interference_groups(df, measures, by, when,
                                                               fail_below):
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
