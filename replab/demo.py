"""``replab demo``: from a fresh install to the explorer app full of real results on the world model.

Each stage writes one run directory under ``--runs`` (default ``runs/demo``) and is skipped when
that run is already complete, so a second ``replab demo`` starts the app at once:

* ``world-eval`` -- the world card re-measured;
* ``acts-sentiment`` + ``probe-sentiment`` -- every ``resid_post`` at the last token of the
  sentiment reviews; logistic vs mass-mean probes with control task, shuffled labels and the
  causal check (ablate the best mass-mean direction vs random ones);
* ``acts-latitude`` + ``probe-latitude`` -- city latitude at the prompt's last token (ridge);
* ``acts-corpus`` + ``sae-<architecture>`` -- a token corpus at a middle layer and one SAE of each
  architecture with metrics, CE recovered and feature analysis;
* ``lre-<relation>`` -- linear relational embeddings of two world relations (``replab.relations``);
* ``lens-logit``, ``lens-shortcut``, ``lens-tuned`` -- residual lenses trained live on world text and
  scored per layer on held-out documents (``layers.csv``), for the app's Lenses page;
* ``lens-attention`` -- a translator attention lens (per head ``d_model x d_model`` before the unembedding).
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from replab.errors import RunDirError
from replab.runs import Run

SAE_ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu", "matching_pursuit")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo runs (the defaults fit in ~15 minutes on 2 CPU cores)."""

    runs: str = "runs/demo"
    model: str = "world"
    corpus_documents: int = 6000
    corpus_tokens: int = 150_000
    d_sae: int = 1024
    k: int = 16
    sae_steps: int = 1500
    sae_batch_size: int = 1024
    architectures: tuple[str, ...] = SAE_ARCHITECTURES
    relations: tuple[str, ...] = ("capital", "continent")  # LRE runs (subject layers 0-1), ~40 s together
    lens_documents: int = 300          # live lens training text (the corpus's first documents)
    lens_steps: int = 25               # tuned / attention lens steps (the shortcut fits on 4 x batch rows)
    lens_batch_size: int = 256
    lens_eval_tokens: int = 1500       # held-out tokens each lens is scored on


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="create the demo runs on the world model (once) and open the explorer app")
    p.add_argument("--runs", default=DemoConfig.runs, help="where demo runs are written")
    p.add_argument("--port", type=int, default=8501, help="port for the app")
    p.add_argument("--no-app", action="store_true", help="create the runs but do not start the app")
    p.set_defaults(func=_cli)


def show_completions(model, prompts, k: int = 5) -> None:
    """Print each prompt's top-k next tokens with probabilities."""
    from replab.models import run_batches

    for fb in run_batches(model, list(prompts), positions="last", logits="logprobs"):
        for i, logp in zip(fb.items.tolist(), fb.logits):
            top = logp.exp().topk(k)
            alts = "  ".join(f"{model.tokenizer.decode([int(t)])!r} {p:.2f}" for p, t in zip(top.values, top.indices))
            print(f"  {prompts[i]!r:32s} -> {alts}", flush=True)


def _complete(path: Path) -> bool:
    try:
        Run.open(path)
        return True
    except RunDirError:
        return False


def lens_stage(model, kind: str, out: Path, cfg: DemoConfig, **kw) -> Run:
    """Train a ``kind`` lens live on world text into ``out``, then score it per layer on held-out documents."""
    from replab.datasets import TextCorpus
    from replab.datasets import load as load_data
    from replab.lenses.runkind import lens_run
    from replab.world import world_corpus

    steps = 4 if kind == "shortcut" else 1 if kind == "logit" else cfg.lens_steps
    held = TextCorpus(load_data("world:corpus").documents[-200:], name="world:corpus[-200:]")
    return lens_run(kind, model, world_corpus(cfg.lens_documents), held, out, eval_max_tokens=cfg.lens_eval_tokens,
                    steps=steps, batch_size=cfg.lens_batch_size, context=int(model.cfg.n_ctx), progress=False, **kw)


def _stages(cfg: DemoConfig, model) -> list[tuple[str, Callable[[Path], object]]]:
    """(run name, function writing that run) in dependency order."""
    import replab
    from replab.activations import ActivationStore
    from replab.probes import probe_store
    from replab.relations import world as world_relation
    from replab.relations.pipeline import relation_run
    from replab.saes.runkind import train_store_sae
    from replab.world import world_corpus
    from replab.world.runkind import run_world_eval
    from replab.world.sentiment import ANSWER_TOKENS

    root = Path(cfg.runs)
    middle = f"blocks.{max(0, model.cfg.n_layers // 2 - 1)}.hook_resid_post"
    store = lambda name: ActivationStore.open(root / name)  # noqa: E731
    stages: list[tuple[str, Callable[[Path], object]]] = [
        ("world-eval", lambda out: run_world_eval(model, out)),
        ("acts-sentiment", lambda out: replab.capture(model, replab.datasets.load("world:sentiment"),
                                                      "blocks.*.hook_resid_post", positions="last", out=out)),
        ("probe-sentiment", lambda out: probe_store(
            store("acts-sentiment"), out, probes=["logistic", "meandiff"], causal=True, causal_probe="meandiff",
            answer_tokens=(ANSWER_TOKENS["positive"], ANSWER_TOKENS["negative"]), model=model)),
        # the world model recalls a city's country at the prompt's last token, not at the city token
        # (docs/probes.md), so coordinates are probed where the recall happens
        ("acts-latitude", lambda out: replab.capture(model, replab.datasets.load("world:city_latitude"),
                                                     "blocks.*.hook_resid_post", positions="last", out=out)),
        ("probe-latitude", lambda out: probe_store(store("acts-latitude"), out, probes=["ridge"], target="target",
                                                   groups="subject")),
        ("acts-corpus", lambda out: replab.capture(model, world_corpus(cfg.corpus_documents), middle, out=out,
                                                   max_tokens=cfg.corpus_tokens, context=model.cfg.n_ctx)),
    ]
    for rel in cfg.relations:
        stages.append((f"lre-{rel}", lambda out, rel=rel: relation_run(
            model, world_relation(rel), out, sweep_layers=(0, 1), betas=(1, 3), ranks=(4, 8, 16))))
    for arch in cfg.architectures:
        arch_config = {"k": cfg.k} if arch in ("topk", "batchtopk", "matching_pursuit") else {}
        stages.append((f"sae-{arch}", lambda out, arch=arch, arch_config=arch_config: train_store_sae(
            store("acts-corpus"), architecture=arch, d_sae=cfg.d_sae, out=out, hook=middle, model=model,
            arch_config=arch_config, steps=cfg.sae_steps, batch_size=cfg.sae_batch_size, top_n=128)))
    for kind in ("logit", "shortcut", "tuned"):
        stages.append((f"lens-{kind}", lambda out, kind=kind: lens_stage(model, kind, out, cfg)))
    stages.append(("lens-attention", lambda out: lens_stage(model, "attention", out, cfg, form="translator",
                                                          positions="all")))
    return stages


def build_demo_runs(cfg: DemoConfig = DemoConfig()) -> Path:
    """Create every missing demo run under ``cfg.runs``; complete runs are reused as they are."""
    import replab
    from replab.world.evaluate import CANONICAL

    root = Path(cfg.runs)
    model = replab.load_model(cfg.model)
    print("The world model's top-5 next tokens on its canonical prompts:")
    show_completions(model, [p for p, _ in CANONICAL])
    for name, make in _stages(cfg, model):
        out = root / name
        if _complete(out):
            print(f"[demo] {name}: reusing {out}", flush=True)
            continue
        print(f"[demo] {name} ...", flush=True)
        t0 = time.perf_counter()
        make(out)
        print(f"[demo] {name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def _cli(args: argparse.Namespace) -> None:
    from replab.app_cli import app_env, streamlit_command

    root = build_demo_runs(DemoConfig(runs=args.runs))
    if args.no_app:
        print(f"demo runs ready in {root}; explore them with: replab app --runs {root}")
        return
    cmd = streamlit_command(args.port, headless=True)
    print(f"\nreplab explorer: http://localhost:{args.port}  (runs: {root.resolve()}; Ctrl+C to stop)", flush=True)
    try:
        subprocess.run(cmd, env=app_env(root), check=False)
    except KeyboardInterrupt:
        pass
