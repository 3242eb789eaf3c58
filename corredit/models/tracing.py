"""Read and modify activations of chosen modules during a forward pass.

Usage::

    from corredit.models import Site, Addition, trace
    key = Site("mlp_out", 3, "input")                 # the key of layer 3's MLP
    res = trace(h, ids, attention_mask=mask, read=[key], stop_at_layer=3)
    res.values[key]                                   # (batch, seq, d_k); res.logits is None

    delta = torch.zeros(batch, h.hidden_size, requires_grad=True)
    res = trace(h, ids, attention_mask=mask,
                add={Site("mlp_out", 3, "output"): Addition(positions, delta)}, grad=True)
    res.logits.sum().backward()                       # gradients reach delta

The context-manager form installs the same hooks around any forward call::

    with tracing(h, read=[key], stop_at_layer=3) as res:
        h.model(**batch)                              # stopped after block 3, quietly
    res.values[key]

``replace={site: Replacement(positions, vectors)}`` overwrites the value there instead
(e.g. patching a clean hidden state into a corrupted run). ``positions`` may also be
``(batch, k)`` with ``vectors`` ``(batch, k, dim)`` for several tokens a row (``-1``:
none). At a site given both, the replacement comes first, then the addition.

Hooks are removed when the block exits, also on errors. A site that is both read and
added to records the value after the addition (what the rest of the model sees).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, NamedTuple

import torch

from corredit.models.adapters import LAYER_KINDS, ArchitectureAdapter, _as_layer

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from corredit.models.handle import ModelHandle

__all__ = ["Site", "Addition", "Replacement", "TraceResult", "StopForward", "trace", "tracing", "eval_mode"]

_IOS = ("input", "output")


class Site(NamedTuple):
    """A place to read or modify: ``kind`` (``"block"``, ``"mlp_in"``, ``"mlp_out"``,
    ``"mlp_gate"``, ``"attn_out"``), ``layer`` and ``io`` (``"input"``/``"output"``).
    ``Site("mlp_out", 3, "input")`` is the key of layer 3; ``Site("block", 3, "output")``
    the residual stream after block 3."""

    kind: str
    layer: int
    io: str


class Addition(NamedTuple):
    """Row ``b`` gets ``vectors[b]`` added at token ``positions[b]`` (``-1``: no addition
    in that row). ``positions``: LongTensor ``(batch,)``; ``vectors``: ``(batch, dim)``,
    may require grad."""

    positions: torch.Tensor
    vectors: torch.Tensor


class Replacement(NamedTuple):
    """Row ``b``'s value at token ``positions[b]`` becomes ``vectors[b]`` (``-1``: left
    alone); shapes as in :class:`Addition`."""

    positions: torch.Tensor
    vectors: torch.Tensor


@dataclass
class TraceResult:
    """What a traced forward pass recorded: ``values[site]`` -> ``(batch, seq, dim)``;
    ``logits`` (None when the pass stopped early or ran inside :func:`tracing`)."""

    values: dict[Site, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None

    def __getitem__(self, site: Site) -> torch.Tensor:
        return self.values[site]


class StopForward(Exception):
    """Raised by the hook after the last block needed; caught by :func:`trace` and
    :func:`tracing`."""


def _check_site(site: Site, adapter: ArchitectureAdapter, n_layers: int) -> Site:
    if not isinstance(site, tuple) or len(site) != 3:
        raise TypeError(f"expected Site(kind, layer, io), got {site!r}")
    site = Site(*site)
    if site.kind not in LAYER_KINDS:
        raise ValueError(f"unknown site kind {site.kind!r} in {site}; known: {', '.join(LAYER_KINDS)}")
    if site.io not in _IOS:
        raise ValueError(f"site io must be 'input' or 'output', got {site.io!r} in {site}")
    if site.kind == "mlp_gate" and adapter.mlp_gate is None:
        raise ValueError(f"{adapter.architecture} has no gated MLP; {site} does not exist")
    layer = _as_layer(site.kind, site.layer)
    if layer >= n_layers:
        raise IndexError(f"{site}: layer out of range for a model with {n_layers} layers")
    return Site(site.kind, layer, site.io)


def _first_tensor(value: Any, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    raise TypeError(f"cannot find the hidden-state tensor of {where} (got {type(value).__name__})")


def _replace_first(value: Any, new: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor):
        return new
    return (new, *value[1:]) if isinstance(value, tuple) else [new, *value[1:]]


def _apply_addition(x: torch.Tensor, addition: "Addition | Replacement", site: Site) -> torch.Tensor:
    positions, vectors = addition
    what = type(addition).__name__
    positions = torch.as_tensor(positions, device=x.device).long()
    batch, seq, dim = x.shape
    if positions.dim() == 2 and positions.shape[0] == batch:
        want = (batch, positions.shape[1], dim)
    else:
        if positions.shape != (batch,):
            raise ValueError(f"{what} at {site}: positions must have shape ({batch},) or ({batch}, k), "
                             f"got {tuple(positions.shape)}")
        want = (batch, dim)
    if tuple(vectors.shape) != want:
        raise ValueError(f"{what} at {site}: vectors must have shape {want}, got {tuple(vectors.shape)}")
    if bool(((positions < -1) | (positions >= seq)).any()):
        raise IndexError(f"{what} at {site}: positions {positions.tolist()} outside [-1, {seq})")
    vectors = vectors.to(device=x.device, dtype=x.dtype)
    if positions.dim() == 1:
        positions, vectors = positions[:, None], vectors[:, None]
    rows, cols = torch.nonzero(positions >= 0, as_tuple=True)
    if rows.numel() == 0:
        return x
    index, values = (rows, positions[rows, cols]), vectors[rows, cols]
    if isinstance(addition, Replacement):
        return x.index_put(index, values)
    return x + torch.zeros_like(x).index_put(index, values, accumulate=True)


def _resolve(target: "ModelHandle | nn.Module", adapter: ArchitectureAdapter | None):
    model = getattr(target, "model", target)
    if adapter is None:
        adapter = getattr(target, "adapter", None)
    if adapter is None:
        from corredit.models.adapters import get_adapter

        adapter = get_adapter(model)
    return model, adapter


@contextmanager
def tracing(
    target: "ModelHandle | nn.Module",
    read: Iterable[Site] = (),
    add: Mapping[Site, Addition] | None = None,
    stop_at_layer: int | None = None,
    *,
    keep_graph: bool = False,
    adapter: ArchitectureAdapter | None = None,
    replace: Mapping[Site, Replacement] | None = None,
) -> Iterator[TraceResult]:
    """Install read/add hooks (and the early stop) for the duration of a ``with`` block.

    ``target`` is a :class:`ModelHandle` or a bare model (adapter looked up). Values are
    detached copies unless ``keep_graph`` is True. A :class:`StopForward` raised by the
    stop hook ends the forward call and is swallowed at the end of the block.
    """
    model, adapter = _resolve(target, adapter)
    n_layers = adapter.n_layers(model)
    reads = {_check_site(s, adapter, n_layers) for s in read}
    adds = {_check_site(s, adapter, n_layers): a for s, a in (add or {}).items()}
    repls = {_check_site(s, adapter, n_layers): Replacement(*r) for s, r in (replace or {}).items()}
    if stop_at_layer is not None:
        stop_at_layer = _as_layer("stop_at_layer", stop_at_layer)
        if stop_at_layer >= n_layers:
            raise IndexError(f"stop_at_layer={stop_at_layer!r} out of range for {n_layers} layers")
        late = sorted(s for s in reads | set(adds) | set(repls) if s.layer > stop_at_layer)
        if late:
            raise ValueError(f"sites {late} lie after stop_at_layer={stop_at_layer} and would never run")

    result = TraceResult()

    def modify(site: Site, x: torch.Tensor) -> torch.Tensor:
        if site in repls:
            x = _apply_addition(x, repls[site], site)
        if site in adds:
            x = _apply_addition(x, adds[site], site)
        return x

    modified = set(adds) | set(repls)

    def record(site: Site, x: torch.Tensor) -> None:
        if site in reads:
            result.values[site] = x if keep_graph else x.detach().clone()

    def pre_hook(site: Site):
        def hook(module, args, kwargs):
            where = adapter.module_name(site.kind, site.layer)
            if args:
                x = _first_tensor(args[0], where)
                if site in modified:
                    x = modify(site, x)
                    args = (x, *args[1:])
            elif "hidden_states" in kwargs:
                x = _first_tensor(kwargs["hidden_states"], where)
                if site in modified:
                    x = modify(site, x)
                    kwargs = {**kwargs, "hidden_states": x}
            else:
                raise TypeError(f"cannot find the input tensor of {where}")
            record(site, x)
            return (args, kwargs) if site in modified else None

        return hook

    def post_hook(site: Site):
        def hook(module, args, kwargs, output):
            x = _first_tensor(output, adapter.module_name(site.kind, site.layer))
            if site in modified:
                x = modify(site, x)
                output = _replace_first(output, x)
            record(site, x)
            return output if site in modified else None

        return hook

    def stop_hook(module, args, output):
        raise StopForward()

    handles = []
    try:
        for site in sorted(reads | modified):
            module = adapter.module(model, site.kind, site.layer)
            if site.io == "input":
                handles.append(module.register_forward_pre_hook(pre_hook(site), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(post_hook(site), with_kwargs=True))
        if stop_at_layer is not None:
            # registered last, so the block's own read/add hooks run before it
            handles.append(adapter.module(model, "block", stop_at_layer).register_forward_hook(stop_hook))
        try:
            yield result
        except StopForward:
            pass
    finally:
        for handle in handles:
            handle.remove()


def trace(
    handle: "ModelHandle | nn.Module",
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    read: Iterable[Site] = (),
    add: Mapping[Site, Addition] | None = None,
    stop_at_layer: int | None = None,
    grad: bool = False,
    logit_positions: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    cache: Any = None,
    replace: Mapping[Site, Replacement] | None = None,
) -> TraceResult:
    """One forward pass of ``handle.model`` reading ``read`` sites and adding ``add``.

    ``stop_at_layer=L`` stops right after block ``L`` (``logits`` is then None).
    ``grad=True`` keeps the autograd graph (values and logits are differentiable in the
    addition vectors); otherwise the pass runs under ``torch.no_grad``. ``replace``
    overwrites values at its sites (see :class:`Replacement`).
    ``logit_positions`` (long, ``(batch, k)``): compute logits only there, so ``logits``
    is ``(batch, k, vocab)`` with ``logits[i, j]`` the logits at position
    ``logit_positions[i, j]`` of row ``i`` (the unembedding then costs k positions a row,
    not the whole sequence).

    ``cache`` (a Hugging Face ``Cache``, e.g. ``DynamicCache()``) runs the pass with the
    model's key/value cache: keys and values of earlier tokens already in ``cache`` are
    attended to, and this pass's are appended to it. ``attention_mask`` then covers the
    cached columns followed by ``input_ids``'; ``position_ids`` (``(batch, seq)``) gives
    each token's position (needed when rows do not start at column 0, e.g. left-padded
    prefixes). Positions in ``add`` and ``logit_positions`` index ``input_ids``' columns::

        kv = DynamicCache()
        trace(h, prefix, attention_mask=pm, position_ids=pp, cache=kv)      # fills kv
        res = trace(h, suffix, attention_mask=torch.cat([pm, sm], 1),
                    position_ids=sp, cache=kv, add={site: Addition(zeros, delta)}, grad=True)
    """
    model, adapter = _resolve(handle, None)
    device = getattr(handle, "device", None) or next(model.parameters()).device
    input_ids = input_ids.to(device)
    if attention_mask is not None:
        attention_mask = attention_mask.to(device)
    extra: dict[str, Any] = {"use_cache": cache is not None}
    if position_ids is not None:
        if tuple(position_ids.shape) != tuple(input_ids.shape):
            raise ValueError(f"position_ids must have the shape of input_ids {tuple(input_ids.shape)}, "
                             f"got {tuple(position_ids.shape)}")
        extra["position_ids"] = position_ids.to(device=device, dtype=torch.long)
    if cache is not None:
        extra[_cache_argument(model)] = cache
    hook = None
    if logit_positions is not None:
        if logit_positions.dim() != 2 or logit_positions.shape[0] != input_ids.shape[0]:
            raise ValueError(f"logit_positions must be (batch, k) with batch {input_ids.shape[0]}, "
                             f"got shape {tuple(logit_positions.shape)}")
        index = logit_positions.to(device=device, dtype=torch.long)

        def gather_positions(module, args):
            hidden = args[0]
            picked = hidden.gather(1, index[:, :, None].expand(-1, -1, hidden.shape[-1]))
            return (picked, *args[1:])

        hook = adapter.module(model, "unembed").register_forward_pre_hook(gather_positions)
    try:
        with torch.set_grad_enabled(grad), tracing(
            handle, read=read, add=add, stop_at_layer=stop_at_layer, keep_graph=grad, replace=replace
        ) as result:
            out = model(input_ids=input_ids, attention_mask=attention_mask, **extra)
            result.logits = out.logits
    finally:
        if hook is not None:
            hook.remove()
    return result


def _cache_argument(model: torch.nn.Module) -> str:
    """The keyword under which ``model.forward`` takes a key/value cache (``cache`` in
    recent transformers, ``past_key_values`` before)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``with eval_mode(model): ...`` runs in eval mode (no dropout) and restores the
    model's training flag afterwards, also on error."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
