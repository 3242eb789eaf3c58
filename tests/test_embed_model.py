"""Model-based embedders on tiny random models: hidden states and editor keys."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from corredit.embed import EmbeddingCache, HiddenStateEmbedder, embed_requests, make_embedder  # noqa: E402
from corredit.types import EditRequest  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    from corredit.models.testing import tiny_model

    return tiny_model("GPT2LMHeadModel", seed=0)


def _requests() -> list[EditRequest]:
    return [
        EditRequest("0", "Anna Berg", "lives_in", "{} lives in", "Rome"),
        EditRequest("1", "Anna Berg", "speaks", "The language of {} is", "Greek"),
        EditRequest("2", "Carl Dorn", "lives_in", "{} lives in", "Oslo"),
        EditRequest("3", "Eva Falk", "works_for", "{} works for", "Acme"),
        EditRequest("4", "Carl Dorn", "speaks", "The language of {} is", "Latin"),
    ]


def _direct(h, text: str, position: int | None, site) -> np.ndarray:
    from corredit.models import trace

    enc = h.encode([text])
    res = trace(h, enc["input_ids"], attention_mask=enc["attention_mask"], read=[site])
    vals = res.values[site][0]
    pos = int(enc["attention_mask"][0].sum()) - 1 if position is None else position
    return vals[pos].to(torch.float32).numpy()


@pytest.mark.parametrize("site_kind,io", [("block", "output"), ("mlp_out", "input")])
def test_hidden_state_equals_direct_trace_at_subject_token(tiny, site_kind, io):
    from corredit.models import Site, subject_token_index

    reqs = _requests()
    layer = 1
    X = HiddenStateEmbedder(tiny, layer, "subject", site=site_kind, io=io,
                            batch_size=2).fit_transform(reqs)
    dim = tiny.hidden_size if site_kind == "block" else tiny.key_size
    assert X.shape == (len(reqs), dim) and X.dtype == np.float32
    for i, r in enumerate(reqs):
        pos = subject_token_index(tiny.tokenizer, r.rewrite_prompt, r.subject)
        ref = _direct(tiny, r.rewrite_prompt, pos, Site(site_kind, layer, io))
        np.testing.assert_allclose(X[i], ref, rtol=1e-4, atol=1e-5)
    # subject first, causal model: same subject => identical state at its last token
    np.testing.assert_allclose(X[2], _direct(tiny, reqs[2].rewrite_prompt,
                                             subject_token_index(tiny.tokenizer, reqs[2].rewrite_prompt, "Carl Dorn"),
                                             Site(site_kind, layer, io)), rtol=1e-4, atol=1e-5)


def test_hidden_relation_and_triple_read_the_last_token(tiny):
    from corredit.models import Site

    reqs = _requests()
    site = Site("block", 0, "output")
    R = make_embedder("hidden", handle=tiny, layer=0, field="relation").fit_transform(reqs)
    np.testing.assert_allclose(R[1], _direct(tiny, "The language of X is", None, site),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(R[1], R[4])  # same template
    T = make_embedder("hidden", handle=tiny, layer=0, field="triple").fit_transform(reqs)
    np.testing.assert_allclose(T[3], _direct(tiny, "Eva Falk works for Acme", None, site),
                               rtol=1e-4, atol=1e-5)


def test_hidden_relation_mean_over_subjects(tiny):
    from corredit.models import Site

    reqs = _requests()
    site = Site("block", 1, "output")
    M = HiddenStateEmbedder(tiny, 1, "relation", relation_from="subjects",
                            relation_source="id").fit_transform(reqs)
    expect = (_direct(tiny, "Anna Berg lives in", None, site)
              + _direct(tiny, "Carl Dorn lives in", None, site)) / 2
    np.testing.assert_allclose(M[0], expect, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(M[0], M[2])
    assert not np.allclose(M[0], M[1])


def test_hidden_layer_out_of_range_is_an_error(tiny):
    with pytest.raises(ValueError, match="layer 99 is out of range"):
        HiddenStateEmbedder(tiny, 99).fit(_requests())


def test_hidden_cache_hit_skips_the_model(tiny, tmp_path, monkeypatch):
    import corredit.embed.hidden as hidden

    reqs = _requests()
    cache = EmbeddingCache(tmp_path)
    X = embed_requests(reqs, HiddenStateEmbedder(tiny, 1), cache=cache, dataset="fx")

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(hidden, "read_states", boom)
    Y = embed_requests(reqs, HiddenStateEmbedder(tiny, 1), cache=cache, dataset="fx")
    np.testing.assert_array_equal(X, Y)
    assert cache.hits == 1
    # another layer is another entry
    with pytest.raises(AssertionError, match="recomputed"):
        embed_requests(reqs, HiddenStateEmbedder(tiny, 0), cache=cache, dataset="fx")


# -- editor keys ------------------------------------------------------------------------------

def test_editor_key_with_bare_template_equals_the_mlp_key_at_the_subject(tiny):
    """With only the bare template the engine's key is the MLP input at the subject's last
    token, which the hidden-state embedder reads independently."""
    reqs = _requests()
    hp = {"layers": [1], "context_templates": [], "key_averaging": "flat"}
    K = make_embedder("editor_key", handle=tiny, editor="memit", hparams=hp).fit_transform(reqs)
    H = HiddenStateEmbedder(tiny, 1, site="mlp_out", io="input").fit_transform(reqs)
    assert K.shape == (len(reqs), tiny.key_size) and K.dtype == np.float32
    np.testing.assert_allclose(K, H, rtol=1e-4, atol=1e-5)


def test_editor_key_equals_the_key_memit_uses(tiny):
    """The embedder's key at MEMIT's first layer is the K of MEMIT's first update."""
    from corredit.editors import get_editor
    from corredit.stats import TextsCorpus, second_moments

    from corredit.models.testing import TINY_TEXT

    reqs = [_requests()[0], EditRequest("5", "Anna Berg", "works_for", "{} works for", "Acme"),
            _requests()[3]]
    hp = {"layers": [0, 1], "v_num_grad_steps": 1, "context_templates": [[4, 1]],
          "context_prompts": ["The", "I"]}
    stats = second_moments(tiny, layers=[0, 1], corpus=TextsCorpus(TINY_TEXT.splitlines()),
                           max_tokens=500)
    K = make_embedder("editor_key", handle=tiny, editor="memit", hparams=hp,
                      seed=3).fit_transform(reqs)
    ed = get_editor("memit")(hp)
    res = ed.apply(tiny, reqs, stats=stats, seed=3)
    try:
        used = res.diagnostics["layer_updates"][0]["keys"].numpy()
    finally:
        ed.restore(tiny)
    np.testing.assert_allclose(K, used, rtol=1e-4, atol=1e-5)
    # same subject, both prompts start with it: identical keys (causal model)
    np.testing.assert_allclose(K[0], K[1], rtol=1e-5, atol=1e-6)

    # whitened with the layer's statistics: dot products are k_i^T C^{-1} k_j
    C = stats[0].matrix()
    C = C.numpy() if hasattr(C, "numpy") else np.asarray(C)
    W = make_embedder("whitened_key", handle=tiny, editor="memit", hparams=hp, seed=3,
                      second_moment=stats[0]).fit_transform(reqs)
    K64 = K.astype(np.float64)
    np.testing.assert_allclose(W.astype(np.float64) @ W.T, K64 @ np.linalg.solve(C, K64.T),
                               rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="second moment is of layer 1"):
        make_embedder("whitened_key", handle=tiny, editor="memit", hparams=hp,
                      second_moment=stats[1]).fit(reqs)
    # the {layer: moment} mapping of second_moments: the embedder picks its layer
    W_map = make_embedder("whitened_key", handle=tiny, editor="memit", hparams=hp, seed=3,
                          second_moment=stats).fit_transform(reqs)
    np.testing.assert_array_equal(W_map, W)
    with pytest.raises(ValueError, match=r"second moments given are of layers \[1\]"):
        make_embedder("whitened_key", handle=tiny, editor="memit", hparams=hp,
                      second_moment={1: stats[1]}).fit(reqs)


def test_editor_key_refuses_other_fields_and_needs_a_second_moment(tiny):
    with pytest.raises(ValueError, match="only field='subject'"):
        make_embedder("editor_key", handle=tiny, field="relation").fit(_requests())
    with pytest.raises(ValueError, match="needs second_moment"):
        make_embedder("whitened_key", handle=tiny).fit(_requests())


def test_editor_key_custom_key_function_and_layer_check(tiny):
    def key_fn(handle, requests, layer):
        return np.array([[len(r.subject), layer] for r in requests], dtype=np.float64)

    emb = make_embedder("editor_key", handle=tiny, layer=2, key_fn=key_fn, batch_size=2)
    X = emb.fit_transform(_requests())
    np.testing.assert_array_equal(X[:, 1], 2)
    np.testing.assert_array_equal(X[:, 0], [9, 9, 9, 8, 9])
    with pytest.raises(ValueError, match="give layer="):
        make_embedder("editor_key", handle=tiny, key_fn=key_fn).fit(_requests())
    with pytest.raises(ValueError, match="layer 7 is out of range"):
        make_embedder("editor_key", handle=tiny, layer=7, key_fn=key_fn).fit(_requests())
