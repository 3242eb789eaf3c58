"""A run's data for the figures and the registry of named figures.

Usage::

    from corredit.plots.rundata import read_run, register_figure, FIGURES
    run = read_run("runs/demo")          # results (with each case's subject), config, graph
    FIGURES.names()                      # the registered figures
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from corredit.analysis.cases import attach_subjects, read_edit_subjects
from corredit.registry import Registry
from corredit.results import RunFolder

__all__ = ["FigureUnavailable", "RunData", "read_run", "FigureSpec", "FIGURES", "FIGURE_ORDER",
           "register_figure"]


class FigureUnavailable(ValueError):
    """The run's data does not support the figure asked for (the message says why)."""


@dataclass(frozen=True)
class RunData:
    """Everything a figure may draw from: the tidy results, the config, the correlation
    graph's edge list and the schedules (both may be absent)."""

    root: Path
    results: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    graph_edges: pd.DataFrame | None = None
    schedules: pd.DataFrame | None = None


def read_run(run_dir: str | os.PathLike[str]) -> RunData:
    """Read a run folder (see :class:`corredit.results.RunFolder`).

    Example: ``read_run("runs/demo").results``. The trials are read from ``trials/``;
    a folder holding only a consolidated ``results.parquet`` is read from that. When the
    folder holds ``edits.jsonl`` the results gain a ``subject`` column (each case's
    subject: the unit the intervals resample).
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder")
    folder = RunFolder(root)
    results = folder.read_results()
    if results.empty and (root / "results.parquet").exists():
        results = pd.read_parquet(root / "results.parquet")
    edits = root / "edits.jsonl"
    if edits.exists() and "subject" not in results.columns:
        subjects = read_edit_subjects(edits)
        if not subjects.empty:
            results = attach_subjects(results, subjects)
    config = folder.read_config() if (root / "config.json").exists() else {}
    edges_path = root / "graph_edges.parquet"
    edges = pd.read_parquet(edges_path) if edges_path.exists() else None
    schedules = folder.read_schedules()
    return RunData(root=root, results=results, config=config, graph_edges=edges,
                   schedules=None if schedules.empty else schedules)


@dataclass(frozen=True)
class FigureSpec:
    """A named figure: ``check(run)`` returns why the run cannot support it (None when it
    can); ``build(run)`` returns the ``matplotlib.figure.Figure``."""

    name: str
    description: str
    check: Callable[[RunData], str | None]
    build: Callable[[RunData], Any]


FIGURES: Registry[FigureSpec] = Registry(
    "figure", hint="register one with FIGURES.add(name, FigureSpec(...))")
#: The order figures appear in reports; other registered figures follow, sorted.
FIGURE_ORDER: list[str] = []


def register_figure(name: str, description: str, check: Callable[[RunData], str | None]):
    """Decorator registering ``build(run)`` as figure ``name`` (appended to the report order).

    Example::

        @register_figure("my_plot", "What it shows.", lambda run: None)
        def _my_plot(run): ...
    """
    def decorate(build: Callable[[RunData], Any]) -> Callable[[RunData], Any]:
        FIGURES.add(name, FigureSpec(name, description, check, build))
        FIGURE_ORDER.append(name)
        return build
    return decorate
