"""Numbers behind the figures: per-case scores, bins, bootstrap CIs, Score Difference,
ROC-AUC, retention and health, on hand-made tables with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from corredit.plots.compute import (
    bin_edges,
    binned_scores,
    bootstrap_ci,
    case_measures,
    case_scores,
    correlation_measures,
    grouped_scores,
    harmonic_mean,
    has_retention,
    health_table,
    interference_auc,
    interference_roc_curve,
    retention_curve,
    score_difference,
    suite_table,
    summary_table,
)
from corredit.plots.network import community_labels, community_order, largest_communities_subgraph
from corredit.plots.testing import synthetic_results, tidy_frame


def _case(case: str, es: float, *, ps=(), ns=(), batch: int = 0, step: int | None = None,
          **cfg) -> list[dict]:
    step = batch if step is None else step
    rows = [dict(case_id=case, batch=batch, step=step, metric="ES", value=es, **cfg)]
    rows += [dict(case_id=case, batch=batch, step=step, prompt_kind="paraphrase",
                  prompt_index=i, metric="PS", value=v, **cfg) for i, v in enumerate(ps)]
    rows += [dict(case_id=case, batch=batch, step=step, prompt_kind="neighborhood",
                  prompt_index=i, metric="NS", value=v, **cfg) for i, v in enumerate(ns)]
    return rows


def _measure(case: str, metric: str, value: float, batch: int = 0, **cfg) -> dict:
    return dict(case_id=case, batch=batch, step=batch, prompt_kind="case", suite="correlation",
                metric=metric, value=value, **cfg)


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return synthetic_results(n_cases=60, sequential_cases=16, seed=1)


# -- statistics --------------------------------------------------------------------------

def test_bootstrap_ci_mean_interval_and_seed():
    mean, lo, hi = bootstrap_ci([0, 1, 1, 1, np.nan], n_boot=2000, seed=3)
    assert mean == pytest.approx(0.75)
    assert 0.0 <= lo < 0.75 < hi <= 1.0
    assert bootstrap_ci([0, 1, 1, 1], n_boot=2000, seed=3) == (mean, lo, hi)
    assert bootstrap_ci([5.0]) == (5.0, 5.0, 5.0)
    assert all(math.isnan(v) for v in bootstrap_ci([np.nan]))
    with pytest.raises(ValueError, match="ci=1.5"):
        bootstrap_ci([1, 2], ci=1.5)


def test_bootstrap_ci_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.random(20), seed=0)
    large = bootstrap_ci(rng.random(2000), seed=0)
    assert (large[2] - large[1]) < (small[2] - small[1]) / 4


def test_harmonic_mean_and_bin_edges():
    assert harmonic_mean(np.array([50.0, 100.0, 50.0])) == pytest.approx(60.0)
    assert harmonic_mean(np.array([0.0, 100.0, 50.0])) == 0.0
    assert math.isnan(harmonic_mean(np.array([np.nan, 100.0, 50.0])))
    np.testing.assert_allclose(bin_edges([0, 1, 2, 3], 2), [0.0, 1.5, 3.0])
    np.testing.assert_allclose(bin_edges([2, 2, 2], 4), [2.0, 2.0])
    np.testing.assert_allclose(bin_edges([0, 1, 10], 2, binning="uniform"), [0, 5, 10])
    with pytest.raises(ValueError, match="no non-NaN"):
        bin_edges([np.nan], 3)


# -- per-case tables ------------------------------------------------------------------------

def test_case_scores_average_prompts_and_skip_unedited_rows():
    df = tidy_frame(_case("a", 1.0, ps=(1.0, 0.0), ns=(1.0, 1.0, 0.0, 0.0))
                    + _case("a", 0.0, step=-1, batch=0))
    t = case_scores(df)
    assert len(t) == 1
    row = t.iloc[0]
    assert (row["ES"], row["PS"], row["NS"]) == (1.0, 0.5, 0.5)
    assert row["editor"] == "rome" and row["batch_size"] == 1


def test_case_scores_final_takes_last_step_per_metric():
    df = tidy_frame(_case("a", 1.0, ps=(1.0,), batch=0, step=0)
                    + [dict(case_id="a", batch=0, step=3, metric="ES", value=0.0)])
    final = case_scores(df, when="final").iloc[0]
    assert (final["ES"], final["PS"]) == (0.0, 1.0)
    assert case_scores(df, when="immediate").iloc[0]["ES"] == 1.0
    assert sorted(case_scores(df, when="all")["step"]) == [0, 3]
    with pytest.raises(ValueError, match="when='later'"):
        case_scores(df, when="later")


def test_case_measures_refuses_conflicting_values():
    df = tidy_frame([_measure("a", "max_sim:x", 0.5), _measure("a", "max_sim:x", 0.5),
                     _measure("b", "max_sim:x", 0.1), _measure("b", "max_sim:x", 0.2)])
    with pytest.raises(ValueError, match=r"case 'b' measure 'max_sim:x' has 2 different"):
        case_measures(df)
    ok = case_measures(df[df["case_id"] == "a"])
    assert ok["max_sim:x"].tolist() == [0.5]


def test_correlation_measures_skip_all_nan_measures():
    df = tidy_frame([_measure("a", "max_sim:x", 0.5), _measure("a", "max_sim:y", np.nan),
                     _measure("a", "mean_sim:x", 0.2)])
    assert correlation_measures(df) == ["max_sim:x"]
    assert correlation_measures(df, "mean_sim:") == ["mean_sim:x"]


def test_summary_table_hand_made():
    rows = (_case("a", 1.0, ps=(1.0,), ns=(1.0,)) + _case("b", 0.0, ps=(1.0,), ns=(0.0,))
            + _case("c", 1.0, ps=(0.0,), ns=(1.0,), editor="memit", trial="t2"))
    t = summary_table(tidy_frame(rows, batch_size=2))
    assert list(t.columns) == ["editor", "scheduler", "batch_size", "n", "ES", "PS", "NS", "S"]
    rome = t[t["editor"] == "rome"].iloc[0]
    assert (rome["n"], rome["ES"], rome["PS"], rome["NS"]) == (2, 50.0, 100.0, 50.0)
    assert rome["S"] == pytest.approx(60.0)
    memit = t[t["editor"] == "memit"].iloc[0]
    assert memit["S"] == 0.0 and memit["n"] == 1


def test_summary_table_splits_by_mode_only_when_it_varies():
    rows = _case("a", 1.0) + _case("b", 0.0, mode="sequential", trial="t2")
    t = summary_table(tidy_frame(rows))
    assert list(t.columns[:4]) == ["mode", "editor", "scheduler", "batch_size"]
    assert t.set_index("mode")["ES"].to_dict() == {"batch": 100.0, "sequential": 0.0}
    assert summary_table(tidy_frame([], )).empty


def test_suite_table_keeps_suites_apart():
    rows = _case("a", 1.0) + [dict(case_id="a", suite="zsre", prompt_kind="rewrite",
                                   metric="efficacy", value=0.25)]
    t = suite_table(tidy_frame(rows), "zsre")
    assert t["efficacy"].tolist() == [0.25] and "ES" not in t
    assert suite_table(tidy_frame(rows), "multihop").empty


# -- figures' numbers -----------------------------------------------------------------------

def test_binned_scores_hand_made():
    rows = []
    for case, sim, es in [("a", 0.1, 1.0), ("b", 0.2, 1.0), ("c", 0.8, 0.0), ("d", 0.9, 1.0)]:
        rows += _case(case, es, ps=(es,), ns=(1.0,)) + [_measure(case, "max_sim:x", sim)]
    rows += _case("e", 0.0) + [_measure("e", "max_sim:x", np.nan)]  # batch of one: not binned
    out = binned_scores(tidy_frame(rows), "max_sim:x", metrics=["ES"], n_bins=2, n_boot=500)
    assert out["bin"].tolist() == [0, 1]
    np.testing.assert_allclose(out["mean"], [100.0, 50.0])
    np.testing.assert_allclose(out["x"], [0.15, 0.85])
    np.testing.assert_allclose(out["bin_low"], [0.1, 0.5])
    assert out["n"].tolist() == [2, 2]
    assert (out["lo"] <= out["mean"]).all() and (out["mean"] <= out["hi"]).all()


def test_binned_scores_errors_name_the_measure():
    df = tidy_frame(_case("a", 1.0) + [_measure("a", "max_sim:x", np.nan)])
    with pytest.raises(ValueError, match="'max_sim:y'.*present"):
        binned_scores(df, "max_sim:y")
    with pytest.raises(ValueError, match="NaN for every case"):
        binned_scores(df, "max_sim:x")


def test_binned_scores_recover_planted_interference(synthetic):
    out = binned_scores(synthetic, "max_sim:minilm", n_bins=4, n_boot=300, seed=0)
    for (editor, metric), g in out.groupby(["editor", "metric"]):
        assert (g["lo"] <= g["mean"] + 1e-9).all() and (g["mean"] <= g["hi"] + 1e-9).all()
        if metric == "ES":  # P(ES) = 0.95 - 0.8 sim (minus a same-subject penalty)
            assert g["mean"].iloc[0] - g["mean"].iloc[-1] > 30, editor
    assert out.groupby("editor")["n"].sum().min() > 0


def test_grouped_scores_per_scheduler():
    rows = (_case("a", 1.0, scheduler="random") + _case("b", 1.0, scheduler="random")
            + _case("a", 0.0, scheduler="community", trial="t2")
            + _case("b", 1.0, scheduler="community", trial="t2"))
    out = grouped_scores(tidy_frame(rows), metrics=["ES"], by=("scheduler",), n_boot=200)
    got = out.set_index("scheduler")
    assert got.loc["random", "mean"] == 100.0 and got.loc["random", "lo"] == 100.0
    assert got.loc["community", "mean"] == 50.0 and got.loc["community", "n"] == 2
    assert got.loc["community", "lo"] <= 50.0 <= got.loc["community", "hi"]


def _score_difference_rows(editor: str = "rome") -> list[dict]:
    rows = []
    # a, b share a subject (1 other edit in the batch); c, d stand alone
    for case, es, ps, shared in [("a", 1.0, 0.0, 1), ("b", 0.0, 0.0, 1),
                                 ("c", 1.0, 1.0, 0), ("d", 1.0, 1.0, 0)]:
        rows += _case(case, es, ps=(ps,), ns=(1.0,), editor=editor, trial=editor)
        rows.append(_measure(case, "same_subject_in_batch", shared, editor=editor, trial=editor))
    return rows


def test_score_difference_hand_made():
    out = score_difference(tidy_frame(_score_difference_rows()), n_boot=500, seed=0)
    got = out.set_index("metric")
    assert got.loc["ES", "shared"] == 50.0 and got.loc["ES", "alone"] == 100.0
    assert got.loc["ES", "diff"] == -50.0
    assert got.loc["PS", "diff"] == -100.0 and got.loc["NS", "diff"] == 0.0
    assert got.loc["S", "diff"] == -100.0  # PS = 0 makes the shared group's S zero
    assert got.loc["ES", "lo"] <= -50.0 <= got.loc["ES", "hi"]
    assert (got["n_shared"] == 2).all() and (got["n_alone"] == 2).all()
    assert (got["note"] == "").all()


def test_score_difference_one_sided_group_gets_note():
    rows = [r for r in _score_difference_rows() if r["case_id"] in ("c", "d")]
    out = score_difference(tidy_frame(rows), metrics=["ES"])
    assert math.isnan(out["diff"].iloc[0])
    assert "no edit shares its subject" in out["note"].iloc[0]
    with pytest.raises(ValueError, match="same_subject_in_batch"):
        score_difference(tidy_frame(_case("a", 1.0)))


def test_score_difference_sign_on_planted_penalty(synthetic):
    out = score_difference(synthetic, metrics=["ES", "S"], n_boot=300)
    assert (out["diff"] < -5).all()


def _roc_rows(es_values, sims, editor="rome") -> list[dict]:
    rows = []
    for i, (es, sim) in enumerate(zip(es_values, sims)):
        rows += _case(str(i), es, editor=editor, trial=editor)
        rows.append(_measure(str(i), "max_sim:x", sim, editor=editor, trial=editor))
    return rows


def test_interference_auc_hand_made_and_single_class():
    rows = _roc_rows([0.0, 0.0, 1.0, 1.0], [0.9, 0.4, 0.5, 0.1])
    rows += _roc_rows([1.0, 1.0], [0.9, 0.1], editor="memit")
    out = interference_auc(tidy_frame(rows)).set_index("editor")
    assert out.loc["rome", "auc"] == pytest.approx(0.75)  # 3 of 4 failed/succeeded pairs ordered
    assert out.loc["rome", "n"] == 4 and out.loc["rome", "n_failed"] == 2
    assert out.loc["rome", "embedding"] == "x"
    assert math.isnan(out.loc["memit", "auc"])
    assert "only one class: all 2 edits succeeded" in out.loc["memit", "note"]
    curve = interference_roc_curve(tidy_frame(rows))
    assert set(curve["editor"]) == {"rome"}
    assert (curve[["fpr", "tpr"]].iloc[-1] == [1.0, 1.0]).all()
    assert curve["auc"].iloc[0] == pytest.approx(0.75)


def test_interference_auc_without_measures_raises():
    with pytest.raises(ValueError, match="max_sim"):
        interference_auc(tidy_frame(_case("a", 1.0)))


def test_retention_curve_hand_made():
    rows = [dict(case_id="0", batch=0, step=0, value=1.0), dict(case_id="0", batch=0, step=1, value=0.0),
            dict(case_id="1", batch=1, step=1, value=1.0)]
    df = tidy_frame(rows, mode="sequential")
    assert has_retention(df)
    out = retention_curve(df, n_boot=100)
    assert out["age"].tolist() == [0.0, 1.0]
    assert out["mean"].tolist() == [100.0, 0.0] and out["n"].tolist() == [2, 1]
    with pytest.raises(ValueError, match="no sequential trial"):
        retention_curve(tidy_frame(_case("a", 1.0)))
    assert not has_retention(tidy_frame(_case("a", 1.0)))


def test_retention_curve_pools_ages_and_decays(synthetic):
    out = retention_curve(synthetic, by=("editor",), max_points=5, n_boot=100)
    assert out.groupby("editor").size().tolist() == [5, 5]
    for _, g in out.groupby("editor"):
        assert g["mean"].iloc[0] > g["mean"].iloc[-1] + 30
        assert g["n"].sum() == 16 * 17 // 2


def test_health_table_hand_made():
    rows = [dict(case_id="", prompt_kind="model", suite="health", metric="perplexity", step=s,
                 batch=s, value=v) for s, v in [(-1, 10.0), (0, 12.0), (1, 11.0)]]
    rows += [dict(case_id="", prompt_kind="w", suite="health", metric="norm_growth", step=s,
                  batch=s, value=v) for s, v in [(0, 1.5), (1, 1.2)]]
    out = health_table(tidy_frame(rows)).iloc[0]
    assert (out["perplexity_before"], out["perplexity_after"], out["perplexity_max"],
            out["norm_growth_max"], out["trials"]) == (10.0, 11.0, 12.0, 1.5, 1)
    assert health_table(tidy_frame(_case("a", 1.0))).empty


def test_community_order_and_subgraph():
    assert community_order([1, 0, 1, 2]).tolist() == [0, 2, 1, 3]
    assert community_labels([{"b", "c"}, {"a"}], ["a", "b", "c", "z"]).tolist() == [1, 0, 0, 2]
    nx = pytest.importorskip("networkx")
    g = nx.complete_graph(6)
    sub, kept = largest_communities_subgraph(g, [{0, 1, 2}, {3, 4}, {5}], max_nodes=5)
    assert sorted(sub.nodes) == [0, 1, 2, 3, 4] and len(kept) == 2
