"""End to end: ``corredit embed``, ``graph`` and ``schedule`` on a small fixture, with
every output file read back."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from corredit.cli import main
from corredit.embed import TfidfEmbedder, read_vectors
from corredit.types import EditRequest

SUBJECTS = ["Anna Berg", "Carl Dorn", "Eva Falk", "Gus Hahn", "Ida Jung", "Kurt Lenz"]
RELATIONS = [("lives_in", "{} lives in", "Rome"), ("speaks", "The language of {} is", "Greek"),
             ("works_for", "{} works for", "Acme")]


@pytest.fixture()
def dataset(tmp_path):
    reqs = [EditRequest(f"c{i * 3 + j}", s, rid, tpl, obj)
            for i, s in enumerate(SUBJECTS) for j, (rid, tpl, obj) in enumerate(RELATIONS)]
    path = tmp_path / "edits.jsonl"
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in reqs), encoding="utf-8")
    return path, reqs


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_embed_writes_vectors_that_round_trip(dataset, tmp_path, capsys):
    path, reqs = dataset
    out = tmp_path / "vecs.parquet"
    code, text, _ = _run(["embed", path, "--embedder", "tfidf", "--field", "relation",
                          "--dim", "8", "--out", out, "--cache", tmp_path / "cache", "--quiet"],
                         capsys)
    assert code == 0 and "18 edits" in text
    v = read_vectors(out)
    assert v.case_ids == [r.case_id for r in reqs]
    assert v.meta["embedder"] == "tfidf" and v.meta["field"] == "relation"
    assert v.name == "tfidf:relation" and v.texts[1] == "The language of X is"
    expect = TfidfEmbedder(field="relation", dim=8).fit_transform(reqs)
    np.testing.assert_allclose(v.matrix, expect, atol=1e-6)
    # second run is served from the cache
    code, text, _ = _run(["embed", path, "--embedder", "tfidf", "--field", "relation",
                          "--dim", "8", "--out", out, "--cache", tmp_path / "cache", "--quiet"],
                         capsys)
    assert code == 0 and "from cache" in text


def test_embed_bad_options_are_clear_errors(dataset, tmp_path, capsys):
    path, _ = dataset
    code, _, err = _run(["embed", path, "--embedder", "nope", "--out", tmp_path / "v.parquet"],
                        capsys)
    assert code == 2 and "unknown embedder 'nope'" in err
    code, _, err = _run(["embed", path, "--embedder", "tfidf", "--layer", "3",
                         "--out", tmp_path / "v.parquet"], capsys)
    assert code == 2 and "takes no option(s) --layer" in err
    code, _, err = _run(["embed", path, "--embedder", "hidden", "--layer", "1",
                         "--out", tmp_path / "v.parquet"], capsys)
    assert code == 2 and "needs --model" in err
    code, _, err = _run(["embed", tmp_path / "missing.jsonl", "--out", tmp_path / "v.parquet"],
                        capsys)
    assert code == 2 and "missing.jsonl" in err


def _embed_two(path, tmp_path, capsys):
    subj, rel = tmp_path / "subj.parquet", tmp_path / "rel.parquet"
    for field, out in (("subject", subj), ("relation", rel)):
        code, _, _ = _run(["embed", path, "--embedder", "tfidf", "--field", field,
                           "--out", out, "--no-cache", "--quiet"], capsys)
        assert code == 0
    return subj, rel


def test_graph_writes_edges_and_graphml_that_round_trip(dataset, tmp_path, capsys):
    path, reqs = dataset
    subj, rel = _embed_two(path, tmp_path, capsys)
    edges, gml = tmp_path / "edges.parquet", tmp_path / "g.graphml"
    code, text, _ = _run(["graph", path, "--embeddings", f"rel={rel}", "--embeddings",
                          f"subj={subj}", "--threshold", "0.99", "--out-edges", edges,
                          "--graphml", gml, "--json", "--quiet"], capsys)
    assert code == 0
    stats = json.loads(text.strip().splitlines()[-1])
    # relation similarity 1 exactly within each relation: 3 cliques of 6 edits
    assert stats["embedding"] == "rel" and stats["n_nodes"] == 18 and stats["n_edges"] == 45
    assert stats["n_components"] == 3
    df = pd.read_parquet(edges)
    assert len(df) == 45 and {"weight", "rel", "subj", "shared_relation"} <= set(df.columns)
    assert df["shared_relation"].all() and not df["shared_subject"].any()
    np.testing.assert_allclose(df["rel"], 1.0, atol=1e-5)
    assert (df["subj"] < 0.99).all()
    G = nx.read_graphml(gml, node_type=int)
    assert G.number_of_nodes() == 18 and G.number_of_edges() == 45
    for _, row in df.iterrows():
        e = G.edges[int(row["source"]), int(row["target"])]
        assert e["weight"] == pytest.approx(row["weight"], abs=1e-6)
        assert e["subj"] == pytest.approx(row["subj"], abs=1e-6)
    assert {G.nodes[n]["case_id"] for n in G} == {r.case_id for r in reqs}


def test_graph_knn_prints_statistics(dataset, tmp_path, capsys):
    path, _ = dataset
    subj, _ = _embed_two(path, tmp_path, capsys)
    code, text, _ = _run(["graph", path, "--embeddings", subj, "--k", "2", "--quiet"], capsys)
    assert code == 0
    lines = dict(line.split(None, 1) for line in text.strip().splitlines())
    assert lines["embedding"].strip() == "tfidf:subject"
    assert int(lines["n_nodes"]) == 18 and int(lines["min_degree"]) >= 2


def test_schedule_writes_a_complete_schedule_and_summarises_batches(dataset, tmp_path, capsys):
    path, reqs = dataset
    subj, rel = _embed_two(path, tmp_path, capsys)
    runs = {}
    for name in ("random", "correlated"):
        out = tmp_path / f"{name}.parquet"
        code, text, _ = _run(["schedule", path, "--embeddings", subj, "--embeddings", rel,
                              "--scheduler", name, "--batch-size", "3", "--seed", "1",
                              "--out", out, "--json", "--quiet"], capsys)
        assert code == 0
        runs[name] = json.loads(text.strip().splitlines()[-1])
        df = pd.read_parquet(out)
        assert sorted(df["case_id"]) == sorted(r.case_id for r in reqs)
        assert df.groupby("batch").size().tolist() == [3] * 6
        assert (df["scheduler"] == name).all()
    # the correlated schedule groups the three facts of each subject
    corr = runs["correlated"]["summary"]["tfidf:subject"]
    rand = runs["random"]["summary"]["tfidf:subject"]
    assert corr["mean_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert rand["mean_similarity"] < corr["mean_similarity"]
    code, text, _ = _run(["schedule", path, "--embeddings", subj, "--scheduler", "random",
                          "--batch-size", "4", "--out", tmp_path / "s.parquet",
                          "--out-batches", tmp_path / "b.parquet", "--quiet"], capsys)
    assert code == 0 and "within-batch similarity under tfidf:subject" in text
    batches = pd.read_parquet(tmp_path / "b.parquet")
    assert len(batches) == 5 and batches["size"].tolist() == [4, 4, 4, 4, 2]


def test_embed_hidden_state_from_a_saved_model(dataset, tmp_path, capsys):
    pytest.importorskip("torch")
    from corredit.embed import HiddenStateEmbedder
    from corredit.models import load
    from corredit.models.testing import tiny_model

    path, reqs = dataset
    h = tiny_model("GPT2LMHeadModel", seed=0)
    folder = tmp_path / "tiny"
    h.model.save_pretrained(folder)
    h.tokenizer.save_pretrained(folder)
    out = tmp_path / "h.parquet"
    code, text, err = _run(["embed", path, "--embedder", "hidden", "--model", folder,
                            "--device", "cpu", "--layer", "1", "--out", out, "--no-cache",
                            "--quiet"], capsys)
    assert code == 0, err
    v = read_vectors(out)
    assert v.meta["embedder"] == "hidden" and v.meta["layer"] == 1 and v.texts is None
    expect = HiddenStateEmbedder(load(folder, device="cpu"), 1).fit_transform(reqs)
    np.testing.assert_allclose(v.matrix, expect, rtol=1e-5, atol=1e-6)
    assert v.matrix.shape == (len(reqs), h.hidden_size)
