"""Residual-stream targets mapped through a norm that follows the MLP (Gemma-3).

Usage::

    from corredit.editors.post_norm import mlp_output_change
    norm = h.adapter.post_norm_module(h.model, layer)          # None without such a norm
    change = mlp_output_change(norm, m, resid)                 # (n, d) float64

MEMIT asks each layer's MLP to move the residual stream by ``resid``. Where a norm ``N``
sits between the MLP output ``m`` and the residual stream (``x + N(m)``), the MLP output
must instead move to an ``m'`` with ``N(m') ≈ N(m) + resid``. For a scale-invariant norm
with elementwise gain ``g`` (RMSNorm: ``N(x) = g ⊙ x / rms(x)``) the reachable outputs are
``g ⊙ v`` with ``rms(v) = 1``. The nearest one to the target ``y = N(m) + resid`` solves
``min ||g ⊙ v - y||`` subject to ``||v||² = d``: ``v_i = g_i y_i / (g_i² + μ)`` with the
scalar ``μ`` (``> -min g²``) found by bisection so that the constraint holds; when ``y``
is reachable, ``μ = 0`` and ``N(m') = y`` exactly. ``m' = rms(m) · v`` keeps the MLP
output's scale (with ``resid = 0``, ``m' = m``). Matching the direction of ``y / g``
instead is not enough when the gains span orders of magnitude (Gemma-3's reach 585
against a median near 1): components of ``resid`` where ``g`` is small blow up, the
rescaling shrinks the large-gain components, and the residual stream moves by hundreds.
The gain is read off the norm itself (``N(1) = g``), so no norm class is named here. The
part of ``y`` the norm cannot reach is left to the next layers, which MEMIT recomputes
on the partly edited model.
"""

from __future__ import annotations

import torch

__all__ = ["mlp_output_change", "nearest_unit_rms"]


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=-1, keepdim=True).sqrt()


def nearest_unit_rms(gain: torch.Tensor, y: torch.Tensor, *, iters: int = 200) -> torch.Tensor:
    """``v`` (n, d) with ``rms(v) = 1`` minimising ``||gain ⊙ v - y||`` per row (float64)."""
    d = y.shape[-1]
    g2 = gain.pow(2)
    gy = gain * y                                                        # (n, d)

    def excess(mu: torch.Tensor) -> torch.Tensor:                      # ||v(mu)||² - d
        return (gy / (g2 + mu)).pow(2).sum(-1, keepdim=True) - d

    floor = -float(g2.min())
    lo = torch.full((y.shape[0], 1), floor, dtype=torch.float64, device=y.device)
    lo = lo + 1e-12 * max(1.0, abs(floor))
    hi = (gy.pow(2).sum(-1, keepdim=True) / d).sqrt().clamp(min=0.0)    # excess(hi) <= 0
    for _ in range(iters):
        mid = (lo + hi) / 2
        big = excess(mid) > 0
        lo = torch.where(big, mid, lo)
        hi = torch.where(big, hi, mid)
    return gy / (g2 + hi)


@torch.no_grad()
def mlp_output_change(norm: torch.nn.Module, m: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
    """The change of the MLP outputs ``m`` (n, d) whose normalised values move by about
    ``resid`` (n, d); float64 (see the module docstring)."""
    p = next(norm.parameters(), None)
    dev = p.device if p is not None else m.device
    dt = p.dtype if p is not None else torch.float32
    m64 = m.to(torch.float64)
    gain = norm(torch.ones(1, m.shape[-1], dtype=dt, device=dev)).to(torch.float64)[0].to(m.device)
    now = norm(m.to(device=dev, dtype=dt)).to(torch.float64).to(m.device)
    # N(x) = gain * x / s(x) with s(m) = rms(m) up to the norm's eps; for rms(m') = rms(m),
    # N(m') = scale * gain * v with scale = rms(m) / s(m), read off N(m) by least squares
    live = gain.abs() > 1e-6 * gain.abs().max().clamp(min=1e-30)
    ml = m64[:, live]
    inv_s = ((now[:, live] / gain[live]) * ml).sum(-1, keepdim=True) / ml.pow(2).sum(-1, keepdim=True).clamp(min=1e-300)
    scale = _rms(m64) * inv_s
    y = now + resid.to(torch.float64)
    target = _rms(m64) * nearest_unit_rms(gain, y / scale.clamp(min=1e-30))
    return target - m64
