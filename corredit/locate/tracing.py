"""Causal tracing: where in the network does the model recall a fact?

Usage::

    from corredit.locate import trace
    rows = trace(h, requests, kind="mlp", window=10, samples=10, seed=0)
    rows.query("case_id == '174'").pivot(index="position", columns="layer", values="effect")

For each request the subject's token embeddings are corrupted with Gaussian noise
(``noise``; default 3 × the standard deviation of the model's subject-token embeddings,
:func:`embedding_noise_level`), and the clean value of one (token, layer) is restored:
the residual stream after the block (``kind="hidden"``), or the MLP / attention output
of the ``window`` layers around the layer (``"mlp"`` / ``"attn"``). The indirect effect
is ``p_restored - p_corrupted`` of the true object's first token at the prompt's last
position, each probability averaged over ``samples`` noise draws. The same noise draws
serve every cell of one request, so the grid's cells differ only in what is restored.
A request's whole grid runs in ``ceil(tokens × layers × samples / batch_size)`` passes
(tokens before the subject, which the noise cannot reach, are not run: their effect is 0).
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from corredit.models.subject import prompt_token_ids, subject_token_index
from corredit.models.targets import encode_target
from corredit.models.tracing import Addition, Replacement, Site, eval_mode
from corredit.models.tracing import trace as run_trace

__all__ = ["KINDS", "trace", "embedding_noise_level", "subject_span", "window_layers",
           "patched_probabilities", "subject_keys"]

#: What is restored: the residual stream, or the MLP / attention output over a window.
KINDS: tuple[str, ...] = ("hidden", "mlp", "attn")
_SITE_KIND = {"hidden": "block", "mlp": "mlp_out", "attn": "attn_out"}
_NOISE_FACTOR = 3.0


def subject_span(tokenizer: Any, prompt_text: str, subject: str) -> tuple[int, int]:
    """``(first, stop)``: the subject's token positions in :func:`prompt_token_ids`
    (``stop`` exclusive; the last occurrence of the subject)."""
    last = subject_token_index(tokenizer, prompt_text, subject)
    start = prompt_text.rfind(subject.strip())
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(prompt_text, return_offsets_mapping=True, return_special_tokens_mask=True)
        first = next(i for i, ((s, e), sp) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"]))
                     if not sp and e > s and e > start)
    else:
        full = prompt_token_ids(tokenizer, prompt_text)
        plain = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        lead = len(full) - len(plain)
        head = prompt_text[:start].rstrip()
        first = lead + (len(tokenizer(head, add_special_tokens=False)["input_ids"]) if head else 0)
    return min(first, last), last + 1


def window_layers(layer: int, window: int, n_layers: int) -> list[int]:
    """The layers restored around ``layer``: ``window`` of them (``layer - window // 2``
    up to ``layer + ceil(window / 2) - 1``), clipped to the model; ``window <= 1``: itself."""
    if window <= 1:
        return [layer]
    return list(range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2))))


def _texts(requests: Sequence[Any]) -> list[str]:
    return [r.prompt.format(r.subject) for r in requests]


@torch.no_grad()
def embedding_noise_level(h: Any, requests: Sequence[Any], factor: float = _NOISE_FACTOR) -> float:
    """``factor`` × the standard deviation of the input embeddings of the subjects'
    tokens (as they occur in the requests' prompts; every element pooled)."""
    emb = h.model.get_input_embeddings()
    ids: list[int] = []
    for r, text in zip(requests, _texts(requests)):
        first, stop = subject_span(h.tokenizer, text, r.subject)
        ids += prompt_token_ids(h.tokenizer, text)[first:stop]
    if not ids:
        raise ValueError("no subject tokens to measure the embedding spread on")
    vectors = emb(torch.as_tensor(ids, device=h.device)).float()
    return float(factor * vectors.std().item())


def _site_count(h: Any) -> int:
    return h.adapter.n_layers(h.model)


@torch.no_grad()
def patched_probabilities(h: Any, ids: Sequence[int], span: tuple[int, int], target: int,
                          noise: torch.Tensor, cells: Sequence[tuple[Sequence[int], Sequence[int]]],
                          kind: str = "hidden", *, batch_size: int = 256) -> tuple[np.ndarray, float]:
    """Probability of token ``target`` after ``ids`` in the corrupted run with each cell's
    clean values restored, averaged over the noise draws: ``(probs (n_cells,), p_clean)``.

    ``noise``: ``(samples, stop - first, hidden)``, added to the embeddings of ``span``.
    A cell ``(tokens, layers)`` restores the ``kind`` value at every token and layer
    listed (``([], [])``: the corrupted run itself).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown trace kind {kind!r}; known: {', '.join(KINDS)}")
    first, stop = span
    samples, width = noise.shape[0], stop - first
    if noise.shape[1] != width:
        raise ValueError(f"noise covers {noise.shape[1]} tokens, the subject {width}")
    device, n_layers, seq = h.device, _site_count(h), len(ids)
    layers = sorted({l for _, ls in cells for l in ls})
    sites = {l: Site(_SITE_KIND[kind], l, "output") for l in layers}
    row = torch.as_tensor(list(ids), device=device)[None]
    clean = run_trace(h, row, torch.ones_like(row), read=list(sites.values()),
                      logit_positions=torch.tensor([[seq - 1]]))
    p_clean = float(torch.softmax(clean.logits[0, -1].float(), -1)[target])
    if any(l >= n_layers for l in layers):
        raise IndexError(f"layers {layers} out of range for {n_layers} layers")
    k = max([len(t) for t, _ in cells] + [1])
    pos = torch.full((len(cells), n_layers, k), -1, dtype=torch.long)
    for c, (tokens, ls) in enumerate(cells):
        for l in ls:
            pos[c, l, :len(tokens)] = torch.as_tensor(list(tokens), dtype=torch.long)
    # rows: cell-major, samples inner
    cell_of = torch.arange(len(cells)).repeat_interleave(samples)
    sample_of = torch.arange(samples).repeat(len(cells))
    subj = torch.arange(first, stop)
    probs = torch.empty(len(cell_of), dtype=torch.float64)
    for s in range(0, len(cell_of), batch_size):
        cs, ss = cell_of[s:s + batch_size], sample_of[s:s + batch_size]
        b = len(cs)
        add = {Site("block", 0, "input"): Addition(subj.expand(b, -1).to(device), noise[ss].to(device))}
        replace = {}
        for l, site in sites.items():
            p = pos[cs, l]                                              # (b, k)
            if bool((p >= 0).any()):
                vec = clean.values[site][0][p.clamp(min=0)]              # (b, k, d)
                replace[site] = Replacement(p.to(device), vec)
        out = run_trace(h, row.expand(b, -1), torch.ones(b, seq, dtype=torch.long, device=device),
                        add=add, replace=replace, logit_positions=torch.full((b, 1), seq - 1))
        probs[s:s + b] = torch.softmax(out.logits[:, -1].float(), -1)[:, target].double().cpu()
    return probs.view(len(cells), samples).mean(1).numpy(), p_clean


def _noise(seed: int, key: str, shape: tuple[int, ...], level: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}".encode()))
    return level * torch.randn(shape, generator=gen)


def trace(h: Any, requests: Sequence[Any], *, kind: str = "hidden", window: int = 10,
          noise: float | None = None, samples: int = 10, seed: int = 0,
          batch_size: int = 256, progress: Any = None) -> pd.DataFrame:
    """Indirect effect of every (token, layer) of every request: one tidy row per cell.

    Columns: ``case_id, subject, relation_id, kind, window, position, token, layer,
    p_restored, p_clean, p_corrupted, effect`` (indirect), ``total`` (``p_clean -
    p_corrupted``), ``subject_first``, ``subject_last``, ``n_tokens``, ``noise``,
    ``samples``. ``window`` matters for ``mlp`` / ``attn`` only. Noise draws are seeded
    by ``seed`` and the case id. ``progress(done, total)`` is called after each request.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown trace kind {kind!r}; known: {', '.join(KINDS)}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    requests = list(requests)
    level = embedding_noise_level(h, requests) if noise is None else float(noise)
    tok, n_layers = h.tokenizer, _site_count(h)
    hidden = h.model.get_input_embeddings().weight.shape[1]
    frames = []
    with eval_mode(h.model):
        for i, r in enumerate(requests):
            if r.target_true is None:
                raise ValueError(f"request {r.case_id}: no true object to trace")
            text = r.prompt.format(r.subject)
            ids = prompt_token_ids(tok, text)
            first, stop = subject_span(tok, text, r.subject)
            target = encode_target(tok, r.target_true)[0]
            eps = _noise(seed, str(r.case_id), (samples, stop - first, hidden), level)
            grid = [(t, l) for t in range(len(ids)) for l in range(n_layers)]
            # tokens before the subject are not corrupted: restoring them changes nothing
            run = [(t, l) for t, l in grid if t >= first]
            cells = [([], [])] + [([t], [l] if kind == "hidden" else window_layers(l, window, n_layers))
                                  for t, l in run]
            ran, p_clean = patched_probabilities(h, ids, (first, stop), target, eps, cells, kind,
                                                 batch_size=batch_size)
            p_corr = float(ran[0])
            probs = np.concatenate([[p_corr], np.full(len(grid) - len(run), p_corr), ran[1:]])
            frames.append(pd.DataFrame({
                "case_id": str(r.case_id), "subject": r.subject, "relation_id": r.relation_id,
                "kind": kind, "window": int(window) if kind != "hidden" else 1,
                "position": [t for t, _ in grid],
                "token": [tok.decode([ids[t]]) for t, _ in grid],
                "layer": [l for _, l in grid], "p_restored": probs[1:],
                "p_clean": p_clean, "p_corrupted": p_corr, "effect": probs[1:] - p_corr,
                "total": p_clean - p_corr, "subject_first": first, "subject_last": stop - 1,
                "n_tokens": len(ids), "noise": level, "samples": samples,
            }))
            if progress is not None:
                progress(i + 1, len(requests))
    if not frames:
        return pd.DataFrame(columns=["case_id", "kind", "position", "layer", "effect"])
    return pd.concat(frames, ignore_index=True)


@torch.no_grad()
def subject_keys(h: Any, requests: Sequence[Any], layer: int, *, batch_size: int = 64) -> np.ndarray:
    """The MLP key (input of layer ``layer``'s output projection) at each request's last
    subject token, on the bare prompt: ``(n, d_k)`` float array."""
    tok = h.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    site = Site("mlp_out", layer, "input")
    out = []
    with eval_mode(h.model):
        for s in range(0, len(requests), batch_size):
            part = requests[s:s + batch_size]
            texts = _texts(part)
            rows = [prompt_token_ids(tok, t) for t in texts]
            idx = [subject_token_index(tok, t, r.subject) for t, r in zip(texts, part)]
            width = max(len(x) for x in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, x in enumerate(rows):
                ids[j, :len(x)], mask[j, :len(x)] = torch.as_tensor(x), 1
            res = run_trace(h, ids, mask, read=[site], stop_at_layer=layer)
            out.append(res.values[site][torch.arange(len(rows)), torch.as_tensor(idx)].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))
