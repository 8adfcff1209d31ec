"""Train the world model from scratch: a small GPT-2 on the world corpus, reproducible from a seed.

``replab world train`` calls ``train_world``; the shipped checkpoint in
``replab/world/checkpoint/`` was made with the defaults of ``WorldTrainConfig``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from replab.world.corpus import documents
from replab.world.relations import relations
from replab.world.sentiment import HELDOUT_TEMPLATES, make_review
from replab.world.tokenizer import build_tokenizer


@dataclass(frozen=True)
class WorldTrainConfig:
    """Architecture and optimisation of the world model (defaults = the shipped model)."""

    seed: int = 0
    n_layer: int = 4
    d_model: int = 256
    n_head: int = 4
    n_ctx: int = 64
    steps: int = 4000
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0


def _vocab_texts(docs: list[str]) -> list[str]:
    """Training documents plus every held-out prompt, so no evaluation word is out of vocabulary."""
    import random

    extra = []
    for rel in relations().values():
        for template in rel.heldout_templates:
            extra.extend(f.render(template) for f in rel.facts)
    rng = random.Random(0)
    extra.extend(make_review(rng, "heldout").text for _ in range(50 * len(HELDOUT_TEMPLATES)))
    return docs + extra


def _pack(token_lists: list[list[int]], n_ctx: int, pad: int) -> torch.Tensor:
    """Greedily pack whole documents (each starting with BOS) into rows of ``n_ctx`` tokens."""
    rows, row = [], []
    for toks in token_lists:
        toks = toks[:n_ctx]
        if len(row) + len(toks) > n_ctx:
            rows.append(row + [pad] * (n_ctx - len(row)))
            row = []
        row = row + toks
    if row:
        rows.append(row + [pad] * (n_ctx - len(row)))
    return torch.tensor(rows, dtype=torch.long)


def _lr_at(step: int, cfg: WorldTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def train_world(out: str | os.PathLike, cfg: WorldTrainConfig = WorldTrainConfig(), *, progress: bool = True) -> Path:
    """Generate the corpus, build the tokenizer, train, and save a Hugging Face checkpoint to ``out``.

    Returns:
        The checkpoint directory (``config.json``, ``model.safetensors``, tokenizer files,
        ``training.json`` with the config and loss curve).
    """
    import json

    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(out)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    # ~1.25 documents per row on average; draw enough for every step, plus a margin
    docs = list(documents(int(cfg.steps * cfg.batch_size * 1.6), seed=cfg.seed))
    tok = build_tokenizer(_vocab_texts(docs))
    ids = tok(docs, add_special_tokens=True)["input_ids"]
    data = _pack(ids, cfg.n_ctx, tok.pad_token_id)
    n_rows_needed = cfg.steps * cfg.batch_size
    if len(data) < n_rows_needed:
        data = data.repeat(math.ceil(n_rows_needed / len(data)), 1)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data), generator=gen)[:n_rows_needed]

    hf_cfg = GPT2Config(vocab_size=len(tok), n_positions=cfg.n_ctx, n_embd=cfg.d_model, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = GPT2LMHeadModel(hf_cfg)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    model.train()
    losses = []
    bar = tqdm(range(cfg.steps), desc="world train", unit="step", disable=not progress)
    for step in bar:
        batch = data[order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
        labels = batch.masked_fill(batch == tok.pad_token_id, -100)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        loss = model(batch, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}",
                            tok_s=f"{(step + 1) * cfg.batch_size * cfg.n_ctx / (time.perf_counter() - t0):.0f}")
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "generation_config.json").unlink(missing_ok=True)
    (out / "training.json").write_text(json.dumps({
        "config": asdict(cfg), "n_documents": len(docs), "n_rows": len(data), "vocab_size": len(tok),
        "n_params": sum(p.numel() for p in model.parameters()),
        "loss_every_50_steps": [round(sum(losses[i:i + 50]) / len(losses[i:i + 50]), 4) for i in range(0, len(losses), 50)],
        "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__, "threads": torch.get_num_threads(),
    }, indent=1), encoding="utf-8")
    return out
