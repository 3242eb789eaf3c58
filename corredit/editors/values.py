"""Batched value optimisation: one vector per unit (fact or merged fact group), all units
optimised jointly with one forward and backward pass per step.

Usage::

    from corredit.editors.values import ValueOptimizer, units_from_requests
    units = units_from_requests(requests, templates, kl_prompt="{} is a")
    opt = ValueOptimizer(h, [Site("block", 5, "output")], hp)      # hp: ValueHParams
    res = opt.optimize(units)          # joint
    ref = opt.optimize_each(units)     # the one-unit-at-a-time loop, same code path
    res.delta[:, 0]                    # (n_units, d) vectors for the first site
    full = ValueOptimizer(h, sites, hp, incremental=False).optimize(units)   # reference passes
    pmet = ValueOptimizer(h, sites, hp, adaptive=AdaptiveNll()).optimize(units)  # PMET's loss

Loss of unit u (ROME's and MEMIT's value objective): mean NLL of the new target over the unit's rewrite
sequences + ``kl_factor`` x mean KL(p_delta || p_0) over its KL prompts (next-token
distribution at the subject's last token) + ``v_weight_decay`` x ||delta_u|| / ||v0_u||^2.
Adam (implemented here on the whole ``(n_units, n_sites, d)`` tensor) updates only the
active units; a unit stops for good once its loss falls below ``v_stop_loss``, and after
every step each vector is projected back into ``||delta|| <= clamp_norm_factor ||v0||``.
The last of ``v_num_grad_steps`` iterations only evaluates, as in the reference code.
With ``adaptive`` (:class:`AdaptiveNll`, PMET's loss) the NLL term's weight follows each
unit's last evaluation and a unit whose target is on top stops on a small KL term.
Since each sequence sees only its own unit's vector and Adam acts per coordinate, the
joint run equals the per-unit loop up to floating-point order.

Passes (:mod:`corredit.editors.value_passes`): by default (``incremental=True``) the tokens
before each sequence's vector position run once, and every step runs only the rest of
the sequence on their cached attention keys and values; ``incremental=False`` runs the
whole sequences at every step (the reference, same results up to floating-point order).
The cached prefixes of one call are kept under ``max_cache_bytes`` by optimising the units
in groups, and one batch's logits under ``max_logit_elements``. ``opt.work`` counts the token-layers computed (forward, and backward through
the blocks above the lowest site).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from corredit.editors.keys import fill_template
from corredit.editors.value_passes import (MAX_LOGIT_ELEMENTS, FullPasses, PrefixPasses,
                                           ValueRows, build_rows, prefix_cache_bytes)

__all__ = ["ValueUnit", "ValueResult", "ValueOptimizer", "MaskedAdam", "AdaptiveNll",
           "units_from_requests", "frozen_parameters"]

_FIELDS = ("delta", "v0", "loss", "nll", "kl", "nll_init", "steps", "stopped", "top", "nll_weight")


@dataclass(frozen=True)
class ValueUnit:
    """The sequences that share one optimised vector.

    ``rewrites`` holds ``(prompt text, target)`` pairs (the first one is the bare prompt,
    whose unedited value is ``v0``); ``kl_prompts`` are full texts; the vector is added at
    ``subject``'s last token in every sequence.
    """

    case_id: str
    subject: str
    rewrites: tuple[tuple[str, str], ...]
    kl_prompts: tuple[str, ...]


def units_from_requests(requests: Sequence, templates: Sequence[str], *,
                        kl_prompt: str = "{} is a") -> list[ValueUnit]:
    """One unit per request: every template applied to its rewrite prompt (bare first)."""
    units = []
    for r in requests:
        rew = tuple((fill_template(t, r.rewrite_prompt), r.target_new) for t in templates)
        units.append(ValueUnit(str(r.case_id), r.subject, rew,
                               (kl_prompt.replace("{}", r.subject, 1),)))
    return units


@dataclass(frozen=True)
class AdaptiveNll:
    """PMET's adaptive loss. The NLL term weighs ``nll_factor``, times ``top_factor`` while
    the unit's new target was the top prediction at every target token of every rewrite
    sequence at its last evaluation; such a unit stops once its weighted KL term
    (``kl_factor x KL``, as the reference compares) is at most ``kl_stop``."""

    nll_factor: float = 1.0
    top_factor: float = 0.1
    kl_stop: float = 0.01


@dataclass
class ValueResult:
    """Optimised vectors and per-unit diagnostics (all on CPU)."""

    case_ids: list[str]
    delta: torch.Tensor        # (n_units, n_sites, d)
    v0: torch.Tensor           # (n_units, n_sites, d) unedited values at the bare prompt
    loss: torch.Tensor         # (n_units,) final total loss (float64)
    nll: torch.Tensor          # (n_units,) final NLL term
    kl: torch.Tensor           # (n_units,) final KL (before kl_factor)
    nll_init: torch.Tensor     # (n_units,) NLL before optimisation
    steps: torch.Tensor        # (n_units,) Adam updates applied
    stopped: torch.Tensor      # (n_units,) bool, stopped early (loss or adaptive KL rule)
    top: torch.Tensor          # (n_units,) bool, target on top at every target token at the end
    nll_weight: torch.Tensor   # (n_units,) weight of the NLL term in the final loss

    @staticmethod
    def concat(parts: Sequence["ValueResult"]) -> "ValueResult":
        """Stack results of disjoint unit sets, in order."""
        return ValueResult(
            [c for p in parts for c in p.case_ids],
            *(torch.cat([getattr(p, f) for p in parts]) for f in _FIELDS),
        )

    def select(self, indices: Sequence[int]) -> "ValueResult":
        """The results of some units, in the given order."""
        ix = torch.as_tensor(list(indices), dtype=torch.long)
        return ValueResult(
            [self.case_ids[i] for i in ix.tolist()],
            *(getattr(self, f)[ix] for f in _FIELDS),
        )

    def diagnostics(self) -> dict:
        """Per-unit lists: loss, nll, kl, nll_init, steps, stopped, top, delta_norm, v0_norm."""
        return {
            "case_id": list(self.case_ids),
            "v_loss": self.loss.tolist(),
            "v_nll": self.nll.tolist(),
            "v_kl": self.kl.tolist(),
            "v_nll_init": self.nll_init.tolist(),
            "v_steps": self.steps.tolist(),
            "v_stopped_early": self.stopped.tolist(),
            "v_top": self.top.tolist(),
            "delta_norm": self.delta.double().norm(dim=-1).squeeze(-1).tolist(),
            "v0_norm": self.v0.double().norm(dim=-1).squeeze(-1).tolist(),
        }


class MaskedAdam:
    """Adam on an ``(n, ...)`` tensor where only rows marked active take a step (their
    moments and step counts advance; inactive rows keep theirs untouched)."""

    def __init__(self, shape: Sequence[int], *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, dtype=torch.float32, device=None) -> None:
        self.lr, (self.b1, self.b2), self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.m = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.t = torch.zeros(shape[0], dtype=torch.long, device=device)

    @torch.no_grad()
    def step(self, param: torch.Tensor, grad: torch.Tensor, active: torch.Tensor) -> None:
        """One Adam update of the active rows of ``param`` (in place)."""
        a = active.view(-1, *([1] * (param.dim() - 1)))
        self.t += active.long()
        g = torch.where(a, grad, torch.zeros_like(grad))
        self.m = torch.where(a, self.b1 * self.m + (1 - self.b1) * g, self.m)
        self.v = torch.where(a, self.b2 * self.v + (1 - self.b2) * g * g, self.v)
        t = self.t.clamp(min=1).to(param.dtype).view(a.shape).expand_as(param)
        bc1 = 1 - torch.pow(torch.full_like(t, self.b1), t)
        bc2 = 1 - torch.pow(torch.full_like(t, self.b2), t)
        denom = self.v.sqrt() / bc2.sqrt() + self.eps
        update = (self.lr / bc1) * self.m / denom
        param.sub_(torch.where(a, update, torch.zeros_like(update)))


@contextlib.contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` on every parameter, restoring the flags afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


class ValueOptimizer:
    """Joint optimisation of one vector per unit and per site (see module docstring)."""

    def __init__(self, h, sites: Sequence, hp, *, max_batch_tokens: int = 16384,
                 incremental: bool = True, max_cache_bytes: int = 2 << 30,
                 adaptive: AdaptiveNll | None = None,
                 max_logit_elements: int = MAX_LOGIT_ELEMENTS) -> None:
        if not sites:
            raise ValueError("ValueOptimizer needs at least one site")
        self.h = h
        self.sites = tuple(sites)
        self.hp = hp
        self.max_batch_tokens = int(max_batch_tokens)
        self.incremental = bool(incremental)
        self.max_cache_bytes = int(max_cache_bytes)
        self.max_logit_elements = int(max_logit_elements)
        self.adaptive = adaptive
        self.model_dtype = next(h.model.parameters()).dtype
        self.dtype = torch.float64 if self.model_dtype == torch.float64 else torch.float32
        #: Token-layers computed so far (forward, and backward through the blocks above
        #: the lowest site), summed over calls; set to zeros to restart the count.
        self.work = {"forward": 0, "backward": 0}

    # -- public -------------------------------------------------------------------------
    def optimize(self, units: Sequence[ValueUnit]) -> ValueResult:
        """All units jointly."""
        if not units:
            raise ValueError("optimize: no units")
        with frozen_parameters(self.h.model):
            return ValueResult.concat([self._run(g) for g in self._groups(list(units))])

    def optimize_each(self, units: Sequence[ValueUnit]) -> ValueResult:
        """One unit at a time (the reference procedure; same code path)."""
        return ValueResult.concat([self.optimize([u]) for u in units])

    # -- internals ----------------------------------------------------------------------
    def _groups(self, units: list[ValueUnit]) -> list[list[ValueUnit]]:
        """Units split so that each group's cached prefixes fit ``max_cache_bytes`` (units
        are independent, so the split changes nothing but memory)."""
        if not self.incremental:
            return [units]
        groups: list[list[ValueUnit]] = [[]]
        used = 0
        for u in units:
            size = prefix_cache_bytes(self.h, self._rows([u], logits=False))
            if groups[-1] and used + size > self.max_cache_bytes:
                groups.append([])
                used = 0
            groups[-1].append(u)
            used += size
        return groups

    def _rows(self, units: list[ValueUnit], *, logits: bool = True) -> ValueRows:
        return build_rows(self.h.tokenizer, units, logits=logits)

    def _terms(self, rows: ValueRows, idx: list[int], logits: torch.Tensor, logp0: torch.Tensor,
               kl_slot: dict[int, int], n_units: int):
        """Per-unit NLL and KL sums contributed by rows ``idx`` (differentiable) and the
        number of target tokens that are not the top prediction."""
        dev = logits.device
        nll = torch.zeros(n_units, dtype=torch.float64, device=dev)
        kl = torch.zeros(n_units, dtype=torch.float64, device=dev)
        miss = torch.zeros(n_units, dtype=torch.float64, device=dev)
        # rewrite rows: every target token at its position
        r_i, p_i, t_i, w_i, u_i = [], [], [], [], []
        k_r, k_p, k_slot, k_u = [], [], [], []
        for j, i in enumerate(idx):
            if rows.kind[i] == 0:
                n = len(rows.tgt[i])
                for k, tid in enumerate(rows.tgt[i]):
                    r_i.append(j)
                    p_i.append(k)                     # compact slot (see logit_positions)
                    t_i.append(tid)
                    w_i.append(1.0 / n)
                    u_i.append(rows.unit[i])
            else:
                k_r.append(j)
                k_p.append(0)
                k_slot.append(kl_slot[i])
                k_u.append(rows.unit[i])
        if r_i:
            sel = logits[torch.tensor(r_i, device=dev), torch.tensor(p_i, device=dev)]
            lp = torch.log_softmax(sel.to(self.dtype), dim=-1)
            tok_lp = lp.gather(1, torch.tensor(t_i, device=dev).unsqueeze(1)).squeeze(1)
            w = torch.tensor(w_i, dtype=torch.float64, device=dev)
            nll = nll.index_add(0, torch.tensor(u_i, device=dev), -tok_lp.double() * w)
            below = (tok_lp < lp.max(-1).values).detach().double()
            miss = miss.index_add(0, torch.tensor(u_i, device=dev), below)
        if k_r:
            sel = logits[torch.tensor(k_r, device=dev), torch.tensor(k_p, device=dev)]
            lp = torch.log_softmax(sel.to(self.dtype), dim=-1)
            lp0 = logp0[torch.tensor(k_slot, device=dev)]
            per = (lp.exp() * (lp - lp0)).sum(-1)          # KL(p_delta || p_0), as the references
            kl = kl.index_add(0, torch.tensor(k_u, device=dev), per.double())
        return nll, kl, miss

    def _run(self, units: list[ValueUnit]) -> ValueResult:
        hp = self.hp
        rows = self._rows(units)
        n, n_s = len(units), len(self.sites)
        dev = self.h.device
        kl_rows = [i for i, k in enumerate(rows.kind) if k == 1]
        kl_slot = {i: s for s, i in enumerate(kl_rows)}
        engine = PrefixPasses if self.incremental else FullPasses
        passes = engine(self.h, self.sites, rows, max_batch_tokens=self.max_batch_tokens,
                        max_logit_elements=self.max_logit_elements)
        n_nll = rows.n_nll.to(torch.float64).to(dev)
        n_kl = rows.n_kl.to(torch.float64).clamp(min=1).to(dev)

        # initial pass: v0 at the bare rows, p0 at the KL rows, NLL before editing
        d = None
        v0 = None
        logp0 = None
        nll0 = torch.zeros(n, dtype=torch.float64, device=dev)
        bare = {b: u for u, b in enumerate(rows.bare_row)}
        with torch.no_grad():
            for idx in passes.chunks(range(len(rows.ids))):
                logits, values = passes.forward(idx, None, read=True)
                if v0 is None:
                    d = values[self.sites[0]].shape[-1]
                    v0 = torch.zeros(n, n_s, d, dtype=self.dtype, device=dev)
                    logp0 = torch.zeros(len(kl_rows), logits.shape[-1], dtype=self.dtype, device=dev)
                for j, i in enumerate(idx):
                    if i in bare:
                        for s_j, s in enumerate(self.sites):
                            v0[bare[i], s_j] = values[s][j].to(self.dtype)
                    if i in kl_slot:
                        logp0[kl_slot[i]] = torch.log_softmax(   # slot 0: see logit_positions
                            logits[j, 0].to(self.dtype), dim=-1)
                part_nll, _, _ = self._terms(rows, idx, logits, logp0, kl_slot, n)
                nll0 += part_nll
        nll0 = nll0 / n_nll
        v0_norm = v0.norm(dim=-1)                                   # (n, n_s)
        max_norm = hp.clamp_norm_factor * v0_norm

        delta = torch.zeros(n, n_s, d, dtype=self.dtype, device=dev, requires_grad=True)
        adam = MaskedAdam(delta.shape, lr=hp.v_lr, betas=tuple(hp.adam_betas), eps=hp.adam_eps,
                          dtype=self.dtype, device=dev)
        active = torch.ones(n, dtype=torch.bool, device=dev)
        f_loss = torch.full((n,), float("nan"), dtype=torch.float64, device=dev)
        f_nll, f_kl = f_loss.clone(), f_loss.clone()
        steps = torch.zeros(n, dtype=torch.long, device=dev)
        stopped = torch.zeros(n, dtype=torch.bool, device=dev)
        ada = self.adaptive
        nll_w = torch.full((n,), ada.nll_factor if ada else 1.0, dtype=torch.float64, device=dev)
        f_w, f_top = nll_w.clone(), stopped.clone()
        row_unit = torch.tensor(rows.unit, dtype=torch.long)

        for it in range(hp.v_num_grad_steps):
            live = active.cpu()[row_unit].nonzero().flatten().tolist()
            if not live:
                break
            backward = it < hp.v_num_grad_steps - 1
            delta.grad = None
            nll_acc = torch.zeros(n, dtype=torch.float64, device=dev)
            kl_acc = torch.zeros(n, dtype=torch.float64, device=dev)
            miss = torch.zeros(n, dtype=torch.float64, device=dev)
            for idx in passes.chunks(live):
                with torch.set_grad_enabled(backward):
                    logits, _ = passes.forward(idx, delta, grad=backward)
                    nll_p, kl_p, miss_p = self._terms(rows, idx, logits, logp0, kl_slot, n)
                    nll_p = nll_p / n_nll
                    kl_p = kl_p / n_kl
                    if backward:
                        (nll_w * nll_p + hp.kl_factor * kl_p).sum().backward()
                nll_acc += nll_p.detach()
                kl_acc += kl_p.detach()
                miss += miss_p
            with torch.set_grad_enabled(backward):
                decay = hp.v_weight_decay * (delta.norm(dim=-1) / v0_norm.pow(2)).sum(-1)
                if backward:
                    decay[active].sum().backward()
            total = nll_w * nll_acc + hp.kl_factor * kl_acc + decay.detach().double()
            top = miss == 0
            f_loss = torch.where(active, total, f_loss)
            f_nll = torch.where(active, nll_acc, f_nll)
            f_kl = torch.where(active, kl_acc, f_kl)
            f_top = torch.where(active, top, f_top)
            f_w = torch.where(active, nll_w, f_w)
            done = active & (total < hp.v_stop_loss)
            if ada:        # PMET: the NLL weight of the next step, and the KL stopping rule
                done |= active & top & (hp.kl_factor * kl_acc <= ada.kl_stop)
                nll_w = torch.where(top, torch.full_like(nll_w, ada.nll_factor * ada.top_factor),
                                    torch.full_like(nll_w, ada.nll_factor))
            stopped |= done
            active = active & ~done
            if not backward:
                break
            with torch.no_grad():
                adam.step(delta, delta.grad, active)
                steps += active.long()
                norms = delta.norm(dim=-1)
                over = active.unsqueeze(-1) & (norms > max_norm)
                scale = torch.where(over, max_norm / norms.clamp(min=1e-30), torch.ones_like(norms))
                delta.mul_(scale.unsqueeze(-1))

        for k, v in passes.work.items():
            self.work[k] += v
        return ValueResult(
            case_ids=[u.case_id for u in units],
            delta=delta.detach().cpu(), v0=v0.detach().cpu(),
            loss=f_loss.cpu(), nll=f_nll.cpu(), kl=f_kl.cpu(), nll_init=nll0.cpu(),
            steps=steps.cpu(), stopped=stopped.cpu(), top=f_top.cpu(), nll_weight=f_w.cpu(),
        )
