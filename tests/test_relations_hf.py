"""A local Hugging Face checkpoint through the same code: load_model(path) -> paper-format file -> fit_lre -> faithfulness.

The checkpoint is a random GPT-2 (transformers ``GPT2Config``) saved in tmp with the world checkpoint's tokenizer
files, so nothing is downloaded. W is checked against ``torch.func.jacrev`` on the raw HF model and faithfulness
against decoding with the HF model's own final norm and unembedding.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

import replab
from replab.models.tokens import encode
from replab.relations import build_prompts, faithfulness, fit_lre, load, world
from replab.relations.states import object_token
from replab.world import WORLD_CHECKPOINT


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("hf") / "gpt2-random"
    vocab = Tokenizer.from_file(str(Path(WORLD_CHECKPOINT) / "tokenizer.json")).get_vocab_size()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=48, n_layer=2, n_head=4, bos_token_id=0,
                     eos_token_id=0)
    hf = GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(WORLD_CHECKPOINT) / name, path / name)
    return path, hf


def _block_out(hf, ids: torch.Tensor, s: int, delta: torch.Tensor) -> torch.Tensor:
    """Last block's output (before ln_f) at the last token, with ``delta`` added to the embedding output at ``s``."""
    emb = hf.transformer.wte(ids)
    emb = emb + torch.nn.functional.one_hot(torch.tensor(s), ids.shape[1]).to(emb)[None, :, None] * delta
    out = {}
    handle = hf.transformer.h[-1].register_forward_hook(lambda m, i, o: out.setdefault("z", o[0] if isinstance(o, tuple) else o))
    hf(inputs_embeds=emb)
    handle.remove()
    return out["z"][0, -1]


def test_local_checkpoint_paper_file_fit_and_faithfulness(hf_checkpoint, tmp_path):
    path, hf = hf_checkpoint
    model = replab.load_model(str(path))
    assert model.cfg.n_layers == 2 and model.cfg.d_model == 48
    capital = world("capital")
    train = capital.samples[:1]
    asked = capital.samples[1:8]
    # objects of the held-out samples: the random model's own next token, so the model "answers" all of them
    prompts = build_prompts(model, capital, asked, train)
    ids = [torch.tensor([encode(model, t)]) for t in prompts.texts]
    with torch.no_grad():
        top = [int(hf(x).logits[0, -1].argmax()) for x in ids]
    objects = [model.tokenizer.decode([t]).strip() for t in top]
    samples = [{"subject": s.subject, "object": s.object} for s in train]
    samples += [{"subject": s.subject, "object": o} for s, o in zip(asked, objects)]
    file = tmp_path / "random_capital.json"
    file.write_text(json.dumps({"name": "random capital", "prompt_templates": list(capital.prompt_templates[:1]),
                                "properties": {"relation_type": "factual"}, "samples": samples}))
    rel = load(file)
    assert [object_token(model, o) for o in objects] == top

    lre = fit_lre(model, rel, subject_layer=0, train=rel.samples[:1])
    first = build_prompts(model, rel, rel.samples[:1], rel.samples[:1])
    s0, x = first.subject_pos[0], torch.tensor([encode(model, first.texts[0])])
    J = torch.func.jacrev(lambda d: _block_out(hf, x, s0, d))(torch.zeros(48))
    torch.testing.assert_close(lre.W, J, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        h = hf.transformer.wte(x)[0, s0] + hf.transformer.wpe.weight[s0]
        z = _block_out(hf, x, s0, torch.zeros(48))
    torch.testing.assert_close(lre.b, z - J @ h, rtol=1e-4, atol=1e-4)

    f = faithfulness(lre, model, rel)
    assert f.n_test == len(rel.samples) - 1 and f.n == f.n_test  # every held-out sample is answered by construction
    test = build_prompts(model, rel, rel.samples[1:], lre.train)
    hits = 0
    with torch.no_grad():
        for text, s, sample in zip(test.texts, test.subject_pos, rel.samples[1:]):
            t = torch.tensor([encode(model, text)])
            h = hf.transformer.wte(t)[0, s] + hf.transformer.wpe.weight[s]
            logits = hf.lm_head(hf.transformer.ln_f(lre.W @ h + lre.b))
            hits += int(logits.argmax()) == object_token(model, sample.object)
    assert f.hits == hits and f.value == pytest.approx(hits / f.n)
