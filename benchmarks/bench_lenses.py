"""Tuned-lens training: replab (cached store and live) against tuned-lens 0.2.0, plus the interop cross-check.

    OMP_NUM_THREADS=1 python benchmarks/bench_lenses.py [--steps 250] [--batch-tokens 1024] [--rounds 3] \
        [--threads 1] [--tunedlens-python /work/venvs/tunedlens/bin/python] [--json out.json]

Same model (the world checkpoint, read by tuned-lens with ``AutoModelForCausalLM`` from
``replab/world/checkpoint``, which is a Hugging Face GPT-2 directory), same tokens (the world corpus's
first 1,600 documents packed by replab into 64-token contexts, 57,344 tokens; held out: documents
1,600-1,999 packed the same way), same steps, batch, optimiser (SGD Nesterov 0.9, lr 0.1, weight decay
1e-3, linear decay with no warm-up as tuned-lens does for SGD, clipping 1.0) and one torch thread per side.
The token ids go to tuned-lens in a safetensors file; it runs in its own virtualenv
(``benchmarks/_tunedlens_peer.py``). Rounds alternate replab cached, replab live, tuned-lens in
float32; tuned-lens's own bfloat16 autocast (its train loop's setting) is timed once on
``--bf16-steps`` steps, since this CPU has no native bfloat16 and it runs far slower. Times are of
the training loop alone (model loading, the capture and evaluation excluded; the capture is timed
on its own), wall clock and CPU time (``time.process_time``, steadier on a shared machine). Medians
over rounds; the ratio is against the faster tuned-lens setting. Held-out KL(final || lens) per layer is computed by both
libraries on every held-out position: replab's ``evaluate`` and tuned-lens's eval-loop formula.

Cross-check (issue 11 item 4): the lens tuned-lens trained is saved in its format, loaded with
``replab.lenses.load`` (``weights_only``) and evaluated by replab; replab's cached lens is saved with
``TunedLens.save(dir, format="tuned-lens")`` and evaluated by tuned-lens. Per layer, the two
libraries' KL of the same lens on the same tokens must agree within ``--tolerance`` (relative).
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

import replab
from replab import lenses
from replab.datasets import TextCorpus
from replab.models.sources import as_source
from replab.world import WORLD_CHECKPOINT

PEER = Path(__file__).resolve().parent / "_tunedlens_peer.py"
HOOKS = ["blocks.0.hook_resid_pre", "blocks.*.hook_resid_post"]


def packed(model, docs, context: int) -> torch.Tensor:
    """``[n, context]`` token ids: ``docs`` packed as replab packs a corpus (BOS per context)."""
    source = as_source(TextCorpus(tuple(docs), "bench"), model, context=context)
    return torch.cat([b.tokens.tokens for b in source.batches(model, 0, 256)])


def peer(args, tokens: Path, work: Path, tag: str, *, autocast: bool, steps: int, out: Path | None = None,
         eval_lens: list[Path] = (), evaluate: bool = True) -> dict:
    out_json = work / f"peer-{tag}.json"
    cmd = [args.tunedlens_python, str(PEER), "--model", str(WORLD_CHECKPOINT), "--tokens", str(tokens),
           "--steps", str(steps), "--batch-tokens", str(args.batch_tokens), "--threads", str(args.threads),
           "--json", str(out_json), *([] if autocast else ["--no-autocast"]),
           *(["--out", str(out)] if out else []), *([] if evaluate else ["--no-eval"]), *(["--eval-lens", *map(str, eval_lens)] if eval_lens else [])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"tuned-lens peer failed:\n{done.stderr[-3000:]}")
    return json.loads(out_json.read_text())


def kl_per_layer(lens, model, held: torch.Tensor) -> list[float]:
    return [float(v) for v in lenses.evaluate(lens, model, held, batch_size=16)["kl"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch-tokens", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bf16-steps", type=int, default=20, help="steps of the timing-only bf16 autocast run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--tolerance", type=float, default=1e-3, help="relative KL agreement of the cross-check")
    ap.add_argument("--tunedlens-python", default="/work/venvs/tunedlens/bin/python")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = replab.load_model("world")
    docs = replab.datasets.load("world:corpus").documents
    train_tok, held_tok = packed(model, docs[:1600], args.context), packed(model, docs[1600:2000], args.context)
    kw = dict(steps=args.steps, batch_size=args.batch_tokens, warmup=0, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokens = work / "tokens.safetensors"
        save_file({"train": train_tok.contiguous(), "held": held_tok.contiguous()}, str(tokens))
        t0 = time.perf_counter()
        store = replab.capture(model, train_tok, HOOKS, out=work / "acts")
        capture_s = time.perf_counter() - t0
        times: dict[str, list[float]] = {"replab_cached": [], "replab_live": [], "tuned_lens_fp32": []}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        peers: dict[str, dict] = {}
        for r in range(args.rounds):
            last = r == args.rounds - 1
            c0 = time.process_time()
            cached = lenses.train("tuned", model, store, **kw)
            c1 = time.process_time()
            live = lenses.train("tuned", model, train_tok, **kw)
            c2 = time.process_time()
            times["replab_cached"].append(cached.metrics["seconds"])
            times["replab_live"].append(live.metrics["seconds"])
            cpu["replab_cached"].append(c1 - c0)
            cpu["replab_live"].append(c2 - c1)
            if last:
                cached.save(work / "replab-lens", format="tuned-lens")
            res = peer(args, tokens, work, "fp32", autocast=False, steps=args.steps,
                       out=work / "tl-fp32" if last else None, eval_lens=[work / "replab-lens"] if last else [],
                       evaluate=last)
            times["tuned_lens_fp32"].append(res["rounds"][0]["seconds"])
            cpu["tuned_lens_fp32"].append(res["rounds"][0]["cpu_seconds"])
            peers["fp32"] = res
        # tuned-lens's own bfloat16 autocast: timed on --bf16-steps only (no native bf16 on this CPU: slow)
        bf16 = peer(args, tokens, work, "bf16", autocast=True, steps=args.bf16_steps, evaluate=False)
        bf16_tokens_per_s = bf16["rounds"][0]["tokens_per_s"]
        tokens_per_s = {k: args.steps * args.batch_tokens / statistics.median(v) for k, v in times.items()}
        tokens_per_s["tuned_lens_bf16"] = bf16_tokens_per_s
        cpu_tokens_per_s = {k: args.steps * args.batch_tokens / statistics.median(v) for k, v in cpu.items()}
        cpu_tokens_per_s["tuned_lens_bf16"] = args.bf16_steps * args.batch_tokens / bf16["rounds"][0]["cpu_seconds"]
        held_kl = {"logit (replab)": kl_per_layer(lenses.LogitLens(model), model, held_tok),
                   "logit (tuned-lens)": peers["fp32"]["eval"]["logit"],
                   "replab cached": kl_per_layer(cached, model, held_tok),
                   "replab live": kl_per_layer(live, model, held_tok),
                   "tuned-lens fp32": peers["fp32"]["eval"]["trained"]}
        # cross-check: the same lens scored by both libraries
        peer_lens_in_replab = lenses.load(work / "tl-fp32", model)
        cross = {"tuned-lens lens: replab eval": kl_per_layer(peer_lens_in_replab, model, held_tok),
                 "tuned-lens lens: tuned-lens eval": peers["fp32"]["eval"]["trained"],
                 "replab lens: replab eval": held_kl["replab cached"],
                 "replab lens: tuned-lens eval": peers["fp32"]["eval"][str(work / "replab-lens")],
                 "logit: replab eval": held_kl["logit (replab)"], "logit: tuned-lens eval": held_kl["logit (tuned-lens)"]}
    pairs = [("tuned-lens lens: replab eval", "tuned-lens lens: tuned-lens eval"),
             ("replab lens: replab eval", "replab lens: tuned-lens eval"), ("logit: replab eval", "logit: tuned-lens eval")]
    worst = max(abs(a - b) / max(abs(b), 1e-12) for x, y in pairs for a, b in zip(cross[x], cross[y]))
    best_peer = max(tokens_per_s["tuned_lens_bf16"], tokens_per_s["tuned_lens_fp32"])
    seconds = {**times, "tuned_lens_bf16": [bf16["rounds"][0]["seconds"]]}
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "load_average": os.getloadavg(), "threads": args.threads},
        "versions": {"torch": torch.__version__, "replab": replab.__version__, "tuned_lens": peers["fp32"]["tuned_lens"]},
        "settings": {"steps": args.steps, "batch_tokens": args.batch_tokens, "rounds": args.rounds,
                     "bf16_steps": args.bf16_steps,
                     "train_tokens": int(train_tok.numel()), "held_tokens": int(held_tok.numel())},
        "capture_seconds": capture_s, "seconds": seconds, "tokens_per_s": tokens_per_s,
        "ratio_vs_best_tuned_lens": {k: tokens_per_s[k] / best_peer for k in ("replab_cached", "replab_live")},
        "cpu_seconds": cpu, "cpu_tokens_per_s": cpu_tokens_per_s,
        "cpu_ratio_vs_best_tuned_lens": {k: cpu_tokens_per_s[k] / max(cpu_tokens_per_s["tuned_lens_bf16"],
                                                                       cpu_tokens_per_s["tuned_lens_fp32"])
                                         for k in ("replab_cached", "replab_live")},
        "held_kl": held_kl, "cross_check": cross, "cross_check_worst_relative": worst,
        "cross_check_ok": worst <= args.tolerance,
    }
    print(f"capture {capture_s:.1f} s ({train_tok.numel() / capture_s:,.0f} tok/s)")
    for k, v in tokens_per_s.items():
        print(f"{k:18s} {v:10,.0f} tok/s  (rounds: {', '.join(f'{s:.1f}s' for s in seconds[k])})")
    print("ratio vs the faster tuned-lens:", {k: round(v, 2) for k, v in result["ratio_vs_best_tuned_lens"].items()})
    print("CPU-time tokens/s:", {k: round(v) for k, v in cpu_tokens_per_s.items()},
          "ratio:", {k: round(v, 2) for k, v in result["cpu_ratio_vs_best_tuned_lens"].items()})
    for k, v in held_kl.items():
        print(f"{k:20s} " + "  ".join(f"{x:.4f}" for x in v))
    print(f"cross-check worst relative KL difference {worst:.2e} (tolerance {args.tolerance:g}):",
          "OK" if result["cross_check_ok"] else "FAILED")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
