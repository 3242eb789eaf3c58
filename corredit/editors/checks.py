"""The conformance check every registered editor must pass.

Usage::

    from corredit.editors import EDITORS, check_editor
    for name in EDITORS.names():
        report = check_editor(name, h, requests, stats)   # raises AssertionError on failure
        report["logprob_before"], report["logprob_after"]

Checks, on the handle ``h`` (left as it was found):

1. the new target's mean log-probability on each rewrite prompt rises;
2. only the editor's declared parameters change, and ``EditResult.deltas`` equals the
   change (keys = declared names, values = after - before); something changes (a
   parameter or the editor's added state, ``EditResult.added``);
3. ``editor.restore`` and ``corredit.models.restore(model, result.snapshot)`` are bit-exact:
   the state dict (parameters and buffers), the module tree (the same module objects) and
   the hooks are as before, and the editor holds no added state;
4. a fresh editor with the same seed produces identical deltas and added state;
5. while edited, the only hooks and replaced modules are those the editor declares
   (``added_hooks``, ``replaced_modules``); none is left after restore;
6. every mode outside ``supported_modes`` is refused by ``edit`` with a ``ValueError``
   naming the editor and the mode, before anything changes.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from corredit.editors.base import EditResult, get_editor
from corredit.editors.sequences import target_logprobs

__all__ = ["check_editor", "hook_counts", "module_tree"]


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


def module_tree(model: torch.nn.Module) -> dict[str, int]:
    """``{dotted name: id(module)}`` of every submodule (a replaced module changes it)."""
    return {n: id(m) for n, m in model.named_modules(remove_duplicate=False)}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict(keep_vars=True).items()}


def _plus(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: a[k] + b.get(k, 0) for k in a}


def _check_restored(name: str, model, full0, tree0, hooks0, ed, handle, how: str) -> None:
    full1 = _full_state(model)
    if set(full1) != set(full0):
        raise _fail(name, f"{how} left the state dict with entries {sorted(set(full1) ^ set(full0))} "
                          f"added or missing")
    for n, t in full1.items():
        if t.dtype != full0[n].dtype or not torch.equal(t, full0[n]):
            raise _fail(name, f"{how} left {n} different")
    if module_tree(model) != tree0:
        raise _fail(name, f"{how} left the module tree changed")
    if hook_counts(model) != hooks0:
        raise _fail(name, f"hooks left behind after {how}: {hook_counts(model)} vs {hooks0}")
    if ed.added_state(handle) or any(ed.added_hooks(handle).values()) or ed.replaced_modules(handle):
        raise _fail(name, f"the editor still holds added state, hooks or modules after {how}")


def _check_modes(name: str, cls, handle, requests, stats, hparams, seed, full0) -> None:
    from corredit.editors.base import MODES

    for mode in MODES:
        if mode in cls.supported_modes:
            continue
        ed = cls(hparams)
        try:
            ed.edit(handle, requests[:1], mode=mode, batch_size=1, stats=stats, seed=seed)
        except ValueError as exc:
            if mode not in str(exc) or name not in str(exc):
                raise _fail(name, f"refusing mode {mode!r} the error should name the editor and "
                                  f"the mode, got: {exc}") from None
        else:
            ed.restore(handle)
            raise _fail(name, f"mode {mode!r} is not in supported_modes "
                              f"{cls.supported_modes} but edit() accepted it")
        full1 = _full_state(handle.model)
        if any(not torch.equal(full1[n], t) for n, t in full0.items()) or ed.added_state(handle):
            ed.restore(handle)
            raise _fail(name, f"refusing mode {mode!r} changed the model")


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
    tree0 = module_tree(model)
    state0 = _state(model)
    full0 = _full_state(model)
    lp0 = target_logprobs(handle, prompts, targets)
    # 6. unsupported modes are refused
    _check_modes(editor_name, cls, handle, requests, stats, hparams, seed, full0)

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
        if not changed and not res.added:
            raise _fail(editor_name, "no parameter changed and nothing was added")
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
        # 5. only the declared hooks and modules while edited
        want = _plus(hooks0, ed.added_hooks(handle))
        if hook_counts(model) != want:
            raise _fail(editor_name, f"hooks while edited: {hook_counts(model)}, expected {want} "
                                     f"(before: {hooks0}, declared: {ed.added_hooks(handle)})")
        replaced = set(ed.replaced_modules(handle))
        tree1 = module_tree(model)
        moved = {n for n in set(tree0) | set(tree1) if tree0.get(n) != tree1.get(n)}
        if any(not any(n == r or n.startswith(r + ".") for r in replaced) for n in moved):
            raise _fail(editor_name, f"undeclared module changes: {sorted(moved)[:5]}")
    finally:
        ed.restore(handle)
    # 3. restore is bit-exact (both ways)
    for n, p in model.named_parameters():
        if not torch.equal(p.detach(), state0[n]):
            raise _fail(editor_name, f"editor.restore left {n} different")
    _check_restored(editor_name, model, full0, tree0, hooks0, ed, handle, "editor.restore")
    ed2 = cls(hparams)
    res2 = ed2.apply(handle, requests, stats=stats, seed=seed)
    try:
        # 4. same seed, same deltas and added state
        for n, d in res.deltas.items():
            if not torch.equal(d, res2.deltas[n]):
                diff = float((d - res2.deltas[n]).abs().max())
                raise _fail(editor_name, f"same seed gave different deltas for {n} (max diff {diff:g})")
        if set(res.added) != set(res2.added) or any(
                not torch.equal(t, res2.added[n]) for n, t in res.added.items()):
            raise _fail(editor_name, "same seed gave different added state")
    finally:
        restore(model, res2.snapshot)
        ed2.remove_additions(handle)
    for n, p in model.named_parameters():
        if not torch.equal(p.detach(), state0[n]):
            raise _fail(editor_name, f"restore(model, result.snapshot) left {n} different")
    _check_restored(editor_name, model, full0, tree0, hooks0, ed2, handle,
                    "restore(model, result.snapshot) and remove_additions")
    return {
        "editor": editor_name,
        "changed": sorted(changed),
        "logprob_before": lp0.tolist(),
        "logprob_after": lp1.tolist(),
        "update_norm": res.update_norms(),
    }
