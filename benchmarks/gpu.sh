#!/usr/bin/env bash
# One prepared GPU session, under 8 minutes on a CUDA machine (each step has its own timeout: 465 s in all, install included):
#   1. checks torch sees CUDA and triton imports (installs triton from the registry only if it is missing and
#      a registry is reachable; never reinstalls torch), with replab taken from this checkout (PYTHONPATH);
#   2. benchmarks/gpu_checks.py: every kernel vs its torch reference on the device, and capture on CUDA (fused
#      path) vs the CPU capture for float32 / bfloat16 / int8 stores (values, int8 bound, statistics);
#   3. each kernel vs its reference and the sparse TopK SAE step vs the dense one (speed, max error;
#      bench_kernels.py), capture overhead vs a bare forward on a GPT-2-small shape (12 x 768, all resid_post
#      hooks; target <= 1.10x), TopK SAE training throughput, and the probe sweep on the GPU vs the
#      scikit-learn loop (12 x 768 x 20,000; target >= 10x);
# and writes docs/benchmarks-gpu.md naming the device (partial results are kept if a step fails or times out;
# copied into $OUT when that folder exists). Exit status 1 if a check FAILs or a step fails or times out.
#   Usage: bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
unset TRITON_INTERPRET REPLAB_DISABLE_TRITON
REPORT=docs/benchmarks-gpu.md
python -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'" || exit 1
python -c "import triton" 2>/dev/null || timeout 30 python -m pip install -q --no-deps "triton>=3.0" \
  || echo "warning: triton is not importable: the kernels below run their torch references"
DEV=$(python -c "import torch; print(torch.cuda.get_device_name())")
VERSIONS=$(python -c 'import torch
try:
    import triton; t = triton.__version__
except ImportError:
    t = "absent"
print(f"torch {torch.__version__}, triton {t}, CUDA {torch.version.cuda}")')
step() {  # step SECONDS TITLE COMMAND...: a section of the report, whatever the command's fate
  local limit=$1 title=$2; shift 2
  echo; echo "## $title"; echo
  timeout "$limit" "$@" 2>&1 | grep -v -e '^Loading weights' -e 'it/s\]$'
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || echo "(exit status $rc$([ "$rc" = 124 ] && echo ": timed out after ${limit}s"))"
}
{
  echo "# GPU benchmarks"
  echo
  echo "Device: $DEV; $VERSIONS; written by benchmarks/gpu.sh on $(date -u +%Y-%m-%dT%H:%MZ)."
  echo "Medians of interleaved rounds; ratios are reference / dispatched (kernels) or against the bare forward."
  step 90 "Correctness on the device (kernels vs torch references; capture on CUDA vs CPU)" \
    python benchmarks/gpu_checks.py
  step 60 "Each kernel vs its torch reference, and the sparse TopK SAE step vs the dense one (rows 4096, d 768, GPT-2 vocabulary 50,257)" \
    python benchmarks/bench_kernels.py --device cuda --rows 4096 --rounds 5
  step 90 "Capture overhead vs bare forward (GPT-2-small shape: 12 layers, d_model 768, all resid_post hooks; target <= 1.10x)" \
    python benchmarks/bench_capture.py --device cuda --layers 12 --d-model 768 --heads 12 --tokens 32768 --rounds 3
  step 45 "TopK SAE training throughput, sparse step (d_in 768, d_sae 24,576, k 32, batch 4096; sparse vs dense step: the kernels table above)" \
    python benchmarks/bench_sae.py --device cuda --d-in 768 --d-sae 24576 --k 32 --batch 4096 --steps 10 --rounds 3
  step 150 "Probe sweep on the GPU vs the scikit-learn loop (12 layers x 768 x 20,000 rows; target >= 10x)" \
    python benchmarks/bench_probes.py --device cuda --layers 12 --d 768 --n 20000 --repeats 1 --docs "$REPORT.probes"
} > "$REPORT.tmp"
rm -f "$REPORT.probes"
mv "$REPORT.tmp" "$REPORT"
echo "wrote $REPORT"
# On a lent device machine (whose runner collects the folder $OUT), hand the report back too.
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then cp "$REPORT" "$OUT/"; fi
grep -e FAIL -e "^(exit status" "$REPORT" && exit 1 || exit 0
