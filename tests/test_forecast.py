"""The interference forecast: its per-layer rules reproduce what each MEMIT-family solve
leaves unfit, it reads the editor's own keys, and it flags identical keys; the
``corredit forecast`` command on a data file and on a finished run folder."""

from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from corredit.editors import forecast, get_editor
from corredit.editors.alphaedit import alphaedit_update
from corredit.editors.emmet import emmet_update
from corredit.editors.forecast import (AlphaEditGram, EmmetGram, MemitGram, gram_rule,
                                       unfit_operator)
from corredit.editors.linalg import memit_update
from corredit.models.testing import TINY_TEXT, tiny_model
from corredit.stats import TextsCorpus, second_moments
from corredit.types import EditRequest

TEXTS = [line for line in TINY_TEXT.splitlines() if line.strip()]
DISTINCT = [
    EditRequest("1", "Danielle Darrieux", "P103", "The mother tongue of {} is", "German", "French"),
    EditRequest("2", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar"),
    EditRequest("3", "Eiffel Tower", "P131", "The {} is located in the city of", "Berlin", "Paris"),
]
SAME_KEY = [      # subject first: a causal model reads one key for all three
    EditRequest("a", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar"),
    EditRequest("b", "Toko Yasuda", "P27", "{} is a citizen of", "Japan", "France"),
    EditRequest("c", "Toko Yasuda", "P19", "{} was born in", "Paris", "Rome"),
]
TINY_MEMIT = {"layers": [1], "context_templates": [[5, 1]], "v_weight_decay": 0.01,
              "mom2_update_weight": 10.0, "v_num_grad_steps": 8}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=["GPT2LMHeadModel", "LlamaForCausalLM"])
def tiny(request):
    h = tiny_model(request.param, seed=0,
                   tokenizer="gpt2" if request.param == "GPT2LMHeadModel" else "bos")
    h.model.to(torch.float64)
    mom = second_moments(h, range(h.n_layers), TextsCorpus(TEXTS * 20, identity="tiny-text"),
                         max_tokens=4000)
    return h, mom


# -- the rules, on random matrices -----------------------------------------------------------

def _problem(n=5, d=7, d_k=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d_k, 3 * d_k, generator=g, dtype=torch.float64)
    cov = a @ a.T / (3 * d_k)
    keys = torch.randn(n, d_k, generator=g, dtype=torch.float64)
    resid = torch.randn(n, d, generator=g, dtype=torch.float64)
    return cov, keys, resid


def _left(d_w, keys, resid):
    """What the update leaves unfit on the keys: rows ``r_i - dW k_i``."""
    return resid - keys @ d_w.T


def test_memit_rule_leaves_exactly_r_times_inverse_of_i_plus_g():
    cov, keys, resid = _problem()
    hp = SimpleNamespace(mom2_update_weight=3.0)
    rule = MemitGram(None, None, hp, 0, cov)
    g = rule.gram(keys)
    d_w = memit_update(resid.T, keys.T, cov, 3.0)
    expect = (resid.T @ torch.linalg.inv(torch.eye(5, dtype=torch.float64) + g)).T
    torch.testing.assert_close(_left(d_w, keys, resid), expect, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g, keys @ torch.linalg.solve(3.0 * cov, keys.T))
    u = unfit_operator([rule.fit(g)])                 # one layer: U = (I+G)^-1
    torch.testing.assert_close(u.T @ resid, expect, rtol=1e-9, atol=1e-12)


def test_emmet_and_alphaedit_rules_match_their_solves():
    cov, keys, resid = _problem(seed=1)
    hp = SimpleNamespace(mom2_update_weight=2.0, update_norm_lambda=0.5, emmet_lambda=0.1)
    rule = EmmetGram(None, None, hp, 0, cov)
    c = 2.0 * cov + 0.5 * torch.eye(9, dtype=torch.float64)
    d_w, _ = emmet_update(resid.T, keys.T, c, eps=0.1)
    u = unfit_operator([rule.fit(rule.gram(keys))])
    torch.testing.assert_close(_left(d_w, keys, resid), u.T @ resid, rtol=1e-8, atol=1e-10)
    one = rule.fit(rule.gram(keys[:1]))               # a lone fact is met exactly
    torch.testing.assert_close(one, torch.ones(1, 1, dtype=torch.float64))

    evals, evecs = torch.linalg.eigh(cov)
    proj = evecs[:, :6] @ evecs[:, :6].T
    c_hat = keys[:3].T @ keys[:3] * 0.7                # earlier batches' keys
    editor = SimpleNamespace(state_for=lambda h: {0: {"projector": proj, "c_hat": c_hat}})
    hp = SimpleNamespace(l2_weight=0.3)
    rule = AlphaEditGram(editor, None, hp, 0, cov)
    d_w = alphaedit_update(resid.T, keys.T, proj, c_hat, 0.3)
    u = unfit_operator([rule.fit(rule.gram(keys))])
    torch.testing.assert_close(_left(d_w, keys, resid), u.T @ resid, rtol=1e-8, atol=1e-10)


def test_spread_over_layers_composes_each_layers_share():
    """Two layers with the same F: U = (I - F/2)(I - F); one key, g: (1 - f/2)(1 - f)."""
    f = torch.tensor([[0.6]], dtype=torch.float64)
    u = unfit_operator([f, f])
    assert float(u) == pytest.approx((1 - 0.3) * (1 - 0.6))


def test_rules_follow_the_class_hierarchy_unless_the_solve_changes():
    from corredit.editors import EDITORS
    from corredit.editors.forecast import PmetGram
    from corredit.editors.memit import MEMIT

    class Spread(MEMIT):                 # same solve: MEMIT's rule
        name = "spread"

    class Solved(MEMIT):                 # its own solve: no rule until one is registered
        name = "solved"

        def _solve(self, h, hp, layer, change, keys, cov):
            raise NotImplementedError

    assert gram_rule(Spread()) is MemitGram
    assert gram_rule(get_editor("memit-merge")()) is MemitGram
    assert gram_rule(get_editor("emmet")()) is EmmetGram
    if "pmet" in EDITORS.names():
        assert gram_rule(get_editor("pmet")()) is PmetGram
    with pytest.raises(ValueError, match="'solved' has no interference rule"):
        gram_rule(Solved())
    with pytest.raises(ValueError, match="'rome' has no interference rule"):
        gram_rule(get_editor("rome")())


# -- on a model ------------------------------------------------------------------------------

def test_forecast_predicts_the_residual_memit_leaves_at_one_layer(tiny):
    """One layer: the residual MEMIT's own update leaves on the edit keys, ``R - dW K``, is
    the forecast's ``R (I+G)^-1``, with the forecast reading keys and C itself."""
    h, mom = tiny
    ed = get_editor("memit")(TINY_MEMIT)
    fc = forecast(h, DISTINCT, get_editor("memit")(TINY_MEMIT), mom, seed=0)
    res = ed.apply(h, DISTINCT, stats=mom, seed=0)
    ed.restore(h)
    upd = res.diagnostics["layer_updates"][0]
    d_w = res.deltas[h.adapter.param_name("mlp_out", 1)].double()
    d_w = d_w.T if h.adapter.mlp_out_transposed else d_w
    change, keys = upd["change"].double(), upd["keys"].double()
    actual = (change - keys @ d_w.T).numpy()
    predicted = fc.residual(0, change)
    np.testing.assert_allclose(predicted, actual, rtol=1e-5, atol=1e-6 * np.abs(actual).max())
    share = np.linalg.norm(actual, axis=1) / np.linalg.norm(change.numpy(), axis=1)
    assert 0.02 < share.min() and share.max() < 0.98      # a partial fit: the test bites
    u = fc.operators[0]
    np.testing.assert_allclose(fc.unfit, np.diag(u))
    np.testing.assert_allclose(fc.unfit_norm, np.linalg.norm(u, axis=0))
    # with the actual changes: the share left is the residual's norm over the change's
    fv = forecast(h, DISTINCT, get_editor("memit")(TINY_MEMIT), mom, seed=0, values=change)
    np.testing.assert_allclose(fv.unfit_actual, share, rtol=1e-5)


def test_identical_keys_give_a_singular_g_and_high_unfit(tiny):
    """Three facts of one subject, subject first: one key, rank-1 G; each fact keeps about
    2/3 of its change (only the mean of the three is written), alone it would keep ~0."""
    h, mom = tiny
    hp = {**TINY_MEMIT, "mom2_update_weight": 1e-3}
    fc = forecast(h, SAME_KEY, get_editor("memit")(hp), mom, seed=0, top_k=2)
    lay = fc.layer_frame()
    spec = lay[lay["layer"] == 1].iloc[0]
    assert spec["rank"] == 1 and spec["cond_G"] > 1e10
    assert spec["eff_rank"] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(fc.unfit, 2 / 3, atol=0.01)
    assert (fc.unfit_alone < 0.01).all()
    assert fc.interferers[0][0][1] == pytest.approx(-1 / 3, abs=0.01)
    assert {c for c, _ in fc.interferers[0]} == {"b", "c"}
    other = forecast(h, DISTINCT, get_editor("memit")(hp), mom, seed=0)
    assert other.unfit.max() < 0.2 and (other.unfit < fc.unfit).all()


def test_keys_orthogonal_in_the_whitened_metric_do_not_interfere(tiny):
    """A second moment under which the three keys are orthogonal (``K C^-1 K^T = c I``):
    G is diagonal, no batch mate leaves anything, each fact keeps ``1 / (1 + c/lam)``."""
    h, _ = tiny
    ed = get_editor("memit")(TINY_MEMIT)
    from corredit.editors.keys import KeyReader
    from corredit.models import Site

    hp = ed.hparams_for(h)
    reader = KeyReader(h, DISTINCT, ed._groups(h, hp, 0))
    site = Site("mlp_out", 1, "input")
    keys = reader.average(reader.read([site])[site], hp.key_averaging)     # (3, d_k)
    w = torch.linalg.pinv(keys)                                             # K w = I
    perp = torch.eye(keys.shape[1], dtype=torch.float64) - torch.linalg.pinv(keys) @ keys
    c_inv = 25.0 * w @ w.T + perp
    fc = forecast(h, DISTINCT, ed, {1: torch.linalg.inv(c_inv)}, seed=0)
    np.testing.assert_allclose(fc.cross, 0.0, atol=1e-8)
    np.testing.assert_allclose(fc.unfit, 1 / (1 + 25.0 / 10.0), rtol=1e-6)
    np.testing.assert_allclose(fc.unfit, fc.unfit_alone, rtol=1e-6)
    assert all(abs(wt) < 1e-8 for x in fc.interferers for _, wt in x)
    spec = fc.layer_frame().query("layer == 1").iloc[0]
    assert spec["cond_G"] == pytest.approx(1.0, rel=1e-6)


def test_batches_are_forecast_separately_and_merge_units_share_a_column(tiny):
    h, mom = tiny
    reqs = SAME_KEY + DISTINCT
    fc = forecast(h, reqs, get_editor("memit")(TINY_MEMIT), mom, batches=[[0, 3], [1, 2, 4, 5]])
    assert fc.batch.tolist() == [0, 1, 1, 0, 1, 1]
    assert {c for c, _ in fc.interferers[0]} == {"1"}           # only its batch mate
    edits = fc.edit_frame()
    assert list(edits["case_id"]) == ["a", "b", "c", "1", "2", "3"]
    assert {"interferer_1", "interferer_1_weight"} <= set(edits.columns)
    from corredit.editors.forecast import edit_keys

    keys = edit_keys(h, reqs, get_editor("memit")(TINY_MEMIT), seed=0)      # read once
    again = forecast(h, reqs, get_editor("memit")(TINY_MEMIT), mom, batches=[[0, 1, 2, 3, 4, 5]],
                     keys=keys)
    whole = forecast(h, reqs, get_editor("memit")(TINY_MEMIT), mom)
    np.testing.assert_allclose(again.unfit, whole.unfit, rtol=1e-12)
    with pytest.raises(ValueError, match="keys lack layer"):
        forecast(h, reqs, get_editor("memit")(TINY_MEMIT), mom, keys={0: keys[1]})
    mg = forecast(h, SAME_KEY, get_editor("memit-merge")(TINY_MEMIT), mom)
    assert set(mg.unit) == {"a+b+c"} and mg.operators[0].shape == (1, 1)
    with pytest.raises(ValueError, match="disjoint"):
        forecast(h, reqs, "memit", mom, batches=[[0, 1], [1, 2]])


# -- the command -----------------------------------------------------------------------------

def _run_cli(argv, capsys):
    from corredit.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    from test_runner import make_fixture

    return make_fixture(tmp_path_factory.mktemp("forecast-fixture"))


def test_cli_writes_tidy_rows_per_edit_and_per_layer(fixture_dir, tmp_path, capsys, monkeypatch):
    from corredit.data import load_dataset
    from corredit.models import load
    from corredit.stats import TextFileCorpus

    fx = fixture_dir
    monkeypatch.setenv("CORREDIT_CACHE", str(tmp_path / "cache"))
    hp = json.dumps({"layers": [0, 1], "context_templates": [[5, 1]], "mom2_update_weight": 10.0})
    out, lay = tmp_path / "fc.parquet", tmp_path / "layers.csv"
    code, text, err = _run_cli(
        ["forecast", fx["edits"], "--model", fx["model"], "--device", "cpu", "--hparams", hp,
         "--batch-size", 5, "--stats-corpus", fx["texts"], "--stats-tokens", 400,
         "--top-k", 2, "--out", out, "--out-layers", lay, "--quiet"], capsys)
    assert code == 0, err
    edits, layers = pd.read_parquet(out), pd.read_csv(lay)
    reqs = load_dataset(fx["edits"]).requests
    assert edits["case_id"].tolist() == [r.case_id for r in reqs]
    assert edits["batch"].tolist() == [i // 5 for i in range(len(reqs))]
    assert edits[["unfit", "unfit_norm", "cross", "unfit_alone"]].notna().all().all()
    assert ((edits["unfit"] > 0) & (edits["unfit"] <= 1 + 1e-9)).all()
    assert {"interferer_1", "interferer_2_weight"} <= set(edits.columns)
    assert "interferer_3" not in edits.columns
    n_batches = -(-len(reqs) // 5)
    assert len(layers) == n_batches * 3                         # layers 0, 1 and a summary
    assert sorted(layers["layer"].unique()) == [-1, 0, 1]
    assert text.count("\n| ") == n_batches + 1 and "max cond(G)" in text
    # the numbers are the library's on the same inputs
    h = load(fx["model"], device="cpu")
    from corredit.stats import StatsCache
    from corredit.paths import cache_root

    stats = StatsCache(cache_root() / "stats").get(h, [0, 1], TextFileCorpus(str(fx["texts"])), 400)
    fc = forecast(h, reqs, get_editor("memit")(json.loads(hp)), stats,
                  batches=[list(range(s, min(s + 5, len(reqs)))) for s in range(0, len(reqs), 5)])
    np.testing.assert_allclose(edits["unfit"], fc.unfit, rtol=1e-6)


def test_cli_errors_name_the_bad_input(fixture_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CORREDIT_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"case_id": "1", "subject": "Paris"\nnot json\n', encoding="utf-8")
    code, _, err = _run_cli(["forecast", bad, "--model", fixture_dir["model"], "--strict",
                             "--quiet"], capsys)
    assert code == 2 and "bad.jsonl:1" in err and "record 0" in err, err
    code, _, err = _run_cli(["forecast", tmp_path / "missing.jsonl", "--model", "world"], capsys)
    assert code == 2 and "missing.jsonl" in err
    code, _, err = _run_cli(["forecast", fixture_dir["edits"], "--run", tmp_path], capsys)
    assert code == 2 and "either DATA or --run" in err
    code, _, err = _run_cli(["forecast", fixture_dir["edits"], "--model", fixture_dir["model"],
                             "--editor", "rome", "--stats-corpus", fixture_dir["texts"],
                             "--quiet"], capsys)
    assert code == 2 and "no interference rule" in err
    code, _, err = _run_cli(["forecast", "--run", tmp_path / "nothing"], capsys)
    assert code == 2 and "config.json" in err


RUN_TOML = """\
name = "tiny-forecast"
model = "{model}"
cache_dir = "{cache}"
progress = false
threads = 1

[data]
source = "{edits}"

[stats]
corpus = "{texts}"
max_tokens = 400

[health]
texts = "{texts}"
max_tokens = 100
max_length = 32

[[embeddings]]
name = "subject_tfidf"
embedder = "tfidf"
field = "subject"

[graph]
enabled = false

[schedule]
schedulers = ["random", "same_subject_together"]
batch_sizes = [6]

[evaluate]
suites = ["probability", "correlation", "diagnostics"]

[[editors]]
name = "memit"
mode = "batch"
hparams = {{ layers = [0], context_templates = [[5, 1]], v_weight_decay = 0.01, mom2_update_weight = 10.0, v_num_grad_steps = 4 }}
"""


@pytest.fixture(scope="module")
def tiny_run(fixture_dir, tmp_path_factory):
    from corredit.config import load_config
    from corredit.models import load
    from corredit.runner import Runner

    root = tmp_path_factory.mktemp("forecast-run")
    path = root / "run.toml"
    path.write_text(RUN_TOML.format(**{k: str(v) for k, v in fixture_dir.items()}),
                    encoding="utf-8")
    cfg = load_config(path)
    folder = Runner(cfg, root / "out", handle=load(fixture_dir["model"])).run()
    return cfg, folder


def test_run_mode_forecasts_each_trials_batches_and_scores_them(tiny_run, tmp_path, capsys):
    """``--run``: one forecast row per case, measure and trial, equal to a direct forecast of
    the trial's batches; the AUC table holds the forecast next to the run's similarity."""
    from corredit.forecast_commands import forecast_run_rows
    from corredit.models import load
    from corredit.runner import RunInputs

    cfg, folder = tiny_run
    out, rows_path = tmp_path / "auc.csv", tmp_path / "rows.parquet"
    code, text, err = _run_cli(["forecast", "--run", folder.root, "--n-boot", 50, "--out", out,
                                "--out-rows", rows_path, "--quiet"], capsys)
    assert code == 0, err
    rows = pd.read_parquet(rows_path)
    assert set(rows["trial"]) == {"memit-random-b6-s0", "memit-same_subject_together-b6-s0"}
    assert set(rows["metric"]) == {"forecast:unfit", "forecast:unfit_norm", "forecast:cross",
                                   "forecast:unfit_alone"}
    assert (rows.groupby(["trial", "metric"]).size() == 12).all()
    assert (rows["suite"] == "correlation").all() and (rows["step"] == rows["batch"]).all()
    assert {"scheduler", "batch_size", "editor"} <= set(rows.columns)
    table = pd.read_csv(out)
    assert set(table["measure"]) == {*rows["metric"], "max_sim:subject_tfidf"}
    assert "forecast:unfit" in text
    # the rows of one trial are the forecast of its schedule on the unedited model
    trial = "memit-same_subject_together-b6-s0"
    sched = folder.read_schedules().query("trial == @trial")
    inputs = RunInputs(cfg, folder.root, selected=folder.read_edits(), progress=False)
    reqs = inputs.requests()
    where = {r.case_id: i for i, r in enumerate(reqs)}
    batches = [[where[c] for c in g.sort_values("position")["case_id"]]
               for _, g in sched.groupby("batch")]
    fc = forecast(inputs.handle(), reqs, inputs.editor(cfg.editors[0]), inputs.stats(),
                  batches=batches, seed=0)
    got = rows.query("trial == @trial and metric == 'forecast:unfit'").set_index("case_id")
    np.testing.assert_allclose(got.loc[fc.case_ids, "value"], fc.unfit, rtol=1e-6)
    assert (fc.unfit > fc.unfit_alone - 1e-9).all()          # mates only ever add
    again = forecast_run_rows(folder.root, progress=False, hparams={"mom2_update_weight": 1e6})
    higher = again.query("trial == @trial and metric == 'forecast:unfit'").set_index("case_id")
    assert (higher.loc[fc.case_ids, "value"] > got.loc[fc.case_ids, "value"]).all()
