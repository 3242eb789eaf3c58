"""Figure `score_difference_curve`: Score Difference against the number of edits of the subject in the batch, within scheduler x batch size.

Usage::

    python analysis/fig_score_difference_curve.py [RUN_DIR] [--out FIGURES_DIR]

Reads the run folder (default ``runs/demo``) and writes ``<out>/score_difference_curve.png`` and ``.pdf``
(default ``figures/``).
"""

import sys

from corredit.plots import figure_script

NAME = "score_difference_curve"


def main(argv: list[str] | None = None) -> int:
    return figure_script(NAME, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
