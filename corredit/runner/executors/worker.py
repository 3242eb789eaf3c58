"""What runs on a worker: preparing a run's inputs, and units of trials, each read from
the run folder and the shared caches rather than shipped by the executor.

Usage::

    from corredit.runner.executors.worker import WorkerJob, prepare_run, run_unit
    job = WorkerJob(config=cfg.to_dict(), out="/shared/runs/x", token=lease.token,
                    cwd=os.getcwd())
    prepare_run(job)                    # {} or {"error": ..., "kind": ...}
    run_unit(job, ["memit-random-b8-s0"])   # {"memit-random-b8-s0": None} or its error

A worker process keeps the last run's :class:`~corredit.runner.Runner` (model,
statistics, embeddings, shared value vectors) for the next unit of the same run, so
a Ray worker or pool process loads the model once; after a failed trial it is dropped
(the model may not be intact). Both functions take only a small :class:`WorkerJob` and
names, so they are cheap to send to any machine that sees the run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

__all__ = ["WorkerJob", "driver_env", "prepare_run", "run_unit"]

_USER_ERRORS = ("ValueError", "FileNotFoundError", "UnknownNameError")


@dataclass(frozen=True)
class WorkerJob:
    """What a worker needs to find a run: the ``config`` (``RunConfig.to_dict()``), the
    run folder ``out`` (absolute), the driver's lease ``token``, the driver's working
    directory ``cwd`` (relative paths of the config are resolved from it), the
    ``code_version`` of the rows and ``env``: the driver's cache root and Hugging Face
    settings (:func:`driver_env`), so that every worker reads the same caches."""

    config: Mapping[str, Any]
    out: str
    token: str
    cwd: str
    code_version: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


#: Environment variables a worker takes from the driver (besides ``CORREDIT_CACHE``).
_PASSED_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def driver_env() -> dict[str, str]:
    """This process's cache root (absolute) as ``CORREDIT_CACHE`` and its Hugging Face
    settings, for :attr:`WorkerJob.env`."""
    from corredit.paths import cache_root

    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    return {**env, "CORREDIT_CACHE": str(cache_root().resolve())}


_RUNNER: dict[str, Any] = {}     # "key" -> this process's runner of the latest job


def _runner(job: WorkerJob, *, prepared: bool = True) -> Any:
    """This process's runner of ``job`` (built once; reads the folder's edits when the
    run is ``prepared``)."""
    key = f"{job.out}|{job.token}"
    if _RUNNER.get("key") == key:
        return _RUNNER["runner"]
    _RUNNER.clear()
    import torch

    from corredit.config import RunConfig
    from corredit.heap import steady_heap
    from corredit.results import RunFolder
    from corredit.runner.executors.state import TrialStates
    from corredit.runner.run import Runner

    os.environ.update(job.env)
    steady_heap()
    if os.path.isdir(job.cwd):
        os.chdir(job.cwd)
    cfg = RunConfig.from_dict(job.config, source=f"{job.out}/config.json")
    cfg.import_plugins()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    folder = RunFolder(job.out)
    runner = Runner(cfg, job.out, progress=False, executor="local",
                    selected=folder.read_edits() if prepared else None,
                    version=job.code_version)
    runner.states = TrialStates(folder, job.token)
    _RUNNER.update(key=key, runner=runner)
    return runner


def prepare_run(job: WorkerJob, todo: Sequence[str] = ()) -> dict[str, str]:
    """Check the run on this worker (device, model, hyperparameters), write its edits and
    correlation graph, and fill the statistics and embeddings caches; returns ``{}`` or
    ``{"error": ..., "kind": ...}`` (``kind``: ``"user"`` for a mistake in the config)."""
    from corredit.runner.executors.base import describe_error

    try:
        runner = _runner(job, prepared=False)
        runner.states.check()
        runner.check()
        names = set(todo)
        runner.prepare([t for t in runner.config.trials() if t.name in names])
        if any(e.stats for e in runner.config.editors):
            runner.inputs.stats()
        runner.inputs.embeddings()
    except Exception as exc:
        _RUNNER.clear()
        kind = "user" if type(exc).__name__ in _USER_ERRORS else "error"
        return {"error": describe_error(exc, limit=2000), "kind": kind}
    return {}


def run_unit(job: WorkerJob, names: Sequence[str],
             keep_values: bool = False) -> dict[str, str | None]:
    """Run the trials ``names`` of ``job`` here, each written to the run folder when it
    ends; returns each name's error, or None for a finished trial (one finished earlier,
    by an attempt of this unit that died, is not run again). The shared value vectors
    are dropped at the end unless ``keep_values`` (units of one trial: the next trial of
    the same editor and seed in this process reuses them)."""
    from corredit.config import RunConfig
    from corredit.results import RunFolder
    from corredit.runner.executors.base import describe_error
    from corredit.runner.executors.state import RunTakenOver, TrialStates

    folder = RunFolder(job.out)
    states = TrialStates(folder, job.token)
    specs = {t.name: t for t in RunConfig.from_dict(job.config).trials()}
    out: dict[str, str | None] = {}
    for name in names:
        if folder.trial_path(name).exists():
            out[name] = None
            continue
        try:
            states.check()
            _runner(job).run_trial(specs[name])
            out[name] = None
        except RunTakenOver as exc:
            out.update({n: describe_error(exc) for n in names if n not in out})
            _RUNNER.clear()
            break
        except Exception as exc:      # the model may not be intact: load it again
            states.failed(name, exc)
            out[name] = describe_error(exc)
            _RUNNER.clear()
    if "runner" in _RUNNER and not keep_values:
        _RUNNER["runner"].inputs.forget_values()
    return out
