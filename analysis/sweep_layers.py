"""Layer sweep that chose the editors' defaults for the embedded world model, and for
any other model on known CounterFact edits.

Usage::

    python analysis/sweep_layers.py                       # ROME layers, then MEMIT windows and lambda
    python analysis/sweep_layers.py --editor rome --n-rome 60 --json sweep.json
    python analysis/sweep_layers.py --world /tmp/world-7 --editor capacity   # another world
    python analysis/sweep_layers.py --model smollm2-135m --editor rome --layers 2,4,6,8 \
        --n-rome 16 --stages layer            # a real model: known CounterFact edits
    python analysis/sweep_layers.py --model smollm2-135m --editor ft-m --layers 0,2,4,8,12 \
        --n-memit 16                          # FT-M's layer, lr, box and steps

With ``--model`` (any name :func:`corredit.models.load` accepts) the requests are the
model's known CounterFact edits (``--data``, p(true) > p(new), distinct subjects, seeded
order with ``--seed``), the statistics come from ``--stats-corpus`` (WikiText-2 by default,
cleaned), the stages start from the model's defaults in ``defaults.toml`` and ``--layers``
restricts the layer and window stages.

Capacity: for each layer, the share of cases an unconstrained vector at the subject's last
token can flip (the ceiling of every editor keyed there). ROME: every layer, then
coordinate steps over the KL weight, the number of steps and the clamp, ``--n-rome``
independent single edits each (from the unedited model). MEMIT: every contiguous window of
1-3 layers, then lambda, clamp, KL weight and steps, one batch of ``--n-memit`` distinct
subjects each. FT-L (``--editor ft``) or FT-M (``--editor ft-m``): every layer, then learning
rate, L-infinity box and steps, on the same batch (a real model's boxes start at the
reference 5e-4, the world's at 1e-2). ``v_lr`` is 5 throughout: the reference 0.5 moves Adam too little for this
model's value norms (30-90) within 20 steps. Requests are a
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

from corredit.world import distinct_subjects


def validation_requests(w, seed: int, test_seed: int = 0, n_test_rome: int = 120, n_test_memit: int = 64):
    """Requests (seed ``seed``) whose facts and subjects the world tests do not use."""
    test_rome = w.requests(n=n_test_rome, seed=test_seed)
    test_memit = distinct_subjects(w.requests(seed=test_seed), n_test_memit, seed=test_seed)
    test_ids = {r.case_id for r in test_rome + test_memit}
    test_subjects = {r.subject for r in test_rome + test_memit}
    pool = [r for r in w.requests(seed=seed) if r.case_id not in test_ids and r.subject not in test_subjects]
    random.Random(f"sweep:{seed}").shuffle(pool)
    return pool


def score_rome(h, reqs, moments, hparams):
    import pandas as pd

    from corredit.editors import get_editor
    from corredit.evaluate import score_probability, summarize_probability

    ed = get_editor("rome")(hparams)
    frames = ed.edit_each(h, reqs, lambda h_, r, res: score_probability(h_, [r]), stats=moments)
    return summarize_probability(pd.concat(frames, ignore_index=True))


def score_batch(h, reqs, moments, hparams, editor="memit"):
    """Summary of one batch edit of ``reqs`` (MEMIT, or ``editor``, e.g. "ft-l")."""
    from corredit.editors import get_editor
    from corredit.evaluate import score_probability, summarize_probability

    ed = get_editor(editor)(hparams)
    ed.apply(h, reqs, stats=moments)
    try:
        return summarize_probability(score_probability(h, reqs))
    finally:
        ed.restore(h)


def capacity(h, reqs, layer, steps=60):
    """Share of cases whose new target beats the true one on the bare rewrite prompt when an
    unconstrained vector (no clamp, KL or decay) is added to the MLP output at the subject's
    last token of ``layer``: the ceiling of any editor that writes a value at that key."""
    import torch

    from corredit.editors import RomeHParams, ValueOptimizer, units_from_requests
    from corredit.editors.sequences import pack, prompt_ids, subject_position, target_ids
    from corredit.models import Addition, Site, trace

    site = Site("mlp_out", layer, "output")
    hp = RomeHParams(layer=layer, v_lr=5.0, kl_factor=0.0, v_weight_decay=0.0, clamp_norm_factor=1e6,
                     v_num_grad_steps=steps, v_stop_loss=0.0)
    res = ValueOptimizer(h, [site], hp).optimize(units_from_requests(reqs, ["{}"]))
    wins = []
    tok = h.tokenizer
    for i, r in enumerate(reqs):
        p = prompt_ids(tok, r.rewrite_prompt)
        pos = subject_position(tok, r.rewrite_prompt, r.subject, case_id=r.case_id)
        nll = []
        for target in (r.target_new, r.target_true):
            t = target_ids(tok, target)
            b = pack([p + t[:-1]], pad_id=tok.pad_token_id)
            out = trace(h, b.input_ids, attention_mask=b.attention_mask,
                        add={site: Addition(torch.tensor([pos]), res.delta[i:i + 1, 0])})
            lp = torch.log_softmax(out.logits[0].double(), -1)
            nll.append(-float(lp[torch.arange(len(p) - 1, len(p) - 1 + len(t)), torch.tensor(t)].mean()))
        wins.append(nll[0] < nll[1])
    return wins


def _row(kind, knobs, summary, secs):
    row = {"editor": kind, "knobs": dict(knobs),
           **{k: round(float(summary[k]), 1) for k in ("ES", "PS", "NS", "S")}, "seconds": round(secs, 1)}
    print(json.dumps(row), flush=True)
    return row


def coordinate_sweep(kind, score, base: dict, stages: list[tuple[str, list]]) -> list[dict]:
    """Try each stage's values in turn, keeping the best S so far (ties keep the earlier)."""
    rows, best, best_s = [], dict(base), None
    for knob, values in stages:
        stage_best = None
        for value in values:
            knobs = {**best, knob: value}
            if any(r["knobs"] == knobs for r in rows):
                row = next(r for r in rows if r["knobs"] == knobs)
            else:
                t0 = time.perf_counter()
                row = _row(kind, knobs, score(knobs), time.perf_counter() - t0)
                rows.append(row)
            if stage_best is None or row["S"] > stage_best["S"]:
                stage_best = row
        best, best_s = dict(stage_best["knobs"]), stage_best["S"]
        print(f"{kind}: best {knob} = {best[knob]!r} (S={best_s})", flush=True)
    return rows


def _n_layers(args) -> int:
    from corredit.models.catalog import MODELS

    if args.model is None:
        return 6 if args.world is None else _world_layers(args.world)
    if args.model in MODELS:
        return MODELS.get(args.model).layers
    import json as _json
    from pathlib import Path

    return int(_json.loads((Path(args.model) / "config.json").read_text()).get("num_hidden_layers"))


def _world_layers(folder) -> int:
    from pathlib import Path

    return int(json.loads((Path(folder) / "config.json").read_text())["n_layer"])


def _real_model_inputs(args, layers):
    """Model, statistics at ``layers`` and the known-edit pool of a ``--model`` sweep."""
    from corredit.data import load_dataset
    from corredit.evaluate.known import select_known
    from corredit.models import load
    from corredit.stats import TextFileCorpus, second_moments

    h = load(args.model, device="cpu")
    moments = (None if args.editor in FT_EDITORS else   # fine-tuning needs no statistics
               second_moments(h, layers, TextFileCorpus(args.stats_corpus, clean="wikitext"),
                              max_tokens=args.stats_tokens, batch_size=16))
    reqs = load_dataset(args.data).requests
    random.Random(f"sweep:{args.seed}").shuffle(reqs)
    reqs = distinct_subjects(reqs, min(len(reqs), 8 * max(args.n_rome, args.n_memit)), seed=args.seed)
    need = max(args.n_rome, args.n_memit, args.n_capacity if args.editor in ("capacity", "all") else 0)
    return h, moments, select_known(h, reqs, limit=need).kept


FT_EDITORS = {"ft": "ft-l", "ft-l": "ft-l", "ft-m": "ft-m"}


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--editor", choices=["capacity", "rome", "memit", *FT_EDITORS, "all"], default="all")
    parser.add_argument("--n-capacity", type=int, default=100)
    parser.add_argument("--n-rome", type=int, default=60)
    parser.add_argument("--n-memit", type=int, default=64, help="batch size of MEMIT and FT-L")
    parser.add_argument("--stats-tokens", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--world", default=None, help="world folder (default: the embedded world)")
    parser.add_argument("--json", default=None, help="write all rows to this file")
    parser.add_argument("--rome-start", default=None, help="JSON knobs to start ROME's stages from")
    parser.add_argument("--memit-start", default=None, help="JSON knobs to start MEMIT's stages from")
    parser.add_argument("--ft-start", default=None, help="JSON knobs to start FT-L's (FT-M's) stages from")
    parser.add_argument("--model", default=None, help="any model name or path (default: the world)")
    parser.add_argument("--data", default="../shared/data/counterfact/counterfact-edit.json",
                        help="edits of a --model sweep (CounterFact)")
    parser.add_argument("--stats-corpus", default="../shared/data/wikitext2/wiki.test.raw.txt",
                        help="statistics text file of a --model sweep (WikiText cleaning)")
    parser.add_argument("--layers", default=None, help="comma-separated layers to sweep (default: all)")
    parser.add_argument("--stages", nargs="*", default=None,
                        help="run only these stages (knob names), e.g. context_templates")
    args = parser.parse_args(argv)
    keep = (lambda stages: [st for st in stages if args.stages is None or st[0] in args.stages])

    import torch

    from corredit.models import load
    from corredit.stats import TextsCorpus, second_moments
    from corredit.world import load_world

    sweep_layers = (list(range(_n_layers(args))) if args.layers is None
                    else [int(x) for x in args.layers.split(",") if x.strip()])
    if args.model is None:
        torch.set_num_threads(1)
        w = load_world(args.world)
        h = load(args.world or "world", device="cpu")
        moments = second_moments(h, range(h.n_layers), TextsCorpus(list(w.stats_texts()), identity="world-stats"),
                                 max_tokens=args.stats_tokens, batch_size=32)
        pool = validation_requests(w, args.seed)
        starts = {"rome": {"v_lr": 5.0}, "memit": {"v_lr": 5.0, "mom2_update_weight": 10.0,
                                                   "clamp_norm_factor": 2.0},
                  "ft-l": {"lr": 5e-3, "norm_constraint": 5e-2}}
        boxes = [1e-2, 2e-2, 5e-2, 1e-1, 2e-1]
    else:
        h, moments, pool = _real_model_inputs(args, sweep_layers)
        starts = {"rome": {}, "memit": {}, "ft-l": {"lr": 5e-3, "norm_constraint": 5e-3}}
        boxes = [5e-4, 2e-3, 5e-3, 1e-2, 5e-2]
    rows: list[dict] = []
    if args.editor in ("capacity", "all"):
        reqs = pool[:args.n_capacity]
        for layer in sweep_layers:
            t0 = time.perf_counter()
            wins = capacity(h, reqs, layer)
            by_rel: dict = {}
            for r, win in zip(reqs, wins):
                by_rel.setdefault(r.relation_id, []).append(win)
            row = {"editor": "capacity", "layer": layer, "ES_ceiling": round(100 * sum(wins) / len(wins), 1),
                   "by_relation": {k: round(100 * sum(v) / len(v), 1) for k, v in sorted(by_rel.items())},
                   "seconds": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.editor in ("rome", "all"):
        reqs = pool[:args.n_rome]
        start = json.loads(args.rome_start) if args.rome_start else starts["rome"]
        rows += coordinate_sweep("rome", lambda k: score_rome(h, reqs, moments, k), start, keep([
            ("layer", sweep_layers),
            ("kl_factor", [0.0625, 0.0]),
            ("v_num_grad_steps", [20, 40]),
            ("clamp_norm_factor", [4.0, 8.0]),
            ("context_templates", [[[5, 10], [10, 10]], []]),
        ]))
    if args.editor in ("memit", "all"):
        reqs = distinct_subjects(pool, args.n_memit)
        windows = [list(range(last - width + 1, last + 1))
                   for width in range(1, 4) for last in range(width - 1, h.n_layers)
                   if set(range(last - width + 1, last + 1)) <= set(sweep_layers)]
        start = json.loads(args.memit_start) if args.memit_start else starts["memit"]
        rows += coordinate_sweep("memit", lambda k: score_batch(h, reqs, moments, k), start, keep([
            ("layers", windows),
            ("mom2_update_weight", [1.0, 10.0, 100.0, 1000.0]),
            ("clamp_norm_factor", [0.75, 2.0, 4.0]),
            ("kl_factor", [0.0625, 0.0]),
            ("v_num_grad_steps", [20, 40]),
            ("context_templates", [[[10, 1]], []]),
            ("layers", [[0], [0, 1], [0, 1, 2]]),
        ]))
    if args.editor in (*FT_EDITORS, "all"):
        ft = FT_EDITORS.get(args.editor, "ft-l")
        reqs = distinct_subjects(pool, args.n_memit)
        # the world's: the reference box (5e-4) moves nothing on this model, start from a wide one
        start = json.loads(args.ft_start) if args.ft_start else starts["ft-l"]
        rows += coordinate_sweep(ft, lambda k: score_batch(h, reqs, None, k, editor=ft), start, keep([
            ("layer", sweep_layers),
            ("lr", [1e-3, 5e-3, 2e-2]),
            ("norm_constraint", boxes),
            ("num_steps", [25, 50]),
            ("layer", sweep_layers),
        ]))
    for kind in ("rome", "memit", "ft-l", "ft-m"):
        sel = [r for r in rows if r["editor"] == kind]
        if sel:
            print(f"best {kind}: {json.dumps(max(sel, key=lambda r: r['S']))}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
