"""Numbers behind the figures and the report, as pure functions of the tidy results table
(computed in :mod:`corredit.analysis`; re-exported here for the figures and the report).

Usage::

    from corredit.plots.compute import summary_table, score_difference, scheduler_differences
    df = read_run("runs/demo").results             # carries each case's subject
    summary_table(df)                              # ES/PS/NS/S x100 per editor x scheduler x batch size
    scheduler_differences(df)                      # paired: scheduler - decorrelated, same cases
    score_difference(df)                           # related minus other edits, within strata
    score_difference_curve(df)                     # the same against the number of related edits
    interference_auc(df)                           # stratified ROC-AUC of each max_sim measure

Conventions: scores x100 (points), ROC-AUC in [0, 1]. Every interval is a seeded
percentile cluster bootstrap: whole subjects (cases when the results carry no subject)
are resampled within the stratum an estimate describes, so an edit measured in many
trials and edits sharing a subject count as the units they are. NaN means "not measured"
and is left out of means and counts.
"""

from corredit.analysis.bootstrap import Resampler, bootstrap_ci, percentile_interval
from corredit.analysis.cases import (
    CASE_KEYS,
    SCORE_METRICS,
    STRATA,
    attach_subjects,
    case_measures,
    case_scores,
    case_table,
    case_units,
    correlation_measures,
    harmonic_mean,
    has_retention,
    read_edit_subjects,
)
from corredit.analysis.contrasts import (
    default_reference,
    related_bins,
    scheduler_differences,
    score_difference,
    score_difference_curve,
)
from corredit.analysis.interference import interference_auc, interference_roc_curve
from corredit.analysis.tables import (
    bin_edges,
    binned_scores,
    grouped_scores,
    health_table,
    retention_curve,
    suite_table,
    summary_keys,
    summary_table,
)

__all__ = [
    "CASE_KEYS",
    "SCORE_METRICS",
    "STRATA",
    "Resampler",
    "attach_subjects",
    "read_edit_subjects",
    "case_scores",
    "case_measures",
    "case_table",
    "case_units",
    "correlation_measures",
    "has_retention",
    "bootstrap_ci",
    "percentile_interval",
    "harmonic_mean",
    "bin_edges",
    "summary_keys",
    "summary_table",
    "suite_table",
    "grouped_scores",
    "binned_scores",
    "retention_curve",
    "score_difference",
    "score_difference_curve",
    "scheduler_differences",
    "default_reference",
    "related_bins",
    "interference_auc",
    "interference_roc_curve",
    "health_table",
]
