"""``replab relations fit`` on a local HF checkpoint and a paper-format file; LRC directions by their definition."""

from __future__ import annotations

import json

import torch

from replab.cli import main
from replab.relations import build_prompts, fit_concepts, fit_lre, load
from replab.relations.runkind import read_lre
from replab.relations.states import states
from replab.runs import Run

CAPITALS = {"name": "capital", "prompt_templates": ["The capital of {} is"],
            "samples": [{"subject": "France", "object": "Paris"}, {"subject": "Japan", "object": "Tokyo"},
                        {"subject": "dog", "object": "mammal"}, {"subject": "cat", "object": "mammal"}]}


def test_cli_fit_writes_a_relation_run(tiny_checkpoint, tmp_path):
    path = tmp_path / "capital.json"
    path.write_text(json.dumps(CAPITALS))
    out = tmp_path / "run"
    assert main(["relations", "fit", "--model", tiny_checkpoint, "--relation", str(path), "--subject-layer", "1",
                 "--n-train", "2", "--rank", "4", "--out", str(out)]) == 0
    run = Run.open(out)
    assert run.kind == "relation" and run.info["metrics"]["n_test"] == 2 and run.info["metrics"]["rank"] == 4
    assert run.read_json("relation.json")["samples"] == CAPITALS["samples"]
    assert read_lre(run).W.shape == (32, 32)
    assert main(["relations", "fit", "--model", tiny_checkpoint, "--relation", str(tmp_path / "missing.json"),
                 "--out", str(tmp_path / "x")]) == 2


def test_lrc_directions_follow_the_definition(tiny_model, tmp_path):
    path = tmp_path / "capital.json"
    path.write_text(json.dumps(CAPITALS))
    rel = load(path)
    c = fit_concepts(tiny_model, rel, subject_layer=1, object_layer=2, rank=3, method="lrc", n_train=2)
    assert c.objects == ("Paris", "Tokyo", "mammal")
    torch.testing.assert_close(c.V.norm(dim=1), torch.ones(3))
    lre = fit_lre(tiny_model, rel, subject_layer=1, object_layer=2, n_train=2)
    _, o, _ = states(tiny_model, build_prompts(tiny_model, rel, rel.samples, lre.train), lre.subject_hook, lre.object_hook)
    v = ((o - lre.b) @ lre.inverse(3).T)[2:].mean(0)  # the two "mammal" samples, averaged
    torch.testing.assert_close(c.V[2], v / v.norm(), atol=1e-5, rtol=1e-4)
    for method in ("mean", "ridge", "logistic"):
        base = fit_concepts(tiny_model, rel, subject_layer=1, object_layer=2, method=method, n_train=2)
        assert base.V.shape == c.V.shape and torch.allclose(base.V.norm(dim=1), torch.ones(3))


def test_cli_sweep_with_no_answered_sample_keeps_no_rank(tiny_checkpoint, tmp_path):
    """The tiny model answers none of the test samples: no causality was measured, so the sweep picks no rank
    (it reported rank 0, the first rank tried)."""
    path = tmp_path / "capital.json"
    path.write_text(json.dumps(CAPITALS))
    assert main(["relations", "sweep", "--model", tiny_checkpoint, "--relation", str(path), "--n-train", "2",
                 "--out", str(tmp_path / "run")]) == 0
    metrics = Run.open(tmp_path / "run").info["metrics"]
    assert metrics["n_correct"] == 0 and metrics["causality"] is None and metrics["rank"] is None
