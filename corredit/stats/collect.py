"""One pass over a corpus collecting the MLP-key second moment of several layers.

Usage::

    from corredit.stats import second_moments, TextsCorpus
    mom = second_moments(h, layers=[2, 3], corpus=TextsCorpus(texts), max_tokens=20000)
    mom[3].matrix()                      # float64 (d_k, d_k)

Every batch runs the model once, multiplying the input of ``mlp_out`` (the key) of every
requested layer where it is made and stopping at the highest one's key; the keys of
non-padding tokens are added with one matrix product per layer (only its upper block
triangle is computed, and mirrored at the end), in float64 or, with
``precision="mixed"``, in float32 partial sums flushed into float64 with a stated error
bound (see :mod:`corredit.stats.products`). The budget
``max_tokens`` counts non-padding tokens and is met exactly: the last batch is cut
token by token in corpus order. Documents are truncated to ``max_length`` tokens.

:func:`accumulate` is the resumable form: it starts from a :class:`StatsState` and
hands a copy of its state to ``on_checkpoint`` every few batches (with ``"mixed"``, at the
first flush of the partial sums after that); continuing from such a state gives bit for
bit the result of an uninterrupted run (same batches, same order).
"""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from corredit.models.tracing import eval_mode

from corredit.stats.corpus import Corpus
from corredit.stats.moment import SecondMoment
from corredit.stats.products import DEFAULT_FLUSH_TOKENS, PRECISIONS, KeyProducts, add_upper, symmetrize

__all__ = [
    "second_moments",
    "accumulate",
    "StatsState",
    "TokenBatch",
    "iter_token_batches",
    "context_length",
    "add_upper",
    "PRECISIONS",
    "symmetrize",
]


@dataclass
class TokenBatch:
    """Right-padded token ids of consecutive documents (CPU tensors)."""

    input_ids: torch.Tensor        # (batch, seq) long
    attention_mask: torch.Tensor   # (batch, seq) long, 1 = real token
    n_documents: int               # documents of the corpus consumed by this batch
    n_tokens: int                  # non-padding tokens


@dataclass
class StatsState:
    """Progress of a statistics pass: partial sums and how much of the corpus they cover."""

    moments: dict[int, SecondMoment]
    documents: int = 0
    tokens: int = 0
    finished: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> "StatsState":
        """A CPU copy (what checkpoints persist)."""
        return StatsState({l: m.copy() for l, m in self.moments.items()}, self.documents,
                          self.tokens, self.finished, dict(self.meta))


def context_length(h: Any) -> int | None:
    """The model's maximum sequence length, when its config declares one."""
    cfg = getattr(h.model, "config", None)
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _check_layers(h: Any, layers: Iterable[int]) -> list[int]:
    out = sorted({int(l) for l in layers})
    if not out:
        raise ValueError("second_moments: no layers requested")
    bad = [l for l in out if not 0 <= l < h.n_layers]
    if bad:
        raise ValueError(f"second_moments: layers {bad} out of range for a model with "
                         f"{h.n_layers} layers")
    return out


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def iter_token_batches(tokenizer: Any, corpus: Corpus, *, batch_size: int = 16,
                       max_length: int | None = 128, max_tokens: int | None = None,
                       start_document: int = 0, start_tokens: int = 0) -> Iterator[TokenBatch]:
    """Batches of ``batch_size`` consecutive documents, tokenized (with the tokenizer's
    special tokens), truncated to ``max_length`` and right-padded. With ``max_tokens``
    the stream stops once ``start_tokens`` plus the tokens yielded reach the budget,
    cutting the last documents as needed. A batch whose documents all tokenize to
    nothing is yielded with zero tokens (so document counts stay exact)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    tokens = start_tokens
    docs = corpus.documents(start_document)
    while max_tokens is None or tokens < max_tokens:
        chunk = list(itertools.islice(docs, batch_size))
        if not chunk:
            return
        kw: dict[str, Any] = {"add_special_tokens": True}
        if max_length is not None:
            kw.update(truncation=True, max_length=max_length)
        rows = [list(r) for r in tokenizer(chunk, **kw)["input_ids"]]
        used = len(chunk)
        if max_tokens is not None and tokens + sum(len(r) for r in rows) > max_tokens:
            left = max_tokens - tokens
            cut = []
            for r in rows:
                cut.append(r[:left])
                left -= len(cut[-1])
                if left == 0:
                    break
            rows, used = cut, len(cut)  # the budget ends inside document ``used``
        rows = [r for r in rows if r]
        n = sum(len(r) for r in rows)
        tokens += n
        if not rows:
            empty = torch.zeros((0, 0), dtype=torch.long)
            yield TokenBatch(empty, empty, used, 0)
            continue
        ids, mask = _pad(rows, pad_id)
        yield TokenBatch(ids, mask, used, n)


def _sync(device: Any) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class _Accumulator:
    """Adds one batch's keys at every requested layer (see :class:`KeyProducts`) and
    keeps the state's document and token counts."""

    def __init__(self, h: Any, layers: list[int], blocks: int | None = None,
                 precision: str = "float64", flush_tokens: int | None = None) -> None:
        self.h = h
        self.products = KeyProducts(h, layers, blocks, precision, flush_tokens)

    @property
    def clean(self) -> bool:
        """No partial sums pending: the state is complete as it stands."""
        return self.products.clean

    def add(self, state: StatsState, batch: TokenBatch) -> None:
        if batch.n_tokens:
            ids = batch.input_ids.to(self.h.device, non_blocking=True)
            mask = batch.attention_mask.to(self.h.device, non_blocking=True)
            self.products.run(state, ids, mask, batch.n_tokens)
        state.documents += batch.n_documents
        state.tokens += batch.n_tokens

    def finish(self, state: StatsState) -> None:
        self.products.flush(state)


def accumulate(h: Any, layers: Iterable[int], corpus: Corpus, *,
               max_tokens: int | None = None, batch_size: int = 16,
               max_length: int | None = 128, state: StatsState | None = None,
               on_checkpoint: Callable[[StatsState], None] | None = None,
               checkpoint_every: int | None = None, checkpoint_seconds: float = 300.0,
               progress: bool = False, blocks: int | None = None,
               precision: str = "float64", flush_tokens: int | None = None) -> StatsState:
    """Run (or continue) a statistics pass; returns the final :class:`StatsState` (sums
    on the CPU and symmetric, ``finished=True``). ``on_checkpoint`` receives a CPU copy
    of the state every ``checkpoint_every`` batches (or, when that is None, every
    ``checkpoint_seconds``); until the pass finishes only the upper triangle of its sums
    is meaningful, and a state passed back in continues from that. ``blocks``: see
    :func:`add_upper` (default :func:`default_blocks`); ``precision`` and
    ``flush_tokens``: see :mod:`corredit.stats.products`."""
    layers = _check_layers(h, layers)
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if state is None:
        state = StatsState({l: SecondMoment.zeros(h.key_size, layer=l) for l in layers})
    missing = [l for l in layers if l not in state.moments]
    if missing:
        raise ValueError(f"resumed statistics state lacks layers {missing}")
    state.moments = {l: state.moments[l].to(h.device) for l in layers}
    acc = _Accumulator(h, layers, blocks, precision, flush_tokens)
    batches = iter_token_batches(h.tokenizer, corpus, batch_size=batch_size,
                                 max_length=max_length, max_tokens=max_tokens,
                                 start_document=state.documents, start_tokens=state.tokens)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_tokens, initial=state.tokens, unit="tok", desc="second moments")
    last = time.monotonic()
    due = False
    with eval_mode(h.model), torch.no_grad():
        for i, batch in enumerate(batches, 1):
            acc.add(state, batch)
            if bar is not None:
                bar.update(batch.n_tokens)
            if on_checkpoint is None:
                continue
            due = due or ((i % checkpoint_every == 0) if checkpoint_every else (
                time.monotonic() - last >= checkpoint_seconds))
            if due and acc.clean:           # partial sums are flushed where the run would
                on_checkpoint(state.copy())
                last = time.monotonic()
                due = False
        acc.finish(state)
    if bar is not None:
        bar.close()
    if max_tokens is not None and state.tokens < max_tokens:
        warnings.warn(f"corpus {corpus.identity!r} ran out after {state.tokens} tokens, "
                      f"below the budget of {max_tokens}", stacklevel=2)
    state.finished = True
    for m in state.moments.values():
        m.sum = symmetrize(m.sum).to("cpu")
    return state


def second_moments(h: Any, layers: Iterable[int], corpus: Corpus, *,
                   max_tokens: int | None = None, batch_size: int = 16,
                   max_length: int | None = 128, progress: bool = False,
                   blocks: int | None = None, precision: str = "float64",
                   flush_tokens: int | None = None) -> dict[int, SecondMoment]:
    """``{layer: SecondMoment}`` over ``corpus`` in a single pass (see module doc).
    Each moment's ``provenance`` records model, corpus, budget and token count (but not
    the weights hash, which :class:`~corredit.stats.StatsCache` adds)."""
    state = accumulate(h, layers, corpus, max_tokens=max_tokens, batch_size=batch_size,
                       max_length=max_length, progress=progress, blocks=blocks,
                       precision=precision, flush_tokens=flush_tokens)
    return finalize(h, state, corpus, max_tokens=max_tokens, max_length=max_length,
                    batch_size=batch_size, precision=precision, flush_tokens=flush_tokens)


def finalize(h: Any, state: StatsState, corpus: Corpus, *, max_tokens: int | None,
             max_length: int | None, batch_size: int, precision: str = "float64",
             flush_tokens: int | None = None, extra: dict[str, Any] | None = None
             ) -> dict[int, SecondMoment]:
    """Attach provenance to the moments of a finished state (``"mixed"`` also records
    its ``flush_tokens``)."""
    if precision == "mixed":
        extra = {"flush_tokens": flush_tokens or DEFAULT_FLUSH_TOKENS, **(extra or {})}
    out = {}
    for layer, m in state.moments.items():
        m.layer = layer
        m.provenance = {
            "model": h.name,
            "layer": layer,
            "site": f"mlp_out.{layer}.input",
            "module": _param_module(h, layer),
            "corpus": corpus.identity,
            "max_tokens": max_tokens,
            "max_length": max_length,
            "batch_size": batch_size,
            "tokens": m.count,
            "documents": state.documents,
            "dtype": precision,
            **(extra or {}),
        }
        out[layer] = m
    return out


def _param_module(h: Any, layer: int) -> str | None:
    try:
        name = h.adapter.param_name("mlp_out", layer)
    except Exception:  # an adapter without parameter names still yields statistics
        return None
    return name[: -len(".weight")] if name.endswith(".weight") else name
