"""Benchmark of the correlation pipeline: embed -> top-k neighbours -> graph -> schedules.

Usage::

    python analysis/bench_correlation.py                  # CounterFact (all 21,919 edits)
    python analysis/bench_correlation.py --data PATH      # any dataset corredit.data reads
    python analysis/bench_correlation.py --table          # also: every embedding x scheduler
                                                          # on the world and on CounterFact

The data default is every CounterFact record under ``../shared/data/counterfact``
(relative to the repository) when present, else the largest edit set of the embedded
world. The pipeline: the sentence encoder (all-MiniLM-L6-v2) over subjects, exact top-10
neighbours, the kNN graph, then the random, correlated and decorrelated schedules at
batch size 100. The last line printed is one JSON object with the timings (seconds),
``peak_rss_mb`` and the mean within-batch similarity of each schedule (``sim_*``: mean
cosine over all within-batch pairs; ``nearest_*``: mean over edits of the similarity to
the most similar other edit of its batch; ``floor_sim``: the lowest ``sim`` any split into
batches of that size can reach).

``--table`` checks, for every embedding (tfidf and minilm over subject, relation and
triple; on the world also the model's hidden state and the editor's raw and whitened
keys), that decorrelated < random < correlated in within-batch similarity, and prints
the table before the JSON line. Embeddings in table mode go through the embedding cache.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_COUNTERFACT = REPO.parent / "shared" / "data" / "counterfact"
SCHEDULERS = ("random", "correlated", "decorrelated")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_requests(data: str | None) -> tuple[list, str]:
    """The edit set and its label: ``data``, else CounterFact, else the world's largest."""
    from corredit.data import load_dataset

    if data:
        return list(load_dataset(data).requests), str(data)
    if SHARED_COUNTERFACT.is_dir():
        return list(load_dataset(SHARED_COUNTERFACT).requests), "counterfact"
    return world_requests(), "world"


def world_requests() -> list:
    """The embedded world's largest edit set."""
    from corredit.world import load_world

    return list(load_world().requests())


class Timer:
    """``with timer("name"): ...`` records wall seconds under ``name``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str) -> "Timer":
        self._name = name
        return self

    def __enter__(self) -> "Timer":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds[self._name] = round(time.perf_counter() - self._t0, 3)


def schedule_similarities(requests: Sequence, X: np.ndarray, batch_size: int, seed: int,
                          timer: Timer | None = None) -> dict[str, float]:
    """``sim_<scheduler>``, ``nearest_<scheduler>``, ``floor_sim`` for the three schedulers
    (and ``schedule_s`` etc. in ``timer``)."""
    from corredit.schedule import make_schedule, summarize_correlation

    out: dict[str, float] = {}
    for name in SCHEDULERS:
        t0 = time.perf_counter()
        s = make_schedule(name, requests, batch_size, embeddings=X, seed=seed)
        if timer is not None:
            key = "schedule_s" if name == "decorrelated" else f"schedule_{name}_s"
            timer.seconds[key] = round(time.perf_counter() - t0, 3)
        summary = summarize_correlation(s, X)
        out[f"sim_{name}"] = round(summary["mean_similarity"], 5)
        out[f"nearest_{name}"] = round(summary["mean_nearest_similarity"], 5)
        out["floor_sim"] = round(summary["floor_similarity"], 5)
    return out


def pipeline(requests: Sequence, *, batch_size: int, seed: int, k: int) -> dict[str, Any]:
    """Run the benchmark pipeline; returns the JSON fields."""
    from corredit.embed import SentenceEncoderEmbedder
    from corredit.graph import graph_statistics, knn_graph, top_k_neighbors

    timer = Timer()
    with timer("embed_s"):
        X = SentenceEncoderEmbedder(field="subject").fit_transform(requests)
    with timer("knn_s"):
        top_k_neighbors(X, k)
    with timer("graph_s"):
        G = knn_graph(requests, {"minilm_subject": X}, k=k)
    with timer("graph_stats_s"):
        stats = graph_statistics(G, seed=seed)
    sims = schedule_similarities(requests, X, batch_size, seed, timer)
    return {**timer.seconds, **sims, "graph_edges": stats["n_edges"],
            "graph_communities": stats.get("n_communities"),
            "graph_modularity": round(stats.get("modularity", float("nan")), 4)}


# -- per-embedding table ---------------------------------------------------------------------

def text_embeddings() -> list[tuple[str, Callable[[], Any]]]:
    """(name, factory) of the text embeddings checked on every dataset."""
    from corredit.embed import make_embedder

    out = []
    for kind in ("tfidf", "minilm"):
        for field in ("subject", "relation", "triple"):
            out.append((f"{kind}:{field}",
                        lambda kind=kind, field=field: make_embedder(kind, field=field)))
    return out


def world_model_embeddings() -> list[tuple[str, Callable[[], Any]]]:
    """(name, factory) of the model embeddings on the world: hidden states at the editor's
    first MEMIT layer and at the middle layer, and MEMIT's raw and whitened keys."""
    from corredit.editors import EngineKeys
    from corredit.embed import make_embedder
    from corredit.models import load
    from corredit.stats import StatsCache, TextsCorpus
    from corredit.paths import cache_root
    from corredit.world import load_world

    h = load("world")
    engine = EngineKeys("memit", seed=0)
    layer = engine.default_layer(h)
    mid = h.n_layers // 2
    corpus = TextsCorpus(list(load_world().stats_texts()), identity="world-stats")
    stats = StatsCache(cache_root() / "stats").get(
        h, [layer], corpus, max_tokens=20 * int(h.key_size))
    return [
        (f"hidden:subject:L{mid}", lambda: make_embedder("hidden", handle=h, layer=mid)),
        (f"hidden:relation:L{mid}",
         lambda: make_embedder("hidden", handle=h, layer=mid, field="relation")),
        (f"hidden:triple:L{mid}",
         lambda: make_embedder("hidden", handle=h, layer=mid, field="triple")),
        (f"editor_key:memit:L{layer}",
         lambda: make_embedder("editor_key", handle=h, layer=layer, editor="memit", seed=0)),
        (f"whitened_key:memit:L{layer}",
         lambda: make_embedder("whitened_key", handle=h, layer=layer, editor="memit", seed=0,
                               second_moment=stats[layer])),
    ]


def correlation_table(dataset: str, requests: Sequence,
                      embeddings: list[tuple[str, Callable[[], Any]]], *,
                      batch_size: int, seed: int) -> list[dict[str, Any]]:
    """One row per embedding: within-batch similarity under each scheduler and whether
    decorrelated < random < correlated holds (pairwise mean and nearest-neighbour)."""
    from corredit.embed import EmbeddingCache, embed_requests

    cache = EmbeddingCache()
    rows = []
    for name, factory in embeddings:
        t0 = time.perf_counter()
        X = embed_requests(requests, factory(), cache=cache, dataset=dataset)
        sims = schedule_similarities(requests, X, batch_size, seed)
        rows.append({
            "dataset": dataset, "embedding": name, "n": len(requests), "dim": X.shape[1],
            **sims,
            "order_mean": sims["sim_decorrelated"] < sims["sim_random"] < sims["sim_correlated"],
            "order_nearest": (sims["nearest_decorrelated"] < sims["nearest_random"]
                              < sims["nearest_correlated"]),
            "seconds": round(time.perf_counter() - t0, 1),
        })
        print(f"  {dataset} {name}: done in {rows[-1]['seconds']} s", file=sys.stderr)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """The per-embedding table, one line per (dataset, embedding)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    cols = ["dataset", "embedding", "n", "sim_decorrelated", "sim_random", "sim_correlated",
            "floor_sim", "nearest_decorrelated", "nearest_random", "nearest_correlated",
            "order_mean", "order_nearest"]
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="dataset path (default: CounterFact)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--table", action="store_true",
                        help="also check every embedding on the world and on CounterFact")
    parser.add_argument("--table-datasets", default="world,data",
                        help="comma list for --table: 'world' and/or 'data' (the benchmark "
                             "dataset); default both")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    load_start = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    requests, label = load_requests(args.data)
    load_s = round(time.perf_counter() - t0, 3)
    result = {"dataset": label, "n_edits": len(requests), "batch_size": args.batch_size,
              "torch_threads": torch.get_num_threads(), "load_s": load_s}
    result.update(pipeline(requests, batch_size=args.batch_size, seed=args.seed, k=args.k))
    result["total_s"] = round(time.perf_counter() - t0, 3)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["cpu_count"] = os.cpu_count()
    # machine load from other processes (1-minute average) before and after the pipeline
    result["load_avg_start"] = load_start
    result["load_avg_end"] = round(os.getloadavg()[0], 2)

    if args.table:
        rows = []
        which = {x.strip() for x in args.table_datasets.split(",") if x.strip()}
        unknown = which - {"world", "data"}
        if unknown:
            parser.error(f"--table-datasets: unknown {sorted(unknown)}; use world, data")
        if "world" in which:
            world = requests if label == "world" else world_requests()
            rows += correlation_table("world", world,
                                      text_embeddings() + world_model_embeddings(),
                                      batch_size=args.batch_size, seed=args.seed)
        if "data" in which and label != "world":
            rows += correlation_table(label, requests, text_embeddings(),
                                      batch_size=args.batch_size, seed=args.seed)
        print_table(rows)
        result["table_all_ordered_mean"] = all(r["order_mean"] for r in rows)
        result["table_all_ordered_nearest"] = all(r["order_nearest"] for r in rows)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
