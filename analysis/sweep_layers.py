"""Layer sweep that chose the editors' defaults for the embedded world model.

Usage::

    python analysis/sweep_layers.py                       # ROME layers, then MEMIT windows and lambda
    python analysis/sweep_layers.py --editor rome --n-rome 60 --json sweep.json

ROME: every layer, ``--n-rome`` independent single edits (each from the unedited model).
MEMIT: every contiguous window of 1-3 layers at the default lambda, then lambda values on
the best window, one batch of ``--n-memit`` distinct subjects each. Requests are a
validation sample disjoint from the cases the world tests use (their case ids and their
subjects are excluded). Score: S = harmonic mean of ES, PS and NS (probability suite);
the best S is the default recorded in ``corredit/editors/defaults.toml``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Sequence


def validation_requests(w, seed: int, test_seed: int = 0, n_test_rome: int = 120, n_test_memit: int = 64):
    """Requests (seed ``seed``) whose facts and subjects the world tests do not use."""
    test_rome = w.requests(n=n_test_rome, seed=test_seed)
    pool = w.requests(seed=test_seed)
    random.Random(f"distinct-subjects:{test_seed}").shuffle(pool)
    test_memit = distinct_subjects(pool, n_test_memit)
    test_ids = {r.case_id for r in test_rome + test_memit}
    test_subjects = {r.subject for r in test_rome + test_memit}
    pool = [r for r in w.requests(seed=seed) if r.case_id not in test_ids and r.subject not in test_subjects]
    random.Random(f"sweep:{seed}").shuffle(pool)
    return pool


def distinct_subjects(requests, n):
    seen, out = set(), []
    for r in requests:
        if r.subject not in seen:
            seen.add(r.subject)
            out.append(r)
    return out[:n]


def score_rome(h, reqs, moments, hparams):
    import pandas as pd

    from corredit.editors import get_editor
    from corredit.evaluate import score_probability, summarize_probability

    ed = get_editor("rome")(hparams)
    frames = ed.edit_each(h, reqs, lambda h_, r, res: score_probability(h_, [r]), stats=moments)
    return summarize_probability(pd.concat(frames, ignore_index=True))


def score_memit(h, reqs, moments, hparams):
    from corredit.editors import get_editor
    from corredit.evaluate import score_probability, summarize_probability

    ed = get_editor("memit")(hparams)
    ed.apply(h, reqs, stats=moments)
    try:
        return summarize_probability(score_probability(h, reqs))
    finally:
        ed.restore(h)


def _row(kind, knobs, summary, secs):
    row = {"editor": kind, **knobs, **{k: round(float(summary[k]), 2) for k in ("ES", "PS", "NS", "S")},
           "seconds": round(secs, 1)}
    print(json.dumps(row), flush=True)
    return row


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--editor", choices=["rome", "memit", "all"], default="all")
    parser.add_argument("--n-rome", type=int, default=60)
    parser.add_argument("--n-memit", type=int, default=64)
    parser.add_argument("--lambdas", type=float, nargs="*", default=[100.0, 1000.0, 5000.0, 15000.0, 50000.0])
    parser.add_argument("--max-width", type=int, default=3)
    parser.add_argument("--stats-tokens", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None, help="write all rows to this file")
    args = parser.parse_args(argv)

    from corredit.editors import get_editor
    from corredit.models import load
    from corredit.stats import TextsCorpus, second_moments
    from corredit.world import load_world

    w = load_world()
    h = load("world", device="cpu")
    moments = second_moments(h, range(h.n_layers), TextsCorpus(list(w.stats_texts()), identity="world-stats"),
                             max_tokens=args.stats_tokens, batch_size=32)
    pool = validation_requests(w, args.seed)
    rows: list[dict] = []
    if args.editor in ("rome", "all"):
        reqs = pool[:args.n_rome]
        for layer in range(h.n_layers):
            t0 = time.perf_counter()
            s = score_rome(h, reqs, moments, {"layer": layer})
            rows.append(_row("rome", {"layer": layer}, s, time.perf_counter() - t0))
    if args.editor in ("memit", "all"):
        reqs = distinct_subjects(pool, args.n_memit)
        lam0 = get_editor("memit")().hparams_for(h).mom2_update_weight
        windows = [tuple(range(last - width + 1, last + 1))
                   for width in range(1, args.max_width + 1) for last in range(width - 1, h.n_layers)]
        stage1 = []
        for layers in windows:
            t0 = time.perf_counter()
            s = score_memit(h, reqs, moments, {"layers": list(layers), "mom2_update_weight": lam0})
            stage1.append(_row("memit", {"layers": list(layers), "mom2_update_weight": lam0}, s,
                               time.perf_counter() - t0))
        rows += stage1
        best = max(stage1, key=lambda r: r["S"])
        for lam in args.lambdas:
            if lam == lam0:
                continue
            t0 = time.perf_counter()
            s = score_memit(h, reqs, moments, {"layers": best["layers"], "mom2_update_weight": lam})
            rows.append(_row("memit", {"layers": best["layers"], "mom2_update_weight": lam}, s,
                             time.perf_counter() - t0))
    for kind in ("rome", "memit"):
        sel = [r for r in rows if r["editor"] == kind]
        if sel:
            print(f"best {kind}: {max(sel, key=lambda r: r['S'])}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
