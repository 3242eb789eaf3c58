"""Drawing the score figures from a tidy results table; the numbers come from
:mod:`corredit.plots.compute`.

Usage::

    from corredit.plots import plot_scores_vs_correlation, plot_retention
    ax = plot_scores_vs_correlation(df, "max_sim:minilm", metric="ES")
    plot_retention(df, ax=other_ax)          # draws on the Axes given and returns it

Every function takes the tidy results table and an optional ``ax`` and returns the Axes.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from corredit.plots.backend import new_axes
from corredit.plots.compute import (
    binned_scores,
    grouped_scores,
    interference_auc,
    interference_roc_curve,
    retention_curve,
    score_difference,
)

__all__ = [
    "plot_scores_vs_correlation",
    "plot_scheduler_comparison",
    "plot_retention",
    "plot_score_difference",
    "plot_interference_roc",
]

_METRIC_NAMES = {"ES": "efficacy", "PS": "paraphrase", "NS": "neighbourhood", "S": "score"}


def _measure_label(measure: str) -> str:
    kind, _, emb = measure.partition(":")
    words = {"max_sim": "max similarity to the rest of the batch",
             "mean_sim": "mean similarity to the rest of the batch"}
    return f"{words.get(kind, kind)} ({emb})" if emb else measure


def _yerr(g: pd.DataFrame) -> np.ndarray:
    err = np.vstack([g["mean"] - g["lo"], g["hi"] - g["mean"]])
    return np.nan_to_num(np.clip(err, 0.0, None))


def _varying(data: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """The columns of ``by`` that take more than one value (at least the first)."""
    vary = [c for c in by if data[c].nunique(dropna=False) > 1]
    return vary or list(by[:1])


def _label(key: dict, columns: Sequence[str]) -> str:
    parts = []
    for c in columns:
        v = key[c]
        parts.append(f"b={v}" if c == "batch_size" else str(v))
    return " / ".join(parts)


def plot_scores_vs_correlation(df: pd.DataFrame, measure: str, *, metric: str = "ES",
                               by: str = "editor", n_bins: int = 5, binning: str = "quantile",
                               n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                               legend: bool = True, ax: Any = None) -> Any:
    """Mean ``metric`` x100 per bin of ``measure`` (e.g. ``"max_sim:minilm"``), one line
    with a bootstrap band per value of ``by``.

    Example: ``plot_scores_vs_correlation(df, "max_sim:minilm", metric="PS", ax=ax)``.
    """
    data = binned_scores(df, measure, metrics=[metric], by=[by], n_bins=n_bins, binning=binning,
                         n_boot=n_boot, ci=ci, seed=seed)
    ax = new_axes(ax)
    for i, (name, g) in enumerate(data.groupby(by, sort=True, dropna=False)):
        color = f"C{i % 10}"
        ax.plot(g["x"], g["mean"], marker="o", color=color, label=str(name))
        ax.fill_between(g["x"], g["lo"], g["hi"], color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel(_measure_label(measure))
    ax.set_ylabel(f"{metric} ({_METRIC_NAMES.get(metric, metric)}) x100")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize="small", title=by, title_fontsize="small")
    return ax


def plot_scheduler_comparison(df: pd.DataFrame, *, metric: str = "ES",
                              batch_size: int | None = None, when: str = "final",
                              n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                              legend: bool = True, ax: Any = None) -> Any:
    """Grouped bars: mean ``metric`` x100 per editor (groups) and scheduler (bars) at one
    batch size, with bootstrap CIs as error bars.

    Example: ``plot_scheduler_comparison(df, metric="NS", batch_size=16)``; ``batch_size``
    may be left out when the results hold a single batch size.
    """
    edited = df[(df["suite"] == "probability") & (df["step"] >= 0)]
    sizes = sorted(int(b) for b in edited["batch_size"].dropna().unique())
    if not sizes:
        raise ValueError("no probability-suite rows after an edit to compare")
    if batch_size is None:
        if len(sizes) > 1:
            raise ValueError(f"the results hold batch sizes {sizes}; pass batch_size=")
        batch_size = sizes[0]
    if batch_size not in sizes:
        raise ValueError(f"batch_size={batch_size}: the results hold batch sizes {sizes}")
    data = grouped_scores(df[df["batch_size"] == batch_size], metrics=[metric],
                          by=("editor", "scheduler"), when=when, n_boot=n_boot, ci=ci, seed=seed)
    editors = sorted(data["editor"].astype(str).unique())
    schedulers = sorted(data["scheduler"].astype(str).unique())
    ax = new_axes(ax)
    width = 0.8 / max(1, len(schedulers))
    for j, sched in enumerate(schedulers):
        g = data[data["scheduler"].astype(str) == sched].assign(
            editor=lambda d: d["editor"].astype(str)).set_index("editor").reindex(editors)
        x = np.arange(len(editors)) - 0.4 + width * (j + 0.5)
        ax.bar(x, g["mean"].to_numpy(float), width, yerr=_yerr(g), capsize=3,
               color=f"C{j % 10}", label=sched)
    ax.set_xticks(np.arange(len(editors)), editors)
    ax.set_ylabel(f"{metric} ({_METRIC_NAMES.get(metric, metric)}) x100")
    ax.set_ylim(0, 105)
    ax.set_title(f"batch size {batch_size}", fontsize="medium")
    ax.grid(axis="y", alpha=0.3)
    if legend:
        ax.legend(fontsize="small", title="scheduler", title_fontsize="small")
    return ax


def plot_retention(df: pd.DataFrame, *, metric: str = "ES",
                   by: Sequence[str] = ("editor", "scheduler", "batch_size"),
                   max_points: int = 12, n_boot: int = 200, ci: float = 0.95, seed: int = 0,
                   legend: bool = True, ax: Any = None) -> Any:
    """Retention: mean ``metric`` x100 of earlier edits against their age (batches applied
    since), one line with a bootstrap band per group of ``by``.

    Example: ``plot_retention(df, by=("editor",))``.
    """
    data = retention_curve(df, metric=metric, by=by, max_points=max_points, n_boot=n_boot,
                           ci=ci, seed=seed)
    ax = new_axes(ax)
    shown = _varying(data, by)
    for i, (key, g) in enumerate(data.groupby(list(by), sort=True, dropna=False)):
        key = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        color = f"C{i % 10}"
        g = g.sort_values("age")
        ax.plot(g["age"], g["mean"], color=color, label=_label(key, shown),
                marker="o" if len(g) < 20 else None, markersize=3)
        ax.fill_between(g["age"], g["lo"], g["hi"], color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("age of the edit (batches applied since)")
    ax.set_ylabel(f"{metric} ({_METRIC_NAMES.get(metric, metric)}) x100")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize="small")
    return ax


def plot_score_difference(df: pd.DataFrame, *, metrics: Sequence[str] = ("ES", "PS", "NS", "S"),
                          by: str = "editor", n_boot: int = 1000, ci: float = 0.95,
                          seed: int = 0, legend: bool = True, ax: Any = None) -> Any:
    """Score Difference (same-subject minus lone-subject edits, points) per value of
    ``by`` (groups) and metric (bars), with bootstrap CIs.

    Example: ``plot_score_difference(df)``; bars below zero mean edits that share a
    subject with others in their batch do worse.
    """
    data = score_difference(df, by=[by], metrics=metrics, n_boot=n_boot, ci=ci, seed=seed)
    groups = sorted(data[by].astype(str).unique())
    ax = new_axes(ax)
    width = 0.8 / max(1, len(metrics))
    for j, m in enumerate(metrics):
        g = data[data["metric"] == m].assign(**{by: lambda d: d[by].astype(str)})
        g = g.set_index(by).reindex(groups).rename(columns={"diff": "mean"})
        x = np.arange(len(groups)) - 0.4 + width * (j + 0.5)
        ax.bar(x, g["mean"].to_numpy(float), width, yerr=_yerr(g), capsize=3,
               color=f"C{j % 10}", label=m)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("same-subject minus other-subject edits (points)")
    ax.grid(axis="y", alpha=0.3)
    if legend:
        ax.legend(fontsize="small", ncols=min(4, len(metrics)))
    return ax


def plot_interference_roc(df: pd.DataFrame, *, editor: str | None = None,
                          measures: Sequence[str] | None = None, when: str = "immediate",
                          fail_below: float = 0.5, legend: bool = True, ax: Any = None) -> Any:
    """ROC curves of predicting that an edit fails (ES == 0) from its maximum similarity
    to the rest of its batch, one curve per embedding (and editor, when ``editor`` is None).

    Example: ``plot_interference_roc(df, editor="memit")``. Raises ``ValueError`` with the
    reason when no group has both failed and successful edits.
    """
    if editor is not None:
        df = df[df["editor"] == editor]
        if df.empty:
            raise ValueError(f"no rows for editor {editor!r}")
    curves = interference_roc_curve(df, measures=measures, when=when, fail_below=fail_below)
    if curves.empty:
        notes = interference_auc(df, measures=measures, when=when, fail_below=fail_below)
        reasons = "; ".join(sorted(set(notes["note"]))) or "no cases"
        raise ValueError(f"no ROC curve can be drawn: {reasons}")
    ax = new_axes(ax)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    several = curves["editor"].nunique() > 1
    for i, ((ed, meas), g) in enumerate(curves.groupby(["editor", "measure"], sort=True)):
        emb = str(meas).split(":", 1)[-1]
        name = f"{ed} · {emb}" if several else emb
        ax.plot(g["fpr"], g["tpr"], color=f"C{i % 10}",
                label=f"{name} (AUC {g['auc'].iloc[0]:.2f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (failed edits)")
    if legend:
        ax.legend(fontsize="small", loc="lower right")
    return ax

