"""The demo: its packaged configurations, and `corredit demo --quick` end to end on the
embedded world (files, every scheduler and editor, the results schema)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from corredit.config import load_config
from corredit.demo import CONFIG_DIR, DEMO_CONFIG, QUICK_CONFIG, demo_config
from corredit.results import CONFIG_COLUMNS, RESULT_COLUMNS, validate_rows

SCHEDULERS = {"correlated", "random", "decorrelated", "same_subject_together"}


def test_demo_configs_cover_the_design():
    full, quick = demo_config(), demo_config(quick=True)
    assert DEMO_CONFIG.parent == QUICK_CONFIG.parent == CONFIG_DIR
    for cfg in (full, quick):
        cfg.check_names()
        assert cfg.model == "world" and cfg.data.source == "world"
        assert cfg.data.subject_first is True and cfg.data.min_facts_per_subject >= 3
        assert {(e.column, e.mode) for e in cfg.editors} == {
            ("memit", "batch"), ("rome", "sequential"), ("ft", "batch")}
        assert set(cfg.schedule.schedulers) == SCHEDULERS
        assert len(cfg.schedule.batch_sizes) == 2
        trials = cfg.trials()
        assert {(t.editor.column, t.scheduler) for t in trials} == {
            (e, s) for e in ("memit", "rome", "ft") for s in SCHEDULERS}
        assert {t.batch_size for t in trials if t.editor.column == "rome"} == {1}
    assert full.data.n_subjects * 3 >= 180          # a few hundred edits
    assert load_config(DEMO_CONFIG) == full


ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = sorted(CONFIG_DIR.glob("*.toml")) + sorted((ROOT / "analysis").glob("*.toml"))


@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: p.name)
def test_every_packaged_config_loads_names_registered_parts_and_quotes_its_command(path):
    cfg = load_config(path)
    cfg.check_names()
    assert cfg.trials(), f"{path.name}: no trials"
    text = path.read_text()
    where = path.resolve().relative_to(ROOT).as_posix() if path.resolve().is_relative_to(ROOT) \
        else f"corredit/configs/{path.name}"
    assert f"corredit run {where}" in text or "corredit demo" in text, (
        f"{path.name}: its header should quote the command that runs it")


def test_real_model_demo_and_study_configs_share_their_design():
    """The SmolLM2 demo is a reduced study: same model, data source, statistics and
    embedding; multi-fact subjects, known facts, paired schedulers; fewer of everything."""
    from corredit.demo import DEMO_CONFIGS

    demo = demo_config(model="smollm2-135m")
    study = load_config(CONFIG_DIR / "study-smollm2.toml")
    assert DEMO_CONFIGS["smollm2-135m"][0].parent == CONFIG_DIR
    for cfg in (demo, study):
        cfg.check_names()
        assert cfg.model == "smollm2-135m" and cfg.data.known == "prefers_true"
        assert cfg.data.min_facts_per_subject >= 2
        assert {"correlated", "decorrelated", "same_subject_together"} <= set(
            cfg.schedule.schedulers)
    assert (demo.data.source, demo.stats) == (study.data.source, study.stats)
    assert demo.data.n_subjects < study.data.n_subjects
    assert len(demo.trials()) < len(study.trials())
    assert set(study.schedule.batch_sizes) == {8, 32} and len(study.seeds) == 2
    assert {(e.column, e.mode) for e in study.editors} == {
        ("memit", "batch"), ("ft", "batch"), ("rome", "sequential")}
    with pytest.raises(ValueError, match="no packaged demo for model 'nope'"):
        demo_config(model="nope")
    with pytest.raises(ValueError, match="no --quick version"):
        demo_config(quick=True, model="smollm2-135m")


def _world_or_skip() -> Path:
    world = pytest.importorskip("corredit.world")
    try:
        return world.default_world_dir(build=False)
    except FileNotFoundError as exc:
        pytest.skip(f"no shipped world: {exc}")


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    _world_or_skip()
    out = tmp_path / "demo"
    env = {**os.environ, "CORREDIT_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "corredit.cli", "demo", "--quick", "--out",
                           str(out), "--no-progress"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("results.parquet", "config.json", "report.md", "report.html",
                 "graph_edges.parquet", "log.jsonl", "edits.jsonl"):
        assert (out / name).is_file(), name
    pngs = sorted((out / "figures").glob("*.png"))
    assert {p.stem for p in pngs} >= {"scheduler_comparison", "scores_vs_correlation",
                                       "retention", "score_difference", "correlation_graph"}
    df = pd.read_parquet(out / "results.parquet")
    assert list(df.columns) == [*RESULT_COLUMNS, *CONFIG_COLUMNS]
    pd.testing.assert_frame_equal(validate_rows(df), df)
    assert df["value"].notna().any() and (df["model"] == "world").all()
    edited = df[(df["suite"] == "probability") & (df["step"] >= 0)]
    assert set(zip(edited["editor"], edited["scheduler"])) == {
        (e, s) for e in ("memit", "rome", "ft") for s in SCHEDULERS}
    assert set(df["suite"]) == {"probability", "correlation", "health", "diagnostics"}
    n_edits = len((out / "edits.jsonl").read_text().splitlines())
    es = edited[(edited["metric"] == "ES") & (edited["step"] == edited["batch"])]
    for trial, cases in es.groupby("trial")["case_id"]:
        sched = pd.read_parquet(out / "schedules" / f"{trial}.parquet")
        assert sorted(cases) == sorted(sched["case_id"])     # every edit scored once
        assert len(cases) == (n_edits if not trial.startswith("rome") else 9)
    # the printed summary: one line per editor x scheduler x batch size, and the files
    text = proc.stdout
    assert "| memit |" in text and "| same_subject_together |" in text
    assert "Score Difference" in text and str(out / "report.md") in text
    assert "correlated minus decorrelated batches, paired" in text
    report = (out / "report.md").read_text()
    assert "figures/scheduler_comparison.png" in report
