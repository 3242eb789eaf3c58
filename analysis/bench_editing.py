"""Benchmark of the editing engine on the embedded world model.

Usage::

    python analysis/bench_editing.py                 # prints figures; last line is JSON
    python analysis/bench_editing.py --n-edits 32 --stats-tokens 20000

Measures: the value optimisation of the same edits one at a time (the reference loop) and
jointly (one forward/backward pass per step), with the largest relative difference
between the two sets of vectors; second-moment collection throughput against a bare
forward pass over the same tokens to the same top layer; edits per second of FT-L, ROME
(facts applied one after another) and MEMIT (one batch).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Sequence


def distinct_subject_sample(w, n, seed=0):
    """``n`` requests with distinct subjects, drawn at random over all relations (the
    sample of the world tests)."""
    import random

    pool = w.requests(seed=seed)
    random.Random(f"distinct-subjects:{seed}").shuffle(pool)
    seen, out = set(), []
    for r in pool:
        if r.subject not in seen:
            seen.add(r.subject)
            out.append(r)
    return out[:n]


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-edits", type=int, default=64, help="edits in the value benchmark and the MEMIT/FT batch")
    parser.add_argument("--rome-edits", type=int, default=16, help="ROME edits applied one after another")
    parser.add_argument("--stats-tokens", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import torch

    from corredit.editors import ValueOptimizer, get_editor, units_from_requests
    from corredit.editors.templates import flatten_groups
    from corredit.models import Site, load, trace
    from corredit.stats import TextsCorpus, second_moments
    from corredit.world import load_world

    if args.threads:
        torch.set_num_threads(args.threads)
    w = load_world()
    h = load("world", device=args.device)
    reqs = distinct_subject_sample(w, args.n_edits, args.seed)
    print(f"model {h.name}: {h.n_layers} layers, d={h.hidden_size}, d_k={h.key_size}; "
          f"{len(reqs)} edits; torch threads {torch.get_num_threads()}")

    # -- value optimisation: loop vs joint ------------------------------------------------
    memit = get_editor("memit")()
    hp = memit.hparams_for(h)
    groups = memit.templates_.groups(h, prompts=hp.context_prompts, lengths=hp.context_templates,
                                     seed=args.seed, top_k=hp.context_top_k)
    units = units_from_requests(reqs, flatten_groups(groups), kl_prompt=hp.kl_prompt)
    opt = ValueOptimizer(h, [Site("block", hp.layers[-1], "output")], hp)
    opt.optimize(units[:2])                                              # warm-up
    loop, loop_s = _timed(lambda: opt.optimize_each(units))
    joint, batched_s = _timed(lambda: opt.optimize(units))
    rel = (joint.delta - loop.delta).norm(dim=-1) / loop.delta.norm(dim=-1).clamp(min=1e-12)
    max_rel_diff = float(rel.max())
    print(f"value optimisation of {len(units)} edits ({len(flatten_groups(groups))} templates, "
          f"{hp.v_num_grad_steps} steps): loop {loop_s:.2f}s, joint {batched_s:.2f}s, "
          f"speedup {loop_s / batched_s:.1f}x, max rel diff {max_rel_diff:.2e}, "
          f"steps loop/joint {int(loop.steps.sum())}/{int(joint.steps.sum())}")

    # -- statistics vs bare forward ----------------------------------------------------
    layers = list(hp.layers)
    texts = list(w.stats_texts())
    corpus = TextsCorpus(texts, identity="world-stats")
    moments, stats_s = _timed(lambda: second_moments(h, layers, corpus, max_tokens=args.stats_tokens,
                                                     batch_size=16, max_length=128))
    n_tokens = moments[layers[0]].count
    batches, counted = [], 0
    for i in range(0, len(texts), 16):
        enc = h.encode(texts[i:i + 16], max_length=128)
        batches.append(enc)
        counted += int(enc["attention_mask"].sum())
        if counted >= n_tokens:
            break

    def forward():
        for enc in batches:
            trace(h, enc["input_ids"], attention_mask=enc["attention_mask"], stop_at_layer=max(layers))

    _, forward_s = _timed(forward)
    print(f"second moments at layers {layers}: {n_tokens} tokens in {stats_s:.2f}s; bare forward "
          f"over {counted} tokens to layer {max(layers)}: {forward_s:.2f}s")

    # -- edits per second --------------------------------------------------------------
    rates = {}
    for name, batch in (("ft-l", reqs), ("rome", reqs[:args.rome_edits]), ("memit", reqs)):
        ed = get_editor(name)()
        _, secs = _timed(lambda: ed.apply(h, batch, stats=moments, seed=args.seed))
        ed.restore(h)
        rates[name] = len(batch) / secs
        print(f"{name}: {len(batch)} edits in {secs:.2f}s ({rates[name]:.2f} edits/s)")

    result = {
        "n_edits": len(units),
        "loop_s": round(loop_s, 3),
        "batched_s": round(batched_s, 3),
        "speedup": round(loop_s / batched_s, 2),
        "max_rel_diff": max_rel_diff,
        "stats_tokens_per_s": round(n_tokens / stats_s, 1),
        "forward_tokens_per_s": round(counted / forward_s, 1),
        "edits_per_s": {k: round(v, 3) for k, v in rates.items()},
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
