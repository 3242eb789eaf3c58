"""Plain triples, the simplest way to bring one's own facts: JSON Lines, JSON or CSV/TSV.

Usage::

    # facts.csv
    # subject,relation,target_new,target_true,prompt,paraphrases
    # Toma Velik,born in,Rasko,Belun,{} was born in,Toma Velik's birthplace is|Toma Velik came from
    from corredit.data import load_dataset
    res = load_dataset("facts.csv")          # format 'triples', detected

Columns / keys (first name listed is canonical; aliases in brackets):

- ``subject`` (required);
- ``relation`` [``relation_id``, ``predicate``] (required): the relation's name or id;
- ``target_new`` [``new_object``, ``object_new``, ``new_target``] (required);
- ``target_true`` [``old_object``, ``object``, ``true_object``, ``ground_truth``];
- ``prompt`` [``template``]: a template with ``{}`` where the subject goes, or the full
  prompt with the subject in it; without one the prompt is ``"{} <relation>"`` with
  underscores read as spaces (``born_in`` -> ``"{} born in"``);
- ``paraphrases`` [``paraphrase_prompts``]: a list (JSON) or one cell with
  ``|``-separated prompts (CSV);
- ``case_id`` [``id``]: defaults to ``<file stem>:<row index>``.

Empty CSV cells count as absent. Other columns go to ``meta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corredit.data.fields import (
    build_request, case_id_of, mapping, prompt_template, text, text_list, type_name,
)
from corredit.data.formats import DatasetFormat, FormatContext, register_format
from corredit.data.problems import (
    EMPTY_TARGET, MISSING_FIELD, WRONG_TYPE, RecordError,
)
from corredit.data.reading import RawRecord
from corredit.types import EditRequest

__all__ = ["TRIPLE_COLUMNS"]

#: Canonical column -> accepted names, in order of preference.
TRIPLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "subject": ("subject",),
    "relation": ("relation", "relation_id", "predicate"),
    "target_new": ("target_new", "new_object", "object_new", "new_target"),
    "target_true": ("target_true", "old_object", "object", "true_object", "ground_truth"),
    "prompt": ("prompt", "template"),
    "paraphrases": ("paraphrases", "paraphrase_prompts"),
    "case_id": ("case_id", "id"),
}
_ALL_NAMES = {n for names in TRIPLE_COLUMNS.values() for n in names}


def _present(rec: Mapping[str, Any], column: str) -> str | None:
    """The first accepted name of ``column`` that ``rec`` holds with a non-blank value."""
    for name in TRIPLE_COLUMNS[column]:
        v = rec.get(name)
        if v is not None and not (isinstance(v, str) and not v.strip()):
            return name
    return None


def _required(rec: Mapping[str, Any], column: str) -> str:
    name = _present(rec, column)
    if name is None:
        names = TRIPLE_COLUMNS[column]
        alias = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
        empty = any(n in rec for n in names)
        kind = EMPTY_TARGET if empty and column == "target_new" else MISSING_FIELD
        raise RecordError(names[0], kind,
                          ("is empty" if empty else "field is missing") + alias)
    return name


def _paraphrases(rec: Mapping[str, Any]) -> tuple[str, ...]:
    name = _present(rec, "paraphrases")
    if name is None:
        return ()
    got = rec[name]
    if isinstance(got, str):
        return tuple(p.strip() for p in got.split("|") if p.strip())
    if isinstance(got, list):
        return text_list(rec, name)
    raise RecordError(name, WRONG_TYPE, f"expected a list or a string, got {type_name(got)}")


def _convert(raw: RawRecord, ctx: FormatContext) -> list[EditRequest]:
    rec = mapping(raw.value, None)
    id_name = _present(rec, "case_id")
    cid = case_id_of(rec, id_name) if id_name else ctx.generated_id(raw.index)
    subject = text(rec, _required(rec, "subject"))
    rel_name = _required(rec, "relation")
    relation = text(rec, rel_name)
    new_name = _required(rec, "target_new")
    target_new = text(rec, new_name, empty_kind=EMPTY_TARGET)
    true_name = _present(rec, "target_true")
    target_true = text(rec, true_name, empty_kind=EMPTY_TARGET) if true_name else None
    prompt_name = _present(rec, "prompt")
    if prompt_name is None:
        template = "{} " + relation.replace("_", " ").strip()
    else:
        template = prompt_template(rec, prompt_name, subject, prefix=None, ctx=ctx)
    meta = {k: v for k, v in rec.items()
            if k not in _ALL_NAMES and isinstance(k, str) and v not in (None, "")
            and isinstance(v, (str, int, float, bool))}
    return [build_request(
        case_id=cid, subject=subject, relation_id=relation, prompt=template,
        target_new=target_new, target_true=target_true,
        source_fields={"relation_id": rel_name, "target_new": new_name,
                       "target_true": true_name or "target_true",
                       "prompt": prompt_name or rel_name},
        paraphrase_prompts=_paraphrases(rec), meta=meta)]


def _sniff(rec: Mapping[str, Any], path: Path) -> bool:
    return ("subject" in rec and any(n in rec for n in TRIPLE_COLUMNS["relation"])
            and any(n in rec for n in TRIPLE_COLUMNS["target_new"]))


register_format(DatasetFormat(
    name="triples",
    description="plain triples as JSONL/JSON/CSV/TSV: subject, relation, target_new, "
                "optional target_true, prompt, paraphrases, case_id",
    sniff=_sniff, convert=_convert, priority=-1,
))
