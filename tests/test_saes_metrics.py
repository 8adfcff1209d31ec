"""SAE metrics against their definitions: FVU (sklearn's variance-weighted R^2), L0, dead/dense, CE recovered, KL."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import r2_score

from replab.datasets import PromptSet, TextCorpus
from replab.errors import DataError
from replab.models import splice
from replab.saes import create, evaluate

from conftest import TINY_TEXTS

HOOK = "blocks.0.hook_resid_post"


def test_activation_metrics_match_hand_computation():
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(503, 16, generator=g) + torch.linspace(-5, 5, 16)  # per-dimension means differ
    sae = create("standard", 16, 40, seed=1)
    with torch.no_grad():
        sae.b_enc.copy_(torch.linspace(-0.9, 0.3, 40))
        sae.b_enc[:5] = -1e3  # five latents can never fire
        sae.b_enc[5] = 1e3  # one always fires
        sae.b_dec.copy_(x.mean(0))
    metrics = evaluate(sae, x, batch_size=64)  # streamed over 8 batches
    with torch.no_grad():
        acts = sae.encode(x)
        x_hat = sae.decode(acts)
    fvu = 1 - r2_score(x.numpy(), x_hat.numpy(), multioutput="variance_weighted")
    assert metrics["fvu"] == pytest.approx(fvu, rel=1e-5)
    assert metrics["fvu"] == pytest.approx(float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()), rel=1e-5)
    assert metrics["mse"] == pytest.approx(float(F.mse_loss(x_hat, x)), rel=1e-5)
    assert metrics["l0"] == pytest.approx(float((acts != 0).sum(-1).float().mean()))
    freq = (acts != 0).float().mean(0)
    assert metrics["dead_fraction"] == pytest.approx(float((freq == 0).float().mean())) and metrics["dead_fraction"] >= 5 / 40
    assert metrics["dense_fraction"] == pytest.approx(float((freq > 0.1).float().mean())) and metrics["dense_fraction"] > 0
    assert metrics["n_rows"] == 503
    assert evaluate(sae, x, max_rows=100)["n_rows"] == 100


def _reference_ce(model, sae, texts):
    """Per prompt, unbatched: the model's own mean next-token loss, clean / spliced / zero-ablated, and KL."""
    totals = {"clean": 0.0, "sae": 0.0, "zero": 0.0, "kl_sae": 0.0, "kl_zero": 0.0}
    n = 0
    with torch.no_grad():
        for text in texts:
            tokens = model.to_tokens(text)
            preds = tokens.shape[1] - 1
            clean_logits = model(tokens)
            totals["clean"] += float(model(tokens, return_type="loss")) * preds
            with splice(model, HOOK, lambda x: sae(x)):
                totals["sae"] += float(model(tokens, return_type="loss")) * preds
                sae_logits = model(tokens)
            with splice(model, HOOK, torch.zeros_like):
                totals["zero"] += float(model(tokens, return_type="loss")) * preds
                zero_logits = model(tokens)
            log_clean = F.log_softmax(clean_logits[0, :-1], -1)
            for name, logits in (("kl_sae", sae_logits), ("kl_zero", zero_logits)):
                totals[name] += float(F.kl_div(F.log_softmax(logits[0, :-1], -1), log_clean, log_target=True,
                                               reduction="sum"))
            n += preds
    return {k: v / n for k, v in totals.items()}


def test_ce_and_kl_metrics_match_unbatched_reference(tiny_model):
    sae = create("topk", 32, 64, k=4, seed=0, metadata={"hook_name": HOOK})
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.5)
    texts = list(TINY_TEXTS) + ["The cat is a dog."]  # different lengths: batches are right-padded
    metrics = evaluate(sae, torch.randn(10, 32), model=tiny_model, prompts=texts, prompt_batch_size=4)
    ref = _reference_ce(tiny_model, sae, texts)
    assert metrics["ce_clean"] == pytest.approx(ref["clean"], rel=1e-4)
    assert metrics["ce_with_sae"] == pytest.approx(ref["sae"], rel=1e-4)
    assert metrics["ce_zero_ablation"] == pytest.approx(ref["zero"], rel=1e-4)
    expected = (ref["zero"] - ref["sae"]) / (ref["zero"] - ref["clean"])
    assert metrics["ce_recovered"] == pytest.approx(expected, rel=1e-3, abs=1e-4)
    assert metrics["kl_with_sae"] == pytest.approx(ref["kl_sae"], rel=1e-3, abs=1e-6)
    assert metrics["kl_zero_ablation"] == pytest.approx(ref["kl_zero"], rel=1e-3, abs=1e-6)
    assert metrics["kl_with_sae"] > 0
    assert metrics["n_ce_tokens"] == sum(len(tiny_model.to_tokens(t)[0]) - 1 for t in texts)
    # a perfect reconstruction (identity "SAE") recovers all of the CE
    identity = create("standard", 32, 32, apply_b_dec_to_input=False, metadata={"hook_name": HOOK})
    with torch.no_grad():  # relu(x + 100) - 100 == x for |x| < 100
        identity.W_enc.copy_(torch.eye(32))
        identity.b_enc.fill_(100.0)
        identity.W_dec.copy_(torch.eye(32))
        identity.b_dec.fill_(-100.0)
    x = torch.randn(10, 32)
    with torch.no_grad():
        torch.testing.assert_close(identity(x), x, atol=1e-4, rtol=0)
    perfect = evaluate(identity, x, model=tiny_model, prompts=TextCorpus(tuple(TINY_TEXTS)))
    assert perfect["ce_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["kl_with_sae"] == pytest.approx(0.0, abs=1e-6)


def test_ce_metrics_need_prompts_and_a_hook(tiny_model):
    sae = create("topk", 32, 64, k=4)
    with pytest.raises(DataError, match="hook to splice"):
        evaluate(sae, torch.randn(5, 32), model=tiny_model, prompts=["a b"])
    sae = create("topk", 32, 64, k=4, metadata={"hook_name": HOOK})
    with pytest.raises(DataError, match="need prompts"):
        evaluate(sae, torch.randn(5, 32), model=tiny_model)
    ok = evaluate(sae, torch.randn(5, 32), model=tiny_model, prompts=PromptSet(texts=TINY_TEXTS[:2]))
    assert ok["n_prompts"] == 2
