"""ROME's known facts (``known_1000.json``): true facts, for probing and re-insertion.

Usage::

    from corredit.data import load_dataset, counterfactual_targets
    res = load_dataset("known_1000.json")
    res.requests[0].target_new, res.requests[0].target_true    # ('Antarctica', None)
    edits = counterfactual_targets(res.requests, seed=0)       # true -> another object

Fields: ``subject``, ``attribute`` (the true object), ``relation_id``, ``prompt`` (the
tracing prompt, subject filled in; sometimes longer than the template), ``template``,
optionally ``known_id`` and ``prediction``. A known fact is not an edit: the request
holds the true object as ``target_new`` and no ``target_true``, with the prompt after
which the attribute follows. ``meta`` keeps ``template``, ``known_id`` and
``prediction``. :func:`corredit.data.subsets.counterfactual_targets` turns such
requests into counterfactual edits.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corredit.data.fields import prompt_template
from corredit.data.fields import build_request, case_id_of, mapping, text
from corredit.data.formats import DatasetFormat, FormatContext, register_format
from corredit.data.problems import EMPTY_TARGET
from corredit.data.reading import RawRecord
from corredit.types import EditRequest

__all__: list[str] = []


def _convert(raw: RawRecord, ctx: FormatContext) -> list[EditRequest]:
    rec = mapping(raw.value, None)
    cid = case_id_of(rec, "known_id") if "known_id" in rec else ctx.generated_id(raw.index)
    subject = text(rec, "subject")
    key = "prompt" if "prompt" in rec or "template" not in rec else "template"
    template = prompt_template(rec, key, subject, prefix=None, ctx=ctx,
                               filled=key == "prompt")
    meta: dict[str, Any] = {}
    for k in ("known_id", "template", "prediction"):
        if rec.get(k) is not None and not isinstance(rec.get(k), (dict, list)):
            meta[k] = rec[k]
    return [build_request(
        case_id=cid, subject=subject, relation_id=text(rec, "relation_id"), prompt=template,
        target_new=text(rec, "attribute", empty_kind=EMPTY_TARGET), target_true=None,
        source_fields={"target_new": "attribute", "prompt": key}, meta=meta)]


def _sniff(rec: Mapping[str, Any], path: Path) -> bool:
    return {"subject", "attribute", "relation_id"} <= rec.keys() and (
        "prompt" in rec or "template" in rec)


register_format(DatasetFormat(
    name="known-facts",
    description="ROME's known facts (known_1000.json: subject, attribute, relation_id, "
                "prompt, template); true facts with target_new = attribute",
    sniff=_sniff, convert=_convert, case_id_field="known_id",
))
