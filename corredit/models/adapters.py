"""Architecture adapters: where each Hugging Face architecture keeps its blocks, MLP and
attention projections, and how it stores the MLP output weight.

Usage::

    from corredit.models import get_adapter
    a = get_adapter(model)                       # looked up by type(model).__name__
    a.module(model, "mlp_out", 3)                # the module that maps keys to values
    a.param_name("mlp_out", 3)                   # "transformer.h.3.mlp.c_proj.weight"
    W = a.read_mlp_out_weight(model, 3)          # (d, d_k), keys -> values
    a.add_to_mlp_out_weight(model, 3, delta)     # in place, layout handled here

Module-name templates live in this file only; everything else asks an adapter.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corredit.registry import Registry, UnknownNameError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "ArchitectureAdapter",
    "ADAPTERS",
    "LAYER_KINDS",
    "register_adapter",
    "get_adapter",
    "resolve_module",
    "UnknownArchitectureError",
    "ModuleNameError",
]

#: Kinds of per-layer module an adapter can locate (see :meth:`ArchitectureAdapter.module`).
LAYER_KINDS = ("block", "mlp_in", "mlp_out", "mlp_gate", "attn_out")
#: Kinds of whole-model module (no layer).
MODEL_KINDS = ("final_norm", "unembed")

_REGISTER_HINT = (
    "Register an adapter for it, e.g.\n"
    "    from corredit.models import ArchitectureAdapter, register_adapter\n"
    "    register_adapter(ArchitectureAdapter(\n"
    "        architecture=\"MyModelForCausalLM\", blocks=\"model.layers\",\n"
    "        mlp_in=\"mlp.up_proj\", mlp_out=\"mlp.down_proj\", mlp_gate=\"mlp.gate_proj\",\n"
    "        attn_out=\"self_attn.o_proj\", final_norm=\"model.norm\", unembed=\"lm_head\"))\n"
    "(mlp_in/mlp_out/mlp_gate/attn_out are relative to one block; set\n"
    "mlp_out_transposed=True when the weight is stored as (d_k, d) like GPT-2's Conv1D)"
)


class UnknownArchitectureError(UnknownNameError, ValueError):
    """A model class without a registered :class:`ArchitectureAdapter`."""


class ModuleNameError(AttributeError):
    """A dotted module name that does not resolve inside the model."""


def resolve_module(model: "nn.Module", name: str) -> "nn.Module":
    """The submodule at dotted ``name`` (``""`` is the model itself).

    >>> resolve_module(model, "transformer.h.0.mlp")        # doctest: +SKIP

    Raises :class:`ModuleNameError` naming the first missing component and the
    children available there.
    """
    module = model
    if not name:
        return module
    walked: list[str] = []
    for part in name.split("."):
        children = dict(module.named_children())
        if part not in children:
            where = ".".join(walked) or "(model root)"
            known = ", ".join(children) or "(no children)"
            raise ModuleNameError(
                f"module {name!r} not found in {type(model).__name__}: no child {part!r} "
                f"under {where}; children there: {known}"
            )
        module = children[part]
        walked.append(part)
    return module


def _as_layer(kind: str, layer: object) -> int:
    """``layer`` as a non-negative int (numpy integers accepted)."""
    try:
        if isinstance(layer, bool):
            raise TypeError
        value = operator.index(layer)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{kind!r} needs a non-negative integer layer, got {layer!r}") from None
    if value < 0:
        raise ValueError(f"{kind!r} needs a non-negative integer layer, got {layer!r}")
    return value


@dataclass(frozen=True)
class ArchitectureAdapter:
    """Declarative description of one Hugging Face causal-LM architecture.

    ``blocks`` is the dotted path of the list of transformer blocks from the model root;
    ``mlp_in``, ``mlp_out``, ``mlp_gate`` (gated MLPs only) and ``attn_out`` are dotted
    paths relative to one block; ``final_norm`` and ``unembed`` are paths from the root.
    ``mlp_out_transposed`` is True when the MLP output weight is stored as ``(d_k, d)``
    (GPT-2's ``Conv1D``) instead of ``nn.Linear``'s ``(d, d_k)``; ``mlp_post_norm`` names a
    norm between the MLP output and the residual stream (Gemma-3), when there is one.
    """

    architecture: str
    blocks: str
    mlp_in: str
    mlp_out: str
    attn_out: str
    final_norm: str
    unembed: str
    mlp_gate: str | None = None
    mlp_out_transposed: bool = False
    #: Norm applied to the MLP output before it joins the residual stream (Gemma-3's
    #: ``post_feedforward_layernorm``), relative to one block; None when the MLP output is
    #: added to the residual stream as it is.
    mlp_post_norm: str | None = None

    # -- names -------------------------------------------------------------------------
    def module_name(self, kind: str, layer: int | None = None) -> str:
        """Dotted module name of ``kind`` at ``layer`` (``layer=None`` for
        ``"final_norm"``/``"unembed"``), e.g. ``"model.layers.3.mlp.down_proj"``."""
        if kind in MODEL_KINDS:
            if layer is not None:
                raise ValueError(f"{kind!r} is not per layer; pass layer=None")
            return getattr(self, kind)
        if kind not in LAYER_KINDS:
            raise ValueError(
                f"unknown module kind {kind!r}; known: {', '.join(LAYER_KINDS + MODEL_KINDS)}"
            )
        layer = _as_layer(kind, layer)
        block = f"{self.blocks}.{layer}"
        if kind == "block":
            return block
        rel = getattr(self, kind)
        if rel is None:
            raise ValueError(f"{self.architecture} has no {kind!r} module (MLP is not gated)")
        return f"{block}.{rel}"

    def param_name(self, kind: str, layer: int | None = None, param: str = "weight") -> str:
        """Parameter name, e.g. ``param_name("mlp_out", 3)`` ->
        ``"transformer.h.3.mlp.c_proj.weight"``."""
        if kind == "block":
            raise ValueError("a block has many parameters; name a module kind inside it")
        return f"{self.module_name(kind, layer)}.{param}"

    # -- modules -----------------------------------------------------------------------
    def module(self, model: "nn.Module", kind: str, layer: int | None = None) -> "nn.Module":
        """The module of ``kind`` at ``layer``; a bad layer or path fails loudly."""
        if kind in LAYER_KINDS:
            n = self.n_layers(model)
            if _as_layer(kind, layer) >= n:
                raise IndexError(
                    f"layer {layer!r} out of range for {self.architecture} with {n} layers"
                )
        return resolve_module(model, self.module_name(kind, layer))

    def block_list(self, model: "nn.Module") -> "nn.Module":
        """The container (``nn.ModuleList``) of transformer blocks."""
        return resolve_module(model, self.blocks)

    def n_layers(self, model: "nn.Module") -> int:
        """Number of transformer blocks."""
        return len(self.block_list(model))

    def post_norm_module(self, model: "nn.Module", layer: int) -> "nn.Module | None":
        """The norm between the MLP output and the residual stream at ``layer`` (see
        ``mlp_post_norm``), or None when the MLP output joins the residual stream as it is."""
        if self.mlp_post_norm is None:
            return None
        return resolve_module(self.module(model, "block", layer), self.mlp_post_norm)

    # -- MLP output weight -------------------------------------------------------------
    def _mlp_out_param(self, model: "nn.Module", layer: int) -> "torch.nn.Parameter":
        module = self.module(model, "mlp_out", layer)
        weight = getattr(module, "weight", None)
        if weight is None:
            raise AttributeError(
                f"{self.module_name('mlp_out', layer)} of {self.architecture} has no weight"
            )
        return weight

    def read_mlp_out_weight(self, model: "nn.Module", layer: int) -> "torch.Tensor":
        """A detached copy of the MLP output weight as ``(d, d_k)`` (keys -> values)."""
        w = self._mlp_out_param(model, layer).detach()
        return (w.t() if self.mlp_out_transposed else w).clone()

    def read_mlp_out_bias(self, model: "nn.Module", layer: int) -> "torch.Tensor | None":
        """A detached copy of the MLP output bias ``(d,)``, or None when there is none."""
        bias = getattr(self.module(model, "mlp_out", layer), "bias", None)
        return None if bias is None else bias.detach().clone()

    def add_to_mlp_out_weight(self, model: "nn.Module", layer: int, delta: "torch.Tensor") -> None:
        """Add ``delta`` of shape ``(d, d_k)`` to the MLP output weight in place, in the
        declared storage layout (transposed for ``mlp_out_transposed``), without grad."""
        import torch

        w = self._mlp_out_param(model, layer)
        stored = tuple(w.shape)
        expected = (stored[1], stored[0]) if self.mlp_out_transposed else stored
        if tuple(delta.shape) != expected:
            raise ValueError(
                f"delta for {self.param_name('mlp_out', layer)} must have shape (d, d_k) = "
                f"{expected}, got {tuple(delta.shape)}"
            )
        with torch.no_grad():
            d = delta.detach().to(device=w.device, dtype=w.dtype)
            w.add_(d.t() if self.mlp_out_transposed else d)


#: Adapters keyed by Hugging Face model class name.
ADAPTERS: Registry[ArchitectureAdapter] = Registry("architecture adapter", hint=_REGISTER_HINT)


def register_adapter(adapter: ArchitectureAdapter, replace: bool = False) -> ArchitectureAdapter:
    """Register ``adapter`` under ``adapter.architecture`` (the model class name)."""
    if not isinstance(adapter, ArchitectureAdapter):
        raise TypeError(f"expected an ArchitectureAdapter, got {type(adapter).__name__}")
    ADAPTERS.add(adapter.architecture, adapter, replace=replace)
    return adapter


def get_adapter(model: "nn.Module | str") -> ArchitectureAdapter:
    """The adapter for ``model`` (looked up by ``type(model).__name__``) or for a class
    name; raises :class:`UnknownArchitectureError` explaining how to register one."""
    name = model if isinstance(model, str) else type(model).__name__
    if name in ADAPTERS:
        return ADAPTERS.get(name)
    known = ", ".join(ADAPTERS.names()) or "(none)"
    raise UnknownArchitectureError(
        f"no architecture adapter for {name!r}; known: {known}. {_REGISTER_HINT}"
    )


_GPT2 = dict(blocks="transformer.h", final_norm="transformer.ln_f", unembed="lm_head")
_LLAMA_LIKE = dict(
    blocks="model.layers",
    mlp_in="mlp.up_proj",
    mlp_gate="mlp.gate_proj",
    mlp_out="mlp.down_proj",
    attn_out="self_attn.o_proj",
    final_norm="model.norm",
    unembed="lm_head",
)

for _adapter in (
    ArchitectureAdapter(
        architecture="GPT2LMHeadModel",
        mlp_in="mlp.c_fc",
        mlp_out="mlp.c_proj",
        attn_out="attn.c_proj",
        mlp_out_transposed=True,
        **_GPT2,
    ),
    ArchitectureAdapter(
        architecture="GPTJForCausalLM",
        mlp_in="mlp.fc_in",
        mlp_out="mlp.fc_out",
        attn_out="attn.out_proj",
        **_GPT2,
    ),
    ArchitectureAdapter(
        architecture="GPTNeoXForCausalLM",
        blocks="gpt_neox.layers",
        mlp_in="mlp.dense_h_to_4h",
        mlp_out="mlp.dense_4h_to_h",
        attn_out="attention.dense",
        final_norm="gpt_neox.final_layer_norm",
        unembed="lm_head",
    ),
    ArchitectureAdapter(architecture="LlamaForCausalLM", **_LLAMA_LIKE),
    ArchitectureAdapter(architecture="MistralForCausalLM", **_LLAMA_LIKE),
    ArchitectureAdapter(architecture="Qwen2ForCausalLM", **_LLAMA_LIKE),
    # Gemma-3: extra pre/post feed-forward norms sit around the MLP; the key is still the
    # input of down_proj and the value its output (before post_feedforward_layernorm).
    ArchitectureAdapter(architecture="Gemma3ForCausalLM", mlp_post_norm="post_feedforward_layernorm",
                        **_LLAMA_LIKE),
):
    register_adapter(_adapter)
del _adapter
