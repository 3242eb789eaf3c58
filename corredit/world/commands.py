"""``corredit world ...``: build, describe and export the embedded knowledge world.

Usage::

    corredit world info [--path DIR] [--json]
    corredit world build [--out DIR] [--seed N] [--n-people N] [--name-sharing RATE] ...
    corredit world requests [--path DIR] [--relation ID ...] [--subject-first|--subject-last]
                            [-n N] [--seed N] [--out FILE]

``info`` loads the model and measures first-token recall now (it is not read from the
build report). ``build`` with default options reproduces ``data/world-default`` bit for
bit (``report.json`` aside, which records timings).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``world`` command group to the ``corredit`` parser."""
    from corredit.world.options import WorldOptions

    world = subparsers.add_parser("world", help="the embedded knowledge world",
                                  description="Build, describe and export the knowledge world.")
    sub = world.add_subparsers(dest="world_command", metavar="SUBCOMMAND")
    sub.required = True

    info = sub.add_parser("info", help="counts and model recall of a world (measured now)")
    info.add_argument("--path", type=Path, default=None,
                      help="world folder (default: the default world)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--batch-size", type=int, default=256, help="prompts per forward pass")
    info.add_argument("--threads", type=int, default=1,
                      help="CPU threads for the measurement (default: 1)")
    info.set_defaults(func=_info)

    build = sub.add_parser("build", help="build a world (graph, texts, tokenizer, model)")
    build.add_argument("--out", type=Path, default=Path("corredit-world"),
                       help="output folder (default: ./corredit-world)")
    build.add_argument("--force", action="store_true", help="replace an existing world folder")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    defaults = WorldOptions()
    for f in fields(WorldOptions):
        value = getattr(defaults, f.name)
        build.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=type(value),
                           default=value, metavar=type(value).__name__.upper(),
                           help=f"{f.metadata.get('help', '')} (default: {value})")
    build.set_defaults(func=_build)

    req = sub.add_parser("requests", help="write a world's edit requests as corredit JSONL")
    req.add_argument("--path", type=Path, default=None,
                     help="world folder (default: the default world)")
    req.add_argument("--relation", action="append", default=None, help="relation id (repeatable)")
    side = req.add_mutually_exclusive_group()
    side.add_argument("--subject-first", dest="subject_first", action="store_const", const=True,
                      default=None, help="only subject-first rewrite phrasings")
    side.add_argument("--subject-last", dest="subject_first", action="store_const", const=False,
                      help="only subject-last rewrite phrasings")
    req.add_argument("-n", type=int, default=None, help="a seeded sample of N requests")
    req.add_argument("--seed", type=int, default=0)
    req.add_argument("--out", type=Path, default=None, help="output file (default: stdout)")
    req.set_defaults(func=_requests)


def _load_model(path: Path):
    """``(model, tokenizer)`` through ``corredit.models.load`` when that package exists."""
    from corredit.world.build import load_model_and_tokenizer, quiet_transformers

    with quiet_transformers():
        try:
            from corredit.models import load
        except ModuleNotFoundError as exc:
            if exc.name != "corredit.models":
                raise
            return load_model_and_tokenizer(path)
        handle = load(str(path))
        return handle.model, handle.tokenizer


def _info(args: argparse.Namespace) -> int:
    from corredit.world import load_world
    from corredit.world.measure import recall_report

    world = load_world(args.path)
    out: dict[str, Any] = {"path": str(world.path)}
    out.update(world.summary())
    if world.model_dir is None:
        raise FileNotFoundError(f"{world.path}: the world folder holds no model")
    import torch

    torch.set_num_threads(args.threads)
    model, tokenizer = _load_model(world.model_dir)
    rep = recall_report(model, tokenizer, world.requests(), batch_size=args.batch_size)
    out.update({
        "model_dir": str(world.model_dir),
        "architecture": type(model).__name__,
        "n_layers": int(model.config.num_hidden_layers),
        "hidden_size": int(model.config.hidden_size),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "vocab_size": len(tokenizer),
        "recall": rep["recall"],
        "paraphrase_recall": rep["paraphrase_recall"],
        "subject_first_recall": rep["subject_first_recall"],
        "subject_last_recall": rep["subject_last_recall"],
        "recall_by_relation": rep["by_relation"],
        "train_seconds": world.report.get("train", {}).get("seconds"),
    })
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            if isinstance(v, float):
                v = f"{v:.4f}"
            print(f"{k:>22}: {v}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from corredit.world.build import RECALL_GATES, build_world
    from corredit.world.options import WorldOptions

    options = WorldOptions(**{f.name: getattr(args, f.name) for f in fields(WorldOptions)})
    try:
        world = build_world(args.out, options, progress=not args.no_progress,
                            overwrite=args.force)
    except FileExistsError as exc:
        raise ValueError(f"{exc}; pass --force to replace it") from None
    rep = world.report
    recall = rep["recall"]
    print(json.dumps({
        "path": str(world.path),
        "n_facts": len(world.facts),
        "n_params": rep["n_params"],
        "recall": recall["recall"],
        "paraphrase_recall": recall["paraphrase_recall"],
        "train_seconds": rep["train"]["seconds"],
        "build_seconds": rep["build_seconds"],
        "gates_passed": rep["gates_passed"],
    }))
    if not rep["gates_passed"]:
        print(f"corredit world build: warning: recall below the gates {RECALL_GATES}; "
              f"train longer (--epochs) or a larger model", file=sys.stderr)
        return 1
    return 0


def _requests(args: argparse.Namespace) -> int:
    from corredit.world import load_world

    world = load_world(args.path)
    reqs = world.requests(args.relation, subject_first=args.subject_first, n=args.n,
                          seed=args.seed)
    lines = "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in reqs)
    if args.out is None:
        sys.stdout.write(lines)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(lines, encoding="utf-8")
        print(f"wrote {len(reqs)} requests to {args.out}", file=sys.stderr)
    return 0
