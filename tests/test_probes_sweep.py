"""Sweeps against per-fold scikit-learn loops, baselines, MDL by hand, figures and the run directory."""

from __future__ import annotations

import argparse
import importlib
import math

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from test_probes_fakes import FakeStore, planted_store

from replab.errors import DataError, HookNameError
from replab.probes import (LogisticProbe, MeanDiffProbe, RidgeProbe, control_labels, load_probe, online_codelength,
                           shuffled_labels, sweep)
from replab.probes.base import as_features
from replab.probes.logistic import fit_logistic
from replab.probes.cli import register
from replab.probes.runkind import probe_store
from replab.probes.folds import make_folds
from replab.runs import Run


def test_logistic_sweep_matches_sklearn_cross_val_score():
    store = planted_store()
    res = sweep(store, probes=["logistic"], cv=5, seed=0, progress=False)
    t = res.table
    assert list(t.columns[:8]) == ["hook", "layer", "probe", "task", "metric", "mean", "std", "n"]
    y = store.metadata["label"].to_numpy()
    for hook in store.hooks:
        ref = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression()), store[hook], y,
                              cv=StratifiedKFold(5, shuffle=True, random_state=0))
        row = t[(t.hook == hook) & (t.task == "task")].iloc[0]
        assert row["mean"] == pytest.approx(ref.mean(), abs=0.01)  # within one point
        assert row["std"] == pytest.approx(ref.std(), abs=0.01)
        assert row["layer"] == int(hook.split(".")[1]) and row["n"] == len(store)
    assert set(t.task) == {"task", "control", "shuffled"}
    task = t[t.task == "task"].set_index("hook")
    ctrl = t[t.task == "control"].set_index("hook")
    np.testing.assert_allclose(task["selectivity"], task["mean"] - ctrl["mean"], atol=1e-12)
    assert t[t.task == "shuffled"]["mean"].between(0.35, 0.65).all()  # chance
    assert task["mean"].iloc[-1] > 0.9  # planted signal


@pytest.mark.parametrize("probes", [["logistic", "meandiff"], ["logistic"]])
def test_sweep_batched_across_layers_equals_one_layer_at_a_time(probes):
    store = planted_store(n_layers=4)
    wide = np.random.default_rng(1).normal(size=(len(store), 30)).astype(np.float32)  # another width: own batch
    arrays = {**{h: store[h] for h in store.hooks}, "blocks.9.hook_mlp_out": wide}
    stacked = FakeStore(arrays, store.metadata, store.manifest)
    one = sweep(stacked, probes=probes, cv=4, seed=1, progress=False, layers_per_batch=1)
    batched = sweep(stacked, probes=probes, cv=4, seed=1, progress=False, layers_per_batch=3)
    cols = ["hook", "probe", "task", "mean", "std"]
    pd.testing.assert_frame_equal(one.table[cols], batched.table[cols], atol=1e-9, rtol=0)
    for hook in stacked.hooks:
        a, b = one.probes[hook], batched.probes[hook]
        assert type(a) is type(b) and b.hook == hook and b.d_ == arrays[hook].shape[1]
        np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-3, atol=1e-4)
        np.testing.assert_array_equal(b.predict(arrays[hook]), a.predict(arrays[hook]))
    with pytest.raises(DataError, match="layers_per_batch must be >= 1"):
        sweep(stacked, probes=probes, progress=False, layers_per_batch=0)


def test_progress_ticks_each_fit_as_it_converges(monkeypatch):
    sweep_module = importlib.import_module("replab.probes.sweep")  # (the package exports the function as `sweep`)
    bars = []

    class Recorder:  # stands in for tqdm: records every tick
        def __init__(self, total, **kwargs):
            self.total, self.ticks = total, []
            bars.append(self)

        def update(self, n=1):
            self.ticks.append(n)

        def close(self):
            pass

    monkeypatch.setattr(sweep_module, "tqdm", Recorder)
    store = planted_store(n_layers=3)
    sweep(store, probes=["logistic", "meandiff"], cv=4, mdl=True, seed=0, layers_per_batch=3)
    (bar,) = bars
    # 3 hooks x (2 probes x (4 folds x 3 targets + refit) + 2 codelengths), every one ticked once
    assert bar.total == 3 * (2 * (4 * 3 + 1) + 2) == sum(bar.ticks)
    logistic_ticks = len(bar.ticks) - 3 - 6  # meandiff ticks once per hook, MDL once per codelength
    assert logistic_ticks > 1  # the batched logistic solve ticks as its problems converge, not once per batch

    X = torch.from_numpy(np.stack([store[h] for h in store.hooks]))
    y = (store.metadata["label"] == "positive").to_numpy()
    labels = torch.from_numpy(np.stack([y, shuffled_labels(y, 0)], 1).astype(np.int64))
    ticks = []
    fit_logistic(X, labels, torch.ones(len(y), 2, dtype=torch.bool), 2, progress=ticks.append)
    assert sum(ticks) == 3 * 2 and len(ticks) > 1  # the planted task converges before the shuffled labels
    ticks.clear()
    with pytest.warns(ConvergenceWarning):  # problems stopped by max_iter are ticked too
        fit_logistic(X, labels, torch.ones(len(y), 2, dtype=torch.bool), 2, max_iter=1, progress=ticks.append)
    assert sum(ticks) == 3 * 2


def test_ridge_and_meandiff_sweeps_match_per_fold_references():
    store = planted_store(n=300)
    res = sweep(store, probes=["ridge"], target="target", cv=5, progress=False)
    tgt = store.metadata["target"].to_numpy()
    for hook in store.hooks:
        ref = cross_val_score(Ridge(alpha=store.d(hook)), store[hook].astype(np.float64), tgt, scoring="r2",
                              cv=KFold(5, shuffle=True, random_state=0))
        row = res.table.query("hook == @hook and task == 'task'").iloc[0]
        assert (row["metric"], row["mean"]) == ("r2", pytest.approx(ref.mean(), abs=1e-8))
    labels = store.metadata["label"].to_numpy()
    folds = make_folds(np.unique(labels, return_inverse=True)[1], task="classification", cv=4, seed=3)
    hook = store.hooks[0]
    for iid in (False, True):
        res = sweep(store, hooks=hook, probes=[MeanDiffProbe(iid=iid)], cv=4, seed=3, control=False,
                    shuffled=False, progress=False)
        manual = [MeanDiffProbe(iid=iid).fit(store[hook][tr], labels[tr]).score(store[hook][te], labels[te])
                  for tr, te in folds]
        assert res.table["mean"].iloc[0] == pytest.approx(np.mean(manual), abs=1e-12)


@pytest.mark.parametrize("probe", [LogisticProbe(), MeanDiffProbe(iid=True), RidgeProbe()])
def test_cross_validate_refit_equals_a_plain_fit(probe):
    store = planted_store(n=200)
    X = as_features(store[store.hooks[1]])
    col = "target" if probe.task == "regression" else "label"
    y = store.metadata[col].to_numpy()
    task = y if probe.task == "regression" else np.unique(y, return_inverse=True)[1]
    folds = make_folds(task, task=probe.task, cv=4)
    refitted = probe.clone()
    refitted.cross_validate(X, {"task": task}, folds, refit=y)
    plain = probe.clone().fit(X, y)
    np.testing.assert_allclose(refitted.coef_, plain.coef_, rtol=1e-4, atol=1e-6)
    assert refitted.predict(X).tolist() == plain.predict(X).tolist()
    if probe.kind == "logistic":  # three-class refit labels cannot share the binary batch: fitted on their own
        three = np.arange(len(y)) % 3
        refitted.cross_validate(X, {"task": task}, folds, refit=three)
        assert refitted.coef_.shape == (3, X.shape[1]) and list(refitted.classes_) == [0, 1, 2]


def test_control_task_is_constant_per_subject_and_seeded():
    rng = np.random.default_rng(0)
    subjects = rng.integers(0, 50, 2000).astype(str)
    y = np.where(rng.random(2000) < 0.3, "a", "b")
    c = control_labels(y, subjects, seed=4)
    per_subject = pd.Series(c).groupby(subjects).nunique()
    assert (per_subject == 1).all() and len(per_subject) == 50
    assert set(c) <= {"a", "b"}
    assert np.array_equal(c, control_labels(y, subjects, seed=4))
    assert not np.array_equal(c, control_labels(y, subjects, seed=5))
    # drawn from the label distribution: over many types the share of "a" is near 0.3
    many = control_labels(y, np.arange(2000), seed=0)
    assert abs(np.mean(many == "a") - np.mean(y == "a")) < 0.05
    s = shuffled_labels(y, seed=1)
    assert sorted(s) == sorted(y) and not np.array_equal(s, y)


def test_sweep_uses_subject_for_control_and_groups_keep_subjects_apart():
    store = planted_store(n=240, n_subjects=12)
    res = sweep(store, probes=["logistic"], cv=4, groups="subject", mdl=False, progress=False)
    assert res.config["groups"] == "subject"
    y = np.unique(store.metadata["label"], return_inverse=True)[1]
    subj = store.metadata["subject"].to_numpy()
    for tr, te in make_folds(y, task="classification", cv=4, groups=subj, seed=0):
        assert not set(subj[tr]) & set(subj[te])
    for tr, te in make_folds(store.metadata["target"].to_numpy(), task="regression", cv=4, groups=subj):
        assert not set(subj[tr]) & set(subj[te])


def test_mdl_codelength_matches_hand_computation():
    rng = np.random.default_rng(0)
    n = 40
    X = rng.normal(size=(n, 3)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    fractions = (10.0, 25.0, 50.0, 100.0)
    out = online_codelength(X, y, fractions=fractions, seed=2, tol=1e-8)
    order = np.random.default_rng(2).permutation(n)
    ends = [4, 10, 20, 40]
    bits = ends[0] * math.log2(2)  # first block: uniform code
    for a, b in zip(ends[:-1], ends[1:]):
        train, block = order[:a], order[a:b]
        clf = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-10, max_iter=10_000)).fit(X[train], y[train])
        p = clf.predict_proba(X[block])[np.arange(b - a), y[block]]
        bits += -np.log2(p).sum()
    assert [blk["end"] for blk in out["blocks"]] == ends
    assert out["codelength"] == pytest.approx(bits, rel=2e-3)
    assert out["uniform_codelength"] == n
    assert out["compression"] == pytest.approx(n / out["codelength"])


def test_mdl_in_sweep_compresses_the_task_better_than_the_control():
    store = planted_store(n=400, n_subjects=200)
    res = sweep(store, hooks="blocks.2.*", probes=["logistic"], mdl=True, progress=False)
    m = res.mdl.set_index("task")
    assert m.loc["task", "compression"] > 1.5 > m.loc["control", "compression"]
    assert "mdl_by_layer" in res.figures


def test_figures_draw_baselines_dashed_with_error_bars():
    res = sweep(planted_store(n=200), probes=["logistic", "meandiff"], progress=False)
    fig = res.figure
    names = [tr.name for tr in fig.data]
    assert len(fig.data) == 2 * 3 and "logistic: task" in names and "meandiff: shuffled" in names
    task = next(tr for tr in fig.data if tr.name == "logistic: task")
    ctrl = next(tr for tr in fig.data if tr.name == "logistic: control")
    assert task.line.dash == "solid" and ctrl.line.dash == "dash" and task.error_y.array is not None
    assert list(task.x) == [0, 1, 2]
    assert "selectivity_by_layer" in res.figures


def test_sweep_input_errors():
    store = planted_store(n=100)
    with pytest.raises(DataError, match="mix classification and regression"):
        sweep(store, probes=["logistic", "ridge"], progress=False)
    with pytest.raises(DataError, match="Unknown probe"):
        sweep(store, probes=["svm"], progress=False)
    with pytest.raises(DataError, match="not a metadata column"):
        sweep(store, target="colour", progress=False)
    with pytest.raises(HookNameError, match="matches nothing"):
        sweep(store, hooks="blocks.9.*", progress=False)
    with pytest.raises(DataError, match="MDL"):
        sweep(store, probes=["ridge"], target="target", mdl=True, progress=False)
    with pytest.raises(DataError, match="single class"):
        sweep(store, target=np.zeros(len(store)), progress=False)
    with pytest.raises(DataError, match="shape"):
        sweep(store, target=np.zeros(3), progress=False)
    bad = {h: store[h].copy() for h in store.hooks}
    bad["blocks.1.hook_resid_post"][5, 0] = np.inf
    with pytest.raises(DataError, match="blocks.1.hook_resid_post contains NaN or inf"):
        sweep(FakeStore(bad, store.metadata), progress=False)
    with pytest.raises(DataError, match="word type"):
        sweep({"a": store[store.hooks[0]]}, target=store.metadata["label"].to_numpy(), progress=False)
    with pytest.raises(DataError, match="distinct groups"):
        sweep(store, groups=np.arange(len(store)) % 3, progress=False)


def test_probe_store_writes_run_directory(tmp_path):
    store = planted_store(n=200)
    run = probe_store(store, tmp_path / "probes", probes=["logistic", "meandiff"], mdl=True)
    back = Run.open(tmp_path / "probes")
    assert back.kind == "probe" and back.info["status"] == "complete"
    table = back.read_table("results")
    assert len(table) == 3 * 2 * 3 and set(table.task) == {"task", "control", "shuffled"}
    for name in ("metric_by_layer", "selectivity_by_layer", "mdl_by_layer"):
        assert pio.from_json((tmp_path / "probes" / "figures" / f"{name}.json").read_text()).data
    best = back.read_table("best")
    assert list(best["file"]) == [f"probes/{i}_{p}.json" for i, p in enumerate(best["probe"])]
    probe = load_probe(tmp_path / "probes" / best["file"].iloc[2])
    assert (probe.hook, probe.model, probe.position) == ("blocks.2.hook_resid_post", "planted", "last")
    assert probe.meta["model_hash"] == "0123abcd"
    X = as_features(store["blocks.2.hook_resid_post"])
    assert probe.score(X, store.metadata["label"]) > 0.9
    assert back.read_table("mdl").shape[0] == 3 * 2
    m = run.info["metrics"]
    assert m["best_hook"] == "blocks.2.hook_resid_post" and m["metric"] == "accuracy"
    assert m["best_selectivity"] == pytest.approx(best["selectivity"].iloc[2])


def test_cli_registers_probe_command():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["probe", "--store", "runs/x/acts", "--probes", "logistic,meandiff", "--cv", "5",
                              "--out", "runs/x/probes", "--mdl"])
    assert (args.store, args.probes, args.cv, args.out, args.mdl, args.causal) == (
        "runs/x/acts", "logistic,meandiff", 5, "runs/x/probes", True, False)
    assert callable(args.func)


def test_top_row_breaks_metric_ties_by_selectivity():
    import pandas as pd

    from replab.probes import top_row

    table = pd.DataFrame({
        "hook": ["blocks.0.x", "blocks.1.x", "blocks.2.x", "blocks.1.x"],
        "probe": ["logistic", "logistic", "logistic", "meandiff"],
        "task": ["task", "task", "task", "task"],
        "mean": [1.0, 1.0, 0.9, 0.95],
        "selectivity": [0.1, 0.3, 0.5, 0.6],
    })
    assert top_row(table)["hook"] == "blocks.1.x"
    assert top_row(table, probe="meandiff")["hook"] == "blocks.1.x"
