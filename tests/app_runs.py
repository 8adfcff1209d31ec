"""Run directories for the app's tests, made with the real replab commands on a tiny model.

``build_runs(root)`` writes, in seconds on a CPU:

    <root>/tiny-ckpt/                 an untrained 2-layer GPT-2 (d_model 32) whose vocabulary covers the prompts
    <root>/runs/sentiment-acts/       capture: last-token resid_post of 96 labelled prompts
    <root>/runs/sentiment-probes/     probe: logistic + meandiff sweep, control, shuffled, MDL, causal check
    <root>/runs/tokens-acts/          capture: every token's blocks.1.hook_resid_post
    <root>/runs/sae-topk/, sae-standard/   sae: trained, evaluated (CE with the model), features analysed
    <root>/runs/world-eval/           world-eval: a world card written with the world's own card_markdown

``build_broken_runs(root)`` writes the failure modes the app must explain: a partial run, a
corrupt ``run.json``, a run whose listed artifact is gone, and a capture whose shards are missing.

Run ``python tests/app_runs.py DIR`` to make the same directories by hand (e.g. for screenshots).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

SUBJECTS = ("movie", "book", "song", "meal", "show", "game", "play", "film", "story", "poem", "album", "trip")
POSITIVE = ("great", "wonderful", "good", "lovely")
NEGATIVE = ("terrible", "awful", "bad", "boring")
ANSWERS = (" great", " terrible")


@dataclass(frozen=True)
class AppRuns:
    """Paths of what ``build_runs`` wrote."""

    root: Path          # the runs root the app reads
    checkpoint: Path    # the tiny model (a local checkpoint directory)
    capture: Path
    probe: Path
    tokens: Path
    saes: tuple[Path, ...]
    world: Path


def prompts():
    """96 sentiment prompts, ``"The movie was great. It was"`` (12 subjects x 8 adjectives), labelled
    by the adjective."""
    from replab.datasets import PromptSet

    rows = [(s, a, "positive" if a in POSITIVE else "negative")
            for s, a in itertools.product(SUBJECTS, POSITIVE + NEGATIVE)]
    return PromptSet(texts=[f"The {s} was {a}. It was" for s, a, _ in rows], labels=[lab for *_, lab in rows],
                     subjects=[s for s, *_ in rows], name="tiny-sentiment", meta={"answer_tokens": list(ANSWERS)})


def _cli(module: str, argv: list[str]) -> None:
    """Run one replab subcommand through its own ``register``/``func``, as ``replab <argv>`` does."""
    from importlib import import_module

    parser = argparse.ArgumentParser(prog="replab")
    import_module(module).register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def _world_card(root: Path) -> Path:
    """A world-eval run holding a small card in the shipped card's format."""
    from replab.runs import Run
    from replab.world.evaluate import card_markdown

    card = {
        "model": {"n_layer": 2, "d_model": 32, "n_head": 2, "n_ctx": 64, "vocab_size": 40, "n_params": 34304,
                  "seed": 0, "steps": 10, "train_seconds": 1.0},
        "relations": {
            "capital": {"kind": "factual", "n_facts": 6, "train_accuracy": 1.0, "heldout_accuracy": 0.5,
                        "n_train_prompts": 12, "n_heldout_prompts": 6},
            "profession": {"kind": "factual", "n_facts": 4, "train_accuracy": 0.75, "heldout_accuracy": 0.25,
                           "n_train_prompts": 8, "n_heldout_prompts": 4},
        },
        "sentiment": {"train_accuracy": 0.9, "heldout_accuracy": 0.8, "n_train_prompts": 10, "n_heldout_prompts": 5},
        "canonical": [{"prompt": "The capital of France is", "expected": " Paris", "predicted": " Paris",
                       "correct": True}],
    }
    run = Run.create(root / "world-eval", "world-eval", {"model": "tiny"})
    run.write_json("world_card.json", card)
    (run.path / "WORLD_CARD.md").write_text(card_markdown(card))
    run.finish({"capital/heldout": 0.5, "sentiment/heldout": 0.8})
    return run.path


def build_runs(base: str | Path) -> AppRuns:
    """Write the tiny model and every run kind the app reads under ``base`` (see the module docstring)."""
    from replab.world.tokenizer import save_tiny_checkpoint

    base = Path(base)
    root = base / "runs"
    ps = prompts()
    ckpt = Path(save_tiny_checkpoint(base / "tiny-ckpt", [*ps.texts, *ANSWERS], n_layer=2, d_model=32, n_head=2))

    import replab
    from replab.activations import capture
    from replab.probes.runkind import probe_store

    model = replab.load_model(ckpt)
    store = capture(model, ps, "blocks.*.hook_resid_post", positions="last", out=root / "sentiment-acts",
                    batch_size=16)
    probe_store(store, root / "sentiment-probes", probes=("logistic", "meandiff"), cv=3, mdl=True, causal=True,
                answer_tokens=ANSWERS, n_random=2, model=model, prompts=ps)
    tokens = capture(model, ps, "blocks.1.hook_resid_post", positions="all", out=root / "tokens-acts", batch_size=16)
    saes = []
    for arch, extra in (("topk", ["--k", "4"]), ("standard", ["--l1-coefficient", "1.0"])):
        out = root / f"sae-{arch}"
        _cli("replab.saes.cli", ["train-sae", "--store", str(tokens.path), "--arch", arch, "--d-sae", "64",
                                 "--steps", "60", "--batch-size", "64", "--top-n", "24", "--out", str(out), *extra])
        saes.append(out)
    return AppRuns(root=root, checkpoint=ckpt, capture=store.path, probe=root / "sentiment-probes",
                   tokens=tokens.path, saes=tuple(saes), world=_world_card(root))


def build_broken_runs(base: str | Path, good: AppRuns) -> Path:
    """A runs root with one of each failure the app must explain; returns the root.

    ``partial-probe`` (status running), ``corrupt-sae`` (run.json is not JSON), ``lost-probe``
    (results.csv, a listed artifact, deleted), ``damaged-acts`` (a capture missing a shard
    file), ``partial-sae`` (an SAE run still running) and ``bad-latent-sae`` (one
    ``features/latent_<i>.json`` is not JSON).
    """
    import json
    import shutil

    from replab.runs import Run

    root = Path(base)
    Run.create(root / "partial-probe", "probe", {"store": "x"})
    (root / "corrupt-sae").mkdir(parents=True)
    (root / "corrupt-sae" / "run.json").write_text('{"kind": "sae", "status": "comp')
    shutil.copytree(good.probe, root / "lost-probe")
    (root / "lost-probe" / "results.csv").unlink()
    shutil.copytree(good.capture, root / "damaged-acts")
    (root / "damaged-acts" / "shards" / "00000" / "meta.token_id.bin").unlink()
    shutil.copytree(good.saes[0], root / "partial-sae")
    info = json.loads((root / "partial-sae" / "run.json").read_text())
    (root / "partial-sae" / "run.json").write_text(json.dumps({**info, "status": "running"}))
    shutil.copytree(good.saes[0], root / "bad-latent-sae")
    first = json.loads((root / "bad-latent-sae" / "features" / "summary.json").read_text())["analysed"][0]
    (root / "bad-latent-sae" / "features" / f"latent_{first}.json").write_text("{not json")
    return root


_BUILT: dict[str, tuple[AppRuns, Path]] = {}


def built(tmp_path_factory) -> tuple[AppRuns, Path]:
    """``build_runs`` and ``build_broken_runs`` once per test process (shared by every module that asks)."""
    if "runs" not in _BUILT:
        good = build_runs(tmp_path_factory.mktemp("app"))
        _BUILT["runs"] = (good, build_broken_runs(tmp_path_factory.mktemp("app-broken") / "runs", good))
    return _BUILT["runs"]


if __name__ == "__main__":
    runs = build_runs(sys.argv[1] if len(sys.argv) > 1 else "app-runs")
    print(f"runs root: {runs.root}\nmodel: {runs.checkpoint}")
