"""Capture-to-disk throughput and peak memory: replab.capture vs a bare forward vs run_with_cache + save.

Usage::

    python benchmarks/bench_capture.py [--tokens 16384] [--rounds 5] [--rss-tokens 2048] [--threads 1] [--hooks GLOB]
        [--device cuda] [--layers 12 --d-model 768 --heads 12]

Builds an untrained GPT-2-shaped model (default 4 layers, d_model 256, 4 heads, n_ctx 128,
word-level vocabulary of ~2k; on a GPU use GPT-2-small's 12 x 768 x 12) and a synthetic corpus packed into 128-token contexts (batches of 16), and
compares:

- ``bare``: ``model(tokens)`` per batch, no hooks: the ceiling.
- ``rwc_save``: ``run_with_cache(names_filter=hooks)``, flatten to ``[tokens, d]`` and
  ``safetensors.torch.save_file`` each batch: the loop users write by hand.
- ``capture``: ``replab.capture`` (positions ``all``, float32) into a sharded, checksummed store.

Both store ``--hooks`` (default every ``blocks.*.hook_resid_post``).

Throughput: ``--rounds`` rounds of the three methods interleaved in one process after a
warm-up (medians, and the median per-round capture/bare ratio), in tokens per wall-clock second
and per CPU second of the process (robust to other load on a shared machine). Peak RSS: each
method once in a fresh process over ``--rss-tokens``; ``capture`` and ``bare`` also at 10x the
tokens, to show that capture's memory does not grow with the source size any more than the
forward's own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTEXT, BATCH = 128, 16


def _docs(n_docs: int, seed: int = 0) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(2000)]
    return [" ".join(rng.choice(words, size=int(rng.integers(20, 200)))) + "." for _ in range(n_docs)]


def _contexts(model, corpus, tokens: int):
    from replab.models.sources import CorpusSource

    return [b.tokens.tokens for b in CorpusSource(corpus, CONTEXT, tokens).batches(model, 0, BATCH)]


def _device(model):
    return next(model.parameters()).device


def _bare(model, corpus, tokens: int, out: Path, hooks: str) -> None:
    import torch

    with torch.inference_mode():
        for batch in _contexts(model, corpus, tokens):
            model(batch.to(_device(model)))


def _rwc_save(model, corpus, tokens: int, out: Path, hooks: str) -> None:
    import torch
    from safetensors.torch import save_file

    import replab

    out.mkdir(parents=True, exist_ok=True)
    names = replab.hook_names(model, hooks)
    with torch.inference_mode():
        for i, batch in enumerate(_contexts(model, corpus, tokens)):
            _, cache = model.run_with_cache(batch.to(_device(model)), names_filter=names)
            save_file({n: cache[n].reshape(-1, cache[n].shape[-1]).cpu().contiguous() for n in names},
                      out / f"{i:05d}.safetensors")


def _capture(model, corpus, tokens: int, out: Path, hooks: str) -> None:
    import replab

    replab.capture(model, corpus, hooks, out=out, max_tokens=tokens, context=CONTEXT, batch_size=BATCH, resume=False)


METHODS = {"bare": _bare, "rwc_save": _rwc_save, "capture": _capture}


def _setup(ckpt: str, tokens: int, device: str):
    import replab
    from replab.datasets import TextCorpus

    return replab.load_model(ckpt, device=device), TextCorpus(tuple(_docs(max(200, tokens // 40))), name="synthetic")


def _timed(method: str, model, corpus, tokens: int, out: Path, hooks: str) -> tuple[float, float]:
    """Tokens per wall-clock second and per CPU second of this process (the second is barely
    affected by other processes competing for the cores, but does not count I/O waits)."""
    import torch

    t0, c0 = time.perf_counter(), time.process_time()
    METHODS[method](model, corpus, tokens, out, hooks)
    if _device(model).type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    shutil.rmtree(out, ignore_errors=True)
    return tokens / wall, tokens / cpu


def throughput(ckpt: str, tokens: int, rounds: int, workdir: Path, hooks: str, device: str) -> dict:
    """Rounds of (bare, rwc_save, capture) interleaved in one process, so that load from other
    processes on the machine hits every method alike; medians per method and of capture/bare."""
    model, corpus = _setup(ckpt, tokens, device)
    for m in METHODS:
        _timed(m, model, corpus, BATCH * CONTEXT, workdir / "warmup", hooks)
    runs = {m: [] for m in METHODS}
    for r in range(rounds):
        for m in METHODS:
            runs[m].append(_timed(m, model, corpus, tokens, workdir / f"{m}{r}", hooks))
    out = {}
    for clock, k in (("wall", 0), ("cpu", 1)):
        out[clock] = {m: statistics.median(v[k] for v in runs[m]) for m in METHODS}
        out[clock]["capture_over_bare"] = statistics.median(c[k] / b[k] for c, b in zip(runs["capture"], runs["bare"]))
    return {**out, "runs": runs}


def peak_rss(method: str, ckpt: str, tokens: int, workdir: Path, hooks: str, device: str) -> dict:
    """One run of ``method`` in this (fresh) process: the process's peak RSS."""
    model, corpus = _setup(ckpt, tokens, device)
    _timed(method, model, corpus, tokens, workdir / method, hooks)
    return {"method": method, "tokens": tokens, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(threads: int, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rss-tokens", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worker", choices=["throughput", *METHODS])
    ap.add_argument("--hooks", default="blocks.*.hook_resid_post", help="glob of the hooks rwc_save and capture store")
    ap.add_argument("--ckpt")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--device", default="cpu", help="where the model runs (cuda: pinned, overlapped copies)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    args = ap.parse_args()
    if args.worker == "throughput":
        print(json.dumps(throughput(args.ckpt, args.tokens, args.rounds, args.workdir, args.hooks, args.device)))
        return
    if args.worker:
        print(json.dumps(peak_rss(args.worker, args.ckpt, args.tokens, args.workdir, args.hooks, args.device)))
        return

    from importlib.metadata import version

    from replab.world.tokenizer import save_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = save_tiny_checkpoint(tmp / "ckpt", _docs(3000), n_layer=args.layers, d_model=args.d_model,
                                    n_head=args.heads, n_ctx=CONTEXT)
        common = ["--ckpt", ckpt, "--workdir", str(tmp), "--hooks", args.hooks, "--device", args.device]
        t0 = time.perf_counter()
        speed = _child(args.threads, "--worker", "throughput", "--tokens", str(args.tokens),
                       "--rounds", str(args.rounds), *common)
        memory = [_child(args.threads, "--worker", m, "--tokens", str(n), *common)
                  for m, n in [("bare", args.rss_tokens), ("bare", 10 * args.rss_tokens),
                               ("rwc_save", args.rss_tokens),
                               ("capture", args.rss_tokens), ("capture", 10 * args.rss_tokens)]]
        wall = time.perf_counter() - t0
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} torch threads, device "
          f"{args.device}; model {args.layers} layers x d_model {args.d_model}; "
          f"torch {version('torch')}, transformer-lens {version('transformer-lens')}; hooks {args.hooks}; "
          f"{args.rounds} interleaved rounds of {args.tokens:,} tokens; wall {wall:.0f}s")
    print("| method | tokens/s, wall (median) | vs bare | tokens/s, CPU time (median) | vs bare |")
    print("|---|---:|---:|---:|---:|")
    for m in METHODS:
        w, c = speed["wall"][m], speed["cpu"][m]
        print(f"| {m} | {w:,.0f} | {w / speed['wall']['bare']:.2f}x | {c:,.0f} | {c / speed['cpu']['bare']:.2f}x |")
    print(f"capture / bare, median of per-round ratios: wall {speed['wall']['capture_over_bare']:.2f}x, "
          f"CPU time {speed['cpu']['capture_over_bare']:.2f}x")
    print("| method (fresh process, one run) | tokens | peak RSS (MB) |")
    print("|---|---:|---:|")
    for r in memory:
        print(f"| {r['method']} | {r['tokens']:,} | {r['peak_rss_mb']:,.0f} |")


if __name__ == "__main__":
    main()
