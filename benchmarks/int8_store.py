"""int8 vs float32 activation store on the world model: bytes, capture time, quantisation error, probe accuracy.

Captures the world model's sentiment prompts (1,000 rows at the last position, four ``resid_post`` hooks)
into a float32 and an int8 store, in interleaved rounds, and prints a markdown table for docs/kernels.md:

    PYTHONPATH=$PWD python benchmarks/int8_store.py [--rounds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import replab
    from replab.datasets import load
    from replab.probes import LogisticProbe

    model = replab.load_model("world", device=args.device)
    prompts = load("world:sentiment")
    times: dict[str, list[float]] = {"float32": [], "int8": []}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for r in range(args.rounds):
            for dtype in times:
                t0 = time.perf_counter()
                stores[dtype] = replab.capture(model, prompts, "blocks.*.hook_resid_post", positions="last",
                                               out=Path(tmp) / f"{dtype}{r}", dtype=dtype, batch_size=100)
                times[dtype].append(time.perf_counter() - t0)
        ref, q = stores["float32"], stores["int8"]
        size = {k: sum(p.stat().st_size for p in (s.path / "shards").rglob("*.bin")) for k, s in stores.items()}
        y = ref.metadata["label"].to_numpy()
        print(f"world model, {len(ref)} rows x {len(ref.hooks)} hooks (d 256), device {args.device} "
              f"({platform.machine()}), torch {torch.__version__}; capture medians of {args.rounds} interleaved rounds: "
              f"float32 {statistics.median(times['float32']):.2f} s, int8 {statistics.median(times['int8']):.2f} s; "
              f"shard bytes float32 {size['float32']:,}, int8 {size['int8']:,} "
              f"({size['float32'] / size['int8']:.2f}x smaller, metadata included)\n")
        print("| hook | max err / bound (max\\|x_row\\|/254) | mean \\|err\\| / max\\|x_row\\| | relative L2 error "
              "| logistic probe accuracy (train) float32 / int8 |")
        print("|---|---:|---:|---:|---:|")
        for hook in ref.hooks:
            x, xq = np.asarray(ref[hook], dtype=np.float64), np.asarray(q[hook], dtype=np.float64)
            amax = np.abs(x).max(1, keepdims=True)
            err = np.abs(x - xq)
            rel = np.linalg.norm(x - xq) / np.linalg.norm(x)
            acc = [LogisticProbe().fit_store(s, hook).score(np.asarray(s[hook]), y) for s in (ref, q)]
            print(f"| {hook} | {(err / (amax / 254)).max():.5f} | {(err / amax).mean():.2e} | {rel:.2e} "
                  f"| {acc[0]:.3f} / {acc[1]:.3f} |")


if __name__ == "__main__":
    main()
