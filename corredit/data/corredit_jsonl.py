"""corredit's own edit-set file: one ``EditRequest.to_dict()`` JSON object per line.

Usage::

    from corredit.data import load_dataset, write_requests
    write_requests("requests.jsonl", requests)         # the inverse
    res = load_dataset("requests.jsonl")                # format 'corredit', detected
    res = load_dataset("data/world-default")            # a world folder: its requests.jsonl

Every field is checked for its type before the request is built, so a bad line is one
problem naming the field, and unknown fields are refused (a misspelt ``target_nwe``
would otherwise vanish).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import fields as dataclass_fields
import json
from pathlib import Path
from typing import Any

from corredit.atomic import atomic_write_text
from corredit.data.fields import (
    build_request, case_id_of, mapping, text, text_list, type_name, value,
)
from corredit.data.formats import DatasetFormat, FormatContext, register_format
from corredit.data.problems import BAD_VALUE, EMPTY_TARGET, WRONG_TYPE, RecordError
from corredit.data.reading import RawRecord
from corredit.types import EditRequest, LocalityPrompt, MultiHopQuestion

__all__ = ["write_requests", "WORLD_REQUESTS_FILE"]

#: The file a world folder holds its edit requests in.
WORLD_REQUESTS_FILE = "requests.jsonl"

_KNOWN = {f.name for f in dataclass_fields(EditRequest)}


def write_requests(path: str | Path, requests: Iterable[EditRequest]) -> Path:
    """Write ``requests`` as a corredit JSONL file (atomically); returns the path."""
    path = Path(path)
    atomic_write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n"
                              for r in requests), path)
    return path


def _items(rec: Mapping[str, Any], key: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(field name, mapping)`` for each item of the list at ``rec[key]`` (absent: none)."""
    got = rec.get(key) or []
    if not isinstance(got, list):
        raise RecordError(key, WRONG_TYPE, f"expected a list, got {type_name(got)}")
    for i, item in enumerate(got):
        field = f"{key}[{i}]"
        yield field, mapping(item, field)


def _locality(rec: Mapping[str, Any]) -> tuple[LocalityPrompt, ...]:
    return tuple(LocalityPrompt(text(item, "prompt", prefix=field),
                                text(item, "target", prefix=field, empty_kind=EMPTY_TARGET))
                 for field, item in _items(rec, "locality"))


def _multi_hop(rec: Mapping[str, Any]) -> tuple[MultiHopQuestion, ...]:
    return tuple(MultiHopQuestion(
        question=text(item, "question", prefix=field),
        answer=text(item, "answer", prefix=field, empty_kind=EMPTY_TARGET),
        new_answer=text(item, "new_answer", prefix=field, empty_kind=EMPTY_TARGET),
        answer_aliases=text_list(item, "answer_aliases", prefix=field),
        new_answer_aliases=text_list(item, "new_answer_aliases", prefix=field))
        for field, item in _items(rec, "multi_hop"))


def _convert(raw: RawRecord, ctx: FormatContext) -> list[EditRequest]:
    rec = mapping(raw.value, None)
    unknown = sorted(k for k in rec if k not in _KNOWN)
    if unknown:
        raise RecordError(str(unknown[0]), BAD_VALUE,
                          f"unknown field(s) {unknown}; an EditRequest has {sorted(_KNOWN)}")
    meta = rec.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise RecordError("meta", WRONG_TYPE, f"expected an object, got {type_name(meta)}")
    group = rec.get("group_id")
    if group is not None and (isinstance(group, bool) or not isinstance(group, (str, int))):
        raise RecordError("group_id", WRONG_TYPE,
                          f"expected a string or null, got {type_name(group)}")
    target_true = rec.get("target_true")
    if target_true is not None and not isinstance(target_true, str):
        raise RecordError("target_true", WRONG_TYPE,
                          f"expected a string or null, got {type_name(target_true)}")
    value(rec, "prompt")
    return [build_request(
        case_id=case_id_of(rec, "case_id"), subject=text(rec, "subject"),
        relation_id=text(rec, "relation_id"), prompt=text(rec, "prompt"),
        target_new=text(rec, "target_new", empty_kind=EMPTY_TARGET),
        target_true=target_true,
        paraphrase_prompts=text_list(rec, "paraphrase_prompts"),
        neighborhood_prompts=text_list(rec, "neighborhood_prompts"),
        generation_prompts=text_list(rec, "generation_prompts"),
        locality=_locality(rec), multi_hop=_multi_hop(rec),
        group_id=None if group is None else str(group), meta=dict(meta))]


def _sniff(rec: Mapping[str, Any], path: Path) -> bool:
    return {"case_id", "subject", "relation_id", "prompt", "target_new"} <= rec.keys() and (
        "requested_rewrite" not in rec)


register_format(DatasetFormat(
    name="corredit",
    description="corredit JSONL: one EditRequest.to_dict() per line (a world folder's "
                "requests.jsonl)",
    sniff=_sniff, convert=_convert, priority=3,
))
