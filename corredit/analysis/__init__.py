"""Statistics of a run's tidy results: per-case tables, the cluster bootstrap, score
tables, stratified contrasts and interference prediction. Torch-free (numpy / pandas;
scikit-learn only for ROC curve points).

Usage::

    from corredit.analysis import (case_table, bootstrap_ci, score_difference,
                                   scheduler_differences, interference_auc)
    df = attach_subjects(df, read_edit_subjects("runs/demo/edits.jsonl"))
    scheduler_differences(df)       # correlated - decorrelated on the same edits, with CIs
    score_difference(df)            # related minus other edits, within scheduler x batch size

Every interval resamples independent units (subjects when known, else cases) within the
stratum it describes; see :mod:`corredit.analysis.bootstrap`.
"""

from corredit.analysis.bootstrap import Resampler, bootstrap_ci, percentile_interval, weighted_auc
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
    "CASE_KEYS", "SCORE_METRICS", "STRATA",
    "Resampler", "bootstrap_ci", "percentile_interval", "weighted_auc",
    "attach_subjects", "read_edit_subjects", "case_scores", "case_measures", "case_table",
    "case_units", "correlation_measures", "harmonic_mean", "has_retention",
    "bin_edges", "summary_keys", "summary_table", "suite_table", "grouped_scores",
    "binned_scores", "retention_curve", "health_table",
    "score_difference", "score_difference_curve", "scheduler_differences",
    "default_reference", "related_bins",
    "interference_auc", "interference_roc_curve",
]
