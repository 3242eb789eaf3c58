"""The run's figures: one named builder per figure, each deciding whether the run's data
supports it, and :func:`make_all_figures` writing every supported one.

Usage::

    from corredit.plots import read_run, build_figure, save_figure, make_all_figures
    run = read_run("runs/demo")
    fig = build_figure("retention", run)            # FigureUnavailable (a ValueError) if no data
    save_figure(fig, "figures", "retention")        # figures/retention.png and .pdf
    make_all_figures("runs/demo", "figures")        # every figure the run supports -> PNG paths

``make_all_figures`` also writes ``figures.json`` in the output folder: per figure, the files
written or the reason it was skipped.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from corredit.atomic import atomic_path, atomic_write_text
from corredit.plots.backend import new_figure
from corredit.plots.compute import (
    SCORE_METRICS,
    binned_scores,
    case_scores,
    correlation_measures,
    grouped_scores,
    has_retention,
    interference_auc,
    interference_roc_curve,
    retention_curve,
    scheduler_differences,
    score_difference,
    score_difference_curve,
)
from corredit.plots.graphs import plot_correlation_graph, plot_similarity_heatmap
from corredit.plots.network import (
    community_labels,
    detect_communities,
    graph_from_edges,
    graph_layout,
    largest_communities_subgraph,
    similarity_from_graph,
)
from corredit.plots.scores import (
    plot_interference_roc,
    plot_retention,
    plot_score_difference,
    plot_scheduler_comparison,
    plot_scheduler_differences,
    plot_score_difference_curve,
    plot_scores_vs_correlation,
)
from corredit.plots.rundata import (
    FIGURE_ORDER,
    FIGURES,
    FigureSpec,
    FigureUnavailable,
    RunData,
    read_run,
    register_figure as _register,
)

__all__ = [
    "RunData",
    "FigureSpec",
    "FigureUnavailable",
    "FIGURES",
    "FIGURE_ORDER",
    "read_run",
    "read_manifest",
    "figure_availability",
    "build_figure",
    "save_figure",
    "make_all_figures",
    "MANIFEST_NAME",
    "figure_script",
]

log = logging.getLogger(__name__)

#: Name of the per-folder record of written and skipped figures.
MANIFEST_NAME = "figures.json"


# -- availability checks ---------------------------------------------------------------

def _edited(run: RunData) -> pd.DataFrame:
    df = run.results
    return df[(df["suite"] == "probability") & (df["step"] >= 0)]


def _need_scores(run: RunData) -> str | None:
    if _edited(run).empty:
        return "no probability-suite rows after an edit"
    return None


def _need_similarity(run: RunData) -> str | None:
    if reason := _need_scores(run):
        return reason
    if not correlation_measures(run.results, "max_sim:"):
        return ("no max_sim:<embedding> values (no correlation rows, or only batches of "
                "size 1, which have no within-batch similarity)")
    return None


def _need_retention(run: RunData) -> str | None:
    if reason := _need_scores(run):
        return reason
    if not has_retention(run.results):
        return "no sequential trials: no case was re-scored after a later batch"
    return None


def _need_same_subject(run: RunData) -> str | None:
    if reason := _need_scores(run):
        return reason
    df = run.results
    if not ((df["suite"] == "correlation") & (df["metric"] == "same_subject_in_batch")).any():
        return "no same_subject_in_batch correlation rows"
    table = score_difference(df, metrics=["ES"], n_boot=0)
    if table.empty or table["diff"].isna().all():
        notes = "; ".join(sorted(set(table["note"]))) if not table.empty else "no cases"
        return f"no editor has both same-subject and other-subject edits ({notes})"
    return None


def _need_roc(run: RunData) -> str | None:
    if reason := _need_similarity(run):
        return reason
    table = interference_auc(run.results, n_boot=0)
    if table["auc"].isna().all():
        return "ROC-AUC undefined for every editor and embedding: " + "; ".join(
            sorted(set(table["note"])))
    return None


def _need_graph(run: RunData) -> str | None:
    if run.graph_edges is None:
        return "no graph_edges.parquet in the run folder"
    if run.graph_edges.empty:
        return "graph_edges.parquet holds no edges"
    return None


# -- builders ----------------------------------------------------------------------------

@_register("scores_vs_correlation",
           "Efficacy, paraphrase and neighbourhood scores against the maximum similarity of "
           "each edit to the rest of its batch (quantile bins; 95% intervals resampling "
           "subjects within each bin).",
           _need_similarity)
def _scores_vs_correlation(run: RunData) -> Any:
    measures = correlation_measures(run.results, "max_sim:")
    fig, axes = new_figure(len(measures), len(SCORE_METRICS))
    for i, measure in enumerate(measures):
        table = binned_scores(run.results, measure)
        for j, metric in enumerate(SCORE_METRICS):
            plot_scores_vs_correlation(table, measure, metric=metric,
                                       legend=(i == 0 and j == 0), ax=axes[i, j])
    return fig


@_register("scheduler_comparison",
           "ES / PS / NS per editor and scheduler, one row of panels per batch size "
           "(after all edits; 95% intervals resampling subjects within each bar).",
           _need_scores)
def _scheduler_comparison(run: RunData) -> Any:
    table = grouped_scores(run.results)
    sizes = sorted(int(b) for b in table["batch_size"].dropna().unique())
    fig, axes = new_figure(len(sizes), len(SCORE_METRICS))
    for i, size in enumerate(sizes):
        for j, metric in enumerate(SCORE_METRICS):
            plot_scheduler_comparison(table, metric=metric, batch_size=size,
                                      legend=(j == 0), ax=axes[i, j])
    return fig


def _need_scheduler_pairs(run: RunData) -> str | None:
    if reason := _need_scores(run):
        return reason
    if scheduler_differences(run.results, metrics=["ES"], n_boot=0).empty:
        return "no editor and batch size was run with two or more schedulers"
    return None


@_register("scheduler_differences",
           "Paired scheduler differences: ES / PS / NS of each scheduler minus the reference "
           "(decorrelated) on the same edits, per editor and batch size (95% intervals "
           "resampling subjects).",
           _need_scheduler_pairs)
def _scheduler_differences(run: RunData) -> Any:
    table = scheduler_differences(run.results)
    fig, axes = new_figure(1, len(SCORE_METRICS), panel=(5.0, 4.0))
    for j, metric in enumerate(SCORE_METRICS):
        plot_scheduler_differences(table, metric=metric, legend=(j == 0), ax=axes[0, j])
    return fig


@_register("retention",
           "Retention: ES of earlier edits against their age along sequential runs.",
           _need_retention)
def _retention(run: RunData) -> Any:
    fig, axes = new_figure(1, 1, panel=(7.0, 4.2))
    plot_retention(retention_curve(run.results), ax=axes[0, 0])
    return fig


@_register("score_difference",
           "Score Difference: score of edits whose subject has other edits in the same batch "
           "minus score of the others, within each scheduler x batch size and combined per "
           "editor (points, 95% intervals resampling subjects).",
           _need_same_subject)
def _score_difference(run: RunData) -> Any:
    fig, axes = new_figure(1, 1, panel=(6.5, 4.0))
    plot_score_difference(score_difference(run.results), ax=axes[0, 0])
    return fig


@_register("score_difference_curve",
           "Score Difference against the number of edits of the subject in the batch "
           "(2, 3-4, 5-8, ...), within scheduler x batch size strata (95% intervals "
           "resampling subjects).",
           _need_same_subject)
def _score_difference_curve(run: RunData) -> Any:
    table = score_difference_curve(run.results, metrics=["ES", "S"])
    fig, axes = new_figure(1, 2, panel=(5.0, 4.0))
    for j, metric in enumerate(("ES", "S")):
        plot_score_difference_curve(table, metric=metric, legend=(j == 0), ax=axes[0, j])
    return fig


@_register("interference_roc",
           "ROC of predicting a failed edit (ES = 0) from its maximum similarity to the rest "
           "of its batch, per embedding; legend: AUC within scheduler x batch size strata "
           "with its 95% interval.",
           _need_roc)
def _interference_roc(run: RunData) -> Any:
    auc = interference_auc(run.results)
    curves = interference_roc_curve(run.results)
    editors = sorted(str(e) for e in auc.loc[auc["auc"].notna(), "editor"].unique())
    editors = [e for e in editors if (curves["editor"].astype(str) == e).any()]
    ncols = min(3, len(editors))
    nrows = int(np.ceil(len(editors) / ncols))
    fig, axes = new_figure(nrows, ncols, panel=(4.2, 4.2))
    for k, ax in enumerate(axes.ravel()):
        if k >= len(editors):
            ax.set_axis_off()
            continue
        plot_interference_roc(curves, auc=auc, editor=editors[k], ax=ax)
        ax.set_title(editors[k], fontsize="medium")
    return fig


def _graph_subset(run: RunData, max_nodes: int, seed: int = 0) -> tuple[Any, list[set], str]:
    graph = graph_from_edges(run.graph_edges)
    communities = detect_communities(graph, seed=seed)
    n = graph.number_of_nodes()
    note = ""
    if n > max_nodes:
        graph, communities = largest_communities_subgraph(graph, communities, max_nodes)
        note = f" (largest communities: {graph.number_of_nodes()} of {n} edits)"
        log.info("correlation graph: drawing %d of %d nodes (largest communities)",
                 graph.number_of_nodes(), n)
    return graph, communities, note


@_register("similarity_heatmap",
           "Similarity (correlation graph edge weights; 0 = no edge) between edits, ordered "
           "by Louvain community.",
           _need_graph)
def _similarity_heatmap(run: RunData, max_nodes: int = 400) -> Any:
    graph, communities, note = _graph_subset(run, max_nodes)
    sim, nodes = similarity_from_graph(graph)
    fig, axes = new_figure(1, 1, panel=(6.0, 5.0))
    ax = plot_similarity_heatmap(sim, community_labels(communities, nodes), ax=axes[0, 0])
    ax.set_title(f"{len(communities)} communities{note}", fontsize="medium")
    return fig


def _node_case_ids(edges: pd.DataFrame, nodes: Sequence[Any], case_ids: set[str],
                   schedules: pd.DataFrame | None) -> dict[Any, str]:
    """Map graph nodes to case ids: from the edge list's ``source_case_id`` /
    ``target_case_id`` columns when present, else the node itself when it is a case id
    string, else through the schedules' ``index -> case_id`` columns."""
    if {"source_case_id", "target_case_id"} <= set(edges.columns):
        known: dict[Any, str] = {}
        for node_col, case_col in (("source", "source_case_id"), ("target", "target_case_id")):
            for node, case in zip(edges[node_col], edges[case_col]):
                if case is not None and not pd.isna(case):
                    known[node] = str(case)
        return {v: known[v] for v in nodes if v in known}
    if all(isinstance(v, str) for v in nodes):
        return {v: v for v in nodes if v in case_ids}
    if schedules is not None and {"index", "case_id"} <= set(schedules.columns):
        by_index = dict(zip(schedules["index"].astype(str), schedules["case_id"].astype(str)))
        return {v: by_index[str(v)] for v in nodes if str(v) in by_index}
    return {v: str(v) for v in nodes if str(v) in case_ids}


@_register("correlation_graph",
           "The correlation graph, nodes coloured by each edit's efficacy (mean ES over the "
           "editor's trials), one panel per editor.",
           _need_graph)
def _correlation_graph(run: RunData, max_nodes: int = 300) -> Any:
    graph, _, note = _graph_subset(run, max_nodes)
    scores = case_scores(run.results, when="immediate", metrics=["ES"])
    editors = sorted(str(e) for e in scores["editor"].dropna().unique()) or ["(no scores)"]
    mapping = _node_case_ids(run.graph_edges, list(graph.nodes),
                             set(scores["case_id"].astype(str)), run.schedules)
    if not mapping:
        log.info("correlation graph: no graph node matches a case id; nodes drawn grey")
    pos = graph_layout(graph, seed=0)
    ncols = min(3, len(editors))
    nrows = int(np.ceil(len(editors) / ncols))
    fig, axes = new_figure(nrows, ncols, panel=(4.6, 4.2))
    for k, ax in enumerate(axes.ravel()):
        if k >= len(editors):
            ax.set_axis_off()
            continue
        sub = scores[scores["editor"].astype(str) == editors[k]]
        per_case = sub.groupby(sub["case_id"].astype(str))["ES"].mean()
        success = {v: per_case.get(c, np.nan) for v, c in mapping.items()}
        plot_correlation_graph(graph, success, pos=pos, ax=ax,
                               colorbar=(k == len(editors) - 1))
        ax.set_title(f"{editors[k]}{note}", fontsize="medium")
    return fig


# -- running them ----------------------------------------------------------------------

def _ordered_names() -> list[str]:
    return [*FIGURE_ORDER, *[n for n in FIGURES.names() if n not in FIGURE_ORDER]]


def figure_availability(run: RunData | str | os.PathLike[str]) -> dict[str, str | None]:
    """``{figure name: None if the run supports it, else the reason}`` in report order."""
    run = run if isinstance(run, RunData) else read_run(run)
    return {name: FIGURES.get(name).check(run) for name in _ordered_names()}


def build_figure(name: str, run: RunData | str | os.PathLike[str]) -> Any:
    """The figure ``name`` for ``run`` (a :class:`RunData` or a run folder path).

    Raises :class:`FigureUnavailable` with the reason when the run's data does not
    support it, and an error listing the known names for an unknown one.
    """
    spec = FIGURES.get(name)
    run = run if isinstance(run, RunData) else read_run(run)
    reason = spec.check(run)
    if reason:
        raise FigureUnavailable(f"{run.root}: figure {name!r} not drawn: {reason}")
    return spec.build(run)


def save_figure(fig: Any, out_dir: str | os.PathLike[str], name: str, *,
                formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``out_dir/<name>.<format>`` for each format; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
        paths.append(path)
    return paths


def make_all_figures(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                     formats: Sequence[str] = ("png", "pdf"), dpi: int = 150,
                     names: Sequence[str] | None = None) -> list[Path]:
    """Write every figure the run's data supports to ``out_dir`` (each in every format)
    and return the paths of the first format (PNG by default), in report order.

    Example: ``make_all_figures("runs/demo", "runs/demo/figures")``. A figure whose data
    is absent is skipped and the reason logged (INFO) and recorded in ``figures.json``.
    """
    if not formats:
        raise ValueError("formats: give at least one file format")
    run = read_run(run_dir)
    written: list[Path] = []
    manifest: dict[str, dict[str, Any]] = {}
    for name in names if names is not None else _ordered_names():
        spec = FIGURES.get(name)
        reason = spec.check(run)
        if reason:
            log.info("figure %s skipped: %s", name, reason)
            manifest[name] = {"skipped": reason, "description": spec.description}
            continue
        paths = save_figure(spec.build(run), out_dir, name, formats=formats, dpi=dpi)
        written.append(paths[0])
        manifest[name] = {"files": [p.name for p in paths], "description": spec.description}
    atomic_write_text(json.dumps(manifest, indent=2) + "\n", Path(out_dir) / MANIFEST_NAME)
    return written


def read_manifest(out_dir: str | os.PathLike[str]) -> Mapping[str, Mapping[str, Any]]:
    """The ``figures.json`` written by :func:`make_all_figures` ({} when absent)."""
    path = Path(out_dir) / MANIFEST_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def figure_script(name: str, argv: Sequence[str] | None = None, *,
                  description: str | None = None) -> int:
    """The body of every ``analysis/fig_<name>.py`` script.

    Usage (the whole script)::

        import sys
        from corredit.plots import figure_script
        sys.exit(figure_script("retention"))

    Reads ``RUN_DIR`` (default ``runs/demo``), draws figure ``name`` and writes
    ``<out>/<name>.png`` and ``.pdf`` (default ``figures/``). Exit code 2 with the reason
    when the run folder or the figure's data is missing.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog=f"fig_{name}.py",
                                     description=description or FIGURES.get(name).description)
    parser.add_argument("run_dir", nargs="?", default="runs/demo", help="run folder")
    parser.add_argument("--out", default="figures", help="output folder")
    args = parser.parse_args(argv)
    try:
        fig = build_figure(name, read_run(args.run_dir))
    except (FileNotFoundError, FigureUnavailable) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    for path in save_figure(fig, args.out, name):
        print(path)
    return 0
