"""Figure `score_difference`: Score Difference: related minus other edits within scheduler x batch size, per editor.

Usage::

    python analysis/fig_score_difference.py [RUN_DIR] [--out FIGURES_DIR]

Reads the run folder (default ``runs/demo``) and writes ``<out>/score_difference.png`` and ``.pdf``
(default ``figures/``).
"""

import sys

from corredit.plots import figure_script

NAME = "score_difference"


def main(argv: list[str] | None = None) -> int:
    return figure_script(NAME, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
