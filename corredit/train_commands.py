"""``corredit train-editor``: train the learned part of an editor (MEND's network).

Usage::

    corredit train-editor mend --model world --data world --out runs/mend-world
    corredit train-editor mend --model world --data world --name world     # loadable as "world"
    corredit train-editor mend --model smollm2-135m \\
        --data ../shared/data/zsre/zsre_mend_train-1k.json --out runs/mend-smollm2
    corredit train-editor mend --model smollm2-135m --known prefers_true --max-edits 2000 \\
        --data ../shared/data/counterfact/counterfact-train.json --out runs/mend-smollm2-cf
    corredit train-editor mend ... --set steps=300 --set lr=1e-4 --seed 1

``--data world`` is the embedded world's training split: every world edit whose subject
none of the packaged demo configurations (``demo.toml``, ``demo-quick.toml``) edits, with
prompts that mention those subjects dropped (:func:`world_training_edits`). Any other
value is a file or folder that ``corredit.data`` reads; ``--known`` keeps the edits whose
true object the model already prefers (CounterFact's known facts). Training settings come
from ``[mend-training]`` in ``corredit/editors/defaults.toml``, then ``--set``. Rerunning
the same command resumes from the last checkpoint; the trained network is written as
``mend.safetensors`` + ``mend.json`` and is then used as
``get_editor("mend")({"network": OUT})`` (or the name).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "world_training_edits", "demo_subjects", "parse_settings"]


def register(subparsers: Any) -> None:
    """Add ``train-editor`` to the ``corredit`` parser."""
    p = subparsers.add_parser("train-editor", help="train an editor's network (MEND)",
                              description="Train the learned part of an editor on a set of edits.")
    p.add_argument("editor", choices=["mend"], help="the editor to train")
    p.add_argument("--model", required=True, help="model name or path (e.g. world, smollm2-135m)")
    p.add_argument("--data", required=True,
                   help="'world' (the world's training split) or an edit-set file or folder")
    p.add_argument("--format", default=None, help="data format (default: detected)")
    p.add_argument("--known", default=None, choices=["prefers_true", "top_k"],
                   help="keep only edits whose true object the model knows")
    p.add_argument("--known-k", type=int, default=10, help="k of --known top_k")
    p.add_argument("--max-edits", type=int, default=None, help="use at most this many edits")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", default=None, help="output folder (resumed if it holds a checkpoint)")
    where.add_argument("--name", default=None, help="save under the cache as NAME ($CORREDIT_CACHE/mend/NAME)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="training setting (TOML value), e.g. --set steps=300 --set layers=[3,4,5]")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many steps in total (resume later with the same command)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``["steps=300", "layers=[3, 4]"]`` -> ``{"steps": 300, "layers": [3, 4]}`` (TOML
    values; a bare word is a string)."""
    import tomllib

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def demo_subjects() -> set[str]:
    """Subjects edited by the packaged demo configurations (full and quick)."""
    from corredit.data.selection import select_requests
    from corredit.demo import demo_config
    from corredit.world import load_world

    w = load_world()
    subjects: set[str] = set()
    for quick in (False, True):
        data = demo_config(quick).data
        reqs = w.requests(relations=list(data.relations) if data.relations else None,
                          subject_first=data.subject_first, seed=data.seed)
        subjects |= {r.subject for r in select_requests(reqs, data)}
    return subjects


def world_training_edits(seed: int = 0) -> tuple[list, set[str]]:
    """(requests, excluded subjects): every world edit (phrasings and new targets drawn
    with ``seed``) whose subject the demo does not edit."""
    from corredit.world import load_world

    excluded = demo_subjects()
    reqs = [r for r in load_world().requests(seed=seed) if r.subject not in excluded]
    return reqs, excluded


def _train(args: argparse.Namespace) -> int:
    import torch

    from corredit.editors.mend import (
        examples_from_requests, named_dir, split_examples, train_mend, training_hparams,
    )
    from corredit.models import load

    if args.threads:
        torch.set_num_threads(args.threads)
    h = load(args.model, device=args.device, progress=not args.no_progress)
    hp = training_hparams(h, parse_settings(args.set))
    excluded: set[str] = set()
    if args.data == "world":
        requests, excluded = world_training_edits(args.seed)
    else:
        from corredit.data import load_dataset

        res = load_dataset(args.data, format=args.format)
        res.check()
        requests = res.requests
    if args.known:
        from corredit.evaluate.known import select_known

        requests = select_known(h, requests, criterion=args.known, k=args.known_k,
                                limit=args.max_edits).kept
    elif args.max_edits is not None:
        import numpy as np

        keep = np.sort(np.random.default_rng(args.seed).permutation(len(requests))[: args.max_edits])
        requests = [requests[i] for i in keep]
    examples = examples_from_requests(requests, exclude_subjects=excluded, source=args.data)
    train, val = split_examples(examples, hp.val_edits, seed=args.seed)
    info = {"source": args.data, "format": args.format, "known": args.known,
            "max_edits": args.max_edits, "n_train": len(train), "n_val": len(val),
            "excluded_subjects": len(excluded)}
    out = args.out if args.out is not None else named_dir(args.name)
    result = train_mend(h, train, hp, out, seed=args.seed, val_examples=val, data_info=info,
                        progress=not args.no_progress, stop_after=args.stop_after)
    summary = {"folder": str(result.folder), "steps_done": result.steps_done,
               "finished": result.finished, "seconds": round(result.seconds, 1),
               "n_train": len(train), "validation": result.validation}
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0
