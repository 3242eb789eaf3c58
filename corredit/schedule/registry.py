"""The scheduler registry and the one way to call a scheduler: :func:`make_schedule`.

Usage::

    from corredit.schedule import make_schedule, SCHEDULERS
    s = make_schedule("decorrelated", requests, batch_size=100, embeddings=X, seed=0)
    SCHEDULERS.names()      # ['correlated', 'decorrelated', 'random', ...]

    @register_scheduler("reversed")
    def reversed_order(edits: EditSet, batch_size: int, *, seed: int) -> list[list[int]]:
        return chunk(range(edits.n - 1, -1, -1), batch_size)

    @register_scheduler("by_similarity", needs_embeddings=True)
    def by_similarity(edits, batch_size, *, seed): ...   # uses edits.need_embeddings(...)
    needs_embeddings("by_similarity")      # True: a run without embeddings is refused early

A scheduler receives an :class:`EditSet` (what is known about the edits: count, case ids,
subjects, relations, unit-length embeddings), the batch size, the seed and its own
keyword parameters, and returns batches of indices. :func:`make_schedule` checks the
result (every edit exactly once; every batch ``batch_size`` edits but the last, which may
be smaller) and wraps it in a :class:`Schedule` recording name, parameters and seed.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from corredit.registry import Registry
from corredit.schedule.edits import edit_set
from corredit.schedule.layout import batch_sizes
from corredit.schedule.schedule import Schedule
from corredit.types import EditRequest

__all__ = ["SCHEDULERS", "make_schedule", "Scheduler", "register_scheduler",
           "needs_embeddings", "check_scheduler_params"]

Scheduler = Callable[..., Sequence[Sequence[int]]]

#: Every scheduler, by name.
SCHEDULERS: Registry[Scheduler] = Registry(
    "scheduler", hint="Register one with @SCHEDULERS.register(name) from corredit.schedule."
)


def register_scheduler(name: str, *, needs_embeddings: bool = False,
                       replace: bool = False) -> Callable[[Scheduler], Scheduler]:
    """Decorator registering a scheduler under ``name``; ``needs_embeddings`` declares
    that it ranks edits by similarity, so it cannot run without an embedding."""

    def decorate(fn: Scheduler) -> Scheduler:
        fn.needs_embeddings = bool(needs_embeddings)  # type: ignore[attr-defined]
        SCHEDULERS.add(name, fn, replace=replace)
        return fn

    return decorate


def needs_embeddings(name: str) -> bool:
    """Whether the scheduler registered as ``name`` declared that it needs embeddings."""
    return bool(getattr(SCHEDULERS.get(name), "needs_embeddings", False))


def check_scheduler_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against the keyword parameters of scheduler ``name`` (a
    ``ValueError`` names the unknown ones); returns them with the defaults filled in."""
    return _resolve_params(name, SCHEDULERS.get(name), dict(params))


def _resolve_params(name: str, fn: Scheduler, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against the scheduler's keyword parameters, defaults filled in."""
    keyword = [p for p in inspect.signature(fn).parameters.values()
               if p.kind is p.KEYWORD_ONLY and p.name != "seed"]
    accepted = [p.name for p in keyword]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    unknown = sorted(set(params) - set(accepted))
    if unknown and not takes_any:
        raise ValueError(f"scheduler {name!r} takes no parameter(s) {unknown}; it takes "
                         f"{accepted or 'none'}")
    defaults = {p.name: p.default for p in keyword if p.default is not p.empty}
    return {**defaults, **params}


def make_schedule(
    name: str,
    requests: Sequence[EditRequest] | pd.DataFrame | int,
    batch_size: int,
    *,
    embeddings: Any = None,
    seed: int = 0,
    **params: Any,
) -> Schedule:
    """Run the scheduler registered as ``name`` and return its checked :class:`Schedule`.

    ``embeddings`` is an ``(n, dim)`` array (cosine similarity is used; rows are
    normalised here); schedulers that rank by similarity require it. ``params`` go to the
    scheduler as keyword arguments; ``Schedule.params`` records them with the
    scheduler's defaults for the others (e.g. ``{"k": 10}`` for ``decorrelated``).
    """
    fn = SCHEDULERS.get(name)
    if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    recorded = _resolve_params(name, fn, params)
    edits = edit_set(requests, embeddings)
    batch_size, seed = int(batch_size), int(seed)
    batches = [list(map(int, b)) for b in fn(edits, batch_size, seed=seed, **params)]
    expected = batch_sizes(edits.n, batch_size)
    got = [len(b) for b in batches]
    if got != expected:
        raise ValueError(f"scheduler {name!r} returned batch sizes {got[:8]}... but "
                         f"{edits.n} edits in batches of {batch_size} need {expected[:8]}...")
    flat = np.sort(np.fromiter((i for b in batches for i in b), dtype=np.int64, count=edits.n))
    if not np.array_equal(flat, np.arange(edits.n)):
        raise ValueError(f"scheduler {name!r} did not place every edit exactly once")
    return Schedule(batches=tuple(map(tuple, batches)), name=name, params=recorded, seed=seed,
                    batch_size=batch_size, case_ids=edits.case_ids)
