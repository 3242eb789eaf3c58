"""Figures of a run: pure computations (:mod:`~corredit.plots.compute`,
:mod:`~corredit.plots.network`) kept apart from the drawing functions.

Usage::

    from corredit.plots import make_all_figures, plot_retention, summary_table
    make_all_figures("runs/demo", "figures")      # every figure the run supports -> PNG paths
    ax = plot_retention(df)                       # any plot_x(df, ..., ax=None) -> Axes
    summary_table(df)                             # the numbers behind the report's main table
    plot_score_difference(score_difference(df))   # drawing takes the precomputed table

Torch-free; matplotlib, networkx and scikit-learn are imported only when a function
needs them.
"""

from corredit.plots.compute import (
    attach_subjects,
    binned_scores,
    bootstrap_ci,
    case_scores,
    case_table,
    correlation_measures,
    grouped_scores,
    health_table,
    interference_auc,
    interference_roc_curve,
    retention_curve,
    scheduler_differences,
    score_difference,
    score_difference_curve,
    suite_table,
    summary_keys,
    summary_table,
)
from corredit.plots.figures import (
    FIGURES,
    FigureSpec,
    FigureUnavailable,
    RunData,
    build_figure,
    figure_availability,
    figure_script,
    make_all_figures,
    read_run,
    save_figure,
)
from corredit.plots.graphs import plot_correlation_graph, plot_similarity_heatmap
from corredit.plots.network import community_order
from corredit.plots.scores import (
    plot_interference_roc,
    plot_retention,
    plot_score_difference,
    plot_scheduler_comparison,
    plot_scheduler_differences,
    plot_score_difference_curve,
    plot_scores_vs_correlation,
)

__all__ = [
    "make_all_figures",
    "figure_script",
    "build_figure",
    "save_figure",
    "read_run",
    "figure_availability",
    "RunData",
    "FigureSpec",
    "FigureUnavailable",
    "FIGURES",
    "plot_scores_vs_correlation",
    "plot_scheduler_comparison",
    "plot_scheduler_differences",
    "plot_score_difference_curve",
    "plot_retention",
    "plot_score_difference",
    "plot_interference_roc",
    "plot_similarity_heatmap",
    "plot_correlation_graph",
    "summary_table",
    "summary_keys",
    "suite_table",
    "case_scores",
    "case_table",
    "correlation_measures",
    "binned_scores",
    "grouped_scores",
    "retention_curve",
    "score_difference",
    "score_difference_curve",
    "scheduler_differences",
    "attach_subjects",
    "interference_auc",
    "interference_roc_curve",
    "health_table",
    "bootstrap_ci",
    "community_order",
]
