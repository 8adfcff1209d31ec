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


PROMPTS = ["The capital of France is", "The opposite of hot is", "The plural of child is"]


def test_head_tables_of_an_untrained_lens_are_direct_logit_attribution(world_model):
    lens = lenses.AttentionLens(world_model, lenses.AttentionLensConfig(form="full"))
    H, L = world_model.cfg.n_heads, world_model.cfg.n_layers
    hooks = [f"blocks.{b}.attn.hook_z" for b in range(L)]
    (fb,) = run_batches(world_model, PROMPTS, hooks, positions="last", logits="logprobs", batch_size=len(PROMPTS))
    W_U, b_U = world_model.W_U.detach().float(), world_model.b_U.detach().float()
    tops = lenses.head_top_tokens(lens, world_model, PROMPTS, k=3)
    assert len(tops) == len(PROMPTS) * L * H * 3
    df = lenses.evaluate(lens, world_model, PROMPTS, positions="last")
    assert len(df) == L + L * H and set(df["head"]) == {-1, *range(H)}
    for b in range(L):
        z = fb.acts[hooks[b]].float().reshape(len(PROMPTS), H, -1)
        dla = torch.einsum("nhk,hkd,dv->nhv", z, world_model.W_O[b].detach().float(), W_U) + b_U  # [n, H, V]
        probs = torch.softmax(dla, -1)
        for h in range(H):
            got = tops[(tops["layer"] == b) & (tops["head"] == h)].sort_values(["prompt", "rank"])
            want = probs[:, h].topk(3, -1)
            np.testing.assert_array_equal(got["token_id"].to_numpy(), want.indices.reshape(-1).numpy())
            np.testing.assert_allclose(got["prob"].to_numpy(), want.values.reshape(-1).numpy(), rtol=1e-4)
            logq = torch.log_softmax(dla[:, h], -1)
            kl = float((fb.logits.exp() * (fb.logits - logq)).sum(-1).mean())
            row = df[(df["layer"] == b) & (df["head"] == h)].iloc[0]
            assert row["kl"] == pytest.approx(kl, rel=1e-4)
            assert row["top1"] == pytest.approx(float((logq.argmax(-1) == fb.logits.argmax(-1)).double().mean()))


def test_head_truth_finds_a_planted_head_and_ranks_lie_in_unit_interval(world_model):
    lens = lenses.AttentionLens(world_model, lenses.AttentionLensConfig(form="full", blocks=(1, 2)))
    ps = replab.datasets.load("world:plural")
    ps = type(ps)(texts=ps.texts[:12], answers=ps.answers[:12], name="plural12")
    truth = lenses.answer_ids(world_model, ps.answers)
    assert world_model.tokenizer.decode([int(truth[0])]) == ps.answers[0][: len(world_model.tokenizer.decode([int(truth[0])]))]
    with torch.no_grad():  # head 2 of block 2 always says the true token; head 0 of block 1 never does
        lens.W[1][2].zero_()
        lens.b[1][2].zero_()
        lens.b[1][2][truth.unique()] = 100.0
        lens.b[0][0][truth.unique()] = -1e6
    k = len(truth.unique())
    t = lenses.head_truth(lens, world_model, ps, k=k)
    assert len(t) == 2 * world_model.cfg.n_heads and (t["n"] == 12).all()
    assert t["rank"].between(0, 1).all() and t["hit_rate"].between(0, 1).all()
    planted = t[(t["layer"] == 2) & (t["head"] == 2)].iloc[0]
    assert planted["hit_rate"] == 1.0 and planted["rank"] <= (k - 1) / (world_model.cfg.d_vocab - 1)
    dead = t[(t["layer"] == 1) & (t["head"] == 0)].iloc[0]
    assert dead["hit_rate"] == 0.0 and dead["rank"] >= 1 - k / (world_model.cfg.d_vocab - 1)
    facts = lenses.head_facts(lens, world_model, {"plural": ps, "plural_again": ps}, k=k)
    np.testing.assert_array_equal(facts["plural"], t["hit_rate"])
    assert list(facts.columns) == ["layer", "head", "plural", "plural_again"]
    with pytest.raises(DataError, match="attention lens"):
        lenses.head_truth(lenses.LogitLens(world_model), world_model, ps)
