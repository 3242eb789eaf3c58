"""corredit.graph: blockwise similarity, kNN / threshold graphs, statistics, export."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from corredit import EditRequest
from corredit.graph import (
    as_embedding, communities, community_labels, cosine_similarity, degree_distribution,
    graph_statistics, graphml_ready, iter_similarity_blocks, knn_graph, normalize_rows,
    pair_similarity, pairs_above, request_table, threshold_graph, to_edge_frame,
    top_k_neighbors, write_graphml,
)
from corredit.graph.synthetic import clustered_embeddings


def brute_top_k(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn.astype(np.float64) @ Xn.T.astype(np.float64)
    np.fill_diagonal(S, -np.inf)
    idx = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(S, idx, axis=1)


def requests_for(n: int) -> list[EditRequest]:
    return [
        EditRequest(case_id=f"c{i}", subject=f"subj{i % 7}", relation_id=f"P{i % 3}",
                    prompt="{} lives in" if i % 2 else "The home of {} is",
                    target_new=f"city{i % 5}", target_true=None if i % 4 == 0 else f"old{i % 6}")
        for i in range(n)
    ]


# --- similarity -----------------------------------------------------------------------
@pytest.mark.parametrize("n,k,block_bytes", [(200, 5, 4096), (131, 1, 10**6), (70, 69, 2000),
                                             (600, 12, 64 * 2**20)])
def test_top_k_matches_brute_force(n, k, block_bytes):
    X = np.random.default_rng(n).standard_normal((n, 9)).astype(np.float32)
    idx, sim = top_k_neighbors(X, k, block_bytes=block_bytes)
    ref_idx, ref_sim = brute_top_k(X, k)
    assert idx.shape == sim.shape == (n, k)
    np.testing.assert_allclose(sim, ref_sim, atol=1e-5)
    assert (idx == ref_idx).mean() > 0.999  # only near-ties may swap
    assert not (idx == np.arange(n)[:, None]).any()
    assert (np.diff(sim, axis=1) <= 0).all()


def test_top_k_orders_ties_by_index_and_can_keep_self():
    X = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # rows 0-3 equal, 4-7, 8-11
    idx, sim = top_k_neighbors(X, 3)
    assert idx[0].tolist() == [1, 2, 3]
    assert idx[5].tolist() == [4, 6, 7]
    np.testing.assert_allclose(sim[:, :3], 1.0, atol=1e-6)
    idx_self, sim_self = top_k_neighbors(X, 4, exclude_self=False)
    assert sorted(idx_self[9].tolist()) == [8, 9, 10, 11]


def test_top_k_memory_stays_within_blocks():
    X = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    tracemalloc.start()
    top_k_neighbors(X, 5, block_bytes=2**20)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    dense = 4 * 3000 * 3000
    assert peak < dense / 4, f"peak {peak / 2**20:.1f} MiB vs dense {dense / 2**20:.1f} MiB"


def test_top_k_rejects_impossible_k():
    X = np.ones((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="only 3 other rows"):
        top_k_neighbors(X, 4)
    with pytest.raises(ValueError, match="at least 1"):
        top_k_neighbors(X, 0)


def test_pairs_above_matches_brute_force_and_caps_pairs():
    X = np.random.default_rng(1).standard_normal((150, 4)).astype(np.float32)
    i, j, s = pairs_above(X, 0.6, block_bytes=3000)
    S = cosine_similarity(X)
    ref_i, ref_j = np.nonzero(np.triu(S >= 0.6, k=1))
    assert list(zip(i.tolist(), j.tolist())) == list(zip(ref_i.tolist(), ref_j.tolist()))
    np.testing.assert_allclose(s, S[ref_i, ref_j], atol=1e-6)
    with pytest.raises(ValueError, match="max_pairs"):
        pairs_above(X, -1.0, max_pairs=100)


def test_blocks_dense_and_pair_similarity_agree():
    X = np.random.default_rng(2).standard_normal((57, 5))
    S = cosine_similarity(X)
    stacked = np.concatenate([blk for _, _, blk in iter_similarity_blocks(X, block_bytes=1000)])
    np.testing.assert_allclose(stacked, S, atol=1e-6)
    np.testing.assert_allclose(np.diag(S), 1.0, atol=1e-6)
    np.testing.assert_allclose(pair_similarity(X, [0, 3], [5, 3]), [S[0, 5], 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="max_bytes"):
        cosine_similarity(np.ones((3000, 2)), max_bytes=2**20)


def test_embedding_validation_names_the_row():
    X = np.ones((5, 3))
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        as_embedding(X, name="subject_minilm")
    with pytest.raises(ValueError, match="2-D"):
        as_embedding(np.ones(4))
    Z = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(Z, [[0.6, 0.8], [0.0, 0.0]])


# --- nodes ----------------------------------------------------------------------------
def test_request_table_from_requests_and_dataframe_agree():
    reqs = requests_for(6)
    table = request_table(reqs)
    assert table["target_true"].tolist()[0] is None
    assert table["subject_first"].tolist() == [False, True] * 3
    frame = pd.DataFrame([r.to_dict() for r in reqs])
    pd.testing.assert_frame_equal(request_table(frame), table)
    with pytest.raises(ValueError, match="relation_id"):
        request_table(frame.drop(columns=["relation_id"]))
    bad = frame.copy()
    bad.loc[2, "subject"] = None
    with pytest.raises(ValueError, match="request 2: field 'subject'"):
        request_table(bad)


# --- graphs ---------------------------------------------------------------------------
def test_knn_graph_edges_attributes_and_flags():
    n, k = 40, 3
    rng = np.random.default_rng(3)
    A = rng.standard_normal((n, 6)).astype(np.float32)
    B = rng.standard_normal((n, 4)).astype(np.float32)
    reqs = requests_for(n)
    G = knn_graph(reqs, {"emb_a": A, "emb_b": B}, k=k, on="emb_a")
    idx, _ = brute_top_k(A, k)
    expected = {tuple(sorted((i, int(j)))) for i in range(n) for j in idx[i]}
    assert {tuple(sorted(e)) for e in G.edges} == expected
    assert sorted(G.nodes) == list(range(n))
    assert G.nodes[4] == {"case_id": "c4", "subject": "subj4", "relation_id": "P1",
                          "target_new": "city4", "target_true": None, "subject_first": False}
    SA, SB = cosine_similarity(A), cosine_similarity(B)
    for u, v, d in G.edges(data=True):
        assert d["weight"] == pytest.approx(SA[u, v], abs=1e-5)
        assert d["emb_a"] == d["weight"]
        assert d["emb_b"] == pytest.approx(SB[u, v], abs=1e-5)
        assert d["shared_subject"] == (u % 7 == v % 7)
        assert d["shared_relation"] == (u % 3 == v % 3)
        assert d["shared_object"] == (u % 5 == v % 5)
        both_known = u % 4 != 0 and v % 4 != 0
        assert d["shared_true_object"] == (both_known and u % 6 == v % 6)
        assert d["mutual"] == (v in idx[u] and u in idx[v])
    M = knn_graph(reqs, {"emb_a": A, "emb_b": B}, k=k, on="emb_a", mutual=True)
    assert {tuple(sorted(e)) for e in M.edges} == {
        tuple(sorted(e)) for e, d in G.edges.items() if d["mutual"]}
    assert G.graph["kind"] == "knn" and G.graph["embedding"] == "emb_a"


def test_graph_input_errors():
    reqs = requests_for(5)
    X = np.random.default_rng(0).standard_normal((5, 3))
    with pytest.raises(ValueError, match="on=NAME"):
        knn_graph(reqs, {"a": X, "b": X}, k=2)
    with pytest.raises(ValueError, match="reserved"):
        knn_graph(reqs, {"weight": X}, k=2)
    with pytest.raises(ValueError, match=r"expected shape \(5, dim\)"):
        knn_graph(reqs, X[:4], k=2)
    with pytest.raises(ValueError, match="not among"):
        threshold_graph(reqs, {"a": X}, threshold=0.5, on="b")


def test_threshold_graph_is_every_pair_above():
    X = np.random.default_rng(4).standard_normal((60, 3))
    G = threshold_graph(requests_for(60), X, threshold=0.7)
    S = cosine_similarity(X)
    expected = {(i, j) for i in range(60) for j in range(i + 1, 60) if S[i, j] >= 0.7}
    assert {tuple(sorted(e)) for e in G.edges} == expected
    assert all("similarity" in d for _, _, d in G.edges(data=True))
    assert G.graph["threshold"] == 0.7


# --- statistics -----------------------------------------------------------------------
def two_cliques() -> nx.Graph:
    G = nx.Graph()
    G.add_edges_from((i, j, {"weight": 1.0}) for i in range(5) for j in range(i + 1, 5))
    G.add_edges_from((i, j, {"weight": 1.0}) for i in range(5, 10) for j in range(i + 1, 10))
    G.add_edge(4, 5, weight=0.1)
    G.add_node(10)
    return G


def test_statistics_of_two_cliques():
    G = two_cliques()
    stats = graph_statistics(G, seed=0)
    assert stats["n_nodes"] == 11 and stats["n_edges"] == 21
    assert stats["density"] == pytest.approx(21 / 55)
    assert stats["n_components"] == 2 and stats["largest_component_size"] == 10
    assert stats["n_isolated"] == 1 and stats["max_degree"] == 5
    assert stats["average_clustering"] == pytest.approx((8 * 1.0 + 2 * 0.6) / 11)
    parts = communities(G, seed=0)
    assert parts[:2] == [frozenset(range(5)), frozenset(range(5, 10))]
    assert parts[2] == frozenset({10})
    labels = community_labels(parts)
    assert labels[0] == 0 and labels[9] == 1 and labels[10] == 2
    m = 20.1
    expected_q = sum(10 / m - (sum(G.degree(x, weight="weight") for x in p) / (2 * m)) ** 2
                     for p in parts[:2])
    assert stats["modularity"] == pytest.approx(expected_q)
    dist = degree_distribution(G)
    assert dict(zip(dist["degree"], dist["count"])) == {0: 1, 4: 8, 5: 2}


def test_communities_are_seeded_and_refuse_negative_weights():
    X, topic, _ = clustered_embeddings(300, 16, n_topics=4, seed=1)
    G = knn_graph(requests_for(300), X, k=8)
    assert communities(G, seed=3) == communities(G, seed=3)
    G.add_edge(0, 1, weight=-0.5)
    with pytest.raises(ValueError, match="negative"):
        communities(G)
    assert communities(G, weight=None)


# --- export ---------------------------------------------------------------------------
def test_graphml_round_trip_and_edge_frame(tmp_path):
    X = np.random.default_rng(5).standard_normal((20, 4))
    G = knn_graph(requests_for(20), {"a": X, "b": X[:, :2]}, k=3, on="a")
    G.graph["note"] = ["x", 1]
    G.nodes[1]["vec"] = np.float32(2.5)
    path = write_graphml(G, tmp_path / "g.graphml")
    H = nx.read_graphml(path, node_type=int)
    assert sorted(H.nodes) == list(range(20)) and H.number_of_edges() == G.number_of_edges()
    assert "target_true" not in H.nodes[0] and H.nodes[1]["target_true"] == "old1"
    assert H.nodes[1]["subject_first"] is True and H.nodes[1]["vec"] == 2.5
    u, v = next(iter(G.edges))
    assert H.edges[u, v]["b"] == pytest.approx(G.edges[u, v]["b"])
    assert isinstance(H.edges[u, v]["shared_subject"], bool)
    assert H.graph["note"] == '["x", 1]'
    with pytest.raises(ValueError, match="node 2 attribute 'bad'"):
        G.nodes[2]["bad"] = object()
        graphml_ready(G)

    frame = to_edge_frame(knn_graph(requests_for(20), {"a": X}, k=3))
    assert list(frame.columns[:4]) == ["source", "target", "source_case_id", "target_case_id"]
    assert (frame["source"] < frame["target"]).all()
    assert frame["source_case_id"].tolist() == [f"c{s}" for s in frame["source"]]
    assert {"weight", "a", "shared_subject", "mutual"} <= set(frame.columns)
    assert len(frame) == len(frame.drop_duplicates(["source", "target"]))


def test_synthetic_embeddings_are_deterministic_and_clustered():
    X, topic, group = clustered_embeddings(500, 32, seed=7)
    X2, _, _ = clustered_embeddings(500, 32, seed=7)
    np.testing.assert_array_equal(X, X2)
    assert X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    S = cosine_similarity(X)
    same = topic[:, None] == topic[None, :]
    off = ~np.eye(500, dtype=bool)
    assert S[same & off].mean() > S[~same].mean() + 0.2


def test_graph_and_schedule_do_not_import_torch():
    code = ("import sys, corredit.graph, corredit.schedule, corredit.graph.synthetic; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
