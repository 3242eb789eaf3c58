"""KN (knowledge neurons): integrated-gradients attribution over MLP neurons, then the
selected neurons' value vectors are rewritten.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("kn")({"adaptive_threshold": 0.2, "steps": 20})
    res = ed.apply(h, requests, seed=0)          # no statistics needed; needs target_true
    res.diagnostics["neurons"][0]                # [(layer, neuron), ...] of the first fact
    scores = attribution_scores(h, ["The mother tongue of X is"], ["French"])   # (L, d_k) each

A neuron is a coordinate of an MLP key (the input of ``W_out``). Its attribution for a
prompt is the integrated gradient of the old answer's probability at the prompt's last
token when that neuron's activation is scaled from 0 to its value in ``steps`` points
(``linspace(0, 1, steps)``, Riemann sum ``a * sum(grad) / steps``), averaged over the
answer's tokens. Per prompt the neurons above ``adaptive_threshold`` times the largest
attribution (over all layers) are kept; with ``refine`` only those kept by more than
``p`` times the number of prompts (the rewrite prompt and up to ``n_prompts - 1``
paraphrases) remain. Editing adds to each selected neuron's value vector (its column of
``W_out``) the new answer's word embedding and subtracts the old one's: ``scale`` times
the embedding for a one-token answer, ``scale / 2`` times each token's for longer ones;
with ``activation_sign`` (corredit's default) the change is multiplied by the sign of the
neuron's activation at the rewrite prompt's last token, so that it pushes toward the new
answer also where the activation is negative (half of a gated MLP's neurons).
The attribution runs each prompt's earlier tokens once (keys and values cached) and feeds
only the last token for the ``L x steps`` scaled copies.

Reference facts (EasyEdit's ``knowledge_neurons``): all layers; 20 steps; threshold 0.2;
``p`` 0.4 with ``refine`` off and the rewrite prompt only (``{"refine": false,
"n_prompts": 1}``); the old answer is the model's greedy completion of the rewrite prompt
(``erase="argmax"``), one token per new-target token; the added vectors are the input
word embeddings, twice the embedding for a one-token answer and once per token
otherwise. For answers of several tokens the reference extends the prompt by the model's
greedy tokens while it scores the true ones (``continuation="argmax"``); corredit's
default scores them teacher forced (``"target"``). ``embedding="output"`` uses the
unembedding rows instead (the same vectors where the model ties them). The reference's
settings: ``{"refine": false, "n_prompts": 1, "continuation": "argmax",
"activation_sign": false}``.

Facts of a batch are attributed on the model as the call finds it; their changes add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from corredit.editors.base import Editor, register_editor
from corredit.editors.hparams import HParams
from corredit.editors.sequences import pack, prompt_ids, target_ids, token_chunks
from corredit.editors.values import frozen_parameters
from corredit.models import Site, trace
from corredit.models.tracing import Replacement

__all__ = ["KNHParams", "KnowledgeNeurons", "attribution_scores", "select_neurons",
           "greedy_tokens"]

CONTINUATIONS = ("target", "argmax")
ERASE = ("argmax", "true", "none")
EMBEDDINGS = ("input", "output")


@dataclass(frozen=True)
class KNHParams(HParams):
    """Knowledge-neuron attribution and rewriting (see the module docstring).
    ``layers=()`` attributes every layer."""

    layers: tuple[int, ...] = ()
    steps: int = 20
    adaptive_threshold: float = 0.2
    refine: bool = True
    n_prompts: int = 3
    p: float = 0.4
    continuation: str = "target"
    erase: str = "argmax"
    scale: float = 2.0
    embedding: str = "input"
    activation_sign: bool = True

    def validate(self, *, where: str = "") -> None:
        tag = where or "KNHParams"
        for name, value, known in (("continuation", self.continuation, CONTINUATIONS),
                                   ("erase", self.erase, ERASE),
                                   ("embedding", self.embedding, EMBEDDINGS)):
            if value not in known:
                raise ValueError(f"{tag}: {name} must be one of {', '.join(known)}, got {value!r}")
        if self.steps < 2 or self.n_prompts < 1:
            raise ValueError(f"{tag}: steps must be >= 2 and n_prompts >= 1")
        if not 0 < self.adaptive_threshold <= 1 or not 0 <= self.p < 1:
            raise ValueError(f"{tag}: adaptive_threshold must lie in (0, 1] and p in [0, 1)")
        if list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"{tag}: layers must be strictly ascending, got {self.layers!r}")


@torch.no_grad()
def greedy_tokens(h, seqs: Sequence[Sequence[int]], n: int) -> list[list[int]]:
    """The model's ``n`` greedy next tokens after each token sequence."""
    out = [list(s) for s in seqs]
    for _ in range(n):
        batch = pack(out, pad_id=h.tokenizer.pad_token_id, device=h.device)
        last = (batch.lengths - 1)[:, None]
        logits = trace(h, batch.input_ids, attention_mask=batch.attention_mask,
                       logit_positions=last).logits[:, 0]
        for row, tok in zip(out, logits.argmax(-1).tolist()):
            row.append(int(tok))
    return [row[len(s):] for row, s in zip(out, seqs)]


@dataclass
class _Unit:
    """One scored token: ``ids`` ends at the position whose next token is ``token``."""

    owner: int          # index of the (prompt, answer) pair
    ids: list[int]
    token: int


def _units(h, prompts: Sequence[str], answers: Sequence[str], continuation: str) -> list[_Unit]:
    tok = h.tokenizer
    p_ids = [prompt_ids(tok, p) for p in prompts]
    a_ids = [target_ids(tok, a) for a in answers]
    if continuation == "argmax":
        conts = [greedy_tokens(h, [p], len(a) - 1)[0] if len(a) > 1 else [] for p, a in zip(p_ids, a_ids)]
    else:
        conts = [a[:-1] for a in a_ids]
    return [_Unit(k, p + c[:i], a[i]) for k, (p, a, c) in enumerate(zip(p_ids, a_ids, conts))
            for i in range(len(a))]


@torch.no_grad()
def _clean_keys(h, units: list[_Unit], layers: Sequence[int], max_tokens: int) -> torch.Tensor:
    """(n_units, L, d_k): the key of every layer at each unit's last position."""
    sites = [Site("mlp_out", layer, "input") for layer in layers]
    out = torch.empty(len(units), len(layers), h.key_size, dtype=h.dtype)
    for idx in token_chunks([len(u.ids) for u in units], max_tokens):
        batch = pack([units[i].ids for i in idx], pad_id=h.tokenizer.pad_token_id, device=h.device)
        res = trace(h, batch.input_ids, attention_mask=batch.attention_mask, read=sites,
                    stop_at_layer=max(layers))
        rows = torch.arange(len(idx), device=h.device)
        last = batch.lengths - 1
        for j, s in enumerate(sites):
            out[torch.tensor(idx), j] = res.values[s][rows, last].to(out.device, out.dtype)
    return out


@torch.no_grad()
def _prefix_kv(h, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Attention keys and values of every layer for the tokens ``ids`` (one row)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    t = torch.tensor([ids], device=h.device)
    trace(h, t, attention_mask=torch.ones_like(t), cache=cache,
          logit_positions=torch.zeros((1, 1), dtype=torch.long))
    return [(layer.keys, layer.values) for layer in cache.layers]


def _integrated_gradients(h, units: list[_Unit], layers: Sequence[int], keys: torch.Tensor,
                          steps: int) -> torch.Tensor:
    """(n_units, L, d_k): sum over the ``steps`` scaled copies of d P(token) / d key.

    Only the last position's key changes, so each unit's earlier tokens run once (their
    attention keys and values cached) and each scaled copy feeds the last token alone."""
    from transformers import DynamicCache

    alphas = torch.linspace(0.0, 1.0, steps, dtype=keys.dtype)
    n_rows = len(layers) * steps
    which = torch.arange(len(layers)).repeat_interleave(steps)        # row -> layer position
    scaled = alphas.repeat(len(layers))                               # row -> alpha
    grads = torch.zeros_like(keys)
    for u, unit in enumerate(units):
        prefix = unit.ids[:-1]
        cache = None
        if prefix:
            cache = DynamicCache(ddp_cache_data=[(k.expand(n_rows, -1, -1, -1), v.expand(n_rows, -1, -1, -1))
                                                 for k, v in _prefix_kv(h, prefix)])
        ids = torch.full((n_rows, 1), unit.ids[-1], dtype=torch.long, device=h.device)
        mask = torch.ones((n_rows, len(unit.ids)), dtype=torch.long, device=h.device)
        position = torch.full((n_rows, 1), len(prefix), dtype=torch.long, device=h.device)
        replace, vecs = {}, []
        for j, layer in enumerate(layers):
            mine = which == j
            vec = torch.where(mine[:, None], scaled[:, None] * keys[u, j], torch.zeros_like(keys[u, j]))
            vecs.append(vec.to(h.device).requires_grad_(True))
            positions = torch.where(mine, 0, -1).to(h.device)
            replace[Site("mlp_out", layer, "input")] = Replacement(positions, vecs[-1])
        res = trace(h, ids, attention_mask=mask, position_ids=position, cache=cache,
                    replace=replace, grad=True)
        probs = torch.softmax(res.logits[:, -1].float(), dim=-1)
        total = probs[:, unit.token].sum()
        for j, g in enumerate(torch.autograd.grad(total, vecs)):
            grads[u, j] = g.detach()[(which == j).to(g.device)].sum(0).to(grads.device, grads.dtype)
    return grads


def attribution_scores(h, prompts: Sequence[str], answers: Sequence[str], *,
                       layers: Sequence[int] | None = None, steps: int = 20,
                       continuation: str = "target", max_tokens: int = 16384,
                       activations: bool = False):
    """Integrated-gradients attribution of every MLP neuron for each (prompt, answer):
    a float32 tensor ``(len(layers), d_k)`` per pair (answer tokens averaged). With
    ``activations``, also the neurons' activations at each prompt's last token (same shape),
    as a second list."""
    layers = list(range(h.n_layers)) if not layers else list(layers)
    units = _units(h, prompts, answers, continuation)
    with frozen_parameters(h.model):
        keys = _clean_keys(h, units, layers, max_tokens)
        grads = _integrated_gradients(h, units, layers, keys, steps)
    per_unit = (keys.float() * grads.float() / steps)
    out = [torch.zeros(len(layers), h.key_size) for _ in prompts]
    first: list[torch.Tensor | None] = [None] * len(prompts)
    counts = [0] * len(prompts)
    for i, u in enumerate(units):
        out[u.owner] += per_unit[i]
        counts[u.owner] += 1
        if first[u.owner] is None:
            first[u.owner] = keys[i].float()
    scores = [s / c for s, c in zip(out, counts)]
    return (scores, first) if activations else scores


def select_neurons(scores: Sequence[torch.Tensor], *, adaptive_threshold: float, p: float,
                   refine: bool) -> list[tuple[int, int]]:
    """Neurons ``(layer position, index)`` above ``adaptive_threshold`` times each prompt's
    largest attribution; with ``refine``, only those found for more than ``p`` times the
    number of prompts. Sorted."""
    counts: dict[tuple[int, int], int] = {}
    for s in scores:
        threshold = float(s.max()) * adaptive_threshold
        for pos, idx in torch.nonzero(s > threshold).tolist():
            counts[(pos, idx)] = counts.get((pos, idx), 0) + 1
    need = len(scores) * p if refine else 0
    return sorted(n for n, c in counts.items() if c > need)


def _answer_vector(emb: torch.Tensor, ids: Sequence[int], scale: float) -> torch.Tensor:
    """``scale`` times the embedding of a one-token answer; ``scale / 2`` times each token's
    for longer answers (the reference's 2x and 1x)."""
    if not ids:
        return torch.zeros(emb.shape[1], dtype=torch.float32)
    factor = scale if len(ids) == 1 else scale / 2
    return factor * emb[torch.tensor(list(ids))].float().sum(0).cpu()


@register_editor("kn")
class KnowledgeNeurons(Editor):
    """Knowledge neurons (see the module docstring)."""

    hparams_class = KNHParams

    def _layers(self, h, hp: KNHParams) -> list[int]:
        return list(hp.layers) if hp.layers else list(range(h.n_layers))

    def declared_parameters(self, h, hp: KNHParams | None = None) -> list[str]:
        hp = hp or self.hparams_for(h)
        return [h.adapter.param_name("mlp_out", layer) for layer in self._layers(h, hp)]

    def _edit(self, h, requests: list, hp: KNHParams, *, stats, seed: int,
              precomputed=None) -> dict[str, Any]:
        missing = [r.case_id for r in requests if not r.target_true]
        if missing:
            raise ValueError(f"kn: attribution needs each request's true target; cases "
                             f"{missing[:5]} have none")
        layers = self._layers(h, hp)
        prompts, answers, owner = [], [], []
        for f, r in enumerate(requests):
            for q in (r.rewrite_prompt, *r.paraphrase_prompts[: hp.n_prompts - 1]):
                prompts.append(q); answers.append(r.target_true); owner.append(f)
        scores, acts = attribution_scores(h, prompts, answers, layers=layers, steps=hp.steps,
                                          continuation=hp.continuation,
                                          max_tokens=self.max_batch_tokens, activations=True)
        tok = h.tokenizer
        new_ids = [target_ids(tok, r.target_new) for r in requests]
        if hp.erase == "argmax":
            old_ids = [greedy_tokens(h, [prompt_ids(tok, r.rewrite_prompt)], len(n))[0]
                       for r, n in zip(requests, new_ids)]
        elif hp.erase == "true":
            old_ids = [target_ids(tok, r.target_true) for r in requests]
        else:
            old_ids = [[] for _ in requests]
        emb = (h.model.get_input_embeddings() if hp.embedding == "input"
               else h.model.get_output_embeddings()).weight.detach()
        delta = torch.zeros(len(layers), h.hidden_size, h.key_size)
        neurons, largest = [], []
        for f, r in enumerate(requests):
            mine = [scores[i] for i in range(len(prompts)) if owner[i] == f]
            chosen = select_neurons(mine, adaptive_threshold=hp.adaptive_threshold, p=hp.p,
                                    refine=hp.refine)
            vec = _answer_vector(emb, new_ids[f], hp.scale) - _answer_vector(emb, old_ids[f], hp.scale)
            act = acts[owner.index(f)]           # activations at the rewrite prompt's last token
            for pos, idx in chosen:
                sign = (1.0 if act[pos, idx] >= 0 else -1.0) if hp.activation_sign else 1.0
                delta[pos, :, idx] += sign * vec
            neurons.append([(layers[pos], idx) for pos, idx in chosen])
            largest.append(max(float(s.max()) for s in mine))
        for pos, layer in enumerate(layers):
            if delta[pos].any():
                h.adapter.add_to_mlp_out_weight(h.model, layer, delta[pos])
        return {
            "case_id": [str(r.case_id) for r in requests],
            "neurons": neurons,
            "n_neurons": [len(n) for n in neurons],
            "max_attribution": largest,
            "erased_tokens": old_ids,
        }
