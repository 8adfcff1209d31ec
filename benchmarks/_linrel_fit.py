"""Worker for bench_relations.py, run in the linear-relational 0.6.2 virtualenv (transformers 4.51.3).

Loads a GPT-2 Hugging Face checkpoint once, then reads one JSON job per stdin line
``{"prompts": [{text, answer, subject}], "subject_layer": l, "object_layer": l, "out": path}`` and
answers one JSON line ``{"wall": s, "cpu": s}`` after fitting an LRE with
``linear_relational.Trainer.train_lre`` (its Jacobian code) and writing W, b to ``out``.
Layer l is replab's index: 0 = embedding output (``transformer.drop``), l = output of block l-1.
"""

import json
import sys
import time

import torch
from linear_relational import Prompt, Trainer
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast


def matcher(model, layer: int) -> str:
    return "transformer.drop" if layer == 0 else f"transformer.h.{layer - 1}"


def main() -> None:
    path = sys.argv[1]
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    model = GPT2LMHeadModel.from_pretrained(path).eval()
    # the checkpoint's tokenizer_config names a transformers-5 class; the tokenizer file itself loads here
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{path}/tokenizer.json", bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", pad_token="<pad>", unk_token="<unk>")
    trainer = Trainer(model, tokenizer, layer_matcher=matcher)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        prompts = [Prompt(p["text"], p["answer"], p["subject"]) for p in job["prompts"]]
        t0, c0 = time.perf_counter(), time.process_time()
        lre = trainer.train_lre("bench", job["subject_layer"], job["object_layer"], prompts,
                                object_aggregation="first_token", validate_prompts=False, verbose=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        save_file({"W": lre.weight.detach().float().contiguous(), "b": lre.bias.detach().float().contiguous()}, job["out"])
        print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    main()
