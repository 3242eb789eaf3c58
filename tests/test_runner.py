"""The experiment runner: config parsing and validation, the trial grid, row conventions,
restore checks, determinism and resumption (on a tiny random model, no world needed)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from corredit.config import DataConfig, RunConfig, load_config, parse_config
from corredit.results import RESULT_COLUMNS, CONFIG_COLUMNS, validate_rows
from corredit.data.selection import select_requests
from corredit.evaluate import SUITES, Suite, heldout_windows, register_case_suite
from corredit.evaluate import token_perplexity as perplexity
from corredit.models import param_checksum
from corredit.runner import Runner, RunInputs, retention_checkpoints, run_experiment
from corredit.types import EditRequest

# -- a tiny world on disk: a saved tiny model, its texts and a JSONL of edits ---------------

CITIES = ["Paris", "Berlin", "Rome", "Madrid"]
RELATIONS = [
    ("capital_of", "{} is the capital of", "The capital of {} is",
     ["France", "Germany", "Italy", "Spain"]),
    ("language", "{} has the language", "The language of {} is",
     ["French", "German", "Italian", "Spanish"]),
    ("river", "{} has the river", "The river of {} is", ["Seine", "Spree", "Tiber", "Thames"]),
]
MEMIT_HP = '{ layers = [0], context_templates = [[5, 1]], v_weight_decay = 0.01, ' \
           'mom2_update_weight = 10.0, v_num_grad_steps = 6 }'
ROME_HP = '{ layer = 0, context_templates = [[5, 1]], v_weight_decay = 0.01, v_lr = 0.2, ' \
          'v_num_grad_steps = 6 }'


def tiny_requests() -> list[EditRequest]:
    """4 subjects x 3 relations, subject-first phrasings."""
    out = []
    for rid, prompt, para, objs in RELATIONS:
        for ci, city in enumerate(CITIES):
            out.append(EditRequest(
                case_id=f"{rid}-{ci}", subject=city, relation_id=rid, prompt=prompt,
                target_new=objs[(ci + 1) % len(objs)], target_true=objs[ci],
                paraphrase_prompts=(para.format(city),),
                neighborhood_prompts=tuple(prompt.format(c) for c in CITIES if c != city)[:2]))
    return out


def make_fixture(root: Path) -> dict[str, Path]:
    """Write a tiny model folder, a text file and an edits file under ``root``."""
    from corredit.models.testing import TINY_TEXT, tiny_model

    root.mkdir(parents=True, exist_ok=True)
    h = tiny_model("GPT2LMHeadModel", seed=0)
    h.model.save_pretrained(root / "model")
    h.tokenizer.save_pretrained(root / "model")
    (root / "texts.txt").write_text(TINY_TEXT, encoding="utf-8")
    with open(root / "edits.jsonl", "w", encoding="utf-8") as fh:
        for r in tiny_requests():
            fh.write(json.dumps(r.to_dict()) + "\n")
    return {"model": root / "model", "texts": root / "texts.txt", "edits": root / "edits.jsonl",
            "cache": root / "cache"}


def run_header(fx: dict[str, Path], name: str, *, stats: bool = True) -> str:
    """The opening tables of a run file over the tiny fixture: name, model, cache, one
    thread, seed 0, its edits and (with ``stats``) its statistics text."""
    text = textwrap.dedent(f"""\
        name = "{name}"
        model = "{fx['model']}"
        cache_dir = "{fx['cache']}"
        progress = false
        threads = 1
        seeds = [0]

        [data]
        source = "{fx['edits']}"
        """)
    if stats:
        text += textwrap.dedent(f"""\

            [stats]
            corpus = "{fx['texts']}"
            max_tokens = 500
            """)
    return text


def config_text(fx: dict[str, Path], *, extra_editors: str = "", schedulers=None,
                batch_sizes=None, seeds=None, name: str = "tiny") -> str:
    """A run file over the tiny fixture: MEMIT (batch), ROME (sequential) and FT-L
    (sequential-batch)."""
    schedulers = schedulers or ["random", "same_subject_together"]
    batch_sizes = batch_sizes or [3, 6]
    seeds = seeds or [0]
    return textwrap.dedent(f"""\
        name = "{name}"
        model = "{fx['model']}"
        cache_dir = "{fx['cache']}"
        progress = false
        threads = 1
        seeds = {json.dumps(seeds)}

        [data]
        source = "{fx['edits']}"

        [stats]
        corpus = "{fx['texts']}"
        max_tokens = 500

        [health]
        texts = "{fx['texts']}"
        max_tokens = 200
        max_length = 48

        [[embeddings]]
        name = "subject_tfidf"
        embedder = "tfidf"
        field = "subject"

        [[embeddings]]
        name = "relation_tfidf"
        embedder = "tfidf"
        field = "relation"

        [graph]
        k = 3

        [schedule]
        schedulers = {json.dumps(schedulers)}
        batch_sizes = {json.dumps(batch_sizes)}

        [evaluate]
        retention_every = 5

        [[editors]]
        name = "memit"
        mode = "batch"
        hparams = {MEMIT_HP}

        [[editors]]
        name = "rome"
        mode = "sequential"
        schedulers = ["random"]
        hparams = {ROME_HP}

        [[editors]]
        name = "ft-l"
        label = "ft"
        mode = "sequential-batch"
        batch_sizes = [6]
        schedulers = ["same_subject_together"]
        stats = false
        hparams = {{ num_steps = 5 }}
        """) + extra_editors


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> dict[str, Path]:
    return make_fixture(tmp_path_factory.mktemp("tiny-world"))


@pytest.fixture(scope="module")
def tiny_run(fixture_dir, tmp_path_factory):
    """One full run of the tiny grid on a handle loaded here: (config, folder, results,
    handle)."""
    from corredit.models import load

    root = tmp_path_factory.mktemp("run")
    path = root / "run.toml"
    path.write_text(config_text(fixture_dir), encoding="utf-8")
    cfg = load_config(path)
    h = load(fixture_dir["model"])
    folder = Runner(cfg, root / "out", handle=h).run()
    return cfg, folder, pd.read_parquet(folder.root / "results.parquet"), h


# -- config ------------------------------------------------------------------------------------

def _write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def test_grid_expands_editors_schedulers_batch_sizes_and_seeds(tmp_path, fixture_dir):
    path = _write(tmp_path, config_text(fixture_dir, seeds=[0, 1]), "grid.toml")
    cfg = load_config(path)
    names = [t.name for t in cfg.trials()]
    # memit: 2 batch sizes x 2 schedulers x 2 seeds; rome: batch size 1 x 1 scheduler x 2;
    # ft: 1 batch size x 1 scheduler x 2
    assert len(names) == 8 + 2 + 2 == len(set(names))
    assert "memit-same_subject_together-b6-s1" in names
    assert [t.batch_size for t in cfg.trials() if t.editor.name == "rome"] == [1, 1]
    assert {t.name for t in cfg.trials() if t.editor.column == "ft"} == {
        "ft-same_subject_together-b6-s0", "ft-same_subject_together-b6-s1"}
    assert cfg.name == "tiny" and cfg.schedule_embedding == "subject_tfidf"
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


@pytest.mark.parametrize("body, key, words", [
    ('editors = [{ name = "memit", mode = "bulk" }]', "editors[0].mode", "unknown mode"),
    ('colour = 1\neditors = [{ name = "memit" }]', "colour", "unknown key"),
    ('editors = [{ name = "memit", hparms = {} }]', "editors[0].hparms", "unknown key"),
    ('seeds = [0, "1"]\neditors = [{ name = "memit" }]', "seeds[1]", "expected an integer"),
    ('seeds = [0, 0]\neditors = [{ name = "memit" }]', "seeds", "appears twice"),
    ('editors = [{ name = "memit" }]\n[data]\nn_subjects = 0', "data.n_subjects", ">= 1"),
    ('editors = [{ name = "memit" }]\n[data]\nsubject_first = "yes"', "data.subject_first",
     "true or false"),
    ('editors = [{ name = "memit" }]\n[schedule]\nbatch_sizes = [8, -1]',
     "schedule.batch_sizes[1]", ">= 1"),
    ('editors = [{ name = "memit" }]\n[schedule]\nembedding = "nope"', "schedule.embedding",
     "no embedding named 'nope'"),
    ('editors = [{ name = "rome", mode = "sequential", batch_sizes = [4] }]',
     "editors[0].batch_sizes", "batch size 1"),
    ('editors = [{ name = "memit" }, { name = "memit" }]', "editors[1].label", "distinct label"),
    ('[data]\nsource = "world"', "editors", "required key is missing"),
    ('editors = [{ name = "memit" }]\n[health]\nevery = 0', "health.every", ">= 1"),
    ('editors = [{ name = "rome", subset = { n_people = 3 } }]', "editors[0].subset.n_people",
     "unknown key"),
    ('editors = [{ name = "rome", subset = { n_subjects = -2 } }]',
     "editors[0].subset.n_subjects", ">= 1"),
])
def test_bad_config_names_file_and_key(tmp_path, body, key, words):
    path = _write(tmp_path, body)
    with pytest.raises(ValueError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert words in msg


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"bad\.toml: invalid TOML"):
        load_config(_write(tmp_path, "name = [1,"))
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("change, key", [
    ({"editors": [{"name": "romeo"}]}, "editors[0].name"),
    ({"schedule": {"schedulers": ["sorted_by_luck"]}}, "schedule.schedulers"),
    ({"evaluate": {"suites": ["probability", "vibes"]}}, "evaluate.suites"),
    ({"embeddings": [{"name": "e", "embedder": "word2vec"}]}, "embeddings[0].embedder"),
])
def test_check_names_against_registries(change, key):
    table = {"name": "x", "editors": [{"name": "memit"}], **change}
    cfg = parse_config(table, source="x.toml")
    with pytest.raises(ValueError) as info:
        cfg.check_names()
    assert str(info.value).startswith(f"{key}: ")


def test_an_editor_missing_its_trained_part_stops_the_run_before_any_trial(tmp_path, fixture_dir):
    text = run_header(fixture_dir, "needs-mend", stats=False) + textwrap.dedent(f"""\

        [schedule]
        schedulers = ["random"]
        batch_sizes = [3]

        [evaluate]
        suites = ["probability"]

        [[editors]]
        name = "ft-l"
        mode = "batch"
        stats = false

        [[editors]]
        name = "mend"
        mode = "batch"
        stats = false
        hparams = {{ network = "{tmp_path / 'no-network'}" }}
        """)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"editors\[1\] \(mend\): no trained MEND network at .*no-network"):
        run_experiment(_write(tmp_path, text, "needs.toml"), out=out)
    assert not list(out.glob("trials/*.parquet"))


# -- pure pieces -------------------------------------------------------------------------------

def test_select_requests_filters_subjects_and_is_seeded():
    reqs = tiny_requests() + [EditRequest(case_id="x", subject="Oslo", relation_id="river",
                                          prompt="The river of {} is", target_new="Seine",
                                          target_true="Akerselva")]
    out = select_requests(reqs, DataConfig(min_facts_per_subject=2))
    assert [r.case_id for r in out] == [r.case_id for r in reqs[:-1]]   # Oslo has one fact
    assert select_requests(reqs, DataConfig(subject_first=False))[0].case_id == "x"
    two = select_requests(reqs, DataConfig(n_subjects=2, max_facts_per_subject=2, seed=3))
    assert len(two) == 4 and len({r.subject for r in two}) == 2
    assert [r.case_id for r in two] == [r.case_id for r in select_requests(
        reqs, DataConfig(n_subjects=2, max_facts_per_subject=2, seed=3))]
    assert len(select_requests(reqs, DataConfig(relations=("river",), max_edits=3))) == 3
    with pytest.raises(ValueError, match="case_id 'x' appears twice"):
        select_requests(reqs + reqs[-1:], DataConfig())
    with pytest.raises(ValueError, match="no edit passes"):
        select_requests(reqs, DataConfig(min_facts_per_subject=4))


def test_retention_checkpoints():
    assert retention_checkpoints(10, every=4) == [3, 7, 9]
    assert retention_checkpoints(10, points=2) == [4, 9]
    assert retention_checkpoints(10, points=0) == [9]
    assert retention_checkpoints(3, points=8) == [0, 1, 2]
    assert retention_checkpoints(0) == []


def test_param_checksum_sees_one_bit_and_perplexity_matches_model_loss():
    import torch

    from corredit.models.testing import tiny_model

    h = tiny_model("GPT2LMHeadModel", seed=1)
    name = h.adapter.param_name("mlp_out", 0)
    before = param_checksum(h.model, [name])
    p = h.model.get_parameter(name)
    with torch.no_grad():
        bits = p.view(-1).view(torch.int32)
        bits[17] ^= 1                                   # flip the lowest mantissa bit
        assert param_checksum(h.model, [name]) != before
        bits[17] ^= 1
    assert param_checksum(h.model, [name]) == before

    windows = heldout_windows(h.tokenizer, ["The cat is a star.", "Paris is in France."],
                              max_tokens=100, max_length=64)
    assert len(windows) == 1
    ids = torch.tensor([windows[0]])
    with torch.no_grad():
        loss = h.model(input_ids=ids, labels=ids).loss
    assert perplexity(h, windows) == pytest.approx(float(torch.exp(loss)), rel=1e-5)


# -- a whole run ------------------------------------------------------------------------------

def _probability(df: pd.DataFrame, trial: str) -> pd.DataFrame:
    return df[(df["trial"] == trial) & (df["suite"] == "probability")]


def test_run_writes_folder_with_schema(tiny_run):
    cfg, folder, df, _ = tiny_run
    root = folder.root
    pd.testing.assert_frame_equal(validate_rows(df), df)
    assert list(df.columns) == [*RESULT_COLUMNS, *CONFIG_COLUMNS]
    assert set(df["trial"]) == {t.name for t in cfg.trials()}
    assert set(df["suite"]) == {"probability", "correlation", "health", "diagnostics"}
    record = json.loads((root / "config.json").read_text())
    assert record.pop("code_version").startswith("0.")
    assert record == cfg.to_dict()
    for t in cfg.trials():
        sched = pd.read_parquet(root / "schedules" / f"{t.name}.parquet")
        assert sorted(sched["case_id"]) == sorted(r.case_id for r in tiny_requests())
        assert sched["batch"].max() == -(-12 // t.batch_size) - 1
    edges = pd.read_parquet(root / "graph_edges.parquet")
    assert {"source_case_id", "target_case_id", "weight"} <= set(edges.columns)
    assert set(edges["source_case_id"]) | set(edges["target_case_id"]) <= set(df["case_id"])
    # same-subject edges have subject similarity 1 and carry the flag
    same = edges[edges["shared_subject"]]
    assert len(same) and np.allclose(same["subject_tfidf"], 1.0, atol=1e-5)
    events = [json.loads(line) for line in (root / "log.jsonl").read_text().splitlines()]
    ends = [e for e in events if e["event"] == "trial_end"]
    assert sorted(e["trial"] for e in ends) == sorted(t.name for t in cfg.trials())
    assert all(e["n_edits"] == 12 and e["seconds"] > 0 and "ES" in e for e in ends)
    assert len((root / "edits.jsonl").read_text().splitlines()) == 12


def test_batch_mode_rows_score_each_case_after_its_own_batch(tiny_run):
    _, folder, df, _ = tiny_run
    p = _probability(df, "memit-random-b3-s0")
    after = p[p["step"] >= 0]
    assert (after["step"] == after["batch"]).all()
    es = after[after["metric"] == "ES"]
    assert sorted(es["case_id"]) == sorted(r.case_id for r in tiny_requests())
    sched = pd.read_parquet(folder.root / "schedules" / "memit-random-b3-s0.parquet")
    want = dict(zip(sched["case_id"], sched["batch"]))
    assert all(want[c] == b for c, b in zip(es["case_id"], es["batch"]))
    pre = p[(p["step"] == -1) & (p["metric"] == "ES")]
    assert len(pre) == 12 and all(want[c] == b for c, b in zip(pre["case_id"], pre["batch"]))
    # the edit does something: MEMIT raises the new target's efficacy over the unedited model
    assert es["value"].mean() > pre["value"].mean()


def test_sequential_mode_rescoring_for_retention(tiny_run):
    _, _, df, _ = tiny_run
    p = _probability(df, "rome-random-b1-s0")
    es = p[(p["metric"] == "ES") & (p["step"] >= 0)]
    counts = es.groupby("step").size()
    # every case right after its own step; all earlier cases at the checkpoints 4, 9, 11
    assert counts.to_dict() == {s: (s + 1 if s in (4, 9, 11) else 1) for s in range(12)}
    assert (es["step"] >= es["batch"]).all()
    assert es.groupby("case_id")["step"].max().eq(11).all()
    ft = _probability(df, "ft-same_subject_together-b6-s0")
    ft_es = ft[(ft["metric"] == "ES") & (ft["step"] >= 0)]
    assert ft_es.groupby("step").size().to_dict() == {0: 6, 1: 12}


def test_correlation_health_and_diagnostics_rows(tiny_run):
    _, folder, df, _ = tiny_run
    corr = df[(df["suite"] == "correlation") & (df["trial"] == "memit-same_subject_together-b3-s0")]
    wide = corr.pivot_table(index="case_id", columns="metric", values="value")
    assert set(wide.columns) == {"max_sim:subject_tfidf", "mean_sim:subject_tfidf",
                                 "max_sim:relation_tfidf", "mean_sim:relation_tfidf",
                                 "same_subject_in_batch"}
    # each batch of 3 holds one subject's three facts
    assert (wide["same_subject_in_batch"] == 2).all()
    assert np.allclose(wide["max_sim:subject_tfidf"], 1.0, atol=1e-5)
    assert (wide["max_sim:relation_tfidf"] < 0.99).all()       # three different relations
    assert (corr["prompt_kind"] == "case").all() and (corr["step"] == corr["batch"]).all()
    seq = df[(df["suite"] == "correlation") & (df["trial"] == "rome-random-b1-s0")]
    assert seq[seq["metric"].str.startswith("max_sim")]["value"].isna().all()
    assert (seq[seq["metric"] == "same_subject_in_batch"]["value"] == 0).all()

    health = df[df["suite"] == "health"]
    before = health[(health["step"] == -1) & (health["metric"] == "perplexity")]
    assert before.groupby("trial").size().eq(1).all() and before["value"].nunique() == 1
    assert (health["case_id"] == "").all()
    growth = health[(health["metric"] == "norm_growth") & (health["trial"] == "memit-random-b3-s0")]
    assert len(growth) == 4 and set(growth["prompt_kind"]) == {"transformer.h.0.mlp.c_proj.weight"}
    assert (growth["value"] != 1.0).all()
    ppl = health[(health["metric"] == "perplexity") & (health["trial"] == "rome-random-b1-s0")]
    assert sorted(ppl["step"]) == [-1, 4, 9, 11]

    diag = df[(df["suite"] == "diagnostics") & (df["trial"] == "memit-random-b6-s0")]
    per_case = diag[diag["case_id"] != ""]
    assert {"loss", "delta_norm"} <= set(per_case["metric"])
    assert per_case[per_case["metric"] == "loss"].groupby("case_id").size().eq(1).all()
    assert "update_norm" in set(diag.loc[diag["case_id"] == "", "metric"])


def test_model_is_restored_after_the_run(tiny_run, fixture_dir):
    from corredit.models import load

    h = tiny_run[3]                                  # the handle every trial edited
    fresh = load(fixture_dir["model"])
    names = [n for n, _ in fresh.model.named_parameters()]
    assert param_checksum(h.model, names) == param_checksum(fresh.model, names)


def test_same_config_same_rows_and_resume(tiny_run, tmp_path):
    cfg, folder, df, _ = tiny_run
    small = cfg.replace(editors=cfg.editors[:1])
    small = small.replace(schedule=small.schedule.__class__(schedulers=("random",),
                                                           batch_sizes=(6,)))
    a = run_experiment(small, tmp_path / "a")
    pd.testing.assert_frame_equal(a, df[df["trial"] == "memit-random-b6-s0"].reset_index(drop=True))

    # resume: delete one finished trial of the full run; only that one runs again
    root = tmp_path / "copy"
    import shutil

    shutil.copytree(folder.root, root)
    victim = "rome-random-b1-s0"
    (root / "trials" / f"{victim}.parquet").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in (root / "trials").glob("*.parquet")}
    n_events = len((root / "log.jsonl").read_text().splitlines())
    run_experiment(cfg, root)
    new = [json.loads(x) for x in (root / "log.jsonl").read_text().splitlines()[n_events:]]
    assert [e["trial"] for e in new if e["event"] == "trial_start"] == [victim]
    assert {p.name: p.stat().st_mtime_ns for p in (root / "trials").glob("*.parquet")
            if p.name in stamps} == stamps
    pd.testing.assert_frame_equal(
        pd.read_parquet(root / "results.parquet").sort_values(["trial"], kind="stable")
        .reset_index(drop=True),
        df.sort_values(["trial"], kind="stable").reset_index(drop=True))

    # a folder holding another configuration is refused
    with pytest.raises(ValueError, match="another configuration .*seeds"):
        run_experiment(cfg.replace(seeds=(1,)), root)


def test_a_registered_suite_plugs_in(tiny_run, tmp_path):
    cfg, _, _, _ = tiny_run

    def score_lengths(h, requests, batch_size=64):
        return pd.DataFrame({"case_id": [r.case_id for r in requests], "prompt_kind": "rewrite",
                             "prompt_index": 0, "metric": "prompt_chars",
                             "value": [float(len(r.rewrite_prompt)) for r in requests]})

    class Steps(Suite):
        name = "steps_seen"

        def measure(self, ctx, point):
            return pd.DataFrame({"case_id": [""], "prompt_kind": ["model"], "prompt_index": [0],
                                 "metric": ["n_cases"], "value": [float(len(point.cases))],
                                 "step": [point.step], "batch": [point.step]})

    register_case_suite("test_prompt_chars", score_lengths, replace=True)
    SUITES.add("test_steps_seen", Steps, replace=True)
    small = cfg.replace(editors=(cfg.editors[1],),
                        evaluate=cfg.evaluate.__class__(
                            suites=("test_prompt_chars", "test_steps_seen"), pre_edit=False,
                            retention_every=5))
    df = run_experiment(small, tmp_path / "plug")
    assert set(df["suite"]) == {"test_prompt_chars", "steps_seen"}
    chars = df[df["suite"] == "test_prompt_chars"]
    assert (chars["step"] >= 0).all() and len(chars) == 12 + 5 + 10 + 12 - 3
    steps = df[df["suite"] == "steps_seen"].set_index("step")["value"]
    assert steps[4] == 5 and steps[5] == 1 and steps[11] == 12


def test_cli_run_and_report(tiny_run, tmp_path, fixture_dir, capsys):
    from corredit.cli import main

    path = tmp_path / "cli.toml"
    path.write_text(config_text(fixture_dir, schedulers=["random"], batch_sizes=[6]).split(
        "[[editors]]\nname = \"rome\"")[0], encoding="utf-8")
    out = tmp_path / "cli-run"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "1 trials" in text and "| memit |" in text.replace("  ", " ")
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert "Summary" in (out / "report.md").read_text()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('editors = [{ name = "memit", mode = "bulk" }]\n')
    assert main(["run", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "editors[0].mode: unknown mode" in capsys.readouterr().err


def test_two_worker_processes_give_the_same_rows(tiny_run, tmp_path):
    import dataclasses
    import os

    cfg, _, df, _ = tiny_run
    memit = dataclasses.replace(cfg.editors[0], share_values=False)   # 4 separate trials
    small = cfg.replace(editors=(memit, cfg.editors[2]))              # + ft: 5 trials
    par_folder = Runner(small, tmp_path / "par", workers=2).run()
    par = par_folder.read_results()
    one = run_experiment(small, tmp_path / "one")
    assert set(par["trial"]) == {t.name for t in small.trials()}
    pd.testing.assert_frame_equal(par, one)
    pd.testing.assert_frame_equal(par[par["editor"] == "ft"].reset_index(drop=True),
                                  df[df["editor"] == "ft"].reset_index(drop=True))
    events = [json.loads(x) for x in (par_folder.root / "log.jsonl").read_text().splitlines()]
    ends = [e for e in events if e["event"] == "trial_end"]
    assert len(ends) == 5
    pids = {e["pid"] for e in ends}
    assert os.getpid() not in pids and len(pids) == 2     # two worker processes


def test_values_are_shared_only_where_every_batch_would_compute_the_same():
    from corredit.config import EditorConfig
    from corredit.editors import get_editor
    memit, rome, ft = (get_editor(n)() for n in ("memit", "rome", "ft-l"))
    batch = EditorConfig(name="memit", mode="batch")
    assert RunInputs.shares_values(batch, memit, 8)
    assert not RunInputs.shares_values(EditorConfig(name="memit", mode="batch", share_values=False),
                                    memit, 8)
    assert not RunInputs.shares_values(EditorConfig(name="memit", mode="sequential"), memit, 1)
    assert not RunInputs.shares_values(EditorConfig(name="ft-l", mode="batch"), ft, 8)
    # ROME edits a batch fact by fact: values from the unedited model fit one-fact batches only
    assert RunInputs.shares_values(EditorConfig(name="rome", mode="batch"), rome, 1)
    assert not RunInputs.shares_values(EditorConfig(name="rome", mode="batch"), rome, 8)


def test_subset_and_shared_values(tiny_run, tmp_path):
    from corredit.config import EditorConfig

    cfg, _, df, _ = tiny_run
    memit = cfg.editors[0]
    own = EditorConfig(name="memit", label="memit-own", mode="batch", hparams=memit.hparams,
                       share_values=False)
    part = EditorConfig(name="rome", label="rome-part", mode="sequential",
                        hparams=cfg.editors[1].hparams, schedulers=("random",),
                        subset={"n_subjects": 2, "seed": 1})
    small = cfg.replace(editors=(own, part),
                        schedule=cfg.schedule.__class__(schedulers=("random",), batch_sizes=(6,)))
    got = run_experiment(small, tmp_path / "sub")

    # value vectors optimised per batch instead of once per run: the same edits up to
    # floating-point order
    a = _probability(got, "memit-own-random-b6-s0").reset_index(drop=True)
    b = _probability(df, "memit-random-b6-s0").reset_index(drop=True)
    assert a[["step", "batch", "case_id", "metric"]].equals(b[["step", "batch", "case_id", "metric"]])
    assert np.allclose(a["value"], b["value"], rtol=1e-3, atol=1e-4)

    rome = got[got["editor"] == "rome-part"]
    cases = set(rome["case_id"]) - {""}
    assert len(cases) == 6 and len({c.split("-")[1] for c in cases}) == 2   # 2 subjects x 3
    pre = rome[(rome["suite"] == "probability") & (rome["step"] == -1) & (rome["metric"] == "ES")]
    assert set(pre["case_id"]) == cases
    sched = pd.read_parquet(tmp_path / "sub" / "schedules" / "rome-part-random-b1-s0.parquet")
    assert set(sched["case_id"]) == cases and sched["batch"].max() == 5
