"""``replab world train|eval``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("world", help="train or evaluate the world model")
    wsub = p.add_subparsers(dest="world_command", required=True)
    t = wsub.add_parser("train", help="train the world model from scratch (about 18 minutes on 2 CPU cores)")
    t.add_argument("--out", default="runs/world-train", help="run directory; the checkpoint goes to OUT/checkpoint")
    from replab.configs import add_config_flags
    from replab.world.train import WorldTrainConfig

    add_config_flags(t, WorldTrainConfig)
    t.set_defaults(func=_train)
    e = wsub.add_parser("eval", help="measure per-relation accuracy and write the world card")
    e.add_argument("--model", default="world", help="'world' or a checkpoint directory")
    e.add_argument("--out", default="runs/world-eval", help="run directory for the card")
    e.add_argument("--write-card", action="store_true", help="also overwrite the card shipped in the package")
    e.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> None:
    from replab.configs import config_from_args
    from replab.runs import Run
    from replab.world.train import WorldTrainConfig, train_world

    cfg = config_from_args(WorldTrainConfig, args)
    run = Run.create(args.out, "world-train", vars(cfg))
    with run.timer("train"):
        ckpt = train_world(Path(args.out) / "checkpoint", cfg)
    info = json.loads((ckpt / "training.json").read_text(encoding="utf-8"))
    run.finish({"final_loss": info["loss_every_50_steps"][-1], "n_params": info["n_params"]})
    print(f"checkpoint: {ckpt}\nevaluate it with: replab world eval --model {ckpt}")


def _eval(args: argparse.Namespace) -> None:
    import replab
    from replab.world.evaluate import CARD_DIR, card_markdown, write_card
    from replab.world.runkind import run_world_eval

    model = replab.load_model(args.model)
    run = run_world_eval(model, args.out)
    card = run.read_json("world_card.json")
    if args.write_card:
        write_card(card, CARD_DIR)
    print(card_markdown(card))
    print(f"card written to {run.path}" + (f" and {CARD_DIR}" if args.write_card else ""))
