"""The project's shared value types; torch-free.

Usage::

    from corredit.types import EditRequest
    req = EditRequest(case_id="7", subject="Toma Velik", relation_id="born_in",
                      prompt="{} was born in", target_new="Rasko", target_true="Belun")
    req.rewrite_prompt          # 'Toma Velik was born in'
    req.subject_first           # True: the subject precedes the relation words
    EditRequest.from_prompt("Toma Velik was born in", "Toma Velik", "Rasko", "Belun")
    # the same fact: template "{} was born in", case and relation ids filled in
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, asdict, replace
from typing import Any, Mapping

__all__ = ["EditRequest", "MultiHopQuestion", "LocalityPrompt", "subject_comes_first"]


def subject_comes_first(template: str) -> bool:
    """True when the template's ``{}`` opens the prompt (only whitespace before it)."""
    return template.split("{}", 1)[0].strip() == ""


@dataclass(frozen=True)
class MultiHopQuestion:
    """A multi-hop question about an edited fact, with answers before and after the edit."""

    question: str
    answer: str
    new_answer: str
    answer_aliases: tuple[str, ...] = ()
    new_answer_aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalityPrompt:
    """A prompt that the edit must leave alone, with the answer the model should keep."""

    prompt: str
    target: str


@dataclass(frozen=True)
class EditRequest:
    """One fact to edit: ``(subject, relation) : target_true -> target_new``.

    ``prompt`` is a template holding ``{}`` where the subject goes. Paraphrase and
    neighbourhood prompts are full texts (subjects already filled in); neighbourhood
    prompts are about other subjects whose true object is ``target_true``.
    ``group_id`` ties edits that must be applied together (a MQuAKE case);
    ``meta`` holds format-specific extras (JSON-serialisable values only).
    """

    case_id: str
    subject: str
    relation_id: str
    prompt: str
    target_new: str
    target_true: str | None = None
    paraphrase_prompts: tuple[str, ...] = ()
    neighborhood_prompts: tuple[str, ...] = ()
    generation_prompts: tuple[str, ...] = ()
    locality: tuple[LocalityPrompt, ...] = ()
    multi_hop: tuple[MultiHopQuestion, ...] = ()
    group_id: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if "{}" not in self.prompt:
            raise ValueError(
                f"EditRequest {self.case_id!r}: field 'prompt' must hold '{{}}' where the "
                f"subject goes, got {self.prompt!r}"
            )
        for name in ("paraphrase_prompts", "neighborhood_prompts", "generation_prompts",
                     "locality", "multi_hop"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    @property
    def rewrite_prompt(self) -> str:
        """The prompt with the subject filled in."""
        return self.prompt.format(self.subject)

    @property
    def subject_first(self) -> bool:
        """Whether the subject precedes the relation words in the rewrite prompt."""
        return subject_comes_first(self.prompt)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        out = asdict(self)
        out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EditRequest":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["locality"] = tuple(LocalityPrompt(**x) for x in d.get("locality", ()))
        d["multi_hop"] = tuple(
            MultiHopQuestion(**{k: tuple(v) if isinstance(v, list) else v for k, v in x.items()})
            for x in d.get("multi_hop", ())
        )
        for name in ("paraphrase_prompts", "neighborhood_prompts", "generation_prompts"):
            d[name] = tuple(d.get(name, ()))
        d["meta"] = dict(d.get("meta") or {})
        return cls(**d)

    @classmethod
    def from_prompt(cls, prompt: str, subject: str, target_new: str,
                    target_true: str | None = None, *, case_id: str | None = None,
                    relation_id: str | None = None, **fields: Any) -> "EditRequest":
        """An edit from a prompt with the subject written in (``"Toma Velik was born
        in"``; a template with ``{}`` is taken as it is), checked as the loaders check
        records (non-empty subject and targets, the subject in the prompt, new target
        unlike the true one); a bad value raises ``ValueError`` naming the field.

        ``relation_id`` defaults to the template, ``case_id`` to a digest of subject,
        template and targets; ``fields`` are the other :class:`EditRequest` fields
        (``paraphrase_prompts=[...]``, ``neighborhood_prompts=[...]``, ...).
        """
        from corredit.data.fields import build_request, check_template, template_from_text
        from corredit.data.problems import RecordError

        try:
            subject = subject.strip()
            if "{}" in (prompt.replace(subject, "\0") if subject else prompt):
                template = check_template(prompt, subject, field="prompt")
            else:
                template, _ = template_from_text(prompt, subject, field="prompt")
            if case_id is None:
                key = json.dumps([subject, template, target_new, target_true])
                case_id = hashlib.sha256(key.encode()).hexdigest()[:12]
            return build_request(case_id=str(case_id), subject=subject,
                                 relation_id=template if relation_id is None else relation_id,
                                 prompt=template, target_new=target_new,
                                 target_true=target_true, **fields)
        except RecordError as err:
            raise ValueError(f"EditRequest.from_prompt: field {err.field!r}: "
                             f"{err.message}") from None

    def with_target(self, target_new: str) -> "EditRequest":
        """A copy with another new target."""
        return replace(self, target_new=target_new)
