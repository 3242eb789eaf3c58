"""``corredit stats`` subcommands.

Usage::

    corredit stats compute --model world --layers 2,3 --corpus world --max-tokens 20000 --cache DIR
    corredit stats compute --model gpt2 --layers 8 --corpus wiki.test.raw.txt --clean wikitext \\
        --max-tokens 100000 --cache DIR --export-dir ref/      # also write reference .npz files
    corredit stats throughput --model world --layers 2,3 --corpus world --max-tokens 20000
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def _layers(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers must be comma-separated integers, got {text!r}")
    if not out:
        raise argparse.ArgumentTypeError("--layers is empty")
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model path or name ('world' = embedded model)")
    p.add_argument("--layers", required=True, type=_layers, help="comma-separated layers, e.g. 2,3")
    p.add_argument("--corpus", required=True,
                   help="'world' (the embedded world's statistics texts) or a text file path")
    p.add_argument("--split", default="line", choices=("line", "paragraph"),
                   help="documents of a text file: one per line or per blank-line paragraph")
    p.add_argument("--clean", default=None, help="cleaner for a text file (e.g. wikitext)")
    p.add_argument("--max-tokens", type=int, default=None, help="token budget (non-padding)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128, help="truncate documents (tokens)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="model dtype, e.g. float32, bfloat16")
    p.add_argument("--precision", default="float64", choices=("float64", "mixed"),
                   help="float64 products (exact) or float32 products summed in float64")


def register(subparsers: Any) -> None:
    """Add ``stats compute`` and ``stats throughput``."""
    stats = subparsers.add_parser("stats", help="covariance statistics of MLP keys")
    sub = stats.add_subparsers(dest="stats_command", metavar="SUBCOMMAND")
    sub.required = True

    c = sub.add_parser("compute", help="compute (or load from the cache) second moments")
    _common(c)
    c.add_argument("--cache", required=True, help="cache folder")
    c.add_argument("--recompute-on-mismatch", action="store_true",
                   help="recompute entries whose provenance differs instead of failing")
    c.add_argument("--export-dir", default=None,
                   help="also write each layer in the reference .npz layout there")
    c.add_argument("--progress", action="store_true")
    c.set_defaults(func=_compute)

    t = sub.add_parser("throughput", help="tokens/s of the statistics pass vs a bare forward, and "
                       "the ceiling forward/(forward+products) that its key products allow")
    _common(t)
    t.add_argument("--repeats", type=int, default=3, help="alternations of the two passes; the ratio is the median of theirs")
    t.set_defaults(func=_throughput)


def _corpus(args: argparse.Namespace) -> Any:
    from corredit.stats import TextFileCorpus, TextsCorpus

    if args.corpus == "world":
        from corredit.world import load_world

        texts = load_world().stats_texts()
        return TextsCorpus(texts)
    return TextFileCorpus(args.corpus, split=args.split, clean=args.clean)


def _handle(args: argparse.Namespace) -> Any:
    from corredit.models import load

    return load(args.model, device=args.device, dtype=args.dtype)


def _compute(args: argparse.Namespace) -> int:
    from pathlib import Path

    from corredit.stats import StatsCache, reference_filename, save_npz

    h = _handle(args)
    corpus = _corpus(args)
    cache = StatsCache(args.cache, batch_size=args.batch_size, max_length=args.max_length,
                       precision=args.precision,
                       on_mismatch="recompute" if args.recompute_on_mismatch else "error",
                       progress=args.progress)
    mom = cache.get(h, args.layers, corpus, args.max_tokens)
    report = []
    for layer, m in mom.items():
        entry = {"layer": layer, "tokens": m.count, "d_k": m.d_k,
                 "path": str(cache.path(h, layer, corpus, args.max_tokens))}
        if args.export_dir:
            module = m.provenance.get("module") or f"layer{layer}"
            name = reference_filename(module, dtype="float64",
                                      sample_size=m.provenance.get("documents"))
            entry["exported"] = str(save_npz(Path(args.export_dir) / name, m, provenance=False))
        report.append(entry)
    print(json.dumps({"model": h.name, "corpus": corpus.identity, "layers": report}, indent=2))
    return 0


def _throughput(args: argparse.Namespace) -> int:
    from corredit.stats import measure_throughput

    if args.max_tokens is None:
        raise ValueError("--max-tokens is required for throughput")
    h = _handle(args)
    res = measure_throughput(h, args.layers, _corpus(args), max_tokens=args.max_tokens,
                             batch_size=args.batch_size, max_length=args.max_length,
                             precision=args.precision, repeats=args.repeats)
    print(json.dumps({"model": h.name, "layers": args.layers, **res}, indent=2))
    return 0
