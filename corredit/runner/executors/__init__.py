"""Executors: where a run's trials run, by name: ``local`` (processes on this machine),
``ray`` (one Ray task per trial) and ``slurm`` (a SLURM job array through submitit).

Usage::

    corredit run CONFIG --out DIR --executor ray      # or an [executor] table
    corredit run CONFIG --out DIR --executor-config cluster.toml   # its [executor] table
    corredit status DIR                               # finished, running, failed trials

    from corredit.runner import Runner
    Runner(cfg, "runs/x", executor="ray").run()       # same rows as the local run

Whatever the executor, every trial writes its own file atomically into the run folder
(on a cluster, a shared filesystem), the driver shows one bar over the trials and
assembles ``results.parquet``, and a rerun resumes: killing the driver, a worker or a
job loses at most the trials in flight. Workers load what they need (model, statistics,
embeddings) from the run folder and the caches; the statistics and embeddings are
computed once before the trials are handed out. The run folder's lock covers remote
workers through the driver's lease (:mod:`~corredit.runner.executors.state`).

``ray`` and ``submitit`` are optional (``pip install 'corredit[ray]'`` / ``[slurm]``) and
imported only when their executor runs. Modules: :mod:`~.base` (the interface and the
registry), :mod:`~.local`, :mod:`~.ray_executor`, :mod:`~.slurm`, :mod:`~.worker` (what
runs on a worker), :mod:`~.driver` (the run loop), :mod:`~.state` (lease, trial states,
``run_status``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from corredit.config.sections import ExecutorConfig
from corredit.runner.executors.base import EXECUTORS, Executor, TrialsFailed
from corredit.runner.executors.state import Lease, RunStatus, TrialStates, run_status

__all__ = ["EXECUTORS", "Executor", "TrialsFailed", "get_executor", "resolve_executor",
           "load_executor", "Lease", "TrialStates", "RunStatus", "run_status"]

EXECUTORS.provide("local", "corredit.runner.executors.local")
EXECUTORS.provide("ray", "corredit.runner.executors.ray_executor")
EXECUTORS.provide("slurm", "corredit.runner.executors.slurm")


def get_executor(name: str) -> type[Executor]:
    """The executor class registered as ``name``; the error names ``executor.name``."""
    from corredit.registry import UnknownNameError

    try:
        return EXECUTORS.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"executor.name: {exc}") from None


def resolve_executor(config: ExecutorConfig, name: str | ExecutorConfig | None = None,
                     workers: int | None = None) -> ExecutorConfig:
    """``config`` (a run's ``[executor]``) with a name or whole table and a worker count
    given on the command line or to :class:`~corredit.runner.Runner`; checks the name."""
    if isinstance(name, ExecutorConfig):
        config = name
    elif name is not None:
        config = dataclasses.replace(config, name=name)
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        config = dataclasses.replace(config, workers=int(workers))
    get_executor(config.name)
    return config


def load_executor(path: str | os.PathLike[str]) -> ExecutorConfig:
    """The ``[executor]`` table of the TOML file ``path`` (a cluster's settings kept apart
    from the run's config); errors name the file and the key."""
    from corredit.config.run import read_toml
    from corredit.config.tables import _Invalid, _section

    p = Path(path)
    table = read_toml(p, "executor")
    if set(table) != {"executor"}:
        raise ValueError(f"{p}: expected one [executor] table (and its [executor.ray] or "
                         f"[executor.slurm]), got keys {sorted(table)}")
    try:
        return _section(ExecutorConfig, table["executor"], "executor")
    except _Invalid as exc:
        raise ValueError(f"{p}: {exc}") from None
