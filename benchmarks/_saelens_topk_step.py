"""SAELens side of bench_sae_saelens.py: its TopK training step, driven by its own ``SAETrainer``.

Runs in the SAELens virtual environment (``/tmp/saelens-venv/bin/python``), never in replab's.
It is a worker: argv gives the activations file and the hyperparameters; each line on stdin
(a seed) runs one round and answers one JSON line on stdout. A round builds a fresh
``TopKTrainingSAE`` and ``SAETrainer`` (the trainer's optimizer and bookkeeping) and calls
``SAETrainer.step`` once per batch, which is the whole per-step work of SAELens's training
loop: ``training_forward_pass`` (TopK forward, MSE, AuxK check), dead-latent and firing
counters, ``loss.backward()``, gradient clipping at 1.0, Adam step, ``zero_grad``, lr and
coefficient schedulers. SAELens has no decoder-norm step for TopK; with its default
``rescale_acts_by_decoder_norm=True`` it scales the pre-activations by the decoder row norms
and the kept activations by their inverse in the forward pass instead (``--rescale off``
drops that, like replab's unit-norm decoder).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from safetensors.torch import load_file

from sae_lens import LoggingConfig, SAETrainer, TopKTrainingSAE
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.topk_sae import TopKTrainingSAEConfig


def one_round(x: torch.Tensor, args: argparse.Namespace, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=x.shape[1], d_sae=args.d_sae, k=args.k, dtype="float32",
                                                device="cpu", rescale_acts_by_decoder_norm=args.rescale == "on"))
    batches = x[: args.steps * args.batch].split(args.batch)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = SAETrainer(
        SAETrainerConfig(total_training_samples=args.steps * args.batch, train_batch_size_samples=args.batch,
                         lr=args.lr, lr_end=args.lr, device="cpu", logger=LoggingConfig(log_to_wandb=False)),
        sae, data_provider=iter(batches),
    )
    t1 = time.perf_counter()
    for batch in batches:
        out = trainer.step(batch)
        trainer.n_training_steps += 1
    t2, c2 = time.perf_counter(), time.process_time()
    tokens = args.steps * args.batch
    return {"tokens": tokens, "wall_s": t2 - t0, "cpu_s": c2 - c0, "loop_wall_s": t2 - t1,
            "final_mse": float(out.losses["mse_loss"].detach())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--d-sae", type=int, required=True)
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--rescale", choices=("on", "off"), default="on",
                        help="rescale_acts_by_decoder_norm (SAELens's default for TopK training: on)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = load_file(args.data)["x"]
    import sae_lens

    print(json.dumps({"ready": True, "sae_lens": sae_lens.__version__, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        print(json.dumps(one_round(x, args, int(line))), flush=True)


if __name__ == "__main__":
    main()
