"""Locating the subject's last token with GPT-2-style and BOS-adding tokenizers."""

from __future__ import annotations

import pytest

from corredit.models import SubjectNotFoundError, subject_token_index, subject_token_indices
from corredit.models.testing import tiny_tokenizer

CASES = [
    # (prompt, subject, expected decoded text up to and including the located token)
    ("Eiffel Tower is located in the city of", "Eiffel Tower", "Eiffel Tower"),
    ("The Eiffel Tower is located in", "Eiffel Tower", "The Eiffel Tower"),
    ("The capital of France is Paris", "Paris", "The capital of France is Paris"),
    ("Paris is the capital of", "Paris", "Paris"),
    ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "The mother tongue of Danielle Darrieux"),
    ("Toko Yasuda plays the", "Toko Yasuda", "Toko Yasuda"),
    ("Where does Toko Yasuda live? Toko Yasuda lives in", "Toko Yasuda",
     "Where does Toko Yasuda live? Toko Yasuda"),  # last occurrence
    ("Autonomous University of Madrid, which is located in", "Autonomous University of Madrid",
     "Autonomous University of Madrid"),
    ("In 2024, Big Ben", "Big Ben", "In 2024, Big Ben"),
]


@pytest.fixture(scope="module", params=["gpt2", "bos"])
def tok(request):
    return tiny_tokenizer(request.param)


class _SlowView:
    """The same tokenizer seen as a slow one (no offsets): exercises prefix tokenisation."""

    is_fast = False

    def __init__(self, fast):
        self._fast = fast

    def __call__(self, text, **kwargs):
        kwargs.pop("return_offsets_mapping", None)
        return self._fast(text, **kwargs)

    def decode(self, *args, **kwargs):
        return self._fast.decode(*args, **kwargs)


@pytest.mark.parametrize("prompt,subject,upto", CASES)
def test_subject_last_token(tok, prompt, subject, upto):
    ids = tok(prompt)["input_ids"]
    i = subject_token_index(tok, prompt, subject)
    assert tok.decode(ids[: i + 1], skip_special_tokens=True) == upto
    # independent reference: tokenising the prompt up to the end of the subject
    assert i == len(tok(upto)["input_ids"]) - 1
    assert subject_token_index(_SlowView(tok), prompt, subject) == i


def test_bos_is_counted(tok):
    prompt = "Paris is the capital of"
    ids = tok(prompt)["input_ids"]
    adds_bos = tok.bos_token == "<s>"
    assert (ids[0] == tok.bos_token_id) == adds_bos
    assert subject_token_index(tok, prompt, "Paris") == (1 if adds_bos else 0)


def test_multi_token_subject_is_located_at_its_end(tok):
    prompt = "The Eiffel Tower is located in"
    ids = tok(prompt)["input_ids"]
    i = subject_token_index(tok, prompt, "Eiffel Tower")
    first = subject_token_index(tok, prompt, "The")
    assert i - first >= 3  # several tokens in between: the subject spans more than one token
    assert tok.decode(ids[i + 1 : i + 2]).strip() == "is"


def test_batched_matches_single(tok):
    prompts = [p for p, _, _ in CASES]
    subjects = [s for _, s, _ in CASES]
    assert subject_token_indices(tok, prompts, subjects) == [
        subject_token_index(tok, p, s) for p, s in zip(prompts, subjects)
    ]
    assert subject_token_indices(_SlowView(tok), prompts, subjects) == subject_token_indices(tok, prompts, subjects)
    assert subject_token_indices(tok, [], []) == []
    with pytest.raises(ValueError, match="2 prompts but 1 subjects"):
        subject_token_indices(tok, ["a", "b"], ["a"])


def test_absent_subject_raises_naming_subject_and_prompt(tok):
    with pytest.raises(SubjectNotFoundError) as info:
        subject_token_index(tok, "The capital of France is", "Berlin")
    assert "'Berlin'" in str(info.value) and "'The capital of France is'" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.subject == "Berlin" and info.value.prompt == "The capital of France is"
    with pytest.raises(SubjectNotFoundError, match="pair 1: subject 'Rome'"):
        subject_token_indices(tok, ["Paris is in", "Madrid is in"], ["Paris", "Rome"])
    with pytest.raises(SubjectNotFoundError):
        subject_token_index(_SlowView(tok), "Paris is in", "Rome")
