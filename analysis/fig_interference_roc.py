"""Figure `interference_roc`: ROC curves of predicting a failed edit from its max similarity to its batch, per embedding.

Usage::

    python analysis/fig_interference_roc.py [RUN_DIR] [--out FIGURES_DIR]

Reads the run folder (default ``runs/demo``) and writes ``<out>/interference_roc.png`` and ``.pdf``
(default ``figures/``).
"""

import sys

from corredit.plots import figure_script

NAME = "interference_roc"


def main(argv: list[str] | None = None) -> int:
    return figure_script(NAME, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
