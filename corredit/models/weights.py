"""Save and put back model parameters exactly.

Usage::

    from corredit.models import snapshot, restore
    names = [h.adapter.param_name("mlp_out", layer) for layer in (3, 4)]
    snap = snapshot(h.model, names)      # {name: detached clone}
    ...                                  # edit the model in place
    restore(h.model, snap)               # bit-exact
    param_checksum(h.model, names)       # '3f1c...': changes with any bit of them
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["snapshot", "restore", "named_tensors", "param_checksum"]


def named_tensors(model: "nn.Module") -> dict[str, torch.Tensor]:
    """All parameters and buffers of ``model`` by name."""
    tensors: dict[str, torch.Tensor] = dict(model.named_buffers())
    tensors.update(model.named_parameters())
    return tensors


def _lookup(tensors: Mapping[str, torch.Tensor], name: str, model: "nn.Module") -> torch.Tensor:
    try:
        return tensors[name]
    except KeyError:
        prefix = name.rsplit(".", 2)[0]
        near = [n for n in tensors if n.startswith(prefix)][:8] or list(tensors)[:8]
        raise KeyError(
            f"{type(model).__name__} has no parameter or buffer {name!r}; e.g. {', '.join(near)}"
        ) from None


def snapshot(model: "nn.Module", names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Detached copies of the named parameters (or buffers)."""
    tensors = named_tensors(model)
    return {name: _lookup(tensors, name, model).detach().clone() for name in names}


def restore(model: "nn.Module", snap: Mapping[str, torch.Tensor]) -> None:
    """Copy every tensor of ``snap`` back into ``model`` in place (bit-exact)."""
    tensors = named_tensors(model)
    targets = {name: _lookup(tensors, name, model) for name in snap}
    for name, saved in snap.items():
        if targets[name].shape != saved.shape:
            raise ValueError(
                f"snapshot of {name!r} has shape {tuple(saved.shape)}, the model's is {tuple(targets[name].shape)}"
            )
    with torch.no_grad():
        for name, saved in snap.items():
            targets[name].copy_(saved)


def param_checksum(model: Any, names: Iterable[str]) -> str:
    """A cheap checksum of the bits of the named parameters: per tensor, the sum and a
    position-weighted sum of its values read as integers (any changed bit changes it)."""
    params = dict(model.named_parameters())
    int_of = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    h = hashlib.sha256()
    with torch.no_grad():
        for name in sorted(names):
            t = params[name].detach().reshape(-1)
            bits = t.view(int_of[t.element_size()]).to(torch.int64)
            weights = torch.arange(bits.numel(), device=bits.device, dtype=torch.int64) % 65521 + 1
            h.update(f"{name}:{tuple(params[name].shape)}:{int(bits.sum())}:"
                     f"{int((bits * weights).sum())};".encode())
    return h.hexdigest()[:16]
