"""Throughput of the statistics pass against a bare forward pass, and its arithmetic ceiling.

Usage::

    from corredit.stats import measure_throughput
    t = measure_throughput(h, [2, 3, 4], corpus, max_tokens=20000, repeats=5, precision="mixed")
    t["ratio"]          # statistics pass / bare forward pass (1.0 = no overhead)
    t["ceiling"]        # the ratio if the pass cost only the forward pass plus its products

Both passes run over the same pre-tokenized batches (tokenization excluded) and alternate
``repeats`` times. The key products are also timed alone, on keys captured once from the
first batches, so ``ceiling = forward / (forward + products)`` (median of back-to-back
repeats) says how much of the gap the products' own arithmetic explains: a ratio close to
its ceiling leaves nothing but faster matrix products to gain. How fast they could be is
measured too: ``products_gflops`` (the pass's products, counted by
:func:`~corredit.stats.products.product_flops`) against ``full_product_gflops`` (one full
``kᵀk`` of the same keys, the host's best matrix-product rate at these shapes), and
:func:`gflops_needed` gives the rate a ratio would need::

    gflops_needed(t["symmetric_flops_per_token"], t["forward_tokens_per_s"], 0.8,
                  t["keys_tokens_per_s"])
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Iterable

import torch

from corredit.models.tracing import eval_mode

from corredit.stats.collect import StatsState, TokenBatch, _Accumulator, _check_layers, _sync, iter_token_batches
from corredit.stats.corpus import Corpus
from corredit.stats.moment import SecondMoment
from corredit.stats.products import KeyProducts, forward_keys, product_dtype, product_flops

__all__ = ["bare_forward", "measure_throughput", "gflops_needed", "DEFAULT_PRODUCT_TOKENS"]

#: Tokens whose keys :func:`measure_throughput` keeps to time the products alone.
DEFAULT_PRODUCT_TOKENS = 8192


def bare_forward(h: Any, top_layer: int, batches: Iterable[TokenBatch]) -> int:
    """Run the model to ``top_layer`` (inclusive) on ``batches`` reading nothing; returns
    the number of non-padding tokens. The baseline that a statistics pass is timed
    against."""
    from corredit.models import trace

    n = 0
    with eval_mode(h.model), torch.no_grad():
        for b in batches:
            if not b.n_tokens:
                continue
            ids = b.input_ids.to(h.device, non_blocking=True)
            mask = b.attention_mask.to(h.device, non_blocking=True)
            trace(h, ids, attention_mask=mask, read=[], stop_at_layer=top_layer)
            n += b.n_tokens
    _sync(h.device)
    return n


def gflops_needed(flops_per_token: float, forward_tokens_per_s: float, ratio: float,
                  keys_tokens_per_s: float | None = None) -> float:
    """The rate (GFLOP/s) at which products of ``flops_per_token`` must run for a pass of
    ``ratio`` times the bare forward pass's ``forward_tokens_per_s`` (``ratio`` strictly
    between 0 and 1) when the pass adds nothing else to the forward pass to its keys
    (``keys_tokens_per_s``; default: as fast as the bare forward pass). ``math.inf`` when
    that forward pass alone is already too slow."""
    if not 0 < ratio < 1:
        raise ValueError(f"gflops_needed: ratio must lie strictly between 0 and 1, got {ratio}")
    keys = forward_tokens_per_s if keys_tokens_per_s is None else keys_tokens_per_s
    if not (forward_tokens_per_s > 0 and keys > 0):
        raise ValueError(f"gflops_needed: throughputs must be positive, got forward "
                         f"{forward_tokens_per_s} and keys {keys} tokens/s")
    budget = 1 / (ratio * forward_tokens_per_s) - 1 / keys     # seconds a token
    return math.inf if budget <= 0 else flops_per_token / budget / 1e9


def _keys_pass(h: Any, layers: list[int], batches: list[TokenBatch], max_tokens: int | None = None,
               capture: bool = False) -> list[tuple[dict[int, torch.Tensor], int]]:
    """Forward passes to the keys (:func:`~corredit.stats.products.forward_keys`) over the
    batches with tokens, up to the first batches holding ``max_tokens`` (default: all).
    With ``capture``, returns copies of their non-padding keys, ``[({layer: keys},
    n_tokens), ...]``; otherwise the keys are dropped where they are made (a statistics
    pass without its products) and the list is empty."""
    out: list[tuple[dict[int, torch.Tensor], int]] = []
    n = 0
    with eval_mode(h.model), torch.no_grad():
        for b in batches:
            if max_tokens is not None and n >= max_tokens:
                break
            if not b.n_tokens:
                continue
            keys: dict[int, torch.Tensor] = {}
            forward_keys(h, layers, b.input_ids.to(h.device), b.attention_mask.to(h.device),
                         (lambda layer, k: keys.__setitem__(layer, k.clone())) if capture
                         else (lambda layer, k: None))
            if capture:
                out.append((keys, b.n_tokens))
            n += b.n_tokens
    _sync(h.device)
    return out


def measure_throughput(h: Any, layers: Iterable[int], corpus: Corpus, *, max_tokens: int,
                       batch_size: int = 16, max_length: int | None = 128,
                       warmup_batches: int = 1, repeats: int = 1,
                       blocks: int | None = None, precision: str = "float64",
                       flush_tokens: int | None = None,
                       product_tokens: int = DEFAULT_PRODUCT_TOKENS) -> dict[str, Any]:
    """Tokens per second of the statistics pass, of a bare forward pass to the same top
    layer, and of the key products alone (see module docstring). Each throughput is from
    its best repeat; ``ratio`` and ``ceiling`` are medians of back-to-back repeats (robust
    to the machine's speed drifting between repeats). The products are timed on the keys
    of the first batches holding ``product_tokens`` tokens (kept in memory), with the
    pass's blocks, precision and flushes.

    Returns ``{"tokens", "stats_tokens_per_s", "forward_tokens_per_s", "keys_tokens_per_s",
    "products_tokens_per_s", "ratio", "ratios", "ceiling", "product_flops_per_token",
    "symmetric_flops_per_token", "products_gflops", "full_product_gflops"}``
    (``ratios``: each repeat's; ``keys_tokens_per_s``: the pass without its products, the
    forward pass to the top layer's keys handing them over without padding; flops per
    token summed over the layers: the pass's block products, and the symmetric product's
    minimum)."""
    layers = _check_layers(h, layers)
    if repeats < 1:
        raise ValueError(f"measure_throughput: repeats must be at least 1, got {repeats}")
    if product_tokens < 1:
        raise ValueError(f"measure_throughput: product_tokens must be positive, got {product_tokens}")
    batches = list(iter_token_batches(h.tokenizer, corpus, batch_size=batch_size,
                                      max_length=max_length, max_tokens=max_tokens))
    warm = batches[:warmup_batches]
    acc = _Accumulator(h, layers, blocks, precision, flush_tokens)

    def fresh_state() -> StatsState:
        return StatsState({l: SecondMoment.zeros(h.key_size, layer=l, device=h.device) for l in layers})

    def stats_pass(bs: list[TokenBatch]) -> int:
        state = fresh_state()
        with eval_mode(h.model), torch.no_grad():
            for b in bs:
                acc.add(state, b)
            acc.finish(state)
        _sync(h.device)
        return state.tokens

    captured = _keys_pass(h, layers, batches, product_tokens, capture=True)
    captured_tokens = sum(n for _, n in captured)
    if not captured_tokens:
        raise ValueError(f"measure_throughput: corpus {corpus.identity!r} yields no tokens")

    def products_only() -> None:
        state, prod = fresh_state(), KeyProducts(h, layers, blocks, precision, flush_tokens)
        for keys, n in captured:
            for layer in layers:
                prod.add(state, layer, keys[layer], n)
            prod.end_batch(state, n)
        prod.flush(state)
        _sync(h.device)

    dtype = product_dtype(precision)
    full_keys = [k.to(dtype) for keys, _ in captured for k in keys.values()]

    def full_products() -> None:
        for k in full_keys:
            torch.mm(k.T, k)
        _sync(h.device)

    bare_forward(h, max(layers), warm)
    stats_pass(warm)
    _keys_pass(h, layers, warm)
    products_only()
    full_products()
    t_fwd, t_stats, t_keys, t_prod, t_full, ratios, ceilings = [], [], [], [], [], [], []
    n = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = bare_forward(h, max(layers), batches)
        t1 = time.perf_counter()
        stats_pass(batches)
        t2 = time.perf_counter()
        _keys_pass(h, layers, batches)
        t3 = time.perf_counter()
        products_only()
        t4 = time.perf_counter()
        full_products()
        t_full.append(time.perf_counter() - t4)
        t_keys.append((t3 - t2) / n)
        t_fwd.append((t1 - t0) / n)
        t_stats.append((t2 - t1) / n)
        t_prod.append((t4 - t3) / captured_tokens)
        ratios.append(t_fwd[-1] / t_stats[-1])
        ceilings.append(t_fwd[-1] / (t_fwd[-1] + t_prod[-1]))
    d_k, blocks = h.key_size, acc.products.blocks
    flops = len(layers) * product_flops(d_k, blocks)
    return {"tokens": float(n), "stats_tokens_per_s": 1 / min(t_stats),
            "forward_tokens_per_s": 1 / min(t_fwd), "keys_tokens_per_s": 1 / min(t_keys),
            "products_tokens_per_s": 1 / min(t_prod),
            "ratio": statistics.median(ratios), "ratios": ratios,
            "ceiling": statistics.median(ceilings), "product_flops_per_token": flops,
            "symmetric_flops_per_token": len(layers) * product_flops(d_k),
            "products_gflops": flops / min(t_prod) / 1e9,
            "full_product_gflops": len(layers) * product_flops(d_k, 1) * captured_tokens / min(t_full) / 1e9}
