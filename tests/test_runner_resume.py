"""A run killed with SIGKILL mid-way resumes without redoing finished trials and ends
with exactly the rows of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from test_runner import config_text, make_fixture

from corredit.config import load_config
from corredit.runner import run_experiment

pytestmark = pytest.mark.slow


def _events(root: Path) -> list[dict]:
    path = root / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _start(config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "corredit.cli", "run", str(config),
                             "--out", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    fx = make_fixture(tmp_path / "fixture")
    config = tmp_path / "run.toml"
    text = config_text(fx, schedulers=["random", "same_subject_together"], batch_sizes=[2, 3, 6])
    config.write_text(text.split('[[editors]]\nname = "rome"')[0], encoding="utf-8")
    cfg = load_config(config)
    names = [t.name for t in cfg.trials()]
    assert len(names) == 6
    out = tmp_path / "killed"

    proc = _start(config, out)
    deadline = time.monotonic() + 120
    finished: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        finished = sorted((out / "trials").glob("*.parquet")) if (out / "trials").is_dir() else []
        if finished:
            break
        time.sleep(0.02)
    assert finished, f"no trial finished: {proc.communicate()[1].decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = {p.stem: p.stat().st_mtime_ns for p in (out / "trials").glob("*.parquet")}
    assert 0 < len(done) < len(names)
    assert not (out / "results.parquet").exists()
    started_before = [e["trial"] for e in _events(out) if e["event"] == "trial_start"]

    proc = _start(config, out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    events = _events(out)
    starts = [e["trial"] for e in events if e["event"] == "trial_start"]
    for trial in done:                       # finished trials were not redone
        assert starts.count(trial) == 1
    assert sorted(set(starts)) == sorted(names)
    assert len(starts) == len(names) + (len(started_before) - len(done))
    now = {p.stem: p.stat().st_mtime_ns for p in (out / "trials").glob("*.parquet")}
    assert set(now) == set(names)
    assert {t: now[t] for t in done} == done
    runs = [e for e in events if e["event"] == "run_start"]
    assert [r["finished"] for r in runs] == [0, len(done)]

    resumed = pd.read_parquet(out / "results.parquet")
    whole = run_experiment(cfg, tmp_path / "whole")
    pd.testing.assert_frame_equal(resumed, whole)
