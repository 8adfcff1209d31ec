"""SAEs on the world model's residual stream: every architecture on the same activations.

Trains one SAE of each architecture (ReLU/L1, TopK, BatchTopK, JumpReLU, matching pursuit) on a
middle-layer ``resid_post`` of a world-corpus capture -- the demo's SAE stages, so the runs are
shared with ``replab demo`` -- and tabulates FVU, L0, dead/dense fractions and CE recovered
into the "World model results" section of docs/saes.md.

    python studies/sae_world.py --runs runs/demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from replab.demo import DemoConfig, build_demo_runs
from replab.markdown import markdown_table, update_marked_section
from replab.runs import Run

COLUMNS = ("fvu", "mse", "l0", "dead_fraction", "dense_fraction", "ce_clean", "ce_with_sae", "ce_zero_ablation",
           "ce_recovered", "kl_with_sae")


def sae_table(root: Path, architectures) -> pd.DataFrame:
    """One row per architecture with its evaluation metrics (read from the runs)."""
    rows = []
    for arch in architectures:
        run = Run.open(root / f"sae-{arch}")
        rows.append({"architecture": arch, **{c: run.info["metrics"].get(c) for c in COLUMNS},
                     "train_tokens_per_s": run.info["metrics"].get("tokens_per_s")})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=DemoConfig.runs)
    p.add_argument("--docs", default="docs/saes.md", help="markdown file whose sae_world section is replaced")
    args = p.parse_args(argv)
    cfg = DemoConfig(runs=args.runs)
    root = build_demo_runs(cfg)
    table = sae_table(root, cfg.architectures)
    store = Run.open(root / "acts-corpus")
    text = (f"World model, `{store.info['config']['hooks']}` over {store.info['metrics'].get('rows')} corpus "
            f"tokens; d_sae {cfg.d_sae}, k {cfg.k} (TopK, BatchTopK, MP), {cfg.sae_steps} steps of "
            f"{cfg.sae_batch_size} rows. Reproduce: `python studies/sae_world.py --runs {args.runs}`.\n\n"
            + markdown_table(table))
    update_marked_section(args.docs, "sae_world", text)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
