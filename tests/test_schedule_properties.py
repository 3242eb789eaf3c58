"""Properties every registered scheduler must have, over random inputs (hypothesis):
every edit exactly once, exact batch sizes (the last may be smaller), same result for
the same seed, a lossless table round trip, and no mean below the similarity floor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corredit import EditRequest
from corredit.schedule import SCHEDULERS, Schedule, make_schedule, similarity_floor

SCHEDULER_NAMES = SCHEDULERS.names()


def make_embeddings(kind: str, n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((n, dim)).astype(np.float32)
    if kind == "duplicates":  # few distinct rows: many exact ties
        distinct = rng.standard_normal((max(1, n // 4), dim))
        return distinct[rng.integers(len(distinct), size=n)].astype(np.float32)
    if kind == "zero_rows":
        X = rng.standard_normal((n, dim))
        X[rng.random(n) < 0.3] = 0.0
        return X.astype(np.float32)
    centres = rng.standard_normal((3, dim)) * 4
    return (centres[rng.integers(3, size=n)] + rng.standard_normal((n, dim))).astype(np.float32)


@st.composite
def problems(draw):
    n = draw(st.integers(1, 90))
    batch_size = draw(st.one_of(st.integers(1, 12), st.integers(1, 100)))
    dim = draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["gaussian", "duplicates", "zero_rows", "clusters"]))
    data_seed = draw(st.integers(0, 2**16))
    n_subjects = draw(st.integers(1, n))
    subjects = draw(st.lists(st.integers(0, n_subjects - 1), min_size=n, max_size=n))
    seed = draw(st.integers(0, 2**31 - 1))
    requests = [
        EditRequest(case_id=f"c{i}", subject=f"s{s}", relation_id=f"r{i % 3}",
                    prompt="{} is in", target_new="x")
        for i, s in enumerate(subjects)
    ]
    return requests, batch_size, make_embeddings(kind, n, dim, data_seed), seed


def check(schedule: Schedule, n: int, batch_size: int) -> None:
    sizes = [len(b) for b in schedule.batches]
    assert sorted(schedule.order) == list(range(n))
    assert all(s == batch_size for s in sizes[:-1])
    assert 1 <= sizes[-1] <= batch_size
    assert len(sizes) == -(-n // batch_size)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_scheduler_places_every_edit_once_in_full_batches(name, problem):
    requests, batch_size, X, seed = problem
    n = len(requests)
    first = make_schedule(name, requests, batch_size, embeddings=X, seed=seed)
    check(first, n, batch_size)
    again = make_schedule(name, requests, batch_size, embeddings=X.copy(), seed=seed)
    assert again.batches == first.batches
    assert first.case_ids == tuple(r.case_id for r in requests)
    assert Schedule.from_frame(first.to_frame()) == first
    if n > 1 and batch_size > 1:
        floor = similarity_floor(X, first.sizes)
        assert first.summary(X)["mean_similarity"] >= floor - 1e-5


@settings(max_examples=30, deadline=None)
@given(problem=problems())
def test_frame_round_trip_survives_row_shuffling(problem):
    requests, batch_size, X, seed = problem
    schedule = make_schedule("random", requests, batch_size, seed=seed)
    frame = schedule.to_frame().sample(frac=1.0, random_state=seed % 2**32)
    back = Schedule.from_frame(pd.DataFrame(frame.to_dict("list")), name="random",
                               seed=seed, batch_size=batch_size)
    assert back.batches == schedule.batches
    assert back.case_ids == schedule.case_ids
