"""The forward primitive: positions, logits, edits, grad_at, early stop, and every caller's numbers unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import replab
from replab.errors import DataError, HookNameError
from replab.models import run_batches

GOLDEN = Path(__file__).parent / "data" / "forward_golden.json"


def test_acts_and_logits_equal_run_with_cache_at_every_mode(tiny_model):
    texts = ["The capital of France is Paris.", "A dog is a mammal.", "Two days"]
    hook = "blocks.1.hook_resid_post"
    for positions in ("all", "last", lambda i, ids: [0, -1]):
        got = list(run_batches(tiny_model, texts, hook, positions=positions, logits="logprobs", batch_size=2))
        assert [fb.start for fb in got] == [0, 2]
        for fb in got:
            for row, (i, p) in enumerate(zip(fb.items.tolist(), fb.pos.tolist())):
                logits, cache = tiny_model.run_with_cache(texts[i], names_filter=[hook])
                torch.testing.assert_close(fb.acts[hook][row], cache[hook][0, p], rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(fb.logits[row], torch.log_softmax(logits[0, p].float(), -1),
                                           rtol=1e-4, atol=1e-4)
    lengths = [len(tiny_model.to_tokens(t)[0]) for t in texts]
    last = torch.cat([fb.pos for fb in run_batches(tiny_model, texts, hook, positions="last")])
    assert last.tolist() == [n - 1 for n in lengths]
    rows = sum(len(fb.pos) for fb in run_batches(tiny_model, texts, hook))
    assert rows == sum(lengths)  # padding is never read


def test_token_ids_and_trailing_shapes(tiny_model):
    ids = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])
    (fb,) = run_batches(tiny_model, ids, ["blocks.0.attn.hook_z", "blocks.0.hook_resid_pre"], positions="last")
    cfg = tiny_model.cfg
    assert fb.acts["blocks.0.attn.hook_z"].shape[0] == 2  # the bridge gives [.., n_heads * d_head]
    assert fb.acts["blocks.0.attn.hook_z"][0].numel() == cfg.n_heads * cfg.d_head
    assert fb.acts["blocks.0.hook_resid_pre"].shape == (2, cfg.d_model)
    assert fb.tokens.tolist() == ids.tolist()


def test_early_stop_runs_no_layer_after_the_deepest_hook(tiny_model):
    from replab.models import hook_names

    hook_names(tiny_model)  # the catalogue's one full forward happens now, not under the hook below
    fired = []
    handle = tiny_model.hook_dict["blocks.1.hook_resid_post"].register_forward_hook(lambda *a: fired.append(1))
    try:
        list(run_batches(tiny_model, ["one two three"], "blocks.0.hook_resid_post"))
        assert fired == []
        list(run_batches(tiny_model, ["one two three"], "blocks.0.hook_resid_post", logits=True))
        assert fired == [1]
    finally:
        handle.remove()


def test_edits_at_selected_rows_are_per_item(tiny_model):
    texts = ["The capital of France is Paris.", "A dog is a mammal."]
    hook = "blocks.0.hook_resid_post"
    shift = torch.randn(2, tiny_model.cfg.d_model)
    edited = list(run_batches(tiny_model, texts, "blocks.1.hook_resid_post", positions="last", logits=True,
                              edits={hook: lambda x, items: x + shift[items]}, edit_positions="selected"))
    for i, text in enumerate(texts):
        n = tiny_model.to_tokens(text).shape[1]

        def add(x, module=None, i=i, n=n):
            x = x.clone()
            x[0, n - 1] += shift[i]
            return x

        with replab.models.intervene(tiny_model, {hook: add}):
            expected = tiny_model(text)[0, -1].float()
        torch.testing.assert_close(edited[0].logits[i], expected, rtol=1e-5, atol=1e-5)


def test_grad_at_gives_the_jacobian_of_finite_differences(tiny_model):
    text, src, dst = "The capital of France is", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"
    (fb,) = run_batches(tiny_model, [text], dst, positions="last", grad_at=src)
    z = fb.acts[dst][0]
    grad = torch.autograd.grad(z[3], fb.leaf)[0][0, 1]  # d z_3 / d h(position 1)
    eps = 1e-2
    vals = []
    for sign in (1, -1):
        bump = torch.zeros(tiny_model.cfg.d_model)
        bump[5] = sign * eps
        (e,) = run_batches(tiny_model, [text], dst, positions="last", edits={src: lambda x, b=bump: x + b},
                           edit_positions=torch.tensor([1]))
        vals.append(e.acts[dst][0, 3])
    assert abs(float((vals[0] - vals[1]) / (2 * eps)) - float(grad[5])) < 1e-3


def test_jacobian_with_cached_prefix_equals_the_full_rows_grad_at(tiny_model, monkeypatch):
    """replab.models.jacobian (cached prefix, batched backward) against one grad_at backward per output dimension,
    and the same numbers when the attention ignores the cache (the fallback differentiates the whole row)."""
    from replab.models import forward, jacobian
    from replab.models.tokens import encode

    text, src, dst = "The capital of France is", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"
    ids = encode(tiny_model, text)
    (fb,) = run_batches(tiny_model, [text], dst, positions="last", grad_at=src)
    z = fb.acts[dst][0]
    ref = torch.stack([torch.autograd.grad(z[k], fb.leaf, retain_graph=True)[0][0, 2] for k in range(z.numel())])
    J, x, y = jacobian(tiny_model, ids, src, 2, dst, -1, chunk=7)
    torch.testing.assert_close(J, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y, z.detach())
    torch.testing.assert_close(x, fb.leaf[0, 2].detach())
    monkeypatch.setattr(forward, "_cache_kwarg", lambda module, args, kwargs: (args, kwargs))
    J2, _, _ = jacobian(tiny_model, ids, src, 2, dst, -1)
    torch.testing.assert_close(J2, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(DataError, match="at <= of"):
        jacobian(tiny_model, ids, src, len(ids) - 1, dst, 1)


def test_bad_options_name_the_fix(tiny_model):
    with pytest.raises(DataError, match="logits must be"):
        next(run_batches(tiny_model, ["a b"], logits="probs"))
    with pytest.raises(DataError, match="edit_positions"):
        next(run_batches(tiny_model, ["a b"], edits={"blocks.0.hook_resid_post": abs}, edit_positions="first"))
    with pytest.raises(HookNameError, match="Close matches"):
        next(run_batches(tiny_model, ["a b"], "blocks.0.hook_resid_pots"))
    with pytest.raises(DataError, match="subject"):
        next(run_batches(tiny_model, ["a b"], "blocks.0.hook_resid_post", positions="subject_last"))


@pytest.mark.integration
def test_every_caller_gives_the_numbers_it_gave_before_the_primitive(world_model, tmp_path):
    """Golden values from the five separate loops (commit ff32b6c), recomputed through ``run_batches``."""
    from replab.lenses import logit_lens
    from replab.probes.causal import causal_check
    from replab.saes import create
    from replab.saes.evaluate import ce_metrics
    from replab.world import completion_correct, world_prompts
    from replab.world.sentiment import ANSWER_TOKENS

    golden = json.loads(GOLDEN.read_text())
    close = lambda a, b: np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-5, atol=1e-6)  # noqa: E731
    torch.manual_seed(0)
    model = world_model
    ps = world_prompts("capital", "train")
    st = replab.capture(model, ps, "blocks.*.hook_resid_post", positions="subject_last", out=tmp_path / "a", batch_size=7)
    for h in st.hooks:
        close([st[h][:].astype(np.float64).sum(), np.abs(st[h][:]).astype(np.float64).sum()],
              golden["capture_subject_last"][h])
    st2 = replab.capture(model, replab.datasets.load("world:corpus"), "blocks.1.hook_resid_post", out=tmp_path / "b",
                         max_tokens=2048, context=64)
    close([st2["blocks.1.hook_resid_post"][:].astype(np.float64).sum(), len(st2)], golden["capture_corpus"])
    ok = completion_correct(model, ps.texts[:60], ps.answers[:60], batch_size=16)
    assert ok.tolist() == golden["completion_correct"]
    sent = replab.datasets.load("world:sentiment")
    sub = type(sent)(texts=sent.texts[:64], labels=sent.labels[:64], name="s", meta=sent.meta)
    direction = torch.randn(256, generator=torch.Generator().manual_seed(1)).numpy()
    res = causal_check(model, sub, direction, "blocks.1.hook_resid_post", n_random=1, progress=False,
                       answer_tokens=(ANSWER_TOKENS["positive"], ANSWER_TOKENS["negative"]))
    for key in ("direction", "random"):
        got, want = res[key], golden["causal"][key]
        flat = lambda d: [v for k, v in sorted(_flatten(d).items())]  # noqa: E731
        close(flat(got), flat(want))
    sae = create("topk", d_in=256, d_sae=512, k=8)
    texts = list(replab.datasets.load("world:corpus").documents[:24])
    got = ce_metrics(sae, model, "blocks.1.hook_resid_post", texts, batch_size=8)
    close([got[k] for k in sorted(golden["sae_ce"])], [golden["sae_ce"][k] for k in sorted(golden["sae_ce"])])
    df = logit_lens(model, "The capital of France is Paris")
    assert df["top_token_id"].tolist() == golden["logit_lens"]["top_token_id"]
    close(df["top_prob"], golden["logit_lens"]["top_prob"])
    close([np.nan if v is None else v for v in golden["logit_lens"]["next_token_prob"]], df["next_token_prob"])
    (fb,) = run_batches(model, ["The capital of France is"], positions="last", logits="logprobs")
    close(fb.logits[0].exp().topk(5).values, golden["completion_top5"])


def _flatten(d, prefix=""):
    out = {}
    for k, v in (d.items() if isinstance(d, dict) else enumerate(d)):
        key = f"{prefix}/{k}"
        if isinstance(v, (dict, list)):
            out.update(_flatten(v, key))
        elif isinstance(v, (int, float)):
            out[key] = float(v)
    return out


def test_token_rows_longer_than_the_context_are_refused(tiny_model):
    too_long = torch.zeros((1, tiny_model.cfg.n_ctx + 1), dtype=torch.long)
    with pytest.raises(DataError, match="context"):
        next(run_batches(tiny_model, too_long, "blocks.0.hook_resid_post"))
