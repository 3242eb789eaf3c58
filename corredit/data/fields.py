"""Typed field access and request building shared by the format converters.

Usage::

    from corredit.data.fields import text, text_list, template_from_text, build_request
    subject = text(record, "subject")                     # RecordError when absent/not str
    template, case_fixed = template_from_text(record["prompt"], subject, field="prompt")
    req = build_request(case_id="0", subject=subject, relation_id="P103", prompt=template,
                        target_new="English", target_true="French",
                        source_fields={"target_new": "target_new", "target_true": "ground_truth"})

Each failure raises :class:`~corredit.data.problems.RecordError` naming the field as the
source file spells it (``requested_rewrite.target_new.str``), so problems point at what a
user can find in the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from corredit.data.problems import (
    BAD_VALUE, EMPTY_TARGET, MISSING_FIELD, SAME_TARGET, SUBJECT_CASE, SUBJECT_NOT_IN_PROMPT,
    WRONG_TYPE,
    RecordError,
)
from corredit.types import EditRequest, LocalityPrompt, MultiHopQuestion

__all__ = [
    "mapping", "value", "text", "optional_text", "text_list", "text_or_list", "case_id_of",
    "escape_braces",
    "template_from_text", "prompt_template", "check_template", "build_request", "type_name",
]

_MISSING = object()


def type_name(x: Any) -> str:
    """A short JSON-ish name of a value's type, for messages."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, (int, float)):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, (list, tuple)):
        return "list"
    if isinstance(x, Mapping):
        return "object"
    return type(x).__name__


def _join(prefix: str | None, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def mapping(x: Any, field: str | None) -> Mapping[str, Any]:
    """``x`` itself when it is a JSON object, else a wrong-type error for ``field``."""
    if type(x) is not dict and not isinstance(x, Mapping):
        raise RecordError(field, WRONG_TYPE, f"expected an object, got {type_name(x)}")
    return x


def value(record: Mapping[str, Any], key: str, *, prefix: str | None = None) -> Any:
    """``record[key]``; a missing-field error when absent."""
    got = record.get(key, _MISSING) if type(record) is dict or isinstance(
        record, Mapping) else _MISSING
    if got is _MISSING:
        mapping(record, prefix)
        raise RecordError(_join(prefix, key), MISSING_FIELD, "field is missing")
    return got


def text(record: Mapping[str, Any], key: str, *, prefix: str | None = None,
         allow_empty: bool = False, empty_kind: str = BAD_VALUE) -> str:
    """The string ``record[key]`` with outer whitespace removed.

    Errors: missing, not a string, or (unless ``allow_empty``) empty, reported as
    ``empty_kind`` (pass ``EMPTY_TARGET`` for targets).
    """
    got = value(record, key, prefix=prefix)
    if not isinstance(got, str):
        raise RecordError(_join(prefix, key), WRONG_TYPE,
                          f"expected a string, got {type_name(got)}")
    got = got.strip()
    if not got and not allow_empty:
        raise RecordError(_join(prefix, key), empty_kind, "is empty")
    return got


def optional_text(record: Mapping[str, Any], key: str, *,
                  prefix: str | None = None, empty_kind: str = BAD_VALUE) -> str | None:
    """Like :func:`text` but ``None`` when the field is absent, null or blank."""
    got = record.get(key) if isinstance(record, Mapping) else None
    if got is None or (isinstance(got, str) and not got.strip()):
        return None
    return text(record, key, prefix=prefix, empty_kind=empty_kind)


def text_list(record: Mapping[str, Any], key: str, *, prefix: str | None = None,
              required: bool = False) -> tuple[str, ...]:
    """A list of non-blank strings, stripped.

    Absent or null gives ``()`` unless ``required``; a blank entry is an error.
    """
    got = record.get(key, _MISSING) if isinstance(record, Mapping) else _MISSING
    if got is _MISSING or got is None:
        if required:
            value(record, key, prefix=prefix)
        return ()
    field = _join(prefix, key)
    if not isinstance(got, (list, tuple)):
        raise RecordError(field, WRONG_TYPE, f"expected a list of strings, got {type_name(got)}")
    out = []
    for i, item in enumerate(got):
        if not isinstance(item, str):
            raise RecordError(f"{field}[{i}]", WRONG_TYPE,
                              f"expected a string, got {type_name(item)}")
        if not item.strip():
            raise RecordError(f"{field}[{i}]", BAD_VALUE, "is empty")
        out.append(item.strip())
    return tuple(out)


def text_or_list(record: Mapping[str, Any], key: str, *,
                 prefix: str | None = None) -> tuple[str, ...]:
    """A string or a list of strings at ``record[key]`` as a tuple (absent, null or
    blank: ``()``)."""
    got = record.get(key) if isinstance(record, Mapping) else None
    if isinstance(got, str):
        return (got.strip(),) if got.strip() else ()
    return text_list(record, key, prefix=prefix)


def case_id_of(record: Mapping[str, Any], key: str) -> str:
    """A case id given as an integer or a non-empty string, as a string."""
    got = value(record, key)
    if isinstance(got, bool) or not isinstance(got, (int, str)):
        raise RecordError(key, WRONG_TYPE,
                          f"expected an integer or a string, got {type_name(got)}")
    got = str(got).strip()
    if not got:
        raise RecordError(key, BAD_VALUE, "is empty")
    return got


def escape_braces(s: str) -> str:
    """``s`` with ``{`` and ``}`` doubled, so that ``str.format`` leaves them alone."""
    return s.replace("{", "{{").replace("}", "}}")


def template_from_text(prompt: str, subject: str, *, field: str) -> tuple[str, bool]:
    """The template of a full prompt: its last occurrence of ``subject`` becomes ``{}``.

    Returns ``(template, case_fixed)``; ``case_fixed`` is True when the subject occurs
    only with other letter case (the template then holds ``{}`` at that place, so
    ``template.format(subject)`` spells the subject as the record does). Raises a
    subject-not-in-prompt error when it does not occur at all.
    """
    i = prompt.rfind(subject)
    case_fixed = False
    if i < 0:
        folded_prompt, folded_subject = prompt.casefold(), subject.casefold()
        i = folded_prompt.rfind(folded_subject)
        if (i < 0 or len(folded_prompt) != len(prompt)
                or len(folded_subject) != len(subject)):
            raise RecordError(field, SUBJECT_NOT_IN_PROMPT,
                              f"the subject {subject!r} does not occur in {prompt!r}")
        case_fixed = True
    template = (escape_braces(prompt[:i]) + "{}" + escape_braces(prompt[i + len(subject):]))
    return template.strip(), case_fixed


def prompt_template(record: Mapping[str, Any], key: str, subject: str, *,
                    prefix: str | None, ctx: Any, filled: bool | None = None) -> str:
    """The template at ``record[key]``, either kept as written or derived from a full
    prompt by locating the subject (:func:`template_from_text`; a subject found only with
    other letter case is noted on ``ctx``, the converter's ``FormatContext``).

    ``filled`` says what the layout holds: True, full prompts (a ``{}`` in them is
    text); False, templates (kept when they hold ``{}``); None, either: a prompt is a
    template when it holds a ``{}`` outside every occurrence of the subject.
    """
    prompt = text(record, key, prefix=prefix)
    field = f"{prefix}.{key}" if prefix else key
    if "{}" in prompt and not filled:
        if filled is False or "{}" in prompt.replace(subject, "\0"):
            return check_template(prompt, subject, field=field)
    try:
        template, fixed = template_from_text(prompt, subject, field=field)
    except RecordError as err:
        if filled and "{}" in prompt:
            raise RecordError(field, err.kind, err.message + " (this layout's prompts have the "
                              "subject written in; '{}' is taken as text)") from None
        raise
    if fixed:
        ctx.note(field, SUBJECT_CASE, f"the subject {subject!r} occurs in {prompt!r} only "
                                      f"with other letter case")
    return template


def check_template(template: str, subject: str, *, field: str) -> str:
    """``template`` (stripped) when it holds one ``{}`` and formats with ``subject``."""
    template = template.strip()
    if "{}" not in template:
        raise RecordError(field, BAD_VALUE, f"has no '{{}}' where the subject goes: {template!r}")
    try:
        template.format(subject)
    except (IndexError, KeyError, ValueError) as exc:
        raise RecordError(field, BAD_VALUE,
                          f"is not a usable template ({type(exc).__name__}: {exc}): "
                          f"{template!r}") from None
    if template.replace("{{", "").replace("}}", "").count("{}") != 1:
        raise RecordError(field, BAD_VALUE, f"holds '{{}}' more than once: {template!r}")
    return template


def build_request(*, case_id: str, subject: str, relation_id: str, prompt: str,
                  target_new: str, target_true: str | None = None,
                  source_fields: Mapping[str, str] | None = None,
                  paraphrase_prompts: Sequence[str] = (),
                  neighborhood_prompts: Sequence[str] = (),
                  generation_prompts: Sequence[str] = (),
                  locality: Sequence[LocalityPrompt] = (),
                  multi_hop: Sequence[MultiHopQuestion] = (),
                  group_id: str | None = None,
                  meta: Mapping[str, Any] | None = None) -> EditRequest:
    """An :class:`EditRequest` after the checks every format shares.

    ``source_fields`` maps ``subject``/``prompt``/``target_new``/``target_true`` to the
    names the file uses, for the messages. Checks: non-empty subject and targets, a
    template prompt, new target different from the true one.
    """
    names = {"subject": "subject", "prompt": "prompt", "target_new": "target_new",
             "target_true": "target_true", "relation_id": "relation_id"}
    names.update(source_fields or {})
    subject = subject.strip()
    if not subject:
        raise RecordError(names["subject"], BAD_VALUE, "is empty")
    if not relation_id.strip():
        raise RecordError(names["relation_id"], BAD_VALUE, "is empty")
    prompt = check_template(prompt, subject, field=names["prompt"])
    target_new = target_new.strip()
    if not target_new:
        raise RecordError(names["target_new"], EMPTY_TARGET, "is empty")
    if target_true is not None:
        target_true = target_true.strip()
        if not target_true:
            raise RecordError(names["target_true"], EMPTY_TARGET, "is empty")
        if target_true == target_new:
            raise RecordError(names["target_new"], SAME_TARGET,
                              f"the new target {target_new!r} equals the true target "
                              f"(field {names['target_true']!r})")
    return EditRequest(
        case_id=case_id, subject=subject, relation_id=relation_id.strip(), prompt=prompt,
        target_new=target_new, target_true=target_true,
        paraphrase_prompts=tuple(paraphrase_prompts),
        neighborhood_prompts=tuple(neighborhood_prompts),
        generation_prompts=tuple(generation_prompts), locality=tuple(locality),
        multi_hop=tuple(multi_hop), group_id=group_id, meta=dict(meta or {}),
    )
