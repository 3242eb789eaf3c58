"""The editor protocol, its registry, and the result of an edit.

Usage::

    from corredit.editors import get_editor, EDITORS
    ed = get_editor("rome")()                       # per-model defaults from defaults.toml
    res = ed.apply(h, requests, stats=moments, seed=0)   # the model is edited in place
    pre = ed.precompute_values(h, requests, stats=moments)  # value vectors, shareable across
    ed.apply(h, requests[:8], stats=moments, precomputed=pre.select(range(8)))   # batches
    res.deltas["transformer.h.3.mlp.c_proj.weight"]      # change, in the parameter's layout
    results = ed.edit(h, requests, mode="sequential-batch", batch_size=16, stats=moments)
    ed.restore(h)                                   # bit-exact: weights before the first edit
    type(ed).supported_modes                        # the modes ``edit`` and the runner accept

Editors that add to the model instead (hooks, modules, memory; GRACE, T-Patcher) declare
no parameters, report what they added in ``EditResult.added`` and through
:meth:`Editor.added_state`, :meth:`Editor.added_hooks` and :meth:`Editor.replaced_modules`,
and remove it all on ``restore`` (see :mod:`corredit.editors.memory`).

Subclasses set ``hparams_class`` and implement ``_edit`` (and, when they optimise value
vectors that do not depend on earlier edits of the same call, ``_precompute``, which
lets :meth:`Editor.edit_each` batch that work across independent edits).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch

from corredit.editors.hparams import DEFAULTS_PATH, HParams, default_hparams
from corredit.editors.templates import TemplateSampler
from corredit.models.tracing import eval_mode
from corredit.registry import Registry

__all__ = ["Editor", "EditResult", "EDITORS", "register_editor", "get_editor", "MODES"]

EDITORS: Registry = Registry(
    "editor", hint="editors register with @corredit.editors.register_editor(name)")

MODES = ("batch", "sequential", "sequential-batch")


def register_editor(name: str):
    """Class decorator: register an :class:`Editor` subclass under ``name``."""

    def decorate(cls):
        cls.name = name
        EDITORS.add(name, cls)
        return cls

    return decorate


def get_editor(name: str) -> type["Editor"]:
    """The editor class registered as ``name`` (the error lists known names)."""
    return EDITORS.get(name)


@dataclass
class EditResult:
    """What one edit call changed.

    ``deltas`` maps parameter names to ``after - before`` (float32, CPU, parameter layout);
    ``diagnostics`` holds per-case lists (``case_id``, losses, vector norms, ...) and
    per-parameter update norms; ``snapshot`` holds the editor's declared parameters as
    they were before its first edit of this model (``corredit.models.restore`` puts them
    back bit for bit).
    """

    editor: str
    case_ids: list[str]
    deltas: dict[str, torch.Tensor]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    snapshot: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    hparams: dict[str, Any] = field(default_factory=dict)
    #: What an editor that adds to the model holds after the call (its memory's tensors,
    #: CPU copies; see :meth:`Editor.added_state`); empty for weight-delta editors.
    added: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def update_norms(self) -> dict[str, float]:
        """Frobenius norm of each delta."""
        return {k: float(v.double().norm()) for k, v in self.deltas.items()}


class Editor:
    """Base of every editor: hyperparameter resolution, snapshots, modes, deltas.

    Constructor stores parameters only; learned state lives in attributes ending in
    ``_`` (template cache) and in per-model snapshots held weakly by this instance.
    ``hparams`` is an instance of ``hparams_class``, a mapping of overrides on top of the
    per-model defaults, or ``None`` (defaults only).
    """

    name: ClassVar[str] = ""
    hparams_class: ClassVar[type[HParams]] = HParams
    #: True when a batch is applied one fact after another, each fact's values computed on
    #: the model edited by the facts before it (ROME): then values precomputed on the
    #: unedited model serve single-fact batches only.
    sequential_within_batch: ClassVar[bool] = False
    #: The modes this editor runs in (:meth:`edit` and ``corredit run`` refuse the others).
    supported_modes: ClassVar[tuple[str, ...]] = MODES

    def __init__(self, hparams: HParams | Mapping[str, Any] | None = None, *,
                 max_batch_tokens: int = 16384, defaults_path=DEFAULTS_PATH) -> None:
        if isinstance(hparams, HParams) and not isinstance(hparams, self.hparams_class):
            raise TypeError(f"{self.name}: hparams must be {self.hparams_class.__name__}, "
                            f"got {type(hparams).__name__}")
        self.hparams = hparams
        self.max_batch_tokens = int(max_batch_tokens)
        self.defaults_path = defaults_path
        self.templates_ = TemplateSampler()
        self._snapshots: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hparams={self.hparams!r})"

    # -- hyperparameters ----------------------------------------------------------------
    def hparams_for(self, h) -> HParams:
        """The hyperparameters used on model ``h`` (defaults merged with overrides),
        validated against its number of layers."""
        if isinstance(self.hparams, HParams):
            hp = self.hparams
        else:
            hp = default_hparams(self.name, self.hparams_class, model_name=h.name,
                                 architecture=h.adapter.architecture, path=self.defaults_path)
            if self.hparams:
                hp = hp.merged(self.hparams, where=f"{self.name} hparams overrides")
        for layer in getattr(hp, "layers", ()):
            if not 0 <= layer < h.n_layers:
                raise ValueError(
                    f"{self.name}: layer {layer} is outside model {h.name!r} with {h.n_layers} "
                    f"layers; set layers in hparams or in {self.defaults_path}")
        return hp

    def declared_parameters(self, h, hp: HParams | None = None) -> list[str]:
        """Names of the parameters this editor may change on ``h``."""
        hp = hp or self.hparams_for(h)
        return [h.adapter.param_name("mlp_out", layer) for layer in hp.layers]

    # -- modes --------------------------------------------------------------------------
    @property
    def precomputes_values(self) -> bool:
        """Whether this editor's value vectors depend only on the unedited model, so that
        :meth:`precompute_values` can optimise them for many requests at once."""
        return hasattr(self, "_precompute")

    def precompute_values(self, h, requests: Sequence, *, stats=None, seed: int = 0):
        """Value vectors of ``requests`` on the current model, optimised jointly, or None for
        an editor that does not precompute. ``.select(indices)`` of the result is the
        ``precomputed`` argument of :meth:`apply` for those requests, in that order."""
        if not self.precomputes_values:
            return None
        with eval_mode(h.model):
            return self._precompute(h, list(requests), self.hparams_for(h), stats=stats, seed=seed)

    def apply(self, h, requests: Sequence, *, stats=None, seed: int = 0,
              precomputed=None) -> EditResult:
        """Edit ``h`` in place with ``requests`` as one batch; returns the deltas.
        ``precomputed``: values of exactly these requests from :meth:`precompute_values`."""
        return self._apply(h, list(requests), stats=stats, seed=seed, precomputed=precomputed)

    def apply_batches(self, h, batches: Sequence[Sequence], *, stats=None, seed: int = 0
                      ) -> list[EditResult]:
        """Apply ``batches`` one after another on the progressively edited model."""
        return [self._apply(h, list(b), stats=stats, seed=seed) for b in batches]

    def edit(self, h, requests: Sequence, *, mode: str = "batch", batch_size: int | None = None,
             stats=None, seed: int = 0) -> list[EditResult]:
        """Run a mode: ``"batch"`` (one call), ``"sequential"`` (one request per call) or
        ``"sequential-batch"`` (consecutive batches of ``batch_size``)."""
        self.check_mode(mode)
        requests = list(requests)
        if mode == "batch":
            batches = [requests]
        elif mode == "sequential":
            batches = [[r] for r in requests]
        elif mode == "sequential-batch":
            if not batch_size or batch_size < 1:
                raise ValueError("mode 'sequential-batch' needs batch_size >= 1")
            batches = [requests[i:i + batch_size] for i in range(0, len(requests), batch_size)]
        else:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        return self.apply_batches(h, batches, stats=stats, seed=seed)

    def edit_each(self, h, requests: Sequence, callback: Callable[[Any, Any, EditResult], Any], *,
                  stats=None, seed: int = 0) -> list[Any]:
        """Independent single edits: for each request edit the current model, call
        ``callback(h, request, result)``, then put the weights back. Editors whose value
        vectors depend only on the unedited model compute them jointly first."""
        requests = list(requests)
        hp = self.hparams_for(h)
        names = self.declared_parameters(h, hp)
        self._ensure_snapshot(h, names)
        pre = self.precompute_values(h, requests, stats=stats, seed=seed)
        out = []
        for i, r in enumerate(requests):
            before = _clone_params(h.model, names)
            res = self._apply(h, [r], stats=stats, seed=seed,
                              precomputed=None if pre is None else pre.select([i]))
            try:
                out.append(callback(h, r, res))
            finally:
                _copy_params(h.model, before)
        return out

    @classmethod
    def check_mode(cls, mode: str) -> None:
        """Raise ``ValueError`` unless ``mode`` is one of :attr:`supported_modes`."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        if mode not in cls.supported_modes:
            raise ValueError(f"editor {cls.name!r} does not support mode {mode!r}; it "
                             f"supports {', '.join(cls.supported_modes)}")

    def restore(self, h) -> None:
        """Put back every parameter this editor changed on ``h``, bit for bit, and
        :meth:`reset` it."""
        snap = self._snapshots.get(h.model)
        if snap:
            from corredit.models import restore
            restore(h.model, snap)
        self.reset(h)

    def reset(self, h) -> None:
        """Remove whatever this editor added to ``h`` (hooks, modules, memory) and forget
        any state it carries from one edit to the next; the weights are left as they are
        (the runner puts them back from its own snapshot)."""
        self.remove_additions(h)

    # -- additions (editors that add hooks, modules or memory override these) -------------
    def added_state(self, h) -> dict[str, torch.Tensor]:
        """Tensors this editor added to ``h`` (CPU copies); empty for weight-delta editors."""
        return {}

    def added_hooks(self, h) -> dict[str, int]:
        """Number of hooks this editor keeps installed on ``h``, by kind."""
        return {}

    def replaced_modules(self, h) -> list[str]:
        """Dotted names of the modules of ``h`` this editor replaced."""
        return []

    def remove_additions(self, h) -> None:
        """Remove the hooks, modules and memory this editor added to ``h``."""

    def snapshot_for(self, h) -> dict[str, torch.Tensor] | None:
        """The weights of ``h`` as they were before this editor first changed them."""
        return self._snapshots.get(h.model)

    # -- implementation -----------------------------------------------------------------
    def _edit(self, h, requests: list, hp: HParams, *, stats, seed: int,
              precomputed=None) -> dict[str, Any]:
        """Change the declared parameters of ``h`` in place; return diagnostics."""
        raise NotImplementedError

    def _ensure_snapshot(self, h, names: Sequence[str]) -> dict[str, torch.Tensor]:
        from corredit.models import snapshot

        snap = self._snapshots.setdefault(h.model, {})
        missing = [n for n in names if n not in snap]
        if missing:
            snap.update(snapshot(h.model, missing))
        return snap

    def _apply(self, h, requests: list, *, stats, seed: int, precomputed=None) -> EditResult:
        if not requests:
            raise ValueError(f"{self.name}: no requests to edit")
        if precomputed is not None and self.sequential_within_batch and len(requests) > 1:
            raise ValueError(f"{self.name}: edits a batch one fact after another, so values "
                             f"precomputed on the unedited model serve single-fact batches "
                             f"only, not {len(requests)} requests")
        if precomputed is not None:
            got, want = list(precomputed.case_ids), [r.case_id for r in requests]
            if got != want:
                raise ValueError(f"{self.name}: precomputed values are for cases {got[:5]}"
                                 f"{'...' if len(got) > 5 else ''}, not for the requests "
                                 f"{want[:5]}{'...' if len(want) > 5 else ''} (select them in "
                                 f"the requests' order)")
        hp = self.hparams_for(h)
        names = self.declared_parameters(h, hp)
        snap = self._ensure_snapshot(h, names)
        before = _clone_params(h.model, names)
        with eval_mode(h.model):
            diagnostics = self._edit(h, requests, hp, stats=stats, seed=seed,
                                     precomputed=precomputed)
        params = dict(h.model.named_parameters())
        deltas, upd, rel, growth = {}, {}, {}, {}
        for n in names:
            after = params[n].detach()
            d = (after.float() - before[n].float()).cpu()
            deltas[n] = d
            upd[n] = float(d.double().norm())
            rel[n] = upd[n] / max(float(before[n].double().norm()), 1e-30)
            growth[n] = float(after.double().norm()) / max(float(snap[n].double().norm()), 1e-30)
        diagnostics.update(update_norm=upd, relative_update_norm=rel, weight_norm_ratio=growth)
        return EditResult(editor=self.name, case_ids=[str(r.case_id) for r in requests],
                          deltas=deltas, diagnostics=diagnostics, snapshot=snap,
                          hparams=hp.to_dict(), added=self.added_state(h))


def _clone_params(model: torch.nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(f"model has no parameters named {missing}")
    return {n: params[n].detach().clone() for n in names}


@torch.no_grad()
def _copy_params(model: torch.nn.Module, values: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for n, v in values.items():
        params[n].copy_(v)
