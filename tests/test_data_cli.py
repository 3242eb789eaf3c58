"""``corredit data`` subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from corredit.data import commands

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def run(argv, capsys):
    """Run the data subcommands as corredit.cli.main does (errors -> exit code 2)."""
    parser = argparse.ArgumentParser(prog="corredit")
    sub = parser.add_subparsers(dest="command")
    commands.register(sub)
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"corredit {args.command}: error: {msg}", file=__import__("sys").stderr)
        code = 2
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_table(capsys):
    code, out, err = run(["data", "info", str(FIXTURES / "counterfact_flat.json")], capsys)
    assert code == 0 and err == ""
    assert "format                  counterfact-flat" in out
    assert "subjects                5" in out
    assert "relations               5 (inferred; by template 4, neighbourhood 1, cluster 2)" in out
    assert "subjects with 2+ facts  2 (largest: 'Lenka Darvas', 2 facts)" in out
    assert "subject first           5 of 7 prompts" in out
    assert "relation histogram:" in out and "P30" in out


def test_info_json(capsys):
    code, out, _ = run(["data", "info", str(FIXTURES / "counterfact_flat.json"), "--json"], capsys)
    s = json.loads(out)
    assert code == 0
    assert (s["n_records"], s["n_subjects"], s["n_relations"], s["n_multi_fact_subjects"]) == (7, 5, 5, 2)
    assert s["n_templates"] == 7 and s["n_problems"] == 0 and s["n_set_aside"] == 0


def test_info_reports_set_aside_records(capsys):
    path = FIXTURES / "bad" / "counterfact_flat_bad.json"
    code, out, err = run(["data", "info", str(path), "--problems", "2"], capsys)
    assert code == 0
    assert "set aside 7" in out and "problems (first 2 of 7):" in out
    assert "record 1 (case_id '1'), field 'target_new': field is missing" in out
    assert err.strip().startswith(f"corredit data info: warning: {path}: 7 of 9 records set "
                                  f"aside (7 problem(s): wrong_type 2, missing_field 1")
    code, out, err = run(["data", "info", str(path), "--strict"], capsys)
    assert code == 2 and out == ""
    assert "error:" in err and "record 1 (case_id '1'), field 'target_new'" in err


def test_info_options_and_errors(capsys):
    code, out, _ = run(["data", "info", str(FIXTURES / "zsre.json"), "--json",
                        "--zsre-target", "answers"], capsys)
    assert code == 0 and json.loads(out)["options"] == {"target": "answers"}
    code, _, err = run(["data", "info", str(FIXTURES / "world" / "requests.jsonl"),
                        "--format", "bogus"], capsys)
    assert code == 2 and "unknown dataset format 'bogus'; known: corredit," in err
    code, _, err = run(["data", "info", str(FIXTURES / "nothing.json")], capsys)
    assert code == 2 and "no such file" in err


def test_formats_and_sources(capsys):
    code, out, _ = run(["data", "formats"], capsys)
    assert code == 0 and "counterfact-flat" in out and "[target='alt']" in out
    code, out, _ = run(["data", "sources"], capsys)
    assert code == 0 and "known-1000" in out


def test_registered_in_the_corredit_command(capsys):
    from corredit.cli import main
    assert main(["data", "info", str(FIXTURES / "mquake.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_groups"] == 2
    unknown = FIXTURES / "bad"
    assert main(["data", "info", str(unknown / "bad_rows.csv"), "--format", "zsre", "--strict"]) == 2
    assert "corredit data: error:" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["world"])
def test_world_folder(capsys, name):
    code, out, _ = run(["data", "info", str(FIXTURES / name), "--json"], capsys)
    assert code == 0 and json.loads(out)["format"] == "corredit"
