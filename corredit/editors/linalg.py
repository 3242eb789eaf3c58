"""Float64 solves shared by the closed-form editors.

Usage::

    from corredit.editors.linalg import rank_one_update, memit_update, SPDSolver
    solver = SPDSolver(C)                       # Cholesky of a float64 SPD matrix
    u = solver.solve(k)                         # C^-1 k
    dW, lam = rank_one_update(u / u.norm(), k_star, delta)    # dW = lam u^T
    dW = memit_update(R, K, C, lam=15000.0)     # R K^T (lam C + K K^T)^-1

All inputs are promoted to float64; results are float64 (callers cast when applying).
"""

from __future__ import annotations

import torch

__all__ = ["SPDSolver", "rank_one_update", "memit_update", "as_float64"]


def as_float64(x) -> torch.Tensor:
    """A float64 tensor from a tensor or array-like."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


class SPDSolver:
    """Solves ``A x = b`` for a symmetric positive definite ``A`` (float64, Cholesky);
    the error names ``what`` when ``A`` is not positive definite."""

    def __init__(self, a: torch.Tensor, *, what: str = "matrix") -> None:
        a = as_float64(a)
        a = 0.5 * (a + a.T)
        factor, info = torch.linalg.cholesky_ex(a)
        if int(info) != 0:
            raise ValueError(
                f"{what} is not positive definite (Cholesky failed at column {int(info)}); "
                f"collect statistics over more tokens than its size {a.shape[0]}"
            )
        self.factor = factor

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """``A^-1 b`` for a vector or a matrix of columns."""
        b = as_float64(b).to(self.factor.device)
        vec = b.dim() == 1
        x = torch.cholesky_solve(b.unsqueeze(1) if vec else b, self.factor)
        return x.squeeze(1) if vec else x


def rank_one_update(u: torch.Tensor, k: torch.Tensor, residual: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """ROME's update ``dW = lam u^T`` with ``lam = residual / (u^T k)``, so that
    ``(W + dW) k = W k + residual``. Returns ``(dW (d, d_k), lam (d,))`` in float64."""
    u, k, residual = as_float64(u), as_float64(k), as_float64(residual)
    denom = torch.dot(u, k)
    lam = residual / denom
    return torch.outer(lam, u), lam


def memit_update(resid: torch.Tensor, keys: torch.Tensor, cov: torch.Tensor, lam: float
                 ) -> torch.Tensor:
    """``dW = R K^T (lam C + K K^T)^-1`` with ``R`` (d, n), ``K`` (d_k, n), ``C`` (d_k, d_k)."""
    resid, keys, cov = as_float64(resid), as_float64(keys), as_float64(cov)
    a = lam * cov + keys @ keys.T
    adj = SPDSolver(a, what="lam*C + K K^T").solve(keys)      # (d_k, n)
    return resid @ adj.T
