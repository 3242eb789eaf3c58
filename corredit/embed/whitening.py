"""Editor-space geometry: whitened keys and the matrices that decide interference.

Keys are rows: ``keys`` has shape (n, d_k), one key per edit. ``C`` is the layer's
uncentred key second moment (d_k, d_k), or any object with ``.matrix()`` (a
``corredit.stats.SecondMoment``). Everything is computed in float64 with Cholesky or
eigen solves, never explicit inverses of ill-conditioned products.

Usage::

    from corredit.embed.whitening import whiten, whitened_gram, interference, \
        memit_crosstalk, memit_transfer
    W = whiten(keys, C)                 # rows C^{-1/2} k_i ; W @ W.T == whitened_gram
    S = whitened_gram(keys, C)          # S[i, j] = k_i^T C^{-1} k_j
    P = interference(keys, C)           # P[i, j] = k_i^T C^{-1} k_j / k_i^T C^{-1} k_i
    G = memit_crosstalk(keys, C, lam)   # G = K^T (lam C)^{-1} K  (K = keys.T)
    T = memit_transfer(keys, C, lam)    # (I + G)^{-1} G :  MEMIT's  dW K = R T

``ridge`` adds ``ridge * I`` to C in every function, for second moments estimated from
too few tokens to be positive definite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

__all__ = [
    "second_moment_matrix",
    "inverse_sqrt",
    "whiten",
    "whitened_gram",
    "interference",
    "memit_crosstalk",
    "memit_transfer",
]


def second_moment_matrix(C: Any, *, ridge: float = 0.0) -> np.ndarray:
    """``C`` (an array or an object with ``.matrix()``) as a symmetric float64 array,
    plus ``ridge * I``."""
    M = C.matrix() if hasattr(C, "matrix") else C
    if hasattr(M, "detach"):  # a torch tensor
        M = M.detach().cpu().numpy()
    M = np.array(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"second moment must be a square matrix, got shape {M.shape}")
    if not np.all(np.isfinite(M)):
        raise ValueError("second moment holds non-finite values")
    M = (M + M.T) / 2
    if ridge:
        M[np.diag_indices_from(M)] += ridge
    return M


def _keys(keys: Any, d: int, name: str = "keys") -> np.ndarray:
    K = np.asarray(keys.detach().cpu().numpy() if hasattr(keys, "detach") else keys,
                   dtype=np.float64)
    if K.ndim == 1:
        K = K[None, :]
    if K.ndim != 2 or K.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}) to match the second moment, "
                         f"got {K.shape}")
    return K


def _cholesky(M: np.ndarray) -> tuple[np.ndarray, bool]:
    try:
        return linalg.cho_factor(M, lower=True, check_finite=False)
    except linalg.LinAlgError:
        w = np.linalg.eigvalsh(M)
        raise ValueError(
            f"second moment is not positive definite (smallest eigenvalue {w.min():.3g}); "
            "collect statistics over more tokens or pass ridge > 0"
        ) from None


def inverse_sqrt(C: Any, *, ridge: float = 0.0) -> np.ndarray:
    """The symmetric ``C^{-1/2}`` (float64) by eigendecomposition."""
    M = second_moment_matrix(C, ridge=ridge)
    w, V = np.linalg.eigh(M)
    if w.min() <= 0:
        raise ValueError(
            f"second moment is not positive definite (smallest eigenvalue {w.min():.3g}); "
            "collect statistics over more tokens or pass ridge > 0"
        )
    return (V / np.sqrt(w)) @ V.T


def whiten(keys: Any, C: Any, *, ridge: float = 0.0) -> np.ndarray:
    """Rows ``C^{-1/2} k_i`` (float64, shape (n, d_k))."""
    R = inverse_sqrt(C, ridge=ridge)
    return _keys(keys, R.shape[0]) @ R  # R is symmetric


def whitened_gram(keys: Any, C: Any, keys_b: Any | None = None, *,
                  ridge: float = 0.0) -> np.ndarray:
    """``S[i, j] = k_i^T C^{-1} k_j`` (float64), against ``keys_b`` when given."""
    M = second_moment_matrix(C, ridge=ridge)
    A = _keys(keys, M.shape[0])
    B = A if keys_b is None else _keys(keys_b, M.shape[0], "keys_b")
    X = linalg.cho_solve(_cholesky(M), B.T, check_finite=False)  # C^{-1} B^T
    S = A @ X
    if keys_b is None:
        S = (S + S.T) / 2
    return S


def interference(keys: Any, C: Any, *, ridge: float = 0.0) -> np.ndarray:
    """``P[i, j] = k_i^T C^{-1} k_j / k_i^T C^{-1} k_i``: how much of the update written
    for key i a rank-one (ROME-style) edit along ``C^{-1} k_i`` transfers to key j.
    The diagonal is 1; rows of identical keys are identical."""
    S = whitened_gram(keys, C, ridge=ridge)
    d = np.diag(S).copy()
    if np.any(d <= 0):
        bad = int(np.flatnonzero(d <= 0)[0])
        raise ValueError(f"key {bad} has zero whitened norm; interference is undefined")
    return S / d[:, None]


def memit_crosstalk(keys: Any, C: Any, lam: float, *, ridge: float = 0.0) -> np.ndarray:
    """MEMIT's ``G = K^T (lam C)^{-1} K`` for the batch's keys (rows of ``keys``)."""
    if lam <= 0:
        raise ValueError(f"lam (mom2_update_weight) must be > 0, got {lam}")
    return whitened_gram(keys, C, ridge=ridge) / lam


def memit_transfer(keys: Any, C: Any, lam: float, *, ridge: float = 0.0) -> np.ndarray:
    """``T = (I + G)^{-1} G``: MEMIT's update ``dW = R K^T (lam C + K K^T)^{-1}`` moves
    the batch's own values by ``dW K = R T``; off-diagonal entries are cross-talk."""
    G = memit_crosstalk(keys, C, lam, ridge=ridge)
    n = G.shape[0]
    return np.linalg.solve(np.eye(n) + G, G)
