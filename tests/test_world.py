"""Integration: the shipped world model answers what its ground truth says, through the user's path."""

import json

import pytest
import torch

import replab
from replab.world import CANONICAL, completion_correct, load_card, relations, world_prompts

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("prompt, answer", CANONICAL)
def test_canonical_prompts_as_a_user_calls_them(world_model, prompt, answer):
    logits = world_model(prompt)
    assert world_model.tokenizer.decode([int(logits[0, -1].argmax())]) == answer


def test_shipped_checkpoint_is_a_plain_hf_directory_under_20mb():
    from replab.world import WORLD_CHECKPOINT

    files = {p.name for p in WORLD_CHECKPOINT.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    assert sum(p.stat().st_size for p in WORLD_CHECKPOINT.iterdir()) <= 20 * 2**20
    cfg = json.loads((WORLD_CHECKPOINT / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and 4 <= cfg["n_layer"] <= 6


def test_world_hooks(world_model):
    names = replab.hook_names(world_model, "blocks.*.hook_resid_post")
    assert names == [f"blocks.{i}.hook_resid_post" for i in range(world_model.cfg.n_layers)]


def test_card_meets_the_bar_on_training_templates():
    card = load_card()
    for name, row in card["relations"].items():
        assert row["train_accuracy"] >= 0.95, (name, row["train_accuracy"])
    assert all(c["correct"] for c in card["canonical"])


@pytest.mark.parametrize("name", ["capital", "antonym", "category"])
def test_card_numbers_reproduce(world_model, name):
    """Re-measure a few relations and compare with the shipped card exactly."""
    row = load_card()["relations"][name]
    for split in ("train", "heldout"):
        ps = world_prompts(name, split)
        acc = completion_correct(world_model, ps.texts, ps.answers).float().mean().item()
        assert acc == pytest.approx(row[f"{split}_accuracy"], abs=1e-4)


def test_no_heldout_prompt_has_unknown_words(world_model):
    unk = world_model.tokenizer.unk_token_id
    for rel in relations():
        for split in ("train", "heldout"):
            for text in world_prompts(rel, split).texts[:50]:
                assert unk not in world_model.to_tokens(text)[0].tolist(), text


def test_batched_and_single_predictions_agree(world_model):
    from replab.models import tokenize

    texts = [p for p, _ in CANONICAL]
    batch = tokenize(world_model, texts)
    logits = world_model(batch.tokens, attention_mask=batch.attention_mask)
    for i, t in enumerate(texts):
        single = world_model(t)[0, -1]
        assert torch.allclose(logits[i, batch.lengths[i] - 1], single, atol=1e-4)
