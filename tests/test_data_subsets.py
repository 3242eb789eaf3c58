"""Correlated subsets and the summary figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from corredit.data import (
    conflict_pairs, counterfactual_targets, format_summary, load_dataset, same_subject_sets,
    shared_object_sets, shared_relation_sets, summarize, take_sets,
)
from corredit.types import EditRequest

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def req(cid, subject, rel, new, true=None, prompt="{} r"):
    return EditRequest(cid, subject, rel, prompt, new, true)


REQS = [
    req("a", "Ann", "born", "Paris", "Rome"),
    req("b", "Ann", "born", "paris ", "Rome"),      # same new object as "a", ignoring case
    req("c", "Ann", "job", "Oslo", "Lima"),
    req("d", "Bo", "born", "Lima", "Rome"),
    req("e", "Ann", "born", "Kyiv", "Rome"),
    req("f", "Cy", "job", "Lima", None, prompt="The job of {} is"),
]


def test_same_subject_sets():
    sets = same_subject_sets(REQS, min_facts=2)
    assert {k: [r.case_id for r in v] for k, v in sets.items()} == {"Ann": ["a", "b", "c", "e"]}
    assert list(same_subject_sets(REQS, min_facts=1)) == ["Ann", "Bo", "Cy"]
    assert same_subject_sets(REQS, min_facts=5) == {}
    with pytest.raises(ValueError):
        same_subject_sets(REQS, min_facts=0)


def test_shared_relation_and_object_sets():
    rel = shared_relation_sets(REQS)
    assert {k: [r.case_id for r in v] for k, v in rel.items()} == {
        "born": ["a", "b", "d", "e"], "job": ["c", "f"]}
    new = shared_object_sets(REQS, which="new")
    assert {k: [r.case_id for r in v] for k, v in new.items()} == {
        "paris": ["a", "b"], "lima": ["d", "f"]}
    true = shared_object_sets(REQS, which="true")
    assert {k: [r.case_id for r in v] for k, v in true.items()} == {"rome": ["a", "b", "d", "e"]}
    with pytest.raises(ValueError):
        shared_object_sets(REQS, which="old")


def test_conflict_pairs():
    pairs = [(a.case_id, b.case_id) for a, b in conflict_pairs(REQS)]
    # a and b share subject, relation and (ignoring case) new target: no conflict
    assert pairs == [("a", "e"), ("b", "e")]


def test_take_sets_is_seeded():
    sets = shared_relation_sets(REQS, min_size=1)
    assert [r.case_id for r in take_sets(sets)] == ["a", "b", "d", "e", "c", "f"]
    one = take_sets(sets, n_sets=1, seed=3)
    assert one == take_sets(sets, n_sets=1, seed=3)
    assert {r.relation_id for r in one} in ({"born"}, {"job"})
    picks = {tuple(r.case_id for r in take_sets(sets, n_sets=1, seed=s)) for s in range(20)}
    assert len(picks) == 2
    with pytest.raises(ValueError):
        take_sets(sets, n_sets=3)


def test_counterfactual_targets_from_known_facts():
    known = load_dataset(FIXTURES / "known_facts.json").requests
    edits = counterfactual_targets(known[1:3], seed=0)
    piano, violin = edits
    # the two P1303 facts swap objects
    assert (piano.target_true, piano.target_new) == ("piano", "violin")
    assert (violin.target_true, violin.target_new) == ("violin", "piano")
    assert piano.meta["counterfactual_seed"] == 0
    unchanged = EditRequest("x", "Ann", "P1303", "{} plays", "harp", "lute")
    assert counterfactual_targets([unchanged], seed=0) == [unchanged]
    # the P17 fact has no other object of its relation to draw from
    with pytest.raises(ValueError, match="case ids \\['0'\\]"):
        counterfactual_targets(known[:3], seed=0)


def test_summary_figures():
    s = summarize(REQS)
    assert s["n_records"] == s["n_requests"] == 6
    assert (s["n_subjects"], s["n_relations"], s["n_templates"]) == (3, 2, 2)
    assert s["n_multi_fact_subjects"] == 1
    assert s["largest_subject_group"] == {"subject": "Ann", "n_facts": 4}
    assert s["n_subject_first"] == 5
    assert s["relation_histogram"] == {"born": 4, "job": 2}
    assert s["n_conflict_pairs"] == 2 and s["n_groups"] == 0


def test_summary_of_a_load_with_problems():
    res = load_dataset(FIXTURES / "bad" / "counterfact_flat_bad.json")
    s = summarize(res, max_problems=3)
    assert (s["n_records"], s["n_kept"], s["n_set_aside"], s["n_problems"]) == (9, 2, 7, 7)
    assert s["problems_by_kind"]["same_target"] == 1
    assert len(s["problems"]) == 3 and s["problems"][0]["field"] == "target_new"
    assert s["n_templates"] == 1 and s["relation_inferred_by"] == {"template": 2}
    text = format_summary(s)
    assert "records                 9 (kept 2, set aside 7)" in text
    assert "problems (first 3 of 7):" in text
    mq = summarize(load_dataset(FIXTURES / "mquake.json"))
    assert mq["n_groups"] == 2 and mq["n_requests"] == 4 and mq["n_records"] == 2
    assert mq["largest_subject_group"] == {"subject": "Dana Rook", "n_facts": 2}
    assert "edit groups             2" in format_summary(mq)
