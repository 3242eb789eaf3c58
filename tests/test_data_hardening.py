"""Damaged input: deep nesting, literal braces, bytes that are not UTF-8, syntax errors
mid-file; each is a named problem, every record is counted, and nothing crashes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from corredit.cli import main
from corredit.data import DataError, load_dataset
from corredit.data.problems import (
    BAD_VALUE, NOT_UTF8, SUBJECT_NOT_IN_PROMPT, TOO_DEEP, UNREAD_REST, UNREADABLE,
)


def flat(i: int, **kw) -> dict:
    """One flattened CounterFact record."""
    rec = {"case_id": i, "prompt": f"Subj{i} is located in", "subject": f"Subj{i}",
           "target_new": "Paris", "ground_truth": "Rome"}
    rec.update(kw)
    return rec


def write_array(path: Path, records: list[dict], *, indent: int | None = None) -> Path:
    path.write_text(json.dumps(records, indent=indent))
    return path


def counts(res) -> tuple[int, int, int]:
    return res.n_input, res.n_kept, res.n_set_aside


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# deep nesting ---------------------------------------------------------------------------

def test_a_deeply_nested_file_is_a_named_problem(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    res = load_dataset(path)
    assert counts(res) == (1, 0, 1)
    (p,) = res.problems
    assert p.file == str(path) and p.index == 0 and p.kind == TOO_DEEP
    code, out, err = cli(["data", "info", str(path)], capsys)
    assert code == 1 and "Traceback" not in err
    assert str(path) in err and "nested" in out


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_deep_nesting_inside_one_record_sets_aside_that_record(tmp_path, suffix):
    deep = "[" * 50000 + "]" * 50000
    lines = [json.dumps(flat(0)), json.dumps(flat(1))[:-1] + f', "x": {deep}}}',
             json.dumps(flat(2))]
    path = tmp_path / f"nested{suffix}"
    path.write_text("[\n" + ",\n".join(lines) + "\n]" if suffix == ".json" else "\n".join(lines))
    res = load_dataset(path)
    assert counts(res) == (3, 2, 1)
    assert [(p.index, p.kind) for p in res.problems] == [(1, TOO_DEEP)]
    assert [r.case_id for r in res.requests] == ["0", "2"]


def test_a_deeply_nested_single_object_is_a_named_problem(tmp_path):
    path = tmp_path / "one.json"
    path.write_text('{"a": ' + "[" * 100000 + "]" * 100000 + "}")
    res = load_dataset(path, format="counterfact-flat")
    assert counts(res) == (1, 0, 1) and res.problems[0].kind == TOO_DEEP


# literal braces -------------------------------------------------------------------------

def test_literal_braces_in_a_flattened_prompt_are_text(tmp_path):
    path = write_array(tmp_path / "cf.json", [
        flat(0, subject="A{}B", prompt="A{}B is located in"),
        flat(1, subject="Windows Phone 7", prompt="Windows Phone 7, developed by {}"),
        flat(2, subject="Nokia", prompt="{} is developed by"),
    ])
    res = load_dataset(path)
    reqs = {r.case_id: r for r in res.requests}
    assert reqs["0"].prompt.format(reqs["0"].subject) == "A{}B is located in"
    assert reqs["1"].prompt.format(reqs["1"].subject) == "Windows Phone 7, developed by {}"
    assert counts(res) == (3, 2, 1)
    (p,) = res.problems
    assert (p.index, p.field, p.kind) == (2, "prompt", SUBJECT_NOT_IN_PROMPT)


def test_literal_braces_in_triples_prompts(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"subject": "A{}B", "relation": "r", "target_new": "x", "prompt": "A{}B lies in"},
            {"subject": "Kim", "relation": "r", "target_new": "x", "prompt": "{} lies in"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    res = load_dataset(path, format="triples")
    assert [r.prompt.format(r.subject) for r in res.requests] == ["A{}B lies in", "Kim lies in"]


# bytes that are not UTF-8 ---------------------------------------------------------------

def _bad_byte(text: str, after: str) -> bytes:
    return text.encode().replace(after.encode(), after.encode() + b"\xff", 1)


@pytest.mark.parametrize("indent", [None, 1])
def test_a_bad_byte_in_a_json_array_sets_aside_its_record_only(tmp_path, indent):
    path = tmp_path / "cf.json"
    text = json.dumps([flat(i) for i in range(5)], indent=indent)
    path.write_bytes(_bad_byte(text, "Subj3 is"))
    res = load_dataset(path)
    assert counts(res) == (5, 4, 1)
    (p,) = res.problems
    assert (p.file, p.index, p.kind) == (str(path), 3, NOT_UTF8)
    assert "0xff" in p.message and p.line is not None


def test_a_bad_byte_in_json_lines_and_csv(tmp_path):
    lines = tmp_path / "cf.jsonl"
    lines.write_bytes(_bad_byte("\n".join(json.dumps(flat(i)) for i in range(4)), "Subj1 is"))
    res = load_dataset(lines)
    assert counts(res) == (4, 3, 1) and res.problems[0].index == 1
    assert res.problems[0].kind == NOT_UTF8 and res.problems[0].line == 2
    table = tmp_path / "t.csv"
    table.write_bytes(_bad_byte("subject,relation,target_new\nKim,lives in,Oslo\n"
                                "Lee,lives in,Bergen\nMo,lives in,Rome\n", "Bergen"))
    res = load_dataset(table, format="triples")
    assert counts(res) == (3, 2, 1)
    assert (res.problems[0].index, res.problems[0].kind, res.problems[0].line) == (1, NOT_UTF8, 3)


def test_a_bad_byte_in_a_folder_is_counted_and_reported(tmp_path, capsys):
    write_array(tmp_path / "a.json", [flat(i) for i in range(5)])
    (tmp_path / "b.json").write_bytes(
        _bad_byte(json.dumps([flat(i) for i in range(5, 10)]), "Subj7 is"))
    res = load_dataset(tmp_path)
    assert counts(res) == (10, 9, 1) and not res.skipped
    assert not res.clean and "1 of 10 records set aside" in res.summary()
    code, out, err = cli(["data", "info", str(tmp_path), "--json"], capsys)
    s = json.loads(out)
    assert code == 0 and s["n_problems"] == 1 and s["skipped_files"] == []
    assert "1 of 10 records set aside" in err


def test_an_undecodable_file_in_a_folder_is_not_skipped_silently(tmp_path):
    write_array(tmp_path / "a.json", [flat(i) for i in range(5)])
    (tmp_path / "b.json").write_bytes(b"\xff\xfe\x00garbage\x80" * 10)
    res = load_dataset(tmp_path)
    assert res.n_input == res.n_kept + res.n_set_aside and res.n_set_aside >= 1
    assert res.skipped == () and res.problems and res.problems[0].file.endswith("b.json")
    assert not res.clean


def test_check_warns_loudly_or_refuses(tmp_path, caplog, capsys):
    path = tmp_path / "cf.json"
    path.write_bytes(_bad_byte(json.dumps([flat(i) for i in range(4)]), "Subj2 is"))
    res = load_dataset(path)
    with caplog.at_level(logging.WARNING, logger="corredit.data"):
        assert res.check() is res
    assert "1 of 4 records set aside" in capsys.readouterr().err
    with pytest.raises(DataError) as exc:
        res.check(strict=True)
    assert exc.value.problem.kind == NOT_UTF8 and str(path) in str(exc.value)
    good = load_dataset(write_array(tmp_path / "ok.json", [flat(0)]))
    assert good.clean and good.check(strict=True) is good
    assert capsys.readouterr().err == ""


def test_set_aside_records_are_reported_once_each_way(tmp_path, caplog, capsys):
    path = tmp_path / "cf.json"
    path.write_bytes(_bad_byte(json.dumps([flat(i) for i in range(4)]), "Subj2 is"))
    with caplog.at_level(logging.WARNING, logger="corredit.data"):
        load_dataset(path).check()
    assert [r.getMessage().count("1 of 4 records set aside") for r in caplog.records] == [1]
    assert capsys.readouterr().err.count("1 of 4 records set aside") == 1


def test_half_a_surrogate_pair_sets_its_record_aside(tmp_path):
    path = tmp_path / "cf.json"
    path.write_text(json.dumps([flat(0, target_new="Par\ud800is"), flat(1, target_new="\U0001F600")]))
    res = load_dataset(path)
    assert counts(res) == (2, 1, 1) and res.requests[0].target_new == "\U0001F600"
    assert (res.problems[0].index, res.problems[0].kind) == (0, NOT_UTF8)


# syntax errors --------------------------------------------------------------------------

@pytest.mark.parametrize("indent", [None, 2])
def test_a_syntax_error_mid_array_counts_every_record(tmp_path, indent):
    path = tmp_path / "cf.json"
    text = json.dumps([flat(i) for i in range(5)], indent=indent)
    path.write_text(text.replace('"Paris"', '"Paris" "x"', 3).replace('"Paris" "x"', '"Paris"', 2))
    res = load_dataset(path)
    assert counts(res) == (5, 4, 1)
    assert [(p.index, p.kind) for p in res.problems] == [(2, UNREADABLE)]


def test_a_missing_comma_between_records(tmp_path):
    path = tmp_path / "cf.json"
    path.write_text("[" + json.dumps(flat(0)) + ",\n" + json.dumps(flat(1)) + "\n"
                    + json.dumps(flat(2)) + ",\n" + json.dumps(flat(3)) + "]")
    res = load_dataset(path)
    assert counts(res) == (4, 3, 1) and res.problems[0].index == 2


def test_a_truncated_file_says_the_rest_is_unread(tmp_path, capsys):
    path = tmp_path / "cf.json"
    text = json.dumps([flat(i) for i in range(5)], indent=1)
    path.write_text(text[: text.index('"Subj3 is') + 4])
    res = load_dataset(path)
    assert counts(res) == (4, 3, 1)
    (p,) = res.problems
    assert p.kind == UNREAD_REST and p.index == 3
    assert res.unread_files == (str(path),)
    assert "could not be read to its end" in res.summary()
    code, out, err = cli(["data", "info", str(path)], capsys)
    assert code == 0 and "unread rest" in out


def test_a_bad_csv_row_does_not_end_the_file(tmp_path):
    path = tmp_path / "t.csv"
    big = "x" * 200_000
    path.write_text(f"subject,relation,target_new\nKim,lives in,Oslo\nLee,lives in,{big}\n"
                    "Mo,lives in,Rome\n")
    res = load_dataset(path, format="triples")
    assert res.n_input == res.n_kept + res.n_set_aside
    assert [r.subject for r in res.requests] == ["Kim", "Mo"]


def test_problem_kinds_are_described():
    from corredit.data import PROBLEM_KINDS
    assert {NOT_UTF8, TOO_DEEP, UNREAD_REST, BAD_VALUE} <= PROBLEM_KINDS.keys()


# fuzz -----------------------------------------------------------------------------------

def _rome(i: int) -> dict:
    return {"case_id": i, "requested_rewrite": {
        "prompt": "{} was born in", "subject": f"Person {i}", "relation_id": "P19",
        "target_new": {"str": "Oslo", "id": "Q1"}, "target_true": {"str": "Rome", "id": "Q2"}},
        "paraphrase_prompts": [f"Person {i} is from"], "neighborhood_prompts": ["X was born in"]}


def _zsre(i: int) -> dict:
    return {"subject": f"Thing {i}", "src": f"What is the maker of Thing {i}?",
            "answers": ["Acme"], "alt": "Globex", "rephrase": f"Who makes Thing {i}?"}


def _triple(i: int) -> dict:
    return {"subject": f"Kim {i}", "relation": "lives in", "target_new": "Oslo",
            "prompt": f"Kim {i} lives in"}


_MAKERS = [flat, _rome, _zsre, _triple]
_DEEP = "[" * 30000 + "]" * 30000


def _mutate_record(rng, rec: dict) -> dict:
    rec = json.loads(json.dumps(rec))
    key = rng.choice(sorted(rec))
    op = rng.randrange(6)
    if op == 0:
        del rec[key]
    elif op == 1:
        rec[key] = rng.choice([None, 3, 2.5, True, [], {}, "", "  ", ["x", 1], {"str": 5}])
    elif op == 2 and isinstance(rec[key], str):
        rec[key] = rec[key][: rng.randrange(len(rec[key]) + 1)] + rng.choice(
            ["{}", "{", "}", "{0}", "\ud800", "\x00", "\u2028", "\u0085"])
    elif op == 3:
        rec[key] = 10 ** 5000  # written as a 5001-digit integer
    elif op == 4:
        rec["subject"] = "{}" + str(rec.get("subject", ""))
    return rec


def _serialize(rng, records: list, suffix: str) -> str:
    if suffix == ".csv":
        import csv
        import io
        buf = io.StringIO()
        keys = sorted({k for r in records if isinstance(r, dict) for k in r})
        w = csv.DictWriter(buf, keys, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow({k: v for k, v in r.items() if not isinstance(v, int) or v < 10 ** 100}
                       if isinstance(r, dict) else {})
        return buf.getvalue()
    dumped = []
    for r in records:
        try:
            dumped.append(json.dumps(r))
        except ValueError:  # an integer too long to write: put the digits in by hand
            dumped.append(json.dumps({k: v for k, v in r.items()
                                      if not isinstance(v, int) or v < 10 ** 100})
                          [:-1] + ', "n": ' + "7" * 5000 + "}")
    if suffix == ".jsonl":
        return "\n".join(dumped) + "\n"
    return "[\n" + ",\n".join(dumped) + "\n]" if rng.random() < 0.5 else "[" + ", ".join(dumped) + "]"


def _corrupt_bytes(rng, data: bytes) -> tuple[bytes, bool]:
    """Damaged bytes, and whether the number of records must be unchanged."""
    op = rng.randrange(8)
    n = len(data)
    at = rng.randrange(n) if n else 0
    if op == 0:  # a letter becomes a byte that is not UTF-8: only its record suffers
        letters = [i for i, b in enumerate(data) if 97 <= b <= 122]
        if letters:
            i = rng.choice(letters)
            return data[:i] + bytes([rng.choice([0xFF, 0x80, 0xC3, 0xE9])]) + data[i + 1:], True
    if op == 1:
        return data[:at], False
    if op == 2:
        return data[:at] + data[at + rng.randrange(1, 40):], False
    if op == 3:
        return data[:at] + rng.choice([b"{", b"}", b"[", b"]", b",", b'"', b":", b"\\"]) \
            + data[at:], False
    if op == 4:
        return data[:at] + _DEEP.encode() + data[at:], False
    if op == 5:
        return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))) \
            + data[at:], False
    if op == 6:
        return data + data[: rng.randrange(n + 1)], False
    return data, True


def _check(res, path: Path) -> None:
    assert res.n_kept + res.n_set_aside == res.n_input, path
    assert len(res.requests) >= res.n_kept or res.n_kept == 0, path
    assert all(p.file == str(path) and p.message for p in res.problems), path
    with_index = {p.index for p in res.problems if p.index is not None}
    assert len(with_index) <= res.n_set_aside, path
    for r in res.requests:
        json.dumps(r.to_dict(), ensure_ascii=False).encode("utf-8")  # as write_requests
        r.prompt.format(r.subject)


def test_fuzz_damaged_files_never_crash_and_count_every_record(tmp_path, capsys):
    import random

    from corredit.data import UnknownFormatError

    rng = random.Random(20240611)
    n_files = n_records = 0
    for k in range(240):
        make = _MAKERS[k % len(_MAKERS)]
        suffix = [".json", ".jsonl", ".csv"][k % 3] if make is _triple else rng.choice(
            [".json", ".jsonl"])
        size = rng.randrange(1, 8)
        records = [make(k * 10 + i) for i in range(size)]
        records = [_mutate_record(rng, r) if rng.random() < 0.3 else r for r in records]
        data, same_count = _corrupt_bytes(rng, _serialize(rng, records, suffix).encode(
            "utf-8", "surrogatepass"))
        path = tmp_path / f"f{k}{suffix}"
        path.write_bytes(data)
        n_files += 1
        n_records += size
        fmt = "triples" if suffix == ".csv" else None
        try:
            res = load_dataset(path, format=fmt)
        except UnknownFormatError as exc:
            assert str(path) in str(exc)
            continue
        _check(res, path)
        if same_count and suffix != ".csv":
            assert res.n_input == size, (path, res.problems)
        try:
            strict = load_dataset(path, format=fmt, strict=True)
        except DataError as exc:
            assert res.problems and exc.problem == res.problems[0]
        else:
            assert not res.problems and strict.n_input == res.n_input
        if k % 12 == 0:
            code = main(["data", "info", str(path)] + (["--format", fmt] if fmt else []))
            err = capsys.readouterr().err
            assert code in (0, 1, 2) and "Traceback" not in err
    folder = load_dataset(tmp_path)  # every file at once, each in its detected format
    _check_folder(folder)
    assert n_files == 240 and n_records > 800


def _check_folder(res) -> None:
    assert res.n_kept + res.n_set_aside == res.n_input
    skipped = {f for f, _ in res.skipped}
    assert all(p.file not in skipped for p in res.problems)
