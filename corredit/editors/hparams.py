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
    "FTHParams",
    "RomeHParams",
    "MemitHParams",
    "DEFAULTS_PATH",
    "default_hparams",
    "read_defaults",
]

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")

H = TypeVar("H", bound="HParams")


@dataclass(frozen=True)
class HParams:
    """Base of every editor's hyperparameters: a frozen dataclass of method knobs."""

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
        out = dataclasses.replace(self, **changes)
        out.validate(where=where)
        return out

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


@dataclass(frozen=True)
class RomeHParams(ValueHParams):
    """ROME / r-ROME at one layer; ``original_key_mismatch`` reproduces the reference
    code's bare-prompt key in the update's denominator."""

    layer: int = 0
    original_key_mismatch: bool = False

    @property
    def layers(self) -> tuple[int, ...]:
        return (self.layer,)


@dataclass(frozen=True)
class MemitHParams(ValueHParams):
    """MEMIT over ``layers`` (ascending); λ = ``mom2_update_weight``."""

    layers: tuple[int, ...] = (0,)
    mom2_update_weight: float = 15000.0
    clamp_norm_factor: float = 0.75
    context_prompts: tuple[str, ...] = ("The", "Therefore", "Because", "I", "You")
    context_templates: tuple[tuple[int, int], ...] = ((10, 1),)
    key_averaging: str = "two_level"

    def validate(self, *, where: str = "") -> None:
        super().validate(where=where)
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"{where or 'MemitHParams'}: layers must be non-empty, "
                             f"strictly ascending, got {self.layers!r}")


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
