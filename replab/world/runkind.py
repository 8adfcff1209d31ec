"""Run kind ``world-eval``: the world card re-measured on a model (``run_world_eval``)."""

from __future__ import annotations

import json

from replab.runs import Run, RunKind
from replab.world.evaluate import card_markdown, evaluate_world


def _summary(info: dict) -> str:
    held = [v for k, v in (info.get("metrics") or {}).items() if k.endswith("/heldout") and isinstance(v, (int, float))]
    return f"mean held-out accuracy={sum(held) / len(held):.3f} over {len(held)} tasks" if held else ""


KIND = RunKind(name="world-eval", title="World card", summary=_summary, page=None,
               make="replab world eval --out runs/world-eval")


def run_world_eval(model, out) -> Run:
    """Evaluate ``model`` and write a run directory (kind ``world-eval``) holding the world card."""
    from replab.models.loading import checkpoint_dir

    name = getattr(model, "replab_name", "world")
    run = Run.create(out, "world-eval", {"model": name}, model=model)
    with run.timer("evaluate"):
        result = evaluate_world(model)
    ckpt = checkpoint_dir(name)
    training = json.loads((ckpt / "training.json").read_text(encoding="utf-8")) if (ckpt / "training.json").is_file() else {}
    cfg = training.get("config", {})
    card = {
        "model": {"n_layer": model.cfg.n_layers, "d_model": model.cfg.d_model, "n_head": model.cfg.n_heads,
                  "n_ctx": model.cfg.n_ctx, "vocab_size": model.cfg.d_vocab,
                  "n_params": training.get("n_params", sum(p.numel() for p in model.parameters())),
                  "seed": cfg.get("seed"), "steps": cfg.get("steps"), "train_seconds": training.get("seconds", 0.0)},
        **result,
    }
    run.write_json("world_card.json", card)
    (run.path / "WORLD_CARD.md").write_text(card_markdown(card), encoding="utf-8")
    metrics = {f"{k}/{s}": v[f"{s}_accuracy"] for k, v in result["relations"].items() for s in ("train", "heldout")}
    metrics.update({f"sentiment/{s}": result["sentiment"][f"{s}_accuracy"] for s in ("train", "heldout")})
    return run.finish(metrics)
