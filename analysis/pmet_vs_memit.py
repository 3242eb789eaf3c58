"""PMET against MEMIT on the embedded world model: one batch of distinct-subject edits each,
scored with the probability suite (ES / PS / NS, S = their harmonic mean, x100).

Usage::

    python analysis/pmet_vs_memit.py                    # both editors, world defaults, 64 edits
    python analysis/pmet_vs_memit.py --n 16 --pmet '{"kl_factor": 0.0}'   # knobs on top
    python analysis/pmet_vs_memit.py --sweep            # the coordinate sweep behind PMET's
                                                        # world defaults (validation requests)

The comparison uses the world tests' MEMIT batch (``tests/test_editors_world.py``:
distinct subjects of ``w.requests(seed=0)``, 20,000 statistics tokens). The sweep uses
``analysis/sweep_layers.py``'s validation requests (seed 1, disjoint from the tests' cases
and subjects) and its coordinate search, one batch of ``--n`` edits per setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep_layers import _row, coordinate_sweep, score_batch, validation_requests  # noqa: E402

from corredit.world import distinct_subjects  # noqa: E402

#: Where the sweep starts: MEMIT's world settings with PMET's KL weight (the reference's 1).
SWEEP_START = {"layers": [0, 1, 2], "v_lr": 5.0, "mom2_update_weight": 100.0,
               "clamp_norm_factor": 2.0, "kl_factor": 1.0, "v_num_grad_steps": 40,
               "context_templates": []}
SWEEP_STAGES = [
    ("kl_factor", [1.0, 0.0625, 0.0]),
    ("layers", [[0], [0, 1], [0, 1, 2], [1, 2]]),
    ("mom2_update_weight", [1.0, 10.0, 100.0, 1000.0]),
    ("clamp_norm_factor", [0.75, 2.0, 4.0]),
    ("v_num_grad_steps", [20, 30, 40]),
    ("kl_factor", [1.0, 0.0625, 0.0]),
    ("top_nll_factor", [0.1, 1.0]),
]


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="edits in the batch")
    parser.add_argument("--stats-tokens", type=int, default=20_000)
    parser.add_argument("--pmet", default=None, help="JSON knobs on top of PMET's defaults")
    parser.add_argument("--memit", default=None, help="JSON knobs on top of MEMIT's defaults")
    parser.add_argument("--sweep", action="store_true", help="sweep PMET's knobs instead")
    parser.add_argument("--seed", type=int, default=1, help="validation seed of the sweep")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args(argv)

    import torch

    from corredit.models import load
    from corredit.stats import TextsCorpus, second_moments
    from corredit.world import load_world

    torch.set_num_threads(1)
    w = load_world()
    h = load("world", device="cpu")
    moments = second_moments(h, range(h.n_layers), TextsCorpus(list(w.stats_texts()), identity="world-stats"),
                             max_tokens=args.stats_tokens, batch_size=32)
    if args.sweep:
        reqs = distinct_subjects(validation_requests(w, args.seed), args.n)
        rows = coordinate_sweep("pmet", lambda k: score_batch(h, reqs, moments, k, editor="pmet"),
                                SWEEP_START, SWEEP_STAGES)
        print("best pmet: " + json.dumps(max(rows, key=lambda r: r["S"])))
    else:
        reqs = distinct_subjects(w.requests(seed=0), args.n, seed=0)
        assert len({r.subject for r in reqs}) == len(reqs) == args.n
        rows = []
        for editor, knobs in (("memit", args.memit), ("pmet", args.pmet)):
            over = json.loads(knobs) if knobs else {}
            t0 = time.perf_counter()
            summary = score_batch(h, reqs, moments, over, editor=editor)
            rows.append(_row(editor, over, summary, time.perf_counter() - t0))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
