"""Editors that add to the model instead of changing its weights: hooks, modules, memory.

Usage::

    from corredit.editors.memory import Attachments, MemoryEditor
    att = Attachments()
    att.forward_hook(h.model.transformer.h[3].mlp.c_proj, fn)   # removed by att.remove()
    att.replace_module(h.model, "transformer.h.3.mlp", wrapper)  # the original goes back
    att.hook_counts()            # {'forward': 1, 'forward_pre': 0}
    att.remove()                 # in reverse order; the model is as it was

    class MyEditor(MemoryEditor):      # per-model memory + hooks; base weights never change
        def _new_memory(self, h, hp): ...          # an nn.Module holding the added state
        def _attach(self, h, hp, memory, att): ... # install the hooks that read it
        def _edit(self, h, requests, hp, *, stats, seed, precomputed=None): ...

A :class:`MemoryEditor` declares no parameters (``declared_parameters`` is empty), keeps
one memory module per model on the instance (:meth:`MemoryEditor.memory_for`) and the
hooks or module replacements that make the model read it in an :class:`Attachments`.
``restore`` removes both, so the model's modules, hooks and state dict are bit for bit
what they were. ``added_state`` is the memory's state dict (what ``EditResult.added``
records and ``check_editor`` compares between seeds); ``edit_each`` rolls the memory back
after each single edit.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any, Callable, Sequence

import torch

from corredit.editors.base import Editor, EditResult
from corredit.editors.hparams import HParams

__all__ = ["Attachments", "MemoryEditor"]

HOOK_KINDS = ("forward", "forward_pre")


class Attachments:
    """Hooks and module replacements installed on one model, removable in one call."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, str, Callable[[], None]]] = []

    def __len__(self) -> int:
        return len(self._undo)

    def forward_hook(self, module: torch.nn.Module, fn: Callable, *, name: str = "") -> None:
        """``module.register_forward_hook(fn)``, undone by :meth:`remove`."""
        handle = module.register_forward_hook(fn)
        self._undo.append(("forward", name, handle.remove))

    def forward_pre_hook(self, module: torch.nn.Module, fn: Callable, *, name: str = "") -> None:
        """``module.register_forward_pre_hook(fn)``, undone by :meth:`remove`."""
        handle = module.register_forward_pre_hook(fn)
        self._undo.append(("forward_pre", name, handle.remove))

    def replace_module(self, model: torch.nn.Module, name: str, new: torch.nn.Module) -> torch.nn.Module:
        """Put ``new`` where the submodule ``name`` (dotted) sits; returns the original,
        which :meth:`remove` puts back (the same object)."""
        from corredit.models.adapters import resolve_module

        parent_name, _, child = name.rpartition(".")
        parent = resolve_module(model, parent_name) if parent_name else model
        if child not in parent._modules:
            raise AttributeError(f"{type(model).__name__} has no submodule {name!r}")
        original = parent._modules[child]
        parent._modules[child] = new

        def undo() -> None:
            parent._modules[child] = original

        self._undo.append(("module", name, undo))
        return original

    def hook_counts(self) -> dict[str, int]:
        """Hooks installed, by kind (the keys of ``checks.hook_counts``)."""
        return {k: sum(1 for kind, _, _ in self._undo if kind == k) for k in HOOK_KINDS}

    def replaced_modules(self) -> list[str]:
        """Dotted names of the modules replaced."""
        return [name for kind, name, _ in self._undo if kind == "module"]

    def remove(self) -> None:
        """Undo every attachment, last first."""
        while self._undo:
            _, _, undo = self._undo.pop()
            undo()


class MemoryEditor(Editor):
    """Base of editors whose edits live in an added memory read through hooks.

    Subclasses implement ``_new_memory(h, hp) -> nn.Module`` (the empty memory),
    ``_attach(h, hp, memory, attachments)`` (install the hooks) and ``_edit``; the memory
    and its hooks appear on the first edit of a model and go on ``restore``.
    """

    def __init__(self, hparams: HParams | dict | None = None, **kwargs: Any) -> None:
        super().__init__(hparams, **kwargs)
        self._memories: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()

    # -- protocol ---------------------------------------------------------------------------
    def declared_parameters(self, h, hp: HParams | None = None) -> list[str]:
        """None: base weights never change."""
        return []

    def memory_for(self, h) -> torch.nn.Module | None:
        """The memory module added to ``h`` (None before the first edit or after restore)."""
        entry = self._memories.get(h.model)
        return None if entry is None else entry[0]

    def added_state(self, h) -> dict[str, torch.Tensor]:
        """The memory's state dict (detached CPU copies), keys prefixed with the editor's name."""
        memory = self.memory_for(h)
        if memory is None:
            return {}
        return {f"{self.name}.{k}": v.detach().cpu().clone() for k, v in memory.state_dict().items()}

    def added_hooks(self, h) -> dict[str, int]:
        entry = self._memories.get(h.model)
        return entry[1].hook_counts() if entry else {}

    def replaced_modules(self, h) -> list[str]:
        entry = self._memories.get(h.model)
        return entry[1].replaced_modules() if entry else []

    def remove_additions(self, h) -> None:
        entry = self._memories.pop(h.model, None)
        if entry is not None:
            entry[1].remove()

    # -- memory -----------------------------------------------------------------------------
    def _ensure_memory(self, h, hp: HParams) -> torch.nn.Module:
        """The model's memory, created empty and attached on first use."""
        entry = self._memories.get(h.model)
        if entry is None:
            memory = self._new_memory(h, hp)
            att = Attachments()
            try:
                self._attach(h, hp, memory, att)
            except BaseException:
                att.remove()
                raise
            self._memories[h.model] = entry = (memory, att)
        return entry[0]

    def _new_memory(self, h, hp: HParams) -> torch.nn.Module:
        raise NotImplementedError

    def _attach(self, h, hp: HParams, memory: torch.nn.Module, attachments: Attachments) -> None:
        raise NotImplementedError

    def edit_each(self, h, requests: Sequence, callback: Callable[[Any, Any, EditResult], Any], *,
                  stats=None, seed: int = 0) -> list[Any]:
        """Independent single edits: each added to the memory as it was before the call,
        scored by ``callback(h, request, result)``, then taken out again."""
        out = []
        for r in requests:
            saved = copy.deepcopy(self.memory_for(h))
            res = self._apply(h, [r], stats=stats, seed=seed)
            try:
                out.append(callback(h, r, res))
            finally:
                if saved is None:
                    self.remove_additions(h)
                else:
                    _load_memory(self.memory_for(h), saved)
        return out


def _load_memory(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    """Make ``dst`` hold ``src``'s state in place (the hooks keep reading ``dst``): its
    buffers, whatever their shapes, and its public plain attributes."""
    for name, buf in src.named_buffers(recurse=False):
        setattr(dst, name, buf.clone())
    for key, value in vars(src).items():
        if not key.startswith("_") and key != "training":
            setattr(dst, key, copy.deepcopy(value))

