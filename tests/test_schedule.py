"""corredit.schedule: the Schedule type, the scheduler registry, and what each built-in
scheduler achieves on clustered, sentence-embedding-like data."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from corredit import EditRequest
from corredit.graph import cosine_similarity
from corredit.graph.synthetic import clustered_embeddings
from corredit.schedule import (
    SCHEDULERS, EditSet, Schedule, batch_correlation, batch_sizes, chunk, deal, edit_set,
    make_schedule, similarity_floor, similarity_orders, summarize_correlation,
)


def requests_with(subjects: list[str]) -> list[EditRequest]:
    return [EditRequest(case_id=f"c{i}", subject=s, relation_id=f"P{i % 4}",
                        prompt="{} works for", target_new="Acme") for i, s in enumerate(subjects)]


@pytest.fixture(scope="module")
def clustered():
    """Sentence-embedding-like vectors: 2,000 edits, near-duplicate groups as subjects."""
    X, topic, group = clustered_embeddings(2000, 64, n_topics=20, seed=0)
    return X, requests_with([f"s{g}" for g in group])


@pytest.fixture(scope="module")
def summaries(clustered):
    X, reqs = clustered
    names = ["random", "correlated", "decorrelated", "decorrelated_greedy",
             "decorrelated_coloring", "decorrelated_spread"]
    return {name: make_schedule(name, reqs, 50, embeddings=X, seed=0).summary(X, reqs)
            for name in names}


# --- Schedule ---------------------------------------------------------------------------
def test_schedule_views_and_split():
    s = Schedule(batches=[[2, 0], [1]], name="custom", batch_size=2,
                 case_ids=["a", "b", "c"])
    assert s.batches == ((2, 0), (1,)) and s.order == (2, 0, 1)
    assert s.n_edits == 3 and s.n_batches == len(s) == 2 and s.sizes == (2, 1)
    assert s.batch_of().tolist() == [0, 1, 0]
    reqs = [EditRequest(case_id=c, subject="s", relation_id="r", prompt="{} is",
                        target_new="t") for c in "abc"]
    assert s.split(reqs) == [[reqs[2], reqs[0]], [reqs[1]]]
    with pytest.raises(ValueError, match="item 0 has case_id 'c'"):
        s.split(list(reversed(reqs)))
    with pytest.raises(ValueError, match="2 items"):
        s.split(reqs[:2])


@pytest.mark.parametrize("batches,message", [
    ([[0, 1], [1]], "index 1 appears twice"),
    ([[0, 3], [1]], "outside 0..2"),
    ([[0], [], [1]], "batch 1 is empty"),
    ([[0, 1, 2]], "more than batch_size=2"),
])
def test_schedule_rejects_bad_batches(batches, message):
    with pytest.raises(ValueError, match=message):
        Schedule(batches=batches, batch_size=2)


def test_frame_round_trip_keeps_metadata_and_checks_rows():
    s = Schedule(batches=((3, 1), (0, 2)), name="random", params={"k": 3}, seed=7,
                 batch_size=2, case_ids=("w", "x", "y", "z"))
    frame = s.to_frame()
    assert list(frame.columns) == ["batch", "position", "index", "case_id"]
    assert frame.values.tolist() == [[0, 0, 3, "z"], [0, 1, 1, "x"], [1, 0, 0, "w"],
                                     [1, 1, 2, "y"]]
    back = Schedule.from_frame(frame)
    assert back == s and back.params == {"k": 3} and back.seed == 7
    gap = frame.copy()
    gap.loc[1, "position"] = 5
    with pytest.raises(ValueError, match="positions of batch 0"):
        Schedule.from_frame(gap)
    with pytest.raises(ValueError, match="lacks column"):
        Schedule.from_frame(frame.drop(columns=["index"]))
    bad = frame.astype({"batch": float})
    bad.loc[2, "batch"] = 0.5
    with pytest.raises(ValueError, match="row 2: field 'batch'"):
        Schedule.from_frame(bad)


# --- layout -----------------------------------------------------------------------------
def test_chunk_and_deal():
    assert batch_sizes(7, 3) == [3, 3, 1] and batch_sizes(6, 3) == [3, 3]
    assert chunk([4, 2, 0, 1, 3], 2) == [[4, 2], [0, 1], [3]]
    assert deal(range(7), 3) == [[0, 3, 5], [1, 4, 6], [2]]
    assert deal(range(6), 2) == [[0, 3], [1, 4], [2, 5]]


def test_similarity_orders_are_permutations_with_aligned_clusters():
    X, topic, _ = clustered_embeddings(400, 16, n_topics=4, seed=2)
    near, far = similarity_orders(X, seed=0, unit=50)
    assert sorted(near.tolist()) == sorted(far.tolist()) == list(range(400))
    S = cosine_similarity(X)
    adjacent = lambda o: np.mean([S[a, b] for a, b in zip(o[:-1], o[1:])])  # noqa: E731
    random_order = np.random.default_rng(0).permutation(400)
    assert adjacent(near) > adjacent(random_order) + 0.2
    assert adjacent(far) < adjacent(random_order)


# --- registry and make_schedule --------------------------------------------------------
def test_registry_lists_the_built_ins():
    assert {"random", "input_order", "correlated", "decorrelated", "decorrelated_greedy",
            "decorrelated_coloring", "decorrelated_spread", "same_subject_together",
            "same_subject_apart"} <= set(SCHEDULERS.names())


def test_make_schedule_records_and_checks():
    reqs = requests_with(["a"] * 5)
    s = make_schedule("input_order", reqs, 2, seed=3)
    assert s.batches == ((0, 1), (2, 3), (4,))
    assert (s.name, s.seed, s.batch_size, s.params) == ("input_order", 3, 2, {})
    assert s.case_ids == ("c0", "c1", "c2", "c3", "c4")
    with pytest.raises(KeyError, match="known: .*random"):
        make_schedule("nope", reqs, 2)
    with pytest.raises(ValueError, match="takes no parameter"):
        make_schedule("random", reqs, 2, k=4)
    with pytest.raises(ValueError, match="needs embeddings"):
        make_schedule("decorrelated", reqs, 2)
    with pytest.raises(ValueError, match="needs the edits' subjects"):
        make_schedule("same_subject_apart", 5, 2)
    with pytest.raises(ValueError, match="batch_size"):
        make_schedule("random", reqs, 0)
    with pytest.raises(ValueError, match=r"expected shape \(5, dim\)"):
        make_schedule("correlated", reqs, 2, embeddings=np.ones((4, 3)))
    with pytest.raises(ValueError, match="no edits"):
        make_schedule("random", [], 2)
    assert make_schedule("decorrelated", reqs, 2, embeddings=np.eye(5), k=2).params == {"k": 2}
    assert make_schedule("decorrelated", reqs, 2, embeddings=np.eye(5)).params == {"k": 10}
    with pytest.raises(ValueError, match="k must be a positive integer"):
        make_schedule("decorrelated", reqs, 2, embeddings=np.eye(5), k="3")


def test_custom_scheduler_is_checked():
    name = "test_reversed_pairs"

    def reversed_pairs(edits: EditSet, batch_size: int, *, seed: int) -> list[list[int]]:
        order = list(range(edits.n))[::-1]
        return [order[i:i + 2] for i in range(0, edits.n, 2)]

    SCHEDULERS.add(name, reversed_pairs, replace=True)
    assert make_schedule(name, 5, 2).batches == ((4, 3), (2, 1), (0,))
    with pytest.raises(ValueError, match="batch sizes"):
        make_schedule(name, 5, 3)


def test_dataframe_requests_and_edit_set():
    frame = pd.DataFrame({"case_id": [10, 11, 12], "subject": ["a", "b", "a"]})
    edits = edit_set(frame, embeddings=np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]))
    assert edits.case_ids == ("10", "11", "12") and edits.relation_ids is None
    np.testing.assert_allclose(np.linalg.norm(edits.embeddings, axis=1), 1.0)
    s = make_schedule("same_subject_apart", frame, 2)
    assert Counter(frame["subject"][list(s.batches[0])]).most_common(1)[0][1] == 1


# --- what the schedulers achieve --------------------------------------------------------
def test_decorrelated_below_random_below_correlated(summaries):
    rnd, cor, dec = summaries["random"], summaries["correlated"], summaries["decorrelated"]
    floor = rnd["floor_similarity"]
    # mean: correlated far above; decorrelated closes most of the gap down to the floor
    assert cor["mean_similarity"] > rnd["mean_similarity"] + 0.15
    assert dec["mean_similarity"] < floor + 0.25 * (rnd["mean_similarity"] - floor)
    assert dec["mean_similarity"] >= floor - 1e-6
    # the most similar pairs are what decorrelation removes
    assert dec["mean_nearest_similarity"] < rnd["mean_nearest_similarity"] - 0.02
    assert dec["max_similarity"] < rnd["max_similarity"] - 0.15
    assert cor["mean_nearest_similarity"] > rnd["mean_nearest_similarity"] + 0.1
    assert dec["same_subject_pairs"] == 0 < rnd["same_subject_pairs"] < cor["same_subject_pairs"]


def test_coloring_is_the_best_decorrelator(summaries):
    best = summaries["decorrelated"]
    assert best == summaries["decorrelated_coloring"]
    for other in ("decorrelated_greedy", "decorrelated_spread"):
        assert best["mean_similarity"] <= summaries[other]["mean_similarity"] + 1e-3
        assert best["mean_nearest_similarity"] < summaries[other]["mean_nearest_similarity"]
        assert best["max_similarity"] < summaries[other]["max_similarity"]
    for other in ("decorrelated_greedy", "decorrelated_spread"):
        assert summaries[other]["mean_similarity"] < summaries["random"]["mean_similarity"]


@pytest.mark.parametrize("batch_size", [4, 20])
def test_gaussian_blobs_order_the_schedulers(batch_size):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 16)) * 3
    X = centres[rng.integers(8, size=800)] + rng.standard_normal((800, 16))
    mean = {name: make_schedule(name, 800, batch_size, embeddings=X, seed=0).summary(X)
            for name in ("random", "correlated", "decorrelated")}
    floor = mean["random"]["floor_similarity"]
    rnd, cor, dec = (mean[k]["mean_similarity"] for k in ("random", "correlated", "decorrelated"))
    assert cor > rnd + 0.5
    assert floor <= dec < rnd - 0.5 * (rnd - floor)  # at least half-way down to the floor


def test_small_batches_decorrelate_far_below_random(clustered):
    X, reqs = clustered
    rnd = make_schedule("random", reqs, 5, seed=0).summary(X)
    dec = make_schedule("decorrelated", reqs, 5, embeddings=X, seed=0).summary(X)
    assert dec["mean_similarity"] < 0.5 * rnd["mean_similarity"]


def test_sequential_orders(clustered):
    X, reqs = clustered
    adj = {name: make_schedule(name, reqs, 1, embeddings=X, seed=1).summary(X)
           ["adjacent_similarity"] for name in ("random", "correlated", "decorrelated")}
    assert adj["correlated"] > adj["random"] + 0.2
    assert adj["decorrelated"] < adj["random"] - 0.02


def test_same_subject_schedulers():
    rng = np.random.default_rng(0)
    subjects = [f"s{g}" for g in rng.integers(60, size=300)]  # groups of about 5
    reqs = requests_with(subjects)
    sizes = Counter(subjects)
    all_pairs = sum(c * (c - 1) // 2 for c in sizes.values())
    apart = make_schedule("same_subject_apart", reqs, 20, seed=0)
    together = make_schedule("same_subject_together", reqs, 20, seed=0)

    def pairs(s: Schedule) -> int:
        return int(batch_correlation(s, np.eye(300), reqs)["same_subject_pairs"].sum())

    assert pairs(apart) == 0
    assert pairs(together) >= 0.9 * all_pairs
    batch_of = together.batch_of()
    split_groups = sum(len({batch_of[i] for i, s in enumerate(subjects) if s == g}) > 1
                       for g in sizes)
    assert split_groups <= len(together) - 1  # at most one group straddles each boundary


# --- measures --------------------------------------------------------------------------
def test_batch_correlation_against_brute_force():
    X = np.random.default_rng(0).standard_normal((7, 3))
    reqs = requests_with(["a", "a", "b", "a", "c", "b", "d"])
    s = Schedule(batches=((0, 1, 3), (2, 5, 4), (6,)), batch_size=3)
    S = cosine_similarity(X).astype(np.float64)
    df = batch_correlation(s, {"x": X, "y": -X}, reqs)
    row = df[(df.embedding == "x") & (df.batch == 0)].iloc[0]
    pairs = [S[0, 1], S[0, 3], S[1, 3]]
    assert row["mean_similarity"] == pytest.approx(np.mean(pairs), abs=1e-6)
    assert row["max_similarity"] == pytest.approx(max(pairs), abs=1e-6)
    nearest = [max(S[0, 1], S[0, 3]), max(S[1, 0], S[1, 3]), max(S[3, 0], S[3, 1])]
    assert row["mean_nearest_similarity"] == pytest.approx(np.mean(nearest), abs=1e-6)
    assert row["same_subject_pairs"] == 3 and row["n_pairs"] == 3
    assert df[(df.embedding == "x") & (df.batch == 1)]["same_subject_pairs"].item() == 1
    assert np.isnan(df[(df.embedding == "x") & (df.batch == 2)]["mean_similarity"].item())
    assert set(df.embedding) == {"x", "y"} and len(df) == 6
    summary = summarize_correlation(s, X, reqs)
    all_pairs = pairs + [S[2, 5], S[2, 4], S[5, 4]]
    assert summary["mean_similarity"] == pytest.approx(np.mean(all_pairs), abs=1e-6)
    assert summary["adjacent_similarity"] == pytest.approx(
        np.mean([S[a, b] for a, b in zip(s.order[:-1], s.order[1:])]), abs=1e-6)
    assert summary["same_subject_pairs"] == 4


def test_large_batches_use_the_blockwise_path():
    X, _, _ = clustered_embeddings(2500, 8, seed=3)
    s = Schedule(batches=(tuple(range(2500)),))
    row = batch_correlation(s, X).iloc[0]
    S = cosine_similarity(X).astype(np.float64)
    np.fill_diagonal(S, np.nan)
    assert row["mean_similarity"] == pytest.approx(np.nanmean(S), abs=1e-5)
    assert row["mean_nearest_similarity"] == pytest.approx(np.nanmax(S, axis=1).mean(), abs=1e-5)


def test_similarity_floor_is_reached_by_balanced_batches():
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    best = Schedule(batches=((0, 1), (2, 3)))
    worst = Schedule(batches=((0, 2), (1, 3)))
    floor = similarity_floor(X, [2, 2])
    assert floor == pytest.approx(-1.0)
    assert summarize_correlation(best, X)["mean_similarity"] == pytest.approx(floor)
    assert summarize_correlation(worst, X)["mean_similarity"] == pytest.approx(1.0)
    assert np.isnan(similarity_floor(X, [1, 1, 1, 1]))
