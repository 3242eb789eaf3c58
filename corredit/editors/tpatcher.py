"""T-Patcher: one added feed-forward neuron ("patch") per edit; weights never change.

Usage::

    from corredit.editors import get_editor
    ed = get_editor("t-patcher")()                    # last layer, the reference's knobs
    results = ed.edit(h, requests, mode="sequential", seed=0)
    p = ed.memory_for(h)
    p.keys.shape, p.values.shape       # (patches, d): key rows and value columns
    results[-1].diagnostics["memory_active"]   # share of memory inputs the patch fires on
    ed.restore(h)                              # hooks and patches gone

A patch at ``layer`` is an extra key row ``k`` with bias ``b`` and an extra value column
``v ⊙ a`` of that layer's MLP: for the MLP input ``x`` at any position, the MLP output
gains ``act(x·k + b) (v ⊙ a)``. Hooks read ``x`` at the MLP's input module and add the
patches' output to its output module.

Editing a batch of facts adds one patch per fact, trained jointly with Adam (``lr``,
``weight_decay``) on

    L = NLL(target)  +  act_weight · L_act  +  memory_weight · L_mem

``L_act`` (the patch fires on its fact): the mean of the ``act_top_k`` largest
``exp(act_margin - x_t·k - b)`` over the positions ``t`` that predict the target's tokens
(the prompt's last one and the target's but the last). ``L_mem`` (the patch stays silent on
other inputs): over MLP inputs ``m`` of a memory, the mean of the ``memory_top_k`` largest
``exp(m·k + b - x_t·k - b + memory_margin)`` plus the mean of the ``memory_top_k`` largest
``exp(m·k + b - memory_ceiling)``. The memory holds the MLP inputs at every position but
the first of ``memory_texts`` texts sampled from the unedited model (seeded) and, with
``update_memory``, of every earlier edit's sequence, so a later patch learns to stay silent
on earlier edits; earlier patches are frozen and may fire on a later edit's inputs.
Initialisation: ``k = x_q / |x_q|²`` (pre-activation 1 at the prompt's last token
``x_q``), ``b = 0``, ``v ~ N(0, 1)`` (seeded), ``a = amplify``. Training stops after
``num_steps`` steps, or, after at least ``min_steps``, once every target token is the
model's top prediction and the memory loss improved by less than ``memory_tol`` in the
last step.

Facts kept from the reference (Huang et al., ZeroYuHuang/Transformer-Patcher): the patch
at the last feed-forward layer, one neuron per edit, the key initialisation, the
amplified value (10), Adam at lr 1e-2 with weight decay 0.01, ``top5_exp`` activation
loss at margin 0 (weight 1), ``top1000_exp+top1000_exp`` memory loss at margins 3 and -3
(weight 5), earlier edits added to the memory. The reference's memory is the task's
training inputs (``memory_size`` 40,000) and its stop rule checks generation after 100
steps (``min_steps``); corredit samples the memory from the model itself and checks
teacher-forced predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from corredit.editors.base import register_editor
from corredit.editors.hparams import HParams
from corredit.editors.memory import Attachments, MemoryEditor
from corredit.editors.sequences import pack, prompt_ids, target_ids
from corredit.editors.values import frozen_parameters

__all__ = ["TPatcher", "TPatcherHParams", "Patches"]

ACTIVATIONS = {"gelu": torch.nn.functional.gelu, "relu": torch.relu}


@dataclass(frozen=True)
class TPatcherHParams(HParams):
    """T-Patcher knobs (module docstring); ``layer`` counts from the end when negative."""

    layer: int = -1
    lr: float = 1e-2
    weight_decay: float = 0.01
    num_steps: int = 200
    min_steps: int = 100
    memory_tol: float = 1e-3
    act_weight: float = 1.0
    act_margin: float = 0.0
    act_top_k: int = 5
    memory_weight: float = 5.0
    memory_margin: float = 3.0
    memory_ceiling: float = -3.0
    memory_top_k: int = 1000
    amplify: float = 10.0
    activation: str = "gelu"
    memory_texts: int = 64
    memory_length: int = 16
    memory_prompt: str = ""
    update_memory: bool = True

    def validate(self, *, where: str = "") -> None:
        tag = where or "TPatcherHParams"
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"{tag}: activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if self.lr <= 0 or self.num_steps < 1 or self.act_top_k < 1 or self.memory_top_k < 1:
            raise ValueError(f"{tag}: lr must be > 0; num_steps, act_top_k and memory_top_k >= 1")
        if not 0 <= self.min_steps <= self.num_steps:
            raise ValueError(f"{tag}: min_steps must lie in [0, num_steps]")
        if self.memory_texts < 0 or self.memory_length < 2:
            raise ValueError(f"{tag}: memory_texts must be >= 0 and memory_length >= 2")

    def layer_of(self, n_layers: int) -> int:
        """The patched layer of a model with ``n_layers`` blocks."""
        layer = self.layer + n_layers if self.layer < 0 else self.layer
        if not 0 <= layer < n_layers:
            raise ValueError(f"t-patcher: layer {self.layer} is outside a model with {n_layers} "
                             f"layers")
        return layer


class Patches(torch.nn.Module):
    """Patch keys ``(n, d)``, biases ``(n,)``, values and amplifications ``(n, d)``
    (float32), the memory of earlier edits' MLP inputs ``(m, d)`` and the case of each patch."""

    def __init__(self, d: int, activation: str) -> None:
        super().__init__()
        for name, shape in (("keys", (0, d)), ("bias", (0,)), ("values", (0, d)),
                            ("amplify", (0, d)), ("edit_memory", (0, d))):
            self.register_buffer(name, torch.zeros(shape))
        self.activation = activation
        self.case_ids: list[str] = []
        self._training: tuple[torch.Tensor, ...] | None = None
        self._x: torch.Tensor | None = None
        self._sample: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def parts(self) -> tuple[torch.Tensor, ...]:
        """Keys, biases, values and amplifications, the ones in training appended."""
        held = (self.keys, self.bias, self.values, self.amplify)
        if self._training is None:
            return held
        return tuple(torch.cat([a, b.to(a.dtype)]) for a, b in zip(held, self._training))

    def output(self, x: torch.Tensor) -> torch.Tensor | None:
        """The patches' contribution at MLP inputs ``x`` ``(..., d)``, or None without patches."""
        k, b, v, a = self.parts()
        if k.shape[0] == 0:
            return None
        dt = x.dtype
        pre = x @ k.to(x.device, dt).T + b.to(x.device, dt)
        return ACTIVATIONS[self.activation](pre) @ (v * a).to(x.device, dt)

    def append(self, k, b, v, a, case_ids) -> None:
        self.keys, self.bias = torch.cat([self.keys, k]), torch.cat([self.bias, b])
        self.values, self.amplify = torch.cat([self.values, v]), torch.cat([self.amplify, a])
        self.case_ids += list(case_ids)


@register_editor("t-patcher")
class TPatcher(MemoryEditor):
    """T-Patcher; see the module docstring."""

    hparams_class = TPatcherHParams
    supported_modes = ("batch", "sequential", "sequential-batch")

    def _new_memory(self, h, hp: TPatcherHParams) -> Patches:
        return Patches(h.hidden_size, hp.activation).to(h.device)

    def _attach(self, h, hp: TPatcherHParams, memory: Patches, attachments: Attachments) -> None:
        layer = hp.layer_of(h.n_layers)

        def read_input(module, args):
            memory._x = args[0]

        def add_output(module, args, output):
            x, memory._x = memory._x, None
            extra = None if x is None else memory.output(x)
            return None if extra is None else output + extra.to(output.dtype)

        a = h.adapter
        attachments.forward_pre_hook(a.module(h.model, "mlp_in", layer), read_input,
                                     name=a.module_name("mlp_in", layer))
        attachments.forward_hook(a.module(h.model, "mlp_out", layer), add_output,
                                 name=a.module_name("mlp_out", layer))

    # -- inputs -----------------------------------------------------------------------------
    def _inputs(self, h, layer: int, seqs: list[list[int]]) -> list[torch.Tensor]:
        """MLP inputs ``(len, d)`` (float32) of each token sequence at ``layer``."""
        from corredit.models import Site, trace

        site = Site("mlp_in", layer, "input")
        batch = pack(seqs, pad_id=h.tokenizer.pad_token_id, device=h.device)
        x = trace(h, batch.input_ids, attention_mask=batch.attention_mask, read=[site],
                  stop_at_layer=layer).values[site].float()
        return [x[i, :len(s)] for i, s in enumerate(seqs)]

    def _sample_memory(self, h, hp: TPatcherHParams, layer: int, seed: int) -> torch.Tensor:
        from corredit.editors.templates import sample_texts

        if hp.memory_texts == 0:
            return torch.zeros(0, h.hidden_size, device=h.device)
        gen = torch.Generator().manual_seed(int(seed))
        texts = sample_texts(h, hp.memory_prompt, n=hp.memory_texts, length=hp.memory_length,
                             top_k=5, generator=gen)
        seqs = [s for s in (prompt_ids(h.tokenizer, t) for t in texts) if len(s) > 1]
        return torch.cat([x[1:] for x in self._inputs(h, layer, seqs)]) if seqs else \
            torch.zeros(0, h.hidden_size, device=h.device)

    # -- editing ----------------------------------------------------------------------------
    def _edit(self, h, requests: list, hp: TPatcherHParams, *, stats, seed: int,
              precomputed=None) -> dict[str, Any]:
        layer = hp.layer_of(h.n_layers)
        patches = self._ensure_memory(h, hp)
        if patches._sample is None:
            patches._sample = self._sample_memory(h, hp, layer, seed)
        tok = h.tokenizer
        parts = [(prompt_ids(tok, r.rewrite_prompt), target_ids(tok, r.target_new)) for r in requests]
        seqs = [p + t[:-1] for p, t in parts]
        xs = self._inputs(h, layer, seqs)
        spans = [torch.arange(len(p) - 1, len(p) - 1 + len(t)) for p, t in parts]
        acts = [x[s.to(x.device)] for x, s in zip(xs, spans)]          # inputs that must fire
        memory = torch.cat([patches._sample, patches.edit_memory.to(patches._sample.device)])

        n, d = len(requests), h.hidden_size
        q = torch.stack([x[len(p) - 1] for x, (p, _) in zip(xs, parts)])
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + len(patches))
        new = [torch.nn.Parameter(t.to(h.device)) for t in (
            q / (q * q).sum(1, keepdim=True), torch.zeros(n), torch.randn(n, d, generator=gen),
            torch.full((n, d), float(hp.amplify)))]
        batch = pack(seqs, pad_id=tok.pad_token_id, device=h.device)
        width = max(len(t) for _, t in parts)
        positions = torch.stack([torch.arange(width) + len(p) - 1 for p, _ in parts]).clamp(
            max=batch.input_ids.shape[1] - 1).to(h.device)
        tids = torch.tensor([t + [t[-1]] * (width - len(t)) for _, t in parts], device=h.device)
        valid = torch.tensor([[j < len(t) for j in range(width)] for _, t in parts], device=h.device)

        def losses():
            from corredit.models import trace

            logits = trace(h, batch.input_ids, attention_mask=batch.attention_mask,
                           grad=torch.is_grad_enabled(), logit_positions=positions).logits.float()
            lp = torch.log_softmax(logits, -1).gather(2, tids[..., None])[..., 0]
            nll = -(lp * valid).sum(1) / valid.sum(1)
            correct = bool(((logits.argmax(-1) == tids) | ~valid).all())
            k, b = new[0], new[1]
            pre = [a @ k[i] + b[i] for i, a in enumerate(acts)]
            his = memory @ k.T + b                                            # (m, n)
            l_act = torch.stack([_top_mean(torch.exp(hp.act_margin - p), hp.act_top_k) for p in pre])
            if memory.shape[0]:
                l_mem = torch.stack([
                    _top_mean(torch.exp(his[:, i, None] - pre[i][None] + hp.memory_margin).flatten(),
                              hp.memory_top_k)
                    + _top_mean(torch.exp(his[:, i] - hp.memory_ceiling), hp.memory_top_k)
                    for i in range(n)])
            else:
                l_mem = torch.zeros(n, device=nll.device)
            return nll, l_act, l_mem, pre, his, correct

        patches._training = tuple(new)
        steps, last_mem = 0, None
        try:
            with frozen_parameters(h.model):
                opt = torch.optim.Adam(new, lr=hp.lr, weight_decay=hp.weight_decay)
                for _ in range(hp.num_steps):
                    opt.zero_grad(set_to_none=True)
                    with torch.enable_grad():
                        nll, l_act, l_mem, _, _, correct = losses()
                        mem = float(l_mem.detach().mean())
                        if correct and steps >= hp.min_steps and last_mem is not None \
                                and last_mem - mem < hp.memory_tol:
                            break
                        last_mem = mem
                        total = nll.mean() + hp.act_weight * l_act.mean() + hp.memory_weight * l_mem.mean()
                        total.backward()
                    opt.step()
                    steps += 1
        finally:
            patches._training = None
        with torch.no_grad():
            patches.append(*(p.detach().float() for p in new), [str(r.case_id) for r in requests])
            nll, l_act, l_mem, pre, his, correct = losses()
            if hp.update_memory:
                patches.edit_memory = torch.cat([patches.edit_memory] + [x[1:].to(
                    patches.edit_memory.device) for x in xs])
        return {
            "case_id": [str(r.case_id) for r in requests],
            "loss": nll.double().tolist(),
            "act_loss": l_act.double().tolist(),
            "memory_loss": l_mem.double().tolist(),
            "act_pre_query": [float(p[0]) for p in pre],      # at the prompt's last token
            "act_pre_min": [float(p.min()) for p in pre],
            "memory_pre_max": his.max(0).values.double().tolist() if his.shape[0] else [float("nan")] * n,
            "memory_active": (his > 0).float().mean(0).double().tolist() if his.shape[0] else [0.0] * n,
            "steps": steps,
            "layer": layer,
            "patches": len(patches),
        }


def _top_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the ``k`` largest entries of the 1-d ``x`` (all of them when fewer)."""
    return torch.topk(x, min(k, x.shape[0])).values.mean()
