"""Progress bars on stderr, or none (``enabled=False``).

Usage::

    for spec in progress_bar(todo, enabled=True, desc="trials", unit="trial"): ...
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

__all__ = ["progress_bar"]


def progress_bar(iterable: Iterable, *, enabled: bool, **kwargs: Any) -> Iterable:
    """``iterable`` wrapped in a tqdm bar on stderr when ``enabled``."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, **kwargs)
