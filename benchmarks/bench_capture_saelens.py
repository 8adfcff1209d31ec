"""The peer of bench_capture.py: SAELens's ``CacheActivationsRunner`` on the same model and corpus.

SAELens pins transformer-lens 3, replab needs 4, so this runs from its own virtual environment
and imports from replab only the checkpoint builder and the corpus generator::

    python -m venv /tmp/saelens-venv
    /tmp/saelens-venv/bin/pip install torch==2.13.0 && /tmp/saelens-venv/bin/pip install sae-lens
    /tmp/saelens-venv/bin/python benchmarks/bench_capture_saelens.py [--tokens 16384] [--rounds 3]

The runner loads the Hugging Face checkpoint as ``AutoModelForCausalLM`` (wrapped in SAELens's
``HookedProxyLM``), reads the untokenised corpus as a ``datasets.Dataset``, and caches the last
block's output (``transformer.h.3``, which is ``blocks.3.hook_resid_post``): one hook per run,
as the runner supports. Its in-RAM buffer is set to 4,096 tokens (the default, 2 GB, caches
about 2M tokens whatever ``training_tokens`` says). The model is loaded once, outside the
timing, as in bench_capture.py. The ceiling is a bare forward of the same Hugging Face model,
interleaved round by round; peak RSS is measured in a fresh process.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_capture import BATCH, CONTEXT, _docs  # noqa: E402

HOOK, D = "transformer.h.3", 256
BUFFER_TOKENS = 4096  # SAELens holds one buffer of activations in RAM before writing it as a shard


@functools.cache
def _proxy(ckpt: str):
    """The checkpoint as SAELens loads it (``HookedProxyLM`` over ``AutoModelForCausalLM``), once."""
    from sae_lens.load_model import load_model

    return load_model("AutoModelForCausalLM", ckpt, device="cpu")


def _bare(ckpt: str, docs: list[str], tokens: int, out: Path) -> None:
    import torch

    proxy = _proxy(ckpt)
    stream = [t for d in docs for t in proxy.tokenizer(d)["input_ids"]][: tokens]
    ids = torch.tensor(stream).reshape(-1, CONTEXT)
    with torch.inference_mode():
        for lo in range(0, len(ids), BATCH):
            proxy.model(ids[lo: lo + BATCH])


def _saelens(ckpt: str, docs: list[str], tokens: int, out: Path) -> None:
    from datasets import Dataset
    from sae_lens import CacheActivationsRunner, CacheActivationsRunnerConfig, cache_activations_runner

    cfg = CacheActivationsRunnerConfig(
        dataset_path="synthetic", model_name=ckpt, model_class_name="AutoModelForCausalLM", hook_name=HOOK, d_in=D,
        training_tokens=tokens, context_size=CONTEXT, model_batch_size=BATCH, new_cached_activations_path=str(out),
        shuffle=False, device="cpu", dtype="float32", prepend_bos=True, buffer_size_gb=BUFFER_TOKENS * D * 4 / 1e9,
    )
    cache_activations_runner.load_model = lambda **kw: _proxy(ckpt)  # the model is loaded once, outside the timing
    CacheActivationsRunner(cfg, override_dataset=Dataset.from_dict({"text": docs})).run()


METHODS = {"hf_bare": _bare, "saelens": _saelens}


def _timed(method: str, ckpt: str, docs: list[str], tokens: int, out: Path) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    METHODS[method](ckpt, docs, tokens, out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    shutil.rmtree(out, ignore_errors=True)
    return tokens / wall, tokens / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rss", choices=sorted(METHODS))
    ap.add_argument("--ckpt")
    args = ap.parse_args()
    docs = _docs(max(200, args.tokens // 40))
    if args.rss:
        with tempfile.TemporaryDirectory() as tmp:
            _timed(args.rss, args.ckpt, docs, args.tokens, Path(tmp) / "out")
        print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return

    from importlib.metadata import version

    from replab.world.tokenizer import save_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = save_tiny_checkpoint(tmp / "ckpt", _docs(3000), n_layer=4, d_model=256, n_head=4, n_ctx=CONTEXT)
        for m in METHODS:
            _timed(m, ckpt, docs, BATCH * CONTEXT * 4, tmp / "warmup")
        runs = {m: [] for m in METHODS}
        for r in range(args.rounds):
            for m in METHODS:
                runs[m].append(_timed(m, ckpt, docs, args.tokens, tmp / f"{m}{r}"))
        rss = {m: json.loads(subprocess.run([sys.executable, __file__, "--rss", m, "--ckpt", ckpt, "--tokens", str(n)],
                                            capture_output=True, text=True, check=True).stdout.splitlines()[-1])
               for m, n in [("hf_bare", args.tokens), ("saelens", args.tokens)]}
        big = json.loads(subprocess.run([sys.executable, __file__, "--rss", "saelens", "--ckpt", ckpt, "--tokens",
                                         str(10 * args.tokens)], capture_output=True, text=True,
                                        check=True).stdout.splitlines()[-1])
    print(f"sae-lens {version('sae-lens')}, transformer-lens {version('transformer-lens')}, torch {version('torch')}, "
          f"datasets {version('datasets')}; {os.environ.get('OMP_NUM_THREADS', 'default')} threads; "
          f"{args.rounds} interleaved rounds of {args.tokens:,} tokens")
    print("| method | tokens/s, wall (median) | tokens/s, CPU time (median) | peak RSS (MB) |")
    print("|---|---:|---:|---:|")
    for m in METHODS:
        w = statistics.median(r[0] for r in runs[m])
        c = statistics.median(r[1] for r in runs[m])
        print(f"| {m} | {w:,.0f} | {c:,.0f} | {rss[m]['peak_rss_mb']:,.0f} |")
    ratio = [(s[0] / b[0], s[1] / b[1]) for s, b in zip(runs["saelens"], runs["hf_bare"])]
    print(f"saelens / hf_bare, median of per-round ratios: wall {statistics.median(r[0] for r in ratio):.2f}x, "
          f"CPU time {statistics.median(r[1] for r in ratio):.2f}x; saelens peak RSS at {10 * args.tokens:,} tokens: "
          f"{big['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
