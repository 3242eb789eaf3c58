"""The driver: a run's unfinished trials handed to an executor, one progress bar over
them, and the failures collected.

Usage::

    from corredit.runner.executors.driver import run_on_executor
    run_on_executor(runner, todo)   # runner.executor names it; holds runner.lease

The statistics and embeddings are computed once, before any trial is handed out: by the
driver for the ``local`` pool, by one worker for remote executors (which may have the
devices the driver lacks), into the caches the trials then read. A unit whose worker
dies (a killed process, a cancelled SLURM job) marks its unfinished trials failed; the
other units go on; at the end :class:`~corredit.runner.executors.base.TrialsFailed`
lists every trial that did not finish, and a rerun runs just those.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

from corredit.config import TrialSpec
from corredit.runner.executors.base import Executor, TrialsFailed, describe_error
from corredit.runner.executors.worker import WorkerJob, driver_env, prepare_run, run_unit

__all__ = ["run_on_executor", "make_executor"]


def make_executor(runner: Any) -> Executor:
    """The executor ``runner.executor`` names, for ``runner``'s folder."""
    from corredit.runner.executors import get_executor

    return get_executor(runner.executor.name)(runner.executor, runner.folder.root)


def run_on_executor(runner: Any, todo: Sequence[TrialSpec]) -> None:
    """Run ``todo`` of ``runner`` (a :class:`~corredit.runner.Runner` inside ``run()``,
    so holding the folder's lock and ``runner.lease``) on its executor."""
    executor = make_executor(runner)
    job = WorkerJob(config=runner.config.to_dict(), out=str(runner.folder.root.resolve()),
                    token=runner.lease.token, cwd=os.getcwd(), code_version=runner.code_version,
                    env=driver_env())
    with executor:
        if executor.remote:
            executor.start(1)
            if runner.progress:
                print(f"preparing the inputs on one worker ({executor.describe()})",
                      file=sys.stderr, flush=True)
            _prepare_remote(executor, job, todo)
            units = _units(runner, executor, todo, job)
        else:
            inputs = runner.inputs
            if any(e.stats for e in runner.config.editors):
                inputs.stats()
            inputs.embeddings()
            units = _units(runner, executor, todo, job)
            executor.start(len(units))
        failures = _drive(runner, executor, job, units)
    if failures:
        raise TrialsFailed(runner.folder.root, failures, len(todo))


def _prepare_remote(executor: Executor, job: WorkerJob, todo: Sequence[TrialSpec]) -> None:
    """Prepare the inputs on one worker; its config errors are raised here as such."""
    [handle] = executor.submit(prepare_run, [(job, [t.name for t in todo])])
    while not executor.wait([handle], timeout=1.0):
        pass
    try:
        report = executor.result(handle)
    except Exception as exc:
        raise RuntimeError(f"preparing the run on executor {executor.describe()!r} failed: "
                           f"{describe_error(exc, limit=2000)}") from exc
    if report.get("error"):
        kind = ValueError if report.get("kind") == "user" else RuntimeError
        raise kind(f"(on a {executor.config.name} worker) {report['error']}")


def _units(runner: Any, executor: Executor, todo: Sequence[TrialSpec],
           job: WorkerJob) -> list[list[str]]:
    """Trial names in the units ``executor`` runs, the likely longest first."""
    if not executor.grouped:
        return [[t.name] for t in todo]
    from corredit.results import RunFolder
    from corredit.runner.inputs import RunInputs
    from corredit.runner.parallel import work_groups

    inputs = runner.inputs
    if executor.remote:  # the edits are those the worker wrote
        inputs = RunInputs(runner.config, job.out, progress=False,
                           selected=RunFolder(job.out).read_edits())
    return [[t.name for t in g] for g in work_groups(inputs, todo)]


def _drive(runner: Any, executor: Executor, job: WorkerJob,
           units: list[list[str]]) -> dict[str, str]:
    """Submit ``units`` (at most ``executor.max_in_flight`` at a time), follow them with
    one bar over trials, and return the errors of the trials that did not finish."""
    folder, states = runner.folder, runner.states
    names = [n for u in units for n in u]
    queue = list(units)
    limit = executor.max_in_flight or len(queue)
    running: dict[Any, list[str]] = {}
    failures: dict[str, str] = {}
    bar = _bar(runner, executor, len(names))
    left = set(names)
    try:
        while queue or running:
            if queue and len(running) < limit:
                batch, queue = queue[: limit - len(running)], queue[limit - len(running):]
                handles = executor.submit(run_unit, [(job, u, not executor.grouped)
                                                     for u in batch])
                running.update(zip(handles, batch))
            for handle in executor.wait(list(running), timeout=1.0):
                unit = running.pop(handle)
                try:
                    report = executor.result(handle)
                except Exception as exc:   # the worker died or the job ended early
                    error = f"worker lost: {describe_error(exc)}"
                    report = {n: error for n in unit if not folder.trial_path(n).exists()}
                    for n in report:
                        states.failed(n, error)
                failures.update({n: e for n, e in report.items() if e})
            if bar is not None:
                left -= {n for n in left if folder.trial_path(n).exists()}
                bar.set_postfix(failed=len(failures), refresh=False)
                bar.update(len(names) - len(left) - bar.n)
    except BaseException:
        executor.cancel(list(running))
        raise
    finally:
        if bar is not None:
            bar.close()
    return {n: e for n, e in failures.items() if not folder.trial_path(n).exists()}


def _bar(runner: Any, executor: Executor, total: int) -> Any:
    if not runner.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"trials ({executor.describe()})", unit="trial",
                file=sys.stderr, dynamic_ncols=True)
