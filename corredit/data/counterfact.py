"""CounterFact: ROME's layout, MEMIT's ``multi_counterfact`` and the flattened layout.

Usage::

    from corredit.data import load_dataset
    res = load_dataset("counterfact.json")                 # ROME layout, detected
    res = load_dataset("multi_counterfact.json")           # same layout, its own name
    res = load_dataset("counterfact-edit.json")            # flattened (MEND/EasyEdit) layout
    res.requests[0].relation_id      # 'P103' (inferred for the flattened layout)

ROME layout: ``case_id``, ``requested_rewrite`` {``prompt`` (template with ``{}``),
``subject``, ``relation_id``, ``target_new.str``, ``target_true.str``},
``paraphrase_prompts``, ``neighborhood_prompts``, ``attribute_prompts``,
``generation_prompts``. Neighbourhood entries may be strings or ``{prompt, target}``
objects; an object whose target differs from the true target becomes a locality prompt.
``attribute_prompts``, ``pararel_idx`` and the Wikidata ids of the targets go to ``meta``.
A ``requested_rewrite`` holding a list makes one request per rewrite, tied by
``group_id``.

Flattened layout: ``case_id``, ``prompt`` (subject filled in), ``subject``,
``target_new``, ``ground_truth``, ``rephrase_prompt``, ``locality_prompt``,
``locality_ground_truth``. The template is the prompt with the subject's last
occurrence replaced by ``{}`` (a ``{}`` written in the prompt stays text); the relation is inferred from it (see
:mod:`corredit.data.relations`). The locality prompt is a neighbourhood prompt when its
answer is the true target (every record of the public files), else a locality prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corredit.data.fields import (
    build_request, case_id_of, mapping, optional_text, prompt_template, text, text_list,
    text_or_list, type_name, value,
)
from corredit.data.formats import DatasetFormat, FormatContext, register_format
from corredit.data.problems import (
    EMPTY_TARGET, MISSING_FIELD, WRONG_TYPE, RecordError,
)
from corredit.data.reading import RawRecord
from corredit.data.relations import infer_counterfact_relations
from corredit.types import EditRequest, LocalityPrompt

__all__ = ["target_string"]


def target_string(record: Mapping[str, Any], key: str, *, prefix: str | None) -> tuple[str, Any]:
    """A target given as ``{"str": ..., "id": ...}`` or as a plain string: ``(str, id)``."""
    got = value(record, key, prefix=prefix)
    field = f"{prefix}.{key}" if prefix else key
    if isinstance(got, str):
        return text(record, key, prefix=prefix, empty_kind=EMPTY_TARGET), None
    if isinstance(got, Mapping):
        s = text(got, "str", prefix=field, empty_kind=EMPTY_TARGET)
        return s, got.get("id")
    raise RecordError(field, WRONG_TYPE,
                      f"expected an object with 'str' or a string, got {type_name(got)}")


def _neighbourhood(record: Mapping[str, Any], target_true: str
                   ) -> tuple[tuple[str, ...], tuple[LocalityPrompt, ...]]:
    got = record.get("neighborhood_prompts")
    if got is None:
        return (), ()
    if not isinstance(got, list):
        raise RecordError("neighborhood_prompts", WRONG_TYPE,
                          f"expected a list, got {type_name(got)}")
    prompts: list[str] = []
    locality: list[LocalityPrompt] = []
    for i, item in enumerate(got):
        field = f"neighborhood_prompts[{i}]"
        if isinstance(item, str):
            if item.strip():
                prompts.append(item.strip())
            continue
        item = mapping(item, field)
        p = text(item, "prompt", prefix=field)
        t = text(item, "target", prefix=field, empty_kind=EMPTY_TARGET)
        if t == target_true:
            prompts.append(p)
        else:
            locality.append(LocalityPrompt(p, t))
    return tuple(prompts), tuple(locality)


def _convert_rome(raw: RawRecord, ctx: FormatContext) -> list[EditRequest]:
    rec = mapping(raw.value, None)
    cid = case_id_of(rec, "case_id")
    rewrites = value(rec, "requested_rewrite")
    single = isinstance(rewrites, Mapping)
    if single:
        rewrites = [rewrites]
    elif not isinstance(rewrites, list):
        raise RecordError("requested_rewrite", WRONG_TYPE,
                          f"expected an object or a list of objects, got {type_name(rewrites)}")
    elif not rewrites:
        raise RecordError("requested_rewrite", MISSING_FIELD, "the list of rewrites is empty")
    paraphrases = text_list(rec, "paraphrase_prompts")
    generation = text_list(rec, "generation_prompts")
    attribute = text_list(rec, "attribute_prompts")
    out = []
    for j, rw in enumerate(rewrites):
        prefix = "requested_rewrite" if single else f"requested_rewrite[{j}]"
        rw = mapping(rw, prefix)
        subject = text(rw, "subject", prefix=prefix)
        template = prompt_template(rw, "prompt", subject, prefix=prefix, ctx=ctx,
                                   filled=False)
        relation_id = text(rw, "relation_id", prefix=prefix)
        target_new, new_id = target_string(rw, "target_new", prefix=prefix)
        target_true, true_id = target_string(rw, "target_true", prefix=prefix)
        neighbours, locality = _neighbourhood(rec, target_true) if j == 0 else ((), ())
        meta: dict[str, Any] = {}
        for key, val in (("target_new_id", new_id), ("target_true_id", true_id),
                         ("pararel_idx", rec.get("pararel_idx"))):
            if val is not None:
                meta[key] = val
        if attribute:
            meta["attribute_prompts"] = list(attribute)
        out.append(build_request(
            case_id=cid if single else f"{cid}:{j}", subject=subject, relation_id=relation_id,
            prompt=template, target_new=target_new, target_true=target_true,
            source_fields={"subject": f"{prefix}.subject", "prompt": f"{prefix}.prompt",
                           "relation_id": f"{prefix}.relation_id",
                           "target_new": f"{prefix}.target_new.str",
                           "target_true": f"{prefix}.target_true.str"},
            paraphrase_prompts=paraphrases, neighborhood_prompts=neighbours,
            generation_prompts=generation, locality=locality,
            group_id=None if single else cid, meta=meta))
    return out


def _sniff_rome(rec: Mapping[str, Any], path: Path) -> bool:
    rw = rec.get("requested_rewrite")
    if isinstance(rw, list):
        rw = rw[0] if rw else None
    return (isinstance(rw, Mapping) and "subject" in rw and "questions" not in rec
            and "new_answer" not in rec)


register_format(DatasetFormat(
    name="counterfact",
    description="CounterFact in ROME's layout (requested_rewrite, paraphrase/neighborhood/"
                "attribute/generation prompts)",
    sniff=_sniff_rome, convert=_convert_rome, priority=1,
))

register_format(DatasetFormat(
    name="multi_counterfact",
    description="MEMIT's multi_counterfact.json: CounterFact's ROME layout "
                "(detected by the file name)",
    sniff=lambda rec, path: _sniff_rome(rec, path) and "multi" in path.name.lower(),
    convert=_convert_rome, priority=2,
))


def _convert_flat(raw: RawRecord, ctx: FormatContext) -> list[EditRequest]:
    rec = mapping(raw.value, None)
    cid = case_id_of(rec, "case_id") if "case_id" in rec else ctx.generated_id(raw.index)
    subject = text(rec, "subject")
    template = prompt_template(rec, "prompt", subject, prefix=None, ctx=ctx, filled=True)
    target_new = text(rec, "target_new", empty_kind=EMPTY_TARGET)
    target_true = text(rec, "ground_truth", empty_kind=EMPTY_TARGET)
    rephrase = text_or_list(rec, "rephrase_prompt")
    loc_prompt = optional_text(rec, "locality_prompt")
    neighbours: tuple[str, ...] = ()
    locality: tuple[LocalityPrompt, ...] = ()
    if loc_prompt is not None:
        loc_target = text(rec, "locality_ground_truth", empty_kind=EMPTY_TARGET)
        if loc_target == target_true:
            neighbours = (loc_prompt,)
        else:
            locality = (LocalityPrompt(loc_prompt, loc_target),)
    return [build_request(
        case_id=cid, subject=subject, relation_id="?", prompt=template,
        target_new=target_new, target_true=target_true,
        source_fields={"target_true": "ground_truth"},
        paraphrase_prompts=rephrase, neighborhood_prompts=neighbours, locality=locality,
        meta={"template": template})]


def _sniff_flat(rec: Mapping[str, Any], path: Path) -> bool:
    return {"prompt", "subject", "target_new", "ground_truth"} <= rec.keys()


register_format(DatasetFormat(
    name="counterfact-flat",
    description="CounterFact flattened (MEND/EasyEdit: prompt, subject, target_new, "
                "ground_truth, rephrase_prompt, locality_prompt); relations inferred from "
                "the prompt templates",
    sniff=_sniff_flat, convert=_convert_flat, finalize=infer_counterfact_relations,
    priority=1,
))
