"""Build a world folder: generate, train tokenizer and model, measure, save.

Usage::

    from corredit.world.build import build_world, load_model_and_tokenizer
    from corredit.world.options import WorldOptions
    w = build_world("out/world-3", WorldOptions(seed=3, n_people=100))
    w.report["recall"]["recall"]                   # first-token recall on rewrite prompts
    model, tok = load_model_and_tokenizer(w.model_dir)

Everything but ``report.json`` is a function of the options, the code and the machine's
arithmetic: the same build twice gives the same files, bit for bit. The folder is written
next to its destination and renamed into place, so a killed build leaves nothing half-made.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import corredit
from corredit.world.options import FORMAT_VERSION, WorldOptions
from corredit.world.world import (
    REPORT_FILE, World, _write_json, generate_world, is_world_dir, read_world,
)

__all__ = ["build_world", "load_model_and_tokenizer", "token_stats", "quiet_transformers",
           "RECALL_GATES"]

#: Minimum first-token recall a built model must reach on the whole world.
RECALL_GATES = {"recall": 0.95, "paraphrase_recall": 0.90}

OBJECT_TYPES = ("city", "country", "language", "company", "occupation", "instrument")


def load_model_and_tokenizer(path: str | Path):
    """``(model, tokenizer)`` of a world folder, read with the ``transformers`` Auto classes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    return model, tokenizer


def token_stats(world: World, tokenizer: Any) -> dict[str, Any]:
    """How names tokenize: tokens per person name, share of people sharing a token,
    objects' token counts and whether each type's objects have distinct first tokens."""
    people = world.entities.get("person", ())

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    start = [ids(p) for p in people]
    middle = [ids(" " + p) for p in people]
    counts = Counter(t for toks in middle for t in set(toks))
    sharing = sum(1 for toks in middle if any(counts[t] > 1 for t in set(toks)))
    out: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "person_tokens_mean": sum(map(len, middle)) / max(1, len(middle)),
        "person_tokens_min": min(map(len, middle), default=0),
        "person_tokens_at_start_mean": sum(map(len, start)) / max(1, len(start)),
        "people_sharing_a_token": sharing / max(1, len(people)),
        "objects": {},
    }
    for t in OBJECT_TYPES:
        names = world.entities.get(t, ())
        toks = [ids(" " + n) for n in names]
        firsts = [x[0] for x in toks]
        out["objects"][t] = {
            "n": len(names),
            "tokens_mean": sum(map(len, toks)) / max(1, len(toks)),
            "distinct_first_tokens": len(set(firsts)),
        }
    return out


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No ``transformers`` progress bars inside (restored after)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _portable_tokenizer_config(folder: Path) -> None:
    """Name the generic fast tokenizer class, which every ``transformers`` version knows."""
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _check_first_tokens(stats: dict[str, Any]) -> None:
    bad = {t: v for t, v in stats["objects"].items() if v["distinct_first_tokens"] < v["n"]}
    if bad:
        raise ValueError(f"objects of one type share their first token ({bad}): first-token "
                         f"recall could not tell them apart; raise vocab_size")


def build_world(out: str | Path, options: WorldOptions | None = None, *, progress: bool = True,
                overwrite: bool = False) -> World:
    """Build the world of ``options`` into folder ``out`` and return it (read back from disk).

    ``out`` must not exist, be empty, or (with ``overwrite``) hold a world.
    """
    import torch
    import transformers

    from corredit.world.measure import recall_report
    from corredit.world.tokenizer import train_tokenizer
    from corredit.world.train import deterministic_torch, make_model, train_model

    options = options or WorldOptions()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: folder exists and is not empty (overwrite to replace)")
        if not is_world_dir(out, with_model=False):
            raise ValueError(f"{out}: not a world folder; refusing to replace it")
    t_start = time.perf_counter()
    world = generate_world(options)
    objects = [x for t in OBJECT_TYPES for x in world.entities.get(t, ())]
    if options.whole_word_names:
        objects += list(dict.fromkeys(w for p in world.entities.get("person", ()) for w in p.split()))
    tokenizer = train_tokenizer(world.training_texts(), options.vocab_size, whole_words=objects)
    tstats = token_stats(world, tokenizer)
    _check_first_tokens(tstats)

    model = make_model(tokenizer, options)
    train_log = train_model(model, tokenizer, world.training_texts(), options, progress=progress)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        world.save(tmp)
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        _portable_tokenizer_config(tmp)
        # measure what was saved, read back the way users read it
        t_measure = time.perf_counter()
        with quiet_transformers():
            saved_model, saved_tok = load_model_and_tokenizer(tmp)
        with deterministic_torch(options.threads):
            recall = recall_report(saved_model, saved_tok, world.requests())
        measure_seconds = time.perf_counter() - t_measure
        gates = {k: recall[k] >= v for k, v in RECALL_GATES.items()}
        report = {
            "format_version": FORMAT_VERSION,
            "corredit_version": corredit.__version__,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "machine": platform.machine(),
            "options": options.to_dict(),
            "summary": world.summary(),
            "n_params": sum(p.numel() for p in saved_model.parameters()),
            "model_bytes": (tmp / "model.safetensors").stat().st_size,
            "tokens": tstats,
            "train": train_log,
            "recall": recall,
            "recall_gates": RECALL_GATES,
            "gates_passed": all(gates.values()),
            "measure_seconds": measure_seconds,
            "build_seconds": time.perf_counter() - t_start,
        }
        _write_json(tmp / REPORT_FILE, report)
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_world(out)
