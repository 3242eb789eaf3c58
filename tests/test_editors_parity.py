"""Editors against the published equations, recomputed here from plain forward passes.

Each test reads keys and values with its own hooks on the MLP output projection, forms
the method's update with ``torch.linalg`` and compares it with the weights the editor
wrote (float64 tiny models, so agreement is to ~1e-9):

- value objective: the KL term is ``F.kl_div(log p_0, log p_delta, log_target=True)``,
  i.e. KL(p_delta || p_0), as in the references' ``compute_v`` / ``compute_z``;
- r-ROME: numerator ``(v_bare + delta) - mean_t v_t``, denominator ``u^T k_avg``
  (``enable_random_prefix_keys`` in the r-ROME authors' code); original ROME: ``delta``
  over ``u^T k_bare``; ``u = C^-1 k_avg / |C^-1 k_avg|``, float32 inverse on request;
- MEMIT: per layer, keys and hidden states on the partially edited model,
  ``R = (Z - H) / (L - j)``, ``dW = R K^T (lam C + K K^T)^-1``;
- context templates: the empty prompt starts from the model's document-start token.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from corredit.editors import MemitHParams, RomeHParams, ValueOptimizer, get_editor, units_from_requests
from corredit.editors.templates import TemplateSampler
from corredit.models import Site
from corredit.models.testing import TINY_TEXT, tiny_model
from corredit.stats import TextsCorpus, second_moments
from corredit.types import EditRequest

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = [line for line in TINY_TEXT.splitlines() if line.strip()]
REQUESTS = [
    EditRequest("1", "Danielle Darrieux", "P103", "The mother tongue of {} is", "German", "French"),
    EditRequest("2", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar"),
    EditRequest("3", "Eiffel Tower", "P131", "The {} is located in the city of", "Berlin", "Paris"),
]
ARCHS = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "bos"}


@pytest.fixture(scope="module", params=sorted(ARCHS))
def tiny(request):
    """A float64 tiny model and its key second moments at every layer."""
    h = tiny_model(request.param, seed=0, tokenizer=ARCHS[request.param])
    h.model.to(torch.float64)
    mom = second_moments(h, range(h.n_layers), TextsCorpus(TEXTS * 20, identity="tiny-text"),
                         max_tokens=4000)
    return h, mom


# -- plain forward passes ----------------------------------------------------------------

def _blocks(h):
    m = h.model
    return m.transformer.h if hasattr(m, "transformer") else m.model.layers


def _w_out(h, layer):
    """The MLP output projection (keys in, values out)."""
    mlp = _blocks(h)[layer].mlp
    return mlp.c_proj if hasattr(mlp, "c_proj") else mlp.down_proj


def _weight(h, layer) -> torch.Tensor:
    """``W`` (d, d_k) of the output projection; GPT-2's Conv1D stores its transpose."""
    mod = _w_out(h, layer)
    w = mod.weight.detach().double()
    return w.T.clone() if type(mod).__name__ == "Conv1D" else w.clone()


def _set_weight(h, layer, w: torch.Tensor) -> None:
    mod = _w_out(h, layer)
    with torch.no_grad():
        mod.weight.copy_(w.T if type(mod).__name__ == "Conv1D" else w)


def _encode(h, text: str, subject: str) -> tuple[torch.Tensor, int]:
    """Token ids of ``text`` and the index of the subject's last token (the length of the
    tokenized prefix that ends with the subject, minus one)."""
    tok = h.tokenizer
    end = text.index(subject) + len(subject)
    ids = tok(text)["input_ids"]
    return torch.tensor([ids]), len(tok(text[:end])["input_ids"]) - 1


@torch.no_grad()
def _read(h, text: str, subject: str, layer: int, *, last_block: int | None = None):
    """Key (input of W_out at ``layer``), value (its output) and, when asked, the residual
    stream after block ``last_block``, all at the subject's last token."""
    ids, pos = _encode(h, text, subject)
    got = {}
    hooks = [_w_out(h, layer).register_forward_hook(
        lambda m, i, o: got.update(k=i[0][0, pos].double(), v=o[0, pos].double()))]
    if last_block is not None:
        hooks.append(_blocks(h)[last_block].register_forward_hook(
            lambda m, i, o: got.update(z=(o[0] if isinstance(o, tuple) else o)[0, pos].double())))
    try:
        h.model(ids)
    finally:
        for hk in hooks:
            hk.remove()
    return got


@torch.no_grad()
def _next_token_logprobs(h, text: str, subject: str, *, add: torch.Tensor | None = None,
                         layer: int = 1) -> torch.Tensor:
    """Log-probabilities of the next token at the subject's last position, with ``add``
    added to the output of W_out at ``layer`` there."""
    ids, pos = _encode(h, text, subject)

    def hook(m, i, o):
        o = o.clone()
        o[0, pos] += add.to(o.dtype)
        return o

    hk = _w_out(h, layer).register_forward_hook(hook) if add is not None else None
    try:
        logits = h.model(ids).logits[0, pos]
    finally:
        if hk is not None:
            hk.remove()
    return torch.log_softmax(logits.double(), dim=-1)


def _fill(template: str, req: EditRequest) -> str:
    return template.replace("{}", req.rewrite_prompt, 1).replace("{}", req.subject, 1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# -- value objective ---------------------------------------------------------------------

def test_value_kl_term_is_kl_div_of_p_delta_from_p0(tiny):
    h, _ = tiny
    req = REQUESTS[0]
    hp = RomeHParams(layer=1, v_num_grad_steps=3, kl_factor=0.5, v_lr=0.5, v_weight_decay=0.0,
                     v_stop_loss=-1.0)
    units = units_from_requests([req], ("{}", "A cat. {}"), kl_prompt="{} is a")
    res = ValueOptimizer(h, [Site("mlp_out", 1, "output")], hp).optimize(units)
    delta = res.delta[0, 0].double()
    assert int(res.steps[0]) == 2 and float(delta.norm()) > 0
    kl_text = f"{req.subject} is a"
    lp0 = _next_token_logprobs(h, kl_text, req.subject)
    lpd = _next_token_logprobs(h, kl_text, req.subject, add=delta)
    # the references: F.kl_div(kl_distr_init, kl_log_probs, log_target=True) = KL(p_delta || p_0)
    want = float(F.kl_div(lp0[None], lpd[None], log_target=True, reduction="batchmean"))
    other = float(F.kl_div(lpd[None], lp0[None], log_target=True, reduction="batchmean"))
    assert abs(want - other) > 1e-3 * want          # the two directions are told apart here
    assert float(res.kl[0]) == pytest.approx(want, rel=1e-9, abs=1e-12)


# -- ROME / r-ROME -----------------------------------------------------------------------

def _rome_case(h, mom, hp: RomeHParams, req: EditRequest, stats=None):
    """Run the editor once; return (dW, delta, templates, keys/values per template), with
    the keys and values read on the unedited model."""
    ed = get_editor("rome")(hp)
    stats = stats if stats is not None else mom
    pre = ed.precompute_values(h, [req], stats=stats, seed=0)
    w0 = _weight(h, hp.layer)
    res = ed.apply(h, [req], stats=stats, seed=0, precomputed=pre)
    dw = _weight(h, hp.layer) - w0
    ed.restore(h)
    assert torch.equal(_weight(h, hp.layer), w0)
    templates = res.diagnostics["templates"]
    assert templates[0] == "{}" and len(templates) > 2
    reads = [_read(h, _fill(t, req), req.subject, hp.layer) for t in templates]
    k = torch.stack([r["k"] for r in reads])
    v = torch.stack([r["v"] for r in reads])
    return dw, pre.delta[0, 0].double(), res.diagnostics, k, v


ROME_HP = dict(layer=1, v_num_grad_steps=6, context_prompts=("",), context_templates=((4, 3),))


@pytest.mark.parametrize("variant", ["r-rome", "template_mean", "original"])
def test_rome_update_matches_its_equation(tiny, variant):
    h, mom = tiny
    req = REQUESTS[0]
    hp = RomeHParams(**ROME_HP,
                     rome_target="template_mean" if variant == "template_mean" else "bare",
                     original_key_mismatch=variant == "original")
    dw, delta, diag, k, v = _rome_case(h, mom, hp, req)
    k_bare, k_avg = k[0], k.mean(0)
    C = mom[1].matrix().double()
    u = torch.linalg.solve(C, k_avg)
    u = u / u.norm()
    if variant == "r-rome":            # (v_bare + delta) - mean_templates(v), over u^T k_avg
        num, den = (v[0] + delta) - v.mean(0), u @ k_avg
    elif variant == "template_mean":
        num, den = delta, u @ k_avg
    else:                              # original ROME: delta over u^T k_bare
        num, den = delta, u @ k_bare
    want = torch.outer(num / den, u)
    assert _rel(dw, want) < 1e-8
    torch.testing.assert_close(diag["bare_keys"][0], k_bare, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(diag["value_delta"][0], delta, rtol=0, atol=0)
    # the variants differ by far more than the tolerance
    r_rome = torch.outer(((v[0] + delta) - v.mean(0)) / (u @ k_avg), u)
    averaged = torch.outer(delta / (u @ k_avg), u)
    assert _rel(averaged, r_rome) > 1e-2


def _ill_conditioned(d: int, cond: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -torch.log10(torch.tensor(cond)).item(), d, dtype=torch.float64)
    return (q * s) @ q.T


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_rome_u_with_the_float32_reference_inverse(tiny, precision):
    """``mom2_precision="float32"``: ``u`` from the float32 inverse of the float32-rounded
    C, as ROME's compute_u; on an ill-conditioned C it differs visibly from float64."""
    h, mom = tiny
    req = REQUESTS[1]
    C = _ill_conditioned(h.key_size, 1e5)
    hp = RomeHParams(**ROME_HP, mom2_precision=precision)
    dw, delta, diag, k, v = _rome_case(h, mom, hp, req, stats={1: C})
    k_avg = diag["keys"][0]
    torch.testing.assert_close(k_avg, k.mean(0), rtol=1e-9, atol=1e-10)
    u64 = torch.linalg.solve(C, k_avg)
    u32 = (torch.linalg.inv(C.float()) @ k_avg.float()).double()
    u64, u32 = u64 / u64.norm(), u32 / u32.norm()
    assert _rel(u32, u64) > 1e-4
    u = u32 if precision == "float32" else u64
    want = torch.outer(((v[0] + delta) - v.mean(0)) / (u @ k_avg), u)
    assert _rel(dw, want) < (1e-6 if precision == "float32" else 1e-8)


# -- MEMIT -------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_memit_spreads_residuals_and_solves_per_layer(tiny, precision):
    h, mom = tiny
    reqs = REQUESTS
    lam = 5.0
    hp = MemitHParams(layers=(0, 1, 2), mom2_update_weight=lam, v_num_grad_steps=6,
                      context_prompts=("The", "I"), context_templates=((4, 1),),
                      mom2_precision=precision)
    layers, last = list(hp.layers), hp.layers[-1]
    ed = get_editor("memit")(hp)
    pre = ed.precompute_values(h, reqs, stats=mom, seed=0)
    w0 = {l: _weight(h, l) for l in layers}
    res = ed.apply(h, reqs, stats=mom, seed=0, precomputed=pre)
    w1 = {l: _weight(h, l) for l in layers}
    ed.restore(h)
    templates = res.diagnostics["templates"]
    assert templates[0] == "{}" and len(templates) == 3     # bare + one group of two
    z = (pre.v0[:, 0] + pre.delta[:, 0]).double()             # (n, d) targets
    try:
        for j, layer in enumerate(layers):
            reads = [[_read(h, _fill(t, r), r.subject, layer, last_block=last) for t in templates]
                     for r in reqs]
            if j == 0:    # v0 is the unedited residual stream at the bare prompt
                torch.testing.assert_close(torch.stack([rr[0]["z"] for rr in reads]),
                                           pre.v0[:, 0].double(), rtol=1e-9, atol=1e-10)
            # MEMIT's two-level key: half the bare key, half the mean over prefixed templates
            K = torch.stack([0.5 * (rr[0]["k"] + torch.stack([x["k"] for x in rr[1:]]).mean(0))
                             for rr in reads], dim=1)                       # (d_k, n)
            H = torch.stack([rr[0]["z"] for rr in reads], dim=1)            # (d, n)
            R = (z.T - H) / (len(layers) - j)
            C = mom[layer].matrix().double()
            if precision == "float32":
                C = C.float().double()
            A = lam * C + K @ K.T
            want = R @ torch.linalg.solve(A, K).T
            got = w1[layer] - w0[layer]
            assert _rel(got, want) < 1e-8, (layer, _rel(got, want))
            # the normal equations of min |dW K - R|^2 + lam tr(dW C dW^T)
            torch.testing.assert_close(got @ A, R @ K.T, rtol=1e-7, atol=1e-9)
            _set_weight(h, layer, w1[layer])          # on to the partially edited model
    finally:
        ed.restore(h)


# -- context templates -------------------------------------------------------------------

def test_empty_prompt_starts_from_the_document_start_token(tiny):
    h, _ = tiny
    tok = h.tokenizer
    default_id = h.document_start_id
    assert default_id == (tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id)
    declared_id = next(i for i in range(10, len(tok)) if i not in (default_id, tok.unk_token_id))
    declared = tok.convert_ids_to_tokens(declared_id)
    first_ids: list[int] = []
    emb = h.model.get_input_embeddings()
    hook = emb.register_forward_hook(lambda m, i, o: first_ids.append(int(i[0][0, 0])))
    sampler = TemplateSampler()
    kw = dict(prompts=("",), lengths=((3, 2),), seed=0)
    try:
        default = sampler.groups(h, **kw)
        assert set(first_ids) == {default_id}
        first_ids.clear()
        h.document_start = declared
        assert h.document_start_id == declared_id
        declared_groups = sampler.groups(h, **kw)     # a new cache entry, not the old one
        assert set(first_ids) == {declared_id}
    finally:
        hook.remove()
        h.document_start = None
    assert sampler.groups(h, **kw) is default
    assert declared_groups != default
    assert len(declared_groups[1]) == 2 and all(t.endswith(". {}") for t in declared_groups[1])
