"""Executors: the [executor] table, the same rows from the local, ray and slurm executors
on a small world-model grid, failures and killed workers recorded per trial, reruns that
complete the run, the driver's lease and `corredit status`."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from corredit.config import load_config, parse_config
from corredit.config.sections import ExecutorConfig, RayConfig, SlurmConfig
from corredit.results import RunFolder
from corredit.runner import Runner, run_experiment
from corredit.runner.executors import (
    EXECUTORS, Executor, Lease, TrialsFailed, TrialStates, resolve_executor, run_status,
)

pytest.importorskip("corredit.world")

# A suite that adds no rows but, when its "armed" file names the running trial, raises
# there or kills its own process mid-trial (after the edit of step 1): a failing trial
# and a worker killed under a trial, in whatever process runs it.
PLUGIN = '''
import json, os, signal
from pathlib import Path
from corredit.evaluate.suite import SUITES, Suite

ARMED = Path({armed!r})

@SUITES.register("test_trip", replace=True)
class Trip(Suite):
    name = "test_trip"

    def measure(self, ctx, point):
        if point.step != 1 or not ARMED.exists():
            return None
        order = json.loads(ARMED.read_text())
        if order["trial"] != ctx.spec.name:
            return None
        if order["action"] == "raise":
            raise RuntimeError("tripped on purpose")
        ARMED.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
'''

GRID = '''
name = "grid"
model = "world"
seeds = [0]
threads = 1
progress = false
cache_dir = "{cache}"
imports = ["{plugin}"]

[data]
source = "world"
relations = ["born_in", "occupation", "plays"]
subject_first = true
min_facts_per_subject = 3
n_subjects = 4
seed = 0

[stats]
corpus = "world"
max_tokens = 2000

[[embeddings]]
name = "subject_tfidf"
embedder = "tfidf"
field = "subject"

[schedule]
schedulers = ["random", "correlated"]
batch_sizes = [4]

[evaluate]
suites = ["probability", "correlation", "test_trip"]

[[editors]]
name = "memit"
mode = "batch"

[[editors]]
name = "ft-l"
label = "ft"
mode = "batch"
stats = false
schedulers = ["random"]
hparams = {{ num_steps = 3 }}
'''

TRIALS = ["memit-random-b4-s0", "memit-correlated-b4-s0", "ft-random-b4-s0"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> dict[str, Any]:
    """The grid's config (3 trials: MEMIT's two share value vectors), its plugin's armed
    file and a serial local run of it: the reference rows."""
    root = tmp_path_factory.mktemp("grid")
    armed = root / "armed.json"
    plugin = root / "trip_plugin.py"
    plugin.write_text(PLUGIN.format(armed=str(armed)), encoding="utf-8")
    path = root / "grid.toml"
    path.write_text(GRID.format(cache=root / "cache", plugin=plugin), encoding="utf-8")
    cfg = load_config(path)
    assert [t.name for t in cfg.trials()] == TRIALS
    rows = run_experiment(cfg, root / "serial")
    return {"cfg": cfg, "path": path, "armed": armed, "rows": rows, "root": root}


def _arm(grid: dict[str, Any], trial: str, action: str) -> None:
    grid["armed"].write_text(json.dumps({"trial": trial, "action": action}))


def _events(out: Path, event: str) -> list[dict]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


def _same_rows(out: Path, grid: dict[str, Any]) -> None:
    """The rows of ``out`` are the reference rows (``code_version`` aside: the checkout
    may move between two runs)."""
    rows = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(rows.drop(columns="code_version"),
                                  grid["rows"].drop(columns="code_version"))


# -- the [executor] table -----------------------------------------------------------------

def test_executor_table_parses_nested_and_names_bad_keys():
    base = {"name": "x", "editors": [{"name": "memit"}]}
    cfg = parse_config({**base, "executor": {
        "name": "slurm", "gpus_per_trial": 1, "memory_gb": 16,
        "slurm": {"partition": "gpu", "options": {"account": "lab"}, "setup": ["a"]}}})
    assert cfg.executor.slurm == SlurmConfig(partition="gpu", options={"account": "lab"},
                                             setup=("a",))
    assert cfg.executor.gpus_per_trial == 1.0 and cfg.executor.ray == RayConfig()
    assert parse_config(cfg.to_dict()) == cfg
    assert parse_config(base).executor == ExecutorConfig()
    for table, words in [({"ray": {"num_cpus": 0}}, "executor.ray.num_cpus: must be >= 1"),
                         ({"slurm": {"cluster": "pbs"}}, "executor.slurm.cluster: must be"),
                         ({"gpus": 1}, "executor.gpus: unknown key"),
                         ({"memory_gb": -1}, "executor.memory_gb: must be > 0")]:
        with pytest.raises(ValueError, match=words):
            parse_config({**base, "executor": table}, source="run.toml")


def test_an_executor_file_holds_one_executor_table(tmp_path):
    from corredit.runner.executors import load_executor

    path = tmp_path / "cluster.toml"
    path.write_text('[executor]\nname = "slurm"\ngpus_per_trial = 1\n'
                    '[executor.slurm]\npartition = "gpu"\ntime_min = 240\n')
    assert load_executor(path) == ExecutorConfig(
        name="slurm", gpus_per_trial=1, slurm=SlurmConfig(partition="gpu", time_min=240))
    path.write_text('[executor.slurm]\npartitio = "gpu"\n')
    with pytest.raises(ValueError, match=r"cluster.toml: executor.slurm.partitio: unknown key"):
        load_executor(path)
    path.write_text('name = "x"\n[executor]\n')
    with pytest.raises(ValueError, match=r"expected one \[executor\] table"):
        load_executor(path)


def test_executor_names_and_overrides(grid):
    cfg = grid["cfg"]
    assert resolve_executor(cfg.executor, "ray").name == "ray"
    assert resolve_executor(cfg.executor, None, 3) == ExecutorConfig(workers=3)
    whole = ExecutorConfig(name="slurm", cpus_per_trial=2)
    assert resolve_executor(cfg.executor, whole, None) is whole
    assert sorted(EXECUTORS.names())[:3] == ["local", "ray", "slurm"]
    with pytest.raises(KeyError, match="executor.name: unknown executor 'rays'; known: local"):
        resolve_executor(cfg.executor, "rays")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        resolve_executor(cfg.executor, None, 0)
    with pytest.raises(ValueError, match="executor 'ray' runs trials on its workers"):
        Runner(cfg, grid["root"] / "no", executor="ray", handle=object())


def test_optional_packages_and_missing_slurm_are_clear_errors(grid, monkeypatch, tmp_path):
    from corredit.runner.executors import get_executor

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ValueError, match=r"pip install 'corredit\[ray\]'"):
        get_executor("ray")(ExecutorConfig(name="ray"), tmp_path)
    with pytest.raises(ValueError, match=r"pip install 'corredit\[slurm\]'"):
        get_executor("slurm")(ExecutorConfig(name="slurm", slurm=SlurmConfig(cluster="local")),
                              tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ValueError, match="no SLURM here .*cluster = \"local\""):
        get_executor("slurm")(ExecutorConfig(name="slurm"), tmp_path)
    half = ExecutorConfig(name="slurm", gpus_per_trial=0.5, slurm=SlurmConfig(cluster="local"))
    with pytest.raises(ValueError, match="whole GPUs"):
        get_executor("slurm")(half, tmp_path)


# -- the driver and workers, in this process ----------------------------------------------

@dataclasses.dataclass(eq=False)
class _Call:
    fn: Any
    args: tuple


class Inline(Executor):
    """Runs each call in this process when its result is asked for; ``lose`` names a
    trial whose unit's worker 'dies' (its result raises)."""

    name = "inline"
    remote = True
    grouped = True
    lose: str | None = None

    def submit(self, fn, arglists):
        return [_Call(fn, args) for args in arglists]

    def wait(self, handles, timeout):
        return list(handles)

    def result(self, handle):
        fn, args = handle.fn, handle.args
        if fn.__name__ == "run_unit" and self.lose in args[1]:
            raise ConnectionError("node went away")
        return fn(*args)


@pytest.fixture
def inline():
    EXECUTORS.add("inline", Inline, replace=True)
    yield Inline
    Inline.lose = None


def test_a_remote_executor_prepares_on_a_worker_and_gives_the_same_rows(grid, inline, tmp_path):
    out = tmp_path / "inline"
    Runner(grid["cfg"], out, executor="inline").run()
    _same_rows(out, grid)
    for name in ("edits.jsonl", "graph_edges.parquet"):
        assert (out / name).is_file()
    assert not (out / "driver.json").exists()           # the lease ends with the run
    assert "executor" not in json.loads((out / "config.json").read_text())
    run = _events(out, "run_start")
    assert run == [dict(run[0], trials=3, finished=0)]


def test_failed_and_lost_trials_are_recorded_and_a_rerun_completes(grid, inline, tmp_path):
    out = tmp_path / "fail"
    _arm(grid, "memit-correlated-b4-s0", "raise")
    Inline.lose = "ft-random-b4-s0"
    try:
        with pytest.raises(TrialsFailed) as info:
            Runner(grid["cfg"], out, executor="inline").run()
    finally:
        grid["armed"].unlink()
    assert set(info.value.failures) == {"memit-correlated-b4-s0", "ft-random-b4-s0"}
    assert "2 of 3 trials did not finish" in str(info.value)
    assert not (out / "results.parquet").exists()
    st = run_status(out)
    assert st.finished == ["memit-random-b4-s0"] and not st.running and not st.pending
    assert st.failed["memit-correlated-b4-s0"]["error"] == "RuntimeError: tripped on purpose"
    assert "in measure" in st.failed["memit-correlated-b4-s0"]["traceback"]
    assert st.failed["ft-random-b4-s0"]["error"] == \
        "worker lost: ConnectionError: node went away"
    assert not st.driver_alive and st.driver is None

    Inline.lose = None
    Runner(grid["cfg"], out, executor="inline").run()          # the rerun: the two only
    _same_rows(out, grid)
    starts = [e["trial"] for e in _events(out, "trial_start")]
    assert sorted(starts) == sorted(TRIALS + ["memit-correlated-b4-s0"])
    st = run_status(out)
    assert st.finished == TRIALS and not st.failed


def test_a_worker_of_a_driver_that_lost_the_folder_writes_nothing(grid, tmp_path):
    from corredit.runner.executors.worker import WorkerJob, run_unit

    out = tmp_path / "stale"
    folder = RunFolder(out)
    Runner(grid["cfg"], out).run()
    for name in TRIALS:
        folder.trial_path(name).unlink()
    with folder.lock(), Lease.claim(folder, "inline") as lease:
        assert Lease.read(folder) == lease
        job = WorkerJob(config=grid["cfg"].to_dict(), out=str(out), token="an-older-driver",
                        cwd=os.getcwd())
        report = run_unit(job, TRIALS[:2])
        assert set(report) == set(TRIALS[:2])
        assert all("no longer owns the folder" in e for e in report.values())
        assert folder.finished_trials() == set() and TrialStates(folder).read() == {}
        st = run_status(out)
        assert st.driver_alive and st.driver == lease and st.pending == TRIALS
        states = TrialStates(folder, lease.token)
        states.started(TRIALS[0])
        assert states.owns() and not TrialStates(folder, "other").owns()
        assert list(run_status(out).running) == [TRIALS[0]]
    st = run_status(out)                                # the driver is gone
    assert not st.driver_alive and st.driver is None
    assert list(st.interrupted) == [TRIALS[0]] and st.pending == TRIALS[1:]


def test_a_folder_resumes_on_another_executor(grid, inline, tmp_path):
    out = tmp_path / "switch"
    _arm(grid, "ft-random-b4-s0", "raise")
    try:
        with pytest.raises(TrialsFailed):
            Runner(grid["cfg"], out, executor="inline").run()
    finally:
        grid["armed"].unlink()
    config_json = (out / "config.json").read_text()
    Runner(grid["cfg"], out).run()                  # local, in this process
    assert (out / "config.json").read_text() == config_json
    _same_rows(out, grid)
    assert [e["trial"] for e in _events(out, "trial_start")][-1] == "ft-random-b4-s0"


def test_status_command_shows_counts_and_errors(grid, inline, tmp_path, capsys):
    from corredit.cli import main

    out = tmp_path / "cli"
    cluster = tmp_path / "cluster.toml"       # its table, with --executor naming another
    cluster.write_text('[executor]\nname = "ray"\nmemory_gb = 2\n')
    _arm(grid, "memit-random-b4-s0", "raise")
    try:
        assert main(["run", str(grid["path"]), "--out", str(out), "--executor", "inline",
                     "--executor-config", str(cluster), "--no-progress"]) == 1
    finally:
        grid["armed"].unlink()
    err = capsys.readouterr().err
    assert "1 of 3 trials did not finish" in err and f"corredit status {out}" in err
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 trials: 2 finished, 0 running, 1 failed, 0 pending" in text
    assert "memit-random-b4-s0" in text and "RuntimeError: tripped on purpose" in text
    assert "driver: not running (rerun 'corredit run' to resume)" in text
    assert main(["status", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record["failed"]) == {"memit-random-b4-s0"} and len(record["finished"]) == 2


# -- real executors: Ray (2 CPUs) and SLURM (submitit's local executor) -------------------

@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow   # a local Ray instance: 4-8 minutes on 2 shared cores
def test_ray_gives_the_rows_of_a_local_run(grid, ray_local, tmp_path):
    out = tmp_path / "ray"
    Runner(grid["cfg"], out, executor="ray").run()
    _same_rows(out, grid)
    pids = {e["pid"] for e in _events(out, "trial_end")}
    assert os.getpid() not in pids


def test_slurm_through_submitit_locally_gives_the_rows_of_a_local_run(grid, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "slurm"
    ex = ExecutorConfig(name="slurm", slurm=SlurmConfig(cluster="local", array_parallelism=2,
                                                        time_min=10))
    Runner(grid["cfg"], out, executor=ex).run()
    _same_rows(out, grid)
    jobs = [p for p in (out / "slurm").iterdir() if p.name.isdigit()]
    assert len(jobs) == 3                                # a prepare job and two units
    ends = {e["trial"]: e["pid"] for e in _events(out, "trial_end")}
    assert ends["memit-random-b4-s0"] == ends["memit-correlated-b4-s0"]   # one group


@pytest.mark.slow   # a local Ray instance: 4-8 minutes on 2 shared cores
def test_a_killed_ray_worker_loses_its_trial_and_a_rerun_completes(grid, ray_local, tmp_path):
    out = tmp_path / "killed"
    ex = ExecutorConfig(name="ray", ray=RayConfig(max_retries=0))
    _arm(grid, "memit-correlated-b4-s0", "kill")
    with pytest.raises(TrialsFailed) as info:
        Runner(grid["cfg"], out, executor=ex).run()
    assert not grid["armed"].exists()                   # the worker killed itself
    assert list(info.value.failures) == ["memit-correlated-b4-s0"]
    st = run_status(out)
    assert sorted(st.finished) == sorted(set(TRIALS) - {"memit-correlated-b4-s0"})
    assert st.failed["memit-correlated-b4-s0"]["error"].startswith("worker lost:")
    done = {n: RunFolder(out).trial_path(n).stat().st_mtime_ns for n in st.finished}

    Runner(grid["cfg"], out, executor=ex).run()
    _same_rows(out, grid)
    assert {n: RunFolder(out).trial_path(n).stat().st_mtime_ns for n in done} == done
    assert run_status(out).finished == TRIALS
