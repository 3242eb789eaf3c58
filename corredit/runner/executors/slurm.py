"""The ``slurm`` executor: one SLURM job per group of trials (the trials of an editor and
seed that share value vectors form one group), submitted as one job array with submitit.

Usage::

    corredit run CONFIG --out /shared/runs/x --executor slurm

    [executor]
    name = "slurm"
    cpus_per_trial = 4              # --cpus-per-task
    gpus_per_trial = 1              # --gpus-per-node
    memory_gb = 32                  # --mem
    [executor.slurm]
    partition = "gpu"
    time_min = 120                  # --time of one job
    array_parallelism = 8           # jobs of the array running at once
    setup = ["source .venv/bin/activate"]
    options = { account = "lab" }   # further sbatch options
    # cluster = "local"             # submitit's local executor: jobs as local processes

The inputs are prepared by one job first. Jobs find the run folder and caches by path:
both must be on a shared filesystem. Job files go to ``[executor.slurm] folder``
(default: the run folder's ``slurm/``). Needs ``pip install 'corredit[slurm]'``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from corredit.runner.executors.base import EXECUTORS, Executor

__all__ = ["SlurmExecutor"]


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ValueError("executor 'slurm' needs submitit: pip install 'corredit[slurm]'") \
            from None
    return submitit


@EXECUTORS.register("slurm")
class SlurmExecutor(Executor):
    """Groups of trials as jobs of a SLURM array (or local processes with
    ``cluster = "local"``)."""

    name = "slurm"
    remote = True
    grouped = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c, s = self.config, self.config.slurm
        if s.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError("executor 'slurm': no SLURM here (sbatch is not on PATH); set "
                             "[executor.slurm] cluster = \"local\" to run the jobs as local "
                             "processes")
        if c.gpus_per_trial != int(c.gpus_per_trial):
            raise ValueError(f"executor.gpus_per_trial: SLURM gives whole GPUs, got "
                             f"{c.gpus_per_trial}")
        submitit = _submitit()
        folder = Path(s.folder).expanduser() if s.folder else self.root / "slurm"
        self._ex = submitit.AutoExecutor(folder=folder / "%j", cluster=s.cluster)
        params: dict[str, Any] = {
            "name": f"corredit-{self.root.name}", "timeout_min": s.time_min, "nodes": 1,
            "tasks_per_node": 1, "cpus_per_task": c.cpus_per_trial,
            "gpus_per_node": int(c.gpus_per_trial), "mem_gb": c.memory_gb,
            f"{s.cluster}_setup": list(s.setup)}
        if s.cluster == "slurm":
            params.update(slurm_partition=s.partition,
                          slurm_array_parallelism=s.array_parallelism,
                          slurm_additional_parameters=dict(s.options) or None)
        self._ex.update_parameters(**params)

    def describe(self) -> str:
        s = self.config.slurm
        if s.cluster == "local":
            return "slurm (local processes)"
        return f"slurm partition {s.partition}" if s.partition else "slurm"

    @property
    def max_in_flight(self) -> int | None:
        # SLURM throttles an array itself; local processes are throttled by the driver
        return None if self.config.slurm.cluster == "slurm" else \
            self.config.slurm.array_parallelism

    def submit(self, fn: Callable[..., Any], arglists: Sequence[tuple]) -> list[Any]:
        with self._ex.batch():
            jobs = [self._ex.submit(fn, *args) for args in arglists]
        return jobs

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        end = time.monotonic() + timeout
        while True:
            done = [h for h in handles if h.done()]
            if done or time.monotonic() >= end:
                return done
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))

    def result(self, handle: Any) -> Any:
        return handle.result()

    def cancel(self, handles: Sequence[Any]) -> None:
        for h in handles:
            try:
                h.cancel(check=False)
            except Exception:  # already ended
                pass
