"""Figure `score_difference`: Score Difference: same-subject minus other-subject edits, per editor.

Usage::

    python analysis/fig_score_difference.py [RUN_DIR] [--out FIGURES_DIR]

Reads the run folder (default ``runs/demo``) and writes ``<out>/score_difference.png`` and ``.pdf``
(default ``figures/``).
"""

from __future__ import annotations

import argparse
import sys

from corredit.plots import FigureUnavailable, build_figure, read_run, save_figure

NAME = "score_difference"


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
