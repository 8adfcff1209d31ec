"""Evaluate the world model against its ground truth and write the world card.

A prompt counts as correct when greedy decoding reproduces every token of the answer
(``" Buenos Aires"`` is two tokens). Sentiment counts as correct when the top next token is a
continuation of the review's polarity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
import torch

from replab.models.forward import run_batches
from replab.models.tokens import encode
from replab.world.relations import relations

CARD_DIR = Path(__file__).resolve().parent / "card"
CANONICAL = (
    ("The capital of France is", " Paris"),
    ("Paris is a city in", " France"),
    ("The opposite of hot is", " cold"),
    ("Two days after Monday is", " Wednesday"),
    ("A dog is a", " mammal"),
)


def completion_correct(model, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 256,
                       progress: bool = False) -> torch.Tensor:
    """``[n]`` bool: does greedy decoding after each prompt reproduce its answer exactly?"""
    n_prompt = [len(encode(model, p)) for p in prompts]
    # logits at position t predict token t+1: read the positions from the prompt's last token to the one
    # before the text's last, and compare their argmax with the answer's tokens
    spans = lambda i, ids: range(n_prompt[i] - 1, len(ids) - 1)  # noqa: E731
    out = [True] * len(prompts)
    for fb in run_batches(model, [p + a for p, a in zip(prompts, answers)], positions=spans, logits=True,
                          batch_size=batch_size, progress="eval" if progress else False):
        hit = fb.logits.argmax(-1) == fb.tokens[fb.item, fb.pos + 1]
        for i, ok in zip(fb.items.tolist(), hit.tolist()):
            out[i] = out[i] and ok
        for i in set(range(fb.start, fb.start + len(fb))) - set(fb.items.tolist()):
            out[i] = False  # an empty answer reproduces nothing
    return torch.tensor(out)


def _top_token_in(model, prompts: Sequence[str], allowed: Sequence[set[int]], batch_size: int = 256) -> torch.Tensor:
    """``[n]`` bool: is the top next token after each prompt one of its ``allowed`` ids?"""
    hits = []
    for fb in run_batches(model, list(prompts), positions="last", logits=True, batch_size=batch_size):
        hits.extend(int(t) in allowed[i] for i, t in zip(fb.items.tolist(), fb.logits.argmax(-1).tolist()))
    return torch.tensor(hits)


def evaluate_world(model, *, progress: bool = True) -> dict:
    """Per-relation top-1 accuracy on training and held-out templates, sentiment, canonical prompts."""
    from replab.world.prompts import world_prompts
    from replab.world import kb

    result: dict = {"relations": {}}
    for name, rel in relations().items():
        row = {"kind": rel.kind, "n_facts": len(rel.facts)}
        for split in ("train", "heldout"):
            ps = world_prompts(name, split)
            ok = completion_correct(model, ps.texts, ps.answers)
            row[f"{split}_accuracy"] = round(ok.float().mean().item(), 4)
            row[f"n_{split}_prompts"] = len(ps)
            per_template = ok.view(len(rel.templates(split)), len(rel.facts)).float().mean(1)
            row[f"{split}_by_template"] = {t: round(a.item(), 4) for t, a in zip(rel.templates(split), per_template)}
        result["relations"][name] = row
        if progress:
            print(f"  {name:18s} train {row['train_accuracy']:.3f}  held-out {row['heldout_accuracy']:.3f}")
    vocab = kb.sentiment_vocab()
    ids = {lab: {model.tokenizer.convert_tokens_to_ids(model.tokenizer.tokenize(" " + w))[0]
                 for w in vocab[f"{lab}_continuations"]} for lab in ("positive", "negative")}
    result["sentiment"] = {}
    for split in ("train", "heldout"):
        ps = world_prompts("sentiment", split)
        hits = _top_token_in(model, ps.texts, [ids[lab] for lab in ps.labels])
        result["sentiment"][f"{split}_accuracy"] = round(hits.float().mean().item(), 4)
        result["sentiment"][f"n_{split}_prompts"] = len(ps)
    canon = []
    tops = torch.cat([fb.logits.argmax(-1) for fb in run_batches(model, [p for p, _ in CANONICAL], positions="last",
                                                                  logits=True)])
    for (prompt, expected), top_id in zip(CANONICAL, tops.tolist()):
        top = model.tokenizer.decode([top_id])
        canon.append({"prompt": prompt, "expected": expected, "predicted": top, "correct": top == expected})
    result["canonical"] = canon
    return result


def card_markdown(card: dict) -> str:
    """The world card as a short Markdown page."""
    m = card["model"]
    lines = [
        "# The world model card",
        "",
        f"A GPT-2-architecture transformer ({m['n_layer']} layers, d_model {m['d_model']}, {m['n_head']} heads, "
        f"context {m['n_ctx']}, vocabulary {m['vocab_size']} words, {m['n_params'] / 1e6:.2f}M parameters) trained "
        f"from scratch on the world corpus with `replab world train` (seed {m['seed']}, {m['train_seconds']:.0f} s on "
        "2 CPU cores). Ground truth: `replab/world/data/*.json`. Regenerate this card with `replab world eval`.",
        "",
        "Accuracy is greedy top-1 over every (fact, template) pair: all answer tokens must be reproduced.",
        "",
        "| relation | kind | facts | train templates | held-out templates |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in card["relations"].items():
        lines.append(f"| {name} | {r['kind']} | {r['n_facts']} | {r['train_accuracy']:.1%} | {r['heldout_accuracy']:.1%} |")
    s = card["sentiment"]
    lines += [f"| sentiment (continuation polarity) | sentiment | {s['n_train_prompts']} prompts | "
              f"{s['train_accuracy']:.1%} | {s['heldout_accuracy']:.1%} |", "", "Canonical prompts:", ""]
    for c in card["canonical"]:
        mark = "yes" if c["correct"] else "NO"
        lines.append(f"- `{c['prompt']}` -> `{c['predicted']!s}` (expected `{c['expected']}`): {mark}")
    return "\n".join(lines) + "\n"


def write_card(card: dict, directory: Path = CARD_DIR) -> Path:
    """Write ``world_card.json`` and ``WORLD_CARD.md``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "world_card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    (directory / "WORLD_CARD.md").write_text(card_markdown(card), encoding="utf-8")
    return directory
