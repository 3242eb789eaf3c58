"""Figure `scores_vs_correlation`: Efficacy / paraphrase / neighbourhood scores against within-batch correlation
(max similarity of each edit to the rest of its batch, per embedding).

Usage::

    python analysis/fig_scores_vs_correlation.py [RUN_DIR] [--out FIGURES_DIR]

Reads the run folder (default ``runs/demo``) and writes ``<out>/scores_vs_correlation.png`` and ``.pdf``
(default ``figures/``).
"""

import sys

from corredit.plots import figure_script

NAME = "scores_vs_correlation"


def main(argv: list[str] | None = None) -> int:
    return figure_script(NAME, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
