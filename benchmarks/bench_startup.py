"""Start-up cost of small replab commands: medians of N wall-clock runs, each in a fresh interpreter.

Run: ``PYTHONPATH=. python benchmarks/bench_startup.py [--repeats 3]`` (results go in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cases(tmp: Path, store: Path) -> dict[str, list[str]]:
    py = sys.executable
    cli = [py, "-m", "replab"]
    prompts = tmp / "p.jsonl"
    prompts.write_text('{"text": "a b c", "label": 0}\n')
    cases = {
        "replab --help": [*cli, "--help"],
        "capture, hook typo": [*cli, "capture", "--model", "world", "--hooks", "blocks.0.hook_resid_pots",
                               "--prompts", str(prompts), "--out", str(tmp / "s1")],
        "capture, missing prompts": [*cli, "capture", "--model", "world", "--hooks", "blocks.0.hook_resid_post",
                                     "--prompts", str(tmp / "missing.jsonl"), "--out", str(tmp / "s2")],
        "train-sae --help": [*cli, "train-sae", "--help"],
        "train-sae, unknown architecture": [*cli, "train-sae", "--store", str(tmp / "s3"), "--d-sae", "64",
                                            "--arch", "gated"],
        "lens train, missing text file": [*cli, "lens", "train", "--model", "world", "--text",
                                          str(tmp / "missing.jsonl"), "--out", str(tmp / "l1")],
        "relations fit, unknown relation": [*cli, "relations", "fit", "--model", "world", "--relation", "bogus",
                                            "--out", str(tmp / "r1")],
        "load_model('world')": [py, "-c", "import replab; replab.load_model('world')"],
    }
    if (store / "manifest.json").is_file():  # commands that read a store (the probe benchmark's world store)
        cases.update({
            "probe, cv larger than a class": [*cli, "probe", "--store", str(store), "--cv", "600",
                                              "--out", str(tmp / "p1")],
            "train-sae, hook not in the store": [*cli, "train-sae", "--store", str(store), "--hook",
                                                 "blocks.9.hook_resid_post", "--d-sae", "64", "--no-model",
                                                 "--out", str(tmp / "s4")],
        })
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", default=str(Path(__file__).resolve().parent.parent / "runs/bench/world-sentiment"),
                        help="a store for the probe / train-sae cases (benchmarks/bench_probes.py captures it)")
    args = parser.parse_args()
    import torch

    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}, "
          f"{platform.processor() or platform.node()}")
    with tempfile.TemporaryDirectory() as d:
        for name, cmd in _cases(Path(d), Path(args.store)).items():
            times, rc = [], None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                rc = subprocess.run(cmd, capture_output=True).returncode
                times.append(time.perf_counter() - t0)
            print(f"| {name} | {statistics.median(times):.2f} s | exit {rc} |")


if __name__ == "__main__":
    main()
