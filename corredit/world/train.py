"""Deterministic training of the world's GPT-2 model.

Usage::

    from corredit.world.train import make_model, train_model
    model = make_model(tokenizer, options)             # GPT2LMHeadModel, seeded init
    log = train_model(model, tokenizer, texts, options, progress=True)
    log["tokens_per_second"], log["epoch_loss"][-1]

Same options, texts and machine -> the same weights, bit for bit: fixed thread count,
deterministic algorithms, ``torch.manual_seed`` for the initialisation and a data order
drawn from ``options.seed`` alone. Each text is one sequence starting at position 0, the
way a prompt does; batches group texts of similar length. No end-of-text token is trained:
after a fact the model goes on the way biographies do, with more facts, so sampling runs
to its token limit.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch

from corredit.world.options import WorldOptions

__all__ = ["make_model", "train_model", "deterministic_torch", "encode_texts", "epoch_batches"]


@contextmanager
def deterministic_torch(threads: int) -> Iterator[None]:
    """Fix the thread count and switch deterministic algorithms on, restoring both after."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def make_model(tokenizer: Any, options: WorldOptions):
    """A freshly initialised ``GPT2LMHeadModel`` sized by ``options`` (seeded, no dropout)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    o = options
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=o.n_positions, n_embd=o.n_embd,
        n_layer=o.n_layer, n_head=o.n_head, n_inner=4 * o.n_embd,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, tie_word_embeddings=True,
    )
    with deterministic_torch(o.threads):
        torch.manual_seed(o.seed)
        model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = eos
    return model


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text; a text longer than ``max_length`` tokens raises."""
    out = []
    for i, ids in enumerate(tokenizer(list(texts), add_special_tokens=False)["input_ids"]):
        ids = list(ids)
        if len(ids) > max_length:
            raise ValueError(f"training text {i} has {len(ids)} tokens, more than n_positions "
                             f"= {max_length}: {texts[i][:80]!r}...")
        out.append(ids)
    return out


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int,
                  epoch: int) -> list[list[int]]:
    """Batches of text indices for one epoch: shuffled, grouped by length, batch order shuffled."""
    rng = random.Random(f"corredit-world-train:{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 8
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches.extend(chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_model(model: Any, tokenizer: Any, texts: Sequence[str], options: WorldOptions,
                progress: bool = True,
                on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train ``model`` in place on ``texts`` (AdamW, warmup then cosine decay); a log dict.

    ``on_epoch(epoch, mean_loss)`` runs after each epoch (the model is in train mode).
    """
    from tqdm.auto import tqdm

    o = options
    data = encode_texts(tokenizer, texts, o.n_positions)
    lengths = [len(x) for x in data]
    plan = [epoch_batches(lengths, o.batch_size, o.seed, e) for e in range(o.epochs)]
    total = sum(len(p) for p in plan)
    warmup = max(1, int(round(o.warmup_frac * total)))
    eos = tokenizer.eos_token_id
    log: dict[str, Any] = {"steps": total, "texts": len(data), "tokens_per_epoch": sum(lengths),
                           "epoch_loss": []}
    t0 = time.perf_counter()
    with deterministic_torch(o.threads):
        torch.manual_seed(o.seed)
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=o.lr, betas=(0.9, 0.98), eps=1e-8,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, warmup))
        model.train()
        step = 0
        bar = tqdm(total=total, desc="training world model", unit="step", disable=not progress,
                   mininterval=1.0)
        try:
            for epoch, batches in enumerate(plan):
                loss_sum, tok_sum = 0.0, 0
                for batch in batches:
                    width = max(lengths[i] for i in batch)
                    ids = torch.full((len(batch), width), eos, dtype=torch.long)
                    mask = torch.zeros((len(batch), width), dtype=torch.long)
                    for r, i in enumerate(batch):
                        ids[r, :lengths[i]] = torch.tensor(data[i])
                        mask[r, :lengths[i]] = 1
                    labels = ids.masked_fill(mask == 0, -100)[:, 1:]
                    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
                    loss = torch.nn.functional.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    n_pred = int(mask[:, 1:].sum())
                    loss_sum += float(loss.detach()) * n_pred
                    tok_sum += n_pred
                    step += 1
                    bar.update(1)
                    if step % 20 == 0:
                        bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.3f}")
                log["epoch_loss"].append(loss_sum / max(1, tok_sum))
                if on_epoch is not None:
                    on_epoch(epoch, log["epoch_loss"][-1])
        finally:
            bar.close()
            model.eval()
    seconds = time.perf_counter() - t0
    log["seconds"] = seconds
    log["tokens_per_second"] = log["tokens_per_epoch"] * o.epochs / max(seconds, 1e-9)
    return log
