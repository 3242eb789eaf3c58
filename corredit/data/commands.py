"""The ``corredit data`` subcommands.

Usage::

    corredit data info PATH [--format NAME] [--json] [--strict] [--zsre-target alt|answers]
                            [--problems N]     # exit 1 when no record could be used
    corredit data formats
    corredit data sources
    corredit data fetch NAME [--cache-dir DIR]
    corredit data known DATA --model smollm2-135m [--criterion prefers_true|top_k] --out kept.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` and its subcommands to the ``corredit`` parser."""
    data = subparsers.add_parser("data", help="read and describe edit sets",
                                 description="Read and describe edit sets.")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True

    info = sub.add_parser("info", help="what an edit-set file or folder holds",
                          description="Load an edit set and print its figures: records, "
                                      "subjects, relations, subjects with several facts, the "
                                      "relation histogram, problems.")
    info.add_argument("path", metavar="PATH", help="a data file, a folder of data files, "
                                                   "or a world folder")
    info.add_argument("--format", default=None, metavar="NAME",
                      help="the format (default: detected); see 'corredit data formats'")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--strict", action="store_true",
                      help="fail on the first bad record instead of setting it aside")
    info.add_argument("--zsre-target", choices=("alt", "answers"), default=None,
                      help="zsRE: the new target is 'alt' (default) or answers[0]")
    info.add_argument("--problems", type=int, default=20, metavar="N",
                      help="how many problems to list (default 20)")
    info.set_defaults(func=_info)

    formats = sub.add_parser("formats", help="list the known edit-set formats")
    formats.set_defaults(func=_formats)

    sources = sub.add_parser("sources", help="list the datasets 'fetch' knows")
    sources.set_defaults(func=_sources)

    fetch = sub.add_parser("fetch", help="download a named public dataset into the cache",
                           description="Download a named dataset once into the user cache, "
                                       "checking its size and SHA-256.")
    fetch.add_argument("name", metavar="NAME", help="see 'corredit data sources'")
    fetch.add_argument("--cache-dir", default=None, metavar="DIR",
                       help="cache folder (default: $CORREDIT_CACHE/data or "
                            "~/.cache/corredit/data)")
    fetch.set_defaults(func=_fetch)

    _register_known(sub)


def _register_known(sub: argparse._SubParsersAction) -> None:
    known = sub.add_parser(
        "known", help="keep the edits whose true object a model already holds",
        description="Score every edit's true and new object on the model and keep those "
                    "it already knows; print counts per relation and write the kept set "
                    "(corredit JSONL).")
    known.add_argument("path", metavar="DATA", help="a data file or folder (any known format)")
    known.add_argument("--model", required=True, help="model name or path (corredit models list)")
    known.add_argument("--format", default=None, metavar="NAME")
    known.add_argument("--criterion", default="prefers_true", choices=("prefers_true", "top_k"),
                       help="prefers_true: p(true) > p(new) (mean token NLL); top_k: the true "
                            "object's first token among the k most likely")
    known.add_argument("--k", type=int, default=10, help="k of --criterion top_k")
    known.add_argument("--limit", type=int, default=None, help="stop after this many are kept")
    known.add_argument("--max-edits", type=int, default=None, help="judge only the first N edits")
    known.add_argument("--out", default=None, metavar="FILE", help="write the kept edits here")
    known.add_argument("--table", default=None, metavar="FILE",
                       help="write the per-edit table here (.parquet or .csv)")
    known.add_argument("--json", action="store_true", help="print one JSON object")
    known.set_defaults(func=_known)


def _known(args: argparse.Namespace) -> int:
    from corredit.data import load_dataset, write_requests
    from corredit.evaluate.known import select_known
    from corredit.models import load

    res = load_dataset(args.path, format=args.format)
    reqs = res.requests[: args.max_edits] if args.max_edits else res.requests
    h = load(args.model)
    sel = select_known(h, reqs, criterion=args.criterion, k=args.k, limit=args.limit,
                       progress=lambda n, kept: print(f"  judged {n}, known {kept}", file=sys.stderr))
    if args.out:
        write_requests(args.out, sel.kept)
    if args.table:
        (sel.table.to_csv(args.table, index=False) if str(args.table).endswith(".csv")
         else sel.table.to_parquet(args.table, index=False))
    rel = sel.per_relation()
    judged = len(sel.table)
    summary = {"data": str(args.path), "model": args.model, "criterion": args.criterion,
               "k": args.k, "judged": judged, "known": len(sel.kept),
               "fraction": (len(sel.kept) / judged) if judged else 0.0,
               "true_first_token_argmax": float((sel.table["true_rank"] == 0).mean()) if judged else 0.0,
               "per_relation": {k: {"total": int(v.total), "known": int(v.known)} for k, v in rel.iterrows()},
               "out": args.out}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.model} on {args.path}: {len(sel.kept)} of {judged} edits known "
              f"({summary['fraction']:.1%}, criterion {args.criterion}); true object's first "
              f"token is the argmax on {summary['true_first_token_argmax']:.1%}")
        print(rel.to_string())
        if args.out:
            print(f"kept edits written to {args.out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from corredit.data import format_summary, load_dataset, summarize

    options = {}
    if args.zsre_target is not None:
        options["target"] = args.zsre_target
    logger = logging.getLogger("corredit.data")
    was_disabled, logger.disabled = logger.disabled, True  # the line below says it instead
    try:
        res = load_dataset(args.path, format=args.format, strict=args.strict, **options)
    finally:
        logger.disabled = was_disabled
    summary = summarize(res, max_problems=max(args.problems, 0))
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(format_summary(summary))
    if res.n_input and not res.n_kept:
        print(f"corredit data info: error: no record could be used: {res.summary()}",
              file=sys.stderr)
        return 1
    if not res.clean:
        print(f"corredit data info: warning: {res.summary()}", file=sys.stderr)
    return 0


def _formats(args: argparse.Namespace) -> int:
    from corredit.data import FORMATS

    for name in FORMATS.names():
        fmt = FORMATS.get(name)
        opts = "".join(f" [{k}={v!r}]" for k, v in fmt.options.items())
        print(f"{name:18s} {fmt.description}{opts}")
    return 0


def _sources(args: argparse.Namespace) -> int:
    from corredit.data import SOURCES

    for name in SOURCES.names():
        src = SOURCES.get(name)
        print(f"{name:28s} {src.size:>10,} B  {src.description}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from corredit.data import fetch_dataset

    print(fetch_dataset(args.name, cache_dir=args.cache_dir))
    return 0
