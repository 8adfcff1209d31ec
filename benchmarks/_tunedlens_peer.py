"""tuned-lens 0.2.0 side of ``bench_lenses.py`` and the interop cross-check; runs in tuned-lens's own virtualenv.

    /work/venvs/tunedlens/bin/python benchmarks/_tunedlens_peer.py --model replab/world/checkpoint \
        --tokens tokens.safetensors --steps 250 --batch-tokens 1024 --out DIR [--eval-lens DIR ...] --json out.json

Imports no replab. ``--tokens`` holds ``train`` and ``held`` ``[n, ctx]`` int64 token ids (replab's packed
contexts, so both sides read the same tokens). Training is tuned-lens's ``scripts/train_loop.py`` body run by
hand (its CLI cannot start on current torchdata, see docs/lenses.md): ``TunedLens.from_model``, a no-grad
model forward with ``output_hidden_states`` per step, KL(final || lens) per hidden state under bfloat16
autocast with one backward per layer, SGD Nesterov with lr ``1.0 * (1 - 0.9)``, weight decay 1e-3,
``get_linear_schedule_with_warmup(opt, 0, steps)`` (SGD has no warm-up in tuned-lens), clipping at 1.0.
``--no-autocast`` trains in float32 instead. Evaluation is ``scripts/eval_loop.py``'s KL,
``sum(final_probs * (final_lps - lens_lps), -1)``, averaged over every held-out position, in float32.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch as th
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, get_linear_schedule_with_warmup

import tuned_lens
from tuned_lens.nn import LogitLens, TunedLens


def train(model, tokens: th.Tensor, steps: int, batch_tokens: int, autocast: bool) -> tuple[TunedLens, float, float]:
    lens = TunedLens.from_model(model)
    beta = 0.9
    opt = th.optim.SGD(lens.parameters(), lr=1.0 * (1 - beta), momentum=beta, nesterov=True, weight_decay=1e-3)
    sched = get_linear_schedule_with_warmup(opt, 0, steps)
    per_step = batch_tokens // tokens.shape[1]
    n = tokens.shape[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        rows = th.arange(step * per_step, (step + 1) * per_step) % n
        with th.no_grad():
            output = model(input_ids=tokens[rows], output_hidden_states=True)
        labels = output.logits.float().log_softmax(dim=-1)
        for i, h in enumerate(output.hidden_states[:-1]):
            with th.autocast("cpu", dtype=th.bfloat16, enabled=autocast):
                logits = lens(h, idx=i)
                loss = th.sum(labels.exp() * (labels - logits.log_softmax(-1)), dim=-1).mean()
            loss.backward()
        th.nn.utils.clip_grad_norm_(lens.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=False)
        sched.step()
    return lens, time.perf_counter() - t0, time.process_time() - c0


@th.no_grad()
def evaluate(model, lens, tokens: th.Tensor, batch: int = 16) -> list[float]:
    """Mean KL(final || lens) per hidden state over every position of ``tokens`` (eval_loop's formula)."""
    sums, count = None, 0
    for lo in range(0, tokens.shape[0], batch):
        output = model(input_ids=tokens[lo: lo + batch], output_hidden_states=True)
        final_lps = output.logits.float().log_softmax(dim=-1)
        final_probs = final_lps.exp()
        kl = th.stack([th.sum(final_probs * (final_lps - lens(h, idx=i).log_softmax(dim=-1)), dim=-1).sum()
                       for i, h in enumerate(output.hidden_states[:-1])]).double()
        sums = kl if sums is None else sums + kl
        count += final_lps.shape[0] * final_lps.shape[1]
    return (sums / count).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a Hugging Face causal LM directory")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch-tokens", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=1, help="training rounds (timed); the last one's lens is kept")
    ap.add_argument("--no-autocast", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=None, help="save the trained lens here (tuned-lens format)")
    ap.add_argument("--eval-lens", nargs="*", default=[], help="lens directories (tuned-lens format) to evaluate")
    ap.add_argument("--no-eval", action="store_true", help="time the training only")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    if args.threads:
        th.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    model.requires_grad_(False)
    tokens = load_file(args.tokens)
    result = {"tuned_lens": getattr(tuned_lens, "__version__", "0.2.0"), "torch": th.__version__,
              "autocast_bf16": not args.no_autocast, "rounds": [], "eval": {}}
    if args.steps:
        for _ in range(args.rounds):
            lens, seconds, cpu = train(model, tokens["train"], args.steps, args.batch_tokens, not args.no_autocast)
            result["rounds"].append({"seconds": seconds, "cpu_seconds": cpu,
                                     "tokens_per_s": args.steps * args.batch_tokens / seconds})
        if args.out:
            lens.save(args.out)
    if not args.no_eval:
        if args.steps:
            result["eval"]["trained"] = evaluate(model, lens, tokens["held"])
        result["eval"]["logit"] = evaluate(model, LogitLens.from_model(model), tokens["held"])
        for path in args.eval_lens:
            loaded = TunedLens.from_model_and_pretrained(model, path, map_location="cpu", weights_only=True)
            result["eval"][path] = evaluate(model, loaded, tokens["held"])
    Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
