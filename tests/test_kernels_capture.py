"""Fused capture (gather, cast, int8, statistics): Triton kernel (interpreter) vs torch reference vs numpy."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any triton import: kernels run on the CPU

import numpy as np
import pytest
import torch

from replab.errors import DataError
from replab.kernels.fused_capture import (CaptureStats, dequantise_int8, gather_cast, gather_cast_reference,
                                        quantise_int8)


def _case(d, rows, seed=0, noncontig=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 7, 2 * d if noncontig else d, generator=g) * 3
    if noncontig:
        x = x[:, :, ::2]  # stride 2 along d
    item = torch.randint(0, 3, (rows,), generator=g)
    pos = torch.randint(0, 7, (rows,), generator=g)
    return x, item, pos


def _kernel(*args, **kw):
    from replab.kernels.fused_capture_triton import gather_cast_triton
    return gather_cast_triton(*args, **kw)


def _one_ulp_bf16(a, b):
    ia, ib = a.view(torch.int16).int(), b.view(torch.int16).int()
    return int((ia - ib).abs().max()) <= 1 if a.numel() else True


@pytest.mark.parametrize("d", [48, 100, 257])
@pytest.mark.parametrize("noncontig", [False, True])
def test_kernel_matches_reference_every_dtype(d, noncontig):
    x, item, pos = _case(d, 21, noncontig=noncontig)
    assert x.is_contiguous() is not noncontig
    for name, dt in (("float32", torch.float32), ("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        s_ref, s_k = CaptureStats(d), CaptureStats(d)
        want, _ = gather_cast_reference(x, item, pos, name, s_ref)
        got, scales = _kernel(x, item, pos, dt, s_k)
        assert got.dtype == dt and scales is None
        if name == "bfloat16":
            assert _one_ulp_bf16(got, want)  # interpreter casts differ by one bf16 ulp
        else:
            assert torch.equal(got, want)
        torch.testing.assert_close(s_k.staging, s_ref.staging, rtol=1e-5, atol=1e-4)
    q_ref, sc_ref = gather_cast_reference(x, item, pos, "int8")
    q, sc = _kernel(x, item, pos, torch.int8)
    torch.testing.assert_close(sc, sc_ref)
    assert int((q.int() - q_ref.int()).abs().max()) <= 1  # x / scale rounding at exact ties


def test_half_inputs_and_one_row():
    x, item, pos = _case(100, 1)
    for src in (torch.float16, torch.bfloat16):
        xs = x.to(src)
        want, _ = gather_cast_reference(xs, item, pos, "float32")
        got, _ = _kernel(xs, item, pos, torch.float32)
        assert got.shape == (1, 100) and torch.equal(got, want)


def test_empty_selection_and_dispatch_on_cpu():
    x, _, _ = _case(48, 0)
    empty = torch.zeros(0, dtype=torch.long)
    stats = CaptureStats(48)
    out, scales = gather_cast(x, empty, empty, "int8", stats)
    assert out.shape == (0, 48) and out.dtype == torch.int8 and scales.shape == (0,)
    out, _ = _kernel(x, empty, empty, torch.float16)
    assert out.shape == (0, 48)
    assert torch.count_nonzero(stats.staging) == 0


def test_int8_error_bound():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 257, generator=g) * torch.logspace(-3, 3, 200)[:, None]
    x[5] = 0
    q, scale = quantise_int8(x)
    err = (dequantise_int8(q, scale) - x).abs()
    bound = x.abs().amax(1, keepdim=True) / 254 * (1 + 1e-5) + 1e-30
    assert bool((err <= bound).all()) and torch.equal(dequantise_int8(q, scale)[5], x[5])
    assert float((err / bound).max()) > 0.9  # the bound is tight, not loose


def test_stats_summary_equals_numpy():
    x, item, pos = _case(100, 50)
    stats = CaptureStats(100)
    for sl in (slice(0, 20), slice(20, 50)):
        gather_cast(x, item[sl], pos[sl], "float32", stats)
        stats.fold(sl.stop - sl.start)
    rows = x[item, pos].double().numpy()
    s = stats.summary()
    assert s["rows"] == 50
    np.testing.assert_allclose(s["mean"], rows.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s["var"], rows.var(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s["mean_norm"], np.linalg.norm(rows, axis=1).mean(), rtol=1e-6)


def test_bad_input_raises():
    x, item, pos = _case(48, 3)
    with pytest.raises(DataError, match="Unsupported capture dtype"):
        gather_cast(x, item, pos, "int4")
    with pytest.raises(DataError, match="batch, seq, d"):
        gather_cast(x[0], item, pos)


def test_import_replab_does_not_import_triton():
    import subprocess
    import sys

    code = ("import sys, replab, replab.probes, replab.saes, replab.kernels; replab.kernels.gather_cast; "
            "replab.kernels.kl_from_hidden; print('triton' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


def test_capture_records_stats_of_the_rows_before_the_cast(tiny_model, tmp_path):
    """float32 store: statistics equal numpy over the store; bfloat16 and int8 stores with the same shard rows
    record exactly the same statistics (of the float32 rows before the cast), not those of their stored values."""
    from replab.activations import ActivationStore, capture
    from replab.datasets import PromptSet

    prompts = PromptSet(texts=["The capital of France is Paris.", "A dog is a mammal.", "The movie was great."],
                        name="stats-prompts")
    stores = {dtype: capture(tiny_model, prompts, ["hook_embed", "blocks.*.hook_resid_post"],
                             out=tmp_path / dtype, dtype=dtype, batch_size=2, shard_mb=5 * 32 * size / 2**20)
              for dtype, size in {"float32": 4, "bfloat16": 2, "int8": 1}.items()}
    ref = ActivationStore.open(tmp_path / "float32")
    assert len(ref.manifest["shards"]) > 1 and ref.manifest["rows_per_shard"] == 5
    for hook in ref.hooks:
        x = np.asarray(ref[hook], dtype=np.float64)
        s = ref.stats(hook)
        assert s["rows"] == len(x)
        np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(s["var"], x.var(0), rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(s["mean_norm"], np.linalg.norm(x, axis=1).mean(), rtol=1e-9)
        for dtype in ("bfloat16", "int8"):
            low = stores[dtype]
            assert low.manifest["rows_per_shard"] == 5 and low.manifest["stats"][hook] == ref.manifest["stats"][hook]
            stored = np.asarray(low[hook], dtype=np.float64)
            assert np.abs(stored.mean(0) - x.mean(0)).max() > 0  # the stored values' own mean differs


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_capture_through_the_kernel_writes_the_reference_store(tiny_model, tmp_path, monkeypatch, dtype):
    """capture's CUDA path (the kernel per shard piece) run on the CPU by the interpreter: same values, the
    statistics to float32 rounding (the kernel sums each block of rows in float32)."""
    import replab.kernels.fused_capture as fused
    from replab.activations import capture
    from replab.datasets import PromptSet

    prompts = PromptSet(texts=["The capital of France is Paris.", "A dog is a mammal. A cat is a mammal."] * 2,
                        name="kernel-capture")
    kw = dict(out=tmp_path / "ref", dtype=dtype, batch_size=2, shard_mb=5 * 32 * 4 / 2**20)
    ref = capture(tiny_model, prompts, "blocks.*.hook_resid_post", **kw)
    calls = []
    monkeypatch.setattr(fused, "use_triton", lambda *t: calls.append(len(t)) or True)
    got = capture(tiny_model, prompts, "blocks.*.hook_resid_post", **{**kw, "out": tmp_path / "kernel"})
    assert len(calls) > 2 * len(got.manifest["shards"])  # one launch per hook and shard piece
    for hook in ref.hooks:
        np.testing.assert_array_equal(np.asarray(got[hook]), np.asarray(ref[hook]))
        a, b = got.stats(hook), ref.stats(hook)
        np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(a["var"], b["var"], rtol=1e-5, atol=1e-8)
        assert a["mean_norm"] == pytest.approx(b["mean_norm"], rel=1e-6)
