"""Locate the subject's last token in a tokenized prompt.

Usage::

    from corredit.models import subject_token_index
    i = subject_token_index(h.tokenizer, "The Eiffel Tower is in", "Eiffel Tower")
    h.tokenizer("The Eiffel Tower is in")["input_ids"][i]     # the id of " Tower"

    subject_token_indices(h.tokenizer, prompts, subjects)      # many at once

The index refers to ``tokenizer(prompt)["input_ids"]`` with special tokens (BOS) included,
so it is valid for right-padded batches. The last occurrence of the subject is used.
Fast tokenizers are located through their character offsets; slow ones by tokenizing the
prompt up to the end of the subject.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["SubjectNotFoundError", "subject_token_index", "subject_token_indices", "prompt_token_ids",
           "start_token_ids"]


def prompt_token_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt`` as the model sees it: leading special tokens (a BOS) kept,
    special tokens the tokenizer appends (an EOS) dropped, so that positions agree with
    ``tokenizer(prompt)["input_ids"]`` (and :func:`subject_token_index`) up to its end."""
    full = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if not plain:
        return full
    n = len(plain)
    for start in range(0, len(full) - n + 1):
        if full[start:start + n] == plain:
            return full[: start + n]
    return full


def start_token_ids(tokenizer: Any) -> list[int]:
    """The special tokens (a BOS, SmolLM2's ``<|endoftext|>``) the tokenizer puts before
    every text it encodes, as :func:`prompt_token_ids` keeps them; ``[]`` for GPT-2.
    Example: ``start_token_ids(gemma_tokenizer) == [2]``."""
    probe = "text"
    ids = prompt_token_ids(tokenizer, probe)
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    if ids[len(ids) - len(plain):] != plain:
        raise ValueError(f"{type(tokenizer).__name__}: 'text' encodes as {ids} with special tokens "
                         f"but {plain} without, so no start tokens can be told apart")
    return ids[:len(ids) - len(plain)]


class SubjectNotFoundError(ValueError):
    """The subject does not occur in the prompt (or no token covers it)."""

    def __init__(self, subject: str, prompt: str, reason: str = "does not occur in") -> None:
        super().__init__(f"subject {subject!r} {reason} the prompt {prompt!r}")
        self.subject = subject
        self.prompt = prompt


def _span(prompt: str, subject: str) -> tuple[int, int]:
    """Character span of the last occurrence of ``subject`` (surrounding spaces ignored)."""
    needle = subject.strip()
    if not needle:
        raise ValueError(f"empty subject for prompt {prompt!r}")
    start = prompt.rfind(needle)
    if start < 0:
        raise SubjectNotFoundError(subject, prompt)
    return start, start + len(needle)


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _verify(tokenizer: Any, ids: Sequence[int], first: int, last: int, subject: str, prompt: str) -> None:
    decoded = tokenizer.decode(list(ids[first : last + 1]), skip_special_tokens=True)
    if _normal(subject) not in _normal(decoded):
        raise SubjectNotFoundError(
            subject, prompt, reason=f"is not covered by the located tokens ({decoded!r}) of"
        )


def _from_offsets(tokenizer: Any, ids: Sequence[int], offsets: Sequence[tuple[int, int]],
                  special: Sequence[int], prompt: str, subject: str) -> int:
    start, end = _span(prompt, subject)
    covering = [
        i for i, ((s, e), sp) in enumerate(zip(offsets, special)) if not sp and e > s and s < end and e > start
    ]
    if not covering:
        raise SubjectNotFoundError(subject, prompt, reason="has no token in")
    _verify(tokenizer, ids, covering[0], covering[-1], subject, prompt)
    return covering[-1]


def _by_prefix(tokenizer: Any, prompt: str, subject: str) -> int:
    start, end = _span(prompt, subject)
    full = list(tokenizer(prompt)["input_ids"])
    plain = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    lead = next((i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain), 0)
    upto = list(tokenizer(prompt[:end], add_special_tokens=False)["input_ids"])
    before = list(tokenizer(prompt[:start], add_special_tokens=False)["input_ids"]) if start else []
    index = lead + len(upto) - 1
    if not upto or index >= len(full):
        raise SubjectNotFoundError(subject, prompt, reason="has no token in")
    first = lead + max(len(before) - 1, 0)
    _verify(tokenizer, full, first, index, subject, prompt)
    return index


def subject_token_index(tokenizer: Any, prompt_text: str, subject: str) -> int:
    """Index of the last token of the last occurrence of ``subject`` in
    ``tokenizer(prompt_text)["input_ids"]``; raises :class:`SubjectNotFoundError`."""
    if not getattr(tokenizer, "is_fast", False):
        return _by_prefix(tokenizer, prompt_text, subject)
    enc = tokenizer(prompt_text, return_offsets_mapping=True, return_special_tokens_mask=True)
    return _from_offsets(
        tokenizer, enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"], prompt_text, subject
    )


def subject_token_indices(tokenizer: Any, prompts: Sequence[str], subjects: Sequence[str]) -> list[int]:
    """:func:`subject_token_index` for many ``(prompt, subject)`` pairs, tokenized in one
    call; the error names the position of the failing pair."""
    prompts, subjects = list(prompts), list(subjects)
    if len(prompts) != len(subjects):
        raise ValueError(f"{len(prompts)} prompts but {len(subjects)} subjects")
    if not prompts:
        return []
    if not getattr(tokenizer, "is_fast", False):
        encs = None
    else:
        encs = tokenizer(prompts, return_offsets_mapping=True, return_special_tokens_mask=True)
    out: list[int] = []
    for i, (prompt, subject) in enumerate(zip(prompts, subjects)):
        try:
            if encs is None:
                out.append(_by_prefix(tokenizer, prompt, subject))
            else:
                out.append(_from_offsets(tokenizer, encs["input_ids"][i], encs["offset_mapping"][i],
                                         encs["special_tokens_mask"][i], prompt, subject))
        except SubjectNotFoundError as exc:
            err = SubjectNotFoundError(subject, prompt)
            err.args = (f"pair {i}: {exc}",)
            raise err from None
    return out
