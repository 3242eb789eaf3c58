"""Figure `scheduler_comparison`: Schedule kind x editor: ES / PS / NS per scheduler and editor, one row per batch size.

Usage::

    python analysis/fig_scheduler_comparison.py [RUN_DIR] [--out FIGURES_DIR]

Reads the run folder (default ``runs/demo``) and writes ``<out>/scheduler_comparison.png`` and ``.pdf``
(default ``figures/``).
"""

from __future__ import annotations

import argparse
import sys

from corredit.plots import FigureUnavailable, build_figure, read_run, save_figure

NAME = "scheduler_comparison"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default="runs/demo", help="run folder")
    parser.add_argument("--out", default="figures", help="output folder")
    args = parser.parse_args(argv)
    try:
        fig = build_figure(NAME, read_run(args.run_dir))
    except (FileNotFoundError, FigureUnavailable) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    for path in save_figure(fig, args.out, NAME):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
