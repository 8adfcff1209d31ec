"""Run kind ``probe``: a probe sweep over a store's hooks (``probe_store``), its summary and figures.

Layout of ``--out``::

    run.json                      settings, store, model, metrics (best hook, accuracy, selectivity)
    results.csv / results.json    the sweep table (hook x probe x task)
    best.csv / best.json          per hook: the best probe, its metric, selectivity and file
    figures/metric_by_layer.json  Plotly JSON; also selectivity_by_layer (with control), mdl_by_layer (--mdl)
    probes/<layer>_<probe>.safetensors + .json   each hook's best probe, refitted on all rows
    mdl.csv / mdl.json            with --mdl: online codelength and compression per hook
    causal.json                   with --causal: ablating the best hook's direction vs random directions
"""

from __future__ import annotations

from typing import Any

from replab.errors import DataError, StoreError
from replab.runs import RunKind, metric_summary
from replab.probes.config import SweepConfig, default_target

KIND = RunKind(
    name="probe", title="Probes", page="3_Probes",
    summary=metric_summary("metric", "best_hook", "best_probe", "best_mean", "best_selectivity"),
    make="replab probe --store runs/sentiment-acts --probes logistic,meandiff --out runs/sentiment-probes",
    figures=("metric_by_layer", "selectivity_by_layer", "mdl_by_layer"),
)


def _file_key(hook: str, layer, layers: list) -> str:
    """``<layer>`` when each hook has its own layer, else the hook name (unambiguous file names)."""
    return str(layer) if layer is not None and layers.count(layer) == 1 else hook


def store_prompts(store):
    """The prompt set a store was captured from, rebuilt from its per-row metadata (one row per prompt)."""
    from replab.datasets import PromptSet

    meta = store.metadata
    if "text" not in meta.columns:
        raise DataError("The store's metadata has no 'text' column, so its prompts cannot be re-run; "
                        "the causal check needs a store captured from a prompt set.")
    first = meta.drop_duplicates("prompt_index").sort_values("prompt_index")
    col = lambda c: None if c not in first.columns or first[c].isna().any() else tuple(first[c])  # noqa: E731
    source = (store.manifest or {}).get("source") or {}
    return PromptSet(texts=tuple(first["text"]), labels=col("label"), subjects=col("subject"), answers=col("answer"),
                     name=str(source.get("name", "store")) if isinstance(source, dict) else str(source),
                     meta=dict(source.get("meta", {})) if isinstance(source, dict) else {})


def store_model(store):
    """Load the model named in the store's manifest and check its weights are the ones captured."""
    import replab

    manifest = store.manifest or {}
    if not manifest.get("model"):
        raise StoreError("The store's manifest names no model; the causal check needs the model it was captured from.")
    model = replab.load_model(manifest["model"])
    store.check_model(model, "re-capture the store with the current model")
    return model


def _sweep(store, hooks, **settings):
    """``sweep`` in one process; under ``torchrun`` the hooks are spread over the ranks (contiguous shares)
    and every rank gets the merged result, rows in the one-process order. Each hook's numbers depend only
    on that hook and the seeded folds and control labels, so the merge equals the one-process sweep."""
    import pandas as pd

    from replab import distributed
    from replab.probes.inputs import as_data, select_hooks
    from replab.probes.sweep import SweepResult, sweep

    if distributed.world_size() == 1:
        return sweep(store, hooks=hooks, **settings)
    every = select_hooks(as_data(store).hooks, hooks)
    if distributed.world_size() > len(every):
        raise DataError(f"A probe sweep over {len(every)} hooks cannot use {distributed.world_size()} ranks; "
                        "launch at most one process per hook.")
    mine = distributed.mine(every)
    parts = distributed.gather_objects(sweep(store, hooks=mine, **settings))  # in memory between ranks, never written
    table = pd.concat([p.table for p in parts], ignore_index=True)
    mdl = None if parts[0].mdl is None else pd.concat([p.mdl for p in parts], ignore_index=True)
    return SweepResult(table=table, probes={h: q for p in parts for h, q in p.probes.items()},
                       fitted={k: q for p in parts for k, q in p.fitted.items()}, mdl=mdl,
                       config={**parts[0].config, "hooks": every, "world_size": distributed.world_size()})


def probe_store(store, out, *, probes=("logistic",), target=None, hooks=None, cv: int = SweepConfig.cv,
                groups=SweepConfig.groups, control: bool = SweepConfig.control, shuffled: bool = SweepConfig.shuffled,
                control_by=SweepConfig.control_by, mdl: bool = SweepConfig.mdl, causal: bool = False,
                causal_probe: str | None = None, answer_tokens=None, n_random: int = 3, seed: int = SweepConfig.seed,
                device=SweepConfig.device, layers_per_batch: int | None = SweepConfig.layers_per_batch, model=None,
                prompts=None):
    """Sweep probes over a store and write the run directory described in this module's docstring.

    ``target`` defaults to ``"target"`` for ridge and ``"label"`` otherwise. With ``causal``,
    ``model`` (default: the store's model, weights checked) and ``prompts`` (default: the
    store's prompts) are used to ablate the best hook's direction vs ``n_random`` random ones;
    ``causal_probe`` (e.g. ``"meandiff"``, whose directions Marks & Tegmark find more causal)
    picks the probe type whose direction is ablated, at that type's best hook. Ties in the
    metric (several layers at accuracy 1.0) are broken by selectivity, then depth order.

    Under ``torchrun`` every rank makes this call: the hooks are spread over the ranks, the results
    gathered on rank 0, which alone writes the run directory (and runs the causal check); the other
    ranks wait for it and return the finished run.

    Returns:
        The finished ``replab.runs.Run``.
    """
    import pandas as pd

    from replab.probes.causal import causal_check
    from replab.probes.io import probe_files
    from replab import distributed
    from replab.probes.sweep import make_probe, top_row
    from replab.runs import Run

    probe_objs = [make_probe(p) for p in probes]
    if target is None:
        target = default_target(probe_objs[0].task)
    if causal and model is None and distributed.is_main():
        model = store_model(store)
    sweep_settings = dict(probes=probe_objs, target=target, cv=cv, groups=groups, control=control, shuffled=shuffled,
                          control_by=control_by, mdl=mdl, seed=seed, device=device,
                          layers_per_batch=layers_per_batch, progress=distributed.is_main())
    settings = {"store": str(getattr(store, "path", "")), "probes": [p.name for p in probe_objs], "target": target,
                "hooks": hooks, "cv": cv, "groups": groups, "control": control, "shuffled": shuffled,
                "control_by": control_by, "mdl": mdl, "causal": causal, "seed": seed}
    if not distributed.is_main():
        _sweep(store, hooks, **sweep_settings)
        distributed.barrier()  # rank 0 has written the run directory
        return Run.open(out)
    run = Run.create(out, "probe", settings, model=model)
    with run.timer("sweep"):
        res = _sweep(store, hooks, **sweep_settings)
    run.info["config"]["sweep"] = res.config
    run.write_table("results", res.table)
    for name, fig in res.figures.items():
        run.write_figure(name, fig)
    if res.mdl is not None:
        run.write_table("mdl", res.mdl)
    best = res.best()
    layers = [p.meta.get("layer") for p in res.probes.values()]
    files = []
    for hook, probe in res.probes.items():
        rel = f"probes/{_file_key(hook, probe.meta.get('layer'), layers)}_{probe.name}"
        tensors, doc = probe_files(probe)
        run.write_tensors(f"{rel}.safetensors", tensors, metadata={"format": doc["format"], "type": doc["type"]})
        run.write_json(f"{rel}.json", doc)
        files.append(f"{rel}.json")
    best["file"] = files
    run.write_table("best", best)
    top = top_row(best)
    selectivity = top.get("selectivity")
    metrics: dict[str, Any] = {"metric": top["metric"], "best_hook": top["hook"], "best_probe": top["probe"],
                               "best_mean": float(top["mean"]),
                               "best_selectivity": None if pd.isna(selectivity) else float(selectivity)}
    if causal:
        if prompts is None:
            prompts = store_prompts(store)
        chosen, probe = top, res.probes[top["hook"]]
        kind = make_probe(causal_probe).name if causal_probe is not None else top["probe"]
        if kind != top["probe"]:
            if kind not in set(res.table["probe"]):
                raise DataError(f"causal_probe {causal_probe!r} was not swept; add it to probes={list(probes)}.")
            chosen = top_row(res.table, probe=kind)
            probe = res.fitted[(chosen["hook"], kind)]  # fitted on all rows by the sweep
        with run.timer("causal"):
            result = causal_check(model, prompts, probe, mode="ablate", n_random=n_random, seed=seed,
                                  answer_tokens=answer_tokens)
        result["probe"] = {"hook": chosen["hook"], "probe": chosen["probe"], "file": chosen.get("file")}
        run.write_json("causal.json", result)
        d, r = result["direction"]["delta"], result["random_mean_delta"]
        metrics.update({f"causal_{k}": v for k, v in d.items() if isinstance(v, float)})
        metrics.update({f"causal_random_{k}": v for k, v in r.items()})
    run.finish(metrics)
    distributed.barrier()
    return run
