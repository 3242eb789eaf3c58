"""Edit-training examples for MEND, built from edit requests.

Usage::

    from corredit.editors.mend.data import examples_from_requests, sample_batch
    ex = examples_from_requests(requests, exclude_subjects={"Toma Velik"})
    batch = sample_batch(ex, seed=0, step=12, micro=3, edits=1, paraphrases=1)
    batch.inner, batch.outer, batch.loc, batch.outer_owner

An example holds the edit (rewrite prompt and new target), the prompts that must follow
it (its paraphrases; the rewrite prompt itself is always one) and the prompts it must
leave alone with their answers (its locality prompts, e.g. zsRE's Natural Questions probe
or the subject's other facts, and its neighbourhood prompts with the true target). An
example without any borrows another example's rewrite prompt and true target. Every draw
is a function of ``(seed, step, micro)``, so an interrupted training resumes exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = ["MendExample", "MendBatch", "examples_from_requests", "sample_batch", "split_examples"]


@dataclass(frozen=True)
class MendExample:
    """One training edit (see the module docstring)."""

    case_id: str
    subject: str
    prompt: str
    target_new: str
    target_true: str | None
    paraphrases: tuple[str, ...]
    loc: tuple[tuple[str, str], ...]


@dataclass
class MendBatch:
    """One draw: inner ``(prompt, target)`` per edit; outer pairs and their edit index;
    one locality pair per edit."""

    case_ids: list[str]
    inner: list[tuple[str, str]]
    outer: list[tuple[str, str]]
    outer_owner: list[int]
    loc: list[tuple[str, str]]


def _mention_pattern(names: Sequence[str]) -> "re.Pattern[str] | None":
    """A pattern that finds any of ``names`` inside a text (None for no names)."""
    if not names:
        return None
    return re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))


def examples_from_requests(requests: Iterable, *, exclude_subjects: Iterable[str] = (),
                           source: str = "requests") -> list[MendExample]:
    """Examples of ``requests`` whose subject is not excluded; prompts that mention an
    excluded subject are dropped too. Raises ``ValueError`` naming ``source`` when none is
    left."""
    excluded = sorted(set(exclude_subjects))
    pattern = _mention_pattern(excluded)

    def clean(text: str) -> bool:
        return pattern is None or pattern.search(text) is None

    out = []
    for r in requests:
        if r.subject in excluded:
            continue
        paraphrases = tuple(p for p in r.paraphrase_prompts if clean(p))
        loc = [(lp.prompt, lp.target) for lp in r.locality]
        if r.target_true:
            loc += [(p, r.target_true) for p in r.neighborhood_prompts]
        loc = tuple((p, t) for p, t in loc if t and clean(p))
        out.append(MendExample(str(r.case_id), r.subject, r.rewrite_prompt, r.target_new,
                               r.target_true, paraphrases, loc))
    if not out:
        raise ValueError(f"{source}: no training edits left after excluding "
                         f"{len(excluded)} subjects")
    return out


def split_examples(examples: Sequence[MendExample], n_val: int, *, seed: int
                   ) -> tuple[list[MendExample], list[MendExample]]:
    """(train, validation): ``n_val`` examples drawn with ``seed``, kept out of training."""
    n_val = min(max(0, int(n_val)), len(examples) - 1)
    order = np.random.default_rng([seed, 7919]).permutation(len(examples))
    val = set(order[:n_val].tolist())
    return ([e for i, e in enumerate(examples) if i not in val],
            [e for i, e in enumerate(examples) if i in val])


def sample_batch(examples: Sequence[MendExample], *, seed: int, step: int, micro: int = 0,
                 edits: int = 1, paraphrases: int = 1, indices: Sequence[int] | None = None,
                 stream: int = 0) -> MendBatch:
    """The draw of ``(seed, stream, step, micro)``: ``edits`` examples (or the given
    ``indices``), each with its rewrite prompt plus up to ``paraphrases`` paraphrases as
    outer prompts and one locality pair (``stream`` 0: training, 1: validation)."""
    rng = np.random.default_rng([int(seed), int(stream), int(step), int(micro)])
    if indices is None:
        indices = rng.choice(len(examples), size=min(edits, len(examples)), replace=False).tolist()
    batch = MendBatch([], [], [], [], [])
    for k, i in enumerate(indices):
        ex = examples[i]
        batch.case_ids.append(ex.case_id)
        batch.inner.append((ex.prompt, ex.target_new))
        outer = [ex.prompt]
        if ex.paraphrases and paraphrases > 0:
            pick = rng.choice(len(ex.paraphrases), size=min(paraphrases, len(ex.paraphrases)),
                              replace=False)
            outer += [ex.paraphrases[j] for j in sorted(pick.tolist())]
        batch.outer += [(p, ex.target_new) for p in outer]
        batch.outer_owner += [k] * len(outer)
        if ex.loc:
            batch.loc.append(ex.loc[int(rng.integers(len(ex.loc)))])
        else:
            others = [e for e in examples if e.target_true and e.subject != ex.subject]
            if not others:
                raise ValueError(f"MEND training: edit {ex.case_id} has no locality prompt and "
                                 f"no other edit has a true target to borrow")
            o = others[int(rng.integers(len(others)))]
            batch.loc.append((o.prompt, o.target_true))
    return batch
