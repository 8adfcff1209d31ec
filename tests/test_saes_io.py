"""SAELens-format interop: round trips for every architecture and hand-built SAELens directories."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from replab.errors import DataError, RunDirError
from replab.saes import JumpReLUSAE, create, load

ARCH_CONFIGS = {
    "standard": {"l1_coefficient": 3.0},
    "topk": {"k": 3},
    "batchtopk": {"k": 3},
    "jumprelu": {"bandwidth": 0.01},
    "matching_pursuit": {"k": 3, "residual_threshold": 0.2},
}
D_IN, D_SAE = 8, 24


def _randomised(arch: str):
    sae = create(arch, D_IN, D_SAE, metadata={"model_name": "tiny", "hook_name": "blocks.0.hook_resid_post"},
                 **ARCH_CONFIGS[arch])
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, t in [*sae.named_parameters(), *sae.named_buffers()]:
            if name == "threshold":
                t.copy_((0.05 + 0.3 * torch.rand(t.shape, generator=g)).to(t.dtype))
            else:
                t.copy_(0.4 * torch.randn(t.shape, generator=g))
        sae.constrain_weights()
    return sae


@pytest.mark.parametrize("arch", sorted(ARCH_CONFIGS))
def test_save_load_round_trip_gives_equal_outputs(arch, tmp_path):
    sae = _randomised(arch)
    sae.save(tmp_path / arch)
    loaded = load(tmp_path / arch)
    x = torch.randn(30, D_IN)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert torch.equal(loaded(x), sae(x))
    assert loaded.cfg.metadata["hook_name"] == "blocks.0.hook_resid_post"
    cfg = json.loads((tmp_path / arch / "cfg.json").read_text())
    assert cfg["d_in"] == D_IN and cfg["d_sae"] == D_SAE and cfg["dtype"] == "float32"
    assert cfg["metadata"]["model_name"] == "tiny" and "replab_version" in cfg["metadata"]
    tensors = load_file(str(tmp_path / arch / "sae_weights.safetensors"))
    assert tensors["W_dec"].shape == (D_SAE, D_IN) and tensors["b_dec"].shape == (D_IN,)
    if arch == "matching_pursuit":
        assert set(tensors) == {"W_dec", "b_dec"}
        assert cfg["architecture"] == "matching_pursuit"
        assert (cfg["k"], cfg["max_iterations"], cfg["residual_threshold"]) == (3, 3, 0.2)
    else:
        assert tensors["W_enc"].shape == (D_IN, D_SAE) and tensors["b_enc"].shape == (D_SAE,)


def test_jumprelu_threshold_round_trips(tmp_path):
    sae = _randomised("jumprelu")
    sae.save(tmp_path)
    tensors = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert set(tensors) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}
    assert torch.equal(tensors["threshold"], sae.threshold.detach())
    assert torch.equal(load(tmp_path).threshold, sae.threshold)


def test_batchtopk_is_saved_as_jumprelu_with_its_threshold(tmp_path):
    sae = _randomised("batchtopk")
    with torch.no_grad():
        sae.threshold.fill_(0.3)
    sae.save(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and "k" not in cfg
    assert cfg["metadata"]["replab_trained_as"] == "batchtopk"
    tensors = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert tensors["threshold"].shape == (D_SAE,)
    torch.testing.assert_close(tensors["threshold"], torch.full((D_SAE,), 0.3))
    loaded = load(tmp_path)
    assert isinstance(loaded, JumpReLUSAE)
    x = torch.randn(50, D_IN)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), sae.encode(x))
        torch.testing.assert_close(loaded(x), sae(x))


# ---- directories written the way SAELens writes them ------------------------------------------

def _saelens_dir(path, architecture: str, tensors: dict, **extra):
    """cfg.json as SAELens 6 ``save_model`` writes it, including fields replab does not use."""
    cfg = {
        "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cuda", "apply_b_dec_to_input": True,
        "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.5.1", "sae_lens_training_version": "6.5.1", "model_name": "gpt2",
                     "hook_name": "blocks.3.hook_resid_post", "hook_head_index": None, "prepend_bos": True,
                     "context_size": 128, "dataset_path": "monology/pile-uncopyrighted"},
        "architecture": architecture, **extra,
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "sae_weights.safetensors"))
    return path


def _weights(seed=0, tied=False):
    g = torch.Generator().manual_seed(seed)
    t = {"W_dec": torch.randn(D_SAE, D_IN, generator=g), "b_dec": 0.3 * torch.randn(D_IN, generator=g)}
    if not tied:
        t["W_enc"] = torch.randn(D_IN, D_SAE, generator=g)
        t["b_enc"] = 0.3 * torch.randn(D_SAE, generator=g)
    return t


def test_loads_saelens_standard_sae(tmp_path):
    w = _weights()
    sae = load(_saelens_dir(tmp_path, "standard", w, some_future_field=[1, 2]))
    x = torch.randn(20, D_IN)
    expected_acts = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), expected_acts)
        torch.testing.assert_close(sae(x), expected_acts @ w["W_dec"] + w["b_dec"])
    assert sae.cfg.metadata["hook_name"] == "blocks.3.hook_resid_post"


def test_loads_saelens_topk_with_decoder_norm_rescaling(tmp_path):
    w = _weights(1)
    sae = load(_saelens_dir(tmp_path, "topk", w, k=4, rescale_acts_by_decoder_norm=True))
    x = torch.randn(20, D_IN)
    norms = w["W_dec"].norm(dim=-1)
    pre = ((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * norms  # SAELens TopKSAE.encode
    top = pre.topk(4, dim=-1)
    acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    expected = (acts / norms) @ w["W_dec"] + w["b_dec"]  # SAELens TopKSAE.decode
    with torch.no_grad():
        torch.testing.assert_close(sae(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae.encode(x), acts, atol=1e-5, rtol=1e-5)


def test_loads_saelens_jumprelu_and_training_log_threshold(tmp_path):
    w = _weights(2)
    threshold = 0.2 + torch.rand(D_SAE)
    x = torch.randn(20, D_IN)
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    expected = (pre.relu() * (pre > threshold)) @ w["W_dec"] + w["b_dec"]
    sae = load(_saelens_dir(tmp_path / "inference", "jumprelu", {**w, "threshold": threshold}))
    with torch.no_grad():
        torch.testing.assert_close(sae(x), expected)
    sae = load(_saelens_dir(tmp_path / "training", "jumprelu", {**w, "log_threshold": threshold.log()},
                            jumprelu_bandwidth=0.001, l0_coefficient=5.0))
    with torch.no_grad():
        torch.testing.assert_close(sae.threshold, threshold)


def _saelens_matching_pursuit(x, W, b, threshold, max_iterations):
    """Straight transcription of SAELens ``_encode_matching_pursuit`` (stop_on_duplicate_support=True)."""
    residual = x - b
    acts = torch.zeros(x.shape[0], W.shape[0])
    prev = torch.zeros_like(acts, dtype=torch.bool)
    done = torch.zeros(x.shape[0], dtype=torch.bool)
    for _ in range(max_iterations):
        idx = (residual @ W.T).relu().max(dim=1, keepdim=True).indices
        values = (residual * W[idx.squeeze(1)]).sum(-1, keepdim=True).relu() * (~done)[:, None]
        acts.scatter_add_(1, idx, values)
        residual = residual - values * W[idx.squeeze(1)]
        support = acts != 0
        done = done | (support == prev).all(dim=1)
        prev = support
        if threshold > 0:
            done = done | (residual.norm(dim=-1) < threshold)
        if done.all():
            break
    return acts


def test_loads_saelens_matching_pursuit(tmp_path):
    w = _weights(3, tied=True)
    w["W_dec"] = w["W_dec"] / w["W_dec"].norm(dim=-1, keepdim=True)
    sae = load(_saelens_dir(tmp_path, "matching_pursuit", w, residual_threshold=0.8, max_iterations=6,
                            stop_on_duplicate_support=True))
    x = torch.randn(40, D_IN)
    expected = _saelens_matching_pursuit(x, w["W_dec"], w["b_dec"], 0.8, 6)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae(x), expected @ w["W_dec"] + w["b_dec"], atol=1e-5, rtol=1e-5)


def test_load_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(DataError, match="Unknown SAE architecture 'gated'"):
        load(_saelens_dir(tmp_path / "gated", "gated", _weights()))
    with pytest.raises(DataError, match="hook_z"):
        load(_saelens_dir(tmp_path / "z", "standard", _weights(), reshape_activations="hook_z"))
    with pytest.raises(DataError, match="normalize_activations='layer_norm'"):
        load(_saelens_dir(tmp_path / "ln", "standard", _weights(), normalize_activations="layer_norm"))
    bad = _weights()
    bad["W_enc"] = bad["W_enc"][:, :5]
    with pytest.raises(DataError, match=r"'W_enc'.*shape \(8, 5\), expected \(8, 24\)"):
        load(_saelens_dir(tmp_path / "shape", "standard", bad))
    with pytest.raises(DataError, match="missing \\['threshold'\\]"):
        load(_saelens_dir(tmp_path / "nothr", "jumprelu", _weights()))
    with pytest.raises(RunDirError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "cfg.json").write_text("{}")
    with pytest.raises(RunDirError, match="sae_weights.safetensors is missing"):
        load(tmp_path / "half")
    corrupt = _saelens_dir(tmp_path / "corrupt", "standard", _weights())
    (corrupt / "sae_weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RunDirError, match="corrupt"):
        load(corrupt)


# ---- SAELens < 6 directories (e.g. the gpt2-small-res-jb release) ------------------------------

def _pre6_dir(path, tensors: dict, **extra):
    """cfg.json as SAELens 2-5 wrote it: no ``architecture``/``metadata``, ``hook_point`` keys."""
    cfg = {"model_name": "gpt2-small", "hook_point": "blocks.8.hook_resid_pre", "hook_point_layer": 8,
           "hook_point_head_index": None, "dataset_path": "Skylion007/openwebtext", "context_size": 128,
           "d_in": D_IN, "d_sae": D_SAE, "device": "mps", "dtype": "torch.float32", "l1_coefficient": 8e-05,
           "lr": 0.0004, "b_dec_init_method": "geometric_median", "expansion_factor": 3, **extra}
    path.mkdir(parents=True, exist_ok=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "sae_weights.safetensors"))
    return path


def test_loads_saelens_pre6_standard_sae(tmp_path):
    w = _weights(4)
    sae = load(_pre6_dir(tmp_path, {**w, "scaling_factor": torch.ones(D_SAE)}))
    x = torch.randn(20, D_IN)
    acts = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), acts)
        torch.testing.assert_close(sae(x), acts @ w["W_dec"] + w["b_dec"])
    assert sae.architecture == "standard" and sae.cfg.dtype == "float32"
    assert sae.cfg.normalize_activations == "none"
    assert {k: sae.cfg.metadata[k] for k in ("model_name", "hook_name", "hook_layer")} == {
        "model_name": "gpt2-small", "hook_name": "blocks.8.hook_resid_pre", "hook_layer": 8}


def test_pre6_scaling_factor_is_folded_into_the_decoder(tmp_path):
    w = _weights(5)
    scale = 0.5 + torch.rand(D_SAE)
    sae = load(_pre6_dir(tmp_path, {**w, "scaling_factor": scale}, architecture="standard",
                         normalize_activations=False, finetuning_scaling_factor=True))
    x = torch.randn(20, D_IN)
    acts = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    with torch.no_grad():  # SAELens < 6 decode: (acts * scaling_factor) @ W_dec + b_dec
        torch.testing.assert_close(sae.encode(x), acts)
        torch.testing.assert_close(sae(x), (acts * scale) @ w["W_dec"] + w["b_dec"], atol=1e-5, rtol=1e-5)


def test_pre6_topk_activation_is_read_as_a_topk_sae(tmp_path):
    w = _weights(6)
    sae = load(_pre6_dir(tmp_path, w, activation_fn_str="topk", activation_fn_kwargs={"k": 4},
                         normalize_activations="none"))
    x = torch.randn(20, D_IN)
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    top = pre.topk(4, dim=-1)
    acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    assert sae.architecture == "topk" and sae.cfg.k == 4
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), acts)


def test_pre6_files_replab_cannot_read_are_refused(tmp_path):
    with pytest.raises(DataError, match="activation_fn 'tanh-relu' is not supported"):
        load(_pre6_dir(tmp_path / "tanh", _weights(), activation_fn_str="tanh-relu"))
    with pytest.raises(DataError, match="hook_z"):
        load(_pre6_dir(tmp_path / "z", _weights(), hook_point="blocks.4.attn.hook_z"))
    (tmp_path / "nocfg").mkdir()
    (tmp_path / "nocfg" / "cfg.json").write_text(json.dumps({"lr": 1.0}))
    save_file(_weights(), str(tmp_path / "nocfg" / "sae_weights.safetensors"))
    with pytest.raises(DataError, match="no 'd_in' and 'd_sae' fields"):
        load(tmp_path / "nocfg")
