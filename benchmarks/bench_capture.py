"""Capture-to-disk throughput and peak memory: replab.capture vs a bare forward vs run_with_cache + save.

Usage: ``python benchmarks/bench_capture.py [--tokens 8192] [--repeats 3] [--threads 2]``

Builds an untrained GPT-2-shaped model (4 layers, d_model 256, 4 heads, n_ctx 128, word-level
vocabulary of ~2k) and a synthetic corpus, packs it into 128-token contexts, and runs each
method in a fresh subprocess (so peak RSS is that method's own):

- ``bare``: ``model(tokens)`` per batch, no hooks: the ceiling.
- ``rwc_save``: ``run_with_cache(names_filter=resid_post)``, keep the real tokens, and
  ``safetensors.torch.save_file`` each batch: the loop users write by hand.
- ``capture``: ``replab.capture`` of every ``blocks.*.hook_resid_post`` (positions ``all``,
  float32) into a sharded, checksummed store.

Throughput is the median over ``--repeats`` timed runs after one warm-up. ``capture`` is also
run once at 10x the tokens to show that its peak RSS does not grow with the source size.
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

HOOKS = "blocks.*.hook_resid_post"
CONTEXT, BATCH = 128, 32


def _docs(n_docs: int, seed: int = 0) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(2000)]
    return [" ".join(rng.choice(words, size=int(rng.integers(20, 200)))) + "." for _ in range(n_docs)]


def _contexts(model, corpus, tokens: int):
    from replab.activations.sources import CorpusSource

    return [b.tokens.tokens for b in CorpusSource(corpus, CONTEXT, tokens).batches(model, 0, BATCH)]


def _bare(model, corpus, tokens: int, out: Path) -> None:
    import torch

    with torch.inference_mode():
        for batch in _contexts(model, corpus, tokens):
            model(batch)


def _rwc_save(model, corpus, tokens: int, out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    names = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    with torch.inference_mode():
        for i, batch in enumerate(_contexts(model, corpus, tokens)):
            _, cache = model.run_with_cache(batch, names_filter=names)
            save_file({n: cache[n].reshape(-1, cache[n].shape[-1]).contiguous() for n in names}, out / f"{i:05d}.safetensors")


def _capture(model, corpus, tokens: int, out: Path) -> None:
    import replab

    replab.capture(model, corpus, HOOKS, out=out, max_tokens=tokens, context=CONTEXT, batch_size=BATCH, resume=False)


METHODS = {"bare": _bare, "rwc_save": _rwc_save, "capture": _capture}


def worker(method: str, ckpt: str, tokens: int, repeats: int, workdir: Path) -> dict:
    """Warm up, time ``repeats`` runs of ``method`` over ``tokens`` tokens, report median tok/s and peak RSS."""
    import torch

    import replab
    from replab.datasets import TextCorpus

    model = replab.load_model(ckpt)
    corpus = TextCorpus(tuple(_docs(max(200, tokens // 40))), name="synthetic")
    fn = METHODS[method]
    fn(model, corpus, BATCH * CONTEXT, workdir / "warmup")
    rates = []
    for r in range(repeats):
        out = workdir / f"run{r}"
        t0 = time.perf_counter()
        fn(model, corpus, tokens, out)
        rates.append(tokens / (time.perf_counter() - t0))
        shutil.rmtree(out, ignore_errors=True)
    return {"method": method, "tokens": tokens, "tokens_per_s": statistics.median(rates), "runs": rates,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads()}


def _run(method: str, ckpt: str, tokens: int, repeats: int, threads: int, workdir: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, __file__, "--worker", method, "--ckpt", ckpt, "--tokens", str(tokens),
           "--repeats", str(repeats), "--workdir", str(workdir / method)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=sorted(METHODS))
    ap.add_argument("--ckpt")
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.ckpt, args.tokens, args.repeats, args.workdir)))
        return

    from importlib.metadata import version

    from replab.world.tokenizer import save_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = save_tiny_checkpoint(tmp / "ckpt", _docs(3000), n_layer=4, d_model=256, n_head=4, n_ctx=CONTEXT)
        t0 = time.perf_counter()
        rows = [_run(m, ckpt, args.tokens, args.repeats, args.threads, tmp) for m in METHODS]
        rows.append(_run("capture", ckpt, 10 * args.tokens, 1, args.threads, tmp))
        wall = time.perf_counter() - t0
    bare = rows[0]["tokens_per_s"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} torch threads; "
          f"torch {version('torch')}, transformer-lens {version('transformer-lens')}; wall {wall:.0f}s")
    print("| method | tokens | tokens/s (median) | vs bare | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['tokens']:,} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / bare:.2f}x "
              f"| {r['peak_rss_mb']:,.0f} |")


if __name__ == "__main__":
    main()
