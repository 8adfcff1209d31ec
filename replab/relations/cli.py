"""``replab relations fit|sweep``: fit one relation's LRE (or sweep layer, β and rank) into a ``relation`` run."""

from __future__ import annotations

import argparse
import dataclasses

from replab.configs import add_config_flags, config_from_args
from replab.relations.config import RelationConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("relations", help="linear relational embeddings (LRE) and concepts (LRC)")
    s = p.add_subparsers(dest="relations_command", required=True)
    for name, help_ in (("fit", "fit one LRE and score faithfulness and causality"),
                        ("sweep", "sweep subject layer, beta and rank; keep the best layer's LRE")):
        q = s.add_parser(name, help=help_)
        q.add_argument("--model", default="world", help="world, a Hugging Face name or a local checkpoint")
        q.add_argument("--relation", required=True, help="a world relation (capital, ...) or an LRE-format JSON file")
        add_config_flags(q, RelationConfig)
        q.add_argument("--out", required=True, help="run directory")
        q.set_defaults(func=run_cli, sweep=name == "sweep")


def run_cli(args: argparse.Namespace) -> None:
    from pathlib import Path

    from replab.relations.data import load, world

    settings = dataclasses.asdict(config_from_args(RelationConfig, args))  # validated before the model loads
    rel = load(args.relation) if Path(args.relation).suffix == ".json" else world(args.relation)  # likewise

    from replab.models import load_model
    from replab.relations.pipeline import relation_run

    model = load_model(args.model)
    run = relation_run(model, rel, args.out, sweep_layers=range(model.cfg.n_layers + 1) if args.sweep else None,
                       config={k: v for k, v in vars(args).items() if k != "func"}, **settings)
    m = {k: "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else v for k, v in run.info["metrics"].items()}
    print(f"{rel.name}: layer {m['subject_layer']}, beta {m['beta']}, rank {m['rank']}: faithfulness "
          f"{m['faithfulness']} ({m['n_correct']}/{m['n_test']} answered), causality {m['causality']} -> {args.out}")
