"""The notebook API: edit / score / restore on objects in memory, run_experiment on
in-memory edits and a loaded model, edits from prompts, and a run's own components."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from test_runner import MEMIT_HP, config_text, make_fixture

import corredit
from corredit import EditRequest
from corredit.config import load_config, parse_config


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return make_fixture(tmp_path_factory.mktemp("api-fixture"))


def _memit_only(fx, **kw) -> str:
    return config_text(fx, schedulers=["random"], batch_sizes=[6], **kw).split(
        '[[editors]]\nname = "rome"')[0]


def test_in_memory_edits_and_model_give_the_rows_of_files(fx, tmp_path):
    from corredit.data import load_dataset
    from corredit.models import load

    path = tmp_path / "run.toml"
    path.write_text(_memit_only(fx), encoding="utf-8")
    from_files = corredit.run_experiment(path, out=tmp_path / "files")
    reqs = load_dataset(fx["edits"]).requests
    in_memory = corredit.run_experiment(load_config(path).to_dict(), requests=reqs,
                                        handle=load(fx["model"]))
    assert len(from_files) > 0 and set(from_files["suite"]) >= {"probability", "health"}
    pd.testing.assert_frame_equal(in_memory, from_files)
    assert (tmp_path / "files" / "results.parquet").is_file()


def test_edit_score_restore_and_the_rows_feed_the_plots(fx):
    import matplotlib

    matplotlib.use("Agg")
    from corredit.data import load_dataset
    from corredit.models import load, param_checksum
    from corredit.plots import case_scores, plot_scheduler_comparison

    h = load(fx["model"])
    reqs = load_dataset(fx["edits"]).requests[:6]
    names = [n for n, _ in h.model.named_parameters()]
    before = param_checksum(h.model, names)
    overrides = {"layers": [0], "context_templates": [[5, 1]], "v_num_grad_steps": 6,
                 "v_weight_decay": 0.01, "mom2_update_weight": 10.0}
    result = corredit.edit(h, reqs, "memit", corpus=str(fx["texts"]), hparams=overrides,
                           max_tokens=500, cache_dir=fx["cache"])
    assert result.editor == "memit" and param_checksum(h.model, names) != before
    rows = corredit.score(h, reqs, result=result, scheduler="random")
    assert {"run", "trial", "step", "batch", "editor", "scheduler"} <= set(rows.columns)
    assert set(rows["step"]) == {0} and set(rows["batch_size"]) == {6}
    assert len(case_scores(rows)) > 0
    assert plot_scheduler_comparison(rows) is not None
    corredit.restore(h, result)
    assert param_checksum(h.model, names) == before
    unedited = corredit.score(h, reqs)
    assert set(unedited["step"]) == {-1} and set(unedited["editor"]) == {"none"}
    with pytest.raises(ValueError, match="needs second-moment statistics"):
        corredit.edit(h, reqs, "memit", hparams=overrides)
    with pytest.raises(ValueError, match="unknown columns"):
        corredit.score(h, reqs, colour="red")


def test_edit_request_from_prompt():
    r = EditRequest.from_prompt("Toma Velik was born in", "Toma Velik", "Rasko", "Belun",
                                paraphrase_prompts=["Toma Velik's birthplace is"])
    assert r.prompt == "{} was born in" and r.relation_id == "{} was born in"
    assert r.rewrite_prompt == "Toma Velik was born in" and r.paraphrase_prompts
    assert r.case_id == EditRequest.from_prompt("Toma Velik was born in", "Toma Velik",
                                                "Rasko", "Belun").case_id
    assert EditRequest.from_prompt("{} plays the", "Ana", "harp", case_id="7").case_id == "7"
    for args, field in [(("Toma was born in", "Velik", "Rasko"), "prompt"),
                        (("Toma Velik was born in", "Toma Velik", " "), "target_new"),
                        (("Toma Velik was born in", "Toma Velik", "B", "B"), "target_new")]:
        with pytest.raises(ValueError, match=f"field '{field}'"):
            EditRequest.from_prompt(*args)


def test_schedulers_declare_whether_they_need_embeddings():
    from corredit.schedule import SCHEDULERS, make_schedule, needs_embeddings

    reqs = [EditRequest(case_id=str(i), subject=f"S{i % 2}", relation_id="r", prompt="{} is",
                        target_new="x", target_true="y") for i in range(4)]
    for name in SCHEDULERS.names():
        if needs_embeddings(name):
            with pytest.raises(ValueError, match="needs embeddings"):
                make_schedule(name, reqs, 2)
        else:
            assert make_schedule(name, reqs, 2).n_edits == 4
    cfg = parse_config({"name": "x", "editors": [{"name": "memit"}],
                        "schedule": {"schedulers": ["random", "correlated"]}})
    with pytest.raises(ValueError, match="'correlated' needs an embedding"):
        cfg.check_names()


PLUGIN = '''
from corredit.editors import register_editor
from corredit.editors.ft import FTL
from corredit.embed import EMBEDDERS
from corredit.embed.text import TfidfEmbedder
from corredit.schedule import chunk, register_scheduler


@register_scheduler("test_reversed")
def reversed_order(edits, batch_size, *, seed):
    return chunk(list(range(edits.n - 1, -1, -1)), batch_size)


@register_editor("test_ft")
class TestFT(FTL):
    pass


@EMBEDDERS.register("test_tfidf")
class TestTfidf(TfidfEmbedder):
    pass
'''


def test_a_runs_own_editor_embedder_and_scheduler_reach_corredit_run(fx, tmp_path, capsys):
    from corredit.cli import main

    plugin = tmp_path / "my_plugins.py"
    plugin.write_text(PLUGIN, encoding="utf-8")
    text = _memit_only(fx).replace('progress = false\n', f'progress = false\nimports = ["{plugin}"]\n')
    text = text.replace('embedder = "tfidf"\nfield = "subject"', 'embedder = "test_tfidf"\nfield = "subject"')
    text = text.replace('schedulers = ["random"]', 'schedulers = ["test_reversed"]')
    text = text.replace('name = "memit"\nmode = "batch"\nhparams = ' + MEMIT_HP,
                        'name = "test_ft"\nmode = "batch"\nstats = false\nhparams = { num_steps = 3 }')
    assert "test_ft" in text and "test_reversed" in text and "test_tfidf" in text
    path = tmp_path / "plugged.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    df = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert set(df["editor"]) == {"test_ft"} and set(df["scheduler"]) == {"test_reversed"}
    assert any(m.startswith("max_sim:subject_tfidf") for m in df["metric"])
    bad = tmp_path / "bad.toml"
    bad.write_text(textwrap.dedent('''\
        imports = ["no_such_module_anywhere"]
        editors = [{ name = "memit" }]
        '''), encoding="utf-8")
    assert main(["run", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert "imports[0]: cannot import 'no_such_module_anywhere'" in capsys.readouterr().err
