"""Probability-suite metrics as pure functions of NLLs (no model, no torch).

Usage::

    from corredit.evaluate.metrics import prompt_metrics, summarize_probability
    prompt_metrics("rewrite", nll_true=[2.0], nll_new=[0.5])
    # {'ES': array([1.]), 'EM': array([0.471...])}
    summarize_probability(df)      # {'ES': 100.0, ..., 'S': ...}

Per prompt (``NLL`` = mean target-token NLL, ``p = e^(-NLL)``):

- rewrite / paraphrase: score = 1[NLL true > NLL new], magnitude = p new - p true
  (ES/EM on the rewrite prompt, PS/PM on paraphrases);
- neighbourhood: score = 1[NLL true < NLL new], magnitude = p true - p new (NS/NM).

A case's value for a metric is the mean over its prompts of that kind; the summary is
the mean over cases x100, and S is the harmonic mean of ES, PS and NS.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "PROMPT_KINDS",
    "METRIC_NAMES",
    "SUMMARY_METRICS",
    "prompt_metrics",
    "probability_rows",
    "summarize_probability",
    "harmonic_mean",
]

#: Prompt kinds of the probability suite and their (score, magnitude) metric names.
METRIC_NAMES: Mapping[str, tuple[str, str]] = {
    "rewrite": ("ES", "EM"),
    "paraphrase": ("PS", "PM"),
    "neighborhood": ("NS", "NM"),
}
PROMPT_KINDS: tuple[str, ...] = tuple(METRIC_NAMES)
#: Metrics reported by :func:`summarize_probability`, in order.
SUMMARY_METRICS: tuple[str, ...] = ("ES", "PS", "NS", "S", "EM", "PM", "NM")

SUITE = "probability"


def prompt_metrics(kind: str, nll_true: Sequence[float], nll_new: Sequence[float]
                   ) -> dict[str, np.ndarray]:
    """Per-prompt score and magnitude for prompts of ``kind``."""
    if kind not in METRIC_NAMES:
        raise ValueError(f"unknown prompt kind {kind!r}; known: {', '.join(PROMPT_KINDS)}")
    t = np.asarray(nll_true, dtype=np.float64)
    n = np.asarray(nll_new, dtype=np.float64)
    if t.shape != n.shape:
        raise ValueError(f"nll_true has shape {t.shape}, nll_new {n.shape}")
    score_name, mag_name = METRIC_NAMES[kind]
    if kind == "neighborhood":
        return {score_name: (t < n).astype(np.float64), mag_name: np.exp(-t) - np.exp(-n)}
    return {score_name: (t > n).astype(np.float64), mag_name: np.exp(-n) - np.exp(-t)}


def probability_rows(case_ids: Sequence[str], kinds: Sequence[str],
                     prompt_indices: Sequence[int], nll_true: Sequence[float],
                     nll_new: Sequence[float]) -> pd.DataFrame:
    """Tidy rows (one per case, prompt kind, prompt index and metric) from per-prompt NLLs.

    Besides the score and magnitude, each prompt carries its ``nll_true`` and ``nll_new``
    rows so that other summaries can be derived later.
    """
    frame = pd.DataFrame({
        "case_id": pd.Series(case_ids, dtype="string"),
        "prompt_kind": pd.Series(kinds, dtype="string"),
        "prompt_index": pd.Series(prompt_indices, dtype="int64"),
        "nll_true": np.asarray(nll_true, dtype=np.float64),
        "nll_new": np.asarray(nll_new, dtype=np.float64),
    })
    parts = []
    for kind, sub in frame.groupby("prompt_kind", sort=False):
        values = prompt_metrics(str(kind), sub["nll_true"].to_numpy(), sub["nll_new"].to_numpy())
        values["nll_true"] = sub["nll_true"].to_numpy()
        values["nll_new"] = sub["nll_new"].to_numpy()
        for metric, v in values.items():
            parts.append(pd.DataFrame({
                "case_id": sub["case_id"].to_numpy(), "prompt_kind": str(kind),
                "prompt_index": sub["prompt_index"].to_numpy(), "metric": metric, "value": v,
            }))
    columns = ["case_id", "prompt_kind", "prompt_index", "metric", "value", "suite"]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "string")
                             for c in columns})
    out = pd.concat(parts, ignore_index=True)
    out["suite"] = SUITE
    out = out.astype({"case_id": "string", "prompt_kind": "string", "metric": "string",
                      "suite": "string", "prompt_index": "int64", "value": "float64"})
    return out[columns]


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean; 0 when any value is 0, NaN when any is NaN or none is given."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or np.isnan(v).any():
        return float("nan")
    if (v < 0).any():
        raise ValueError(f"harmonic mean of negative values: {v.tolist()}")
    if (v == 0).any():
        return 0.0
    return float(v.size / np.sum(1.0 / v))


def _summary(df: pd.DataFrame) -> dict[str, float]:
    known = [m for ms in METRIC_NAMES.values() for m in ms]
    sub = df[df["metric"].isin(known)]
    per_case = sub.groupby(["metric", "case_id"], observed=True)["value"].mean()
    means = per_case.groupby(level="metric", observed=True).mean() * 100.0
    out = {m: float(means.get(m, np.nan)) for m in SUMMARY_METRICS if m != "S"}
    out["S"] = harmonic_mean([out["ES"], out["PS"], out["NS"]])
    out["n_cases"] = float(sub["case_id"].nunique())
    return {k: out[k] for k in (*SUMMARY_METRICS, "n_cases")}


def summarize_probability(df: pd.DataFrame, by: Sequence[str] | None = None
                          ) -> dict[str, float] | pd.DataFrame:
    """Per-metric means x100 (prompts averaged within a case, then cases averaged), S, and
    the number of cases. A metric with no rows is NaN, and so is S when one of ES, PS, NS
    is. Only rows with ``suite == "probability"`` count when the column exists.

    With ``by`` (e.g. ``["editor", "step"]``) returns a DataFrame, one row per group.
    """
    missing = [c for c in ("case_id", "metric", "value") if c not in df.columns]
    if missing:
        raise KeyError(f"summarize_probability: rows lack columns {missing}")
    if "suite" in df.columns:
        df = df[df["suite"] == SUITE]
    if by is None:
        return _summary(df)
    rows: list[dict[str, Any]] = []
    for key, sub in df.groupby(list(by), observed=True, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), **_summary(sub)})
    return pd.DataFrame(rows)
