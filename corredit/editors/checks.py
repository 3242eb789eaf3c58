"""The conformance check every registered editor must pass.

Usage::

    from corredit.editors import EDITORS, check_editor
    for name in EDITORS.names():
        report = check_editor(name, h, requests, stats)   # raises AssertionError on failure
        report["logprob_before"], report["logprob_after"]

Checks, on the handle ``h`` (left as it was found):

1. the new target's mean log-probability on each rewrite prompt rises;
2. only the editor's declared parameters change, and ``EditResult.deltas`` equals the
   change (keys = declared names, values = after - before);
3. ``editor.restore`` and ``corredit.models.restore(model, result.snapshot)`` are bit-exact;
4. a fresh editor with the same seed produces identical deltas;
5. no forward/backward hook is left on any module.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from corredit.editors.base import EditResult, get_editor
from corredit.editors.sequences import target_logprobs

__all__ = ["check_editor", "hook_counts"]


def hook_counts(model: torch.nn.Module) -> dict[str, int]:
    """Number of registered hooks of each kind over all modules (and global ones)."""
    from torch.nn.modules import module as mod

    counts = {"forward": 0, "forward_pre": 0, "backward": 0, "backward_pre": 0, "global": 0}
    for m in model.modules():
        counts["forward"] += len(m._forward_hooks)
        counts["forward_pre"] += len(m._forward_pre_hooks)
        counts["backward"] += len(m._backward_hooks)
        counts["backward_pre"] += len(getattr(m, "_backward_pre_hooks", {}))
    for attr in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks"):
        counts["global"] += len(getattr(mod, attr, {}))
    return counts


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _fail(name: str, msg: str) -> AssertionError:
    return AssertionError(f"check_editor({name!r}): {msg}")


def check_editor(editor_name: str, handle, requests: Sequence, stats=None, *,
                 hparams: Mapping[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """Run the conformance checks (module docstring); returns a small report."""
    from corredit.models import restore

    cls = get_editor(editor_name)
    model = handle.model
    requests = list(requests)
    prompts = [r.rewrite_prompt for r in requests]
    targets = [r.target_new for r in requests]
    hooks0 = hook_counts(model)
    state0 = _state(model)
    lp0 = target_logprobs(handle, prompts, targets)

    ed = cls(hparams)
    declared = set(ed.declared_parameters(handle))
    res: EditResult = ed.apply(handle, requests, stats=stats, seed=seed)
    try:
        lp1 = target_logprobs(handle, prompts, targets)
        if not isinstance(res, EditResult):
            raise _fail(editor_name, f"apply returned {type(res).__name__}, not EditResult")
        # 1. the target's probability rises
        worse = [(requests[i].case_id, float(lp0[i]), float(lp1[i]))
                 for i in range(len(requests)) if not lp1[i] > lp0[i]]
        if worse:
            raise _fail(editor_name, f"new-target log-probability did not rise for "
                                     f"(case, before, after) {worse}")
        # 2. only declared parameters change; deltas report the change
        state1 = _state(model)
        changed = {n for n in state0 if not torch.equal(state0[n], state1[n])}
        if not changed:
            raise _fail(editor_name, "no parameter changed")
        if not changed <= declared:
            raise _fail(editor_name, f"undeclared parameters changed: {sorted(changed - declared)}")
        if set(res.deltas) != declared:
            raise _fail(editor_name, f"deltas cover {sorted(res.deltas)}, declared {sorted(declared)}")
        for n, d in res.deltas.items():
            if tuple(d.shape) != tuple(state0[n].shape):
                raise _fail(editor_name, f"delta {n} has shape {tuple(d.shape)}, parameter "
                                         f"{tuple(state0[n].shape)}")
            actual = (state1[n].float() - state0[n].float()).cpu()
            if not torch.allclose(d, actual, rtol=0, atol=1e-6 * max(1.0, float(actual.abs().max()))):
                raise _fail(editor_name, f"delta {n} differs from the actual change")
        # 5. no hook left behind
        if hook_counts(model) != hooks0:
            raise _fail(editor_name, f"hooks left behind: {hook_counts(model)} vs {hooks0}")
    finally:
        ed.restore(handle)
    # 3. restore is bit-exact (both ways)
    for n, p in model.named_parameters():
        if not torch.equal(p.detach(), state0[n]):
            raise _fail(editor_name, f"editor.restore left {n} different")
    ed2 = cls(hparams)
    res2 = ed2.apply(handle, requests, stats=stats, seed=seed)
    try:
        # 4. same seed, same deltas
        for n, d in res.deltas.items():
            if not torch.equal(d, res2.deltas[n]):
                diff = float((d - res2.deltas[n]).abs().max())
                raise _fail(editor_name, f"same seed gave different deltas for {n} (max diff {diff:g})")
    finally:
        restore(model, res2.snapshot)
    for n, p in model.named_parameters():
        if not torch.equal(p.detach(), state0[n]):
            raise _fail(editor_name, f"restore(model, result.snapshot) left {n} different")
    if hook_counts(model) != hooks0:
        raise _fail(editor_name, "hooks left behind after the second edit")
    return {
        "editor": editor_name,
        "changed": sorted(changed),
        "logprob_before": lp0.tolist(),
        "logprob_after": lp1.tolist(),
        "update_norm": res.update_norms(),
    }
