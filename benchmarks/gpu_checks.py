"""Correctness of replab's kernels and of ``capture`` on a CUDA device, against their torch / CPU references.

Run by ``benchmarks/gpu.sh`` before the timings (prints markdown; exits 1 if any check fails):

- ``gather_cast`` (Triton) vs ``gather_cast_reference`` on CUDA at d = 257, non-contiguous input, every store
  dtype: values (float32 exact, bf16/fp16 within one ulp, int8 codes within 1 and scales exact) and statistics;
- ``ce_from_hidden`` / ``kl_from_hidden`` (Triton forward) vs the naive ``log_softmax`` formulas, with gradients;
- sparse decode and SDDMM (Triton) vs dense products;
- ``capture`` of the world model on CUDA (fused path: pieces per shard, pinned copies) vs the same capture on
  the CPU, for float32, bfloat16 and int8 stores: values, the int8 bound, and the recorded statistics.

    PYTHONPATH=$PWD python benchmarks/gpu_checks.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

FAILED: list[str] = []


def check(name: str, value: float, limit: float) -> None:
    ok = value <= limit
    print(f"| {name} | {value:.3g} | {limit:.3g} | {'ok' if ok else 'FAIL'} |")
    if not ok:
        FAILED.append(name)


def kernels() -> None:
    from replab.kernels import CaptureStats, ce_from_hidden, gather_cast, kl_from_hidden
    from replab.kernels.dispatch import use_triton
    from replab.kernels.fused_capture import gather_cast_reference
    from replab.saes import sparse

    g = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(4, 33, 514, device="cuda", generator=g) * 3)[:, ::2, ::2]
    assert use_triton(x), "the dispatcher does not pick Triton on this device (is triton importable?)"
    item = torch.randint(0, 4, (50,), device="cuda", generator=g)
    pos = torch.randint(0, 17, (50,), device="cuda", generator=g)
    for dt in ("float32", "float16", "bfloat16", "int8"):
        s1, s2 = CaptureStats(257, "cuda"), CaptureStats(257, "cuda")
        (a, sa), (b, sb) = gather_cast(x, item, pos, dt, s1), gather_cast_reference(x, item, pos, dt, s2)
        if dt == "int8":
            check("gather_cast int8: max |code difference|", float((a.int() - b.int()).abs().max()), 1)
            check("gather_cast int8: max |scale difference|", float((sa - sb).abs().max()), 0)
        elif dt == "float32":
            check("gather_cast float32: max |difference|", float((a - b).abs().max()), 0)
        else:
            ulp = (a.view(torch.int16).int() - b.view(torch.int16).int()).abs().max()
            check(f"gather_cast {dt}: max ulp difference", float(ulp), 1)
        rel = float(((s1.staging - s2.staging).abs() / s2.staging.abs().clamp_min(1)).max())
        check(f"gather_cast {dt}: statistics, max relative difference", rel, 1e-5)
    h = torch.randn(300, 100, device="cuda", generator=g, requires_grad=True)
    W = torch.randn(100, 5003, device="cuda", generator=g, requires_grad=True)
    th = torch.randn(300, 100, device="cuda", generator=g)
    t = torch.randint(0, 5003, (300,), device="cuda", generator=g)
    for name, got, want in [
        ("ce_from_hidden", lambda: ce_from_hidden(h, W, targets=t), lambda: F.cross_entropy(h @ W, t)),
        ("kl_from_hidden", lambda: kl_from_hidden(h, W, target_h=th),  # the target side takes no gradient
         lambda: F.kl_div(F.log_softmax(h @ W, -1), F.log_softmax(th @ W.detach(), -1), log_target=True,
                          reduction="batchmean")),
    ]:
        a, b = got(), want()
        ga, gb = torch.autograd.grad(a, (h, W)), torch.autograd.grad(b, (h, W))
        check(f"{name}: |loss difference|", float((a - b).detach().abs()), 1e-4)
        check(f"{name}: max |grad difference|", max(float((p - q).abs().max()) for p, q in zip(ga, gb)), 1e-5)
    d_sae, k, n, d = 3000, 32, 257, 100
    idx = torch.rand(n, d_sae, device="cuda", generator=g).topk(k, dim=1).indices
    sel = sparse.Selection.per_row(idx, d_sae)
    vals = torch.rand(sel.nnz, device="cuda", generator=g)
    Wd = torch.randn(d_sae, d, device="cuda", generator=g)
    dense = sel.matrix(vals).to_dense()
    check("sparse decode: max |difference|", float((sparse._spmm(sel.matrix(vals), Wd) - dense @ Wd).abs().max()), 1e-4)
    grad = torch.randn(n, d, device="cuda", generator=g)
    sd = sparse._sddmm(sel, grad, Wd.T)
    check("SDDMM: max |difference|", float((sd - (grad @ Wd.T)[sel.rows, sel.cols]).abs().max()), 1e-4)


def capture_on_cuda() -> None:
    import replab
    from replab.datasets import load

    prompts = load("world:sentiment")
    cpu, gpu = replab.load_model("world"), replab.load_model("world", device="cuda")
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(positions="last", batch_size=96, shard_mb=300 * 256 * 4 / 2**20)
        ref = replab.capture(cpu, prompts, "blocks.*.hook_resid_post", out=Path(tmp) / "cpu", **kw)
        for dtype, size in (("float32", 4), ("bfloat16", 2), ("int8", 1)):
            kw["shard_mb"] = 300 * 256 * size / 2**20  # the same 300 rows per shard: the same statistics pieces
            store = replab.capture(gpu, prompts, "blocks.*.hook_resid_post", out=Path(tmp) / dtype, dtype=dtype, **kw)
            worst_stat, worst = 0.0, 0.0
            for hook in ref.hooks:
                x, got = np.asarray(ref[hook]), np.asarray(store[hook], dtype=np.float32)
                scale = np.abs(x).max(1, keepdims=True)
                bound = {"float32": 1e-5 * scale, "bfloat16": scale / 128, "int8": scale / 254 + 1e-5 * scale}[dtype]
                worst = max(worst, float((np.abs(got - x) / bound).max()))
                a, b = store.stats(hook), ref.stats(hook)
                worst_stat = max(worst_stat, abs(a["mean_norm"] - b["mean_norm"]) / b["mean_norm"],
                                 float(np.abs(a["mean"] - b["mean"]).max() / np.sqrt(b["var"]).max()))
            check(f"capture on CUDA, {dtype} store vs CPU float32: max error / bound", worst, 1)
            check(f"capture on CUDA, {dtype}: statistics vs CPU, max relative difference", worst_stat, 1e-5)


def main() -> int:
    print(f"device: {torch.cuda.get_device_name()}\n")
    print("| check | value | limit | |\n|---|---:|---:|---|")
    kernels()
    capture_on_cuda()
    print(f"\n{'all checks passed' if not FAILED else 'FAILED: ' + ', '.join(FAILED)}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
