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
    from corredit.world import distinct_subjects

    return distinct_subjects(w.requests(seed=seed), n, seed=seed)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-edits", type=int, default=64, help="edits in the value benchmark and the MEMIT/FT batch")
    parser.add_argument("--rome-edits", type=int, default=16, help="ROME edits applied one after another")
    parser.add_argument("--stats-tokens", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import torch

    from corredit.editors import MemitHParams, ValueOptimizer, get_editor, units_from_requests
    from corredit.editors.templates import flatten_groups
    from corredit.models import Site, load
    from corredit.stats import TextsCorpus, measure_throughput, second_moments
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

    def value_bench(hp) -> dict:
        groups = memit.templates_.groups(h, prompts=hp.context_prompts, lengths=hp.context_templates,
                                         seed=args.seed, top_k=hp.context_top_k)
        units = units_from_requests(reqs, flatten_groups(groups), kl_prompt=hp.kl_prompt)
        opt = ValueOptimizer(h, [Site("block", hp.layers[-1], "output")], hp)
        opt.optimize(units[:2])                                          # warm-up
        loop, loop_s = _timed(lambda: opt.optimize_each(units))
        joint, batched_s = _timed(lambda: opt.optimize(units))
        rel = (joint.delta - loop.delta).norm(dim=-1) / loop.delta.norm(dim=-1).clamp(min=1e-12)
        out = {"templates": len(flatten_groups(groups)), "steps": hp.v_num_grad_steps,
               "loop_s": round(loop_s, 3), "batched_s": round(batched_s, 3),
               "speedup": round(loop_s / batched_s, 2), "max_rel_diff": float(rel.max()),
               "same_steps": bool((loop.steps == joint.steps).all())}
        print(f"value optimisation of {len(units)} edits ({out['templates']} templates + KL prompt, "
              f"<= {hp.v_num_grad_steps} steps): loop {loop_s:.2f}s, joint {batched_s:.2f}s, speedup "
              f"{out['speedup']}x, max rel diff {out['max_rel_diff']:.2e}, same step counts {out['same_steps']}")
        return out

    main_value = value_bench(hp)
    ref = MemitHParams()
    ref_value = value_bench(hp.replace(context_prompts=ref.context_prompts,
                                       context_templates=ref.context_templates))

    # -- statistics vs bare forward (same pre-tokenized batches, best of two) ---------
    layers = list(hp.layers)
    corpus = TextsCorpus(list(w.stats_texts()), identity="world-stats")
    thr = measure_throughput(h, layers, corpus, max_tokens=args.stats_tokens, repeats=2)
    print(f"second moments at layers {layers}: {thr['stats_tokens_per_s']:.0f} tokens/s; bare forward "
          f"to layer {max(layers)}: {thr['forward_tokens_per_s']:.0f} tokens/s ({int(thr['tokens'])} tokens)")
    mixed = measure_throughput(h, layers, corpus, max_tokens=args.stats_tokens, repeats=2,
                               precision="mixed")
    print(f"  precision 'mixed' (float32 products, float64 sums): "
          f"{mixed['stats_tokens_per_s']:.0f} tokens/s against {mixed['forward_tokens_per_s']:.0f}")
    moments = second_moments(h, range(h.n_layers), corpus, max_tokens=args.stats_tokens, batch_size=32)

    # -- edits per second --------------------------------------------------------------
    rates = {}
    for name, batch in (("ft-l", reqs), ("rome", reqs[:args.rome_edits]), ("memit", reqs)):
        ed = get_editor(name)()
        _, secs = _timed(lambda: ed.apply(h, batch, stats=moments, seed=args.seed))
        ed.restore(h)
        rates[name] = len(batch) / secs
        print(f"{name}: {len(batch)} edits in {secs:.2f}s ({rates[name]:.2f} edits/s)")

    result = {
        "n_edits": len(reqs),
        **main_value,
        "reference_templates": ref_value,
        "stats_tokens_per_s": round(thr["stats_tokens_per_s"], 1),
        "forward_tokens_per_s": round(thr["forward_tokens_per_s"], 1),
        "stats_mixed_tokens_per_s": round(mixed["stats_tokens_per_s"], 1),
        "forward_tokens_per_s_mixed_run": round(mixed["forward_tokens_per_s"], 1),
        "edits_per_s": {k: round(v, 3) for k, v in rates.items()},
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
