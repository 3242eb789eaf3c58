"""What part of an edit request an embedding describes: its subject, its relation, or
the whole triple.

Usage::

    from corredit.embed.fields import field_texts
    field_texts(requests, "subject")    # ['Toma Velik', ...]
    field_texts(requests, "relation")   # ['X was born in', ...]   (template, slot shown as X)
    field_texts(requests, "relation", relation_source="id")   # ['born_in', ...]
    field_texts(requests, "triple")     # ['Toma Velik was born in Rasko', ...]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from corredit.types import EditRequest

__all__ = [
    "FIELDS",
    "RELATION_SOURCES",
    "check_field",
    "field_texts",
    "relation_template_text",
    "relation_keys",
    "unique_inverse",
    "request_fingerprint_rows",
]

#: The parts of a request an embedder can describe.
FIELDS: tuple[str, ...] = ("subject", "relation", "triple")
#: Where a relation's text comes from: its prompt template or its relation id.
RELATION_SOURCES: tuple[str, ...] = ("template", "id")


def check_field(field: str) -> str:
    """``field`` itself, or a ``ValueError`` listing the known fields."""
    if field not in FIELDS:
        raise ValueError(f"unknown field {field!r}; known: {', '.join(FIELDS)}")
    return field


def relation_template_text(request: EditRequest, placeholder: str = "X") -> str:
    """The request's prompt template with the subject slot shown as ``placeholder``."""
    return request.prompt.format(placeholder)


def relation_keys(requests: Sequence[EditRequest], relation_source: str = "template",
                  placeholder: str = "X") -> list[str]:
    """One string per request naming its relation (template text or relation id)."""
    if relation_source not in RELATION_SOURCES:
        raise ValueError(
            f"unknown relation_source {relation_source!r}; known: {', '.join(RELATION_SOURCES)}"
        )
    if relation_source == "template":
        return [relation_template_text(r, placeholder) for r in requests]
    out = []
    for r in requests:
        if not r.relation_id:
            raise ValueError(
                f"request {r.case_id!r}: field 'relation_id' is empty; "
                "use relation_source='template' for this dataset"
            )
        out.append(r.relation_id)
    return out


def field_texts(requests: Sequence[EditRequest], field: str, *, placeholder: str = "X",
                relation_source: str = "template") -> list[str]:
    """The text each request contributes to an embedding of ``field``.

    subject: the subject string; relation: the prompt template with the subject slot
    shown as ``placeholder`` (or the relation id); triple: rewrite prompt + new target.
    """
    check_field(field)
    if field == "subject":
        return [r.subject for r in requests]
    if field == "relation":
        return relation_keys(requests, relation_source, placeholder)
    return [f"{r.rewrite_prompt} {r.target_new}" for r in requests]


def unique_inverse(items: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct items in first-seen order and, per item, the index of its distinct copy."""
    index: dict[str, int] = {}
    inverse = np.empty(len(items), dtype=np.int64)
    for i, item in enumerate(items):
        inverse[i] = index.setdefault(item, len(index))
    return list(index), inverse


def request_fingerprint_rows(requests: Sequence[EditRequest]) -> list[str]:
    """Per request, the fields any embedder reads (for cache keys)."""
    return [
        "\x1f".join((r.subject, r.prompt, r.relation_id or "", r.target_new))
        for r in requests
    ]
