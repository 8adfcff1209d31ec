"""Lenses on a local Hugging Face GPT-2 checkpoint (random weights, the world tokenizer), through the same code as
the world model: ``replab.load_model(dir)``, logit / tuned / shortcut training and evaluation, save and load."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import replab
from replab import lenses
from replab.datasets import TextCorpus
from replab.models import run_batches
from replab.world import WORLD_CHECKPOINT

CONTEXT = 32


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("hf") / "gpt2-tiny"
    for name in ("tokenizer.json", "tokenizer_config.json"):  # offline: reuse the world model's tokenizer files
        path.mkdir(exist_ok=True)
        shutil.copy(WORLD_CHECKPOINT / name, path / name)
    vocab = len(__import__("json").loads((path / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=CONTEXT, n_embd=48, n_layer=3, n_head=4, initializer_range=0.2,
                     bos_token_id=0, eos_token_id=0, pad_token_id=1)
    GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    return replab.load_model(path)


@pytest.fixture(scope="module")
def corpus():
    docs = replab.datasets.load("world:corpus").documents
    return TextCorpus(tuple(docs[:100]), "train"), TextCorpus(tuple(docs[1600:1620]), "held")


def test_lenses_train_and_evaluate_on_a_local_hf_checkpoint(hf_model, corpus, tmp_path):
    train, held = corpus
    assert hf_model.cfg.n_layers == 3 and hf_model.cfg.d_model == 48
    final = lenses.final_hook(hf_model)
    (fb,) = run_batches(hf_model, ["The capital of France is Paris."], [final], logits=True, batch_size=1)
    torch.testing.assert_close(lenses.LogitLens(hf_model)(fb.acts[final], 3), fb.logits, rtol=0, atol=1e-5)

    tuned = lenses.train("tuned", hf_model, train, steps=20, batch_size=128, context=CONTEXT, out=tmp_path / "tuned",
                         progress=False)
    store = replab.capture(hf_model, train, ["blocks.0.hook_resid_pre", "blocks.*.hook_resid_post"],
                           out=tmp_path / "acts", context=CONTEXT, max_tokens=2048)
    shortcut = lenses.train("shortcut", hf_model, store, steps=4, batch_size=512, out=tmp_path / "shortcut",
                            progress=False)
    scores = {name: lenses.evaluate(lens, hf_model, held, context=CONTEXT)
              for name, lens in (("logit", lenses.LogitLens(hf_model)), ("tuned", tuned), ("shortcut", shortcut))}
    for name in ("tuned", "shortcut"):
        assert list(scores[name]["layer"]) == [0, 1, 2]
        assert (scores[name]["kl"] < scores["logit"]["kl"]).all(), (name, scores[name], scores["logit"])
    assert np.isclose(scores["tuned"].attrs["final_ce"], scores["logit"].attrs["final_ce"])
    for name, lens in (("tuned", tuned), ("shortcut", shortcut)):
        back = lenses.load(tmp_path / name / "lens", hf_model)
        h = torch.randn(4, 48)
        for layer in lens.layers():
            torch.testing.assert_close(back(h, layer), lens(h, layer), rtol=0, atol=0)
    assert replab.runs.Run.open(tmp_path / "tuned").info["model"] == replab.identity.describe(hf_model)
