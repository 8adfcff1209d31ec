"""Planted-feature recovery of standard, TopK and matching-pursuit SAEs at matched L0.

Two synthetic data sets (replab.saes.synthetic): ``flat`` (random unit directions, a few active
per sample) and ``hierarchical`` (parents with mutually exclusive children, MP-SAE paper).
For each SAE: mean max cosine similarity (MMCS) between true features and decoder rows, and
FVU / L0 on held-out samples. TopK and MP use k = round(true L0); the standard SAE's L1
coefficient is picked from a small sweep as the one whose L0 is closest to k.

    OMP_NUM_THREADS=1 python benchmarks/sae_synthetic.py [--steps 1500] [--seeds 1] [--json out.json]

Prints a markdown table (pasted into docs/saes.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from replab.saes import create, evaluate, synthetic, train

L1_SWEEP = (0.1, 0.3, 1.0, 3.0, 10.0)


N_TRAIN, N_HELDOUT = 50_000, 10_000


def _split(data: synthetic.Planted) -> tuple[synthetic.Planted, synthetic.Planted]:
    """First N_TRAIN samples for training, the rest held out (same true features)."""
    part = lambda sl: synthetic.Planted(data.x[sl], data.features, data.codes[sl], data.parents)  # noqa: E731
    return part(slice(0, N_TRAIN)), part(slice(N_TRAIN, None))


def datasets(seed: int) -> dict[str, tuple[synthetic.Planted, synthetic.Planted]]:
    """name -> (train, held-out) samples."""
    n = N_TRAIN + N_HELDOUT
    return {
        "flat (d=64, 128 features)": _split(synthetic.flat(n, d=64, n_features=128, n_active=4, seed=seed)),
        "hierarchical (d=64, 8x4 tree)": _split(
            synthetic.hierarchical(n, d=64, n_parents=8, n_children=4, p_parent=0.3, seed=seed)),
    }


def fit(arch: str, data: synthetic.Planted, d_sae: int, steps: int, seed: int, **config):
    sae = create(arch, data.x.shape[1], d_sae, seed=seed, **config)
    train(sae, data.x, batch_size=512, steps=steps, lr=5e-3, seed=seed, progress=False)
    return sae


def score(sae, truth: synthetic.Planted, heldout: synthetic.Planted) -> dict[str, float]:
    m = evaluate(sae, heldout.x)
    out = {"mmcs": synthetic.mean_max_cosine(truth.features, sae.W_dec), "fvu": m["fvu"], "l0": m["l0"],
           "dead": m["dead_fraction"]}
    if (truth.parents >= 0).any():
        is_parent = truth.parents < 0
        out["mmcs_parents"] = synthetic.mean_max_cosine(truth.features[is_parent], sae.W_dec)
        out["mmcs_children"] = synthetic.mean_max_cosine(truth.features[~is_parent], sae.W_dec)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()

    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        for name, (data, heldout) in datasets(seed).items():
            k = max(1, round(data.l0))
            d_sae = data.features.shape[0]
            row = results.setdefault(name, {})
            row.setdefault(f"TopK (k={k})", []).append(score(fit("topk", data, d_sae, args.steps, seed, k=k), data, heldout))
            row.setdefault(f"MP-SAE (k={k})", []).append(
                score(fit("matching_pursuit", data, d_sae, args.steps, seed, k=k), data, heldout))
            sweep = [score(fit("standard", data, d_sae, args.steps, seed, l1_coefficient=c), data, heldout) | {"l1": c}
                     for c in L1_SWEEP]
            best = min(sweep, key=lambda s: abs(s["l0"] - k))
            row.setdefault("standard (L1 swept)", []).append(best)
            results[name]["true L0"] = [{"l0": data.l0}]
    elapsed = time.perf_counter() - t0

    print("| data | SAE | MMCS | MMCS parents | MMCS children | FVU (held-out) | L0 | dead |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        print(f"| {name} | true features | | | | | {rows['true L0'][0]['l0']:.2f} | |")
        for sae_name, runs in rows.items():
            if sae_name == "true L0":
                continue
            mean = {k: statistics.mean(r[k] for r in runs) for k in runs[0]}
            label = sae_name + (f", l1={runs[0]['l1']}" if "l1" in runs[0] else "")
            cell = lambda k: f"{mean[k]:.3f}" if k in mean else "-"  # noqa: E731
            print(f"| {name} | {label} | {cell('mmcs')} | {cell('mmcs_parents')} | {cell('mmcs_children')} | "
                  f"{cell('fvu')} | {mean['l0']:.2f} | {cell('dead')} |")
    print(f"\n{args.steps} steps x 512 rows, lr 5e-3, {args.seeds} seed(s), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {elapsed:.0f} s total")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
