"""Real pretrained models from their PyPI packages (slow; skipped when not installed):
they load, know facts, and ROME edits one of them from the unedited model."""

from __future__ import annotations

import warnings

import pytest

from corredit.models.catalog import MODELS

pytestmark = pytest.mark.slow

FACTS = {
    "smollm2-135m": ("The mother tongue of {} is", "Danielle Darrieux", "French", "English"),
    "gemma3-270m": ("{} is headquartered in", "Toyota", "Japan", "Germany"),
}


@pytest.fixture(scope="module", params=sorted(FACTS))
def real(request):
    spec = MODELS.get(request.param)
    if not spec.is_installed():
        pytest.skip(f"{request.param} is not installed ({spec.install})")
    from corredit.models import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(request.param)


def test_loads_with_its_declared_shape_and_knows_a_fact(real):
    from corredit.evaluate import score_targets

    spec = MODELS.get(real.name)
    assert real.n_layers == spec.layers and real.adapter.architecture == spec.architecture
    template, subject, true, new = FACTS[real.name]
    prompt = template.format(subject)
    s = score_targets(real, [prompt, prompt], [true, new])
    assert s.first_token_correct[0] and s.nll[0] < s.nll[1]
    tok = real.tokenizer
    assert tok.convert_ids_to_tokens(real.document_start_id) == spec.document_start


def test_rome_edits_a_known_fact(real):
    from corredit.editors import get_editor
    from corredit.evaluate import score_targets
    from corredit.stats import TextsCorpus, second_moments
    from corredit.stats.sampled import ModelSampleCorpus
    from corredit.types import EditRequest

    template, subject, true, new = FACTS[real.name]
    req = EditRequest(case_id="real-0", subject=subject, relation_id="r", prompt=template,
                      target_new=new, target_true=true)
    ed = get_editor("rome")({"context_templates": [[5, 2]]})
    layer = ed.hparams_for(real).layer
    # more tokens than the key width (2048 on Gemma-3), or C is singular
    texts = ModelSampleCorpus(real, n_docs=80, length=64, seed=0).texts()
    stats = second_moments(real, [layer], TextsCorpus(texts, identity="sampled"),
                           max_tokens=2 * real.key_size)
    prompt = req.rewrite_prompt
    ed.apply(real, [req], stats=stats, seed=0)
    after = score_targets(real, [prompt, prompt], [new, true]).nll
    ed.restore(real)
    assert after[0] < after[1]
    before = score_targets(real, [prompt, prompt], [new, true]).nll
    assert before[0] > before[1]
