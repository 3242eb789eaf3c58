"""The executor interface: where the units of a run (lists of trial names) run.

Usage::

    from corredit.runner.executors.base import EXECUTORS, Executor

    @EXECUTORS.register("my_queue")
    class MyQueue(Executor):
        def submit(self, fn, arglists): ...      # one handle per call fn(*args)
        def wait(self, handles, timeout): ...    # the handles done within timeout seconds
        def result(self, handle): ...            # fn's return value; raises if it died

An executor is used as a context manager around one run: ``start(n_units)`` on entry,
``close(interrupted)`` on exit. ``remote`` executors prepare the run's inputs (edits,
statistics, embeddings) on a worker, so the driver never loads the model; ``grouped``
ones get :func:`~corredit.runner.parallel.work_groups` as units, the others one trial
per unit. The driver is :mod:`corredit.runner.executors.driver`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from corredit.config.sections import ExecutorConfig
from corredit.registry import Registry

__all__ = ["EXECUTORS", "Executor", "TrialsFailed", "describe_error"]

#: Executors by name: ``[executor] name`` or ``corredit run --executor NAME``.
EXECUTORS: Registry[type["Executor"]] = Registry(
    "executor", hint="register one with @corredit.runner.executors.EXECUTORS.register(name)")


class Executor(ABC):
    """Runs calls ``fn(*args)`` of one run folder ``root`` on workers, as ``config`` says."""

    name: ClassVar[str] = ""
    remote: ClassVar[bool] = True
    grouped: ClassVar[bool] = True

    def __init__(self, config: ExecutorConfig, root: Path) -> None:
        self.config = config
        self.root = Path(root)

    def describe(self) -> str:
        """A few words for the progress bar and ``driver.json``."""
        return self.config.name

    @property
    def max_in_flight(self) -> int | None:
        """How many units may be submitted at once (None: all)."""
        return None

    def start(self, n_units: int) -> None:
        """Connect or start workers for ``n_units`` units."""

    def close(self, interrupted: bool = False) -> None:
        """Let go of the workers; ``interrupted``: the run is stopping early."""

    def cancel(self, handles: Sequence[Any]) -> None:
        """Best effort: stop the calls of ``handles``."""

    @abstractmethod
    def submit(self, fn: Callable[..., Any], arglists: Sequence[tuple]) -> list[Any]:
        """Submit ``fn(*args)`` for each ``args``; one handle each."""

    @abstractmethod
    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        """The handles among ``handles`` that are done, waiting at most ``timeout`` s."""

    @abstractmethod
    def result(self, handle: Any) -> Any:
        """The return value of a done call; raises when it failed or its worker died."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.close(interrupted=kind is not None)


class TrialsFailed(RuntimeError):
    """Some trials of a run failed or lost their worker; ``failures`` maps trial names to
    errors. The other trials are written; a rerun retries these."""

    def __init__(self, root: Path, failures: dict[str, str], total: int) -> None:
        self.root, self.failures, self.total = Path(root), dict(failures), total
        shown = "; ".join(f"{k}: {v}" for k, v in list(self.failures.items())[:3])
        more = f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        super().__init__(f"{root}: {len(self.failures)} of {total} trials did not finish "
                         f"({shown}{more}); `corredit status {root}` shows each error; "
                         f"rerun the command to run them again")


def describe_error(exc: BaseException, limit: int = 500) -> str:
    """``"Kind: message"`` of ``exc`` on one line, at most ``limit`` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
