"""MQuAKE: cases of several edits that must be applied together, with multi-hop questions.

Usage::

    from corredit.data import load_dataset
    res = load_dataset("MQuAKE-hard.json")
    reqs = [r for r in res.requests if r.group_id == "7417"]   # the case's 4 edits
    reqs[0].multi_hop[0].new_answer                             # 'Arabic'

Each case (``case_id``, ``requested_rewrite`` list, ``questions``, ``answer``,
``answer_alias``, ``new_answer``, ``new_answer_alias``) becomes one request per rewrite
with ``case_id = "<case>:<j>"`` and ``group_id = "<case>"``. Each rewrite's single-hop
``question`` is its paraphrase prompt. The case's multi-hop questions are asked once the
whole group is applied, so they sit on the group's first request (``meta["edit_index"]
== 0``); evaluate them once per group. A bad rewrite sets the whole case aside: its edits
only make sense together.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corredit.data.counterfact import target_string
from corredit.data.fields import prompt_template
from corredit.data.fields import (
    build_request, case_id_of, mapping, text, text_list, type_name, value,
)
from corredit.data.formats import DatasetFormat, FormatContext, register_format
from corredit.data.problems import EMPTY_TARGET, MISSING_FIELD, WRONG_TYPE, RecordError
from corredit.data.reading import RawRecord
from corredit.types import EditRequest, MultiHopQuestion

__all__: list[str] = []


def _questions(rec: Mapping[str, Any]) -> tuple[MultiHopQuestion, ...]:
    questions = text_list(rec, "questions")
    if not questions:
        return ()
    answer = text(rec, "answer", empty_kind=EMPTY_TARGET)
    new_answer = text(rec, "new_answer", empty_kind=EMPTY_TARGET)
    aliases = text_list(rec, "answer_alias")
    new_aliases = text_list(rec, "new_answer_alias")
    return tuple(MultiHopQuestion(q, answer, new_answer, aliases, new_aliases)
                 for q in questions)


def _convert(raw: RawRecord, ctx: FormatContext) -> list[EditRequest]:
    rec = mapping(raw.value, None)
    cid = case_id_of(rec, "case_id")
    rewrites = value(rec, "requested_rewrite")
    if not isinstance(rewrites, list):
        raise RecordError("requested_rewrite", WRONG_TYPE,
                          f"expected a list of rewrites, got {type_name(rewrites)}")
    if not rewrites:
        raise RecordError("requested_rewrite", MISSING_FIELD, "the list of rewrites is empty")
    multi_hop = _questions(rec)
    out = []
    for j, rw in enumerate(rewrites):
        prefix = f"requested_rewrite[{j}]"
        rw = mapping(rw, prefix)
        subject = text(rw, "subject", prefix=prefix)
        template = prompt_template(rw, "prompt", subject, prefix=prefix, ctx=ctx,
                                   filled=False)
        target_new, new_id = target_string(rw, "target_new", prefix=prefix)
        target_true, true_id = target_string(rw, "target_true", prefix=prefix)
        question = rw.get("question")
        paraphrases = (text(rw, "question", prefix=prefix),) if question is not None else ()
        meta: dict[str, Any] = {"mquake_case_id": cid, "edit_index": j,
                                "n_edits_in_case": len(rewrites)}
        if new_id is not None:
            meta["target_new_id"] = new_id
        if true_id is not None:
            meta["target_true_id"] = true_id
        out.append(build_request(
            case_id=f"{cid}:{j}", subject=subject,
            relation_id=text(rw, "relation_id", prefix=prefix), prompt=template,
            target_new=target_new, target_true=target_true,
            source_fields={"subject": f"{prefix}.subject", "prompt": f"{prefix}.prompt",
                           "relation_id": f"{prefix}.relation_id",
                           "target_new": f"{prefix}.target_new.str",
                           "target_true": f"{prefix}.target_true.str"},
            paraphrase_prompts=paraphrases, multi_hop=multi_hop if j == 0 else (),
            group_id=cid, meta=meta))
    return out


def _sniff(rec: Mapping[str, Any], path: Path) -> bool:
    return isinstance(rec.get("requested_rewrite"), list) and (
        "questions" in rec or "new_answer" in rec)


register_format(DatasetFormat(
    name="mquake",
    description="MQuAKE cases (requested_rewrite list, multi-hop questions, answer, "
                "new_answer, aliases); one group of edits per case",
    sniff=_sniff, convert=_convert, priority=2,
))
