"""A loaded causal language model: its tokenizer, architecture adapter and device.

Usage::

    from corredit.models import load, wrap      # load lives in corredit.models.loading
    h = load("path/to/folder")          # or a Hub name in the local cache, or "world"
    batch = h.encode(["The Eiffel Tower is in", "Paris is the capital of"])
    h.model(**batch).logits
    h.n_layers, h.hidden_size, h.key_size

    h = wrap(model, tokenizer, name="tiny")   # a model already in memory
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from corredit.models.adapters import ArchitectureAdapter, get_adapter
from corredit.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "ModelHandle",
    "ModelNotFoundError",
    "MODEL_ALIASES",
    "register_model_alias",
    "default_device",
    "prepare_tokenizer",
    "wrap",
]


class ModelNotFoundError(FileNotFoundError):
    """A model that is neither a local folder nor reachable on the Hugging Face Hub."""


#: Names that :func:`load` resolves to a local folder: alias -> zero-argument callable.
MODEL_ALIASES: Registry[Callable[[], "str | os.PathLike[str]"]] = Registry("model alias")


def register_model_alias(name: str, resolve: Callable[[], "str | os.PathLike[str]"], *, replace: bool = False) -> None:
    """Make ``load(name)`` load the folder returned by ``resolve()`` (called lazily)."""
    MODEL_ALIASES.add(name, resolve, replace=replace)


def _world_model_dir() -> "str | os.PathLike[str]":
    try:
        world = importlib.import_module("corredit.world")
    except ModuleNotFoundError as exc:
        if exc.name not in ("corredit.world",):
            raise
        raise ModelNotFoundError(
            "the 'world' model needs the corredit.world package, which is not installed; "
            "pass the folder of a saved model instead, e.g. load('/path/to/model')"
        ) from None
    default_model_dir = getattr(world, "default_model_dir", None)
    if default_model_dir is None:
        raise ModelNotFoundError(
            "the 'world' model needs corredit.world.default_model_dir(), which is not "
            "available; pass the folder of a saved model instead, e.g. load('/path/to/model')"
        )
    return default_model_dir()


register_model_alias("world", _world_model_dir)


def default_device() -> str:
    """``"cuda"`` when a CUDA device is available, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Give ``tokenizer`` a pad token (its EOS, else its UNK) and right padding, in place."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
        if fallback is None:
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} has no pad, eos or unk token to pad with; "
                "set tokenizer.pad_token before loading"
            )
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    return tokenizer


@dataclass
class ModelHandle:
    """A model in eval mode, its tokenizer (pad token, right padding), its
    :class:`ArchitectureAdapter`, the device it lives on and an identity ``name``."""

    model: "nn.Module"
    tokenizer: Any
    adapter: ArchitectureAdapter
    device: "torch.device"
    name: str
    #: The token that starts a document for this model (e.g. GPT-2's and SmolLM2's
    #: ``"<|endoftext|>"``), declared by the model's registry entry; None means the
    #: tokenizer's BOS token, else its EOS token (see :attr:`document_start_id`).
    document_start: str | None = None

    @property
    def document_start_id(self) -> int:
        """Id of the document-start token: the declared :attr:`document_start`, else the
        tokenizer's BOS, else its EOS; raises ``ValueError`` when there is none."""
        tok = self.tokenizer
        if self.document_start is not None:
            ids = tok.convert_tokens_to_ids([self.document_start])
            if not ids or ids[0] is None or tok.convert_ids_to_tokens(ids[0]) != self.document_start:
                raise ValueError(f"model {self.name!r} declares document start "
                                 f"{self.document_start!r}, which its tokenizer does not know")
            return int(ids[0])
        for tid in (tok.bos_token_id, tok.eos_token_id):
            if tid is not None:
                return int(tid)
        raise ValueError(f"model {self.name!r}: its tokenizer has no BOS or EOS token to start "
                         f"a document with; declare one (ModelHandle.document_start)")

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return self.adapter.n_layers(self.model)

    @property
    def hidden_size(self) -> int:
        """Width ``d`` of the residual stream."""
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def key_size(self) -> int:
        """Width ``d_k`` of the MLP output projection's input (the key)."""
        weight = self.adapter.module(self.model, "mlp_out", 0).weight
        return int(weight.shape[0] if self.adapter.mlp_out_transposed else weight.shape[1])

    @property
    def dtype(self) -> "torch.dtype":
        """Floating-point type of the model's parameters."""
        return next(self.model.parameters()).dtype

    def encode(
        self, texts: str | Sequence[str], *, max_length: int | None = None, add_special_tokens: bool = True
    ) -> dict[str, "torch.Tensor"]:
        """Right-padded ``{"input_ids", "attention_mask"}`` on :attr:`device`; truncated
        to ``max_length`` tokens when given."""
        if isinstance(texts, str):
            texts = [texts]
        enc = self.tokenizer(
            list(texts),
            padding=True,
            padding_side="right",
            truncation=max_length is not None,
            max_length=max_length,
            add_special_tokens=add_special_tokens,
            return_tensors="pt",
        )
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    def __repr__(self) -> str:
        return (
            f"ModelHandle(name={self.name!r}, architecture={self.adapter.architecture!r}, "
            f"device={str(self.device)!r}, n_layers={self.n_layers})"
        )


def wrap(model: "nn.Module", tokenizer: Any, name: str = "in-memory") -> ModelHandle:
    """A :class:`ModelHandle` for a model already in memory: puts it in eval mode and
    prepares ``tokenizer`` in place (pad token, right padding); the device is that of
    the model's parameters."""
    adapter = get_adapter(model)
    model.eval()
    device = next(model.parameters()).device
    return ModelHandle(model=model, tokenizer=prepare_tokenizer(tokenizer), adapter=adapter, device=device, name=str(name))
