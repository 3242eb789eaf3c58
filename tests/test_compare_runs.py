"""analysis/compare_runs.py: two runs over the same edits, paired case by case."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "analysis" / "compare_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(folder: Path, es: dict[str, float], subjects: dict[str, str]) -> Path:
    """A run folder holding only results.parquet and edits.jsonl: ES per case."""
    folder.mkdir()
    rows = [{"run": folder.name, "trial": "rome-random-b1-s0", "step": i, "batch": i, "case_id": c,
             "prompt_kind": "rewrite", "prompt_index": 0, "suite": "probability", "metric": "ES",
             "value": v, "model": "m", "dataset": "d", "editor": "rome", "mode": "batch",
             "scheduler": "random", "batch_size": 1, "seed": 0, "code_version": "x"}
            for i, (c, v) in enumerate(es.items())]
    pd.DataFrame(rows).to_parquet(folder / "results.parquet")
    (folder / "edits.jsonl").write_text("".join(
        f'{{"case_id": "{c}", "subject": "{subjects[c]}", "relation_id": "P1", "prompt": "{{}} is", '
        f'"target_new": "x", "target_true": "y"}}\n' for c in es))
    return folder


def test_paired_difference_resamples_subjects_and_reports_unmatched_cases(tmp_path, compare):
    subjects = {"1": "A", "2": "A", "3": "B", "4": "C", "5": "D"}
    a = _run(tmp_path / "a", {"1": 1.0, "2": 1.0, "3": 1.0, "4": 0.0, "5": 1.0}, subjects)
    b = _run(tmp_path / "b", {"1": 0.0, "2": 0.0, "3": 1.0, "4": 1.0}, subjects)
    out = compare.compare_runs(str(a), str(b), metrics=["ES"], n_boot=500)
    assert out["unmatched"] == {"only_a": 1, "only_b": 0}
    (row,) = out["rows"]
    assert (row["cases"], row["subjects"]) == (4, 3)
    es = row["ES"]
    assert (es["a"], es["b"], es["b_minus_a"]) == (75.0, 50.0, -25.0)
    # subject A's two cases move together: resampling cases instead gives a narrower interval
    from corredit.analysis.bootstrap import bootstrap_ci

    _, lo_cases, hi_cases = bootstrap_ci([-100.0, -100.0, 0.0, 100.0], n_boot=500, seed=0)
    assert es["lo"] < -25.0 < es["hi"]
    assert es["hi"] - es["lo"] > hi_cases - lo_cases + 10


def test_two_editors_of_one_run_are_paired_on_the_same_edits(tmp_path, compare):
    subjects = {"1": "A", "2": "B", "3": "C"}
    folder = _run(tmp_path / "r", {"1": 1.0, "2": 0.0, "3": 0.0}, subjects)
    t = pd.read_parquet(folder / "results.parquet")
    other = t.assign(editor="memit-merge", trial="memit-merge-random-b1-s0", value=[1.0, 1.0, 0.0])
    pd.concat([t, other.iloc[:2]]).to_parquet(folder / "results.parquet")
    out = compare.compare_editors(str(folder), "rome", "memit-merge", metrics=["ES"], n_boot=200)
    assert out["unmatched"] == {"only_a": 1, "only_b": 0}
    (row,) = out["rows"]
    assert row["cases"] == 2 and row["ES"]["b_minus_a"] == 50.0
    with pytest.raises(ValueError, match="no cases of editor 'kn'"):
        compare.compare_editors(str(folder), "rome", "kn", metrics=["ES"])
