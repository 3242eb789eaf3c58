"""Solves shared by the closed-form editors.

Usage::

    from corredit.editors.linalg import rank_one_update, memit_update, SPDSolver, second_moment_solver
    solver = SPDSolver(C)                       # Cholesky of a float64 SPD matrix
    u = solver.solve(k)                         # C^-1 k
    u = second_moment_solver(C, "float32").solve(k)   # ROME reference: float32 inverse
    dW, lam = rank_one_update(u / u.norm(), k_star, delta)    # dW = lam u^T
    dW = memit_update(R, K, C, lam=15000.0)     # R K^T (lam C + K K^T)^-1

All inputs are promoted to float64; results are float64 (callers cast when applying).
:class:`Float32InverseSolver` alone computes in float32, to reproduce the references.
"""

from __future__ import annotations

import torch

__all__ = ["SPDSolver", "Float32InverseSolver", "second_moment_solver", "rank_one_update",
           "memit_update", "as_float64"]


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


class Float32InverseSolver:
    """``A^-1 b`` as ROME's reference ``compute_u`` forms it: ``A`` rounded to float32 and
    inverted explicitly in float32 (``torch.inverse``), the product with ``b`` (rounded to
    float32) taken in float32; the result is returned as float64."""

    def __init__(self, a: torch.Tensor, *, what: str = "matrix") -> None:
        a32 = as_float64(a).to(torch.float32)
        inv, info = torch.linalg.inv_ex(a32)
        if int(info) != 0 or not torch.isfinite(inv).all():
            raise ValueError(f"{what} is singular in float32; collect statistics over more "
                             f"tokens than its size {a32.shape[0]}")
        self.inverse = inv

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """``A^-1 b`` for a vector or a matrix of columns (float32 arithmetic)."""
        b32 = torch.as_tensor(b).detach().to(self.inverse.device, torch.float32)
        return (self.inverse @ b32).to(torch.float64)


def second_moment_solver(cov: torch.Tensor, precision: str = "float64", *,
                         what: str = "matrix") -> SPDSolver | Float32InverseSolver:
    """The solver for ``C^-1 b`` at ``precision``: ``"float64"`` (Cholesky,
    :class:`SPDSolver`) or ``"float32"`` (the ROME reference's explicit float32 inverse,
    :class:`Float32InverseSolver`)."""
    if precision == "float64":
        return SPDSolver(cov, what=what)
    if precision == "float32":
        return Float32InverseSolver(cov, what=what)
    raise ValueError(f"unknown precision {precision!r}; known: float64, float32")


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
