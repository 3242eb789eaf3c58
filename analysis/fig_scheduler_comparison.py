"""Figure `scheduler_comparison`: Schedule kind x editor: ES / PS / NS per scheduler and editor, one row per batch size.

Usage::

    python analysis/fig_scheduler_comparison.py [RUN_DIR] [--out FIGURES_DIR]

Reads the run folder (default ``runs/demo``) and writes ``<out>/scheduler_comparison.png`` and ``.pdf``
(default ``figures/``).
"""

import sys

from corredit.plots import figure_script

NAME = "scheduler_comparison"


def main(argv: list[str] | None = None) -> int:
    return figure_script(NAME, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
