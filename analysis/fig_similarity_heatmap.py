"""Figure `similarity_heatmap`: Similarity between edits (correlation graph weights), ordered by community.

Usage::

    python analysis/fig_similarity_heatmap.py [RUN_DIR] [--out FIGURES_DIR]

Reads the run folder (default ``runs/demo``) and writes ``<out>/similarity_heatmap.png`` and ``.pdf``
(default ``figures/``).
"""

import sys

from corredit.plots import figure_script

NAME = "similarity_heatmap"


def main(argv: list[str] | None = None) -> int:
    return figure_script(NAME, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
