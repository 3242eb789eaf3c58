"""Known-fact selection on the embedded world model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from corredit.config import DataConfig, RunConfig, EditorConfig
from corredit.evaluate.known import first_token_rank, select_known
from corredit.evaluate.scoring import score_targets
from corredit.runner import Runner


@pytest.fixture(scope="module")
def world_handle():
    from corredit.models import load

    return load("world")


@pytest.fixture(scope="module")
def world_reqs():
    from corredit.world import load_world

    world = load_world()
    return world.requests(["born_in", "plays"], subject_first=True, n=24, seed=0)


def test_prefers_true_matches_the_scores(world_handle, world_reqs):
    h = world_handle
    # half the edits get the true object as their new one's rival swapped: known flips
    reqs = list(world_reqs)
    swapped = [dataclasses.replace(r, target_new=r.target_true, target_true=r.target_new) for r in reqs[:6]]
    reqs = swapped + reqs[6:]
    sel = select_known(h, reqs, criterion="prefers_true")
    assert list(sel.table["case_id"]) == [str(r.case_id) for r in reqs]
    prompts = [r.rewrite_prompt for r in reqs]
    t = score_targets(h, prompts, [r.target_true for r in reqs]).nll
    n = score_targets(h, prompts, [r.target_new for r in reqs]).nll
    np.testing.assert_allclose(sel.table["nll_true"], t)
    assert list(sel.table["known"]) == list(t < n)
    assert [r.case_id for r in sel.kept] == [r.case_id for r, k in zip(reqs, t < n) if k]
    assert sel.table["known"].iloc[6:].mean() > 0.7      # the world model knows its facts
    assert not sel.table["known"].iloc[:6].any()          # swapped: the "true" one is wrong
    rel = sel.per_relation()
    assert rel["total"].sum() == len(reqs) and rel["known"].sum() == len(sel.kept)


def test_top_k_and_limit(world_handle, world_reqs):
    h = world_handle
    ranks = first_token_rank(h, [r.rewrite_prompt for r in world_reqs], [r.target_true for r in world_reqs])
    top1 = select_known(h, world_reqs, criterion="top_k", k=1)
    assert list(top1.table["known"]) == list(ranks == 0)
    big = select_known(h, world_reqs, criterion="top_k", k=10_000)
    assert len(big.kept) == len(world_reqs)
    few = select_known(h, world_reqs, criterion="top_k", k=10_000, limit=5, chunk=4)
    assert [r.case_id for r in few.kept] == [r.case_id for r in world_reqs[:5]]
    assert len(few.table) == 8                             # two chunks judged, then stopped
    with pytest.raises(ValueError, match="unknown known-fact criterion"):
        select_known(h, world_reqs, criterion="maybe")


def test_edit_without_true_object_is_not_known(world_handle, world_reqs):
    reqs = [dataclasses.replace(world_reqs[0], target_true=None)] + list(world_reqs[1:3])
    sel = select_known(world_handle, reqs)
    assert not sel.table["known"].iloc[0] and sel.table["true_rank"].iloc[0] == -1
    assert str(reqs[0].case_id) not in {str(r.case_id) for r in sel.kept}


def test_runner_keeps_known_edits_and_remembers_them(tmp_path, world_handle):
    cfg = RunConfig(name="known", model="world",
                    data=DataConfig(relations=("born_in",), subject_first=True,
                                    known="prefers_true", max_edits=10, seed=3),
                    editors=(EditorConfig(name="ft-l"),))
    run = Runner(cfg, tmp_path / "run", handle=world_handle)
    reqs = run.inputs.requests()
    assert len(reqs) == 10
    table = __import__("pandas").read_parquet(tmp_path / "run" / "known.parquet")
    known = set(table.loc[table["known"], "case_id"])
    assert {str(r.case_id) for r in reqs} <= known

    def no_model():
        raise AssertionError("the verdicts should come from known.parquet")

    again = Runner(cfg, tmp_path / "run")
    again.inputs.handle = no_model
    assert [r.case_id for r in again.inputs.requests()] == [r.case_id for r in reqs]
