"""The ``ray`` executor: one Ray task per trial, with the resources ``[executor]`` gives
a trial (``cpus_per_trial``, ``gpus_per_trial``, ``memory_gb``).

Usage::

    ray start --head                                   # or an existing cluster
    corredit run CONFIG --out /shared/runs/x --executor ray

    [executor]
    name = "ray"
    gpus_per_trial = 1
    [executor.ray]
    address = "auto"                # default: RAY_ADDRESS, else this machine's cluster,
    max_retries = 1                 #          else a new local instance (num_cpus, num_gpus)

The inputs are prepared by one task first. Workers find the run folder and the caches
by path, so on a cluster both must be on a shared filesystem, and corredit installed on
every node. A Ray instance already started in this process (``ray.init`` in a script
or test) is used as it is and left running; one started here is shut down at the end.
Needs ``pip install 'corredit[ray]'``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from corredit.runner.executors.base import EXECUTORS, Executor

__all__ = ["RayExecutor"]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("executor 'ray' needs Ray: pip install 'corredit[ray]'") from None
    return ray


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """Trials as Ray tasks; the inputs are prepared by a task too."""

    name = "ray"
    remote = True
    grouped = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ray = _ray()
        self._started_here = False
        self._remotes: dict[Any, Any] = {}

    def describe(self) -> str:
        return f"ray at {self.config.ray.address}" if self.config.ray.address else "ray"

    def start(self, n_units: int) -> None:
        ray, r = self._ray, self.config.ray
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, **r.init}
        if r.address is not None:
            kwargs["address"] = r.address
        if r.num_cpus is not None:
            kwargs["num_cpus"] = r.num_cpus
        if r.num_gpus is not None:
            kwargs["num_gpus"] = r.num_gpus
        ray.init(**kwargs)
        self._started_here = True

    def _remote(self, fn: Callable[..., Any]) -> Any:
        if fn not in self._remotes:
            c = self.config
            options: dict[str, Any] = {"num_cpus": c.cpus_per_trial, "num_gpus": c.gpus_per_trial,
                                       "max_retries": c.ray.max_retries}
            if c.memory_gb is not None:
                options["memory"] = int(c.memory_gb * 2**30)
            self._remotes[fn] = self._ray.remote(**options)(fn)
        return self._remotes[fn]

    def submit(self, fn: Callable[..., Any], arglists: Sequence[tuple]) -> list[Any]:
        remote = self._remote(fn)
        return [remote.remote(*args) for args in arglists]

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        if not handles:
            return []
        done, _ = self._ray.wait(list(handles), num_returns=len(handles), timeout=timeout,
                                 fetch_local=False)
        return done

    def result(self, handle: Any) -> Any:
        return self._ray.get(handle)

    def cancel(self, handles: Sequence[Any]) -> None:
        for h in handles:
            try:
                self._ray.cancel(h, force=True)
            except Exception:  # already finished or gone
                pass

    def close(self, interrupted: bool = False) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
        self._started_here = False
