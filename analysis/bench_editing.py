"""Benchmark of the editing engine: value optimisation, statistics, scoring, edits.

Usage::

    python analysis/bench_editing.py                        # the embedded world model
    python analysis/bench_editing.py --model smollm2-135m --threads 2
    python analysis/bench_editing.py --n-edits 32 --stats-tokens 20000
    python analysis/bench_editing.py --model smollm2-135m --threads 2 --sections edits

Prints figures as it goes; the last line is one JSON object. Every ratio is measured side
by side in one run:

* value optimisation of the same edits (ROME's templates and site, all edits jointly)
  with the full recomputation at every step and with the incremental passes (cached
  prefixes): ``full_s``, ``incremental_s``, ``speedup``, ``max_rel_diff`` between the two
  sets of vectors, and ``flops_fraction``, the incremental path's arithmetic over the
  full path's counted in token-layers (a backward token-layer counted as two forward);
* the per-edit loop against the joint optimisation (MEMIT's templates, and the reference
  templates), as ``value_loop`` and ``reference_templates``;
* second-moment collection (``"mixed"`` and ``"float64"`` precision) against a bare
  forward pass over the same tokens to the same top layer (``stats_ratio``), and the key
  products timed alone, giving ``stats_ceiling``: forward / (forward + products), the
  ratio a pass that added nothing but its products to the forward pass would reach; the
  products' rate (``stats_products_gflops``), one full ``kᵀk`` of the same keys
  (``stats_full_product_gflops``, the host's matrix-product rate at these shapes), and
  the rate a symmetric product would need for the pass to reach ``--stats-target``
  (0.8) with nothing else added to the forward pass to the keys
  (``stats_gflops_needed``; ``Infinity`` when that forward pass alone is too slow; its
  throughput is ``stats_keys_tokens_per_s``);
* :func:`corredit.evaluate.score_targets` over the edits' prompts;
* seconds per edit of FT-L, ROME (facts applied one after another, and each from the
  unedited model with jointly optimised values: ``rome_independent``) and MEMIT (one batch).

``--sections`` runs some of them (``values``, ``stats``, ``scoring``, ``edits``); the JSON
then holds the figures of those only.

The world model's edits are drawn from its world; other models (any name
:func:`corredit.models.load` accepts) edit CounterFact records from the shared data
folder and collect statistics on its WikiText-2 text; the run stops with a message when
those files are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

SECTIONS = ("values", "stats", "scoring", "edits")
SHARED_DATA = Path(os.environ.get("CORREDIT_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def distinct_subject_sample(w, n, seed=0):
    """``n`` requests with distinct subjects, drawn at random over all relations (the
    sample of the world tests)."""
    from corredit.world import distinct_subjects

    return distinct_subjects(w.requests(seed=seed), n, seed=seed)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _rel_diff(a, b) -> float:
    """Largest ``||a_i - b_i|| / ||b_i||`` over the vectors."""
    return float(((a - b).norm(dim=-1) / b.norm(dim=-1).clamp(min=1e-12)).max())


def _workload(name: str, n: int, seed: int, stats_tokens: int):
    """``(requests, stats corpus)`` for the model: the world's, or CounterFact records and
    WikiText-2 text from the shared data folder."""
    from corredit.stats import TextFileCorpus, TextsCorpus

    if name == "world":
        from corredit.world import load_world

        w = load_world()
        return distinct_subject_sample(w, n, seed), TextsCorpus(list(w.stats_texts()),
                                                                identity="world-stats")
    from corredit.data.loading import load_dataset

    cf = SHARED_DATA / "counterfact" / "counterfact-edit.json"
    wiki = SHARED_DATA / "wikitext2" / "wiki.test.raw.txt"
    missing = [str(p) for p in (cf, wiki) if not p.is_file()]
    if missing:
        sys.exit(f"bench_editing: {', '.join(missing)} not found (set CORREDIT_SHARED_DATA); "
                 f"nothing measured")
    requests, seen = [], set()
    for r in load_dataset(cf).requests:
        if r.subject not in seen:
            seen.add(r.subject)
            requests.append(r)
        if len(requests) == n:
            break
    return requests, TextFileCorpus(wiki, clean="wikitext")


def _value_paths(h, editor, hp, requests, site, seed: int) -> dict:
    """The same units with the full recomputation and with the incremental passes."""
    from corredit.editors import ValueOptimizer, units_from_requests
    from corredit.editors.templates import flatten_groups

    groups = editor.templates_.groups(h, prompts=hp.context_prompts, lengths=hp.context_templates,
                                      seed=seed, top_k=hp.context_top_k)
    units = units_from_requests(requests, flatten_groups(groups), kl_prompt=hp.kl_prompt)
    full = ValueOptimizer(h, [site], hp, incremental=False)
    inc = ValueOptimizer(h, [site], hp)
    inc.optimize(units[:1])                                                # warm-up
    inc.work = {"forward": 0, "backward": 0}
    ref, full_s = _timed(lambda: full.optimize(units))
    res, inc_s = _timed(lambda: inc.optimize(units))

    def flops(work: dict) -> int:
        return work["forward"] + 2 * work["backward"]

    out = {"templates": len(flatten_groups(groups)), "steps": hp.v_num_grad_steps,
           "full_s": round(full_s, 3), "incremental_s": round(inc_s, 3),
           "speedup": round(full_s / inc_s, 2), "max_rel_diff": _rel_diff(res.delta, ref.delta),
           "flops_fraction": round(flops(inc.work) / flops(full.work), 4),
           "same_steps": bool((ref.steps == res.steps).all())}
    print(f"value optimisation of {len(units)} edits at {site} ({out['templates']} templates + KL "
          f"prompt, <= {hp.v_num_grad_steps} steps): full {full_s:.2f}s, incremental {inc_s:.2f}s, "
          f"speedup {out['speedup']}x, arithmetic {out['flops_fraction']:.3f} of the full path's, "
          f"max rel diff {out['max_rel_diff']:.2e}, same step counts {out['same_steps']}")
    return out


def _loop_vs_joint(h, editor, hp, requests, seed: int) -> dict:
    from corredit.editors import ValueOptimizer, units_from_requests
    from corredit.editors.templates import flatten_groups
    from corredit.models import Site

    groups = editor.templates_.groups(h, prompts=hp.context_prompts, lengths=hp.context_templates,
                                      seed=seed, top_k=hp.context_top_k)
    units = units_from_requests(requests, flatten_groups(groups), kl_prompt=hp.kl_prompt)
    opt = ValueOptimizer(h, [Site("block", hp.layers[-1], "output")], hp)
    opt.optimize(units[:2])                                              # warm-up
    loop, loop_s = _timed(lambda: opt.optimize_each(units))
    joint, batched_s = _timed(lambda: opt.optimize(units))
    out = {"templates": len(flatten_groups(groups)), "loop_s": round(loop_s, 3),
           "batched_s": round(batched_s, 3), "speedup": round(loop_s / batched_s, 2),
           "max_rel_diff": _rel_diff(joint.delta, loop.delta),
           "same_steps": bool((loop.steps == joint.steps).all())}
    print(f"  loop vs joint ({out['templates']} templates): loop {loop_s:.2f}s, joint {batched_s:.2f}s, "
          f"speedup {out['speedup']}x, max rel diff {out['max_rel_diff']:.2e}, "
          f"same step counts {out['same_steps']}")
    return out


def _scoring(h, requests) -> float:
    from corredit.evaluate import score_targets

    prompts, targets = [], []
    for r in requests:
        for p in (r.rewrite_prompt, *r.paraphrase_prompts):
            prompts.append(p)
            targets.append(r.target_new)
        for p in r.neighborhood_prompts:
            prompts.append(p)
            targets.append(r.target_true)
    score_targets(h, prompts[:4], targets[:4])                           # warm-up
    _, secs = _timed(lambda: score_targets(h, prompts, targets))
    rate = len(prompts) / secs
    print(f"score_targets: {len(prompts)} prompts in {secs:.2f}s ({rate:.1f} prompts/s)")
    return rate


def _independent_edits(h, editor, requests: list, stats, seed: int) -> None:
    """Each request from the unedited model, as ``corredit run`` makes single edits in batch
    mode: value vectors optimised for all of them at once, then one edit and restore each."""
    values = editor.precompute_values(h, requests, stats=stats, seed=seed)
    for i, r in enumerate(requests):
        editor.apply(h, [r], stats=stats, seed=seed, precomputed=values.select([i]))
        editor.restore(h)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="world", help="any name corredit.models.load accepts")
    parser.add_argument("--n-edits", type=int, default=16, help="edits in the value benchmark and the MEMIT/FT batch")
    parser.add_argument("--rome-edits", type=int, default=16, help="ROME edits applied one after another")
    parser.add_argument("--stats-tokens", type=int, default=20_000)
    parser.add_argument("--stats-repeats", type=int, default=5,
                        help="alternations of the statistics pass and the bare forward pass")
    parser.add_argument("--stats-target", type=float, default=0.8,
                        help="statistics/forward ratio whose required product rate is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="what to measure (default: everything)")
    args = parser.parse_args(argv)
    run = set(args.sections)

    import torch

    from corredit.editors import MemitHParams, get_editor
    from corredit.heap import steady_heap
    from corredit.models import Site, load
    from corredit.stats import measure_throughput, second_moments
    from corredit.stats.throughput import gflops_needed

    if args.threads:
        torch.set_num_threads(args.threads)
    steady = steady_heap()
    h = load(args.model, device=args.device)
    reqs, corpus = _workload(args.model, args.n_edits, args.seed, args.stats_tokens)
    print(f"model {h.name}: {h.n_layers} layers, d={h.hidden_size}, d_k={h.key_size}; "
          f"{len(reqs)} edits; torch threads {torch.get_num_threads()}; steady heap {steady}")

    result: dict = {"model": h.name, "n_edits": len(reqs)}
    rome, memit = get_editor("rome")(), get_editor("memit")()
    rhp, mhp = rome.hparams_for(h), memit.hparams_for(h)

    # -- value optimisation: full recomputation vs incremental; loop vs joint ------------
    if "values" in run:
        result.update(_value_paths(h, rome, rhp, reqs, Site("mlp_out", rhp.layer, "output"), args.seed))
        result["value_loop"] = _loop_vs_joint(h, memit, mhp, reqs, args.seed)
        ref = MemitHParams()
        result["reference_templates"] = _loop_vs_joint(
            h, memit, mhp.replace(context_prompts=ref.context_prompts,
                                  context_templates=ref.context_templates), reqs, args.seed)

    # -- statistics vs bare forward (same pre-tokenized batches, median of paired ratios)
    if "stats" in run:
        layers = list(mhp.layers)
        thr = {p: measure_throughput(h, layers, corpus, max_tokens=args.stats_tokens, repeats=args.stats_repeats,
                                     precision=p) for p in ("mixed", "float64")}
        for p, t in thr.items():
            print(f"second moments at layers {layers} ({p}): {t['stats_tokens_per_s']:.0f} tokens/s; "
                  f"bare forward to layer {max(layers)}: {t['forward_tokens_per_s']:.0f} tokens/s "
                  f"(ratio {t['ratio']:.2f}, {int(t['tokens'])} tokens); key products alone: "
                  f"{t['products_tokens_per_s']:.0f} tokens/s (ceiling forward/(forward+products) "
                  f"{t['ceiling']:.2f})")
            need = gflops_needed(t["symmetric_flops_per_token"], t["forward_tokens_per_s"],
                                 args.stats_target, t["keys_tokens_per_s"])
            t["gflops_needed"] = need
            print(f"  forward pass to the keys (the pass without its products): "
                  f"{t['keys_tokens_per_s']:.0f} tokens/s; key products at {t['products_gflops']:.0f} "
                  f"GFLOP/s ({t['product_flops_per_token']:,} flops a token); one full product of the "
                  f"same keys at {t['full_product_gflops']:.0f} GFLOP/s; a ratio of {args.stats_target} "
                  f"needs a symmetric product ({t['symmetric_flops_per_token']:,} flops a token) at "
                  f"{need:.0f} GFLOP/s with nothing else added to that forward pass")
        mixed, f64 = thr["mixed"], thr["float64"]
        result.update({
            "stats_precision": "mixed",
            "stats_tokens_per_s": round(mixed["stats_tokens_per_s"], 1),
            "forward_tokens_per_s": round(mixed["forward_tokens_per_s"], 1),
            "stats_ratio": round(mixed["ratio"], 3),
            "stats_ceiling": round(mixed["ceiling"], 3),
            "products_tokens_per_s": round(mixed["products_tokens_per_s"], 1),
            "stats_keys_tokens_per_s": round(mixed["keys_tokens_per_s"], 1),
            "stats_products_gflops": round(mixed["products_gflops"], 1),
            "stats_full_product_gflops": round(mixed["full_product_gflops"], 1),
            "stats_target": args.stats_target,
            "stats_gflops_needed": round(mixed["gflops_needed"], 1),
            "stats_float64_tokens_per_s": round(f64["stats_tokens_per_s"], 1),
            "forward_tokens_per_s_float64_run": round(f64["forward_tokens_per_s"], 1),
            "stats_float64_ratio": round(f64["ratio"], 3),
            "stats_float64_ceiling": round(f64["ceiling"], 3),
        })

    if "scoring" in run:
        result["score_prompts_per_s"] = round(_scoring(h, reqs), 2)

    # -- edits per second --------------------------------------------------------------
    if "edits" in run:
        edit_layers = sorted({rhp.layer, *mhp.layers})
        moments = second_moments(h, edit_layers, corpus, max_tokens=args.stats_tokens, batch_size=32)
        secs_per_edit = {}
        for name, batch in (("ft-l", reqs), ("rome", reqs[:args.rome_edits]), ("memit", reqs)):
            ed = get_editor(name)()
            _, secs = _timed(lambda: ed.apply(h, batch, stats=moments, seed=args.seed))
            ed.restore(h)
            secs_per_edit[name] = secs / len(batch)
            print(f"{name}: {len(batch)} edits in {secs:.2f}s ({secs_per_edit[name]:.2f} s per edit)")
        batch = reqs[:args.rome_edits]
        _, secs = _timed(lambda: _independent_edits(h, get_editor("rome")(), batch, moments, args.seed))
        secs_per_edit["rome_independent"] = secs / len(batch)
        print(f"rome, each edit from the unedited model (values optimised jointly): {len(batch)} "
              f"edits in {secs:.2f}s ({secs_per_edit['rome_independent']:.2f} s per edit)")
        result["seconds_per_edit"] = {k: round(v, 3) for k, v in secs_per_edit.items()}
    result["torch_threads"] = torch.get_num_threads()
    result["steady_heap"] = steady
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
