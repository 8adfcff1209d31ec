"""Integration: the demo pipeline creates every run once, on the world model, and reuses them."""

import pytest

from replab.demo import DemoConfig, build_demo_runs
from replab.runs import Run, find_runs

pytestmark = pytest.mark.integration


def test_demo_builds_every_run_then_reuses_them(tmp_path, capsys):
    cfg = DemoConfig(runs=str(tmp_path / "demo"), corpus_documents=120, corpus_tokens=3000, d_sae=64, k=4,
                     sae_steps=10, sae_batch_size=256, architectures=("topk", "matching_pursuit"), relations=("capital",),
                     lens_steps=4, lens_documents=40, lens_heldout_documents=8)
    root = build_demo_runs(cfg)
    names = {p.name for p in find_runs(root)}
    assert names == {"world-eval", "acts-sentiment", "probe-sentiment", "acts-latitude", "probe-latitude",
                     "acts-corpus", "sae-topk", "sae-matching_pursuit", "lre-capital", "lens-tuned",
                     "lens-attention"}
    runs = {p.name: Run.open(p) for p in find_runs(root)}
    assert runs["probe-sentiment"].info["metrics"]["best_mean"] > 0.9  # the model carries sentiment
    assert (root / "probe-sentiment" / "causal.json").is_file()
    assert "ce_recovered" in runs["sae-topk"].info["metrics"]
    assert (root / "sae-topk" / "features" / "summary.json").is_file()
    for name in ("lens-tuned", "lens-attention"):
        layers = runs[name].read_json("layers.json")
        assert {r["layer"] for r in layers} == set(range(4))
        assert runs[name].info["metrics"]["mean_kl"] > 0
    heads = [r for r in runs["lens-attention"].read_json("layers.json") if r["head"] >= 0]
    assert len(heads) == 4 * 4  # blocks x heads
    stamps = {n: (root / n / "run.json").stat().st_mtime_ns for n in names}
    capsys.readouterr()
    build_demo_runs(cfg)
    assert capsys.readouterr().out.count("reusing") == len(names)
    assert stamps == {n: (root / n / "run.json").stat().st_mtime_ns for n in names}
