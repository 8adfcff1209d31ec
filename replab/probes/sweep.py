"""``sweep``: every probe type on every hook, cross-validated, with honest baselines.

For each hook the task labels, a control task (Hewitt & Liang) and shuffled labels are
scored on the same folds; the result is a tidy table (one row per hook x probe x task) plus
the figures, the best probe of each hook refitted on all rows, and optionally MDL codelengths.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from replab.errors import DataError
from replab.models.hooks import hook_layer
from replab.probes.base import Probe, as_features, as_values, encode_labels, make_probe
from replab.probes.baselines import control_labels, shuffled_labels
from replab.probes.config import SweepConfig
from replab.probes.figures import probe_figures
from replab.probes.folds import make_folds
from replab.probes.inputs import Data, as_data, column, select_hooks
from replab.probes.logistic import LogisticProbe
from replab.probes.mdl import online_codelength
from replab.probes.threads import logistic_macs, solver_threads
from replab.probes.workspace import reuse
from replab.protocols import ActivationSource

def top_row(table: pd.DataFrame, probe: str | None = None) -> pd.Series:
    """The best task row of a sweep table (optionally of one probe type): highest mean, ties
    (several layers at accuracy 1.0) broken by higher selectivity, then by the earlier hook."""
    rows = table[table["task"] == "task"] if "task" in table else table
    if probe is not None:
        rows = rows[rows["probe"] == probe]
    if rows.empty:
        raise DataError(f"No task rows{'' if probe is None else f' for probe {probe!r}'} in the sweep table.")
    sel = rows["selectivity"].fillna(-1.0) if "selectivity" in rows else 0.0
    return rows.assign(_sel=sel).sort_values(["mean", "_sel"], ascending=False, kind="stable").iloc[0]


@dataclass(frozen=True)
class SweepResult:
    """What ``sweep`` returns.

    Attributes:
        table: one row per hook x probe x task (``task``, ``control``, ``shuffled``) with
            columns hook, layer, probe, task, metric, mean, std (over folds), n (rows),
            folds, and on task rows selectivity / selectivity_std (task - control, per fold).
        figure: metric by layer (the ``metric_by_layer`` entry of ``figures``).
        figures: every figure of ``probe_figures``, keyed by file name (built on first use:
            Plotly figures cost as much as the whole fit on a small store).
        probes: hook -> the best probe type on that hook, refitted on all rows.
        fitted: (hook, probe name) -> every probe type on every hook, refitted on all rows
            (``probes`` holds the winners among them).
        mdl: with ``mdl=True``, one row per hook x task (task, control) with codelength,
            uniform_codelength, compression, n.
        config: the settings, for run directories.
    """

    table: pd.DataFrame
    probes: dict[str, Probe]
    fitted: dict[tuple[str, str], Probe] = field(default_factory=dict)
    mdl: pd.DataFrame | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def figures(self) -> dict:
        return probe_figures(self.table, self.mdl)

    @property
    def figure(self):
        return self.figures["metric_by_layer"]

    def best(self) -> pd.DataFrame:
        """Per hook: the best probe, its task metric and selectivity."""
        t = self.table[self.table["task"] == "task"]
        keep = [(h, p.name) for h, p in self.probes.items()]
        rows = t.set_index(["hook", "probe"]).loc[keep].reset_index()
        return rows[[c for c in ("hook", "layer", "probe", "metric", "mean", "std", "selectivity") if c in rows]]


def _control_types(data: Data, control_by) -> np.ndarray:
    if control_by is not None:
        return column(data, control_by, "control_by")
    for col in ("subject", "token_id"):
        if col in data.metadata.columns and data.metadata[col].notna().all():
            return data.metadata[col].to_numpy()
    raise DataError(
        "The control task needs a word type per row: the store has no 'subject' or 'token_id' column. "
        "Pass control_by=<column or array>, or control=False."
    )


CPU_BATCH_BYTES = 2**26
"""Memory for the hooks fitted in one batch on the CPU (``layers_per_batch=None``): small stores'
hooks share a solve, whose per-iteration overhead then counts once (world sentiment, 4 x 1,000 x
256: 0.07 s vs 0.11 s); a larger hook is fitted alone, since a batch runs until its slowest layer
converges (12 x 4,000 x 768 together: 1.4 s vs 0.8 s)."""


def _hook_batches(data: Data, hooks: list[str], per_batch: int | None, device) -> list[list[str]]:
    """Consecutive hooks of equal width, ``per_batch`` at a time. Default: as many as fit in
    ``CPU_BATCH_BYTES`` on the CPU, on CUDA in a quarter of the free GPU memory; about four
    float32 copies of each hook's activations while fitting."""
    widths = [tuple(np.shape(data.arrays[h]))[1:] for h in hooks]  # np.shape reads .shape, loads nothing
    if per_batch is None:
        budget = CPU_BATCH_BYTES
        if device is not None and torch.device(device).type == "cuda":
            budget = 0.25 * torch.cuda.mem_get_info(torch.device(device))[0]
        per_batch = max(1, int(budget // (4 * 4 * data.n * max(math.prod(w) for w in widths))))
    if per_batch < 1:
        raise DataError(f"layers_per_batch must be >= 1, got {per_batch}.")
    batches: list[list[str]] = []
    last = None
    for hook, width in zip(hooks, widths):
        if batches and len(batches[-1]) < per_batch and width == last:
            batches[-1].append(hook)
        else:
            batches.append([hook])
        last = width
    return batches


@reuse()  # the fits centre each batch of hooks into one reused buffer (workspace.py)
def sweep(
    store: ActivationSource,
    hooks: str | Sequence[str] | None = None,
    probes: Sequence[str | Probe] = ("logistic",),
    target="label",
    cv: int = SweepConfig.cv,
    groups=SweepConfig.groups,
    *,
    control: bool = SweepConfig.control,
    shuffled: bool = SweepConfig.shuffled,
    control_by=SweepConfig.control_by,
    mdl: bool = SweepConfig.mdl,
    seed: int = SweepConfig.seed,
    device: str | torch.device | None = SweepConfig.device,
    layers_per_batch: int | None = SweepConfig.layers_per_batch,
    progress: bool = True,
) -> SweepResult:
    """Cross-validate every probe on every hook, with control-task and shuffled-label baselines.

    Args:
        store: an ``ActivationStore`` (or any object with ``hooks``, ``store[hook]`` ``[n, d]``,
            ``len``, ``metadata``, ``manifest``), or a ``{hook: array [n, d]}`` mapping.
        hooks: names or globs to probe (default: every hook of the store).
        probes: names from ``PROBES`` (``"logistic"``, ``"meandiff"``, ``"meandiff-iid"``,
            ``"ridge"``) or configured probe instances; all classifiers or all regressors.
        target: metadata column (``"label"``, or ``"target"`` for ridge) or an array ``[n]``.
        cv: folds. Classification folds are stratified.
        groups: metadata column (e.g. ``"subject"``) or array; no group is split across folds.
        control: add the Hewitt & Liang control task (word type = ``control_by``, default the
            ``subject`` column, else ``token_id``) and selectivity = task - control.
        shuffled: add a shuffled-label baseline.
        control_by: column or array of word types for the control task.
        mdl: also compute the online codelength (Voita & Titov) of a logistic probe for the
            task and control labels (classification only).
        seed: folds, control draw, shuffle and MDL order.
        device: move activations there (``"cuda"`` runs the probes' matrix products on the GPU).
        layers_per_batch: hooks whose logistic probes are fitted in one batch (every fold,
            target and layer together). Default: as many as fit in 64 MiB on the CPU (four
            copies of each hook's activations: a small store's hooks together, larger hooks one
            at a time), on a GPU in a quarter of its free memory.
        progress: show a progress bar over the fits (hook x probe x fold x target, and each
            refit), ticked as each converges.

    Returns:
        A ``SweepResult`` (table, figures, best probe per hook, optional MDL table).
    """
    data = as_data(store)
    probe_objs = [make_probe(p) for p in probes]
    if not probe_objs:
        raise DataError("No probes given; pass e.g. probes=['logistic'].")
    names = [p.name for p in probe_objs]
    if len(set(names)) != len(names):
        raise DataError(f"Probe list {names} repeats a probe type.")
    kinds = {p.task for p in probe_objs}
    if len(kinds) != 1:
        raise DataError(f"Probes {names} mix classification and regression; sweep them separately.")
    task = kinds.pop()
    if mdl and task != "classification":
        raise DataError("MDL probing codes class labels; use mdl=False for regression targets.")
    hook_list = select_hooks(data.hooks, hooks)
    what = f"target {target!r}" if isinstance(target, str) else "target"
    raw = column(data, target, "target")
    if task == "classification":
        classes, y = encode_labels(raw, data.n, what)
        labels = classes[y]
    else:
        y = labels = as_values(raw, data.n, what)
    folds = make_folds(y, task=task, cv=cv, groups=column(data, groups, "groups"), seed=seed,
                       classes=classes if task == "classification" else None)
    targets = {"task": y}
    if control:
        types = _control_types(data, control_by)
        n_types = len(pd.unique(types))
        if n_types < 10:
            warnings.warn(f"The control task has only {n_types} word types, so its labels are nearly a relabelling "
                          "of the task (or constant) and selectivity says little; use a finer control_by column.",
                          stacklevel=2)
        targets["control"] = control_labels(y, types, seed)
    if shuffled:
        targets["shuffled"] = shuffled_labels(y, seed)
    position, model = data.manifest.get("positions"), data.manifest.get("model")
    mdl_C = next((p.C for p in probe_objs if isinstance(p, LogisticProbe)), 1.0)

    rows: list[dict[str, Any]] = []
    mdl_rows: list[dict[str, Any]] = []
    best: dict[str, Probe] = {}
    every: dict[tuple[str, str], Probe] = {}
    mdl_tasks = ("task", "control") if control else ("task",)
    # one tick per fit (hook x probe x fold x target, and each refit) and per MDL codelength, as each finishes:
    # a batch of hooks is solved at once, so counting hooks would leave the bar still until the batch ends
    per_hook = len(probe_objs) * (len(folds) * len(targets) + 1) + (len(mdl_tasks) if mdl else 0)
    bar = tqdm(total=per_hook * len(hook_list), desc="probe sweep", unit="fit", disable=not progress)
    n_logits = len(classes) if task == "classification" else 1
    for chunk in _hook_batches(data, hook_list, layers_per_batch, device):
        width = math.prod(np.shape(data.arrays[chunk[0]])[1:])
        # the activations' checks and copies on as many threads as the batch's fit (each probe picks its own)
        with solver_threads(logistic_macs(len(chunk) * data.n * width, len(targets) * len(folds) + 1, n_logits),
                            device):
            Xs = [as_features(data.arrays[h], what=f"Activations of {h}").to(device) for h in chunk]
            Xs = Xs[0][None] if len(Xs) == 1 else torch.stack(Xs)
        results = {p.name: p.cross_validate_stack(Xs, targets, folds, refit=labels, progress=bar.update)
                   for p in probe_objs}
        for i, (hook, X) in enumerate(zip(chunk, Xs)):
            layer = hook_layer(hook)
            means, fitted = {}, {}
            for probe in probe_objs:
                scores, fitted[probe.name] = results[probe.name][i]  # also fitted on all rows
                means[probe.name] = scores["task"].mean()
                for t, sc in scores.items():
                    row = {"hook": hook, "layer": layer, "probe": probe.name, "task": t, "metric": probe.metric,
                           "mean": float(sc.mean()), "std": float(sc.std()), "n": data.n, "folds": len(folds)}
                    if control and t == "task":
                        diff = sc - scores["control"]
                        row.update(selectivity=float(diff.mean()), selectivity_std=float(diff.std()))
                    rows.append(row)
            for name, probe in fitted.items():
                probe._provenance(hook, position, model)
                probe.meta.update({"layer": layer, "target": target if isinstance(target, str) else "array",
                                   "cv_metric": probe.metric, "cv_mean": float(means[name]),
                                   **({"model_hash": data.manifest["model_hash"]}
                                      if data.manifest.get("model_hash") else {})})
                every[(hook, name)] = probe
            best[hook] = fitted[max(means, key=means.get)]
            if mdl:
                for t in mdl_tasks:
                    r = online_codelength(X, targets[t], classes=np.arange(len(classes)), seed=seed, C=mdl_C)
                    mdl_rows.append({"hook": hook, "layer": layer, "probe": "logistic", "task": t,
                                     "codelength": r["codelength"], "uniform_codelength": r["uniform_codelength"],
                                     "compression": r["compression"], "n": r["n"]})
                    bar.update(1)
        del Xs, X  # (freed before the next batch is read: the reused buffer is then the only other copy held)
    bar.close()
    table = pd.DataFrame(rows)
    mdl_table = pd.DataFrame(mdl_rows) if mdl else None
    config = {"hooks": hook_list, "probes": names, "probe_params": {p.name: p.params() for p in probe_objs},
              "target": target if isinstance(target, str) else "array", "task": task, "cv": cv,
              "groups": groups if isinstance(groups, str) or groups is None else "array",
              "control": control, "control_by": control_by if isinstance(control_by, str) or control_by is None
              else "array", "shuffled": shuffled, "mdl": mdl, "seed": seed, "n": data.n,
              "store_model": model, "store_model_hash": data.manifest.get("model_hash"), "position": position}
    return SweepResult(table=table, probes=best, fitted=every, mdl=mdl_table, config=config)
