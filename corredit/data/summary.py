"""What an edit set holds: the figures ``corredit data info`` prints.

Usage::

    from corredit.data import load_dataset, summarize, format_summary
    res = load_dataset("counterfact-edit.json")
    s = summarize(res)
    s["n_subjects"], s["n_multi_fact_subjects"], s["largest_subject_group"]
    print(format_summary(s))

``summarize`` also takes a plain list of requests. Subjects are compared exactly;
a subject "carries several facts" when two or more requests edit it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from corredit.data.loading import LoadResult
from corredit.data.subsets import conflict_pairs
from corredit.types import EditRequest

__all__ = ["summarize", "format_summary"]


def summarize(data: LoadResult | Sequence[EditRequest], *,
              max_problems: int = 20) -> dict[str, Any]:
    """The figures of an edit set as one JSON-serialisable dict.

    Keys: ``n_records``, ``n_requests``, ``n_subjects``, ``n_relations``, ``n_templates``,
    ``n_multi_fact_subjects``, ``largest_subject_group``, ``n_subject_first``,
    ``n_groups``, ``n_conflict_pairs``, ``relation_histogram`` (most frequent first),
    and, for a :class:`LoadResult`: ``path``, ``format``, ``n_kept``, ``n_set_aside``,
    ``n_problems``, ``problems_by_kind``, ``problems`` (the first ``max_problems``),
    ``n_notes``, ``notes_by_kind``, ``skipped_files``, ``unread_files`` (files that could
not be read to their end) and the format's own figures.
    """
    result = data if isinstance(data, LoadResult) else None
    requests = list(result.requests if result is not None else data)
    subjects = Counter(r.subject for r in requests)
    relations = Counter(r.relation_id for r in requests)
    multi = {s: n for s, n in subjects.items() if n >= 2}
    largest = None
    if multi:
        subject, n = min(multi.items(), key=lambda kv: (-kv[1], kv[0]))
        largest = {"subject": subject, "n_facts": n}
    out: dict[str, Any] = {}
    if result is not None:
        out.update(path=str(result.path), format=result.format,
                   files=[str(f) for f in result.files])
    out.update(
        n_records=result.n_input if result is not None else len(requests),
        n_requests=len(requests),
        n_subjects=len(subjects),
        n_relations=len(relations),
        n_templates=len({r.prompt for r in requests}),
        n_multi_fact_subjects=len(multi),
        largest_subject_group=largest,
        n_subject_first=sum(r.subject_first for r in requests),
        n_groups=len({r.group_id for r in requests if r.group_id is not None}),
        n_conflict_pairs=len(conflict_pairs(requests)),
        relation_histogram=dict(sorted(relations.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
    if result is not None:
        out.update(result.info)
        out.update(
            n_kept=result.n_kept, n_set_aside=result.n_set_aside,
            n_problems=len(result.problems),
            problems_by_kind=dict(Counter(p.kind for p in result.problems).most_common()),
            problems=[p.to_dict() for p in result.problems[:max_problems]],
            n_notes=len(result.notes),
            notes_by_kind=dict(Counter(p.kind for p in result.notes).most_common()),
            skipped_files=[{"file": f, "reason": why} for f, why in result.skipped],
            unread_files=list(result.unread_files),
            options=dict(result.options),
        )
    return out


def _n(x: int) -> str:
    return f"{x:,}"


def format_summary(s: dict[str, Any], *, max_relations: int = 40) -> str:
    """``summarize``'s dict as an aligned text table with a relation histogram."""
    rows: list[tuple[str, str]] = []
    if "path" in s:
        rows.append(("path", s["path"]))
        rows.append(("format", s["format"]))
    if len(s.get("files", ())) > 1:
        rows.append(("files", _n(len(s["files"]))))
    rec = _n(s["n_records"])
    if "n_set_aside" in s:
        rec += f" (kept {_n(s['n_kept'])}, set aside {_n(s['n_set_aside'])})"
    rows.append(("records", rec))
    if s["n_requests"] != s.get("n_kept", s["n_requests"]) or s["n_groups"]:
        rows.append(("edit requests", _n(s["n_requests"])))
    if s["n_groups"]:
        rows.append(("edit groups", _n(s["n_groups"])))
    rows.append(("subjects", _n(s["n_subjects"])))
    rel = _n(s["n_relations"])
    if "relation_inferred_by" in s:
        how = ", ".join(f"{k} {_n(v)}" for k, v in s["relation_inferred_by"].items())
        rel += f" (inferred; by {how})"
    rows.append(("relations", rel))
    rows.append(("prompt templates", _n(s["n_templates"])))
    multi = _n(s["n_multi_fact_subjects"])
    if s["largest_subject_group"]:
        g = s["largest_subject_group"]
        multi += f" (largest: {g['subject']!r}, {g['n_facts']} facts)"
    rows.append(("subjects with 2+ facts", multi))
    rows.append(("conflict pairs", _n(s["n_conflict_pairs"])
                 + " (same subject and relation, different new targets)"))
    n = max(s["n_requests"], 1)
    rows.append(("subject first", f"{_n(s['n_subject_first'])} of {_n(s['n_requests'])} prompts "
                                    f"({100 * s['n_subject_first'] / n:.1f}%)"))
    if "n_problems" in s:
        kinds = ", ".join(f"{k} {_n(v)}" for k, v in s["problems_by_kind"].items())
        rows.append(("problems", _n(s["n_problems"]) + (f" ({kinds})" if kinds else "")))
        if s["n_notes"]:
            notes = ", ".join(f"{k} {_n(v)}" for k, v in s["notes_by_kind"].items())
            rows.append(("notes (kept)", f"{_n(s['n_notes'])} ({notes})"))
    if s.get("unread_files"):
        rows.append(("unread rest", ", ".join(s["unread_files"])
                     + " (could not be read to the end; records there are not counted)"))
    if s.get("skipped_files"):
        rows.append(("skipped files", ", ".join(f["file"] for f in s["skipped_files"])))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    hist = s["relation_histogram"]
    if hist:
        lines.append("")
        lines.append("relation histogram:")
        top = list(hist.items())[:max_relations]
        name_w = min(max(len(k) for k, _ in top), 60)
        peak = max(hist.values())
        for k, v in top:
            bar = "#" * max(1, round(30 * v / peak))
            name = k if len(k) <= name_w else k[:name_w - 3] + "..."
            lines.append(f"  {name.ljust(name_w)}  {_n(v).rjust(7)}  {bar}")
        if len(hist) > len(top):
            rest = sum(list(hist.values())[len(top):])
            lines.append(f"  ... {len(hist) - len(top)} more relations ({_n(rest)} requests)")
    problems = s.get("problems") or []
    if problems:
        lines.append("")
        lines.append(f"problems (first {len(problems)} of {_n(s['n_problems'])}):")
        for p in problems:
            lines.append("  " + _problem_line(p))
    return "\n".join(lines)


def _problem_line(p: dict[str, Any]) -> str:
    where = p["file"]
    if p.get("line") is not None:
        where += f":{p['line']}" + (f":{p['column']}" if p.get("column") is not None else "")
    parts = [where]
    if p.get("index") is not None:
        parts.append(f"record {p['index']}" + (f" (case_id {p['case_id']!r})"
                                                if p.get("case_id") is not None else ""))
    if p.get("field"):
        parts.append(f"field {p['field']!r}")
    return ", ".join(parts) + f": {p['message']}"
