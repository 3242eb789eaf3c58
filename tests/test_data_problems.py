"""Bad input: every problem names file, record and field; strict mode raises; nothing is
dropped silently (property-based over mutated records of every format)."""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from corredit.data import PROBLEM_KINDS, DataError, load_dataset, load_records
from corredit.data.problems import (
    DUPLICATE_CASE_ID, EMPTY_TARGET, MISSING_FIELD, NOT_UTF8, SAME_TARGET,
    SUBJECT_NOT_IN_PROMPT, UNREAD_REST, UNREADABLE, WRONG_TYPE,
)

FIXTURES = Path(__file__).parent / "fixtures" / "data"
BAD = FIXTURES / "bad"


def test_each_kind_of_bad_record_is_named_and_the_good_ones_kept():
    path = BAD / "counterfact_flat_bad.json"
    res = load_dataset(path)
    assert res.n_input == 9 and res.n_set_aside == 7 and res.n_kept == 2
    assert [r.case_id for r in res.requests] == ["0", "8"]
    got = [(p.index, p.case_id, p.field, p.kind) for p in res.problems]
    assert got == [
        (1, "1", "target_new", MISSING_FIELD),
        (2, "2", "ground_truth", WRONG_TYPE),
        (3, "3", "target_new", EMPTY_TARGET),
        (4, "4", "target_new", SAME_TARGET),
        (5, "5", "prompt", SUBJECT_NOT_IN_PROMPT),
        (6, "0", "case_id", DUPLICATE_CASE_ID),
        (7, None, None, WRONG_TYPE),
    ]
    for p in res.problems:
        assert p.file == str(path)
        assert str(p).startswith(f"{path}:{p.line}:")
        assert f"record {p.index}" in str(p)
    assert "field 'ground_truth': expected a string, got number" in str(res.problems[1])
    assert "already used by record 0" in res.problems[5].message
    report = res.problem_report()
    assert report.splitlines()[0].startswith(f"{path}: 7 of 9 records set aside")
    assert len(report.splitlines()) == 8


def test_strict_mode_raises_on_the_first_problem():
    with pytest.raises(DataError) as exc:
        load_dataset(BAD / "counterfact_flat_bad.json", strict=True)
    assert isinstance(exc.value, ValueError)
    p = exc.value.problem
    assert (p.index, p.field, p.kind) == (1, "target_new", MISSING_FIELD)
    assert "record 1 (case_id '1'), field 'target_new'" in str(exc.value)


def test_set_aside_records_are_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="corredit.data"):
        load_dataset(BAD / "counterfact_flat_bad.json")
    assert "7 of 9 records set aside" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="corredit.data"):
        load_dataset(FIXTURES / "zsre.json")
    assert caplog.text == ""


def test_unreadable_json_lines_give_line_and_column():
    res = load_dataset(BAD / "broken.jsonl")
    assert res.n_input == 4 and res.n_set_aside == 2
    assert [r.subject for r in res.requests] == ["A", "C"]
    (p1, p2) = res.problems
    assert (p1.kind, p1.index, p1.line, p1.column) == (UNREADABLE, 1, 2, 49)
    assert (p2.kind, p2.index, p2.line) == (UNREADABLE, 3, 5)
    assert str(p1).startswith(f"{BAD / 'broken.jsonl'}:2:49, record 1: unreadable JSON")


def test_truncated_array_keeps_the_records_before_the_break():
    res = load_dataset(BAD / "truncated.json")
    assert [r.subject for r in res.requests] == ["A", "B"]
    assert res.n_input == 3 and res.n_set_aside == 1
    p = res.problems[0]
    assert p.kind == UNREAD_REST and p.line == 13 and "from here on" in p.message
    assert res.unread_files == (str(BAD / "truncated.json"),)
    with pytest.raises(DataError, match="truncated.json:13"):
        load_dataset(BAD / "truncated.json", strict=True)


def test_json_lines_in_a_json_file(tmp_path):
    p = tmp_path / "facts.json"
    p.write_text('{"subject": "A", "relation": "r", "target_new": \n'
                 '{"subject": "B", "relation": "r", "target_new": "y"}\n')
    res = load_dataset(p, format="triples")
    assert [r.subject for r in res.requests] == ["B"]
    assert (res.problems[0].index, res.problems[0].line) == (0, 1)
    single = tmp_path / "one.json"
    single.write_text('{\n "subject": "A",\n "relation": "r",\n "target_new": "x"\n}\n')
    assert [r.subject for r in load_dataset(single).requests] == ["A"]


def test_csv_rows_with_the_wrong_number_of_values():
    res = load_dataset(BAD / "bad_rows.csv")
    assert [r.subject for r in res.requests] == ["A", "D"]
    assert [(p.index, p.line) for p in res.problems] == [(1, 3), (2, 4)]
    assert "more value" in res.problems[0].message and "fewer values" in res.problems[1].message


def test_whole_file_problems(tmp_path):
    p = tmp_path / "latin1.json"
    p.write_bytes('[{"subject": "Caf\xe9"}]'.encode("latin-1"))
    res = load_dataset(p, format="triples")
    assert res.n_input == 1 and res.n_set_aside == 1 and res.problems[0].kind == NOT_UTF8
    assert "UTF-8" in res.problems[0].message and res.problems[0].index == 0
    with pytest.raises(DataError):
        load_dataset(p, format="triples", strict=True)
    extra = tmp_path / "extra.json"
    extra.write_text('[{"subject": "A", "relation": "r", "target_new": "x"}] []')
    res = load_dataset(extra)
    assert len(res.requests) == 1 and res.problems[0].index is None
    assert "extra data" in res.problems[0].message
    broken = tmp_path / "broken.json"
    broken.write_text('[{"subject": "A"')
    res = load_dataset(broken, format="triples")
    assert res.n_input == 1 and res.n_set_aside == 1 and res.problems[0].line == 1
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_dataset(empty)
    assert load_dataset(empty, format="zsre").n_input == 0


def test_a_bad_rewrite_sets_its_whole_mquake_case_aside():
    case = json.loads((FIXTURES / "mquake.json").read_text())
    bad = copy.deepcopy(case[1])
    bad["case_id"] = 777
    bad["requested_rewrite"][1]["target_new"]["str"] = ""
    res = load_records([case[0], bad], "mquake", source="m.json")
    assert res.n_set_aside == 1 and len(res.requests) == 2
    p = res.problems[0]
    assert (p.case_id, p.field, p.kind) == ("777", "requested_rewrite[1].target_new.str", EMPTY_TARGET)


# --- property-based: mutated records never crash and are never dropped silently ---------

def _base_records() -> dict[str, list]:
    def first(name):
        return json.loads((FIXTURES / name).read_text())[0]
    corredit_line = json.loads((FIXTURES / "corredit.jsonl").read_text().splitlines()[1])
    return {
        "counterfact": first("counterfact_rome.json"),
        "counterfact-flat": first("counterfact_flat.json"),
        "zsre": json.loads((FIXTURES / "zsre.json").read_text())[1],
        "mquake": first("mquake.json"),
        "known-facts": first("known_facts.json"),
        "pitfalls-conflict": json.loads((FIXTURES / "pitfalls_conflict.json").read_text())[1],
        "pitfalls-round": first("pitfalls_round.json"),
        "triples": json.loads((FIXTURES / "triples.jsonl").read_text().splitlines()[1]),
        "corredit": corredit_line,
    }


BASES = _base_records()
#: The id field of formats that carry one: the unmutated copy gets an id of its own, so
#: that a mutated record is judged on its content, not refused as a duplicate.
ID_FIELDS = {"counterfact": "case_id", "counterfact-flat": "case_id", "mquake": "case_id",
             "known-facts": "known_id", "corredit": "case_id"}

_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=16),
    st.just(""), st.just("   "), st.text(max_size=6), st.just("{}"), st.just("{0} {x}"),
    st.lists(st.text(max_size=4), max_size=2), st.just([]), st.just({}),
    st.dictionaries(st.sampled_from(["str", "label", "id", "prompt", "target"]),
                    st.text(max_size=4), max_size=2),
)


def _paths(x, prefix=()):
    yield prefix
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, prefix + (i,))


def _mutate(record, data):
    rec = copy.deepcopy(record)
    for _ in range(data.draw(st.integers(1, 3), label="n_mutations")):
        paths = list(_paths(rec))
        path = data.draw(st.sampled_from(paths), label="path")
        op = data.draw(st.sampled_from(["replace", "delete", "copy_sibling"]), label="op")
        if not path:
            if op == "replace":
                rec = data.draw(_leaf, label="whole record")
            continue
        parent = rec
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "copy_sibling" and isinstance(parent, dict) and len(parent) > 1:
            other = data.draw(st.sampled_from(sorted(k for k in parent if k != key)), label="from")
            parent[key] = copy.deepcopy(parent[other])   # e.g. target_new := ground_truth
        else:
            parent[key] = data.draw(_leaf, label="value")
        if not isinstance(rec, (dict, list)):
            break
    return rec


def _check_result(res, n_input, source):
    assert res.n_input == n_input
    assert res.n_kept + res.n_set_aside == res.n_input
    assert len(res.problems) == res.n_set_aside          # one reason per set-aside record
    indexes = [p.index for p in res.problems]
    assert len(set(indexes)) == len(indexes)
    for p in res.problems:
        assert p.file == source and 0 <= p.index < n_input
        assert p.kind in PROBLEM_KINDS and p.message
        assert p.field is not None or p.kind == WRONG_TYPE
    ids = [r.case_id for r in res.requests]
    assert len(set(ids)) == len(ids)
    for r in res.requests:
        assert r.prompt.count("{}") >= 1
        assert r.subject in r.rewrite_prompt
        assert r.subject and r.target_new and r.target_new == r.target_new.strip()
        assert r.target_true is None or (r.target_true and r.target_true != r.target_new)
        json.dumps(r.to_dict())


@pytest.mark.parametrize("fmt", sorted(BASES))
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_records_give_a_problem_or_a_correct_request(fmt, data):
    base = BASES[fmt]
    mutated = _mutate(base, data)
    first = copy.deepcopy(base)
    if fmt in ID_FIELDS:
        first[ID_FIELDS[fmt]] = "unmutated"
    records = [first, mutated]
    source = f"mutated-{fmt}.json"
    res = load_records(records, fmt, source=source)
    _check_result(res, 2, source)
    expected = load_records([first], fmt, source=source).requests
    assert res.requests[:len(expected)] == expected, "the unmutated record must be kept"
    try:
        strict = load_records(records, fmt, source=source, strict=True)
    except DataError as exc:
        assert res.problems and exc.problem == res.problems[0]
    else:
        assert not res.problems and strict.requests == res.requests


@settings(max_examples=40, deadline=None, derandomize=True)
@given(lines=st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda s, r, t: json.dumps({"subject": s, "relation": r, "target_new": t}),
              st.text(max_size=5), st.text(max_size=5), st.text(max_size=5)),
), min_size=1, max_size=6))
def test_random_jsonl_text_never_crashes(lines):
    text = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "facts.jsonl"
        path.write_text(text, encoding="utf-8")
        res = load_dataset(path, format="triples")
        n_lines = sum(1 for line in text.split("\n") if line.strip())  # JSON Lines: "\n" only
        _check_result_file(res, n_lines, str(path))
        try:
            load_dataset(path, format="triples", strict=True)
        except DataError as exc:
            assert exc.problem == res.problems[0]
        else:
            assert not res.problems


def _check_result_file(res, n_input, source):
    assert res.n_input == n_input
    assert res.n_kept + res.n_set_aside == res.n_input
    assert len(res.problems) == res.n_set_aside
    for p in res.problems:
        assert p.file == source and p.kind in PROBLEM_KINDS
        if p.kind == UNREADABLE:
            assert p.line is not None and p.column is not None
