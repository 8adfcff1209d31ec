#!/usr/bin/env bash
# One prepared GPU session (< 8 min on a CUDA machine): installs replab with triton, runs the kernel tests on the
# device, then capture overhead, each kernel vs its reference, the sparse SAE step vs dense, and the probe sweep
# vs scikit-learn; writes docs/benchmarks-gpu.md naming the device.   Usage: bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/benchmarks-gpu.md
python -m pip install -q -e ".[gpu,test]" 2>&1 | tail -2 || python -m pip install -q "triton==3.9.*" -e .
python -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(), triton.__version__)"
DEV=$(python -c "import torch; print(torch.cuda.get_device_name())")
{
  echo "# GPU benchmarks"
  echo
  echo "Device: $DEV; $(python -c 'import torch, triton; print(f"torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}")');"
  echo "written by benchmarks/gpu.sh on $(date -u +%Y-%m-%dT%H:%MZ). Medians of interleaved rounds."
  echo
  echo "## Kernel tests on the device (REPLAB kernels dispatched to Triton)"
  echo '```'
  timeout 120 python - <<'PY' 2>&1 | tail -5
import torch
from replab.kernels import CaptureStats, gather_cast, kl_from_hidden, ce_from_hidden
from replab.kernels.fused_capture import gather_cast_reference
import torch.nn.functional as F
x = torch.randn(4, 33, 257, device="cuda")[:, ::2]
item, pos = torch.randint(0, 4, (50,), device="cuda"), torch.randint(0, 17, (50,), device="cuda")
for dt in ("float32", "float16", "bfloat16", "int8"):
    s1, s2 = CaptureStats(257, "cuda"), CaptureStats(257, "cuda")
    a, sa = gather_cast(x, item, pos, dt, s1); b, sb = gather_cast_reference(x, item, pos, dt, s2)
    print(dt, "max diff", float((a.float() - b.float()).abs().max()), "stats diff", float((s1.staging - s2.staging).abs().max()))
h = torch.randn(300, 100, device="cuda", requires_grad=True); W = torch.randn(100, 1000, device="cuda", requires_grad=True)
t = torch.randint(0, 1000, (300,), device="cuda")
got, want = ce_from_hidden(h, W, targets=t), F.cross_entropy(h @ W, t)
print("ce diff", float((got - want).abs()), "grad diff", float((torch.autograd.grad(got, h)[0] - torch.autograd.grad(want, h)[0]).abs().max()))
PY
  echo '```'
  echo
  echo "## Each kernel vs its torch reference (GPT-2 vocabulary, d 768)"
  timeout 150 python benchmarks/bench_kernels.py --device cuda --rows 4096 --rounds 5
  echo
  echo "## Capture overhead vs bare forward (GPT-2-small shape: 12 layers, d_model 768, all resid_post hooks; target <= 1.10x)"
  timeout 150 python benchmarks/bench_capture.py --device cuda --layers 12 --d-model 768 --heads 12 --tokens 65536 --rounds 3 2>&1 | tail -12
  echo
  echo "## Sparse TopK SAE step vs dense"
  timeout 90 python benchmarks/bench_sae.py --device cuda --d-in 768 --d-sae 24576 --k 32 --batch 4096 --steps 10 --rounds 3 2>&1 | tail -12
  echo
  echo "## Probe sweep on the GPU vs the scikit-learn loop (12 x 768 x 20000; target >= 10x)"
  timeout 150 python benchmarks/bench_probes.py --device cuda --layers 12 --d 768 --n 20000 --repeats 1 --docs "$OUT.probes" 2>&1 | tail -12
  cat "$OUT.probes" 2>/dev/null && rm -f "$OUT.probes"
} > "$OUT.tmp" 2>&1 || true
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT"
