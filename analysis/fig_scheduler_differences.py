"""Figure `scheduler_differences`: Paired scheduler differences: each scheduler minus decorrelated on the same edits, per editor and batch size.

Usage::

    python analysis/fig_scheduler_differences.py [RUN_DIR] [--out FIGURES_DIR]

Reads the run folder (default ``runs/demo``) and writes ``<out>/scheduler_differences.png`` and ``.pdf``
(default ``figures/``).
"""

import sys

from corredit.plots import figure_script

NAME = "scheduler_differences"


def main(argv: list[str] | None = None) -> int:
    return figure_script(NAME, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
