"""LREs against finite differences, an exactly affine path, the rank-r pseudo-inverse, file formats and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from replab.errors import DataError
from replab.relations import (LRE, Relation, Sample, build_prompts, causality, faithfulness, fit_lre, layer_hook,
                              load, load_lre, save, split)
from replab.relations.states import jacobians, states

CAPITALS = {"name": "country capital city", "prompt_templates": ["The capital of {} is"],
            "prompt_templates_zs": ["The capital of {} is"],
            "properties": {"relation_type": "factual", "domain_name": "country", "range_name": "city"},
            "samples": [{"subject": "France", "object": "Paris"}, {"subject": "Japan", "object": "Tokyo"},
                        {"subject": "France", "object": "Paris"}]}


def test_jacobian_matches_finite_differences(tiny_model):
    rel = Relation("cap", ("The capital of {} is",), (Sample("France", "Paris"), Sample("Japan", "Tokyo")))
    prompts = build_prompts(tiny_model, rel, rel.samples, rel.samples)
    sh, oh = layer_hook(tiny_model, 0), layer_hook(tiny_model, tiny_model.cfg.n_layers)
    J, h, z = jacobians(tiny_model, prompts, sh, oh)
    eps = 1e-3
    for i in range(len(prompts)):
        for j in (0, 5, 17):
            e = torch.zeros(len(prompts), h.shape[1])

            def shifted(sign):
                def edit(x_rows, items):
                    out = x_rows.clone()
                    out[0::2] += sign * eps * e[items[0::2]].to(x_rows.dtype)
                    return out
                return edit

            e[i, j] = 1.0
            _, zp, _ = states(tiny_model, prompts, sh, oh, edits={sh: shifted(1)})
            _, zm, _ = states(tiny_model, prompts, sh, oh, edits={sh: shifted(-1)})
            fd = (zp[i] - zm[i]) / (2 * eps)
            torch.testing.assert_close(J[i, :, j], fd, rtol=2e-2, atol=2e-3)


def test_exactly_affine_path_recovers_identity_and_is_faithful(tiny_model):
    """Subject last in the prompt and read at the object's hook: z = h exactly, so W = I, b = 0, faithfulness 1."""
    rel = Relation("echo", ("The capital of {}",), (Sample("France", "is"), Sample("Japan", "is"), Sample("Tokyo", "is")))
    n = tiny_model.cfg.n_layers
    lre = fit_lre(tiny_model, rel, subject_layer=n, object_layer=n, train=rel.samples[:2])
    torch.testing.assert_close(lre.W, torch.eye(lre.W.shape[0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(lre.b, torch.zeros_like(lre.b), atol=1e-5, rtol=0)
    # the model's own top-1 at the last token is, by construction, what the LRE decodes
    prompts = build_prompts(tiny_model, rel, rel.samples, rel.samples[:2])
    _, _, logits = states(tiny_model, prompts, lre.subject_hook, logits=True)
    objects = [tiny_model.tokenizer.decode([t]).strip() for t in logits.argmax(-1).tolist()]
    rel2 = Relation("echo", rel.prompt_templates, tuple(Sample(s.subject, o) for s, o in zip(rel.samples, objects)))
    lre2 = LRE(lre.W, lre.b, 1.0, n, n, lre.subject_hook, lre.object_hook, "echo", "jacobian", rel2.samples[:1])
    f = faithfulness(lre2, tiny_model, rel2)
    assert f.n == 2 and f.value == 1.0


def test_rank_r_edit_uses_rank_r_pseudo_inverse():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 5, generator=g, dtype=torch.float64).float()
    lre = LRE(W, torch.zeros(6), 1.0, 0, 4, "h", "z", "r", "jacobian")
    U, S, Vh = np.linalg.svd(W.double().numpy(), full_matrices=False)
    for r in (0, 1, 3, 5):
        W_r = (U[:, :r] * S[:r]) @ Vh[:r]
        np.testing.assert_allclose(lre.inverse(r).numpy(), np.linalg.pinv(W_r, rcond=1e-10) if r else np.zeros((5, 6)),
                                   atol=1e-5)
    np.testing.assert_allclose(lre.inverse().numpy(), np.linalg.pinv(W.numpy()), atol=1e-5)


def test_files_round_trip_and_paper_format_end_to_end(tiny_model, tmp_path):
    path = tmp_path / "country_capital_city.json"
    path.write_text(json.dumps(CAPITALS))
    rel = load(path)
    assert rel.kind == "factual" and rel.properties["properties"]["range_name"] == "city"
    again = load(save(rel, tmp_path / "again.json"))
    assert again == rel and again.properties == rel.properties
    lre = fit_lre(tiny_model, rel, subject_layer=1, n_train=1, seed=0)
    lre.save(tmp_path / "lre.safetensors")
    back = load_lre(tmp_path / "lre.safetensors")
    assert torch.equal(back.W, lre.W) and torch.equal(back.b, lre.b) and back.train == lre.train
    assert (back.subject_hook, back.object_hook, back.beta) == (lre.subject_hook, lre.object_hook, lre.beta)
    f = faithfulness(lre, tiny_model, rel)
    c = causality(lre, tiny_model, rel, rank=4)
    assert f.n_test == 1 and f.n <= 1 and c.n_test == 1  # the repeated training sample is not a test sample
    assert split(rel, 1).train == lre.train


def test_world_capital_lre_is_faithful_and_causal_from_the_embedding(world_model):
    from replab.relations import world

    rel = world("capital").subset(range(14))
    lre = fit_lre(world_model, rel, subject_layer=0, n_train=3)
    f = faithfulness(lre.with_beta(3.0), world_model, rel)
    assert f.n >= 9 and f.value >= 0.8
    later = fit_lre(world_model, rel, subject_layer=3, n_train=3, method="regression")
    assert faithfulness(later, world_model, rel).value <= 0.2  # later subject states no longer carry the answer
    assert causality(lre, world_model, rel, rank=0).value == 0.0  # rank 0: no edit, the model keeps its answer


def test_bad_input_names_file_sample_and_problem(tiny_model, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({**CAPITALS, "samples": []}))
    with pytest.raises(DataError, match=r"empty\.json.*no samples"):
        load(empty)
    bad = tmp_path / "notemplate.json"
    bad.write_text(json.dumps({**CAPITALS, "prompt_templates": ["The capital is"]}))
    with pytest.raises(DataError, match=r"notemplate\.json.*'The capital is'.*no '\{\}'"):
        load(bad)
    rel = load(_write(tmp_path / "ok.json", CAPITALS))
    with pytest.raises(DataError, match=r"ok\.json: sample 'Atlantis' -> 'Nowhere'.*does not occur"):
        build_prompts(tiny_model, rel, [Sample("Atlantis", "Nowhere")], template="The capital is")
    with pytest.raises(DataError, match="n_train=3"):
        split(rel, 3)


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path
