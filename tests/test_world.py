"""Tests of corredit.world: generator, requests, corpus, shipped model, builds, CLI."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest

from corredit.types import EditRequest, subject_comes_first
from corredit.world import (
    RECALL_GATES,
    WorldOptions,
    build_world,
    generate_world,
    is_world_dir,
    load_model_and_tokenizer,
    load_world,
    recall_report,
)
from corredit.world.generate import generate_graph
from corredit.world import distinct_subjects
from corredit.world.names import NameFactory, person_names, shared_name_share
from corredit.world.paths import shipped_world_dir

SMALL = WorldOptions(seed=5, n_people=60)
TINY = WorldOptions(
    seed=1, n_people=8, n_countries=2, n_languages=2, cities_per_country=2, n_companies=3,
    n_occupations=3, n_instruments=3, vocab_size=700, n_layer=2, n_embd=32, n_head=2,
    n_positions=128, epochs=1, batch_size=16,
)


@pytest.fixture(scope="module")
def small():
    return generate_world(SMALL)


@pytest.fixture(scope="module")
def shipped():
    if not is_world_dir(shipped_world_dir()):
        pytest.skip("the shipped default world is absent")
    return load_world(shipped_world_dir())


@pytest.fixture(scope="module")
def shipped_model(shipped):
    return load_model_and_tokenizer(shipped.model_dir)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("tiny") / "w", TINY, progress=False).path


def _hashes(folder: Path, skip=("report.json",)) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and p.name not in skip}


# generator -----------------------------------------------------------------------------

def test_same_seed_same_world_other_seed_other_world():
    a = generate_graph(SMALL).to_dict()
    assert a == generate_graph(SMALL).to_dict()
    b = generate_graph(replace(SMALL, seed=6)).to_dict()
    assert a["facts"] != b["facts"]
    wa, wb = generate_world(SMALL), generate_world(SMALL)
    assert wa.training_texts() == wb.training_texts()
    assert [r.to_dict() for r in wa.requests()] == [r.to_dict() for r in wb.requests()]


def test_graph_is_consistent(small):
    g = small.graph
    people = small.entities["person"]
    assert len(people) == SMALL.n_people and len(set(people)) == len(people)
    for p in people:
        city = g.object_of(p, "born_in")
        assert g.object_of(p, "citizen_of") == g.object_of(city, "located_in")
        assert g.object_of(p, "native_language") == g.object_of(
            g.object_of(p, "citizen_of"), "official_language")
        for rel in ("occupation", "employer", "plays"):
            assert g.object_of(p, rel) is not None
    for country in small.entities["country"]:
        assert g.object_of(g.object_of(country, "capital"), "located_in") == country
    used = {g.object_of(c, "official_language") for c in small.entities["country"]}
    assert used == set(small.entities["language"])
    # names never collide across entity types
    all_names = [n for v in small.entities.values() for n in v]
    assert len(all_names) == len(set(all_names))


def test_every_relation_has_two_subject_first_and_two_subject_last_phrasings(small):
    for rel in small.relations.values():
        assert len(rel.phrasings) >= 4
        first = [p for p in rel.phrasings if subject_comes_first(p)]
        last = [p for p in rel.phrasings if not subject_comes_first(p)]
        assert len(first) >= 2 and len(last) >= 2, rel.id
        for p in first:
            assert p.startswith("{} "), p
        for p in last:
            before, after = p.split("{}")
            assert len(before.split()) >= 2, p          # relation words come first
            assert 1 <= len(after.split()) <= 2, p       # then only "is", "are in", "is the"


def test_multi_hop_answers_follow_the_graph(small):
    g = small.graph
    n_questions = 0
    for req in small.requests():
        for q in req.multi_hop:
            chain = next(c for c in g.chains if c.template.format(req.subject) == q.question)
            assert chain.relations[0] == req.relation_id
            assert q.answer == g.follow(req.subject, chain.relations)
            assert q.new_answer == g.follow(req.target_new, chain.relations[1:])
            n_questions += 1
    assert n_questions > len(small.entities["person"])


# names ---------------------------------------------------------------------------------

def test_name_sharing_knob_moves_the_share_of_subjects_with_shared_name_words():
    shares = []
    for rate in (0.0, 0.2, 0.6):
        names = person_names(NameFactory(random.Random(0)), 300, rate, random.Random(1))
        assert len(set(names)) == 300
        shares.append(shared_name_share(names))
    assert shares[0] == 0.0
    assert 0.1 < shares[1] < shares[2]
    assert shared_name_share(["Ana Bel", "Ana Tor", "Kim Lu"]) == pytest.approx(2 / 3)


def test_name_sharing_option_reaches_the_world():
    lo = generate_world(replace(SMALL, name_sharing=0.0)).summary()["shared_name_share"]
    hi = generate_world(replace(SMALL, name_sharing=0.8)).summary()["shared_name_share"]
    assert lo == 0.0 and hi > 0.5


def test_new_build_options_refuse_negative_values_by_name():
    for name in ("fact_lists", "first_names"):
        with pytest.raises(ValueError, match=f"invalid value for {name}"):
            WorldOptions(**{name: -1})


def test_first_name_pool_shares_first_names_and_name_sharing_moves_to_surnames():
    names = person_names(NameFactory(random.Random(0)), 200, 0.0, random.Random(1), first_pool=10)
    assert len(set(names)) == 200
    assert len({n.split()[0] for n in names}) <= 10
    assert len({n.split()[1] for n in names}) == 200            # no family names shared
    families = person_names(NameFactory(random.Random(0)), 200, 0.5, random.Random(1), first_pool=10)
    assert len({n.split()[1] for n in families}) < 150
    with pytest.raises(ValueError, match="first-name pool"):
        person_names(NameFactory(random.Random(0)), 5, 0.0, random.Random(1), first_pool=-1)


def test_whole_word_names_make_each_name_word_one_token(tmp_path):
    opts = replace(TINY, whole_word_names=True, first_names=3)
    w = build_world(tmp_path / "w", opts, progress=False)
    assert w.report["tokens"]["person_tokens_mean"] == pytest.approx(2.0)
    assert len({p.split()[0] for p in w.entities["person"]}) <= 3


# requests ------------------------------------------------------------------------------

def test_requests_targets_neighbours_paraphrases_and_phrasing_record(small):
    reqs = small.requests()
    assert len(reqs) == len(small.facts)
    g = small.graph
    for req in reqs:
        fact = small.facts[int(req.case_id)]
        rel = small.relations[req.relation_id]
        assert (fact.subject, fact.relation, fact.object) == (
            req.subject, req.relation_id, req.target_true)
        assert req.target_new != req.target_true
        assert small.type_of(req.target_new) == small.type_of(req.target_true) == rel.object_type
        k = req.meta["phrasing"]
        assert rel.phrasings[k] == req.prompt
        assert req.meta["subject_first"] == req.subject_first == subject_comes_first(req.prompt)
        assert set(req.paraphrase_prompts) == {
            p.format(req.subject) for i, p in enumerate(rel.phrasings) if i != k}
        same = [s for s in g.subjects_with(req.relation_id, req.target_true) if s != req.subject]
        assert len(req.neighborhood_prompts) == min(len(same), SMALL.n_neighbors)
        for prompt in req.neighborhood_prompts:
            matches = [s for s in same if req.prompt.format(s) == prompt]
            assert len(matches) == 1, prompt
        for loc in req.locality:
            assert req.subject in loc.prompt and loc.target != ""
        assert EditRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    # neighbourhoods exist for most person facts
    person_reqs = [r for r in reqs if r.meta["subject_type"] == "person"]
    assert sum(bool(r.neighborhood_prompts) for r in person_reqs) > 0.9 * len(person_reqs)


def test_request_filters_and_seeds(small):
    first = small.requests(["born_in", "employer"], subject_first=True)
    assert first and all(r.subject_first and r.relation_id in ("born_in", "employer")
                         for r in first)
    last = small.requests("born_in", subject_first=False)
    assert last and not any(r.subject_first for r in last)
    sample = small.requests(n=25, seed=3)
    assert len(sample) == 25 and sample == small.requests(n=25, seed=3)
    assert [r.case_id for r in sample] != [r.case_id for r in small.requests(n=25, seed=4)]
    # a case keeps its draws whatever the filter
    full = {r.case_id: r for r in small.requests(seed=3)}
    for r in sample:
        assert r == full[r.case_id]
    mix = [r.subject_first for r in small.requests()]
    assert 0.3 < sum(mix) / len(mix) < 0.7
    with pytest.raises(KeyError, match="unknown relation"):
        small.requests(["nope"])


def test_distinct_subjects_sample_never_repeats_a_subject(small):
    reqs = small.requests(seed=0)
    picked = distinct_subjects(reqs, 20, seed=1)
    assert len(picked) == 20 and len({r.subject for r in picked}) == 20
    assert picked == distinct_subjects(reqs, 20, seed=1)
    assert picked != distinct_subjects(reqs, 20, seed=2)
    unshuffled = distinct_subjects(reqs)
    assert [r.subject for r in unshuffled] == list(dict.fromkeys(r.subject for r in reqs))


# corpus --------------------------------------------------------------------------------

def test_corpus_holds_every_fact_in_every_phrasing(small):
    training = set(small.training_texts())
    for f in small.facts:
        for p in small.phrasings(f.relation):
            assert f"{p.format(f.subject)} {f.object}." in training
    assert not set(small.heldout_texts()) & training
    assert len(small.heldout_texts()) >= len(small.entities["person"])
    stats = " ".join(small.stats_texts())
    assert all(p in stats for p in small.entities["person"])
    city = small.entities["city"][0]
    snips = small.snippets(city)
    assert snips and all(city in s for s in snips)
    with pytest.raises(KeyError):
        small.snippets(small.entities["person"][0])


def test_fact_lists_name_each_subject_once_and_list_all_its_facts(small):
    listed = generate_world(replace(SMALL, fact_lists=2))
    base = small.training_texts()
    assert listed.training_texts()[:len(base)] == base
    extra = listed.training_texts()[len(base):]
    subjects = list(dict.fromkeys(f.subject for f in small.facts))
    assert len(extra) == 2 * len(subjects)
    person = small.entities["person"][0]
    texts = [t for t in extra if t.startswith(person + " ")]
    assert len(texts) == 2 and texts[0] != texts[1]          # two random orders
    for t in texts:
        assert t.count(person) == 1
        assert all(f" {f.object}" in t for f in small.facts if f.subject == person)
    assert generate_world(SMALL).training_texts() == small.training_texts()  # off by default


# the shipped default world -------------------------------------------------------------

def test_shipped_world_files(shipped):
    assert shipped.options == WorldOptions()
    lines = (shipped.path / "requests.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [json.loads(json.dumps(r.to_dict()))
                                              for r in shipped.requests()]
    size = sum(p.stat().st_size for p in shipped.path.iterdir() if p.suffix == ".safetensors")
    assert size <= 20 * 2**20
    s = shipped.summary()
    assert s["n_facts"] > 1500 and s["n_relations"] == 10
    assert 0.2 < s["shared_name_share"] < 0.6
    assert shipped.report["gates_passed"] is True


def test_shipped_model_tokenizes_names_into_pieces(shipped, shipped_model):
    model, tok = shipped_model
    assert type(model).__name__ == "GPT2LMHeadModel" and model.config.n_layer >= 4
    assert tok.pad_token_id is not None and tok.eos_token_id is not None
    people = shipped.entities["person"]
    counts = [len(tok(" " + p, add_special_tokens=False)["input_ids"]) for p in people]
    assert sum(counts) / len(counts) >= 3 and min(counts) >= 2
    for t in ("city", "country", "language", "company", "occupation", "instrument"):
        firsts = [tok(" " + o, add_special_tokens=False)["input_ids"][0]
                  for o in shipped.entities[t]]
        assert len(set(firsts)) == len(firsts), t
    # no BOS is added: a prompt's tokens are the text's tokens
    assert tok("Hello")["input_ids"] == tok("Hello", add_special_tokens=False)["input_ids"]


def test_shipped_model_meets_recall_gates_on_a_sample(shipped, shipped_model):
    model, tok = shipped_model
    rep = recall_report(model, tok, shipped.requests(n=150, seed=11))
    assert rep["recall"] >= RECALL_GATES["recall"]
    assert rep["paraphrase_recall"] >= RECALL_GATES["paraphrase_recall"]


def test_subject_first_phrasings_share_the_subject_key_subject_last_do_not(shipped, shipped_model):
    import torch

    model, tok = shipped_model
    person = shipped.entities["person"][3]
    n_subj = len(tok(person)["input_ids"])

    def subject_state(template: str, layer: int) -> torch.Tensor:
        text = template.format(person)
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hs = model(input_ids=ids, output_hidden_states=True).hidden_states[layer]
        if subject_comes_first(template):
            return hs[0, n_subj - 1]
        before = len(tok(template.split("{}")[0].rstrip(), add_special_tokens=False)["input_ids"])
        return hs[0, before + len(tok(" " + person, add_special_tokens=False)["input_ids"]) - 1]

    layer = model.config.n_layer // 2
    born, citizen = shipped.relations["born_in"], shipped.relations["citizen_of"]
    a = subject_state(born.phrasings[born.subject_first_indices[0]], layer)
    b = subject_state(citizen.phrasings[citizen.subject_first_indices[1]], layer)
    c = subject_state(born.phrasings[born.subject_last_indices[0]], layer)
    d = subject_state(citizen.phrasings[citizen.subject_last_indices[0]], layer)
    same = float((a - b).norm())   # equal up to float rounding of differently shaped matmuls
    other = float((c - d).norm())
    assert same <= 1e-4 * float(a.norm())
    assert other > 0.05 * float(c.norm())


@pytest.mark.slow
def test_shipped_model_meets_recall_gates_on_the_whole_world(shipped, shipped_model):
    model, tok = shipped_model
    rep = recall_report(model, tok, shipped.requests())
    assert rep["recall"] >= RECALL_GATES["recall"]
    assert rep["paraphrase_recall"] >= RECALL_GATES["paraphrase_recall"]


@pytest.mark.slow
def test_rebuilding_the_default_world_reproduces_the_shipped_files(shipped, tmp_path):
    rebuilt = build_world(tmp_path / "w", WorldOptions(), progress=False)
    assert _hashes(rebuilt.path) == _hashes(shipped.path)


# builds, folders, CLI ------------------------------------------------------------------

def test_tiny_build_is_loadable_and_reproducible(tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    w = load_world(tiny_dir)
    assert w.model_dir == tiny_dir and w.options == TINY
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert model.config.n_layer == TINY.n_layer
    rep = w.report
    assert set(rep["recall"]) >= {"recall", "paraphrase_recall"} and rep["train"]["steps"] > 0
    again = build_world(tmp_path / "again", TINY, progress=False)
    assert _hashes(again.path) == _hashes(tiny_dir)
    with pytest.raises(FileExistsError):
        build_world(tiny_dir, TINY, progress=False)


def test_reading_a_broken_world_names_the_file(tmp_path):
    (tmp_path / "world.json").write_text('{"format": "corredit-world", "format_version": 1}')
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "world.json"))):
        load_world(tmp_path)
    with pytest.raises(FileNotFoundError, match="world build"):
        load_world(tmp_path / "absent")


def test_default_world_dir_uses_the_cache_when_nothing_is_shipped(monkeypatch, tmp_path, tiny_dir):
    import shutil

    import corredit
    from corredit.world import paths
    from corredit.world.options import FORMAT_VERSION

    monkeypatch.setattr(paths, "shipped_world_dir", lambda: tmp_path / "nowhere")
    monkeypatch.setenv("CORREDIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError):
        paths.default_world_dir(build=False)
    cached = tmp_path / "cache" / f"world-default-v{FORMAT_VERSION}-{corredit.__version__}"
    shutil.copytree(tiny_dir, cached)
    assert paths.default_world_dir(build=False) == cached
    assert paths.default_model_dir(build=False) == cached


def test_cli_info_and_requests(tiny_dir, capsys, tmp_path):
    from corredit.cli import main

    assert main(["world", "info", "--path", str(tiny_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    w = load_world(tiny_dir)
    assert info["n_facts"] == len(w.facts) and info["n_relations"] == 10
    assert info["n_subjects"] == len(w.subjects)
    assert info["n_params"] > 0 and 0.0 <= info["recall"] <= 1.0
    assert 0.0 <= info["paraphrase_recall"] <= 1.0
    out = tmp_path / "r.jsonl"
    assert main(["world", "requests", "--path", str(tiny_dir), "--relation", "born_in",
                 "--subject-last", "-n", "3", "--out", str(out)]) == 0
    rows = [EditRequest.from_dict(json.loads(x)) for x in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r.relation_id == "born_in" and not r.subject_first
                                  for r in rows)
    assert main(["world", "info", "--path", str(tmp_path / "absent")]) == 2
