"""Residual-stream targets mapped through a norm that follows the MLP (Gemma-3).

Usage::

    from corredit.editors.post_norm import mlp_output_change
    norm = h.adapter.post_norm_module(h.model, layer)          # None without such a norm
    change = mlp_output_change(norm, m, resid)                 # (n, d) float64

MEMIT asks each layer's MLP to move the residual stream by ``resid``. Where a norm ``N``
sits between the MLP output ``m`` and the residual stream (``x + N(m)``), the MLP output
must instead move to an ``m'`` with ``N(m') ≈ N(m) + resid``. For a scale-invariant norm
with elementwise gain ``g`` (RMSNorm: ``N(x) = g ⊙ x / rms(x)``) the reachable outputs are
``g ⊙ u / rms(u)``; the nearest one to the target ``y = N(m) + resid`` in direction is
``u = y / g``, and ``m' = rms(m) · u / rms(u)`` keeps the MLP output's scale (with
``resid = 0``, ``m' = m``). The gain is read off the norm itself (``N(1) = g``), so no
norm class is named here. The part of ``y`` the norm cannot reach is left to the next
layers, which MEMIT recomputes on the partly edited model.
"""

from __future__ import annotations

import torch

__all__ = ["mlp_output_change"]


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=-1, keepdim=True).sqrt()


@torch.no_grad()
def mlp_output_change(norm: torch.nn.Module, m: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
    """The change of the MLP outputs ``m`` (n, d) whose normalised values move by about
    ``resid`` (n, d); float64 (see the module docstring)."""
    p = next(norm.parameters(), None)
    dev = p.device if p is not None else m.device
    dt = p.dtype if p is not None else torch.float32
    m64 = m.to(torch.float64)
    gain = norm(torch.ones(1, m.shape[-1], dtype=dt, device=dev)).to(torch.float64)[0].to(m.device)
    floor = 1e-6 * gain.abs().max().clamp(min=1e-30)
    gain = torch.where(gain.abs() < floor, torch.where(gain < 0, -floor, floor), gain)
    y = norm(m.to(device=dev, dtype=dt)).to(torch.float64).to(m.device) + resid.to(torch.float64)
    u = y / gain
    target = _rms(m64) * u / _rms(u).clamp(min=1e-30)
    return target - m64
