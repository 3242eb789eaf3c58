"""Drawing the score figures from precomputed tables (:mod:`corredit.plots.compute`).

Usage::

    from corredit.plots import plot_score_difference, plot_retention
    from corredit.plots.compute import score_difference
    ax = plot_score_difference(score_difference(df))     # the table the report shows
    plot_retention(df, ax=other_ax)          # a results table is computed first, then drawn

Every function takes its table (or, for convenience, the tidy results table, from which
the table is computed with the keyword arguments given) and an optional ``ax``, and
returns the Axes. Drawing does no resampling: intervals come with the table.
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
    scheduler_differences,
    score_difference,
    score_difference_curve,
)

__all__ = [
    "plot_scores_vs_correlation",
    "plot_scheduler_comparison",
    "plot_scheduler_differences",
    "plot_retention",
    "plot_score_difference",
    "plot_score_difference_curve",
    "plot_interference_roc",
    "is_results",
]

_METRIC_NAMES = {"ES": "efficacy", "PS": "paraphrase", "NS": "neighbourhood", "S": "score"}


def is_results(table: pd.DataFrame) -> bool:
    """True for a tidy results table (rows per prompt and metric), False for a
    precomputed table of :mod:`corredit.plots.compute`."""
    return {"suite", "step", "value"} <= set(table.columns)


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
    with its interval band per value of ``by``.

    Example: ``plot_scores_vs_correlation(binned_scores(df, "max_sim:minilm"), "max_sim:minilm",
    metric="PS", ax=ax)``; ``df`` may be the results table itself.
    """
    data = (binned_scores(df, measure, metrics=[metric], by=[by], n_bins=n_bins,
                          binning=binning, n_boot=n_boot, ci=ci, seed=seed)
            if is_results(df) else df)
    data = data[data["metric"] == metric]
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
    batch size, with cluster-bootstrap intervals as error bars.

    Example: ``plot_scheduler_comparison(grouped_scores(df), metric="NS", batch_size=16)``;
    ``batch_size`` may be left out when the table holds a single batch size.
    """
    if is_results(df):
        edited = df[(df["suite"] == "probability") & (df["step"] >= 0)]
        df = grouped_scores(edited, metrics=[metric], by=("batch_size", "editor", "scheduler"),
                            when=when, n_boot=n_boot, ci=ci, seed=seed)
    sizes = sorted(int(b) for b in df["batch_size"].dropna().unique())
    if not sizes:
        raise ValueError("no probability-suite rows after an edit to compare")
    if batch_size is None:
        if len(sizes) > 1:
            raise ValueError(f"the results hold batch sizes {sizes}; pass batch_size=")
        batch_size = sizes[0]
    if batch_size not in sizes:
        raise ValueError(f"batch_size={batch_size}: the results hold batch sizes {sizes}")
    data = df[(df["batch_size"] == batch_size) & (df["metric"] == metric)]
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
    since), one line with its interval band per group of ``by``.

    Example: ``plot_retention(retention_curve(df, by=("editor",)), by=("editor",))``.
    """
    data = (retention_curve(df, metric=metric, by=by, max_points=max_points, n_boot=n_boot,
                            ci=ci, seed=seed) if is_results(df) else df)
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
    """Score Difference (related minus other edits within scheduler x batch size strata,
    points) per value of ``by`` (groups) and metric (bars), with its intervals.

    Example: ``plot_score_difference(score_difference(df))``; bars below zero mean edits
    that share a subject with others in their batch do worse.
    """
    data = (score_difference(df, by=[by], metrics=metrics, n_boot=n_boot, ci=ci, seed=seed)
            if is_results(df) else df)
    metrics = [m for m in metrics if m in set(data["metric"])]
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


def plot_interference_roc(df: pd.DataFrame, *, auc: pd.DataFrame | None = None,
                          editor: str | None = None, measures: Sequence[str] | None = None,
                          when: str = "immediate", fail_below: float = 0.5, n_boot: int = 1000,
                          seed: int = 0, legend: bool = True, ax: Any = None) -> Any:
    """ROC curves of predicting that an edit fails (ES == 0) from its maximum similarity
    to the rest of its batch, one curve per embedding (and editor, when ``editor`` is None);
    the legend gives the stratified AUC and its interval from ``auc``.

    Example: ``plot_interference_roc(interference_roc_curve(df), auc=interference_auc(df),
    editor="memit")``; ``df`` may be the results table itself. Raises ``ValueError`` with
    the reason when no group has both failed and successful edits.
    """
    if is_results(df):
        if editor is not None:
            df = df[df["editor"] == editor]
            if df.empty:
                raise ValueError(f"no rows for editor {editor!r}")
        curves = interference_roc_curve(df, measures=measures, when=when, fail_below=fail_below)
        if auc is None:
            auc = interference_auc(df, measures=measures, when=when, fail_below=fail_below,
                                   n_boot=0 if curves.empty else n_boot, seed=seed)
        if curves.empty:
            reasons = "; ".join(sorted(set(auc["note"]))) or "no cases"
            raise ValueError(f"no ROC curve can be drawn: {reasons}")
    else:
        curves = df if editor is None else df[df["editor"] == editor]
        if curves.empty:
            raise ValueError(f"no ROC curve to draw{f' for editor {editor!r}' if editor else ''}")
    labels = {}
    if auc is not None:
        for rec in auc.itertuples(index=False):
            if not np.isnan(rec.auc):
                labels[(str(rec.editor), str(rec.measure))] = (
                    f"AUC {rec.auc:.2f} [{rec.lo:.2f}, {rec.hi:.2f}]")
    ax = new_axes(ax)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    several = curves["editor"].nunique() > 1
    for i, ((ed, meas), g) in enumerate(curves.groupby(["editor", "measure"], sort=True)):
        emb = str(meas).split(":", 1)[-1]
        name = f"{ed} · {emb}" if several else emb
        text = labels.get((str(ed), str(meas)), f"AUC {g['auc'].iloc[0]:.2f}")
        ax.plot(g["fpr"], g["tpr"], color=f"C{i % 10}", label=f"{name} ({text})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (failed edits)")
    if legend:
        ax.legend(fontsize="small", loc="lower right")
    return ax


def plot_scheduler_differences(df: pd.DataFrame, *, metric: str = "ES",
                               reference: str | None = None, n_boot: int = 1000,
                               seed: int = 0, legend: bool = True, ax: Any = None) -> Any:
    """Paired scheduler differences: ``metric`` x100 of each scheduler minus the reference
    scheduler on the same edits, grouped by editor and batch size, with intervals.

    Example: ``plot_scheduler_differences(scheduler_differences(df), metric="ES")``.
    """
    data = (scheduler_differences(df, reference=reference, n_boot=n_boot, seed=seed)
            if is_results(df) else df)
    data = data[data["metric"] == metric].assign(
        group=lambda d: d["editor"].astype(str) + " b=" + d["batch_size"].astype(str))
    if data.empty:
        raise ValueError("no pair of schedulers edited the same cases")
    groups = list(dict.fromkeys(data.sort_values(["editor", "batch_size"])["group"]))
    schedulers = sorted(data["scheduler"].astype(str).unique())
    ax = new_axes(ax)
    width = 0.8 / max(1, len(schedulers))
    for j, sched in enumerate(schedulers):
        g = data[data["scheduler"].astype(str) == sched].set_index("group").reindex(groups)
        g = g.rename(columns={"diff": "mean"})
        x = np.arange(len(groups)) - 0.4 + width * (j + 0.5)
        ax.bar(x, g["mean"].to_numpy(float), width, yerr=_yerr(g), capsize=3,
               color=f"C{j % 10}", label=sched)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(groups)), groups, rotation=30, ha="right")
    refs = ", ".join(sorted(data["reference"].astype(str).unique()))
    ax.set_ylabel(f"{metric} x100 minus {refs} (same edits)")
    ax.grid(axis="y", alpha=0.3)
    if legend:
        ax.legend(fontsize="small", title="scheduler", title_fontsize="small")
    return ax


def plot_score_difference_curve(df: pd.DataFrame, *, metric: str = "ES", n_boot: int = 1000,
                                seed: int = 0, legend: bool = True, ax: Any = None) -> Any:
    """Score Difference against the number of same-subject edits in the batch (the edit
    included), one line with error bars per editor.

    Example: ``plot_score_difference_curve(score_difference_curve(df), metric="ES")``.
    """
    data = (score_difference_curve(df, metrics=[metric], n_boot=n_boot, seed=seed)
            if is_results(df) else df)
    data = data[data["metric"] == metric]
    if data.empty:
        raise ValueError("no edit shares its subject with another edit of its batch")
    bins = data.drop_duplicates("related").sort_values("k_low")["related"].astype(str).tolist()
    ax = new_axes(ax)
    editors = sorted(data["editor"].astype(str).unique())
    for i, ed in enumerate(editors):
        g = data[data["editor"].astype(str) == ed].sort_values("k_low")
        g = g.rename(columns={"diff": "mean"})
        x = np.array([bins.index(str(b)) for b in g["related"]]) + 0.06 * (i - len(editors) / 2)
        ax.errorbar(x, g["mean"], yerr=_yerr(g), marker="o", capsize=3,
                    color=f"C{i % 10}", label=ed)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(bins)), bins)
    ax.set_xlabel("edits of the subject in the batch")
    ax.set_ylabel(f"{metric}: minus edits alone with their subject (points)")
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize="small", title="editor", title_fontsize="small")
    return ax
