"""Forward passes of the value optimisation: whole sequences at every step (the reference),
or the fixed prefix once and only the suffix at every step (incremental).

Usage::

    from corredit.editors.value_passes import FullPasses, PrefixPasses, build_rows
    rows = build_rows(h.tokenizer, units)                            # one row per (unit, prompt)
    passes = PrefixPasses(h, sites, rows, max_batch_tokens=16384)   # runs the prefixes
    for idx in passes.chunks(live_rows):
        logits, v = passes.forward(idx, delta, read=True, grad=True)
    passes.work            # {"forward": token-layers, "backward": token-layers}

A vector is added at one position of a row (the subject's last token). Every hidden state
at earlier positions, at every layer, is the same at every step, so :class:`PrefixPasses`
runs the tokens before that position once per row (keeping their attention keys and
values) and each step feeds only the rest of the row, attending to the cached prefix.
Rows of a chunk are laid out with their prefixes left-padded to end in the same column
and their suffixes right-padded; the attention mask hides the padding and explicit
position ids keep every token at its own position, so column offsets agree with position
offsets (what sliding-window attention measures). A KL row needs the logits of its first
suffix token only and is cut there. Both classes return the logits at each row's
``logit_pos`` (compact, ``(batch, k, vocab)``, ``k`` the most slots of a row in the batch)
and, with ``read``, the sites' values at the vector's position.

A batch holds rows with the same number of logit slots (so no logits are computed for
padding) and at most ``max_logit_elements`` logits: with a large vocabulary (Gemma-3's
262k words) the logits, not the blocks, set a step's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from corredit.editors.sequences import pack, prompt_ids, subject_position, target_ids, token_chunks

__all__ = ["ValueRows", "FullPasses", "PrefixPasses", "backward_layers", "prefix_cache_bytes",
           "kv_width", "build_rows", "logit_positions", "row_chunks", "vocab_size", "MAX_LOGIT_ELEMENTS"]

#: Default cap on the logits of one batch (rows x slots x vocabulary): 256 MiB in float32.
MAX_LOGIT_ELEMENTS = 1 << 26


@dataclass
class ValueRows:
    """The token rows of a value optimisation, one per (unit, prompt)."""

    ids: list[list[int]]
    pos: list[int]                  # where the unit's vector is added (subject's last token)
    unit: list[int]
    kind: list[int]                 # 0 = rewrite (NLL), 1 = KL prompt
    tgt_start: list[int]            # logits index predicting the first target token
    tgt: list[list[int]]
    bare_row: list[int]             # per unit: its first rewrite row
    n_nll: torch.Tensor             # per unit: number of rewrite rows
    n_kl: torch.Tensor              # per unit: number of KL rows
    logit_pos: torch.Tensor | None = None   # per row: positions whose logits the loss reads

    def end(self, i: int) -> int:
        """Tokens of row ``i`` that the loss depends on (a KL row ends at its vector)."""
        return self.pos[i] + 1 if self.kind[i] == 1 else len(self.ids[i])

    def slots(self, i: int) -> int:
        """Positions of row ``i`` whose logits the loss reads (see :func:`logit_positions`)."""
        return len(self.tgt[i]) if self.kind[i] == 0 else 1


def build_rows(tok, units: Sequence, *, logits: bool = True) -> ValueRows:
    """The rows of value units (:class:`~corredit.editors.values.ValueUnit`): each rewrite
    prompt followed by its target's tokens but the last, then each KL prompt; with
    ``logits``, the positions the loss reads (:func:`logit_positions`)."""
    r = ValueRows([], [], [], [], [], [], [], torch.zeros(len(units)), torch.zeros(len(units)))
    tcache: dict[str, list[int]] = {}
    for u_i, u in enumerate(units):
        if not u.rewrites:
            raise ValueError(f"case {u.case_id}: a value unit needs at least one rewrite prompt")
        r.bare_row.append(len(r.ids))
        for text, target in u.rewrites:
            p = prompt_ids(tok, text)
            if target not in tcache:
                tcache[target] = target_ids(tok, target)
            t = tcache[target]
            r.ids.append(p + t[:-1])
            r.pos.append(subject_position(tok, text, u.subject, case_id=u.case_id))
            r.unit.append(u_i)
            r.kind.append(0)
            r.tgt_start.append(len(p) - 1)
            r.tgt.append(t)
        for text in u.kl_prompts:
            p = prompt_ids(tok, text)
            pos = subject_position(tok, text, u.subject, case_id=u.case_id)
            r.ids.append(p)
            r.pos.append(pos)
            r.unit.append(u_i)
            r.kind.append(1)
            r.tgt_start.append(pos)
            r.tgt.append([])
        r.n_nll[u_i] = len(u.rewrites)
        r.n_kl[u_i] = len(u.kl_prompts)
    if logits:
        r.logit_pos = logit_positions(r)
    return r


def logit_positions(rows: ValueRows) -> torch.Tensor:
    """Per row (padded with 0), the positions whose logits the loss reads: every target
    token of a rewrite row, the subject position of a KL row. The loss indexes the compact
    logits ``trace`` returns for them: slot ``k`` of a rewrite row is its ``k``-th target
    token, slot 0 of a KL row its only position."""
    width = max([len(t) for t in rows.tgt] + [1])
    out = torch.zeros(len(rows.ids), width, dtype=torch.long)
    for i, start in enumerate(rows.tgt_start):
        n = rows.slots(i)
        out[i, :n] = torch.arange(start, start + n)
    return out


def row_chunks(rows: ValueRows, idx: Sequence[int], lengths: Sequence[int], *, max_tokens: int,
               max_logit_elements: int, vocab: int) -> list[list[int]]:
    """Rows ``idx`` (with their token ``lengths``) split into batches of rows with the same
    number of logit slots, each within ``max_tokens`` padded tokens (see
    :func:`~corredit.editors.sequences.token_chunks`) and ``max_logit_elements`` logits."""
    groups: dict[int, list[int]] = {}
    for j, i in enumerate(idx):
        groups.setdefault(rows.slots(i), []).append(j)
    out = []
    for k in sorted(groups):
        members = groups[k]
        cap = max(1, int(max_logit_elements) // (k * max(1, int(vocab))))
        for c in token_chunks([lengths[j] for j in members], max_tokens, max_rows=cap):
            out.append([idx[members[m]] for m in c])
    return out


def vocab_size(h) -> int:
    """Rows of the model's unembedding (the width of its logits)."""
    mod = h.adapter.module(h.model, "unembed")
    return int(getattr(mod, "out_features", None) or mod.weight.shape[0])


def _slot_cut(rows: ValueRows, idx: list[int]) -> torch.Tensor:
    """``logit_pos`` of rows ``idx``, cut to the most slots any of them needs."""
    k = max(rows.slots(i) for i in idx)
    return rows.logit_pos[torch.tensor(idx, dtype=torch.long), :k]


def backward_layers(h, sites: Sequence) -> int:
    """Blocks a gradient passes through from the logits back to the lowest site."""
    return h.n_layers - min(s.layer for s in sites)


class FullPasses:
    """Every step runs each row whole, right-padded (the reference procedure)."""

    def __init__(self, h, sites: Sequence, rows: ValueRows, *, max_batch_tokens: int,
                 max_logit_elements: int = MAX_LOGIT_ELEMENTS) -> None:
        self.h, self.sites, self.rows = h, tuple(sites), rows
        self.max_batch_tokens = int(max_batch_tokens)
        self.max_logit_elements = int(max_logit_elements)
        self.vocab = vocab_size(h)
        self.model_dtype = next(h.model.parameters()).dtype
        self.work = {"forward": 0, "backward": 0}
        self._bwd_layers = backward_layers(h, self.sites)

    def chunks(self, live: Sequence[int]) -> list[list[int]]:
        """Row indices of ``live``, split into the batches of one step."""
        live = list(live)
        return self._split(live, [len(self.rows.ids[i]) for i in live])

    def _split(self, idx: list[int], lengths: list[int]) -> list[list[int]]:
        return row_chunks(self.rows, idx, lengths, max_tokens=self.max_batch_tokens,
                          max_logit_elements=self.max_logit_elements, vocab=self.vocab)

    def _additions(self, idx: list[int], vectors: torch.Tensor | None, positions: torch.Tensor):
        from corredit.models import Addition

        if vectors is None:
            return {}
        unit = torch.tensor([self.rows.unit[i] for i in idx], dtype=torch.long, device=vectors.device)
        return {s: Addition(positions, vectors[unit, j].to(self.model_dtype))
                for j, s in enumerate(self.sites)}

    def _count(self, tokens: int, grad: bool) -> None:
        self.work["forward"] += tokens * self.h.n_layers
        if grad:
            self.work["backward"] += tokens * self._bwd_layers

    def forward(self, idx: list[int], vectors: torch.Tensor | None, *, read: bool = False,
                grad: bool = False) -> tuple[torch.Tensor, dict | None]:
        """Logits at the rows' ``logit_pos`` and (``read``) the sites' values at the
        vectors' positions, ``{site: (batch, d)}``; ``vectors`` (n_units, n_sites, d) are
        added at each row's position."""
        from corredit.models import trace

        rows = self.rows
        batch = pack([rows.ids[i] for i in idx], pad_id=self.h.tokenizer.pad_token_id, device=self.h.device)
        pos = torch.tensor([rows.pos[i] for i in idx], dtype=torch.long, device=batch.input_ids.device)
        res = trace(self.h, batch.input_ids, attention_mask=batch.attention_mask,
                    read=list(self.sites) if read else [], add=self._additions(idx, vectors, pos),
                    grad=grad, logit_positions=_slot_cut(rows, idx))
        self._count(batch.input_ids.numel(), grad)
        values = None
        if read:
            ar = torch.arange(len(idx), device=pos.device)
            values = {s: res.values[s][ar, pos] for s in self.sites}
        return res.logits, values


@dataclass
class _Chunk:
    rows: list[int]
    pre_len: torch.Tensor           # (b,) real prefix tokens per row
    pre_mask: torch.Tensor          # (b, P) left-padded
    kv: list[tuple[torch.Tensor, torch.Tensor]]   # per layer (b, heads, P, head_dim)
    ids: torch.Tensor               # (b, S) suffix tokens, right-padded
    mask: torch.Tensor              # (b, S)
    suf_len: torch.Tensor           # (b,)


class PrefixPasses(FullPasses):
    """Prefixes run once (at construction); every step runs the suffixes on the cached
    keys and values (see module docstring). Chunks are fixed at construction; a step's
    batch is the live rows of one chunk."""

    def __init__(self, h, sites: Sequence, rows: ValueRows, *, max_batch_tokens: int,
                 max_logit_elements: int = MAX_LOGIT_ELEMENTS) -> None:
        super().__init__(h, sites, rows, max_batch_tokens=max_batch_tokens,
                         max_logit_elements=max_logit_elements)
        suffix = [rows.end(i) - rows.pos[i] for i in range(len(rows.ids))]
        self._chunks = [self._build(c) for c in self._split(list(range(len(rows.ids))), suffix)]
        self._where = {i: (c, j) for c, ch in enumerate(self._chunks) for j, i in enumerate(ch.rows)}

    def chunks(self, live: Sequence[int]) -> list[list[int]]:
        keep = set(live)
        out = [[i for i in ch.rows if i in keep] for ch in self._chunks]
        return [c for c in out if c]

    @torch.no_grad()
    def _build(self, idx: list[int]) -> _Chunk:
        rows, dev = self.rows, self.h.device
        pad = int(self.h.tokenizer.pad_token_id)
        pre = [rows.ids[i][: rows.pos[i]] for i in idx]
        suf = [rows.ids[i][rows.pos[i]: rows.end(i)] for i in idx]
        b, width = len(idx), max(len(p) for p in pre)
        pre_ids = torch.full((b, width), pad, dtype=torch.long)
        pre_pos = torch.zeros((b, width), dtype=torch.long)
        pre_mask = torch.zeros((b, width), dtype=torch.long)
        for r, p in enumerate(pre):
            if p:
                pre_ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
                pre_pos[r, width - len(p):] = torch.arange(len(p))
                pre_mask[r, width - len(p):] = 1
        packed = pack(suf, pad_id=pad, device=dev)
        kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        if width:
            step = max(1, self.max_batch_tokens // width)       # prefix rows per pass
            parts = [self._prefix_kv(pre_ids[a:a + step], pre_mask[a:a + step], pre_pos[a:a + step])
                     for a in range(0, b, step)]
            kv = [(torch.cat([p[l][0] for p in parts]), torch.cat([p[l][1] for p in parts]))
                  for l in range(len(parts[0]))] if len(parts) > 1 else parts[0]
        return _Chunk(list(idx), torch.tensor([len(p) for p in pre]), pre_mask.to(dev), kv,
                      packed.input_ids, packed.attention_mask, packed.lengths.cpu())

    def _prefix_kv(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of every layer for left-padded prefixes (one pass, no grad)."""
        from transformers import DynamicCache

        from corredit.models import trace

        cache = DynamicCache()
        trace(self.h, ids, attention_mask=mask, position_ids=pos, cache=cache,
              logit_positions=torch.zeros((ids.shape[0], 1), dtype=torch.long))
        self._count(ids.numel(), False)
        keep = mask.to(self.h.device).bool()[:, None, :, None]
        # padding columns are never attended to; zeroing them keeps them finite
        return [(layer.keys.masked_fill(~keep, 0), layer.values.masked_fill(~keep, 0))
                for layer in cache.layers]

    def forward(self, idx: list[int], vectors: torch.Tensor | None, *, read: bool = False,
                grad: bool = False) -> tuple[torch.Tensor, dict | None]:
        from corredit.models import trace

        c = self._where[idx[0]][0]
        ch = self._chunks[c]
        slots = [self._where[i][1] for i in idx]
        if any(self._where[i][0] != c for i in idx):
            raise ValueError("PrefixPasses.forward: rows of one batch must come from one chunk")
        pre_len, suf_len = ch.pre_len[slots], ch.suf_len[slots]
        width, s_width = int(pre_len.max()), int(suf_len.max())
        cut = ch.pre_mask.shape[1] - width            # leading columns that are padding in every row
        sel = None if len(slots) == len(ch.rows) else torch.tensor(slots, device=ch.ids.device)

        def rows_of(x: torch.Tensor) -> torch.Tensor:
            return x if sel is None else x.index_select(0, sel)

        pre_mask = rows_of(ch.pre_mask)[:, cut:]
        ids, mask = rows_of(ch.ids)[:, :s_width], rows_of(ch.mask)[:, :s_width]
        position = pre_len.to(ids.device)[:, None] + torch.arange(s_width, device=ids.device)
        cache = None
        if width:
            from transformers import DynamicCache

            cache = DynamicCache(ddp_cache_data=[(rows_of(k)[:, :, cut:], rows_of(v)[:, :, cut:])
                                                 for k, v in ch.kv])
        rows = self.rows
        zero = torch.zeros(len(idx), dtype=torch.long, device=ids.device)
        start = torch.tensor([rows.pos[i] for i in idx], dtype=torch.long)
        logit_pos = (_slot_cut(rows, idx) - start[:, None]).clamp(min=0)
        res = trace(self.h, ids, attention_mask=torch.cat([pre_mask, mask], 1), position_ids=position,
                    cache=cache, read=list(self.sites) if read else [],
                    add=self._additions(idx, vectors, zero), grad=grad, logit_positions=logit_pos)
        self._count(ids.numel(), grad)
        values = {s: res.values[s][:, 0] for s in self.sites} if read else None
        return res.logits, values


def kv_width(h) -> int:
    """Width of one token's attention keys (= values) per layer, from the model's config
    (key/value heads x head size); the hidden width when the config does not say."""
    cfg = getattr(h.model, "config", None)
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None)
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or (h.hidden_size // heads if heads else None)
    return int(kv_heads * head_dim) if kv_heads and head_dim else h.hidden_size


def prefix_cache_bytes(h, rows: ValueRows) -> int:
    """Estimated memory of the cached prefixes of ``rows`` (keys and values of every
    layer)."""
    itemsize = torch.finfo(next(h.model.parameters()).dtype).bits // 8
    return sum(rows.pos) * h.n_layers * 2 * kv_width(h) * itemsize

