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

from corredit import analysis as _analysis
from corredit.analysis import *  # noqa: F401,F403  (the figures' and the report's numbers)

__all__ = list(_analysis.__all__)
