"""Where GRACE's deferral radius can sit on a model: distances between the key of an edit's
rewrite prompt and the keys of its paraphrases and of its neighbourhood prompts.

Usage::

    python analysis/grace_key_distances.py --model smollm2-135m --layers 16,22,26,29

GRACE (``corredit/editors/grace.py``) reads the key at the last token of a prompt, at the
input of one layer's MLP output module, and answers every position within radius ``eps``
of a codebook key. A radius generalises to a paraphrase when the paraphrase's key lies
inside it, and disturbs a neighbourhood prompt (another subject, the edit's relation and
true object) when that prompt's key does. The script takes ``--n`` known CounterFact edits
of distinct subjects (seeded sample, ``--seed``; p(true) > p(new) on the unedited model)
and prints per layer the median key norm, quantiles of both distances and of the distances
between the edits' own keys, then, for radii at neighbourhood quantiles, the share of
paraphrases inside the radius and of neighbourhood prompts outside it (upper bounds of PS
and NS with ES = 1, and their harmonic mean with ES).
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--layers", default="4,10,16,22,26,29", help="comma-separated layers")
    p.add_argument("--data", default="../shared/data/counterfact/counterfact-edit.json")
    p.add_argument("--n", type=int, default=32, help="known edits of distinct subjects")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from corredit.data import load_dataset
    from corredit.editors.grace import last_token_keys
    from corredit.evaluate.known import select_known
    from corredit.models import load

    h = load(args.model)
    layers = [int(x) for x in args.layers.split(",")]
    reqs = list(load_dataset(args.data).requests)
    random.Random(args.seed).shuffle(reqs)
    seen: set[str] = set()
    distinct = [r for r in reqs if not (r.subject in seen or seen.add(r.subject))]
    kept = select_known(h, distinct[: 4 * args.n], limit=args.n).kept
    if not kept:
        raise SystemExit(f"{args.model} knows none of the {4 * args.n} edits tried")
    def keys(prompts):         # GRACE's keys, in float64 for the distances
        return {k: v.double().cpu() for k, v in last_token_keys(h, prompts, layers).items()}

    own = [keys([r.rewrite_prompt]) for r in kept]
    para = [keys(list(r.paraphrase_prompts)) for r in kept]
    neigh = [keys(list(r.neighborhood_prompts)) for r in kept]
    print(f"{args.model}: {len(kept)} known edits of distinct subjects (seed {args.seed})")
    for layer in layers:
        keys = torch.cat([k[layer] for k in own])
        dp = torch.cat([(q[layer] - keys[i]).norm(dim=1) for i, q in enumerate(para)]).numpy()
        dn = torch.cat([(q[layer] - keys[i]).norm(dim=1) for i, q in enumerate(neigh)]).numpy()
        other = torch.cdist(keys, keys)[~torch.eye(len(keys), dtype=torch.bool)].numpy()
        print(f"layer {layer}: |k| {keys.norm(dim=1).median():.2f}; paraphrase q25 / median "
              f"{np.quantile(dp, .25):.2f} / {np.median(dp):.2f}; neighbourhood q02 / median "
              f"{np.quantile(dn, .02):.2f} / {np.median(dn):.2f}; other edits q02 "
              f"{np.quantile(other, .02):.2f}" if len(other) else "")
        for q in (0.02, 0.1, 0.3, 0.5):
            eps = float(np.quantile(dn, q))
            ps, ns = float((dp <= eps).mean()), float((dn > eps).mean())
            s = 0.0 if min(ps, ns) == 0 else 3 / (1 + 1 / ps + 1 / ns)
            print(f"  eps {eps:7.2f}: paraphrases inside {ps:.2f}, neighbourhood outside "
                  f"{ns:.2f}, S {s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
