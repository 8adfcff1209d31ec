"""SAE speed: TopK training throughput and matching-pursuit encode cost against TopK at equal L0.

    OMP_NUM_THREADS=1 python benchmarks/bench_sae.py [--d-in 128] [--d-sae 2048] [--batch 1024] [--rounds 3] [--device cpu]

Training throughput runs ``replab.saes.train`` on an in-memory ``[n, d_in]`` tensor (the SAE
step alone: no model forward, no store reads). Encode cost at equal L0: one batch through
``encode``, MP with ``s`` pursuit steps (``max_iterations = s``, early stop on a repeated atom)
against TopK with ``k`` = the L0 MP reached, both trained briefly (20 steps) on the same planted
data; the measured L0 is printed next to each time. Medians over ``--rounds``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from replab.saes import create, synthetic, train


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def training_throughput(d_in: int, d_sae: int, k: int, batch: int, steps: int, rounds: int, device: str) -> list[float]:
    x = torch.randn(batch * steps, d_in)
    rates = []
    for r in range(rounds + 1):  # round 0 warms up allocators and kernels
        sae = create("topk", d_in, d_sae, k=k, seed=r)
        result = train(sae, x, batch_size=batch, steps=steps, device=device, progress=False, b_dec_init="mean")
        if r:
            rates.append(result.metrics["tokens_per_s"])
    return rates


@torch.no_grad()
def encode_times(sae, x: torch.Tensor, rounds: int, device: str) -> tuple[list[float], float]:
    sae.encode(x)  # warm-up
    times = []
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        acts = sae.encode(x)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times, float((acts > 0).sum(-1).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=128)
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encode-ks", default="8,32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    dev = args.device

    print(f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, device {dev}, "
          f"{torch.get_num_threads()} CPU threads")
    rates = training_throughput(args.d_in, args.d_sae, args.k, args.batch, args.steps, args.rounds, dev)
    print(f"\nTopK training (d_in={args.d_in}, d_sae={args.d_sae}, k={args.k}, batch={args.batch}, {args.steps} steps): "
          f"median {statistics.median(rates):,.0f} tokens/s (min {min(rates):,.0f}, max {max(rates):,.0f})")

    data = synthetic.flat(20_000, d=args.d_in, n_features=args.d_sae // 4, n_active=16, seed=0)
    x = data.x[: args.batch].to(dev)
    print(f"\nEncode one batch of {args.batch} rows (d_in={args.d_in}, d_sae={args.d_sae}), median of {args.rounds}:")
    print("| MP steps | MP ms | MP L0 | TopK k (= MP L0) | TopK ms | TopK L0 | MP / TopK |")
    print("|---|---|---|---|---|---|---|")
    for steps in (int(v) for v in args.encode_ks.split(",")):
        mp_ms, mp_l0 = _trained_encode("matching_pursuit", steps, data, x, args, dev)
        k = max(1, round(mp_l0))  # TopK at the L0 MP actually reached (MP stops early on repeats)
        topk_ms, topk_l0 = _trained_encode("topk", k, data, x, args, dev)
        print(f"| {steps} | {mp_ms:.1f} | {mp_l0:.1f} | {k} | {topk_ms:.1f} | {topk_l0:.1f} | {mp_ms / topk_ms:.1f}x |")


def _trained_encode(arch: str, k: int, data, x: torch.Tensor, args, dev: str) -> tuple[float, float]:
    """Median encode ms and L0 of an SAE trained 20 steps on ``data`` (so its L0 is realistic)."""
    sae = create(arch, args.d_in, args.d_sae, k=k)
    train(sae, data.x, batch_size=1024, steps=20, lr=3e-3, device=dev, progress=False, b_dec_init="mean")
    times, l0 = encode_times(sae.to(dev), x, args.rounds, dev)
    return 1e3 * statistics.median(times), l0

if __name__ == "__main__":
    main()
