"""Each edit-set format read from a small project-written fixture."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from corredit.data import FORMATS, load_dataset, load_records, write_requests
from corredit.data.formats import UnknownFormatError
from corredit.types import EditRequest, LocalityPrompt

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def by_id(res):
    return {r.case_id: r for r in res.requests}


def test_package_does_not_import_torch():
    import subprocess
    code = "import sys, corredit.data, corredit.data.commands; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_known_formats_are_registered():
    assert set(FORMATS.names()) >= {
        "counterfact", "multi_counterfact", "counterfact-flat", "zsre", "mquake",
        "known-facts", "pitfalls-conflict", "pitfalls-round", "triples", "corredit"}


@pytest.mark.parametrize("name, fmt", [
    ("counterfact_rome.json", "counterfact"),
    ("multi_counterfact.json", "multi_counterfact"),
    ("counterfact_flat.json", "counterfact-flat"),
    ("zsre.json", "zsre"),
    ("mquake.json", "mquake"),
    ("known_facts.json", "known-facts"),
    ("pitfalls_conflict.json", "pitfalls-conflict"),
    ("pitfalls_round.json", "pitfalls-round"),
    ("triples.jsonl", "triples"),
    ("triples.csv", "triples"),
    ("corredit.jsonl", "corredit"),
    ("world", "corredit"),
])
def test_every_fixture_is_detected_and_loads_cleanly(name, fmt):
    res = load_dataset(FIXTURES / name)
    assert res.format == fmt
    assert res.problems == ()
    assert res.n_set_aside == 0 and res.n_input > 0
    for r in res.requests:
        assert isinstance(r, EditRequest)
        assert r.rewrite_prompt.count(r.subject) >= 1
        assert r.target_new and r.target_new == r.target_new.strip()
        json.dumps(r.to_dict())  # meta stays JSON-serialisable
        assert EditRequest.from_dict(r.to_dict()) == r


def test_rome_layout_fields():
    res = by_id(load_dataset(FIXTURES / "counterfact_rome.json"))
    r = res["0"]
    assert (r.subject, r.relation_id, r.prompt) == ("Maren Oskarsdottir", "P103",
                                                   "The mother tongue of {} is")
    assert (r.target_new, r.target_true) == ("Finnish", "Dutch")
    assert r.paraphrase_prompts[1] == "Maren Oskarsdottir, a native"
    assert r.neighborhood_prompts == ("The mother tongue of Pieter Velde is", "Anke Horst, speaker of")
    assert len(r.generation_prompts) == 2
    assert r.meta["attribute_prompts"] == ["Aino Laine is a native speaker of"]
    assert r.meta["target_new_id"] == "Q1412" and r.meta["pararel_idx"] == 11
    # neighbourhood given as objects: the one about Norway's capital is a locality prompt
    r1 = res["1"]
    assert r1.neighborhood_prompts == ("Ola Brekke is a citizen of",)
    assert r1.locality == (LocalityPrompt("The capital of Norway is", "Oslo"),)
    assert r1.subject_first and not r.subject_first


def test_multi_counterfact_needs_its_name_or_the_option(tmp_path):
    p = tmp_path / "mcf.json"
    p.write_text((FIXTURES / "multi_counterfact.json").read_text())
    assert load_dataset(p).format == "counterfact"
    assert load_dataset(p, format="multi_counterfact").format == "multi_counterfact"


def test_flattened_counterfact_templates_and_relations():
    res = load_dataset(FIXTURES / "counterfact_flat.json")
    reqs = by_id(res)
    assert reqs["100"].prompt == "The mother tongue of {} is"
    assert reqs["100"].relation_id == "P103"
    assert reqs["100"].meta["relation_inferred_by"] == "template"
    assert reqs["100"].neighborhood_prompts == ("Imre Kalo is a native speaker of",)
    assert reqs["100"].paraphrase_prompts == ("Lenka Darvas spoke the language",)
    assert reqs["101"].relation_id == "P27"
    # "{} is located in" serves four relations; the neighbourhood prompt's template
    # ("... located in the continent") leaves one
    r = reqs["102"]
    assert r.relation_id == "P30"
    assert r.meta["relation_inferred_by"] == "neighbourhood"
    assert r.meta["relation_candidates"] == ["P17", "P30", "P131", "P276"]
    assert r.meta["neighbourhood_template"] == "{} is located in the continent"
    assert reqs["103"].relation_id == "P30"
    # unknown templates linked through their neighbourhood prompts form one relation
    assert reqs["104"].relation_id == reqs["105"].relation_id == "template:{} enjoys playing"
    assert reqs["104"].meta["relation_inferred_by"] == "cluster"
    # a locality answer that is not the true target makes a locality prompt
    r6 = reqs["106"]
    assert r6.neighborhood_prompts == ()
    assert r6.locality == (LocalityPrompt("nq question: who wrote the velvet cat", "Mira Holt"),)
    assert not r6.subject_first and r6.relation_id == "P190"
    assert res.info["n_templates"] == 7
    assert res.info["n_relations"] == 5
    assert res.info["relation_inferred_by"] == {"template": 4, "neighbourhood": 1, "cluster": 2}


def test_flattened_counterfact_ambiguous_template_resolved_by_objects():
    base = {"rephrase_prompt": "x", "locality_ground_truth": "Asia"}
    recs = [
        # resolved continent facts teach that "Asia" is a P30 object
        {**base, "case_id": 1, "prompt": "Alpha Peak is located in the continent", "subject": "Alpha Peak",
         "target_new": "Europe", "ground_truth": "Asia", "locality_prompt": "Beta is located in the continent"},
        # "{} is in" and "{} is located in" are both ambiguous: objects decide
        {**base, "case_id": 2, "prompt": "Gamma Hill is in", "subject": "Gamma Hill",
         "target_new": "Africa", "ground_truth": "Asia", "locality_prompt": "Delta is located in"},
    ]
    res = load_records(recs, "counterfact-flat")
    r = by_id(res)["2"]
    assert r.relation_id == "P30"
    assert r.meta["relation_inferred_by"] == "objects"
    assert "P131" in r.meta["relation_candidates"] and "P30" in r.meta["relation_candidates"]


def test_zsre_default_target_is_alt():
    res = load_dataset(FIXTURES / "zsre.json")
    r = res.requests[0]
    assert r.case_id == "zsre:0"
    assert (r.target_new, r.target_true) == ("Danube", "Elbe")
    assert r.prompt == "Which river does {} cross?" and r.relation_id == r.prompt
    assert r.paraphrase_prompts == ("What river is crossed by Quellbach Bridge?",)
    assert r.locality == (LocalityPrompt("nq question: who sang the song about the blue door",
                                         "Tessa Lind"),)
    assert r.meta["pred"] == "Rhine" and r.meta["answers"] == ["Elbe"]
    assert res.requests[1].meta["portability"]["New Answer"] == "visual arts"
    assert res.options == {}


def test_zsre_answers_target_and_subject_casing():
    res = load_dataset(FIXTURES / "zsre.json", target="answers")
    r0, r1, r2 = res.requests
    assert (r0.target_new, r0.target_true, r0.meta["alt"]) == ("Elbe", None, "Danube")
    assert r1.target_new == "singer"
    # "the Marrow Cup" appears as "The Marrow Cup": kept, with a note, spelled as the subject
    assert r2.rewrite_prompt == "When was the Marrow Cup founded?"
    assert [n.kind for n in res.notes] == ["subject_case"]
    assert res.notes[0].index == 2 and res.notes[0].field == "src"
    with pytest.raises(ValueError, match="target"):
        load_dataset(FIXTURES / "zsre.json", target="gold")
    with pytest.raises(ValueError, match="mean nothing"):
        load_dataset(FIXTURES / "known_facts.json", target="alt")


def test_mquake_groups_and_multi_hop():
    res = load_dataset(FIXTURES / "mquake.json")
    assert res.n_input == 2 and len(res.requests) == 4
    a0, a1, b0, b1 = res.requests
    assert (a0.case_id, a0.group_id, a1.case_id, a1.group_id) == ("500:0", "500", "500:1", "500")
    assert b0.group_id == "501"
    assert a0.prompt == "{} was performed by" and a0.target_true == "The Larks"
    assert a0.paraphrase_prompts == ("Who performed Paper Moon Song?",)
    assert len(a0.multi_hop) == 2 and a1.multi_hop == ()
    q = a0.multi_hop[0]
    assert (q.answer, q.new_answer, q.answer_aliases, q.new_answer_aliases) == (
        "United Kingdom", "Canada", ("UK", "Britain"), ("CA",))
    assert a0.meta == {"mquake_case_id": "500", "edit_index": 0, "n_edits_in_case": 2,
                       "target_new_id": "Q1", "target_true_id": "Q2"}


def test_known_facts_are_true_facts():
    res = load_dataset(FIXTURES / "known_facts.json")
    r = by_id(res)["3"]
    assert (r.target_new, r.target_true, r.relation_id) == ("Microsoft", None, "P178")
    assert r.prompt == "{} is developed by a team at"      # the tracing prompt, not the template
    assert r.meta["template"] == "{} is developed by"


def test_pitfalls_conflict_pairs():
    res = load_dataset(FIXTURES / "pitfalls_conflict.json")
    cov0, cov1, comp0, comp1 = res.requests
    assert cov0.group_id == cov1.group_id == "pitfalls_conflict:0"
    assert (cov0.target_true, cov0.target_new) == ("Oskar Lind", "Petra Sand")
    assert (cov1.target_true, cov1.target_new) == ("Petra Sand", "Q903")
    assert cov0.paraphrase_prompts == ("Who is the doctoral student of Irma Volk?",)
    assert cov0.meta["type"] == "coverage" and cov1.meta["edit_index"] == 1
    assert comp0.locality == (LocalityPrompt("Aldo Renz held the position of", "mayor of Tolberg"),)
    assert comp1.locality == () and comp0.meta["rule"] == "P39&P1001>P27"
    assert [n.kind for n in res.notes] == ["label_is_id"]
    assert res.notes[0].field == "edits[1].new_object.label"


def test_pitfalls_round_trip():
    res = load_dataset(FIXTURES / "pitfalls_round.json")
    there, back = res.requests[:2]
    assert (there.target_true, there.target_new) == ("North America", "Castle Brenn")
    assert (back.target_true, back.target_new) == ("Castle Brenn", "North America")
    assert there.group_id == back.group_id
    assert back.meta["true_objects"] == ["North America", "Asia", "Europe"]


def test_triples_jsonl_and_csv():
    j = by_id(load_dataset(FIXTURES / "triples.jsonl"))
    assert j["triples:0"].prompt == "{} born in" and j["triples:0"].target_true == "Belun"
    r = j["triples:1"]
    assert (r.target_new, r.target_true, r.prompt) == ("Orlen Group", None, "{} works for")
    assert r.paraphrase_prompts == ("Toma Velik is employed by", "Toma Velik's employer is")
    assert r.meta == {"source": "notebook 3"}
    ada = j["ada-1"]
    assert (ada.relation_id, ada.prompt, ada.target_true) == ("P19", "{} was born in", "Lund")
    c = load_dataset(FIXTURES / "triples.csv").requests
    assert c[0].paraphrase_prompts == ("Toma Velik's birthplace is", "Toma Velik came from")
    assert c[1].target_true is None and c[1].prompt == "{} was born in"
    assert c[2].subject == "Smith, John" and c[2].rewrite_prompt == "Smith, John, who works for"


def test_corredit_jsonl_round_trip(tmp_path):
    res = load_dataset(FIXTURES / "corredit.jsonl")
    assert res.requests[1].multi_hop[0].answer_aliases == ("Belun city",)
    out = write_requests(tmp_path / "again.jsonl", res.requests)
    again = load_dataset(out)
    assert again.format == "corredit"
    assert again.requests == res.requests
    assert [r.meta for r in again.requests] == [r.meta for r in res.requests]


def test_world_folder_loads_its_requests_file():
    res = load_dataset(FIXTURES / "world")
    assert res.files == (FIXTURES / "world" / "requests.jsonl",)
    assert [r.case_id for r in res.requests] == ["w0", "w1"]


def test_folder_of_files_loads_each_and_skips_misfits(tmp_path):
    for name in ("counterfact_rome.json", "zsre.json"):
        (tmp_path / name).write_text((FIXTURES / name).read_text())
    (tmp_path / "templates.json").write_text('{"P17": "[X] is in [Y]"}')
    (tmp_path / "README.md").write_text("not data")
    res = load_dataset(tmp_path)
    assert res.format == "counterfact,zsre"
    assert len(res.requests) == 6 and res.n_input == 6
    assert [Path(f).name for f, _ in res.skipped] == ["templates.json"]


def test_unknown_format_error_lists_the_known_formats(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('[{"foo": 1}]')
    with pytest.raises(UnknownFormatError) as exc:
        load_dataset(p)
    for name in ("counterfact-flat", "zsre", "triples"):
        assert name in str(exc.value)
    with pytest.raises(KeyError, match="known: corredit"):
        load_dataset(p, format="nope")
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "missing.json")


def test_format_override_applies_to_records():
    res = load_dataset(FIXTURES / "triples.jsonl", format="corredit")
    assert res.n_set_aside == 3 and not res.requests
    assert {p.kind for p in res.problems} <= {"missing_field", "bad_value"}


def test_a_registered_format_is_detected_and_its_problems_reported(tmp_path, monkeypatch):
    from corredit.data import DatasetFormat, register_format
    from corredit.data.fields import build_request, text

    monkeypatch.setattr(FORMATS, "_entries", dict(FORMATS._entries))  # restored afterwards
    register_format(DatasetFormat(
        name="my-facts", description="who did what",
        sniff=lambda rec, path: {"who", "did", "what"} <= rec.keys(),
        convert=lambda raw, ctx: [build_request(
            case_id=ctx.generated_id(raw.index), subject=text(raw.value, "who"),
            relation_id=text(raw.value, "did"), prompt="{} " + text(raw.value, "did"),
            target_new=text(raw.value, "what"))]))
    p = tmp_path / "mine.jsonl"
    p.write_text('{"who": "Ann", "did": "plays", "what": "chess"}\n'
                 '{"who": "Bo", "did": "plays", "what": 3}\n')
    res = load_dataset(p)
    assert res.format == "my-facts"
    assert res.requests[0].rewrite_prompt == "Ann plays" and res.requests[0].case_id == "mine:0"
    assert [(x.index, x.field, x.kind) for x in res.problems] == [(1, "what", "wrong_type")]
