"""load_model, the hook catalogue, tokenisation and interventions on a tiny offline checkpoint."""

import os

import pytest
import torch

import replab
from replab.errors import DataError, HookNameError, ModelLoadError
from replab.models import (ablate_direction, add_direction, intervene, model_id, patch_activations,
                           subject_last_index, tokenize, weights_hash)


def test_local_checkpoint_loads_offline_and_matches_transformers(tiny_checkpoint, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    hf = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    text = "The capital of France is"
    ids = tok(text, return_tensors="pt").input_ids
    assert ids[0, 0] == tok.bos_token_id  # the tokenizer prepends BOS itself
    assert torch.equal(tiny_model.to_tokens(text), ids)  # ...and the bridge uses it unchanged
    with torch.no_grad():
        assert torch.allclose(tiny_model(text), hf(ids).logits, atol=1e-5)
    assert model_id(tiny_model) == tiny_checkpoint
    assert not tiny_model.training


def test_a_relative_checkpoint_path_is_recorded_absolute(tiny_checkpoint, monkeypatch):
    """A store made with ``--model ckpt`` from one directory names a model that loads from any other."""
    from pathlib import Path

    monkeypatch.chdir(Path(tiny_checkpoint).parent)
    model = replab.load_model(Path(tiny_checkpoint).name)
    assert model_id(model) == tiny_checkpoint and os.path.isabs(model_id(model))
    assert model_id(replab.load_model("world")) == "world"


def test_unknown_model_offline_is_one_clear_error():
    with pytest.raises(ModelLoadError) as err:
        replab.load_model("no-such-model-anywhere")
    msg = str(err.value)
    assert "no-such-model-anywhere" in msg and "offline" in msg and "Fix" in msg
    assert "Traceback" not in msg


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        replab.load_model(tmp_path)


def test_hook_names_one_per_tensor_with_familiar_names(tiny_model):
    names = replab.hook_names(tiny_model)
    assert "blocks.0.hook_resid_post" in names and "blocks.1.attn.hook_pattern" in names
    # aliases of the same tensor are folded away
    assert "blocks.0.hook_out" not in names and "blocks.0.ln1.hook_in" not in names
    assert "blocks.0.attn.hook_hidden_states" not in names
    # no two catalogue names are aliases (same HookPoint) of each other
    assert len({id(tiny_model.hook_dict[n]) for n in names}) == len(names)
    # forward order
    assert names.index("blocks.0.hook_resid_pre") < names.index("blocks.0.hook_attn_out") < names.index(
        "blocks.0.hook_resid_post") < names.index("blocks.1.hook_resid_post")
    assert replab.hook_names(tiny_model, "blocks.*.hook_resid_post") == [
        "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def test_catalogue_hooks_match_run_with_cache(tiny_model):
    _, cache = tiny_model.run_with_cache("A dog is a mammal.")
    for name in replab.hook_names(tiny_model):
        assert name in cache


def test_unknown_hook_lists_close_matches(tiny_model):
    with pytest.raises(HookNameError) as err:
        replab.models.resolve_hooks(tiny_model, "blocks.0.hook_resid_pots")
    assert "blocks.0.hook_resid_post" in str(err.value)


def test_tokenize_right_pads_and_padding_does_not_change_activations(tiny_model):
    texts = ["The capital of France is", "A dog"]
    batch = tokenize(tiny_model, texts)
    assert batch.lengths.tolist() == [len(tiny_model.to_tokens(t)[0]) for t in texts]
    hook = "blocks.1.hook_resid_post"
    _, cache = tiny_model.run_with_cache(batch.tokens, attention_mask=batch.attention_mask, names_filter=[hook])
    _, alone = tiny_model.run_with_cache(texts[1], names_filter=[hook])
    n = int(batch.lengths[1])
    assert torch.allclose(cache[hook][1, :n], alone[hook][0], atol=1e-5)


def test_subject_last_index(tiny_model):
    text = "The capital of France is"
    i = subject_last_index(tiny_model, text, "France")
    assert tiny_model.to_str_tokens(text)[i] == " France"
    with pytest.raises(DataError, match="does not occur"):
        subject_last_index(tiny_model, text, "Japan")


def _resid(model, text, hook="blocks.0.hook_resid_post"):
    _, cache = model.run_with_cache(text, names_filter=[hook])
    return cache[hook][0]


def test_ablate_removes_projection_inside_and_nothing_after(tiny_model):
    torch.manual_seed(0)
    d = torch.randn(tiny_model.cfg.d_model)
    u = d / d.norm()
    text = "The capital of France is"
    before = _resid(tiny_model, text)
    with ablate_direction(tiny_model, d, "blocks.0.hook_resid_post"):
        inside = _resid(tiny_model, text)
    after = _resid(tiny_model, text)
    assert (inside @ u).abs().max() < 1e-5
    assert torch.allclose(inside, before - (before @ u)[:, None] * u, atol=1e-5)
    assert torch.equal(after, before)


def test_steer_adds_exactly_at_positions_and_user_hooks_survive(tiny_model):
    d = torch.ones(tiny_model.cfg.d_model)
    text = "The capital of France is"
    before = _resid(tiny_model, text)
    seen = []
    handle = tiny_model.hook_dict["blocks.0.hook_resid_post"].register_forward_hook(lambda m, i, o: seen.append(1))
    try:
        with add_direction(tiny_model, d, 2.0, "blocks.0.hook_resid_post", positions=[1]):
            inside = _resid(tiny_model, text)
        _resid(tiny_model, text)
    finally:
        handle.remove()
    assert torch.allclose(inside[1], before[1] + 2.0, atol=1e-6)
    assert torch.equal(inside[2:], before[2:])
    assert len(seen) == 2  # the user's own hook ran inside and after


def test_patch_and_intervene_per_row_positions(tiny_model):
    texts = ["The capital of France is", "A dog"]
    batch = tokenize(tiny_model, texts)
    hook = "blocks.0.hook_resid_post"
    zero = torch.zeros(tiny_model.cfg.d_model)
    last = batch.lengths - 1
    with patch_activations(tiny_model, {hook: zero}, positions=last):
        _, cache = tiny_model.run_with_cache(batch.tokens, names_filter=[hook])
    acts = cache[hook]
    assert acts[0, last[0]].abs().max() == 0 and acts[1, last[1]].abs().max() == 0
    assert acts[0, 0].abs().max() > 0
    with pytest.raises(DataError, match="last dimension"):
        with intervene(tiny_model, {hook: lambda x: x}), ablate_direction(tiny_model, torch.ones(3), hook):
            tiny_model(texts[0])


def test_weights_hash_changes_with_weights(tiny_checkpoint):
    a, b = replab.load_model(tiny_checkpoint), replab.load_model(tiny_checkpoint)
    assert weights_hash(a) == weights_hash(b)
    with torch.no_grad():
        next(b.parameters())[0, 0] += 1
    from replab import identity

    identity._HASHES.pop(b, None)
    assert weights_hash(a) != weights_hash(b)


def _save_tiny(path, arch: str) -> str:
    """A tiny untrained Pythia-style (GPT-NeoX) or Llama-style checkpoint with the test tokenizer."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    from replab.world.tokenizer import build_tokenizer
    from conftest import TINY_TEXTS

    tok = build_tokenizer(TINY_TEXTS)
    common = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = (GPTNeoXForCausalLM(GPTNeoXConfig(**common, rotary_pct=0.25)) if arch == "neox"
             else LlamaForCausalLM(LlamaConfig(**common, num_key_value_heads=1)))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("arch", ["neox", "llama"])
def test_other_architectures_go_through_the_same_path(tmp_path, arch):
    """Pythia- and Llama-shaped checkpoints: load offline, same logits as transformers, one
    catalogue name per tensor, and a capture equal to run_with_cache with padded batches."""
    from transformers import AutoModelForCausalLM

    from replab.datasets import PromptSet

    path = _save_tiny(tmp_path / arch, arch)
    model = replab.load_model(path)
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    texts = ("The capital of France is", "A dog is a")
    with torch.no_grad():
        for text in texts:
            ids = model.to_tokens(text)
            torch.testing.assert_close(model(text), hf(ids).logits, atol=1e-5, rtol=1e-5)
    names = replab.hook_names(model)
    assert len({id(model.hook_dict[n]) for n in names}) == len(names)
    hooks = replab.hook_names(model, "blocks.*.hook_resid_post")
    assert hooks == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    store = replab.capture(model, PromptSet(texts=texts), hooks, positions="last", out=tmp_path / "acts")
    for row, text in enumerate(texts):  # the shorter prompt was right-padded in the batch
        _, cache = model.run_with_cache(text)
        for hook in hooks:
            torch.testing.assert_close(torch.as_tensor(store[hook][row]), cache[hook][0, -1], atol=1e-5, rtol=0)
