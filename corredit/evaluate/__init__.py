"""Evaluation of edits: batched scoring of targets and the metric suites.

Usage::

    from corredit.evaluate import target_nll, score_probability, summarize_probability
    nll = target_nll(h, ["The Eiffel Tower is in"], ["Paris"], batch_size=64)
    rows = score_probability(h, requests)          # tidy rows, suite="probability"
    summarize_probability(rows)                    # {'ES': ..., 'PS': ..., 'NS': ..., 'S': ...}

``scoring`` runs the model (batched NLL); ``metrics`` holds pure functions of NLLs;
each suite module joins the two.
"""

from corredit.evaluate.metrics import (
    METRIC_NAMES,
    PROMPT_KINDS,
    harmonic_mean,
    probability_rows,
    prompt_metrics,
    summarize_probability,
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
]
