"""Key products of the statistics pass: ``Σ k kᵀ`` of each layer, added into float64 sums.

Usage::

    from corredit.stats.products import KeyProducts
    prod = KeyProducts(h, layers=[2, 3], precision="mixed")
    prod.run(state, input_ids, attention_mask, n_tokens)   # one forward pass, every layer's product
    prod.flush(state)                                      # pending float32 partial sums -> float64

One forward pass per batch: a pre-hook on each requested layer's ``mlp_out`` multiplies the
keys where they are made (no copies of the activations besides dropping padding), and
the pass stops at the key of the highest layer (its ``mlp_out`` and everything after it
never run). Only block rows' upper parts are computed (:func:`add_upper`); the lower
triangle is mirrored at the end (:func:`symmetrize`).

Precisions (:data:`PRECISIONS`):

* ``"float64"``: keys are converted to float64 and multiplied in float64; exact up to
  float64 rounding.
* ``"mixed"``: keys (float32, as the model computes them) are multiplied in float32 and
  summed into a float32 partial sum, which is added into the float64 sum after the
  first batch that brings it to ``flush_tokens`` tokens (so a block holds fewer than
  ``flush_tokens`` plus one batch's tokens; :attr:`KeyProducts.max_block` records the
  largest). Accuracy: a block of ``m`` tokens carries the error of float32 dot products
  of length ``m``, so elementwise ``|C_mixed - C_exact| <= γ(M) · (|K|ᵀ|K|)`` with
  ``γ(M) = M u / (1 - M u)``, ``u = 2^-24``, ``M = max_block`` (:func:`error_bound`),
  plus float64 rounding; typical errors are about ``sqrt(M) u`` of ``|K|ᵀ|K|``. (Keys of
  the same tokens computed in padded and in unpadded batches already differ at float32
  rounding.)
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["PRECISIONS", "DEFAULT_FLUSH_TOKENS", "KeyProducts", "add_upper", "symmetrize",
           "default_blocks", "error_bound", "forward_keys", "product_dtype", "product_flops"]

#: Accumulation precisions (see module docstring): the dtype of the products.
PRECISIONS: dict[str, torch.dtype] = {"float64": torch.float64, "mixed": torch.float32}
#: Tokens summed in float32 before a flush into float64 (``"mixed"``).
DEFAULT_FLUSH_TOKENS = 1024
_U32 = 2.0 ** -24


def product_dtype(precision: str) -> torch.dtype:
    """The product dtype of ``precision``; a clear error for unknown names."""
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}") from None


def error_bound(block_tokens: int) -> float:
    """``γ(M)`` for blocks of at most ``M`` tokens: the elementwise bound of ``"mixed"``
    relative to ``|K|ᵀ|K|``."""
    mu = block_tokens * _U32
    return mu / (1 - mu)


def _block_edges(d: int, blocks: int) -> list[int]:
    blocks = max(1, min(blocks, d))
    return [round(i * d / blocks) for i in range(blocks + 1)]


def default_blocks(d_k: int) -> int:
    """Row blocks used by :func:`add_upper` for keys of size ``d_k``: blocks at least 64
    wide, at most 8 of them (8 blocks do 56% of the full product's work)."""
    return max(1, min(8, d_k // 64))


def product_flops(d_k: int, blocks: int | None = None) -> int:
    """Floating-point operations per token of :func:`add_upper` on keys of size ``d_k``
    (a multiply-add counts two): ``product_flops(512, 8) / product_flops(512, 1)`` is
    0.5625. With ``blocks=None``, the symmetric product's minimum, ``d_k (d_k + 1)``."""
    if blocks is None:
        return d_k * (d_k + 1)
    e = _block_edges(d_k, blocks)
    return 2 * sum((b - a) * (d_k - a) for a, b in zip(e[:-1], e[1:]))


def add_upper(total: torch.Tensor, keys: torch.Tensor, blocks: int = 1,
              precision: str = "float64") -> None:
    """``total += keysᵀ keys``, computing only block rows' upper parts: with ``blocks``
    row blocks, block row ``i`` gets ``keys[:, i]ᵀ keys[:, i:]``, about
    ``(blocks + 1) / (2 blocks)`` of the full product's work. Entries below the diagonal
    blocks are left untouched; :func:`symmetrize` mirrors the upper triangle. ``total``
    is float64, or float32 for a partial sum (then ``precision`` must be ``"mixed"``)."""
    dtype = product_dtype(precision)
    k = keys if keys.dtype == dtype else keys.to(dtype)
    e = _block_edges(total.shape[0], blocks)
    for a, b in zip(e[:-1], e[1:]):
        if total.dtype == dtype:
            total[a:b, a:].addmm_(k[:, a:b].T, k[:, a:])
        else:
            total[a:b, a:] += (k[:, a:b].T @ k[:, a:]).to(total.dtype)


def symmetrize(total: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix whose upper triangle (diagonal included) is ``total``'s."""
    upper = torch.triu(total)
    return upper + torch.triu(total, diagonal=1).T


class _Stop(Exception):
    """Raised by the hook of the highest layer once its keys are handed on."""


def forward_keys(h: Any, layers: list[int], input_ids: torch.Tensor,
                 attention_mask: torch.Tensor, on_keys: Callable[[int, torch.Tensor], None]) -> None:
    """One forward pass over a right-padded batch that calls ``on_keys(layer, keys)`` with
    the ``(tokens, d_k)`` keys of the non-padding tokens at each of ``layers`` (lowest
    first) where they are made, and stops at the highest layer's key."""
    model, adapter, top = h.model, h.adapter, max(layers)
    keep = None if bool(attention_mask.all()) else attention_mask.reshape(-1).nonzero().flatten()

    def hook_for(layer: int):
        def hook(module, args):
            x = args[0]
            k = x.reshape(-1, x.shape[-1])
            on_keys(layer, k if keep is None else k.index_select(0, keep))
            if layer == top:
                raise _Stop()
        return hook

    handles = [adapter.module(model, "mlp_out", l).register_forward_pre_hook(hook_for(l))
               for l in layers]
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()


class KeyProducts:
    """Adds every requested layer's ``Σ k kᵀ`` of one batch with one forward pass (see
    module docstring); the state's sums hold only the upper block rows until the end."""

    def __init__(self, h: Any, layers: list[int], blocks: int | None = None,
                 precision: str = "float64", flush_tokens: int | None = None) -> None:
        self.h = h
        self.layers = sorted(int(l) for l in layers)
        self.blocks = default_blocks(h.key_size) if blocks is None else int(blocks)
        self.precision = precision
        self.dtype = product_dtype(precision)
        self.flush_tokens = DEFAULT_FLUSH_TOKENS if flush_tokens is None else int(flush_tokens)
        if self.flush_tokens < 1:
            raise ValueError(f"flush_tokens must be positive, got {flush_tokens}")
        self.partial: dict[int, torch.Tensor] = {}
        self.pending = 0                      # tokens in the float32 partial sums
        self.max_block = 0                    # most tokens a flushed block held

    @property
    def clean(self) -> bool:
        """True when no partial sums wait for a flush (the state is complete)."""
        return self.pending == 0

    def run(self, state: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            n_tokens: int) -> None:
        """One forward pass over a right-padded batch; adds its non-padding keys."""
        forward_keys(self.h, self.layers, input_ids, attention_mask,
                     lambda layer, keys: self.add(state, layer, keys, n_tokens))
        self.end_batch(state, n_tokens)

    def add(self, state: Any, layer: int, keys: torch.Tensor, n_tokens: int) -> None:
        """Add one batch's ``(n_tokens, d_k)`` keys of ``layer``; :meth:`end_batch` follows
        once every layer of the batch is added."""
        if self.dtype != torch.float64:
            if layer not in self.partial:
                self.partial[layer] = torch.zeros(keys.shape[1], keys.shape[1], dtype=self.dtype,
                                                  device=keys.device)
            add_upper(self.partial[layer], keys, self.blocks, self.precision)
        else:
            add_upper(state.moments[layer].sum, keys, self.blocks, self.precision)
        state.moments[layer].count += n_tokens

    def end_batch(self, state: Any, n_tokens: int) -> None:
        """Count the batch's tokens into the partial sums; flush once they reach
        ``flush_tokens`` (``"mixed"``)."""
        if self.dtype != torch.float64:
            self.pending += n_tokens
            if self.pending >= self.flush_tokens:
                self.flush(state)

    def flush(self, state: Any) -> None:
        """Add the float32 partial sums into the state's float64 sums and clear them."""
        self.max_block = max(self.max_block, self.pending)
        for layer, partial in self.partial.items():
            state.moments[layer].sum += partial     # zero below the block rows' upper parts
            partial.zero_()
        self.pending = 0
