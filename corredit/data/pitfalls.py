"""ConflictEdit and RoundEdit (Li et al., ICLR 2024, "Unveiling the Pitfalls of
Knowledge Editing"): pairs of correlated edits.

Usage::

    from corredit.data import load_dataset
    res = load_dataset("GPT-J/coverage_edit.json")    # format 'pitfalls-conflict'
    a, b = res.requests[:2]                            # one pair: a.group_id == b.group_id
    res = load_dataset("GPT-J/easy.json")              # format 'pitfalls-round'

ConflictEdit records (``type`` coverage / reverse / composite, ``rule``, ``triples``,
``prerequisites``, ``edits``) become one request per edit, with
``case_id = "<file stem>:<record>:<j>"`` and ``group_id = "<file stem>:<record>"``; the
pair is meant to be applied in order (``meta["edit_index"]``). The prerequisite triples
(facts that must keep holding, composite only) are locality prompts of the pair's first
request. RoundEdit records (``type`` "1-N@P...", ``edit``, ``true_objects``) become the
edit and the edit that undoes it (object -> new object -> object), tied the same way;
``meta["true_objects"]`` lists all N true objects. Each relation's question
(``relation.query``) is the paraphrase prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corredit.data.fields import (
    build_request, check_template, mapping, optional_text, text, type_name, value,
)
from corredit.data.formats import DatasetFormat, FormatContext, register_format
from corredit.data.problems import (
    BAD_VALUE, EMPTY_TARGET, LABEL_IS_ID, MISSING_FIELD, WRONG_TYPE, RecordError,
)
from corredit.data.reading import RawRecord
from corredit.types import EditRequest, LocalityPrompt

__all__: list[str] = []


def _label(ent: Any, field: str, *, target: bool,
           ctx: FormatContext | None = None) -> tuple[str, Any]:
    ent = mapping(ent, field)
    label = text(ent, "label", prefix=field, empty_kind=EMPTY_TARGET if target else BAD_VALUE)
    if ctx is not None and label == ent.get("id"):
        ctx.note(f"{field}.label", LABEL_IS_ID,
                 f"the label is the bare Wikidata id {label!r} (no name in the source)")
    return label, ent.get("id")


def _entity(rec: Mapping[str, Any], key: str, prefix: str, *, target: bool,
            ctx: FormatContext | None = None) -> tuple[str, Any]:
    return _label(value(rec, key, prefix=prefix), f"{prefix}.{key}", target=target, ctx=ctx)


def _edit_parts(edit: Mapping[str, Any], prefix: str, ctx: FormatContext) -> dict[str, Any]:
    edit = mapping(edit, prefix)
    rel = mapping(value(edit, "relation", prefix=prefix), f"{prefix}.relation")
    rp = f"{prefix}.relation"
    subject, subject_id = _entity(edit, "subject", prefix, target=False, ctx=ctx)
    template = check_template(text(rel, "prompt", prefix=rp), subject, field=f"{rp}.prompt")
    query = optional_text(rel, "query", prefix=rp)
    paraphrases: tuple[str, ...] = ()
    if query is not None:
        paraphrases = (check_template(query, subject, field=f"{rp}.query").format(subject),)
    obj, obj_id = _entity(edit, "object", prefix, target=True, ctx=ctx)
    new, new_id = _entity(edit, "new_object", prefix, target=True, ctx=ctx)
    return {"subject": subject, "relation_id": text(rel, "id", prefix=rp), "prompt": template,
            "object": obj, "new_object": new, "paraphrases": paraphrases,
            "meta": {"subject_id": subject_id, "object_id": obj_id, "new_object_id": new_id,
                     "relation_label": rel.get("label")},
            "fields": {"subject": f"{prefix}.subject.label", "prompt": f"{rp}.prompt",
                       "relation_id": f"{rp}.id", "target_new": f"{prefix}.new_object.label",
                       "target_true": f"{prefix}.object.label"}}


def _clean(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if v is not None}


def _prerequisites(rec: Mapping[str, Any]) -> tuple[LocalityPrompt, ...]:
    idx = rec.get("prerequisites") or []
    if not isinstance(idx, list):
        raise RecordError("prerequisites", WRONG_TYPE, f"expected a list, got {type_name(idx)}")
    triples = rec.get("triples") or []
    out = []
    for n, i in enumerate(idx):
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(triples):
            raise RecordError(f"prerequisites[{n}]", BAD_VALUE,
                              f"{i!r} is not an index into 'triples' ({len(triples)} entries)")
        prefix = f"triples[{i}]"
        tri = mapping(triples[i], prefix)
        rel = mapping(value(tri, "relation", prefix=prefix), f"{prefix}.relation")
        subject, _ = _entity(tri, "subject", prefix, target=False)
        template = check_template(text(rel, "prompt", prefix=f"{prefix}.relation"), subject,
                                  field=f"{prefix}.relation.prompt")
        obj, _ = _entity(tri, "object", prefix, target=True)
        out.append(LocalityPrompt(template.format(subject), obj))
    return tuple(out)


def _convert_conflict(raw: RawRecord, ctx: FormatContext) -> list[EditRequest]:
    rec = mapping(raw.value, None)
    kind = text(rec, "type")
    edits = value(rec, "edits")
    if not isinstance(edits, list):
        raise RecordError("edits", WRONG_TYPE, f"expected a list of edits, got {type_name(edits)}")
    if not edits:
        raise RecordError("edits", MISSING_FIELD, "the list of edits is empty")
    group = ctx.generated_id(raw.index)
    locality = _prerequisites(rec)
    rule = rec.get("rule") if isinstance(rec.get("rule"), str) else None
    out = []
    for j, edit in enumerate(edits):
        p = _edit_parts(edit, f"edits[{j}]", ctx)
        out.append(build_request(
            case_id=f"{group}:{j}", subject=p["subject"], relation_id=p["relation_id"],
            prompt=p["prompt"], target_new=p["new_object"], target_true=p["object"],
            source_fields=p["fields"], paraphrase_prompts=p["paraphrases"],
            locality=locality if j == 0 else (), group_id=group,
            meta=_clean({**p["meta"], "type": kind, "rule": rule, "edit_index": j})))
    return out


def _convert_round(raw: RawRecord, ctx: FormatContext) -> list[EditRequest]:
    rec = mapping(raw.value, None)
    kind = text(rec, "type")
    p = _edit_parts(value(rec, "edit"), "edit", ctx)
    trues = value(rec, "true_objects")
    if not isinstance(trues, list):
        raise RecordError("true_objects", WRONG_TYPE, f"expected a list, got {type_name(trues)}")
    labels = [_label(t, f"true_objects[{i}]", target=True)[0] for i, t in enumerate(trues)]
    group = ctx.generated_id(raw.index)
    common = {**p["meta"], "type": kind, "true_objects": labels}
    there = build_request(
        case_id=f"{group}:0", subject=p["subject"], relation_id=p["relation_id"],
        prompt=p["prompt"], target_new=p["new_object"], target_true=p["object"],
        source_fields=p["fields"], paraphrase_prompts=p["paraphrases"], group_id=group,
        meta=_clean({**common, "edit_index": 0}))
    back_fields = dict(p["fields"], target_new=p["fields"]["target_true"],
                       target_true=p["fields"]["target_new"])
    back = build_request(
        case_id=f"{group}:1", subject=p["subject"], relation_id=p["relation_id"],
        prompt=p["prompt"], target_new=p["object"], target_true=p["new_object"],
        source_fields=back_fields, paraphrase_prompts=p["paraphrases"], group_id=group,
        meta=_clean({**common, "edit_index": 1}))
    return [there, back]


register_format(DatasetFormat(
    name="pitfalls-conflict",
    description="ConflictEdit pairs (coverage / reverse / composite: type, rule, triples, "
                "prerequisites, edits); one group per pair",
    sniff=lambda rec, path: isinstance(rec.get("edits"), list) and "type" in rec,
    convert=_convert_conflict, case_id_field="edits",
))

register_format(DatasetFormat(
    name="pitfalls-round",
    description="RoundEdit (type, edit, true_objects): an edit and the edit that undoes it",
    sniff=lambda rec, path: isinstance(rec.get("edit"), Mapping) and "true_objects" in rec,
    convert=_convert_round, case_id_field="edit",
))
