"""The real benchmark files in shared/data (skipped when absent)."""

from __future__ import annotations

from collections import Counter

import pytest

from corredit.data import load_dataset, summarize
from corredit.data.relations import RelationTable


@pytest.fixture(scope="module")
def counterfact(shared_data):
    return load_dataset(shared_data / "counterfact")


def test_flattened_counterfact_loads_completely(counterfact):
    res = counterfact
    assert res.format == "counterfact-flat"
    assert len(res.files) == 3
    assert res.n_input == 21919 and res.n_set_aside == 0 and res.problems == ()
    assert sorted(int(r.case_id) for r in res.requests) == list(range(21919))
    s = summarize(res)
    # figures stated in the folder's README
    assert s["n_subjects"] == 20391
    assert s["n_multi_fact_subjects"] == 1076
    # every template recovered and mapped to one of CounterFact's 34 relations
    assert s["n_templates"] == 218
    assert res.info["n_unknown_templates"] == 0
    assert s["n_relations"] == 34
    assert set(s["relation_histogram"]) == set(RelationTable.counterfact().labels)
    by = res.info["relation_inferred_by"]
    assert sum(by.values()) == 21919 and by["template"] > 17000 and "cluster" not in by
    for r in res.requests:
        assert r.rewrite_prompt == r.prompt.format(r.subject)
    first = next(r for r in res.requests if r.case_id == "0")
    assert first.rewrite_prompt == "The mother tongue of Danielle Darrieux is"
    assert (first.relation_id, first.target_new, first.target_true) == ("P103", "English", "French")
    assert first.neighborhood_prompts == ("Michel Rocard is a native speaker of",)


def test_flattened_counterfact_relations_have_their_kind_of_objects(counterfact):
    objects: dict[str, Counter] = {}
    for r in counterfact.requests:
        objects.setdefault(r.relation_id, Counter())[r.target_true] += 1
    continents = {"Antarctica", "Europe", "Asia", "Africa", "Americas", "North America",
                  "South America", "Oceania"}
    assert set(objects["P30"]) <= continents
    assert {"piano", "guitar"} <= set(objects["P1303"])
    assert objects["P413"].most_common(1)[0][0] == "midfielder"
    assert "P264" in objects  # the record-label templates


def test_each_split_alone_keeps_its_relation_figures(shared_data):
    res = load_dataset(shared_data / "counterfact" / "counterfact-val.json")
    assert res.n_input == 1919 and len(res.requests) == 1919
    assert res.info["n_unknown_templates"] == 0
    assert res.info["n_relations"] == len({r.relation_id for r in res.requests}) <= 34


def test_zsre_files(shared_data):
    eval_ = load_dataset(shared_data / "zsre" / "zsre_mend_eval_portability_gpt4.json")
    assert eval_.format == "zsre" and eval_.n_input == 1037
    # alt equal to answers[0]: a counterfactual edit that changes nothing
    assert Counter(p.kind for p in eval_.problems) == {"same_target": 29}
    assert eval_.n_kept == 1008 and all("portability" in r.meta for r in eval_.requests)
    train = load_dataset(shared_data / "zsre" / "zsre_mend_train-1k.json")
    assert Counter(p.kind for p in train.problems) == {"same_target": 17, "empty_target": 2}
    # with answers[0] as the new target nothing is set aside
    answers = load_dataset(shared_data / "zsre" / "zsre_mend_train-1k.json", target="answers")
    assert answers.n_set_aside == 0 and len(answers.requests) == 1000


def test_mquake_hard(shared_data):
    res = load_dataset(shared_data / "mquake" / "MQuAKE-hard.json")
    assert res.format == "mquake" and res.n_input == 429 and res.n_set_aside == 0
    assert len(res.requests) == 4 * 429
    groups = Counter(r.group_id for r in res.requests)
    assert len(groups) == 429 and set(groups.values()) == {4}
    first = [r for r in res.requests if r.group_id == "7417"]
    assert [r.subject for r in first] == ["Hey Jude", "Madonna", "Narendra Modi", "Australia"]
    assert first[0].multi_hop[0].new_answer == "Arabic" and len(first[0].multi_hop) == 3


def test_known_facts(shared_data):
    res = load_dataset(shared_data / "rome_knowns" / "known_1000.json")
    assert res.format == "known-facts" and res.n_input == 1209 and res.n_set_aside == 0
    assert len({r.relation_id for r in res.requests}) == 33
    assert res.requests[0].rewrite_prompt == "Vinson Massif is located in the continent of"


def test_pitfalls_folders(shared_data):
    res = load_dataset(shared_data / "pitfalls_knowledge_editing" / "GPT-J")
    assert res.format == "pitfalls-conflict,pitfalls-round"
    assert res.n_input == 12500
    assert sorted(f.rsplit("/", 1)[-1] for f, _ in res.skipped) == [
        "conflict_prompts.json", "round_prompts.json"]
    # some composite pairs "edit" a fact to the value it already has
    assert {p.kind for p in res.problems} == {"same_target"} and res.n_set_aside == 57
    assert len(res.requests) == 2 * res.n_kept
    assert {n.kind for n in res.notes} == {"label_is_id"}
