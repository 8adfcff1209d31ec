"""ablate / steer / causal_effect on the tiny model, against run_with_cache and unbatched runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_probes_fakes import tiny_capture

from replab.datasets import PromptSet
from replab.errors import DataError
from replab.probes import LogisticProbe, ablate, causal_check, causal_effect, steer

HOOK = "blocks.0.hook_resid_post"
TEXTS = ["The movie was great, honestly. The book was", "The capital of France is", "A dog is a mammal. A cat is"]


def _prompts(n_repeat: int = 1) -> PromptSet:
    texts, labels, subjects = [], [], []
    for item in ("movie", "book", "dog", "cat"):
        for adj in ("great", "terrible"):
            for tail in ("The movie was", "The capital of Japan is", "A cat is a mammal. The book was"):
                texts.append(f"The {item} was {adj}, honestly. {tail}")
                labels.append("positive" if adj == "great" else "negative")
                subjects.append(adj)
    return PromptSet(texts=texts * n_repeat, labels=labels * n_repeat, subjects=subjects * n_repeat,
                     answers=[" great" if lab == "positive" else " terrible" for lab in labels] * n_repeat,
                     name="tiny:sentiment", meta={"answer_tokens": [" great", " terrible"]})


def _cache(model, tokens):
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in (HOOK, "blocks.1.hook_resid_post"))
    return logits, cache[HOOK].clone(), cache["blocks.1.hook_resid_post"].clone()


def _unit(d_model: int, seed: int = 0) -> torch.Tensor:
    v = torch.from_numpy(np.random.default_rng(seed).normal(size=d_model).astype(np.float32))
    return v / v.norm()


def test_ablate_removes_projection_inside_and_nothing_after(tiny_model):
    tokens = tiny_model.to_tokens(TEXTS[0])
    d = _unit(tiny_model.cfg.d_model)
    n_hooks = len(tiny_model.hook_dict[HOOK]._forward_hooks)
    logits0, h0, down0 = _cache(tiny_model, tokens)
    with ablate(tiny_model, d * 3.0, HOOK):  # any norm: the direction is unit-normed
        logits1, h1, down1 = _cache(tiny_model, tokens)
        assert len(tiny_model.hook_dict[HOOK]._forward_hooks) == n_hooks + 1
    logits2, h2, down2 = _cache(tiny_model, tokens)
    assert (h1 @ d).abs().max() < 1e-5
    torch.testing.assert_close(h1, h0 - (h0 @ d)[..., None] * d, atol=1e-5, rtol=0)
    assert not torch.allclose(logits1, logits0) and not torch.allclose(down1, down0)
    assert torch.equal(logits2, logits0) and torch.equal(h2, h0) and torch.equal(down2, down0)
    assert len(tiny_model.hook_dict[HOOK]._forward_hooks) == n_hooks


def test_steer_adds_exactly_scale_times_direction_at_chosen_positions(tiny_model):
    tokens = tiny_model.to_tokens(TEXTS[1])
    d = _unit(tiny_model.cfg.d_model, seed=1)
    _, h0, _ = _cache(tiny_model, tokens)
    with steer(tiny_model, d, 2.5, HOOK):
        _, h1, _ = _cache(tiny_model, tokens)
    torch.testing.assert_close(h1 - h0, (2.5 * d).expand_as(h0), atol=1e-5, rtol=0)
    with steer(tiny_model, d, -4.0, HOOK, positions=[2]):
        _, h2, _ = _cache(tiny_model, tokens)
    torch.testing.assert_close(h2[:, 2] - h0[:, 2], (-4.0 * d).expand_as(h0[:, 2]), atol=1e-5, rtol=0)
    others = [i for i in range(h0.shape[1]) if i != 2]
    assert torch.equal(h2[:, others], h0[:, others])
    _, h3, _ = _cache(tiny_model, tokens)
    assert torch.equal(h3, h0)


def test_ablate_and_steer_take_a_fitted_probe(tiny_model):
    store = tiny_capture(tiny_model, _prompts(), HOOK)
    probe = LogisticProbe().fit_store(store, HOOK)
    assert probe.hook == HOOK and probe.position == "last" and probe.meta["model_hash"]
    tokens = tiny_model.to_tokens(TEXTS[2])
    _, h0, _ = _cache(tiny_model, tokens)
    d = torch.from_numpy(probe.direction)
    with ablate(tiny_model, probe):
        _, h1, _ = _cache(tiny_model, tokens)
    assert (h1 @ d).abs().max() < 1e-5
    with steer(tiny_model, probe, 1.5):
        _, h2, _ = _cache(tiny_model, tokens)
    torch.testing.assert_close(h2 - h0, (1.5 * d).expand_as(h0), atol=1e-5, rtol=0)
    with pytest.raises(DataError, match="No hook"):
        ablate(tiny_model, probe.direction)


def _manual(model, prompts, a=" great", b=" terrible"):
    ia, ib = (model.tokenizer.encode(s, add_special_tokens=False)[0] for s in (a, b))
    out = []
    with torch.no_grad():
        for t in prompts.texts:
            last = model(model.to_tokens(t))[0, -1]
            out.append(float(last[ia] - last[ib]))
    return np.array(out)


def test_causal_effect_matches_unbatched_runs(tiny_model):
    prompts = _prompts()
    d = _unit(tiny_model.cfg.d_model, seed=2).numpy()
    res = causal_effect(tiny_model, prompts, lambda: steer(tiny_model, d, 8.0, HOOK), batch_size=5, progress=False)
    clean = _manual(tiny_model, prompts)
    with steer(tiny_model, d, 8.0, HOOK):
        edited = _manual(tiny_model, prompts)
    labels = np.array(prompts.labels)
    correct = np.where(labels == "positive", clean, -clean)
    assert res["clean"]["logit_diff"] == pytest.approx(clean.mean(), abs=1e-5)
    negative = res["clean"]["logit_diff_by_class"]["negative"]
    assert negative == pytest.approx(clean[labels == "negative"].mean(), abs=1e-5)
    assert res["clean"]["accuracy"] == pytest.approx(np.mean(correct > 0))
    assert res["clean"]["correct_logit_diff"] == pytest.approx(correct.mean(), abs=1e-5)
    assert res["intervened"]["logit_diff"] == pytest.approx(edited.mean(), abs=1e-5)
    assert res["delta"]["logit_diff"] == pytest.approx(edited.mean() - clean.mean(), abs=1e-5)
    # per-prompt (correct, wrong) pairs give the same correct-minus-wrong readout
    pairs = [(" great", " terrible") if lab == "positive" else (" terrible", " great") for lab in labels]
    res2 = causal_effect(tiny_model, prompts, lambda: steer(tiny_model, d, 8.0, HOOK), answer_tokens=pairs,
                         progress=False)
    assert res2["clean"]["correct_logit_diff"] == pytest.approx(correct.mean(), abs=1e-5)


def test_causal_check_compares_with_same_norm_random_directions(tiny_model):
    prompts = _prompts()
    d = 3.0 * _unit(tiny_model.cfg.d_model, seed=3).numpy()
    a = causal_check(tiny_model, prompts, d, HOOK, mode="steer", scale=2.0, n_random=2, seed=7, progress=False)
    b = causal_check(tiny_model, prompts, d, HOOK, mode="steer", scale=2.0, n_random=2, seed=7, progress=False)
    assert len(a["random"]) == 2 and a["config"]["direction_norm"] == pytest.approx(3.0, rel=1e-6)
    assert a["random_mean_delta"]["logit_diff"] == pytest.approx(
        np.mean([r["delta"]["logit_diff"] for r in a["random"]]))
    assert a["random_mean_delta"] == b["random_mean_delta"]  # seeded
    assert a["direction"]["delta"]["logit_diff"] != a["random"][0]["delta"]["logit_diff"]


def test_causal_answer_errors(tiny_model):
    prompts = _prompts()
    noop = lambda: steer(tiny_model, np.zeros(tiny_model.cfg.d_model), 0.0, HOOK)  # noqa: E731
    with pytest.raises(DataError, match="not in the model's vocabulary"):
        causal_effect(tiny_model, prompts, noop, answer_tokens=(" great", " splendid"), progress=False)
    with pytest.raises(DataError, match="2 tokens"):
        causal_effect(tiny_model, prompts, noop, answer_tokens=(" great honestly", " terrible"), progress=False)
    with pytest.raises(DataError, match="same token"):
        causal_effect(tiny_model, prompts, noop, answer_tokens=(" great", " great"), progress=False)


def test_replab_probe_cli_on_a_captured_store(tiny_model, tmp_path):
    import replab
    from replab.cli import main
    from replab.runs import Run

    replab.capture(tiny_model, _prompts(2), "blocks.*.hook_resid_post", positions="last", out=tmp_path / "acts")
    with pytest.warns(UserWarning, match="only 2 word types"):  # the subject column holds 2 adjectives
        rc = main(["probe", "--store", str(tmp_path / "acts"), "--probes", "logistic,meandiff", "--cv", "3",
                   "--out", str(tmp_path / "probes"), "--causal", "--n-random", "2"])
    assert rc == 0
    run = Run.open(tmp_path / "probes")
    causal = run.read_json("causal.json")
    assert causal["probe"]["hook"] == run.info["metrics"]["best_hook"]
    assert len(causal["random"]) == 2 and causal["direction"]["n"] == 48 and "accuracy" in causal["direction"]["clean"]
    assert run.info["model"]["weights_sha256"] == replab.models.weights_hash(tiny_model)
    assert "causal_logit_diff" in run.info["metrics"] and "causal_random_logit_diff" in run.info["metrics"]
    assert len(run.read_table("results")) == 2 * 2 * 3
    assert main(["probe", "--store", str(tmp_path / "missing"), "--out", str(tmp_path / "p2")]) == 2
