"""The cluster bootstrap and the contrasts built on it: a known-answer check on clustered
data, stratified draws, weighted AUC, and hand-made designs where pooling misleads."""

from __future__ import annotations

import numpy as np
import pytest

from corredit.analysis import (
    Resampler,
    attach_subjects,
    bootstrap_ci,
    case_units,
    case_scores,
    default_reference,
    grouped_scores,
    interference_auc,
    interference_roc_curve,
    related_bins,
    scheduler_differences,
    score_difference,
    score_difference_curve,
    weighted_auc,
)
from corredit.plots.testing import tidy_frame


def _clustered(seed: int, n_subjects: int = 20, per_subject: int = 8, mu: float = 0.0):
    """``per_subject`` near-identical rows per subject: a subject effect of sd 1, row noise
    of sd 0.1. The true mean is ``mu``; the subjects, not the rows, are independent."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0.0, 1.0, n_subjects)
    subjects = np.repeat(np.arange(n_subjects), per_subject)
    values = mu + effect[subjects] + rng.normal(0.0, 0.1, subjects.size)
    return values, subjects


def test_known_answer_cluster_interval_is_wider_and_covers():
    widths_naive, widths_cluster, cover_naive, cover_cluster = [], [], 0, 0
    n_rep = 80
    for seed in range(n_rep):
        x, subjects = _clustered(seed)
        _, lo_n, hi_n = bootstrap_ci(x, n_boot=400, seed=seed)
        _, lo_c, hi_c = bootstrap_ci(x, subjects, n_boot=400, seed=seed)
        widths_naive.append(hi_n - lo_n)
        widths_cluster.append(hi_c - lo_c)
        cover_naive += lo_n <= 0.0 <= hi_n
        cover_cluster += lo_c <= 0.0 <= hi_c
    ratio = np.mean(widths_cluster) / np.mean(widths_naive)
    # 8 near-copies per subject: the naive interval is about sqrt(8) ~ 2.8 times too narrow
    assert 2.2 < ratio < 3.4
    assert cover_cluster / n_rep >= 0.85       # nominal 0.95 (percentile, 20 clusters)
    assert cover_naive / n_rep <= 0.65         # far below nominal


def test_bootstrap_is_seeded_and_one_cluster_has_no_spread():
    x, subjects = _clustered(0)
    assert bootstrap_ci(x, subjects, seed=4) == bootstrap_ci(x, subjects, seed=4)
    assert bootstrap_ci(x, subjects, seed=4) != bootstrap_ci(x, subjects, seed=5)
    mean, lo, hi = bootstrap_ci([1.0, 2.0, 3.0], ["a", "a", "a"])
    assert mean == lo == hi == 2.0


def test_stratified_draws_keep_each_stratum_size():
    clusters = ["a", "a", "b", "c", "d", "d", "e"]
    strata = ["x", "x", "x", "y", "y", "y", "y"]
    r = Resampler(clusters, strata=strata)
    assert r.n_units == 5
    w = next(r.weights(300, seed=0))
    assert w.shape == (300, 5)
    np.testing.assert_array_equal(w[:, :2].sum(axis=1), 2)   # units a, b of stratum x
    np.testing.assert_array_equal(w[:, 2:].sum(axis=1), 3)   # units c, d, e of stratum y


def test_weighted_auc_matches_duplicated_rows():
    from sklearn.metrics import roc_auc_score

    score = np.array([0.9, 0.4, 0.5, 0.1, 0.5])
    pos = np.array([True, True, False, False, True])
    num, den = weighted_auc(score, pos, np.ones((1, 5)))
    assert num[0] / den[0] == pytest.approx(roc_auc_score(pos, score))
    w = np.array([[2.0, 0.0, 1.0, 3.0, 1.0]])
    rep = np.repeat(np.arange(5), w[0].astype(int))
    num, den = weighted_auc(score, pos, w)
    assert num[0] / den[0] == pytest.approx(roc_auc_score(pos[rep], score[rep]))


def _es(case, value, *, trial, scheduler="random", batch=0, shared=None, sim=None, **cfg):
    rows = [dict(case_id=case, batch=batch, step=batch, metric="ES", value=value, trial=trial,
                 scheduler=scheduler, **cfg)]
    for metric, v in (("same_subject_in_batch", shared), ("max_sim:x", sim)):
        if v is not None:
            rows.append(dict(case_id=case, batch=batch, step=batch, suite="correlation",
                             prompt_kind="case", metric=metric, value=v, trial=trial,
                             scheduler=scheduler, **cfg))
    return rows


def test_case_units_follow_subjects_across_trials():
    rows = _es("a", 1.0, trial="t1") + _es("a", 0.0, trial="t2") + _es("b", 1.0, trial="t1")
    t = case_scores(attach_subjects(tidy_frame(rows), {"a": "Paris", "b": "Paris"}))
    labels, unit = case_units(t)
    assert unit == "subject" and set(labels) == {"subject:Paris"}
    labels, unit = case_units(case_scores(tidy_frame(rows)))
    assert unit == "case" and sorted(set(labels)) == ["case:a", "case:b"]


def test_repeated_trials_do_not_narrow_the_interval():
    rng = np.random.default_rng(0)
    es = rng.random(30) < 0.5
    one = [r for i, v in enumerate(es) for r in _es(str(i), float(v), trial="t0")]
    eight = [r for k in range(8) for i, v in enumerate(es) for r in _es(str(i), float(v),
                                                                         trial=f"t{k}")]
    g1 = grouped_scores(tidy_frame(one), metrics=["ES"], by=(), n_boot=500).iloc[0]
    g8 = grouped_scores(tidy_frame(eight), metrics=["ES"], by=(), n_boot=500).iloc[0]
    assert g8["n"] == 240 and g8["n_units"] == 30 and g8["unit"] == "case"
    assert (g8["hi"] - g8["lo"]) == pytest.approx(g1["hi"] - g1["lo"], rel=0.05)


def test_scheduler_differences_are_paired_on_cases():
    rows = []
    for i in range(12):  # a large per-case effect shared by both schedulers: pairing removes it
        base = 1.0 if i < 6 else 0.0
        rows += _es(str(i), base, trial="c", scheduler="correlated")
        rows += _es(str(i), base if i % 3 else 1.0, trial="d", scheduler="decorrelated")
    df = attach_subjects(tidy_frame(rows), {str(i): f"s{i // 2}" for i in range(12)})
    out = scheduler_differences(df, metrics=["ES"], n_boot=400)
    row = out.iloc[0]
    assert (row["scheduler"], row["reference"]) == ("correlated", "decorrelated")
    assert row["diff"] == pytest.approx(-100.0 * 2 / 12)      # cases 6 and 9 lost
    assert row["n_cases"] == 12 and row["n_units"] == 6 and row["unit"] == "subject"
    assert row["lo"] <= row["diff"] <= row["hi"] <= 0.0
    assert default_reference(["random", "decorrelated_greedy", "correlated"]) == \
        "decorrelated_greedy"


def test_score_difference_is_computed_within_schedulers():
    # scheduler A: every related edit fails, but so does every lone one; scheduler B: all
    # succeed. Pooled, related edits (mostly in A) look worse; within each scheduler SD = 0.
    rows = []
    for sched, value, n_related in (("A", 0.0, 6), ("B", 1.0, 2)):
        for i in range(8):
            shared = 1.0 if i < n_related else 0.0
            rows += _es(f"{i}", value, trial=sched, scheduler=sched, shared=shared)
    df = tidy_frame(rows)
    within = score_difference(df, metrics=["ES"], n_boot=200).iloc[0]
    assert within["diff"] == 0.0 and within["n_strata"] == 2
    per = score_difference(df, by=("editor", "scheduler"), metrics=["ES"], n_boot=0)
    assert per["diff"].tolist() == [0.0, 0.0]


def test_score_difference_curve_bins_related_counts():
    assert related_bins(8) == [(2, 2), (3, 4), (5, 8)]
    assert related_bins(1) == []
    rows = []
    for i, (shared, value) in enumerate([(0, 1.0), (0, 1.0), (1, 1.0), (1, 0.0), (2, 0.0),
                                         (3, 0.0), (3, 0.0)]):
        rows += _es(str(i), value, trial="t", shared=float(shared))
    out = score_difference_curve(tidy_frame(rows), metrics=["ES"], n_boot=100)
    assert out["related"].tolist() == ["2", "3-4"]
    assert out["diff"].tolist() == [-50.0, -100.0]
    assert out["n_related"].tolist() == [2, 3] and (out["n_alone"] == 2).all()


def test_interference_auc_is_stratified_with_interval():
    # scheduler "hi" makes edits both more similar and likelier to fail; within each
    # scheduler similarity predicts failure worse than chance. Pooling hides that.
    rows = []
    for sched, base, es_values in (("lo", 0.1, [0.0, 1.0, 0.0, 1.0]),
                                   ("hi", 0.8, [0.0, 0.0, 0.0, 1.0])):
        for i, es in enumerate(es_values):
            rows += _es(f"{sched}{i}", es, trial=sched, scheduler=sched,
                        sim=base + 0.05 * (i // 2))
    df = tidy_frame(rows)
    out = interference_auc(df, n_boot=200).iloc[0]
    # stratum lo: failed {.1, .15} vs succeeded {.1, .15} -> 2 of 4 pairs
    # stratum hi: failed {.8, .8, .85} vs succeeded {.85} -> 0.5 of 3 pairs
    assert out["auc"] == pytest.approx(2.5 / 7.0)
    assert interference_roc_curve(df)["auc"].iloc[0] == pytest.approx(0.5667, abs=1e-3)
    assert out["n_strata"] == 2 and out["lo"] <= out["auc"] <= out["hi"]
