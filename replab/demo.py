"""``replab demo``: the main job, from a fresh install to real results on the world model."""

from __future__ import annotations

import argparse

import torch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="evaluate the world model and show what it knows")
    p.add_argument("--runs", default="runs/demo", help="where demo runs are written")
    p.set_defaults(func=run_demo)


def show_completions(model, prompts, k: int = 5) -> None:
    """Print each prompt's top-k next tokens with probabilities."""
    for prompt in prompts:
        probs = torch.softmax(model(prompt)[0, -1].float(), -1)
        top = probs.topk(k)
        alts = "  ".join(f"{model.tokenizer.decode([int(i)])!r} {p:.2f}" for p, i in zip(top.values, top.indices))
        print(f"  {prompt!r:40s} -> {alts}")


def run_demo(args: argparse.Namespace) -> None:
    import replab
    from replab.world.cli import _eval
    from replab.world.evaluate import CANONICAL

    model = replab.load_model("world")
    print("The world model's top-5 next tokens on its canonical prompts:")
    show_completions(model, [p for p, _ in CANONICAL])
    print("\nEvaluating every relation on training and held-out templates:")
    _eval(argparse.Namespace(model="world", out=f"{args.runs}/world-eval", write_card=False))
