"""The app's Lenses page on lens runs made by the real `replab lens train|eval` commands on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from app_runs import _cli, built, prompts
from test_app import app, chart, frame, messages, no_unexpected, values

import replab
from replab.lenses import load

PROMPT = "The movie was great. It was"


@pytest.fixture(scope="module")
def lens_runs(tmp_path_factory):
    """A runs root with logit, tuned and attention (translator) lens runs, the first two scored."""
    ckpt = built(tmp_path_factory)[0].checkpoint
    base = tmp_path_factory.mktemp("lens-app")
    text = base / "prompts.txt"
    text.write_text("\n".join(prompts().texts))
    root = base / "runs"
    for name, extra in (("lens-logit", ["--kind", "logit"]), ("lens-tuned", ["--kind", "tuned"]),
                        ("lens-attn", ["--kind", "attention", "--form", "translator"])):
        _cli("replab.lenses.cli", ["lens", "train", "--model", str(ckpt), "--text", str(text), "--steps", "20",
                                   "--batch-size", "64", "--out", str(root / name), *extra])
        if name != "lens-attn":
            _cli("replab.lenses.cli", ["lens", "eval", "--lens", str(root / name), "--model", str(ckpt),
                                       "--text", str(text)])
    return root, ckpt


def test_lenses_page_curves_prompt_table_and_head_grid(lens_runs, monkeypatch):
    root, ckpt = lens_runs
    model = replab.load_model(ckpt)
    at = app(root, monkeypatch, "5_Lenses.py")
    at.text_input(key="lens_prompt").set_value(PROMPT).run()
    no_unexpected(at)
    assert not at.error, messages(at)

    # quality curves: one line per scored lens, the run's own layers.csv numbers
    curves = chart(at, "Lens quality by layer")
    kl = {t["name"]: values(t["y"]) for t in curves["data"] if t["xaxis"] == "x"}
    assert set(kl) == {"lens-logit (logit)", "lens-tuned (tuned)"}
    table = replab.runs.Run.open(root / "lens-tuned").read_table("layers")
    np.testing.assert_allclose(kl["lens-tuned (tuned)"], table["kl"], rtol=1e-6)
    assert (kl["lens-tuned (tuned)"] < kl["lens-logit (logit)"]).all()  # trained beats the logit lens

    # lens x position: the logit lens's last row is the model's own output; colour = p(true next token)
    at.selectbox(key="lens_run").set_value("lens-logit").run()
    grid = chart(at, "logit lens (lens-logit): top token per layer and position, coloured by p(true next token)")
    z = values(grid["data"][0]["z"])
    tokens = model.to_tokens(PROMPT)
    probs = torch.softmax(model(tokens)[0].detach().float(), -1)
    assert z.shape == (model.cfg.n_layers + 1, tokens.shape[1])
    np.testing.assert_allclose(z[-1, :-1], probs[torch.arange(tokens.shape[1] - 1), tokens[0, 1:]], rtol=1e-4)
    assert np.isnan(z[-1, -1])
    top = model.tokenizer.decode([int(probs[-1].argmax())])
    assert grid["data"][0]["text"][-1][-1] == f"{top!r} {float(probs[-1].max()):.2f}"

    # attention-lens grid and the selected head's top-k, against the lens applied to hook_z by hand
    lens = load(root / "lens-attn" / "lens", model)
    _, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_z")
    z1 = cache["blocks.1.attn.hook_z"][0, -1].reshape(-1)
    ref = torch.softmax(lens.head_logits(z1, 1)[1].detach(), -1).topk(5)
    at.selectbox(key="attn_lens_block").set_value(1)
    at.selectbox(key="attn_lens_head").set_value(1).run()
    shown = frame(at, "rank", "token", "prob")
    assert shown["token"].tolist() == [model.tokenizer.decode([i]) for i in ref.indices.tolist()]
    np.testing.assert_allclose(shown["prob"], ref.values, rtol=1e-4)
    head_grid = chart(at, "Attention lens: each head's top tokens at the last position")["data"][0]
    assert values(head_grid["z"]).shape == (model.cfg.n_layers, model.cfg.n_heads)
    np.testing.assert_allclose(values(head_grid["z"])[1, 1], ref.values[0], rtol=1e-4)
    assert chart(at, "Attention lens, block 1 head 1: top tokens")


def test_lenses_page_on_a_root_without_lens_runs_says_how(tmp_path, monkeypatch):
    at = app(tmp_path / "empty", monkeypatch, "5_Lenses.py")
    no_unexpected(at)
    assert "No lens runs under" in messages(at) and "replab lens train" in messages(at)
