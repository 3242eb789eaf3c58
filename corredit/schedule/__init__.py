"""Schedules: which batch each edit goes to and in which order; never imports torch.

Usage::

    from corredit.schedule import make_schedule, SCHEDULERS, Schedule
    s = make_schedule("decorrelated", requests, batch_size=100, embeddings=X, seed=0)
    s.batches                       # ((17, 4051, ...), ...) request indices per batch
    s.split(requests)               # the requests, batch by batch
    s.summary(X, requests)          # mean / nearest / max within-batch similarity, ...
    s.to_frame()                    # batch, position, index, case_id
    SCHEDULERS.names()              # every registered scheduler
    needs_embeddings("correlated")  # True: it ranks edits by similarity

See :mod:`corredit.schedule.schedulers` for the built-in schedulers.
"""

from corredit.schedule.edits import EditSet, edit_set
from corredit.schedule.layout import batch_sizes, chunk, deal
from corredit.schedule.measure import batch_correlation, similarity_floor, summarize_correlation
from corredit.schedule.registry import (
    SCHEDULERS, Scheduler, check_scheduler_params, make_schedule, needs_embeddings,
    register_scheduler,
)
from corredit.schedule.schedule import FRAME_COLUMNS, Schedule
from corredit.schedule import schedulers as _builtin  # noqa: F401  (registers the built-ins)
from corredit.schedule.tree import similarity_orders

__all__ = [
    "Schedule", "FRAME_COLUMNS", "make_schedule", "SCHEDULERS", "Scheduler",
    "register_scheduler", "needs_embeddings", "check_scheduler_params",
    "EditSet", "edit_set", "batch_sizes", "chunk", "deal",
    "batch_correlation", "summarize_correlation", "similarity_floor", "similarity_orders",
]
