"""Write ``analysis/walkthrough.ipynb`` (unexecuted) from the cells below.

Usage::

    python analysis/make_walkthrough.py            # rewrite the notebook
    jupyter nbconvert --execute --to notebook analysis/walkthrough.ipynb   # run it

The notebook walks through corredit's public API on the embedded world; a slow test
(``tests/test_walkthrough.py``) executes it top to bottom.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "walkthrough.ipynb"

#: The whole study in one cell (also the first lines of the README's worked example).
QUICKSTART = """import corredit
from corredit.plots import plot_scheduler_comparison
h, reqs = corredit.load("world"), corredit.load_world().requests(n=32, seed=0)
result = corredit.edit(h, reqs, "memit", corpus="world")     # statistics computed once, then cached
plot_scheduler_comparison(corredit.score(h, reqs, result=result))"""

CELLS = [
    ("md", """# corredit walkthrough: correlated edits on the embedded world

This notebook follows one set of edits through corredit: the knowledge world and its
model, embeddings of the edits, the correlation graph, correlated and decorrelated
batches, MEMIT on both, and finally a small experiment run whose results are plotted.
Everything runs offline on a CPU in a few minutes.

The first cell is a whole study: the world's model and 32 of its facts, edited with
MEMIT, scored, plotted. `corredit.score` returns the rows an experiment run writes, so
every `corredit.plots` function takes them."""),
    ("code", QUICKSTART),
    ("code", "corredit.restore(h, result)      # the model as it was, bit for bit"),
    ("code", """import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

torch.manual_seed(0)
from corredit.world import load_world
from corredit.models import load

world = load_world()          # the embedded knowledge world (data/world-default)
h = load("world", device="cpu")
print(world.summary()["n_facts"], "facts;", h.n_layers, "layers")
reqs = world.requests(["born_in", "occupation", "plays"], subject_first=True, n=96, seed=0)
reqs[0]"""),
    ("md", """## How correlated are the edits?

Every embedder maps edits to vectors. `tfidf` over the subject captures surface
similarity of names; `whitened_key` is MEMIT's own view, `C^{-1/2} k` at the edit layer,
which needs the key statistics `C`."""),
    ("code", """from corredit.editors import get_editor
from corredit.embed import make_embedder
from corredit.stats import TextsCorpus, second_moments

memit = get_editor("memit")()
layers = memit.hparams_for(h).layers
stats = second_moments(h, layers, TextsCorpus(list(world.stats_texts()), identity="world"),
                       max_tokens=20_000)
subject = make_embedder("tfidf", field="subject").fit(reqs).transform(reqs)
keys = make_embedder("whitened_key", handle=h, second_moment=stats).fit(reqs).transform(reqs)
unit = keys / np.linalg.norm(keys, axis=1, keepdims=True)
cos = unit @ unit.T
same = np.array([[a.subject == b.subject for b in reqs] for a in reqs])
pairs = ~np.eye(len(reqs), dtype=bool)
print("whitened-key cosine, same subject:", round(float(cos[same & pairs].mean()), 3),
      "| other subjects:", round(float(cos[~same].mean()), 3))"""),
    ("md", "## The correlation graph"),
    ("code", """from corredit.graph import graph_statistics, knn_graph

G = knn_graph(reqs, {"whitened_key": keys, "subject_tfidf": subject}, k=5, on="whitened_key")
stats_g = graph_statistics(G, seed=0)
{k: stats_g[k] for k in ("n_nodes", "n_edges", "n_communities") if k in stats_g}"""),
    ("md", """## Correlated and decorrelated batches

The same 96 edits, scheduled two ways into batches of 16. `batch_correlation` reports
each batch's within-batch similarity."""),
    ("code", """from corredit.schedule import make_schedule

scheds = {name: make_schedule(name, reqs, 16, embeddings=keys, seed=0)
          for name in ("correlated", "random", "decorrelated")}
columns = ["mean_similarity", "max_similarity", "mean_nearest_similarity", "same_subject_pairs"]
pd.DataFrame({name: s.batch_correlation(keys, reqs)[columns].mean()
              for name, s in scheds.items()}).round(3)"""),
    ("md", """## MEMIT on each kind of batch

Each batch is edited into the unedited model, scored with the probability suite
(efficacy ES, paraphrase PS, neighbourhood NS, x100), and restored bit for bit."""),
    ("code", """import corredit

rows = []
for name, sched in scheds.items():
    for batch in sched.split(reqs):
        result = corredit.edit(h, batch, "memit", stats=stats)
        rows.append(corredit.score(h, batch, result=result, scheduler=name))
        corredit.restore(h, result)
rows = pd.concat(rows)
scores = rows[rows.metric.isin(["ES", "PS", "NS"])]
(scores.groupby(["scheduler", "metric"]).value.mean().unstack() * 100).round(1)"""),
    ("md", """## A whole experiment: config, run, results, figures

`corredit.demo.demo_config(quick=True)` is the reduced demo grid. `run_experiment`
returns the results table and, given `out`, writes a run folder (tidy
`results.parquet`, `config.json`, schedules, graph edges) that resumes if interrupted;
the plot functions take the results table."""),
    ("code", """from corredit.plots import (correlation_measures, plot_score_difference,
                            plot_scores_vs_correlation, read_run, summary_table)
from corredit.demo import demo_config

out = tempfile.mkdtemp(prefix="corredit-walkthrough-")
corredit.run_experiment(demo_config(quick=True), out, progress=False)
run = read_run(out)                 # the results with each case's subject
df = run.results
summary_table(df).head(12)"""),
    ("code", """measure = correlation_measures(df)[0]
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
plot_scores_vs_correlation(df, measure, metric="ES", ax=axes[0])
plot_score_difference(df, ax=axes[1])
fig.tight_layout()"""),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in CELLS]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


if __name__ == "__main__":
    nbformat.write(build(), NOTEBOOK)
    print(f"wrote {NOTEBOOK}")
