"""Run folders: schema validation, atomic trial files, resume bookkeeping."""

from __future__ import annotations

import pandas as pd
import pytest

from corredit.results import CONFIG_COLUMNS, RESULT_COLUMNS, RunFolder, validate_rows


def _rows(trial: str, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "run": "r", "trial": trial, "step": 0, "batch": range(n), "case_id": [str(i) for i in range(n)],
        "prompt_kind": "rewrite", "prompt_index": 0, "suite": "probability", "metric": "ES",
        "value": [1.0, 0.0, 1.0][:n], "model": "m", "dataset": "d", "editor": "rome",
        "mode": "sequential", "scheduler": "random", "batch_size": 1, "seed": 0,
        "code_version": "0.1.0", "extra": "kept",
    })


def test_validate_rows_orders_columns_and_keeps_extras():
    out = validate_rows(_rows("t"))
    assert list(out.columns) == [*RESULT_COLUMNS, *CONFIG_COLUMNS, "extra"]
    assert out["value"].dtype == "float64" and str(out["batch_size"].dtype) == "int64"


def test_validate_rows_names_missing_columns():
    with pytest.raises(ValueError, match=r"trial x: missing result columns \['metric'\]"):
        validate_rows(_rows("t").drop(columns="metric"), source="trial x")


def test_validate_rows_names_column_that_does_not_cast():
    bad = _rows("t").assign(value=["a", "b", "c"])
    with pytest.raises(ValueError, match="column 'value'"):
        validate_rows(bad)


def test_trials_round_trip_and_resume_bookkeeping(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.write_config({"a": 1})
    assert run.finished_trials() == set()
    run.write_trial("t1", _rows("t1"), schedule=pd.DataFrame({"batch": [0], "position": [0],
                                                             "index": [0], "case_id": ["0"]}))
    run.write_trial("t2", _rows("t2", 2))
    assert run.finished_trials() == {"t1", "t2"}
    df = run.read_results()
    assert len(df) == 5 and set(df["trial"]) == {"t1", "t2"}
    assert list(run.read_schedules()["trial"]) == ["t1"]
    path = run.consolidate()
    assert len(pd.read_parquet(path)) == 5
    # no temporary files left behind
    assert not [p for p in (tmp_path / "run").rglob("*.tmp")]


def test_config_mismatch_refused(tmp_path):
    run = RunFolder(tmp_path)
    run.write_config({"a": 1})
    run.write_config({"a": 1})  # the same config: resume allowed
    with pytest.raises(ValueError, match="another configuration"):
        run.write_config({"a": 2})


def test_empty_run_reads_with_schema(tmp_path):
    df = RunFolder(tmp_path).read_results()
    assert df.empty and "value" in df.columns


def test_log_appends_json_lines(tmp_path):
    run = RunFolder(tmp_path)
    run.log("trial_done", trial="t1", seconds=1.5)
    run.log("trial_done", trial="t2", seconds=2.5)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"trial": "t2"' in lines[1]
