"""Seeded cluster bootstrap: resample the independent units (subjects or cases), not rows.

Usage::

    from corredit.analysis.bootstrap import Resampler, bootstrap_ci
    bootstrap_ci(values, clusters=subjects, seed=0)     # (mean, lo, hi), whole subjects resampled
    r = Resampler(subjects)                             # one plan for several statistics
    reps = r.means(x, n_boot=1000, seed=0)              # (n_boot, k) replicate column means
    lo, hi = percentile_interval(reps, 0.95)

Rows of one cluster are drawn together: a replicate draws as many clusters as there are,
with replacement, and weighs every row by how often its cluster was drawn. With
``strata`` the clusters are drawn within each stratum (a label met in two strata is two
units there). Means are ratio estimators over cluster sums, NaN-aware (a NaN row counts
in neither sum). Same seed, same interval.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

__all__ = ["Resampler", "bootstrap_ci", "percentile_interval", "weighted_auc"]

_CHUNK_CELLS = 2_000_000


def percentile_interval(samples: np.ndarray, ci: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap replicates along axis 0 (NaN replicates ignored)."""
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci={ci}: expected a level in (0, 1)")
    alpha = (1.0 - ci) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(np.asarray(samples, dtype=float), [alpha, 1.0 - alpha], axis=0)
    return lo, hi


class Resampler:
    """A resampling plan over ``n`` rows: ``clusters`` labels each row's unit (None:
    every row its own unit, the naive bootstrap); ``strata`` labels each row's stratum.

    Example: ``Resampler(["s1", "s1", "s2"]).means(np.array([[1.], [0.], [1.]]), 200)``.
    """

    def __init__(self, clusters: Iterable | None = None, *, strata: Iterable | None = None,
                 n: int | None = None) -> None:
        if clusters is None:
            if n is None:
                raise ValueError("Resampler: give clusters or n")
            labels = np.arange(n)
        else:
            labels = np.asarray(list(clusters) if not isinstance(clusters, (np.ndarray, pd.Series))
                                else clusters, dtype=object)
        n = len(labels)
        strata_arr = (np.zeros(n, dtype=np.int64) if strata is None
                      else pd.factorize(pd.Series(np.asarray(list(strata), dtype=object)))[0])
        if len(strata_arr) != n:
            raise ValueError(f"Resampler: {len(strata_arr)} strata labels for {n} rows")
        pairs = pd.MultiIndex.from_arrays([strata_arr, pd.Series(labels, dtype=object)])
        codes, uniques = pd.factorize(pairs)
        #: row -> unit index
        self.codes = codes.astype(np.int64)
        #: number of units (clusters within strata)
        self.n_units = len(uniques)
        self._unit_stratum = np.asarray(uniques.get_level_values(0), dtype=np.int64)
        self._strata = [np.flatnonzero(self._unit_stratum == s)
                        for s in np.unique(self._unit_stratum)]
        self.n = n

    def unit_sums(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit sums and counts of the non-NaN values of ``x`` (shape ``(n, k)``)."""
        x = np.asarray(x, dtype=float).reshape(self.n, -1)
        ok = ~np.isnan(x)
        sums = np.zeros((self.n_units, x.shape[1]))
        counts = np.zeros((self.n_units, x.shape[1]))
        np.add.at(sums, self.codes, np.where(ok, x, 0.0))
        np.add.at(counts, self.codes, ok.astype(float))
        return sums, counts

    def weights(self, n_boot: int, seed: int | np.random.Generator = 0) -> Iterator[np.ndarray]:
        """Chunks of replicate weights, shape ``(m, n_units)``: how often each unit was drawn."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        g = max(1, self.n_units)
        chunk = max(1, _CHUNK_CELLS // g)
        for start in range(0, n_boot, chunk):
            m = min(chunk, n_boot - start)
            offset = (np.arange(m) * self.n_units)[:, None]
            w = np.zeros(m * self.n_units)
            for units in self._strata:
                draw = units[rng.integers(0, len(units), size=(m, len(units)))]
                w += np.bincount((draw + offset).ravel(), minlength=m * self.n_units)
            yield w.reshape(m, self.n_units)

    def replicates(self, stat: Callable[[np.ndarray], np.ndarray], n_boot: int,
                   seed: int | np.random.Generator = 0) -> np.ndarray:
        """``stat(weights)`` over every chunk of :meth:`weights`, stacked: ``stat`` maps
        weights ``(m, n_units)`` to replicates ``(m, ...)``."""
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            parts = [np.asarray(stat(w)) for w in self.weights(n_boot, seed)]
        return np.concatenate(parts, axis=0)

    def means(self, x: np.ndarray, n_boot: int, seed: int | np.random.Generator = 0
              ) -> np.ndarray:
        """Replicates of the NaN-aware column means of ``x`` (``(n, k)``): ``(n_boot, k)``."""
        sums, counts = self.unit_sums(x)
        return self.replicates(lambda w: (w @ sums) / (w @ counts), n_boot, seed)


def bootstrap_ci(values: Iterable[float], clusters: Iterable | None = None, *,
                 strata: Iterable | None = None, n_boot: int = 1000, ci: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of ``values``: ``(mean, lo, hi)``.

    Example: ``bootstrap_ci(es, clusters=subjects, seed=0)``. With ``clusters`` whole
    clusters are resampled (within ``strata`` when given); without, single values.
    NaNs are left out; no values gives NaNs, one unit gives a zero-width interval.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci={ci}: expected a level in (0, 1)")
    x = np.asarray(list(values) if not isinstance(values, (np.ndarray, pd.Series)) else values,
                   dtype=float)
    keep = ~np.isnan(x)
    if not keep.any():
        return (float("nan"),) * 3
    x = x[keep]
    labels = None if clusters is None else np.asarray(list(clusters), dtype=object)[keep]
    groups = None if strata is None else np.asarray(list(strata), dtype=object)[keep]
    r = Resampler(labels, strata=groups, n=len(x))
    mean = float(x.mean())
    if r.n_units == 1 or n_boot <= 0:
        return mean, mean, mean
    lo, hi = percentile_interval(r.means(x[:, None], n_boot, seed)[:, 0], ci)
    return mean, float(lo), float(hi)


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mann-Whitney numerator and denominator of the ROC-AUC under row weights.

    ``weights`` has shape ``(m, n)`` (one row per replicate); returns ``(num, den)`` of
    shape ``(m,)`` with AUC = num / den: the weighted share of (positive, negative) pairs
    in which the positive scores higher, ties counting one half. Sums of ``num`` and
    ``den`` over strata give the stratified AUC (pairs compared only within a stratum).
    """
    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    levels, inverse = np.unique(scores, return_inverse=True)
    onehot = np.zeros((len(scores), len(levels)))
    onehot[np.arange(len(scores)), inverse] = 1.0
    pos = (weights * positive) @ onehot            # (m, L) positive weight per score level
    neg = (weights * ~positive) @ onehot
    below = np.cumsum(neg, axis=1) - neg
    num = np.sum(pos * (below + 0.5 * neg), axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    return num, den
