"""Edit sets: read benchmark files and one's own triples into :class:`EditRequest` objects.

Usage::

    from corredit.data import load_dataset, summarize, same_subject_sets
    res = load_dataset("../shared/data/counterfact/counterfact-edit.json")   # from the repository root
    res.format, len(res.requests), res.n_set_aside      # ('counterfact-flat', 10000, 0)
    res.check()                   # warns with res.summary() when anything was set aside
    summarize(res)["n_multi_fact_subjects"]
    same_subject_sets(res.requests, min_facts=2)          # {subject: [requests]}

    corredit data info PATH [--format NAME] [--json] [--strict]
    corredit data formats
    corredit data fetch NAME

Formats (registered by name in :data:`FORMATS`, detected from the records):
``counterfact`` (ROME layout), ``multi_counterfact``, ``counterfact-flat`` (relations
inferred from templates), ``zsre`` (option ``target``: ``"alt"`` default, or
``"answers"``), ``mquake`` (one group of edits per case), ``known-facts``,
``pitfalls-conflict``, ``pitfalls-round``, ``triples`` (JSONL/JSON/CSV/TSV),
``corredit`` (one ``EditRequest.to_dict()`` per line; also a world folder).

Paths in the examples are relative to the repository root, with the shared benchmark
folder beside it (``../shared/data``); the same files come from ``corredit data fetch
counterfact-edit`` (commit-pinned, hash-checked). The numbers shown are those of
CounterFact's flattened 10,000-case edit split.

Bad records are set aside with a :class:`Problem` naming file, record, case id and field
(``strict=True`` raises :class:`DataError` instead); nothing is dropped silently.
This package never imports torch and never touches the network unless
:func:`~corredit.data.fetch.fetch_dataset` is called.
"""

from corredit.data.problems import DataError, Problem, PROBLEM_KINDS
from corredit.data.formats import (
    FORMATS, DatasetFormat, FormatContext, register_format, detect_format, UnknownFormatError,
)
from corredit.data import (  # noqa: F401  (registers the formats)
    counterfact, zsre, mquake, known_facts, pitfalls, triples, corredit_jsonl,
)
from corredit.data.corredit_jsonl import write_requests
from corredit.data.loading import LoadResult, load_dataset, load_records
from corredit.data.relations import RelationTable, infer_counterfact_relations
from corredit.data.subsets import (
    same_subject_sets, shared_relation_sets, shared_object_sets, conflict_pairs, take_sets,
    counterfactual_targets,
)
from corredit.data.summary import summarize, format_summary
from corredit.data.fetch import SOURCES, DataSource, FetchError, fetch_dataset

__all__ = [
    "load_dataset", "load_records", "LoadResult", "Problem", "DataError", "PROBLEM_KINDS",
    "FORMATS", "DatasetFormat", "FormatContext", "register_format", "detect_format",
    "UnknownFormatError", "write_requests", "RelationTable", "infer_counterfact_relations",
    "same_subject_sets", "shared_relation_sets", "shared_object_sets", "conflict_pairs",
    "take_sets", "counterfactual_targets", "summarize", "format_summary",
    "SOURCES", "DataSource", "FetchError", "fetch_dataset",
]
