"""Training a MEND network on a set of edits (meta-learning through the edit).

Usage::

    from corredit.editors.mend.training import MendTrainingHParams, train_mend, training_hparams
    hp = training_hparams(h, {"steps": 300})            # defaults.toml [mend-training] + overrides
    res = train_mend(h, examples, hp, "runs/mend-world", seed=0)   # resumes if interrupted
    res.folder, res.steps_done, res.validation          # the saved network and its scores

    corredit train-editor mend --model world --data world --out runs/mend-world

One optimiser step averages ``accumulate`` draws of ``edits_per_step`` edits. For each
draw, the gradient factors of its inner edits (rewrite prompt -> new target) on the
unedited model become an update through the network; with the model so updated, the loss
is ``cedit * NLL(new target | outer prompts) + cloc * KL(before || after)`` on locality
prompts; its gradient trains the network and, with their own optimiser (``lr_lr``), the
step sizes. Gradients are clipped to ``grad_clip`` over all of them. The draws of a step
run as one batch (each row sees its own draw's update through a hook, see
:func:`~corredit.editors.mend.factors.updated_weights`), so a step costs four passes (the
factors, the outer prompts, the locality prompts before and after), not four per draw; the normalisation statistics take in the whole step's tokens before its
updates are formed (the reference adds them draw by draw), and a step whose gradient is
not finite is skipped whole (the reference skips the draw).

Reference facts (MEND on zsRE / CounterFact): Adam, lr 1e-6, lr_lr 1e-4, edit_lr 1e-4,
cedit 0.1, cloc 1.0, one edit per draw, 10 draws per step, clip 100, 100,000 draws; the
last three MLP layers (corredit edits their ``W_out``; the reference also edits the MLP
input weights). A checkpoint (network, optimisers, step) is written every
``checkpoint_every`` steps; draws depend on ``(seed, step, draw)`` only, so a resumed run
ends with the same network as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from corredit.editors.hparams import DEFAULTS_PATH, HParams, default_hparams
from corredit.editors.mend.data import MendExample, sample_batch
from corredit.editors.mend.factors import (
    BATCH_LOSSES, TokenRows, edit_factors, edited_logits, kl_divergence, per_edit_means,
    target_nll, token_weights,
)
from corredit.editors.mend.io import CHECKPOINT_FILE, load_checkpoint, save_checkpoint, save_network
from corredit.editors.mend.network import MendConfig, MendNetwork
from corredit.editors.values import frozen_parameters
from corredit.models import trace
from corredit.models.tracing import eval_mode

__all__ = ["MendTrainingHParams", "TrainResult", "training_hparams", "network_config",
           "train_mend", "edit_step", "validate"]


@dataclass(frozen=True)
class MendTrainingHParams(HParams):
    """Knobs of MEND's network and its training (module docstring). ``layers=()`` edits
    the last ``n_last_layers`` layers. ``steps`` counts optimiser steps."""

    layers: tuple[int, ...] = ()
    n_last_layers: int = 3
    rank: int = 1920
    n_hidden: int = 1
    shared: bool = True
    norm: bool = True
    edit_lr: float = 1e-4
    lr: float = 1e-6
    lr_lr: float = 1e-4
    cedit: float = 0.1
    cloc: float = 1.0
    steps: int = 10000
    accumulate: int = 10
    edits_per_step: int = 1
    paraphrases: int = 1
    grad_clip: float = 100.0
    batch_loss: str = "sum_of_means"
    checkpoint_every: int = 25
    val_edits: int = 50

    def validate(self, *, where: str = "") -> None:
        tag = where or "MendTrainingHParams"
        if self.batch_loss not in BATCH_LOSSES:
            raise ValueError(f"{tag}: batch_loss must be one of {', '.join(BATCH_LOSSES)}")
        for name in ("steps", "accumulate", "edits_per_step", "checkpoint_every", "n_last_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{tag}: {name} must be >= 1")
        if self.lr <= 0 or self.lr_lr < 0 or self.edit_lr <= 0:
            raise ValueError(f"{tag}: lr and edit_lr must be > 0, lr_lr >= 0")


def training_hparams(h, overrides: Mapping[str, Any] | None = None, *,
                     path=DEFAULTS_PATH) -> MendTrainingHParams:
    """Training knobs for model ``h``: ``[mend-training]`` tables of the defaults file,
    then ``overrides``."""
    hp = default_hparams("mend-training", MendTrainingHParams, model_name=h.name,
                         architecture=h.adapter.architecture, path=path)
    return hp.merged(overrides, where="mend training overrides") if overrides else hp


def network_config(h, hp: MendTrainingHParams) -> MendConfig:
    """The network shape that ``hp`` trains for model ``h``."""
    layers = tuple(hp.layers) if hp.layers else tuple(range(max(0, h.n_layers - hp.n_last_layers), h.n_layers))
    bad = [layer for layer in layers if not 0 <= layer < h.n_layers]
    if bad:
        raise ValueError(f"mend training: layers {bad} are outside model {h.name!r} with "
                         f"{h.n_layers} layers")
    return MendConfig(layers=layers, key_size=h.key_size, hidden_size=h.hidden_size,
                      rank=hp.rank, n_hidden=hp.n_hidden, shared=hp.shared, norm=hp.norm,
                      edit_lr=hp.edit_lr, model=h.name, architecture=h.adapter.architecture)


def edit_step(h, net: MendNetwork, draws: Sequence, *, batch_loss: str = "sum_of_means",
              update_statistics: bool = False, token_cache: dict | None = None) -> dict[str, Any]:
    """Losses of ``draws`` (each a :class:`~corredit.editors.mend.data.MendBatch` edited on
    its own), computed together: ``edit`` and ``loc`` are means over draws of the outer
    NLL after the draw's edit (mean over its edits) and of KL(before || after) over its
    locality tokens (both differentiable in the network); ``inner`` is the inner NLL
    before editing. ``outer_nll`` / ``outer_rows``: per-token NLLs and their rows;
    ``token_cache``: token ids kept across calls (:meth:`TokenRows.build`)."""
    tok = h.tokenizer
    layers = net.config.layers
    inner_pairs, edit_draw, outer_pairs, outer_owner, loc_pairs, loc_draw = [], [], [], [], [], []
    for g, d in enumerate(draws):
        base = len(inner_pairs)
        inner_pairs += d.inner
        edit_draw += [g] * len(d.inner)
        outer_pairs += d.outer
        outer_owner += [base + k for k in d.outer_owner]
        loc_pairs += d.loc
        loc_draw += [g] * len(d.loc)
    f = edit_factors(h, layers, TokenRows.build(tok, inner_pairs, cache=token_cache),
                     batch_loss=batch_loss)
    if update_statistics:
        for i in range(len(layers)):
            net.update_statistics(i, f.x[i], f.delta[i])
    draw_of = torch.tensor(edit_draw)
    updates = {}
    for i, layer in enumerate(layers):
        token_draw = draw_of[f.owner[i].cpu()]
        updates[layer] = [net.update(i, f.x[i][token_draw == g], f.delta[i][token_draw == g])
                          for g in range(len(draws))]
    outer = TokenRows.build(tok, outer_pairs, outer_owner, cache=token_cache)
    loc = TokenRows.build(tok, loc_pairs, [-1] * len(loc_pairs), full=True, cache=token_cache)
    logits = edited_logits(h, updates, torch.tensor([edit_draw[o] for o in outer_owner]), outer)
    tokens_of: dict[int, int] = {}
    for lab, o in zip(outer.labels, outer.owner):
        tokens_of[o] = tokens_of.get(o, 0) + len(lab)
    # each draw weighs 1/len(draws), each edit 1/(edits of its draw), each token 1/(its edit's)
    w_rows = [[1.0 / (len(draws) * edit_draw.count(edit_draw[o]) * tokens_of[o])] * len(lab)
              for lab, o in zip(outer.labels, outer.owner)]
    l_edit, nll = target_nll(logits, outer, w_rows)
    packed = loc.packed(h)
    lp, mask = loc.logit_positions(h.device)
    with torch.no_grad():
        pre = trace(h, packed.input_ids, attention_mask=packed.attention_mask, logit_positions=lp).logits
    post = edited_logits(h, updates, torch.tensor(loc_draw), loc)
    kl = kl_divergence(pre, post) * mask
    draw_loc = torch.tensor(loc_draw, device=kl.device)
    l_loc = sum(kl[draw_loc == g].sum() / mask[draw_loc == g].sum()
                for g in range(len(draws))) / len(draws)
    return {"edit": l_edit, "loc": l_loc, "inner": torch.tensor(f.loss / len(inner_pairs)),
            "outer_nll": nll.detach(), "outer_rows": outer}


@torch.no_grad()
def validate(h, net: MendNetwork, examples: Sequence[MendExample], *, seed: int = 0,
             batch_loss: str = "sum_of_means", chunk: int = 16) -> dict[str, float]:
    """Single edits of ``examples``, each from the unedited model: mean outer NLL before and
    after, the share of outer prompts whose every target token has probability above
    one half after the edit (``prob_above_half``), and the mean locality KL."""
    if not examples:
        return {}
    was = net.training
    net.eval()
    nll_before, nll_after, kl, acc = [], [], [], []
    for start in range(0, len(examples), chunk):
        draws = [sample_batch(examples, seed=seed, step=0, micro=i, indices=[i], stream=1)
                 for i in range(start, min(start + chunk, len(examples)))]
        with torch.enable_grad():
            out = edit_step(h, net, draws, batch_loss=batch_loss)
        n = len(draws)
        nll_after.append(float(out["edit"]) * n)
        kl.append(float(out["loc"]) * n)
        rows: TokenRows = out["outer_rows"]
        packed = rows.packed(h)
        before = trace(h, packed.input_ids, attention_mask=packed.attention_mask,
                       logit_positions=rows.logit_positions(h.device)[0]).logits
        _, nll0 = target_nll(before, rows, token_weights(rows))
        nll_before += list(per_edit_means(rows, nll0).values())
        k = 0
        for lab in rows.labels:
            acc.append(float(all(v < math.log(2) for v in out["outer_nll"][k:k + len(lab)].tolist())))
            k += len(lab)
    net.train(was)
    total = len(examples)
    return {"nll_before": sum(nll_before) / total, "nll_after": sum(nll_after) / total,
            "prob_above_half": sum(acc) / len(acc), "loc_kl": sum(kl) / total, "n": total}


@dataclass
class TrainResult:
    """Where the network went, how many steps are done, and the scores."""

    folder: Path
    steps_done: int
    finished: bool
    seconds: float
    history: list[dict[str, float]]
    validation: dict[str, Any]


def _meta(h, hp: MendTrainingHParams, seed: int, data: Mapping[str, Any]) -> dict[str, Any]:
    doc = {"model": h.name, "architecture": h.adapter.architecture, "seed": int(seed),
           "training": hp.to_dict(), "data": dict(data)}
    return json.loads(json.dumps(doc))        # as a checkpoint's header gives it back


def train_mend(h, examples: Sequence[MendExample], hp: MendTrainingHParams,
               out: str | Path, *, seed: int = 0, val_examples: Sequence[MendExample] = (),
               data_info: Mapping[str, Any] | None = None, progress: bool = True,
               stop_after: int | None = None,
               callback: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train a network on ``examples`` into folder ``out`` (module docstring); a
    checkpoint there from the same settings is resumed, one from other settings is an
    error. ``stop_after``: stop (with a checkpoint) after that many steps in total."""
    from tqdm.auto import tqdm

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    meta = _meta(h, hp, seed, data_info or {"n_examples": len(examples)})
    net = MendNetwork(network_config(h, hp), seed=seed)
    net_params = [p for n, p in net.named_parameters() if n != "edit_lrs"]
    opts = {"net": torch.optim.Adam(net_params, lr=hp.lr),
            "lr": torch.optim.Adam([net.edit_lrs], lr=hp.lr_lr)}
    saved = load_checkpoint(folder, net, opts)
    start, history, seconds = 0, [], 0.0
    if saved is not None:
        theirs = {k: saved.get(k) for k in meta}
        if theirs != meta:
            diff = sorted(k for k in meta if theirs[k] != meta[k])
            raise ValueError(f"{folder / CHECKPOINT_FILE}: a checkpoint of other settings "
                             f"(differs in {diff}); use another --out or remove it")
        start, history, seconds = int(saved["step"]), list(saved["history"]), float(saved["seconds"])
    end = hp.steps if stop_after is None else min(hp.steps, int(stop_after))
    bar = tqdm(total=hp.steps, initial=start, desc="mend", unit="step", disable=not progress,
               dynamic_ncols=True)
    net.train()
    token_cache: dict = {}
    t0 = time.perf_counter()
    try:
        with eval_mode(h.model), frozen_parameters(h.model):
            for step in range(start, end):
                draws = [sample_batch(examples, seed=seed, step=step, micro=micro,
                                      edits=hp.edits_per_step, paraphrases=hp.paraphrases)
                         for micro in range(hp.accumulate)]
                out_ = edit_step(h, net, draws, batch_loss=hp.batch_loss, update_statistics=True,
                                 token_cache=token_cache)
                loss = hp.cedit * out_["edit"] + hp.cloc * out_["loc"]
                grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
                skipped = int(not all(g is None or torch.isfinite(g).all() for g in grads))
                if not skipped:
                    for p, g in zip(net.parameters(), grads):
                        p.grad = g
                sums = {k: float(out_[k].detach()) for k in ("edit", "loc", "inner")}
                torch.nn.utils.clip_grad_norm_(list(net.parameters()), hp.grad_clip)
                for opt in opts.values():
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                record = {"step": step + 1, **sums, "skipped": skipped,
                          "edit_lr_mean": float(net.edit_lrs.detach().mean())}
                history.append(record)
                bar.update(1)
                bar.set_postfix(edit=f"{sums['edit']:.3f}", loc=f"{sums['loc']:.4f}")
                if callback is not None:
                    callback(step + 1, record)
                if (step + 1) % hp.checkpoint_every == 0 or step + 1 == end:
                    save_checkpoint(folder, net, opts, {**meta, "step": step + 1, "history": history,
                                                        "seconds": seconds + time.perf_counter() - t0})
    finally:
        bar.close()
    seconds += time.perf_counter() - t0
    finished = end >= hp.steps
    validation: dict[str, Any] = {}
    if finished:
        with eval_mode(h.model), frozen_parameters(h.model):
            validation = validate(h, net, val_examples, seed=seed, batch_loss=hp.batch_loss)
        save_network(net, folder, meta={**meta, "steps": hp.steps, "seconds": round(seconds, 2),
                                        "validation": validation, "history_tail": history[-20:]})
    return TrainResult(folder, end, finished, seconds, history, validation)
