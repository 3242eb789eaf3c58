"""The ``local`` executor: units of trials in ``[executor] workers`` processes on this
machine (spawned; each loads the model once and keeps it for its next units).

Usage::

    corredit run CONFIG --out DIR --workers 4          # or [executor] workers = 4

With one worker the runner runs the trials in its own process instead (no executor).
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Callable, Sequence

from corredit.runner.executors.base import EXECUTORS, Executor

__all__ = ["LocalExecutor"]


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """A pool of spawned processes; the driver prepares the inputs itself."""

    name = "local"
    remote = False
    grouped = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._n = self.config.workers

    def describe(self) -> str:
        return f"{self._n} worker{'s' if self._n != 1 else ''}"

    def start(self, n_units: int) -> None:
        import multiprocessing

        self._n = max(1, min(self.config.workers, n_units))
        self._pool = cf.ProcessPoolExecutor(max_workers=self._n,
                                            mp_context=multiprocessing.get_context("spawn"))

    def submit(self, fn: Callable[..., Any], arglists: Sequence[tuple]) -> list[Any]:
        assert self._pool is not None, "start() first"
        return [self._pool.submit(fn, *args) for args in arglists]

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def cancel(self, handles: Sequence[Any]) -> None:
        for h in handles:
            h.cancel()

    def close(self, interrupted: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not interrupted, cancel_futures=True)
            self._pool = None
