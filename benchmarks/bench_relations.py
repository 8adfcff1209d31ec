"""Fitting one LRE: ``replab.relations.fit_lre`` against linear-relational 0.6.2's ``Trainer.train_lre``.

    OMP_NUM_THREADS=1 python benchmarks/bench_relations.py [--relation capital] [--subject-layer 0]
        [--n-train 5] [--rounds 5] [--threads 1] [--linrel-python /work/venvs/linrel/bin/python]

Same model (the world checkpoint, loaded by each library from replab/world/checkpoint), same
relation, training samples, few-shot prompt texts, subject layer (0 = embedding output, see
docs/relations.md) and object layer (last block output, before the final norm). linear-relational
runs in its own virtualenv (it pins transformers 4.51) as a persistent worker
(``benchmarks/_linrel_fit.py``), so neither side pays model loading inside a round. Rounds
alternate replab, linear-relational; round 0 of each is a discarded warm-up; medians of wall and
CPU time. Both fitted (W, b) are then scored by the same ``replab.relations.faithfulness`` on the
same held-out samples.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import replab
from replab.world import WORLD_CHECKPOINT
from replab.relations import LRE, build_prompts, fit_lre, split, world
from replab.relations.evaluate import faithfulness, test_set

WORKER = Path(__file__).resolve().parent / "_linrel_fit.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--relation", default="capital")
    ap.add_argument("--subject-layer", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--linrel-python", default="/work/venvs/linrel/bin/python")
    args = ap.parse_args()
    if not Path(args.linrel_python).is_file():
        raise SystemExit(f"{args.linrel_python} is missing: python -m venv /work/venvs/linrel && "
                         "/work/venvs/linrel/bin/pip install torch==2.13.0 linear-relational==0.6.2 transformers==4.51.3")
    torch.set_num_threads(args.threads)
    model = replab.load_model("world")
    rel = world(args.relation)
    sp = split(rel, args.n_train)
    prompts = build_prompts(model, rel, sp.train, sp.train)
    jobs = [{"text": t, "answer": s.object, "subject": s.subject} for t, s in zip(prompts.texts, sp.train)]
    n = model.cfg.n_layers
    worker = subprocess.Popen([args.linrel_python, str(WORKER), str(WORLD_CHECKPOINT), str(args.threads)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert json.loads(worker.stdout.readline())["ready"]
    times: dict[str, list[tuple[float, float]]] = {"replab": [], "linear-relational": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/peer.safetensors"
        for r in range(args.rounds + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            ours = fit_lre(model, rel, subject_layer=args.subject_layer, train=sp.train)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            worker.stdin.write(json.dumps({"prompts": jobs, "subject_layer": args.subject_layer, "object_layer": n,
                                           "out": out}) + "\n")
            worker.stdin.flush()
            peer_t = json.loads(worker.stdout.readline())
            if r:
                times["replab"].append((wall, cpu))
                times["linear-relational"].append((peer_t["wall"], peer_t["cpu"]))
        peer_wb = load_file(out)
    worker.stdin.close()
    worker.wait()
    peer = LRE(peer_wb["W"], peer_wb["b"], 1.0, ours.subject_layer, ours.object_layer, ours.subject_hook,
               ours.object_hook, rel.name, "linear-relational", ours.train)
    tests = test_set(model, rel, ours)
    f_ours, f_peer = (faithfulness(x, model, rel, tests=tests) for x in (ours, peer))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    rel_err = float((peer.W - ours.W).norm() / ours.W.norm())
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {args.threads} thread(s), torch {torch.__version__}")
    print(f"relation {rel.name}, n_train {args.n_train}, subject layer {args.subject_layer}, object layer {n}, "
          f"{args.rounds} rounds (medians)")
    print("| library | fit wall s | fit CPU s | faithfulness (n) |\n|---|---|---|---|")
    for name, f in (("replab", f_ours), ("linear-relational 0.6.2", f_peer)):
        key = "replab" if name == "replab" else "linear-relational"
        print(f"| {name} | {med[key][0]:.3f} | {med[key][1]:.3f} | {f.value:.3f} ({f.n}) |")
    print(f"speed-up (wall): {med['linear-relational'][0] / med['replab'][0]:.2f}x; "
          f"CPU: {med['linear-relational'][1] / med['replab'][1]:.2f}x; ‖W_peer − W‖/‖W‖ = {rel_err:.2e}; "
          f"|Δ faithfulness| = {abs(f_ours.value - f_peer.value):.3f}")


if __name__ == "__main__":
    main()
