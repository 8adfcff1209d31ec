"""Lenses on the world model: exact identities, least squares against numpy, training beats the logit lens."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import replab
from replab import lenses
from replab.datasets import TextCorpus
from replab.errors import DataError, RunDirError
from replab.models import run_batches

TEXTS = ["The capital of France is Paris.", "Go one day after Wednesday and you reach Thursday."]


@pytest.fixture(scope="module")
def corpus():
    docs = replab.datasets.load("world:corpus").documents
    return TextCorpus(tuple(docs[:1600]), "train"), TextCorpus(tuple(docs[1600:1640]), "held")


def _acts(model, hooks, **kw):
    (fb,) = run_batches(model, TEXTS, hooks, batch_size=len(TEXTS), **kw)
    return fb


def test_layer_indexing_is_tuned_lens(world_model):
    assert lenses.resid_hook(world_model, 0) == "blocks.0.hook_resid_pre"
    assert lenses.resid_hook(world_model, 3) == "blocks.2.hook_resid_post"
    assert lenses.final_hook(world_model) == "blocks.3.hook_resid_post"
    with pytest.raises(DataError, match="out of range"):
        lenses.resid_hook(world_model, 5)


def test_logit_lens_of_the_last_block_is_the_model_output(world_model):
    fb = _acts(world_model, [lenses.final_hook(world_model)], logits=True)
    got = lenses.LogitLens(world_model)(fb.acts[lenses.final_hook(world_model)], world_model.cfg.n_layers)
    torch.testing.assert_close(got, fb.logits, rtol=0, atol=1e-5)
    df = lenses.logit_lens(world_model, TEXTS[0])
    last = df[df["layer"] == world_model.cfg.n_layers - 1]
    probs = torch.softmax(fb.logits[fb.item == 0], -1)
    np.testing.assert_allclose(last["top_prob"], probs.max(-1).values, rtol=1e-5)


def test_untrained_tuned_lens_is_the_logit_lens(world_model):
    tuned, logit = lenses.TunedLens(world_model), lenses.LogitLens(world_model)
    fb = _acts(world_model, [tuned.input_hook(layer) for layer in tuned.layers()])
    for layer in tuned.layers():
        h = fb.acts[tuned.input_hook(layer)]
        torch.testing.assert_close(tuned(h, layer), logit(h, layer), rtol=0, atol=0)


def test_heads_outputs_plus_bias_are_attn_out(world_model):
    lens = lenses.AttentionLens(world_model, lenses.AttentionLensConfig(form="translator"))
    for block in range(world_model.cfg.n_layers):
        fb = _acts(world_model, [f"blocks.{block}.attn.hook_z", f"blocks.{block}.hook_attn_out"])
        heads = lens.head_outputs(fb.acts[f"blocks.{block}.attn.hook_z"], block)
        assert heads.shape[1:] == (world_model.cfg.n_heads, world_model.cfg.d_model)
        torch.testing.assert_close(heads.sum(1) + world_model.b_O[block].float(),
                                   fb.acts[f"blocks.{block}.hook_attn_out"].float(), rtol=1e-5, atol=1e-5)
        # the per-head logits sum to the layer's lens logits
        torch.testing.assert_close(lens.head_logits(fb.acts[f"blocks.{block}.attn.hook_z"], block).sum(1),
                                   lens(fb.acts[f"blocks.{block}.attn.hook_z"], block), rtol=1e-4, atol=1e-3)


def test_parameter_counts_of_the_attention_lens_forms(world_model):
    H, d, V, L = (world_model.cfg.n_heads, world_model.cfg.d_model, world_model.cfg.d_vocab,
                  world_model.cfg.n_layers)
    full = lenses.AttentionLens(world_model, lenses.AttentionLensConfig(form="full", blocks=(1,)))
    cheap = lenses.AttentionLens(world_model, lenses.AttentionLensConfig(form="translator"))
    assert full.n_params() == H * (d + 1) * V
    assert cheap.n_params() == L * (H * d * d + V)
    with pytest.raises(DataError, match="form"):
        lenses.AttentionLensConfig(form="lowrank")


def test_linear_shortcut_matches_numpy_lstsq(world_model, corpus):
    lens = lenses.LinearShortcut(world_model)
    fb_rows = [fb for fb, _ in zip(run_batches(world_model, corpus[0], [lens.input_hook(1), lenses.final_hook(world_model)],
                                               context=64, batch_size=8), range(2))]
    h = torch.cat([fb.acts[lens.input_hook(1)] for fb in fb_rows])
    final = torch.cat([fb.acts[lenses.final_hook(world_model)] for fb in fb_rows])
    lens.fit_layer(1, h, final)
    want = np.linalg.lstsq(h.double().numpy(), final.double().numpy(), rcond=None)[0]
    np.testing.assert_allclose(lens.maps[1].numpy(), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(DataError, match="n >= d"):
        lens.fit_layer(1, h[:10], final[:10])


def test_trained_tuned_lens_beats_logit_lens_on_held_out_text_and_round_trips(world_model, corpus, tmp_path):
    train, held = corpus
    tuned = lenses.train("tuned", world_model, train, steps=20, batch_size=256, context=64, out=tmp_path / "run",
                         progress=False)
    logit_df = lenses.evaluate(lenses.LogitLens(world_model), world_model, held, context=64)
    tuned_df = lenses.evaluate(tuned, world_model, held, context=64)
    assert (tuned_df["kl"] < logit_df["kl"]).all(), (tuned_df, logit_df)
    assert 0 <= tuned_df.attrs["prediction_depth"] <= world_model.cfg.n_layers
    assert tuned_df["depth_fraction"].is_monotonic_increasing
    run = replab.runs.Run.open(tmp_path / "run")
    assert run.kind == "lens" and run.info["metrics"]["tokens"] == 20 * 256
    back = lenses.load(tmp_path / "run" / "lens", world_model)
    assert isinstance(back, lenses.TunedLens)
    h = torch.randn(3, world_model.cfg.d_model)
    for layer in tuned.layers():
        torch.testing.assert_close(back(h, layer), tuned(h, layer), rtol=0, atol=0)
    with pytest.raises(RunDirError, match="holds no lens"):
        lenses.load(tmp_path, world_model)


def test_attention_lens_save_load_round_trip(world_model, tmp_path):
    lens = lenses.AttentionLens(world_model, lenses.AttentionLensConfig(form="translator", blocks=(0, 2)))
    with torch.no_grad():
        lens.W[1].add_(0.01 * torch.randn_like(lens.W[1]))
    lens.save(tmp_path / "a")
    back = lenses.load(tmp_path / "a", world_model)
    assert back.layers() == [0, 2] and back.config == lens.config
    z = torch.randn(2, world_model.cfg.n_heads * world_model.cfg.d_head)
    torch.testing.assert_close(back(z, 2), lens(z, 2), rtol=0, atol=0)


def test_tuned_lens_format_round_trip(world_model, tmp_path):
    lens = lenses.TunedLens(world_model)
    with torch.no_grad():
        for t in lens.translators:
            t.weight.normal_(0, 0.01)
            t.bias.normal_(0, 0.01)
    lens.save(tmp_path / "tl", format="tuned-lens")
    state = torch.load(tmp_path / "tl" / "params.pt", weights_only=True)
    assert sorted(state) == sorted(f"{i}.{p}" for i in range(world_model.cfg.n_layers) for p in ("weight", "bias"))
    config = json.loads((tmp_path / "tl" / "config.json").read_text())
    assert config["lens_type"] == "linear_tuned_lens" and config["num_hidden_layers"] == world_model.cfg.n_layers
    back = lenses.load(tmp_path / "tl", world_model)
    h = torch.randn(3, world_model.cfg.d_model)
    for layer in lens.layers():
        torch.testing.assert_close(back(h, layer), lens(h, layer), rtol=0, atol=0)
    with pytest.raises(DataError, match="format"):
        lens.save(tmp_path / "x", format="pickle")


def test_cli_trains_a_linear_shortcut_from_a_store_that_beats_the_logit_lens(world_model, corpus, tmp_path):
    from replab.cli import main

    train, held = corpus
    store = replab.capture(world_model, train, ["blocks.0.hook_resid_pre", "blocks.*.hook_resid_post"],
                           out=tmp_path / "acts", max_tokens=2048, context=64)
    assert main(["lens", "train", "--kind", "shortcut", "--store", str(store.path), "--out", str(tmp_path / "sc"),
                 "--steps", "4", "--batch-size", "512"]) in (0, None)
    run = replab.runs.Run.open(tmp_path / "sc")
    assert run.info["config"]["cached"] and run.info["metrics"]["tokens"] == 2048
    lens = lenses.load(tmp_path / "sc" / "lens", world_model)
    shortcut = lenses.evaluate(lens, world_model, held, context=64)
    logit = lenses.evaluate(lenses.LogitLens(world_model), world_model, held, context=64)
    assert (shortcut["kl"] < logit["kl"]).all(), (shortcut, logit)


@pytest.mark.parametrize("form", ["translator", "full"])
def test_training_the_attention_lens_lowers_held_out_kl_at_the_last_position(world_model, corpus, form):
    train, held = corpus
    init = lenses.AttentionLens(world_model, lenses.AttentionLensConfig(form=form))
    trained = lenses.train("attention", world_model, train, steps=8, batch_size=64, form=form, context=64,
                           progress=False)
    before = lenses.evaluate(init, world_model, held, positions="last", context=64)
    after = lenses.evaluate(trained, world_model, held, positions="last", context=64)
    assert list(after["hook"]) == [f"blocks.{b}.attn.hook_z" for b in range(world_model.cfg.n_layers)]
    assert (after["kl"] < before["kl"]).all(), (before, after)


def test_every_lens_kind_loads_in_a_fresh_process(tiny_checkpoint, tiny_model, tmp_path):
    """``lenses.load`` finds every kind without its module having been imported first (a lens saved by
    `replab lens train` is read by `replab lens eval` in another process)."""
    import subprocess
    import sys

    saved = {"TunedLens": lenses.TunedLens(tiny_model), "LinearShortcut": lenses.LinearShortcut(tiny_model),
             "AttentionLens": lenses.AttentionLens(tiny_model)}
    for name, lens in saved.items():
        lens.save(tmp_path / name)
    code = ("import sys, replab; from replab import lenses; m = replab.load_model(sys.argv[1]); "
            "print(*(type(lenses.load(d, m)).__name__ for d in sys.argv[2:]))")
    out = subprocess.run([sys.executable, "-c", code, tiny_checkpoint, *(str(tmp_path / n) for n in saved)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == list(saved)


def test_loading_a_lens_onto_other_weights_warns(tiny_checkpoint, tiny_model, tmp_path):
    import warnings

    import replab

    lenses.TunedLens(tiny_model).save(tmp_path / "lens")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lenses.load(tmp_path / "lens", tiny_model)
    other = replab.load_model(tiny_checkpoint)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    with pytest.warns(UserWarning, match="was trained on .* weights"):
        lenses.load(tmp_path / "lens", other)
