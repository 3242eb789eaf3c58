"""Lazy matplotlib access shared by the drawing modules.

Usage::

    from corredit.plots.backend import new_axes, new_figure
    ax = new_axes(None)                 # a fresh pyplot Axes (Agg when there is no display)
    fig, axes = new_figure(2, 3)        # a pyplot-free Figure with a 2 x 3 grid of Axes

matplotlib is imported only when one of these functions runs.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["pyplot", "new_axes", "new_figure"]


def _headless() -> bool:
    return (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY"))


def pyplot() -> Any:
    """``matplotlib.pyplot``, switched to the Agg backend first when no display is
    available and neither ``MPLBACKEND`` nor an earlier pyplot import chose one."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") and _headless():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_axes(ax: Any = None) -> Any:
    """``ax`` itself, or a new Axes on a new pyplot figure when ``ax`` is None."""
    if ax is not None:
        return ax
    _, ax = pyplot().subplots()
    return ax


def new_figure(nrows: int = 1, ncols: int = 1, *, panel: tuple[float, float] = (4.4, 3.4),
               **subplots_kw: Any) -> tuple[Any, Any]:
    """A ``matplotlib.figure.Figure`` (not registered with pyplot, so nothing leaks) with
    an ``(nrows, ncols)`` array of Axes sized ``panel`` inches each."""
    pyplot()  # choose the backend before any canvas is made
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplots_kw)
    return fig, axes
