"""Run kinds ``sae`` and ``sae-features``: train, evaluate and analyse one SAE on a store hook into one run
directory (``train_store_sae``: CLI, demo, studies)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from replab.runs import Run, RunKind, metric_summary

_SAE_MAKE = ("replab capture --model world --text world:corpus --hooks blocks.2.hook_resid_post --max-tokens 200000 "
             "--out runs/corpus-acts && replab train-sae --store runs/corpus-acts --arch topk --d-sae 1024 --k 16")
KINDS = (
    RunKind(name="sae", title="SAEs", page="4_SAEs", make=_SAE_MAKE,
            summary=metric_summary("fvu", "l0", "dead_fraction", "dense_fraction", "ce_recovered")),
    RunKind(name="sae-features", title="SAE features", page="4_SAEs", make=_SAE_MAKE,
            summary=metric_summary("features_analysed")),
)


def train_store_sae(store, *, architecture: str, d_sae: int, out: str | os.PathLike, hook: str | None = None,
                    model=None, arch_config: Mapping[str, Any] | None = None,
                    run_config: Mapping[str, Any] | None = None, steps: int | None = None, tokens: int | None = None,
                    lr: float | None = None, batch_size: int = 4096, seed: int = 0, normalize: bool = True,
                    checkpoint_every: int | None = None, resume: bool = False, device: str | None = None,
                    eval_prompts: int = 256, top_n: int = 256) -> Run:
    """Train an SAE on ``store[hook]``, evaluate it (CE metrics when ``model`` is given and the
    store holds texts or whole contexts) and write its feature analysis; returns the finished run
    (kind ``"sae"``: SAELens-format weights, training log, metrics, ``features/``).
    """
    from replab.saes import analyze_features, create, evaluate, train
    from replab.saes.data import rows
    from replab.saes.evaluate import has_own_prompts

    source = rows(store, hook)
    sae = create(architecture, source.d, d_sae, seed=seed, **dict(arch_config or {}))  # train adds the metadata
    config = dict(run_config) if run_config is not None else {
        "store": str(store.path), "hook": source.hook, "arch": architecture, "d_sae": d_sae, "steps": steps,
        "tokens": tokens, "lr": lr, "batch_size": batch_size, "seed": seed, **dict(arch_config or {})}
    run = Run.create(out, "sae", config, model=model)
    with run.timer("train"):
        result = train(sae, store, hook=source.hook, batch_size=batch_size, steps=steps, tokens=tokens, lr=lr,
                       out=run, resume=resume, seed=seed, normalize=normalize, checkpoint_every=checkpoint_every,
                       device=device)
    with run.timer("evaluate"):
        metrics = evaluate(result.sae, store, hook=source.hook, model=model if has_own_prompts(source) else None,
                           max_prompts=eval_prompts)
    run.log_metrics(metrics)
    with run.timer("features"):
        analyze_features(result.sae, store, hook=source.hook, model=model, out=run, top_n=top_n)
    return run.finish()
