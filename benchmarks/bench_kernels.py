"""Each replab kernel against its torch reference: median time and max error, interleaved rounds.

On CUDA the dispatched path is the Triton kernel; on a CPU both sides are torch (the dispatcher never picks
Triton there), so the CPU run measures what the chunked lens loss costs against the naive ``[n, V]`` formula.

    python benchmarks/bench_kernels.py --device cuda     # prints a markdown table
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from replab.kernels import CaptureStats, gather_cast, kl_from_hidden
from replab.kernels.fused_capture import gather_cast_reference
from replab.saes import sparse


def _time(fn, device) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3, out


def _compare(name, fast, ref, rounds, device):
    fast(), ref()  # warm-up (compilation)
    tf, tr = [], []
    for _ in range(rounds):
        a, out_f = _time(fast, device)
        b, out_r = _time(ref, device)
        tf.append(a)
        tr.append(b)
    err = float((out_f.float() - out_r.float()).abs().max())
    mf, mr = statistics.median(tf), statistics.median(tr)
    print(f"| {name} | {mf:.2f} | {mr:.2f} | {mr / mf:.2f}x | {err:.2e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    args = ap.parse_args()
    dev, g = args.device, torch.Generator(device=args.device).manual_seed(0)
    name = torch.cuda.get_device_name() if dev == "cuda" else platform.processor() or platform.machine()
    print(f"device: {name}, torch {torch.__version__}, rows {args.rows}, d {args.d}, vocab {args.vocab}\n")
    print("| kernel | dispatched ms (median) | reference ms | reference / dispatched | max abs error |")
    print("|---|---:|---:|---:|---:|")
    d = args.d
    x = torch.randn(args.rows // 128, 256, d, device=dev, generator=g)
    item = torch.randint(0, x.shape[0], (args.rows,), device=dev, generator=g)
    pos = torch.randint(0, 256, (args.rows,), device=dev, generator=g)
    for dt in ("bfloat16", "int8"):
        _compare(f"gather_cast {dt} + stats", lambda dt=dt: gather_cast(x, item, pos, dt, CaptureStats(d, dev))[0],
                 lambda dt=dt: gather_cast_reference(x, item, pos, dt, CaptureStats(d, dev))[0], args.rounds, dev)
    n = min(args.rows, 1024 if dev == "cpu" else args.rows)
    h = torch.randn(n, d, device=dev, generator=g)
    th = torch.randn(n, d, device=dev, generator=g)
    W = torch.randn(d, args.vocab, device=dev, generator=g) / d ** 0.5

    def naive():
        logq, logp = F.log_softmax(h @ W, -1), F.log_softmax(th @ W, -1)
        return (logp.exp() * (logp - logq)).sum(-1).mean()
    _compare(f"kl_from_hidden (n={n}, forward)", lambda: kl_from_hidden(h, W, target_h=th), naive, args.rounds, dev)
    d_sae, k = 16 * d, 32
    idx = torch.rand(args.rows, d_sae, device=dev, generator=g).topk(k, dim=1).indices
    sel = sparse.Selection.per_row(idx, d_sae)
    vals = torch.rand(sel.nnz, device=dev, generator=g)
    Wd = torch.randn(d_sae, d, device=dev, generator=g)
    ref_spmm = lambda: sel.matrix(vals) @ Wd  # noqa: E731
    _compare(f"sparse decode (k={k}, d_sae={d_sae})", lambda: sparse._spmm(sel.matrix(vals), Wd), ref_spmm,
             args.rounds, dev)
    grad = torch.randn(args.rows, d, device=dev, generator=g)
    _compare("sparse value grad (SDDMM)", lambda: sparse._sddmm(sel, grad, Wd.T),
             lambda: (grad @ Wd.T)[sel.rows, sel.cols], args.rounds, dev)
    sparse_step, dense_step = _sae_steps(d, d_sae, k, torch.randn(args.rows, d, device=dev, generator=g))
    _compare(f"TopK SAE step, forward + backward (d_sae={d_sae}, k={k}; error: W_dec gradient)", sparse_step,
             dense_step, args.rounds, dev)


def _sae_steps(d: int, d_sae: int, k: int, x: torch.Tensor):
    """The TopK SAE's training loss and backward: replab's sparse step vs the dense formula it replaces
    (``[n, d_sae]`` codes decoded by a dense product); each returns the ``W_dec`` gradient."""
    from replab.saes import create
    from replab.saes.base import TrainContext

    sae = create("topk", d, d_sae, k=k, seed=0).to(x.device)

    def sparse_step():
        sae.zero_grad()
        sae.training_loss(x, TrainContext(0, 1)).loss.backward()
        return sae.W_dec.grad.clone()

    def dense_step():
        sae.zero_grad()
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        top = pre.topk(k, dim=-1, sorted=False)
        codes = torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())
        (codes @ sae.W_dec + sae.b_dec - x).pow(2).sum(-1).mean().backward()
        return sae.W_dec.grad.clone()
    return sparse_step, dense_step


if __name__ == "__main__":
    main()
