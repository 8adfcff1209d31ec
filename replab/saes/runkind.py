"""Run kinds ``sae`` and ``sae-features``: train, evaluate and analyse one SAE on a store hook into one run
directory (``train_store_sae``: CLI, demo, studies), or evaluate and analyse an existing one
(``evaluate_store_sae``: a SAELens SAE browsed in the app)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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

    Under ``torchrun`` (an initialised process group) every rank makes this call: training is DDP
    (each rank reads its slice of every global batch of ``batch_size`` rows), rank 0 alone writes the
    run directory, evaluates and analyses; the other ranks wait for it and return the finished run.
    """
    from replab import distributed
    from replab.saes import create, train
    from replab.saes.data import rows
    from replab.saes.train import check_resume

    source = rows(store, hook)
    sae = create(architecture, source.d, d_sae, seed=seed, **dict(arch_config or {}))  # train adds the metadata
    config = dict(run_config) if run_config is not None else {
        "store": str(store.path), "hook": source.hook, "arch": architecture, "d_sae": d_sae, "steps": steps,
        "tokens": tokens, "lr": lr, "batch_size": batch_size, "seed": seed, **dict(arch_config or {})}
    device = device or distributed.default_device()
    settings = dict(hook=source.hook, batch_size=batch_size, steps=steps, tokens=tokens, lr=lr, resume=resume,
                    seed=seed, normalize=normalize, checkpoint_every=checkpoint_every, device=device)
    if resume:
        check_resume(out, sae)  # before run.json is rewritten: a refused resume leaves the run as it was
    if not distributed.is_main():
        train(sae, store, out=out, progress=False, **settings)  # writes nothing; reads checkpoints to resume
        distributed.barrier()  # rank 0 has finished the run directory
        return Run.open(out)
    run = Run.create(out, "sae", config, model=model)
    if distributed.world_size() > 1:
        run.info["config"]["world_size"] = distributed.world_size()
    with run.timer("train"):
        result = train(sae, store, out=run, **settings)
    _evaluate_into(run, result.sae, source, model, eval_prompts, top_n)
    distributed.barrier()
    return run


def _evaluate_into(run: Run, sae, source, model, eval_prompts: int, top_n: int) -> None:
    """Evaluate ``sae`` on ``source`` (store rows; CE metrics when ``model`` is given and the rows have
    their own prompts), analyse its features into ``run`` and finish the run."""
    from replab.saes import analyze_features, evaluate
    from replab.saes.evaluate import has_own_prompts

    with run.timer("evaluate"):
        metrics = evaluate(sae, source.store, hook=source.hook, model=model if has_own_prompts(source) else None,
                           max_prompts=eval_prompts)
    run.log_metrics(metrics)
    with run.timer("features"):
        analyze_features(sae, source.store, hook=source.hook, model=model, out=run, top_n=top_n)
    run.finish()


def evaluate_store_sae(store, sae, *, out: str | os.PathLike, hook: str | None = None, model=None,
                       run_config: Mapping[str, Any] | None = None, device: str | None = None,
                       eval_prompts: int = 256, top_n: int = 256) -> Run:
    """Evaluate an existing SAE (replab's or SAELens's) on ``store[hook]`` into a run directory of kind
    ``"sae"``, as ``train_store_sae`` writes minus the training log: its SAELens-format files, the
    metrics and ``features/``, so the app browses it beside trained ones.

    Args:
        store: the ActivationStore.
        sae: an ``SAE``, or a directory ``saes.load`` reads (``cfg.json`` + ``sae_weights.safetensors``).
        out: the run directory.
        hook: the store hook (default: the SAE's ``metadata.hook_name`` when the store has it, else the
            store's only hook).
        model: for CE metrics and logit effects (``None``: skip them).
        run_config: settings recorded in ``run.json``.
        device: where to evaluate (default CPU).
        eval_prompts: prompts for the CE metrics.
        top_n: latents analysed in detail.

    Raises:
        HookNameError: no hook given and none can be chosen, or the hook is not in the store.
        DataError: the SAE's ``d_in`` is not the hook's width.
    """
    from replab.saes import load
    from replab.saes.base import SAE
    from replab.saes.io import save_to_run

    where = None if isinstance(sae, SAE) else str(sae)
    sae = sae if where is None else load(sae)
    sae = (sae if device is None else sae.to(device)).eval()
    source = sae_rows(store, sae, hook, where=where)
    config = dict(run_config) if run_config is not None else {
        "store": str(store.path), "hook": source.hook, "sae": where, "arch": sae.architecture, "d_sae": sae.d_sae}
    run = Run.create(out, "sae", config, model=model)
    save_to_run(run, sae)
    _evaluate_into(run, sae, source, model, eval_prompts, top_n)
    return run


def sae_rows(store, sae, hook: str | None = None, *, where: str | None = None):
    """The store rows an existing ``sae`` reads: ``store[hook]``, the hook defaulting to the SAE's
    ``metadata.hook_name`` when the store has it, else to the store's only hook.

    Args:
        where: the SAE's directory, named in errors.

    Raises:
        HookNameError: no hook given and none can be chosen, or the hook is not in the store.
        DataError: the SAE's ``d_in`` is not the hook's width.
    """
    from replab.errors import DataError, HookNameError
    from replab.saes.data import rows

    own = sae.cfg.metadata.get("hook_name")
    hook = hook or (own if own in store.hooks else store.hooks[0] if len(store.hooks) == 1 else None)
    if hook is None:
        raise HookNameError(f"Which hook of store {store.path} does this SAE read? It holds {list(store.hooks)} and "
                            f"the SAE names {own!r}; pass hook=... (--hook).")
    source = rows(store, hook)
    if source.d != sae.d_in:
        raise DataError(f"The SAE{f' in {where}' if where else ''} reads d_in={sae.d_in} but store hook {hook!r} "
                        f"has width {source.d}; evaluate it on the hook (and model) it was trained on.")
    return source


def train_store_saes(store, hooks: Sequence[str] | None, *, out: str | os.PathLike,
                     run_config: Mapping[str, Any] | None = None, **settings: Any) -> dict[str, Run]:
    """One SAE per hook (sparsify's ``--distribute_modules``): the hooks are spread over the ranks
    (contiguous shares, ``replab.distributed.mine``), each rank trains its hooks alone into
    ``<out>/<hook>`` (a run directory like ``train_store_sae``'s), then all ranks wait for each other.

    Args:
        store: the ActivationStore.
        hooks: the hooks to train on (default: every hook of the store).
        out: parent directory of the per-hook run directories.
        run_config: settings recorded in each run (``hook`` is set per run).
        **settings: ``train_store_sae`` keywords (architecture, d_sae, steps, ...).

    Returns:
        hook -> finished run, for this rank's hooks (every hook in one process).
    """
    from replab import distributed
    from replab.errors import DataError

    every = list(hooks) if hooks else list(store.hooks)
    missing = [h for h in every if h not in store.hooks]
    if missing:
        raise DataError(f"Hooks {missing} are not in store {store.path}; it holds {list(store.hooks)}.")
    if distributed.world_size() > len(every):
        raise DataError(f"--distribute-hooks needs at least as many hooks ({len(every)}) as ranks "
                        f"({distributed.world_size()}); launch fewer processes or train one SAE with DDP.")
    shared = {k: v for k, v in settings.items() if k not in ("model", "device")}
    distributed.check_same({"hooks": every, "settings": shared, "out": str(out)}, "SAE training per hook")
    runs = {}
    for hook in distributed.mine(every):
        config = None if run_config is None else {**run_config, "hook": hook}
        with distributed.local():
            runs[hook] = train_store_sae(store, hook=hook, out=os.path.join(out, hook), run_config=config, **settings)
    distributed.barrier()
    return runs
