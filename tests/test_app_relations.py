"""The Relations page under AppTest on a small world relation run: bars and sweep curves equal the run's numbers,
and the live edit's top-5 before/after equal the same edit computed on the raw Hugging Face model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from test_app import app, chart, frame, no_unexpected, values

import replab
from replab.models.tokens import encode, subject_last_index
from replab.relations import Sample, build_prompts, world
from replab.relations.figures import PAPER_GPTJ
from replab.relations.pipeline import relation_run
from replab.relations.runkind import read_lre as run_lre
from replab.world import WORLD_CHECKPOINT


@pytest.fixture(scope="module")
def relation_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("relruns")
    model = replab.load_model("world")
    run = relation_run(model, world("capital"), root / "lre-capital", sweep_layers=[0, 1], betas=(1, 3), ranks=(8, 16))
    return root, run


def _topk(logits: torch.Tensor, k: int = 5) -> list[str]:
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(WORLD_CHECKPOINT) / "tokenizer.json"))
    return [tok.decode([int(t)]) for t in logits.softmax(-1).topk(k).indices]


def test_relations_page_bars_sweep_and_live_edit(relation_runs, monkeypatch):
    from transformers import GPT2LMHeadModel

    root, run = relation_runs
    m = run.info["metrics"]
    at = app(root, monkeypatch, "6_Relations.py")
    no_unexpected(at)
    bars = chart(at, "LRE faithfulness and causality per relation")
    traces = {t["name"]: t for t in bars["data"]}
    assert values(traces["faithfulness"]["y"]).tolist() == pytest.approx([m["faithfulness"]])
    assert values(traces["causality"]["y"]).tolist() == pytest.approx([m["causality"]])
    assert values(traces["paper GPT-J faithfulness (same category)"]["y"]).tolist() == [PAPER_GPTJ["factual"][0]]
    assert m["faithfulness"] >= 0.9 and m["subject_layer"] == 0  # capital is linear from the embedding output
    sweep = pd.read_csv(run.path / "sweep.csv")
    faith = chart(at, "capital: LRE faithfulness by subject layer")
    for t in faith["data"]:
        beta = float(t["name"].split("=")[1])
        rows = sweep[sweep["beta"] == beta].sort_values("layer")
        assert values(t["x"]).tolist() == rows["layer"].tolist()
        assert values(t["y"]).tolist() == pytest.approx(rows["faithfulness"].tolist())
    caus = chart(at, "capital: LRE causality by rank")
    assert sorted(t["name"] for t in caus["data"]) == ["layer 0", "layer 1"]

    at.selectbox(key="rel_subject").set_value("France")
    at.selectbox(key="rel_target").set_value("Japan")
    at.number_input(key="rel_rank").set_value(16).run()
    no_unexpected(at)
    before, after = frame(at, "before", "p"), frame(at, "after", "p")
    assert len(before) == len(after) == 5
    # the same edit on the raw HF model: Δh = W_16⁺(z′ − z) added to the embedding output at France's last token
    model = replab.load_model("world")
    hf = GPT2LMHeadModel.from_pretrained(str(WORLD_CHECKPOINT)).eval()
    prompt = at.code[0].value
    target_prompt = build_prompts(model, world("capital"), [Sample("Japan", "?")], run_lre(run).train).texts[0]
    lre = run_lre(run)
    U, S, Vh = torch.linalg.svd(lre.W.double(), full_matrices=False)
    pinv = (Vh[:16].T @ torch.diag(1 / S[:16]) @ U[:, :16].T).float()

    def run_hf(text: str, delta=None):
        ids = torch.tensor([encode(model, text)])
        emb = hf.transformer.wte(ids)
        if delta is not None:
            emb[0, subject_last_index(model, text, "France")] += delta
        out = {}
        handle = hf.transformer.h[-1].register_forward_hook(
            lambda mod, i, o: out.setdefault("z", o[0] if isinstance(o, tuple) else o))
        logits = hf(inputs_embeds=emb).logits[0, -1]
        handle.remove()
        return logits, out["z"][0, -1]

    with torch.no_grad():
        logits, z = run_hf(prompt)
        _, z_target = run_hf(target_prompt)
        edited, _ = run_hf(prompt, (z_target - z) @ pinv.T)
    for shown, col, ref in ((before, "before", logits), (after, "after", edited)):
        assert shown[col].tolist()[:3] == _topk(ref)[:3]  # ranks 4-5 are near ties at float tolerance
        ids = [model.tokenizer.encode(t, add_special_tokens=False)[0] for t in shown[col]]
        torch.testing.assert_close(torch.tensor(shown["p"].tolist()), ref.softmax(-1)[ids], rtol=0, atol=2e-3)
    assert after["after"].iloc[0].strip() == "Tokyo"  # the edit moves the answer to Japan's capital


def test_relations_page_with_an_unanswered_run_and_a_relation_measured_twice(relation_runs, tmp_path, monkeypatch):
    """A run whose model answered no test sample (faithfulness and causality None) renders as n/a, not a
    traceback; two runs of one relation get one bar each, named by their directory."""
    import shutil

    from replab.relations.runkind import write_relation_run

    _, run = relation_runs
    unanswered = {**run.info["metrics"], "faithfulness": None, "causality": None, "n_correct": 0, "rank": None}
    write_relation_run(tmp_path / "a" / "lre", run_lre(run), world("capital"), unanswered)
    shutil.copytree(run.path, tmp_path / "b" / "lre")
    at = app(tmp_path, monkeypatch, "6_Relations.py")
    no_unexpected(at)
    assert at.selectbox(key="relation_run").value == "a/lre"
    assert [(m.label, m.value) for m in at.metric][1:3] == [("Faithfulness", "n/a"), ("Causality", "n/a")]
    traces = {t["name"]: t for t in chart(at, "LRE faithfulness and causality per relation")["data"]}
    assert list(values(traces["faithfulness"]["x"])) == ["capital (a/lre)", "capital (b/lre)"]
    assert frame(at, "run", "relation", "faithfulness")["run"].tolist() == ["a/lre", "b/lre"]
    at.selectbox(key="relation_run").set_value("b/lre").run()
    no_unexpected(at)
    assert at.metric[1].value == f"{run.info['metrics']['faithfulness']:.3f}"
