"""``corredit locate``: causal tracing over known facts and a suggested edit layer.

Usage::

    corredit locate world --kind mlp --n 100 --window 3 --out runs/locate-world
    corredit locate data/counterfact.json --model smollm2-135m --kind mlp hidden --n 30 --out DIR

Writes ``rows.parquet`` (one row per fact, kind, token and layer), ``aggregate.parquet``
(six token groups × layers, bootstrap intervals), ``pairs.parquet`` (the profile
correlation of every pair of facts), ``figures/`` and ``layers.json`` (the suggested
ROME layer and MEMIT range, with the layer profile); prints the suggestion.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["register", "pick_requests"]


def register(subparsers: Any) -> None:
    """Add the ``locate`` command to the ``corredit`` parser."""
    p = subparsers.add_parser("locate", help="causal tracing: where a model stores facts",
                              description="Trace known facts, average the indirect effects, "
                                          "suggest edit layers.")
    p.add_argument("data", help="'world' or an edit-set file or folder")
    p.add_argument("--model", default=None, help="model name or path (default: 'world' for the world)")
    p.add_argument("--kind", nargs="+", default=["mlp"], choices=["hidden", "mlp", "attn"],
                   help="what is restored (several allowed; the layers come from mlp when traced)")
    p.add_argument("--n", type=int, default=100, help="known facts to trace")
    p.add_argument("--window", type=int, default=10, help="layers restored around each layer (mlp/attn)")
    p.add_argument("--samples", type=int, default=10, help="noise draws per fact")
    p.add_argument("--noise", type=float, default=None,
                   help="noise std (default: 3 x the std of subject-token embeddings)")
    p.add_argument("--per-subject", type=int, default=3,
                   help="facts taken per subject (same-subject pairs for the correlation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256, help="rows per forward pass")
    p.add_argument("--heatmaps", type=int, default=3, help="per-fact heatmaps to draw")
    p.add_argument("--max-width", type=int, default=5, help="widest MEMIT range suggested")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=_locate)


def pick_requests(requests: Sequence[Any], per_subject: int, seed: int) -> list[Any]:
    """Subjects in a seeded random order, up to ``per_subject`` of each one's facts in a
    row (requests without a true object left out)."""
    by_subject: dict[str, list[Any]] = {}
    for r in requests:
        if r.target_true is not None:
            by_subject.setdefault(r.subject, []).append(r)
    subjects = sorted(by_subject)
    random.Random(seed).shuffle(subjects)
    return [r for s in subjects for r in by_subject[s][:max(per_subject, 1)]]


def _load(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    from corredit.models import load

    if args.data == "world":
        from corredit.world import load_world

        requests = load_world().requests(seed=args.seed)
        model = args.model or "world"
    else:
        from corredit.data.loading import load_dataset

        loaded = load_dataset(args.data)
        requests = list(getattr(loaded, "requests", loaded))
        if args.model is None:
            raise ValueError("--model is required unless DATA is 'world'")
        model = args.model
    return load(model), requests


def _save(fig: Any, path: Path) -> str:
    fig.savefig(path, dpi=130)
    return str(path)


def _locate(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from corredit.evaluate.known import select_known
    from corredit.locate import aggregate, profile_correlation, suggest_layers
    from corredit.locate.tracing import embedding_noise_level, subject_keys, trace
    from corredit.plots.backend import new_figure
    from corredit.plots.locate import plot_profile_correlation, plot_trace_average, plot_trace_heatmap

    if args.n < 2:
        raise ValueError(f"--n must be >= 2, got {args.n}")
    h, requests = _load(args)
    pool = pick_requests(requests, args.per_subject, args.seed)
    known = select_known(h, pool, limit=args.n).kept
    if len(known) < 2:
        raise ValueError(f"only {len(known)} known facts among {len(pool)} requests")
    print(f"tracing {len(known)} known facts ({len(pool)} candidates)", file=sys.stderr)
    noise = args.noise if args.noise is not None else embedding_noise_level(h, known)
    out = args.out
    (out / "figures").mkdir(parents=True, exist_ok=True)
    frames = []
    for kind in args.kind:
        def progress(done: int, total: int, kind: str = kind) -> None:
            if done % 10 == 0 or done == total:
                print(f"  {kind}: {done}/{total}", file=sys.stderr)

        frames.append(trace(h, known, kind=kind, window=args.window, noise=noise, samples=args.samples,
                            seed=args.seed, batch_size=args.batch_size, progress=progress))
    rows = pd.concat(frames, ignore_index=True)
    rows.to_parquet(out / "rows.parquet", index=False)
    agg = aggregate(rows, n_boot=args.n_boot, seed=args.seed)
    agg.assign(group=agg["group"].astype(str)).to_parquet(out / "aggregate.parquet", index=False)

    figures = []
    cases = list(dict.fromkeys(rows["case_id"]))[:args.heatmaps]
    for kind in args.kind:
        fig, ax = new_figure(1, 1, panel=(6.0, 4.0))
        plot_trace_average(agg, kind=kind, ax=ax[0, 0])
        figures.append(_save(fig, out / "figures" / f"average_{kind}.png"))
        for case in cases:
            fig, ax = new_figure(1, 1, panel=(6.0, 4.0))
            plot_trace_heatmap(rows, case_id=case, kind=kind, ax=ax[0, 0])
            figures.append(_save(fig, out / "figures" / f"heatmap_{kind}_{case}.png"))

    layer_kind = "mlp" if "mlp" in args.kind else args.kind[0]
    suggestion = suggest_layers(agg, kind=layer_kind, max_width=args.max_width)
    keys = subject_keys(h, known, suggestion["edit_layer"])
    unit = keys / np.clip(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12, None)
    pairs, summary = profile_correlation(rows, kind=layer_kind, n_boot=args.n_boot, seed=args.seed,
                                         key_similarity=([str(r.case_id) for r in known], unit @ unit.T))
    pairs.to_parquet(out / "pairs.parquet", index=False)
    fig, ax = new_figure(1, 1, panel=(5.0, 4.0))
    plot_profile_correlation(pairs, ax=ax[0, 0])
    figures.append(_save(fig, out / "figures" / "profile_correlation.png"))

    report = {"model": str(getattr(h, "name", args.model)), "data": args.data, "n_facts": len(known),
              "kinds": args.kind, "window": args.window, "samples": args.samples, "noise": noise,
              "seed": args.seed, **suggestion,
              "total_effect": float(rows.drop_duplicates("case_id")["total"].mean()),
              "correlation": summary.to_dict(orient="records"), "figures": figures}
    (out / "layers.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"{len(known)} facts, noise {noise:.4g}, mean total effect {report['total_effect']:.4f}")
    print(f"{layer_kind} effect at the last subject token, per layer: "
          + ", ".join(f"{l}: {e:.4f}" for l, e in suggestion["profile"].items()))
    print(f"suggested ROME layer {suggestion['edit_layer']}, MEMIT layers {suggestion['memit_layers']} "
          f"({suggestion['window_share']:.0%} of the positive effect)")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out / 'layers.json'} and {len(figures)} figures in {out / 'figures'}")
    return 0
