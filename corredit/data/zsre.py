"""zsRE question-answering edits in the MEND layout.

Usage::

    from corredit.data import load_dataset
    res = load_dataset("zsre_mend_eval.json")                    # target="alt" (default)
    res = load_dataset("zsre_mend_eval.json", target="answers")  # ROME's choice
    corredit data info zsre_mend_eval.json --zsre-target answers

Fields: ``src`` (the question, subject inside), ``subject``, ``answers`` (gold answers),
``alt`` (another answer), ``rephrase``, ``loc`` / ``loc_ans`` (an unrelated Natural
Questions probe), optionally ``pred``, ``cond``, ``portability``, ``case_id``.

Which answer is the new target (option ``target``):

- ``"alt"`` (default; MEND and EasyEdit): ``target_new = alt`` and
  ``target_true = answers[0]``, a counterfactual edit like CounterFact's. A record whose
  ``alt`` equals ``answers[0]`` is set aside (new target equal to the true target).
- ``"answers"`` (ROME and MEMIT's zsRE evaluation): ``target_new = answers[0]`` and no
  true target (ROME uses a placeholder); ``alt`` is kept in ``meta``.

The relation is the question template (``src`` with the subject replaced by ``{}``), the
only relation information the layout carries; ``meta["template"]`` repeats it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corredit.data.fields import (
    build_request, case_id_of, mapping, optional_text, prompt_template, text, text_list,
    text_or_list,
)
from corredit.data.formats import DatasetFormat, FormatContext, register_format
from corredit.data.problems import EMPTY_TARGET, RecordError
from corredit.data.reading import RawRecord
from corredit.types import EditRequest, LocalityPrompt

__all__ = ["ZSRE_TARGETS"]

#: Values of the ``target`` option.
ZSRE_TARGETS = ("alt", "answers")


def _convert(raw: RawRecord, ctx: FormatContext) -> list[EditRequest]:
    rec = mapping(raw.value, None)
    cid = case_id_of(rec, "case_id") if "case_id" in rec else ctx.generated_id(raw.index)
    subject = text(rec, "subject")
    template = prompt_template(rec, "src", subject, prefix=None, ctx=ctx, filled=True)
    answers = text_list(rec, "answers", required=True)
    if not answers:
        raise RecordError("answers", EMPTY_TARGET, "the list of answers is empty")
    meta: dict[str, Any] = {"template": template, "answers": list(answers)}
    for key in ("pred", "cond"):
        if isinstance(rec.get(key), str):
            meta[key] = rec[key]
    if isinstance(rec.get("portability"), Mapping):
        meta["portability"] = dict(rec["portability"])
    if ctx.options.get("target", "alt") == "alt":
        target_new = text(rec, "alt", empty_kind=EMPTY_TARGET)
        target_true: str | None = answers[0]
        fields = {"target_new": "alt", "target_true": "answers[0]"}
    else:
        target_new, target_true = answers[0], None
        fields = {"target_new": "answers[0]"}
        alt = optional_text(rec, "alt")
        if alt is not None:
            meta["alt"] = alt
    locality: tuple[LocalityPrompt, ...] = ()
    loc = optional_text(rec, "loc")
    if loc is not None:
        locality = (LocalityPrompt(loc, text(rec, "loc_ans", empty_kind=EMPTY_TARGET)),)
    return [build_request(
        case_id=cid, subject=subject, relation_id=template, prompt=template,
        target_new=target_new, target_true=target_true,
        source_fields={**fields, "prompt": "src", "relation_id": "src"},
        paraphrase_prompts=text_or_list(rec, "rephrase"), locality=locality, meta=meta)]


def _sniff(rec: Mapping[str, Any], path: Path) -> bool:
    return {"src", "subject"} <= rec.keys() and ("answers" in rec or "alt" in rec)


register_format(DatasetFormat(
    name="zsre",
    description="zsRE in the MEND layout (src, subject, answers, alt, rephrase, loc, "
                "loc_ans); option target='alt' (default) or 'answers'",
    sniff=_sniff, convert=_convert, options={"target": "alt"},
    option_choices={"target": ZSRE_TARGETS},
))
