"""SAE training: planted-feature recovery, normalisation folding, checkpoints and resume, run directory, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from replab.errors import DataError, ReplabError
from replab.runs import Run
from replab.saes import create, load, synthetic, train
from replab.saes.train import TrainConfig, geometric_median


@pytest.fixture(scope="module")
def flat_data():
    return synthetic.flat(20000, d=32, n_features=64, n_active=3, seed=0)


def test_topk_recovers_planted_features(flat_data):
    sae = create("topk", 32, 64, k=3, seed=0)
    result = train(sae, flat_data.x, batch_size=256, steps=1500, lr=1e-2, progress=False)
    mmcs = synthetic.mean_max_cosine(flat_data.features, sae.W_dec)
    assert mmcs >= 0.9, f"mean max cosine {mmcs:.3f}"
    assert result.history[-1]["l0"] <= 3
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(64))


def test_planted_features_are_what_the_generators_say():
    flat = synthetic.flat(5000, d=16, n_features=32, n_active=2, seed=1)
    torch.testing.assert_close(flat.x, flat.codes @ flat.features)
    assert abs(flat.l0 - 2) < 0.1
    tree = synthetic.hierarchical(4000, d=48, n_parents=6, n_children=3, p_parent=0.3, child_cos=0.5, seed=2)
    parents, children = tree.codes[:, :6] > 0, (tree.codes[:, 6:] > 0).reshape(-1, 6, 3)
    n_children = children.sum(-1)
    assert n_children.max() == 1 and torch.all(n_children <= parents.long())  # mutually exclusive, only under a parent
    assert float(n_children[parents].float().mean()) == pytest.approx(0.6, abs=0.03)  # p_child
    cos = tree.features @ tree.features.T
    child_of = tree.parents[6:]
    torch.testing.assert_close(cos[6:, :6][torch.arange(18), child_of], torch.full((18,), 0.5))
    offsets = tree.features[6:] - 0.5 * tree.features[child_of]
    gram = offsets @ offsets.T
    torch.testing.assert_close(gram, 0.75 * torch.eye(18), atol=1e-5, rtol=0)  # conditionally orthogonal
    assert synthetic.mean_max_cosine(tree.features, tree.features) == pytest.approx(1.0)


def test_normalisation_is_folded_in(flat_data):
    x = flat_data.x[:4000]
    small = create("topk", 32, 64, k=3, seed=1)
    big = create("topk", 32, 64, k=3, seed=1)
    r_small = train(small, x, batch_size=200, steps=100, progress=False)
    r_big = train(big, x * 100.0, batch_size=200, steps=100, progress=False)
    expected_scale = math.sqrt(32) / float(x.norm(dim=-1).mean())
    assert r_small.metrics["input_scale"] == pytest.approx(expected_scale, rel=1e-5)
    assert r_big.metrics["input_scale"] == pytest.approx(expected_scale / 100, rel=1e-5)
    with torch.no_grad():  # same normalised problem -> the same SAE, up to the folded scale
        torch.testing.assert_close(big(x[:50] * 100.0), small(x[:50]) * 100.0, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(big.encode(x[:50] * 100.0), small.encode(x[:50]) * 100.0, rtol=1e-3, atol=1e-3)


def test_resume_continues_exactly(flat_data, tmp_path):
    x = flat_data.x[:3000]
    settings = dict(batch_size=128, lr=3e-3, warmup_steps=5, decay_fraction=0.0, dead_after_tokens=512,
                    checkpoint_every=20, progress=False, log_every=10)
    straight = create("topk", 32, 96, k=3, seed=2)
    expected = train(straight, x, steps=40, out=tmp_path / "a", **settings)
    first = create("topk", 32, 96, k=3, seed=2)
    train(first, x, steps=25, out=tmp_path / "b", **settings)  # 24 batches an epoch: stops inside epoch 2
    resumed = create("topk", 32, 96, k=3, seed=99)  # different init: everything must come from the checkpoint
    result = train(resumed, x, steps=40, out=tmp_path / "b", resume=True, **settings)
    assert result.metrics["steps"] == 40
    assert result.metrics["tokens"] == expected.metrics["tokens"] == 39 * 128 + 3000 % 128  # one short last batch
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, atol=1e-6, rtol=1e-5)
    assert [h["step"] for h in result.history] == [10, 20, 25, 30, 40]  # the first run logged its last step
    ckpts = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert ckpts == ["step_00000025", "step_00000040"]  # keep_checkpoints=2


def test_run_directory_holds_a_loadable_sae(flat_data, tmp_path):
    sae = create("matching_pursuit", 32, 64, k=3)
    result = train(sae, flat_data.x[:2000], batch_size=100, steps=30, out=tmp_path / "run", progress=False, log_every=10)
    run = Run.open(tmp_path / "run")
    assert run.kind == "sae" and run.info["status"] == "complete"
    assert run.info["config"]["architecture"] == "matching_pursuit"
    for artifact in ("cfg.json", "sae_weights.safetensors", "training_log.csv", "figures/training.json", "train_config.json"):
        assert artifact in run.info["artifacts"]
    log = run.read_table("training_log")
    assert list(log["step"]) == [10, 20, 30] and {"loss", "mse", "l0", "fvu_batch", "tokens_per_s"} <= set(log.columns)
    assert run.info["metrics"]["tokens"] == 3000 and run.info["metrics"]["tokens_per_s"] > 0
    loaded = load(tmp_path / "run")
    x = flat_data.x[:20]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.sae(x))


def test_steps_from_tokens_and_lr_schedule():
    cfg = TrainConfig(batch_size=100, tokens=1050, warmup_steps=2, decay_fraction=0.5)
    assert cfg.total_steps(10**6) == 11
    assert TrainConfig(batch_size=100).total_steps(250) == 3  # one epoch by default
    factors = [cfg.lr_factor(s, 10) for s in range(10)]
    assert factors == pytest.approx([0.5, 1, 1, 1, 1, 1.0, 0.8, 0.6, 0.4, 0.2])
    assert TrainConfig().learning_rate(2**14) == pytest.approx(2e-4)
    assert TrainConfig().learning_rate(2**12) == pytest.approx(4e-4)


def test_geometric_median_minimises_summed_distance():
    from scipy.optimize import minimize

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(200, 3, generator=g), 50 + torch.randn(20, 3, generator=g)]).double()
    objective = lambda m: float((x - torch.as_tensor(m)).norm(dim=-1).sum())  # noqa: E731
    reference = minimize(objective, x.mean(0).numpy(), method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10,
                                                                                        "maxiter": 20000}).x
    got = geometric_median(x)
    assert objective(got.double()) <= objective(reference) + 1e-4
    np.testing.assert_allclose(got.numpy(), reference, atol=1e-3)


def test_bad_training_input_is_rejected():
    sae = create("topk", 8, 16, k=2)
    x = torch.randn(100, 8)
    with pytest.raises(DataError, match="width 7 but the SAE expects d_in=8"):
        train(sae, torch.randn(100, 7), steps=1, progress=False)
    bad = x.clone()
    bad[17, 3] = float("nan")
    with pytest.raises(DataError, match="NaN.*row 17"):
        train(sae, bad, steps=1, progress=False)
    with pytest.raises(DataError, match="2-D"):
        train(sae, torch.randn(4, 5, 8), steps=1, progress=False)
    with pytest.raises(DataError, match="steps or tokens, not both"):
        train(sae, x, steps=2, tokens=100, progress=False)
    with pytest.raises(DataError, match="Unknown training setting.*known settings"):
        train(sae, x, steps=1, learning_rate=0.1)
    with pytest.raises(DataError, match="no rows"):
        train(sae, torch.zeros(0, 8), steps=1, progress=False)
    with pytest.raises(ReplabError, match="diverged at step 0.*Lower lr"):  # squares overflow float32
        train(sae, x * 1e30, steps=1, normalize=False, b_dec_init="zero", progress=False)


@pytest.mark.parametrize("steps", [None, 2, 7])
def test_planned_rows_are_the_rows_read(steps):
    """The progress bar's total (``TrainConfig.total_rows``) is what training reads: epochs end in a partial batch."""
    x = torch.randn(2500, 8)
    result = train(create("topk", 8, 16, k=2), x, steps=steps, batch_size=1000, progress=False)
    assert result.metrics["tokens"] == TrainConfig(batch_size=1000, steps=steps).total_rows(2500)
    assert TrainConfig(batch_size=1000, steps=steps).total_rows(2500) == {None: 2500, 2: 2000, 7: 6000}[steps]
