"""Covariance statistics: the uncentred second moment ``C = E[k kᵀ]`` of MLP keys.

Usage::

    from corredit.stats import second_moments, StatsCache, TextFileCorpus, TextsCorpus
    corpus = TextFileCorpus("wiki.test.raw.txt", clean="wikitext")
    mom = second_moments(h, layers=[2, 3], corpus=corpus, max_tokens=20000)
    C = mom[3].matrix()                                   # float64 (d_k, d_k)
    mom = StatsCache("stats-cache").get(h, [2, 3], corpus, max_tokens=20000)

All requested layers come from one forward pass per batch that stops after the highest
layer; sums are float64 over non-padding tokens; the cache records provenance, resumes
interrupted runs and reads/writes the reference ``.npz`` layout.
"""

from corredit.stats.cache import StatsCache
from corredit.stats.collect import (
    PRECISIONS,
    StatsState,
    TokenBatch,
    accumulate,
    context_length,
    iter_token_batches,
    second_moments,
)
from corredit.stats.corpus import (
    CLEANERS,
    Corpus,
    HFDatasetCorpus,
    TextFileCorpus,
    TextsCorpus,
    clean_wikitext,
)
from corredit.stats.moment import SecondMoment
from corredit.stats.npz import load_npz, reference_filename, save_npz
from corredit.stats.provenance import ProvenanceError, WeightsHasher, weights_hash
from corredit.stats.throughput import bare_forward, measure_throughput

__all__ = [
    "second_moments",
    "accumulate",
    "StatsState",
    "SecondMoment",
    "StatsCache",
    "ProvenanceError",
    "Corpus",
    "TextFileCorpus",
    "TextsCorpus",
    "HFDatasetCorpus",
    "CLEANERS",
    "clean_wikitext",
    "TokenBatch",
    "iter_token_batches",
    "bare_forward",
    "measure_throughput",
    "context_length",
    "PRECISIONS",
    "load_npz",
    "save_npz",
    "reference_filename",
    "weights_hash",
    "WeightsHasher",
]
