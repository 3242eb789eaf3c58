"""Run many small matrix products on one BLAS thread.

Usage::

    from corredit.schedule.blas import one_blas_thread
    with one_blas_thread():
        for part in parts:
            part @ part.T        # no thread start-up or spinning per tiny product

Loops of small products (tree splits, greedy assignment) run much slower with several
BLAS threads, above all on a busy machine; large products keep every thread.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from threadpoolctl import threadpool_limits

__all__ = ["one_blas_thread"]


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread inside the ``with`` block (restored afterwards)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
