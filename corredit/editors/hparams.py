"""Frozen hyperparameters and the per-model defaults file.

Usage::

    from corredit.editors.hparams import RomeHParams, default_hparams
    hp = RomeHParams(layer=3)                      # knobs only: indices and numbers
    hp = hp.replace(v_num_grad_steps=30)
    hp = default_hparams("rome", RomeHParams, model_name="world", architecture="GPT2LMHeadModel")

Defaults live in ``corredit/editors/defaults.toml``: one table per ``[editor."key"]`` where
the key is a model name, an architecture class, a glob pattern over model names
(``"tiny-*"``) or ``"*"``. Tables merge in that order of increasing precedence:
``"*"`` < matching patterns < architecture < exact model name; dataclass field defaults sit
below them all. Module paths never appear here: the model's adapter supplies them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "HParams",
    "ValueHParams",
    "Mom2HParams",
    "FTHParams",
    "RomeHParams",
    "MemitHParams",
    "EmmetHParams",
    "AlphaEditHParams",
    "MemitMergeHParams",
    "PmetHParams",
    "DEFAULTS_PATH",
    "default_hparams",
    "read_defaults",
]

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")

H = TypeVar("H", bound="HParams")


@dataclass(frozen=True)
class HParams:
    """Base of every editor's hyperparameters: a frozen dataclass of method knobs, validated
    on construction."""

    def __post_init__(self) -> None:
        self.validate()

    def replace(self: H, **changes: Any) -> H:
        """A copy with some knobs changed (unknown names raise ``TypeError``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples stay tuples)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls: type[H], values: Mapping[str, Any], *, where: str = "") -> H:
        """Build from a mapping, converting lists to tuples; an unknown key raises a
        ``ValueError`` naming ``where`` (file and table) and the field."""
        return cls().merged(values, where=where)  # type: ignore[call-arg]

    def merged(self: H, values: Mapping[str, Any], *, where: str = "") -> H:
        """A copy with ``values`` applied on top (lists become tuples)."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(
                    f"{where or type(self).__name__}: unknown hyperparameter {key!r} for "
                    f"{type(self).__name__}; known: {', '.join(sorted(known))}"
                )
            changes[key] = _tupleize(value)
        try:
            return dataclasses.replace(self, **changes)      # validates (__post_init__)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}" if where else str(exc)) from None

    def validate(self, *, where: str = "") -> None:
        """Raise ``ValueError`` for values outside their domain (subclasses extend)."""


def _tupleize(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupleize(v) for v in value)
    return value


@dataclass(frozen=True)
class ValueHParams(HParams):
    """Knobs shared by every editor that uses the key/value machinery.

    ``context_prompts`` are the starts from which context templates are sampled ("" =
    the tokenizer's BOS/EOS token); ``context_templates`` lists ``(length, n_per_prompt)``
    pairs, the length counting the start's tokens; ``key_averaging`` is ``"flat"`` (mean
    over all templates, ROME) or ``"two_level"`` (mean of the bare key and the mean over
    each length group, MEMIT).
    """

    v_num_grad_steps: int = 20
    v_lr: float = 0.5
    v_weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    v_stop_loss: float = 5e-2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    context_prompts: tuple[str, ...] = ("",)
    context_templates: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))
    context_top_k: int = 5
    key_averaging: str = "flat"
    kl_prompt: str = "{} is a"

    def validate(self, *, where: str = "") -> None:
        tag = where or type(self).__name__
        if self.key_averaging not in ("flat", "two_level"):
            raise ValueError(f"{tag}: key_averaging must be 'flat' or 'two_level', "
                             f"got {self.key_averaging!r}")
        if self.v_num_grad_steps < 1:
            raise ValueError(f"{tag}: v_num_grad_steps must be >= 1")
        if "{}" not in self.kl_prompt:
            raise ValueError(f"{tag}: kl_prompt must hold '{{}}' for the subject")
        for pair in self.context_templates:
            if len(pair) != 2 or pair[0] < 1 or pair[1] < 0:
                raise ValueError(f"{tag}: context_templates entries are (length>=1, n>=0), "
                                 f"got {pair!r}")


@dataclass(frozen=True)
class FTHParams(HParams):
    """Fine-tuning of one layer's MLP output weight inside an L-infinity box."""

    layer: int = 0
    num_steps: int = 25
    lr: float = 5e-4
    norm_constraint: float = 5e-4
    weight_decay: float = 0.0
    early_stop_loss: float = 1e-2

    def validate(self, *, where: str = "") -> None:
        if self.norm_constraint <= 0:
            raise ValueError(f"{where or 'FTHParams'}: norm_constraint must be > 0")

    @property
    def layers(self) -> tuple[int, ...]:
        return (self.layer,)


MOM2_PRECISIONS = ("float64", "float32")


@dataclass(frozen=True)
class Mom2HParams(ValueHParams):
    """Value knobs plus the precision of the key second moment ``C`` in the closed-form
    update.

    ``mom2_precision="float64"`` (default): ``C`` as the statistics hold it, every solve
    in float64 (Cholesky). ``"float32"`` reproduces the reference implementations, whose
    statistics are float32: ``C`` is rounded to float32 first; ROME then inverts it
    explicitly in float32 and forms ``u = C^-1 k`` in float32 (``rome/compute_u.py``),
    while MEMIT solves in float64 with the rounded ``C`` (``memit/memit_main.py``). Use it
    only to reproduce published numbers: on ill-conditioned ``C`` the float32 inverse
    loses digits.
    """

    mom2_precision: str = "float64"

    def validate(self, *, where: str = "") -> None:
        super().validate(where=where)
        if self.mom2_precision not in MOM2_PRECISIONS:
            raise ValueError(f"{where or type(self).__name__}: mom2_precision must be one of "
                             f"{', '.join(MOM2_PRECISIONS)}, got {self.mom2_precision!r}")


ROME_TARGETS = ("bare", "template_mean")


@dataclass(frozen=True)
class RomeHParams(Mom2HParams):
    """ROME / r-ROME at one layer.

    r-ROME (default) uses the template-averaged key ``k_avg`` in ``u`` and in the
    denominator. ``rome_target`` is the value written at ``k_avg``: ``"bare"`` (default,
    the r-ROME authors' code, ``enable_random_prefix_keys``) writes ``v_bare + delta``,
    the bare prompt's MLP output plus the optimised vector, so the numerator is
    ``delta + W (k_bare - k_avg)``; ``"template_mean"`` (a variant, not a published
    method) writes ``W k_avg + delta``, numerator ``delta``. ``original_key_mismatch``
    is the original ROME code: numerator ``delta`` over ``u^T k_bare`` (``v_bare + delta``
    written at ``k_bare``; ``rome_target`` must stay ``"bare"``).
    """

    layer: int = 0
    rome_target: str = "bare"
    original_key_mismatch: bool = False

    def validate(self, *, where: str = "") -> None:
        super().validate(where=where)
        if self.rome_target not in ROME_TARGETS:
            raise ValueError(f"{where or 'RomeHParams'}: rome_target must be one of "
                             f"{', '.join(ROME_TARGETS)}, got {self.rome_target!r}")
        if self.original_key_mismatch and self.rome_target != "bare":
            raise ValueError(f"{where or 'RomeHParams'}: original_key_mismatch writes the bare "
                             f"prompt's value; rome_target {self.rome_target!r} is an r-ROME "
                             f"option")

    @property
    def layers(self) -> tuple[int, ...]:
        return (self.layer,)


@dataclass(frozen=True)
class MemitHParams(Mom2HParams):
    """MEMIT over ``layers`` (ascending); λ = ``mom2_update_weight``; ``post_norm_targets``
    maps residual targets through a norm that follows the MLP, where the architecture has
    one (Gemma-3; see :mod:`corredit.editors.post_norm`)."""

    layers: tuple[int, ...] = (0,)
    mom2_update_weight: float = 15000.0
    clamp_norm_factor: float = 0.75
    context_prompts: tuple[str, ...] = ("The", "Therefore", "Because", "I", "You")
    context_templates: tuple[tuple[int, int], ...] = ((10, 1),)
    key_averaging: str = "two_level"
    post_norm_targets: bool = True

    def validate(self, *, where: str = "") -> None:
        super().validate(where=where)
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"{where or 'MemitHParams'}: layers must be non-empty, "
                             f"strictly ascending, got {self.layers!r}")


@dataclass(frozen=True)
class EmmetHParams(MemitHParams):
    """EMMET: MEMIT's targets and spreading with the equality-constrained solve. ``C`` is
    scaled by ``mom2_update_weight`` and given ``update_norm_lambda`` on its diagonal, as
    in the reference; ``emmet_lambda`` (ε) regularises ``K^T C^-1 K`` for batches of more
    than one fact."""

    mom2_update_weight: float = 1000.0
    emmet_lambda: float = 0.1
    update_norm_lambda: float = 0.0

    def validate(self, *, where: str = "") -> None:
        super().validate(where=where)
        if self.emmet_lambda < 0 or self.update_norm_lambda < 0 or self.mom2_update_weight <= 0:
            raise ValueError(f"{where or 'EmmetHParams'}: emmet_lambda and update_norm_lambda "
                             f"must be >= 0, mom2_update_weight > 0")


NULLSPACE_RULES = ("energy", "absolute")


@dataclass(frozen=True)
class AlphaEditHParams(MemitHParams):
    """AlphaEdit: MEMIT's targets and spreading, the update projected onto the null space of
    the preserved keys' second moment ``C``.

    ``nullspace_rule="energy"`` (default) keeps the eigenvectors of ``C`` with the smallest
    eigenvalues whose sum is at most ``nullspace_energy`` of the trace; ``"absolute"`` (the
    reference) keeps those with eigenvalue below ``nullspace_threshold``. ``l2_weight`` is
    α. ``mom2_update_weight`` is not used (``C`` enters only through the projector).
    """

    nullspace_rule: str = "energy"
    nullspace_energy: float = 1e-2
    nullspace_threshold: float = 2e-2
    l2_weight: float = 10.0

    def validate(self, *, where: str = "") -> None:
        super().validate(where=where)
        tag = where or "AlphaEditHParams"
        if self.nullspace_rule not in NULLSPACE_RULES:
            raise ValueError(f"{tag}: nullspace_rule must be one of {', '.join(NULLSPACE_RULES)}, "
                             f"got {self.nullspace_rule!r}")
        if not 0 < self.nullspace_energy < 1:
            raise ValueError(f"{tag}: nullspace_energy must lie in (0, 1)")
        if self.l2_weight <= 0:
            raise ValueError(f"{tag}: l2_weight must be > 0")


MERGE_RULES = ("prefix", "key")


@dataclass(frozen=True)
class MemitMergeHParams(MemitHParams):
    """MEMIT-Merge: facts of one batch grouped by ``merge_rule`` share one value vector.

    ``"prefix"`` (default): the rewrite prompts agree up to and including the subject (same
    subject, same text before it), so a causal model gives them the same key.
    ``"key"``: their keys at the first edit layer lie within ``merge_key_tol`` (relative
    distance ``|k_a - k_b| / max(|k_a|, |k_b|)``) of the group's first key.
    """

    merge_rule: str = "prefix"
    merge_key_tol: float = 1e-6

    def validate(self, *, where: str = "") -> None:
        super().validate(where=where)
        if self.merge_rule not in MERGE_RULES:
            raise ValueError(f"{where or 'MemitMergeHParams'}: merge_rule must be one of "
                             f"{', '.join(MERGE_RULES)}, got {self.merge_rule!r}")


@dataclass(frozen=True)
class PmetHParams(MemitHParams):
    """PMET: MEMIT's windows with two optimised vectors at the last layer (attention and MLP
    output) and only the MLP targets written, the residual spread by ``1/sqrt(L - j)``.
    Reference (GPT-J): 30 steps, ``v_lr`` 0.2, ``kl_factor`` 1, λ 6000. The adaptive loss:
    the NLL term weighs ``nll_loss_factor``, times ``top_nll_factor`` once the target is the
    top prediction, and a unit stops there when ``kl_factor x KL <= kl_stop``
    (:class:`~corredit.editors.values.AdaptiveNll`). ``post_norm_targets`` is not used: the
    targets are MLP outputs, before any norm that follows the MLP."""

    v_num_grad_steps: int = 30
    v_lr: float = 0.2
    kl_factor: float = 1.0
    mom2_update_weight: float = 6000.0
    nll_loss_factor: float = 1.0
    top_nll_factor: float = 0.1
    kl_stop: float = 0.01

    def validate(self, *, where: str = "") -> None:
        super().validate(where=where)
        if self.nll_loss_factor <= 0 or self.top_nll_factor <= 0:
            raise ValueError(f"{where or 'PmetHParams'}: nll_loss_factor and top_nll_factor "
                             f"must be > 0")


def read_defaults(path: Path | str = DEFAULTS_PATH) -> dict[str, Any]:
    """The parsed defaults file (``{editor: {key: {knob: value}}}``), read afresh."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: invalid TOML: {exc}") from None


def default_hparams(editor: str, cls: type[H], *, model_name: str | None,
                    architecture: str | None, path: Path | str = DEFAULTS_PATH) -> H:
    """The defaults for ``editor`` on a model, merged from the defaults file."""
    table = read_defaults(path).get(editor, {})
    hp = cls()
    order: list[str] = []
    if "*" in table:
        order.append("*")
    if model_name is not None:
        order += [k for k in table if k != "*" and any(c in k for c in "*?[")
                  and fnmatch.fnmatchcase(model_name, k)]
    if architecture is not None and architecture in table:
        order.append(architecture)
    if model_name is not None and model_name in table and model_name not in order:
        order.append(model_name)
    for key in order:
        hp = hp.merged(table[key], where=f"{path} [{editor}.{key!r}]")
    return hp
