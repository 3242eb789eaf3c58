"""The ``embed``, ``graph`` and ``schedule`` subcommands: correlation between edits.

Usage::

    corredit embed DATA --embedder tfidf --field subject --out vecs.parquet
    corredit embed DATA --embedder minilm --field relation --out rel.parquet
    corredit embed DATA --embedder hidden --model world --layer 3 --out h3.parquet
    corredit embed DATA --embedder whitened_key --model world --editor memit --out wk.parquet
    corredit graph DATA --embeddings vecs.parquet --k 10 --out-edges edges.parquet \\
        --graphml g.graphml                      # prints graph statistics
    corredit graph DATA --embeddings subj=vecs.parquet --embeddings rel=rel.parquet \\
        --on subj --threshold 0.8 --out-edges edges.parquet
    corredit schedule DATA --embeddings vecs.parquet --scheduler decorrelated \\
        --batch-size 100 --seed 0 --out schedule.parquet   # prints per-batch correlation

DATA is any path ``corredit.data.load_dataset`` reads (a file or a folder), with an
optional ``--format``. Vectors, edge lists and schedules are written as parquet; graphs
also as GraphML. Heavy modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["register"]

_TEXT_EMBEDDERS = ("tfidf", "minilm")


def register(subparsers: Any) -> None:
    """Add the ``embed``, ``graph`` and ``schedule`` subcommands."""
    _register_embed(subparsers)
    _register_graph(subparsers)
    _register_schedule(subparsers)


# -- shared pieces ---------------------------------------------------------------------------

def _data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="edit set: a file or a folder that corredit.data reads")
    p.add_argument("--format", default=None, help="data format (default: detected)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first bad record instead of setting it aside")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


class _Stages:
    """A tqdm bar over the named stages of a command (on stderr)."""

    def __init__(self, names: Sequence[str], *, desc: str, quiet: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(names), desc=desc, unit="stage", disable=quiet,
                        file=sys.stderr, leave=False)

    def stage(self, name: str) -> "_Stages":
        self.bar.set_postfix_str(name)
        return self

    def __enter__(self) -> "_Stages":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _load_requests(args: argparse.Namespace) -> list:
    from corredit.data import load_dataset

    res = load_dataset(args.data, format=args.format, strict=args.strict)
    if res.problems:
        print(res.problem_report(limit=10), file=sys.stderr)
    if not res.requests:
        raise ValueError(f"{args.data}: no edit requests to work on")
    return list(res.requests)


def _dataset_identity(args: argparse.Namespace) -> str:
    return f"{Path(args.data).resolve()}|format={args.format or 'auto'}"


def _read_named_vectors(specs: Sequence[str], case_ids: Sequence[str]) -> dict[str, Any]:
    """``NAME=PATH`` or ``PATH`` (name from the file's metadata) -> {name: aligned matrix}."""
    from corredit.embed import read_vectors

    out: dict[str, Any] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or Path(spec).exists():
            name, path = "", spec
        vec = read_vectors(path)
        name = name or vec.name
        if name in out:
            raise ValueError(f"{path}: embedding name {name!r} is given twice; "
                             "name them with NAME=PATH")
        out[name] = vec.aligned_to(case_ids, source=str(path))
    return out


def _parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` items; values parsed as JSON when they parse, else kept as text."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


# -- embed -----------------------------------------------------------------------------------

def _register_embed(sub: Any) -> None:
    p = sub.add_parser(
        "embed", help="embed the edits of a dataset and write the vectors as parquet",
        description="Embed every edit request (its subject, relation or whole triple) and "
                    "write one vector per case id to a parquet file.")
    _data_arguments(p)
    p.add_argument("--embedder", default="tfidf",
                   help="tfidf, minilm, hidden, editor_key or whitened_key (default: tfidf)")
    p.add_argument("--field", default="subject", choices=("subject", "relation", "triple"))
    p.add_argument("--out", required=True, help="output parquet file")
    p.add_argument("--name", default=None,
                   help="name of the embedding in later graphs (default: EMBEDDER:FIELD)")
    g = p.add_argument_group("text embedders")
    g.add_argument("--dim", type=int, default=None, help="tfidf: dimension cap (256)")
    g.add_argument("--placeholder", default=None, help="relation text: subject slot shown as")
    g.add_argument("--relation-source", default=None, choices=("template", "id"),
                   help="relation text from the prompt template (default) or relation id")
    g.add_argument("--encoder", dest="model_path", default=None,
                   help="minilm: another local sentence-transformers folder")
    m = p.add_argument_group("model embedders")
    m.add_argument("--model", default=None, help="model folder or name ('world' = embedded)")
    m.add_argument("--device", default=None, help="cpu, cuda... (default: automatic)")
    m.add_argument("--layer", type=int, default=None,
                   help="hidden: layer to read; editor keys: edit layer (default: editor's first)")
    m.add_argument("--site", default=None, help="hidden: block (default), mlp_out, attn_out...")
    m.add_argument("--io", default=None, choices=("input", "output"), help="hidden: site side")
    m.add_argument("--relation-from", default=None, choices=("template", "subjects"),
                   help="hidden relation: template's last token, or mean over its subjects")
    m.add_argument("--editor", default=None, help="editor keys: whose key (default: memit)")
    m.add_argument("--hparams", default=None, help="editor keys: JSON hyperparameter overrides")
    m.add_argument("--seed", type=int, default=None, help="context templates / SVD seed")
    m.add_argument("--batch-size", type=int, default=None)
    s = p.add_argument_group("whitened keys")
    s.add_argument("--stats-corpus", default=None,
                   help="text file for the key second moment (default for --model world: "
                        "the world's statistics texts)")
    s.add_argument("--stats-tokens", type=int, default=None,
                   help="tokens for the second moment (default: 20 x key size)")
    s.add_argument("--ridge", type=float, default=None, help="add ridge*I to C")
    c = p.add_argument_group("cache")
    c.add_argument("--cache", default=None, help="embedding cache folder "
                   "(default: $CORREDIT_CACHE/embeddings or ~/.cache/corredit/embeddings)")
    c.add_argument("--no-cache", action="store_true", help="always recompute")
    p.set_defaults(func=_embed)


def _load_model(args: argparse.Namespace) -> Any:
    if not args.model:
        raise ValueError(f"embedder {args.embedder!r} needs --model (a folder, or 'world')")
    from corredit.models import load

    return load(args.model, device=args.device)


def _second_moment(args: argparse.Namespace, handle: Any, layer: int) -> Any:
    from corredit.paths import cache_root
    from corredit.stats import StatsCache, TextFileCorpus, TextsCorpus

    if args.stats_corpus:
        corpus = TextFileCorpus(args.stats_corpus)
    elif args.model == "world":
        from corredit.world import load_world

        texts = list(load_world().stats_texts())
        corpus = TextsCorpus(texts, identity="world-stats")
    else:
        raise ValueError("embedder 'whitened_key' needs --stats-corpus (a text file, one "
                         "document per line) to estimate the key second moment")
    tokens = args.stats_tokens or 20 * int(handle.key_size)
    cache = StatsCache(cache_root() / "stats")
    return cache.get(handle, [layer], corpus, max_tokens=tokens)[layer]


def _embedder_from_args(args: argparse.Namespace) -> Any:
    from corredit.embed import EMBEDDERS

    cls = EMBEDDERS.get(args.embedder)
    accepted = inspect.signature(cls.__init__).parameters
    given = {
        "field": args.field, "dim": args.dim, "placeholder": args.placeholder,
        "relation_source": args.relation_source, "model_path": args.model_path,
        "layer": args.layer, "site": args.site, "io": args.io,
        "relation_from": args.relation_from, "editor": args.editor, "seed": args.seed,
        "batch_size": args.batch_size, "ridge": args.ridge,
        "hparams": json.loads(args.hparams) if args.hparams else None,
    }
    params = {k: v for k, v in given.items() if v is not None and k in accepted}
    ignored = sorted(k for k, v in given.items()
                     if v is not None and k not in accepted and k != "field")
    if ignored:
        raise ValueError(f"embedder {args.embedder!r} takes no option(s) "
                         + ", ".join("--" + k.replace("_", "-") for k in ignored))
    if "progress" in accepted:
        params["progress"] = not args.quiet
    if "handle" in accepted:
        params["handle"] = _load_model(args)
    if "device" in accepted and args.device and "handle" not in accepted:
        params["device"] = args.device
    emb = cls(**params)
    if "second_moment" in accepted:
        layer = emb.resolved_layer()
        emb.second_moment = _second_moment(args, params["handle"], layer)
    return emb


def _embed(args: argparse.Namespace) -> int:
    from corredit.embed import EmbeddingCache, embed_requests, field_texts, write_vectors

    t0 = time.perf_counter()
    requests = _load_requests(args)
    emb = _embedder_from_args(args)
    cache = None if args.no_cache else EmbeddingCache(args.cache)
    stages = _Stages(["embed"], desc=f"embed {args.embedder}", quiet=args.quiet)
    with stages.stage(f"{len(requests)} edits"):
        X = embed_requests(requests, emb, cache=cache, dataset=_dataset_identity(args))
    stages.close()
    identity = emb.identity()
    meta = {"name": args.name or f"{args.embedder}:{args.field}", "embedder": args.embedder,
            "field": args.field, "dataset": str(args.data), "format": args.format,
            "model": identity.get("model"), "layer": identity.get("layer"),
            "identity": identity}
    texts = field_texts(requests, args.field) if args.embedder in _TEXT_EMBEDDERS else None
    out = write_vectors(args.out, [r.case_id for r in requests], X, meta=meta, texts=texts)
    hit = " (from cache)" if cache is not None and cache.hits else ""
    print(f"{len(requests)} edits -> {X.shape[1]}-dim {meta['name']} vectors{hit} "
          f"in {time.perf_counter() - t0:.1f} s: {out}")
    return 0


# -- graph -----------------------------------------------------------------------------------

def _register_graph(sub: Any) -> None:
    p = sub.add_parser(
        "graph", help="build the correlation graph of a dataset's edits",
        description="Join edits that are similar under an embedding (k nearest neighbours "
                    "or a similarity threshold); every edge carries its similarity under "
                    "each given embedding. Prints graph statistics.")
    _data_arguments(p)
    p.add_argument("--embeddings", action="append", required=True, metavar="[NAME=]PATH",
                   help="vectors from 'corredit embed' (repeat for several embeddings)")
    p.add_argument("--on", default=None, help="embedding the graph is built from "
                   "(default: the first one given)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--k", type=int, default=None, help="k nearest neighbours (default 10)")
    how.add_argument("--threshold", type=float, default=None,
                     help="join pairs with cosine similarity >= this")
    p.add_argument("--mutual", action="store_true", help="kNN: keep mutual neighbours only")
    p.add_argument("--out-edges", default=None, help="edge list parquet file")
    p.add_argument("--graphml", default=None, help="GraphML file")
    p.add_argument("--seed", type=int, default=0, help="seed of the community detection")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=_graph)


def _graph(args: argparse.Namespace) -> int:
    from corredit.graph import graph_statistics, knn_graph, threshold_graph, to_edge_frame, \
        write_graphml
    from corredit.atomic import atomic_write_parquet

    stages = _Stages(["load", "vectors", "build", "statistics", "write"], desc="graph",
                     quiet=args.quiet)
    with stages.stage("load data"):
        requests = _load_requests(args)
    with stages.stage("read vectors"):
        named = _read_named_vectors(args.embeddings, [r.case_id for r in requests])
    on = args.on or next(iter(named))
    with stages.stage("build"):
        if args.threshold is not None:
            G = threshold_graph(requests, named, threshold=args.threshold, on=on)
        else:
            G = knn_graph(requests, named, k=args.k or 10, on=on, mutual=args.mutual)
    with stages.stage("statistics"):
        stats = graph_statistics(G, seed=args.seed)
    with stages.stage("write"):
        if args.out_edges:
            atomic_write_parquet(to_edge_frame(G), Path(args.out_edges))
        if args.graphml:
            write_graphml(G, args.graphml)
    stages.close()
    stats = {"embedding": on, **stats}
    if args.json:
        print(json.dumps(stats, default=str))
    else:
        width = max(len(k) for k in stats)
        for key, value in stats.items():
            print(f"{key:<{width}}  {_fmt(value)}")
    return 0


# -- schedule --------------------------------------------------------------------------------

def _register_schedule(sub: Any) -> None:
    p = sub.add_parser(
        "schedule", help="split a dataset's edits into batches with a scheduler",
        description="Assign every edit to a batch (random, correlated, decorrelated, "
                    "same-subject...) and print how correlated each batch is.")
    _data_arguments(p)
    p.add_argument("--embeddings", action="append", default=None, metavar="[NAME=]PATH",
                   help="vectors from 'corredit embed'; the first one drives the scheduler, "
                        "all are summarised")
    p.add_argument("--scheduler", default="random", help="scheduler name (default: random)")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="scheduler parameter (repeatable)")
    p.add_argument("--out", required=True, help="schedule parquet (batch, position, index, "
                   "case_id)")
    p.add_argument("--out-batches", default=None,
                   help="per-batch correlation table parquet")
    p.add_argument("--per-batch", action="store_true", help="print every batch's row")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_schedule)


def _schedule(args: argparse.Namespace) -> int:
    from corredit.atomic import atomic_write_parquet
    from corredit.schedule import batch_correlation, make_schedule

    stages = _Stages(["load", "vectors", "schedule", "measure", "write"], desc="schedule",
                     quiet=args.quiet)
    with stages.stage("load data"):
        requests = _load_requests(args)
    with stages.stage("read vectors"):
        named = _read_named_vectors(args.embeddings or (), [r.case_id for r in requests])
    main = next(iter(named.values()), None)
    with stages.stage(args.scheduler):
        sched = make_schedule(args.scheduler, requests, args.batch_size, embeddings=main,
                              seed=args.seed, **_parse_params(args.param))
    with stages.stage("measure"):
        per_batch = batch_correlation(sched, named, requests) if named else None
        summaries = {name: sched.summary(X, requests) for name, X in named.items()}
    with stages.stage("write"):
        atomic_write_parquet(sched.to_frame().assign(scheduler=args.scheduler, seed=args.seed),
                             Path(args.out))
        if args.out_batches and per_batch is not None:
            atomic_write_parquet(per_batch, Path(args.out_batches))
    stages.close()
    head = {"scheduler": args.scheduler, "batch_size": args.batch_size, "seed": args.seed,
            "n_edits": sched.n_edits, "n_batches": sched.n_batches}
    if args.json:
        print(json.dumps({**head, "summary": summaries}, default=str))
        return 0
    print(" ".join(f"{k}={v}" for k, v in head.items()))
    if per_batch is None:
        print("(no --embeddings: no similarity summary)")
        return 0
    for name, df in per_batch.groupby("embedding", sort=False):
        print(f"\nwithin-batch similarity under {name} (per batch: mean / min / max over "
              f"{len(df)} batches)")
        cols = ["mean_similarity", "mean_nearest_similarity", "max_similarity"]
        for col in cols:
            v = df[col].dropna()
            if len(v):
                print(f"  {col:<24} {v.mean():.4f} / {v.min():.4f} / {v.max():.4f}")
        for col in ("same_subject_pairs", "same_relation_pairs"):
            if col in df and (df[col] >= 0).all():
                print(f"  {col:<24} total {int(df[col].sum())}")
        s = summaries[name]
        print("  whole schedule: " + ", ".join(
            f"{k}={_fmt(v)}" for k, v in s.items()
            if k in ("mean_similarity", "mean_nearest_similarity", "max_similarity",
                     "floor_similarity")))
    if args.per_batch:
        print()
        print(per_batch.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0
