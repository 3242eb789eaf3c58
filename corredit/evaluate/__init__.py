"""Evaluation of edits: batched scoring of targets and the metric suites.

Usage::

    from corredit.evaluate import target_nll, score_probability, summarize_probability
    nll = target_nll(h, ["The Eiffel Tower is in"], ["Paris"], batch_size=64)
    rows = score_probability(h, requests)          # tidy rows, suite="probability"
    summarize_probability(rows)                    # {'ES': ..., 'PS': ..., 'NS': ..., 'S': ...}
    ref = teacher_forced_reference(h, requests)    # before editing; then, edited:
    score_teacher_forced(h, requests, reference=ref)   # suite="teacher_forced"
    score_zsre(h, requests)                        # suite="zsre" (token accuracy)
    score_multihop(h, requests)                    # suite="multihop"
    score_generation(h, requests, snippets=...)    # GE / RS, suite="probability"
    perplexity(h, texts); norm_growth(original, h.model)   # suite="health" via health_rows
    SUITES.names()                                 # the suites a run's [evaluate] may name

``scoring`` runs the model (batched NLL); ``metrics`` holds pure functions of NLLs;
each suite module joins the two; every suite labels its rows with its own name.
"""

from corredit.evaluate.metrics import (
    METRIC_NAMES,
    PROMPT_KINDS,
    harmonic_mean,
    probability_rows,
    prompt_metrics,
    summarize_probability,
)
from corredit.evaluate.generation import (
    GENERATION_METRICS,
    generation_entropy,
    ngram_entropy,
    reference_scores,
    sample_texts,
    score_generation,
    summarize_generation,
)
from corredit.evaluate.health import (
    health_rows,
    heldout_windows,
    norm_growth,
    perplexity,
    text_windows,
    token_perplexity,
)
from corredit.evaluate.multihop import (
    MULTIHOP_METRICS,
    multihop_units,
    score_multihop,
    summarize_multihop,
)
from corredit.evaluate.probability import probability_prompts, score_probability
from corredit.evaluate.scoring import (
    TargetScores,
    adds_word_prefix,
    encode_prompt,
    encode_target,
    score_targets,
    target_first_token_correct,
    target_nll,
)
from corredit.evaluate.rows import suite_rows, summarize_suite
from corredit.evaluate.teacher_forced import (
    TEACHER_FORCED_METRICS,
    TeacherForcedReference,
    locality_pairs,
    score_teacher_forced,
    summarize_teacher_forced,
    target_argmax,
    teacher_forced_reference,
)
from corredit.evaluate.zsre import ZSRE_METRICS, score_zsre, summarize_zsre
from corredit.evaluate.suite import (
    SUITES,
    CaseSuite,
    MeasurePoint,
    Suite,
    TrialContext,
    get_suite,
    register_case_suite,
)
from corredit.evaluate import suites as _builtin_suites  # noqa: F401  (registers the built-ins)

__all__ = [
    "target_nll",
    "target_first_token_correct",
    "score_targets",
    "TargetScores",
    "encode_prompt",
    "encode_target",
    "adds_word_prefix",
    "score_probability",
    "summarize_probability",
    "probability_prompts",
    "probability_rows",
    "prompt_metrics",
    "harmonic_mean",
    "METRIC_NAMES",
    "PROMPT_KINDS",
    "suite_rows",
    "summarize_suite",
    "target_argmax",
    "locality_pairs",
    "TeacherForcedReference",
    "teacher_forced_reference",
    "score_teacher_forced",
    "summarize_teacher_forced",
    "TEACHER_FORCED_METRICS",
    "score_zsre",
    "summarize_zsre",
    "ZSRE_METRICS",
    "multihop_units",
    "score_multihop",
    "summarize_multihop",
    "MULTIHOP_METRICS",
    "ngram_entropy",
    "generation_entropy",
    "sample_texts",
    "reference_scores",
    "score_generation",
    "summarize_generation",
    "GENERATION_METRICS",
    "text_windows",
    "heldout_windows",
    "token_perplexity",
    "perplexity",
    "norm_growth",
    "health_rows",
    "SUITES",
    "Suite",
    "CaseSuite",
    "MeasurePoint",
    "TrialContext",
    "register_case_suite",
    "get_suite",
]
