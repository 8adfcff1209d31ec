"""TopK SAE training-step throughput: ``replab.saes.train`` against SAELens's ``SAETrainer``.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/bench_sae_saelens.py \
        [--data world|synthetic] [--d-in 256] [--d-sae 2048] [--k 32] [--batch 1024] [--steps 30] [--rounds 4] \
        [--saelens-python /tmp/saelens-venv/bin/python]

Both sides train a fresh TopK SAE on the same in-memory activations, written once to a
safetensors file in a temporary directory: ``--data world`` (default) captures the shipped
world model's ``blocks.1.hook_resid_post`` (d_in 256) over its training corpus with
``replab.capture``; ``--data synthetic`` draws Gaussian rows with a rank-64 structure plus
noise at ``--d-in``. Same settings on both sides: float32, CPU, one torch thread, Adam lr 2e-4 constant (replab's warm-up and
decay switched off), betas (0.9, 0.999), gradient clipping at 1.0, no input normalisation,
``--steps`` steps of ``--batch`` rows. replab runs ``replab.saes.train`` in this process;
SAELens runs ``benchmarks/_saelens_topk_step.py`` in its own virtual environment (it pins
transformer-lens 3), a worker that calls ``SAETrainer.step`` per batch. No model, no store.

SAELens runs twice per round: with its default ``rescale_acts_by_decoder_norm=True`` (what
its TopK training uses unless told otherwise) and with it off (closest to replab's unit-norm
decoder, which replab keeps by projecting the decoder gradient and renormalising after Adam).
Rounds alternate replab, SAELens, SAELens rescale-off, replab, ...; round 0 of each is a
discarded warm-up. A round's time covers building the trainer (replab: ``train``'s setup;
SAELens: ``SAETrainer``) and every step; "steps only" excludes that setup. CPU time
(``time.process_time``) is reported next to wall time because the machine is shared. Medians
over ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from replab.saes import create, train

WORKER = Path(__file__).resolve().parent / "_saelens_topk_step.py"
LABELS = {"replab": "replab", "saelens": "SAELens", "saelens_norescale": "SAELens rescale-off"}


def activations(n: int, d_in: int, rank: int = 64, seed: int = 0) -> torch.Tensor:
    """``[n, d_in]`` rows: a rank-``rank`` Gaussian signal plus isotropic noise at 0.1."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, d_in, generator=g) / rank**0.5
    return torch.randn(n, rank, generator=g) @ basis + 0.1 * torch.randn(n, d_in, generator=g)


def replab_round(x: torch.Tensor, args: argparse.Namespace, seed: int) -> dict[str, float]:
    sae = create("topk", x.shape[1], args.d_sae, k=args.k, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(sae, x, batch_size=args.batch, steps=args.steps, lr=args.lr, progress=False, normalize=False,
                   b_dec_init="zero", init_rows=args.batch, warmup_steps=0, decay_fraction=0.0, grad_clip=1.0,
                   seed=seed, log_every=args.steps)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"tokens": args.steps * args.batch, "wall_s": wall, "cpu_s": cpu,
            "loop_wall_s": result.metrics["train_seconds"], "final_mse": result.history[-1]["mse"]}


def world_activations(n: int, tmp: Path) -> torch.Tensor:
    """``[n, 256]`` residual-stream rows of the world model (layer 1) over its training corpus."""
    import replab

    model = replab.load_model("world")
    store = replab.capture(model, "world:corpus", "blocks.1.hook_resid_post", out=tmp / "world-acts",
                           max_tokens=n, context=64, batch_size=64)
    x = torch.as_tensor(store["blocks.1.hook_resid_post"][:n]).float()
    if x.shape[0] < n:
        raise SystemExit(f"The world corpus gave {x.shape[0]} rows, fewer than steps x batch = {n}: lower "
                         "--steps or --batch, or use --data synthetic.")
    return x


def _rates(rounds: list[dict[str, float]], key: str) -> list[float]:
    return [r["tokens"] / r[key] for r in rounds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("world", "synthetic"), default="world")
    parser.add_argument("--d-in", type=int, default=256, help="synthetic data only (the world model's is 256)")
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--saelens-python", default="/tmp/saelens-venv/bin/python")
    args = parser.parse_args()
    if not Path(args.saelens_python).is_file():
        raise SystemExit(f"No SAELens interpreter at {args.saelens_python}. Make one (sae-lens pins transformer-lens<4):\n"
                         "  python -m venv /tmp/saelens-venv\n  /tmp/saelens-venv/bin/pip install torch==2.13.0\n"
                         "  /tmp/saelens-venv/bin/pip install sae-lens\nor pass --saelens-python.")
    torch.set_num_threads(1)

    sides = ("replab", "saelens", "saelens_norescale")
    results: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        n = args.steps * args.batch
        x = world_activations(n, Path(tmp)) if args.data == "world" else activations(n, args.d_in)
        path = Path(tmp) / "acts.safetensors"
        save_file({"x": x.contiguous()}, str(path))
        workers = {side: _worker(args, path, rescale) for side, rescale in (("saelens", "on"),
                                                                           ("saelens_norescale", "off"))}
        header = json.loads(workers["saelens"].stdout.readline())
        json.loads(workers["saelens_norescale"].stdout.readline())
        for r in range(args.rounds + 1):  # round 0 warms up every process
            got = {"replab": replab_round(x, args, r)}
            for side, worker in workers.items():
                worker.stdin.write(f"{r}\n")
                worker.stdin.flush()
                got[side] = json.loads(worker.stdout.readline())
            if r:
                for side in sides:
                    results[side].append(got[side])
            print(f"round {r}{' (warm-up)' if not r else ''}: " + ", ".join(
                f"{LABELS[side]} {got[side]['tokens'] / got[side]['wall_s']:,.0f} tok/s "
                f"(cpu {got[side]['tokens'] / got[side]['cpu_s']:,.0f}, last-batch MSE {got[side]['final_mse']:.3g})"
                for side in sides), flush=True)
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()

    import replab

    print(f"\nmachine: {platform.machine()} {platform.processor() or ''} ({os.cpu_count()} cores), "
          f"python {platform.python_version()}, torch {torch.__version__} (replab) / {header['torch']} (SAELens), "
          f"replab {getattr(replab, '__version__', '?')}, sae_lens {header['sae_lens']}, threads "
          f"{torch.get_num_threads()} / {header['threads']}")
    print(f"TopK on {args.data} activations, d_in={x.shape[1]} d_sae={args.d_sae} k={args.k} batch={args.batch} steps={args.steps} lr={args.lr}, "
          f"median of {args.rounds} interleaved rounds (tokens/s):\n")
    print("| measure | replab | SAELens (default) | replab / SAELens | SAELens (rescale off) | replab / it |")
    print("|---|---|---|---|---|---|")
    for key, label in (("wall_s", "wall, setup + steps"), ("loop_wall_s", "wall, steps only"),
                       ("cpu_s", "CPU time, setup + steps")):
        a, b, c = (statistics.median(_rates(results[side], key)) for side in sides)
        print(f"| {label} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x | {c:,.0f} | {a / c:.2f}x |")


def _worker(args: argparse.Namespace, path: Path, rescale: str) -> subprocess.Popen:
    """A SAELens worker process in its own virtual environment, one torch thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [args.saelens_python, str(WORKER), str(path), "--d-sae", str(args.d_sae), "--k", str(args.k),
           "--batch", str(args.batch), "--steps", str(args.steps), "--lr", str(args.lr), "--rescale", rescale]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

if __name__ == "__main__":
    main()
