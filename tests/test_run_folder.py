"""Run folders under mistakes and accidents: late config errors, a missing device, two
runs at once, a damaged trial file, an oversized batch and Ctrl-C."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from test_runner import config_text, make_fixture

from corredit.config import load_config
from corredit.results import RunFolder, RunFolderBusy
from corredit.runner import Runner, run_experiment


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return make_fixture(tmp_path_factory.mktemp("folder-fixture"))


def _config(fx, tmp_path, name="run.toml", **kw):
    text = config_text(fx, schedulers=["random"], batch_sizes=kw.pop("batch_sizes", [6])).split(
        '[[editors]]\nname = "rome"')[0]
    for old, new in kw.get("replace", {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@pytest.fixture(scope="module")
def good_run(fx, tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    cfg = _config(fx, root)
    return cfg, root / "out", run_experiment(cfg, root / "out")


@pytest.mark.parametrize("replace, words", [
    ({"v_num_grad_steps = 6 }": "v_num_grad_steps = 6, colour = 1 }"}, "colour"),
    ({"layers = [0]": "layers = [99]"}, "layer 99"),
    ({'model = "': 'model = "/no/such/model/'}, "no/such/model"),
    ({'source = "': 'source = "/no/such/'}, "/no/such/"),
    ({'corpus = "': 'corpus = "/no/such/'}, "stats.corpus"),
])
def test_late_config_errors_write_nothing_and_the_fixed_config_runs(fx, tmp_path, replace,
                                                                    words):
    bad = _config(fx, tmp_path, "bad.toml", replace=replace)
    out = tmp_path / "out"
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        Runner(bad, out).run()
    assert words in str(info.value)
    assert not (out / "config.json").exists()


def test_a_folder_without_finished_trials_is_reused(fx, tmp_path, good_run):
    cfg, _, rows = good_run
    out = tmp_path / "out"
    RunFolder(out).write_config({**cfg.replace(seeds=(5,)).to_dict(), "code_version": "x"})
    (out / "edits.jsonl").write_text("")
    pd.testing.assert_frame_equal(run_experiment(cfg, out), rows)
    assert json.loads((out / "config.json").read_text())["seeds"] == [0]
    with pytest.raises(ValueError, match="another configuration"):   # now it holds a trial
        run_experiment(cfg.replace(seeds=(5,)), out)


def test_a_missing_device_is_a_clear_early_error(fx, tmp_path):
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    cfg = _config(fx, tmp_path).replace(device="cuda:7")
    with pytest.raises(ValueError, match="'cuda:7' is not available"):
        Runner(cfg, tmp_path / "out").run()
    assert not (tmp_path / "out").exists()


def test_a_second_run_into_a_busy_folder_is_refused(fx, tmp_path, capsys):
    from corredit.cli import main

    cfg = _config(fx, tmp_path)
    out = tmp_path / "out"
    with RunFolder(out).lock():
        with pytest.raises(RunFolderBusy, match="another run is writing"):
            Runner(cfg, out).run()
        assert main(["run", str(tmp_path / "run.toml"), "--out", str(out)]) == 2
    assert "another run is writing to this folder" in capsys.readouterr().err
    assert not (out / "config.json").exists()


def test_an_empty_or_cut_trial_file_is_run_again(good_run, tmp_path):
    import shutil

    cfg, out, rows = good_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (trial,) = [p for p in (copy / "trials").glob("*.parquet")]
    data = trial.read_bytes()
    for damaged in (b"", data[: len(data) // 2]):
        trial.write_bytes(damaged)
        assert RunFolder(copy).finished_trials() == set()
        pd.testing.assert_frame_equal(run_experiment(cfg, copy), rows)
    events = [json.loads(x) for x in (copy / "log.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "trial_start" for e in events) == 3


def test_an_oversized_batch_warns_and_rows_say_what_ran(fx, tmp_path, caplog):
    cfg = _config(fx, tmp_path, batch_sizes=[100])
    with caplog.at_level(logging.WARNING):
        rows = run_experiment(cfg, tmp_path / "out")
    assert "batch size 100 exceeds its 12 edits" in caplog.text
    assert set(rows["batch_size"]) == {12}


def test_ctrl_c_prints_one_line_and_exits_130(fx, tmp_path, capsys, monkeypatch):
    from corredit.cli import main

    _config(fx, tmp_path)

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "run", interrupted)
    assert main(["run", str(tmp_path / "run.toml"), "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "Traceback" not in err


def test_data_problems_are_loud_or_stop_a_strict_run(tmp_path, capsys):
    import json as _json

    from corredit.config import DataConfig, EditorConfig, RunConfig
    from corredit.data import DataError
    from corredit.runner.inputs import RunInputs

    good = {"case_id": "1", "subject": "Paris", "relation_id": "r", "prompt": "{} is in",
            "target_new": "Italy", "target_true": "France"}
    bad = dict(good, case_id="2", prompt="no placeholder here")
    path = tmp_path / "edits.jsonl"
    path.write_text(_json.dumps(good) + "\n" + _json.dumps(bad) + "\n")
    for strict in (False, True):
        cfg = RunConfig(name="d", model="world", data=DataConfig(source=str(path), strict=strict),
                        editors=(EditorConfig(name="ft-l"),))
        inputs = RunInputs(cfg, tmp_path / f"run-{strict}")
        if strict:
            with pytest.raises(DataError):
                inputs.raw_requests()
        else:
            assert [r.case_id for r in inputs.raw_requests()] == ["1"]
            assert "set aside" in capsys.readouterr().err


def test_a_finished_run_written_before_an_option_existed_resumes(good_run, tmp_path):
    """A config.json lacking an option added later (here ``health.clean``) is read with
    that option at its default: the finished run resumes instead of being refused."""
    import shutil

    cfg, out0, rows = good_run
    out = tmp_path / "copy"
    shutil.copytree(out0, out)
    record = json.loads((out / "config.json").read_text())
    del record["health"]["clean"]
    (out / "config.json").write_text(json.dumps(record))
    pd.testing.assert_frame_equal(run_experiment(cfg, out), rows)
    with pytest.raises(ValueError, match="another configuration"):
        run_experiment(cfg.replace(seeds=(5,)), out)


def test_adding_seeds_extends_a_finished_run(good_run, tmp_path):
    """A config that only adds seeds keeps the folder's finished trials and runs the new
    seeds' trials, whose rows are those of a run of the new seed alone."""
    import shutil

    cfg, out0, rows = good_run
    out = tmp_path / "copy"
    shutil.copytree(out0, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*.parquet")}
    n_events = len((out / "log.jsonl").read_text().splitlines())
    both = run_experiment(cfg.replace(seeds=(0, 1)), out)
    new = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()[n_events:]]
    started = [e["trial"] for e in new if e["event"] == "trial_start"]
    assert started and all(t.endswith("-s1") for t in started)
    assert [e["seeds"] for e in new if e["event"] == "seeds_added"] == [[1]]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*.parquet")
            if p.name in stamps} == stamps
    assert json.loads((out / "config.json").read_text())["seeds"] == [0, 1]
    key = ["trial", "case_id", "suite", "metric", "prompt_kind", "prompt_index", "step"]
    old = both[both["seed"] == 0].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(old, rows.sort_values(key).reset_index(drop=True))
    alone = run_experiment(cfg.replace(seeds=(1,)), tmp_path / "alone")
    pd.testing.assert_frame_equal(both[both["seed"] == 1].sort_values(key).reset_index(drop=True),
                                  alone.sort_values(key).reset_index(drop=True))
    # dropping or reordering seeds is another configuration
    for seeds in ((1,), (1, 0), (0,)):
        with pytest.raises(ValueError, match="another configuration .*seeds"):
            run_experiment(cfg.replace(seeds=seeds), out)


def test_health_texts_are_cleaned_as_named(tmp_path):
    from corredit.stats.sources import read_texts

    path = tmp_path / "wiki.txt"
    path.write_text(" = Title = \n a 2 @-@ part arc , he said \n\n", encoding="utf-8")
    assert read_texts(str(path), "heldout") == [" = Title = ", " a 2 @-@ part arc , he said "]
    assert read_texts(str(path), "heldout", "wikitext") == ["a 2-part arc, he said"]
    with pytest.raises(ValueError, match="unknown cleaner 'nope'"):
        read_texts(str(path), "heldout", "nope")


def test_an_unknown_cleaner_is_a_config_error_before_anything_is_written(fx, tmp_path):
    import dataclasses

    cfg = _config(fx, tmp_path)
    for section in ("stats", "health"):
        bad = cfg.replace(**{section: dataclasses.replace(getattr(cfg, section), clean="nope")})
        out = tmp_path / f"out-{section}"
        with pytest.raises(ValueError, match=rf"{section}\.clean: unknown cleaner 'nope'"):
            Runner(bad, out).run()
        assert not (out / "config.json").exists()
