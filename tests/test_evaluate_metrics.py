"""Probability-suite metrics on hand-made NLLs (no model)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from corredit.evaluate.metrics import (
    harmonic_mean,
    probability_rows,
    prompt_metrics,
    summarize_probability,
)


def test_rewrite_scores_and_magnitudes():
    m = prompt_metrics("rewrite", nll_true=[2.0, 0.5, 1.0], nll_new=[0.5, 2.0, 1.0])
    np.testing.assert_array_equal(m["ES"], [1.0, 0.0, 0.0])  # a tie is not a success
    np.testing.assert_allclose(m["EM"], [math.exp(-0.5) - math.exp(-2.0),
                                         math.exp(-2.0) - math.exp(-0.5), 0.0])


def test_paraphrase_uses_ps_names():
    m = prompt_metrics("paraphrase", nll_true=[3.0], nll_new=[1.0])
    assert set(m) == {"PS", "PM"}
    assert m["PS"][0] == 1.0
    assert m["PM"][0] == pytest.approx(math.exp(-1.0) - math.exp(-3.0))


def test_neighborhood_is_reversed():
    m = prompt_metrics("neighborhood", nll_true=[0.5, 2.0], nll_new=[2.0, 0.5])
    np.testing.assert_array_equal(m["NS"], [1.0, 0.0])  # the true object must stay ahead
    np.testing.assert_allclose(m["NM"], [math.exp(-0.5) - math.exp(-2.0),
                                         math.exp(-2.0) - math.exp(-0.5)])


def test_prompt_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown prompt kind"):
        prompt_metrics("generation", [1.0], [1.0])
    with pytest.raises(ValueError, match="shape"):
        prompt_metrics("rewrite", [1.0, 2.0], [1.0])


def _rows():
    # case a: rewrite succeeds, 1 of 2 paraphrases, 2 of 2 neighbours
    # case b: rewrite fails, 4 paraphrases all succeed, 1 of 4 neighbours
    cases, kinds, idx, t, n = [], [], [], [], []

    def add(case, kind, nll_true, nll_new):
        for i, (a, b) in enumerate(zip(nll_true, nll_new)):
            cases.append(case), kinds.append(kind), idx.append(i), t.append(a), n.append(b)

    add("a", "rewrite", [2.0], [1.0])
    add("a", "paraphrase", [2.0, 1.0], [1.0, 2.0])
    add("a", "neighborhood", [1.0, 1.0], [2.0, 3.0])
    add("b", "rewrite", [1.0], [2.0])
    add("b", "paraphrase", [2.0] * 4, [1.0] * 4)
    add("b", "neighborhood", [1.0, 3.0, 3.0, 3.0], [2.0, 1.0, 1.0, 1.0])
    return probability_rows(cases, kinds, idx, t, n)


def test_rows_are_tidy():
    df = _rows()
    assert list(df.columns) == ["case_id", "prompt_kind", "prompt_index", "metric", "value",
                                "suite"]
    assert (df["suite"] == "probability").all()
    # 14 prompts x (score, magnitude, nll_true, nll_new)
    assert len(df) == 14 * 4
    row = df[(df.case_id == "b") & (df.prompt_kind == "neighborhood") & (df.prompt_index == 1)
             & (df.metric == "NS")]
    assert row["value"].tolist() == [0.0]
    nll = df[(df.case_id == "a") & (df.prompt_kind == "paraphrase") & (df.metric == "nll_new")]
    assert sorted(nll["value"]) == [1.0, 2.0]


def test_summary_averages_within_case_then_across_cases():
    s = summarize_probability(_rows())
    assert s["ES"] == pytest.approx(50.0)
    # per case: a 0.5, b 1.0 -> 75 (pooling prompts would give 5/6 = 83.3)
    assert s["PS"] == pytest.approx(75.0)
    # per case: a 1.0, b 0.25 -> 62.5 (pooled: 3/6 = 50)
    assert s["NS"] == pytest.approx(62.5)
    assert s["S"] == pytest.approx(3 / (1 / 50 + 1 / 75 + 1 / 62.5))
    em_a = math.exp(-1) - math.exp(-2)
    assert s["EM"] == pytest.approx(100 * (em_a - em_a) / 2)
    assert s["n_cases"] == 2


def test_summary_by_group_and_suite_filter():
    a = _rows().assign(step=0)
    b = _rows().assign(step=1)
    b.loc[b.metric == "ES", "value"] = 1.0
    other = _rows().assign(step=0, suite="teacher_forced", value=0.0)
    out = summarize_probability(pd.concat([a, b, other]), by=["step"])
    assert out["step"].tolist() == [0, 1]
    assert out["ES"].tolist() == pytest.approx([50.0, 100.0])


def test_missing_kind_gives_nan_score():
    df = _rows()
    s = summarize_probability(df[df.prompt_kind != "neighborhood"])
    assert math.isnan(s["NS"]) and math.isnan(s["S"])
    assert s["ES"] == pytest.approx(50.0)


def test_harmonic_mean():
    assert harmonic_mean([50.0, 100.0]) == pytest.approx(200 / 3)
    assert harmonic_mean([0.0, 100.0]) == 0.0
    assert math.isnan(harmonic_mean([]))
    assert math.isnan(harmonic_mean([1.0, float("nan")]))
