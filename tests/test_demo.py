"""Integration: the demo pipeline creates every run once, on the world model, and reuses them."""

import pytest

from replab.demo import DemoConfig, build_demo_runs
from replab.runs import Run, find_runs

pytestmark = pytest.mark.integration


def test_demo_builds_every_run_then_reuses_them(tmp_path, capsys):
    cfg = DemoConfig(runs=str(tmp_path / "demo"), corpus_documents=120, corpus_tokens=3000, d_sae=64, k=4,
                     sae_steps=10, sae_batch_size=256, architectures=("topk", "matching_pursuit"),
                     relations=("capital",), lens_documents=60, lens_steps=8, lens_batch_size=128, lens_eval_tokens=600)
    root = build_demo_runs(cfg)
    names = {p.name for p in find_runs(root)}
    assert names == {"world-eval", "acts-sentiment", "probe-sentiment", "acts-latitude", "probe-latitude",
                     "acts-corpus", "sae-topk", "sae-matching_pursuit", "lre-capital", "lens-logit", "lens-shortcut",
                     "lens-tuned", "lens-attention"}
    runs = {p.name: Run.open(p) for p in find_runs(root)}
    assert runs["probe-sentiment"].info["metrics"]["best_mean"] > 0.9  # the model carries sentiment
    assert (root / "probe-sentiment" / "causal.json").is_file()
    assert "ce_recovered" in runs["sae-topk"].info["metrics"]
    assert (root / "sae-topk" / "features" / "summary.json").is_file()
    layers = {k: runs[f"lens-{k}"].read_table("layers") for k in ("logit", "shortcut", "tuned", "attention")}
    assert len(layers["logit"]) == len(layers["tuned"]) == 4 and (layers["tuned"]["kl"] < layers["logit"]["kl"]).all()
    assert len(layers["attention"]) == 4 and runs["lens-attention"].info["config"]["lens_config"]["form"] \
        == "translator"
    stamps = {n: (root / n / "run.json").stat().st_mtime_ns for n in names}
    capsys.readouterr()
    build_demo_runs(cfg)
    assert capsys.readouterr().out.count("reusing") == len(names)
    assert stamps == {n: (root / n / "run.json").stat().st_mtime_ns for n in names}
