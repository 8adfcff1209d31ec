"""Attention-lens evaluation: per-head rows, each head's top-k tokens and which heads carry which facts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import replab
from replab.datasets import PromptSet
from replab.lenses import AttentionLens, AttentionLensConfig, evaluate
from replab.lenses.evaluate import head_facts, head_topk

TEXTS = ["the cat sat on the mat", "a dog ran to the park", "the cat ran on the mat", "a dog sat in the park"]
ANSWERS = (" mat", " park", " mat", " park")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from replab.world.tokenizer import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", [*TEXTS, *ANSWERS], n_layer=2, d_model=32,
                                n_head=2)
    return replab.load_model(ckpt)


def head_outputs(model, text: str, block: int) -> torch.Tensor:
    """``[seq, n_heads, d_model]``: each head's contribution to the residual, z_h W_O[h], by hand."""
    _, cache = model.run_with_cache(model.to_tokens(text), names_filter=f"blocks.{block}.attn.hook_z")
    z = cache[f"blocks.{block}.attn.hook_z"][0]
    z = z.reshape(z.shape[0], model.cfg.n_heads, -1)
    return torch.einsum("shk,hkd->shd", z.float(), model.W_O[block].detach().float())


def test_untrained_full_lens_heads_are_direct_logit_attribution(model):
    lens = AttentionLens(model)
    table = head_topk(lens, model, TEXTS, k=4)
    assert len(table) == len(TEXTS) * model.cfg.n_layers * model.cfg.n_heads * 4
    for p, text in enumerate(TEXTS):
        for block in range(model.cfg.n_layers):
            dla = head_outputs(model, text, block)[-1] @ model.W_U.detach().float() + model.b_U.detach().float()
            ref = torch.softmax(dla, -1).topk(4)
            for h in range(model.cfg.n_heads):
                rows = table[(table["prompt"] == p) & (table["block"] == block) & (table["head"] == h)]
                assert rows["token_id"].tolist() == ref.indices[h].tolist()
                np.testing.assert_allclose(rows["prob"], ref.values[h].numpy(), rtol=1e-5)
                assert rows["token"].tolist() == [model.tokenizer.decode([i]) for i in ref.indices[h].tolist()]


def test_head_facts_fraction_and_rank_on_planted_heads(model):
    lens = AttentionLens(model, AttentionLensConfig(blocks=(1,)))
    mat, park = (model.to_tokens(a, prepend_bos=False)[0, 0].item() for a in (" mat", " park"))
    with torch.no_grad():
        lens.W[0].zero_()
        lens.b[0].zero_()
        lens.b[0][0, mat], lens.b[0][0, park] = 10.0, 9.0  # head 0: " mat" first, " park" second, for every prompt
        lens.b[0][1] = 1.0
        lens.b[0][1, mat] = lens.b[0][1, park] = -5.0      # head 1: both answers tied last
    prompts = PromptSet(texts=TEXTS, answers=ANSWERS)
    V = model.cfg.d_vocab
    top1 = head_facts(lens, model, prompts, k=1).set_index("head")
    assert top1["block"].tolist() == [1, 1] and top1["n"].tolist() == [4, 4]
    assert top1.loc[0, "fraction"] == 0.5 and top1.loc[0, "mean_rank"] == 1.5  # " mat" rank 1, " park" rank 2
    assert top1.loc[1, "fraction"] == 0.0 and top1.loc[1, "mean_rank"] == V - 1  # only each other are not above
    assert head_facts(lens, model, prompts, k=2).set_index("head").loc[0, "fraction"] == 1.0
    with pytest.raises(replab.errors.DataError, match="answers"):
        head_facts(lens, model, PromptSet(texts=TEXTS))


def test_evaluate_has_one_row_per_head_scoring_that_head_alone(model):
    lens = AttentionLens(model, AttentionLensConfig(form="translator"))
    with torch.no_grad():
        for W in lens.W:
            W.add_(0.05 * torch.randn_like(W))
    df = evaluate(lens, model, TEXTS, heads=True)
    assert len(evaluate(lens, model, TEXTS)) == model.cfg.n_layers  # one row per block by default
    H, L = model.cfg.n_heads, model.cfg.n_layers
    assert len(df) == L * (1 + H) and df["head"].isna().sum() == L
    V = model.cfg.d_vocab
    for block in range(L):
        kl, top1, ent, ce, n, n_ce = np.zeros(H), np.zeros(H), np.zeros(H), np.zeros(H), 0, 0
        for text in TEXTS:
            tokens = model.to_tokens(text)
            _, cache = model.run_with_cache(tokens, names_filter=f"blocks.{block}.attn.hook_z")
            logp = torch.log_softmax(model(tokens)[0].detach().float(), -1)  # [seq, V]
            r = head_outputs(model, text, block)
            logq = torch.log_softmax(torch.einsum("shd,hde->she", r, lens.W[block].detach()) @ model.W_U.detach()
                                     + lens.b[block].detach() / H, -1)  # [seq, H, V]
            kl += (logp.exp()[:, None] * (logp[:, None] - logq)).sum((0, 2)).numpy()
            top1 += (logq.argmax(-1) == logp.argmax(-1)[:, None]).sum(0).numpy()
            ent += -(logq.exp() * logq).sum((0, 2)).numpy()
            ce += -logq[:-1].gather(2, tokens[0, 1:, None, None].expand(-1, H, 1)).sum((0, 2)).numpy()
            n += tokens.shape[1]
            n_ce += tokens.shape[1] - 1
        rows = df[(df["layer"] == block) & df["head"].notna()].sort_values("head")
        np.testing.assert_allclose(rows["kl"], kl / n, rtol=1e-4)
        np.testing.assert_allclose(rows["top1"], top1 / n, rtol=1e-6)
        np.testing.assert_allclose(rows["entropy"], ent / n, rtol=1e-4)
        np.testing.assert_allclose(rows["ce"], ce / n_ce, rtol=1e-4)
        assert (rows["kl"] > 0).all() and (rows["entropy"] < np.log(V) + 1e-6).all()
    assert pd.isna(df.loc[df["head"].notna(), "depth_fraction"]).all()
