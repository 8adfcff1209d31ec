"""SAE architectures: exact encode behaviour, training-time estimators, weight constraints, input-scale folding."""

from __future__ import annotations

import pytest
import torch

from replab.errors import DataError
from replab.saes import TrainContext, create

ARCH_CONFIGS = {
    "standard": {},
    "topk": {"k": 3},
    "batchtopk": {"k": 3},
    "jumprelu": {},
    "matching_pursuit": {"k": 3},
}


def _randomise(sae, seed: int = 0) -> None:
    """Non-trivial values in every parameter and buffer (thresholds positive)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*sae.named_parameters(), *sae.named_buffers()]:
            if name == "threshold":
                t.copy_(0.1 + 0.2 * torch.rand(t.shape, generator=g, dtype=torch.float32).to(t.dtype))
            else:
                t.copy_(0.5 * torch.randn(t.shape, generator=g))
        if sae.unit_norm_decoder:
            sae.constrain_weights()


def _orthonormal(d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    return q.T.contiguous()


# ---- matching pursuit ------------------------------------------------------------------------

def test_matching_pursuit_recovers_codes_exactly_on_orthonormal_dictionary():
    d = 16
    sae = create("matching_pursuit", d, d, k=5)
    g = torch.Generator().manual_seed(1)
    codes = torch.zeros(50, d)
    for row in codes:
        idx = torch.randperm(d, generator=g)[:4]
        row[idx] = 0.5 + torch.rand(4, generator=g)
    b = torch.randn(d, generator=g)
    with torch.no_grad():
        sae.W_dec.copy_(_orthonormal(d))
        sae.b_dec.copy_(b)
    x = codes @ sae.W_dec + b
    with torch.no_grad():
        got = sae.encode(x)
        torch.testing.assert_close(got, codes, atol=1e-5, rtol=0)
        torch.testing.assert_close(sae(x), x, atol=1e-5, rtol=0)
        # training runs exactly k steps: the extra steps find nothing left and add zeros
        out = sae.training_loss(x, TrainContext(step=0, total_steps=1))
        torch.testing.assert_close(out.x_hat, x, atol=1e-5, rtol=0)
        assert bool(out.fired[(codes > 0).any(0)].all())  # (float noise may add ~0 values on other atoms)


def test_matching_pursuit_l0_grows_as_residual_threshold_falls():
    sae = create("matching_pursuit", 16, 64, k=4, seed=3)
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(2))
    thresholds = [1e6, 3.0, 2.0, 1.0, 0.5, 0.0]
    with torch.no_grad():
        codes = [sae.encode(x, residual_threshold=t, max_iterations=64) for t in thresholds]
    l0 = [(c > 0).sum(-1) for c in codes]
    assert torch.all(l0[0] == 1)  # the first step always runs; the huge threshold stops right after
    for looser, tighter in zip(l0, l0[1:]):
        assert torch.all(tighter >= looser)  # per sample: a lower threshold continues the same greedy path
    means = [float(v.float().mean()) for v in l0]
    assert means[-1] > means[2] > means[0]
    with torch.no_grad():
        residual = [(x - sae.decode(c)).norm(dim=-1) for c in codes]
    assert float(residual[-1].mean()) < float(residual[0].mean())
    # a sample the 2.0 threshold stopped early has its residual below 2.0
    stopped = l0[2] < l0[-1]
    assert bool(stopped.any()) and torch.all(residual[2][stopped] < 2.0)


def test_matching_pursuit_training_loss_equals_decoding_the_codes():
    """The residual form of the loss equals MSE(decode(codes)) with the same gradients."""
    sae = create("matching_pursuit", 8, 40, k=3, seed=0)
    _randomise(sae, seed=6)
    x = torch.randn(25, 8, generator=torch.Generator().manual_seed(4))
    out = sae.training_loss(x, TrainContext(step=0, total_steps=1))
    got = torch.autograd.grad(out.loss, list(sae.parameters()))
    idx, values, _ = sae._pursue(sae.sae_in(x), 3, 0.0, False)
    expected = (sae.decode(sae._codes(idx, values)) - x).pow(2).sum(-1).mean()
    want = torch.autograd.grad(expected, list(sae.parameters()))
    torch.testing.assert_close(out.loss, expected)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_matching_pursuit_gradients_touch_only_selected_atoms():
    sae = create("matching_pursuit", 8, 64, k=2, seed=0)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    out = sae.training_loss(x, TrainContext(step=0, total_steps=1))
    out.loss.backward()
    selected = out.fired
    grad_rows = sae.W_dec.grad.abs().sum(-1) > 0
    assert torch.equal(grad_rows, selected)
    assert 1 <= int(selected.sum()) <= 6


# ---- TopK / BatchTopK / JumpReLU -------------------------------------------------------------

def test_topk_keeps_the_k_largest_preactivations():
    sae = create("topk", 8, 32, k=4)
    _randomise(sae)
    x = torch.randn(10, 8)
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        expected = torch.zeros_like(pre)
        top = pre.topk(4, dim=-1)
        expected.scatter_(-1, top.indices, top.values.relu())
        torch.testing.assert_close(sae.encode(x), expected)


def _batchtopk_acts(sae, x):
    """Training-time BatchTopK activations as a dense matrix, and the pre-activations."""
    with torch.no_grad():
        pre = sae.pre_acts(x)
        sel = sae.select(pre)
        acts = torch.zeros_like(pre)
        acts[sel.rows, sel.cols] = pre[sel.rows, sel.cols].relu()
        return acts, pre


def test_batchtopk_selects_k_per_token_over_the_batch_and_tracks_threshold():
    sae = create("batchtopk", 8, 32, k=3, threshold_ema=0.01)
    _randomise(sae)
    with torch.no_grad():
        sae.b_enc.fill_(2.0)  # every pre-activation positive, so exactly k * batch are kept
        sae.threshold.zero_()
    x = torch.randn(20, 8)
    acts, pre = _batchtopk_acts(sae, x)
    assert int((acts > 0).sum()) == 3 * 20
    kept = pre.relu().flatten().topk(60).values
    torch.testing.assert_close(acts[acts > 0].sort().values, kept.sort().values)
    assert float(sae.threshold) == pytest.approx(0.01 * float(kept.min()), rel=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), pre.relu() * (pre > sae.threshold.float()))


def test_batchtopk_lets_one_token_use_more_than_k_latents():
    sae = create("batchtopk", 4, 32, k=3)
    with torch.no_grad():
        sae.W_enc.copy_(1.0 + 0.01 * torch.rand(4, 32))
        sae.b_dec.zero_()
        sae.b_enc.zero_()
    x = torch.full((20, 4), 0.25)
    x[0] = 2.5  # row 0's pre-activations dominate the whole batch
    acts, _ = _batchtopk_acts(sae, x)
    assert int((acts[0] > 0).sum()) == 32
    assert int((acts > 0).sum()) == 60


def _dense_topk_loss(sae, x, acts, dead):
    """The textbook dense loss: MSE of ``acts @ W_dec + b_dec`` plus AuxK over the dead latents."""
    x_hat = acts @ sae.W_dec + sae.b_dec
    loss = (x_hat - x).pow(2).sum(-1).mean()
    n_dead = int(dead.sum())
    if n_dead:
        pre = sae.pre_acts(x)
        aux_k = sae.cfg.aux_k or sae.d_in // 2
        masked = torch.where(dead[None, :], pre, torch.full_like(pre, -torch.inf))
        top = masked.topk(min(aux_k, n_dead), dim=-1)
        aux_acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        aux = (aux_acts @ sae.W_dec - (x - x_hat).detach()).pow(2).sum(-1).mean()
        loss = loss + sae.cfg.aux_coefficient * min(n_dead / aux_k, 1.0) * aux
    return loss


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
@pytest.mark.parametrize("n_dead", [0, 5, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sparse_training_loss_equals_the_dense_loss_and_gradients(arch, n_dead, dtype):
    sae = create(arch, 12, 48, k=4, aux_k=6).to(dtype)
    _randomise(sae, seed=7)
    x = torch.randn(30, 12, generator=torch.Generator().manual_seed(3)).to(dtype)
    dead = torch.zeros(48, dtype=torch.bool)
    dead[torch.randperm(48, generator=torch.Generator().manual_seed(5))[:n_dead]] = True
    ctx = TrainContext(step=0, total_steps=1, dead_mask=dead)
    if arch == "topk":
        acts = sae.encode(x)
    else:
        threshold = sae.threshold.clone()
        acts = _batchtopk_acts(sae, x)[0]
        sae.threshold.copy_(threshold)
        acts = torch.where(acts > 0, sae.pre_acts(x), 0.0)  # same values, with gradients
    expected = _dense_topk_loss(sae, x, acts, dead)
    expected_grads = torch.autograd.grad(expected, list(sae.parameters()))
    out = sae.training_loss(x, ctx)
    grads = torch.autograd.grad(out.loss, list(sae.parameters()))
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 0.05, "rtol": 0.02}
    torch.testing.assert_close(out.loss, expected, **tol)
    assert set(out.terms) == {"mse", "auxk"} and (float(out.terms["auxk"]) > 0) == (n_dead > 0)
    for (name, _), got, want in zip(sae.named_parameters(), grads, expected_grads):
        torch.testing.assert_close(got, want, **tol, msg=lambda m, name=name: f"{name}: {m}")
    active = acts.detach() > 0
    assert torch.equal(out.fired, active.any(0))
    assert float(out.l0) == pytest.approx(float(active.sum(-1).float().mean()))
    assert out.x_hat.dtype == dtype


def test_jumprelu_straight_through_gradients_match_the_kernel_formula():
    sae = create("jumprelu", 4, 3, bandwidth=0.5, l0_coefficient=0.0)
    with torch.no_grad():
        sae.threshold.copy_(torch.tensor([0.3, 1.0, 2.0]))
    pre = torch.tensor([[0.2, 1.1, 5.0], [0.6, 0.9, 1.0]], requires_grad=True)
    from replab.saes.jumprelu import _JumpReLU, _Step

    out = _JumpReLU.apply(pre, sae.threshold, 0.5)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.1, 5.0], [0.6, 0.0, 0.0]]))
    out.sum().backward()
    t = sae.threshold.detach()
    in_window = ((pre.detach() - t).abs() < 0.25).float()
    torch.testing.assert_close(sae.threshold.grad, (-(t / 0.5) * in_window).sum(0))
    torch.testing.assert_close(pre.grad, (pre.detach() > t).float())
    sae.threshold.grad = None
    _Step.apply(pre, sae.threshold, 0.5).sum().backward()
    torch.testing.assert_close(sae.threshold.grad, (-(1 / 0.5) * in_window).sum(0))


# ---- constraints and folding -----------------------------------------------------------------

@pytest.mark.parametrize("arch", sorted(ARCH_CONFIGS))
def test_decoder_gradient_projection_and_renormalisation(arch):
    sae = create(arch, 8, 16, **ARCH_CONFIGS[arch])
    x = torch.randn(32, 8)
    sae.training_loss(x, TrainContext(step=0, total_steps=10)).loss.backward()
    before = sae.W_dec.grad.clone()
    sae.constrain_gradients()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(-1)
    if sae.unit_norm_decoder:
        torch.testing.assert_close(parallel, torch.zeros_like(parallel), atol=1e-6, rtol=0)
        with torch.no_grad():
            sae.W_dec.mul_(3.0)
        sae.constrain_weights()
        torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(16))
    else:
        assert arch == "standard"
        assert torch.equal(sae.W_dec.grad, before)


@pytest.mark.parametrize("arch", sorted(ARCH_CONFIGS))
def test_fold_input_scale_makes_the_sae_take_raw_activations(arch):
    sae = create(arch, 8, 24, **ARCH_CONFIGS[arch])
    _randomise(sae, seed=4)
    x = torch.randn(40, 8)
    scale = 3.7
    with torch.no_grad():
        expected_out = sae(x * scale) / scale
        expected_acts = sae.encode(x * scale) / scale
        sae.fold_input_scale(scale)
        torch.testing.assert_close(sae(x), expected_out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae.encode(x), expected_acts, atol=1e-5, rtol=1e-5)


def test_create_rejects_bad_requests():
    with pytest.raises(DataError, match="Unknown SAE architecture 'gated'.*supports"):
        create("gated", 8, 16)
    with pytest.raises(DataError, match="no setting 'k'"):
        create("standard", 8, 16, k=4)
    with pytest.raises(DataError, match="k must be between 1 and d_sae=16"):
        create("topk", 8, 16, k=17)
    sae = create("topk", 8, 16, k=2)
    with pytest.raises(DataError, match=r"shape \(3, 7\).*\[\.\.\., 8\]"):
        sae.encode(torch.randn(3, 7))


def test_sparse_training_loss_at_the_edges_one_row_and_every_latent_kept():
    sae = create("topk", 5, 6, k=6)
    _randomise(sae, seed=2)
    x = torch.randn(1, 5, generator=torch.Generator().manual_seed(0))
    expected = _dense_topk_loss(sae, x, sae.encode(x), torch.zeros(6, dtype=torch.bool))
    want = torch.autograd.grad(expected, list(sae.parameters()))
    out = sae.training_loss(x, TrainContext(step=0, total_steps=1))
    got = torch.autograd.grad(out.loss, list(sae.parameters()))
    torch.testing.assert_close(out.loss, expected)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_torch_free_arch_configs_match_the_registry():
    from replab.saes.config import ARCH_CONFIGS
    from replab.saes.registry import architectures, get

    assert sorted(ARCH_CONFIGS) == architectures() and next(iter(ARCH_CONFIGS)) == "topk"  # the CLI default first
    for name, config in ARCH_CONFIGS.items():
        assert get(name).config_class is config
