"""Every kernel path works on a CPU machine without triton: a child process in which ``import triton`` fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from replab.activations import ActivationStore

CHILD = textwrap.dedent("""
    import sys, importlib.abc

    class NoTriton(importlib.abc.MetaPathFinder):  # as if triton were not installed
        def find_spec(self, name, path=None, target=None):
            if name == "triton" or name.startswith("triton."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoTriton())
    import numpy as np, torch, replab
    from replab.kernels import ce_from_hidden, kl_from_hidden
    from replab.kernels.dispatch import _triton_available
    from replab.saes import create, train

    model = replab.load_model(sys.argv[1])
    prompts = replab.datasets.PromptSet(texts=["The capital of France is Paris.", "A dog is a mammal."], name="p")
    f32 = replab.capture(model, prompts, "blocks.*.hook_resid_post", out=sys.argv[2] + "/f32")
    q = replab.capture(model, prompts, "blocks.*.hook_resid_post", out=sys.argv[2] + "/q", dtype="int8")
    x, xq = np.asarray(f32["blocks.1.hook_resid_post"]), np.asarray(q["blocks.1.hook_resid_post"])
    assert (np.abs(x - xq) <= np.abs(x).max(1, keepdims=True) / 254 * (1 + 1e-6)).all()
    result = train(create("topk", 32, 64, k=4), q, hook="blocks.1.hook_resid_post", batch_size=8, steps=2,
                   progress=False)  # the sparse TopK step (CSR decode, SDDMM)
    assert np.isfinite(result.metrics["input_scale"])
    h = torch.randn(5, 32, requires_grad=True)
    W = torch.randn(32, 50, requires_grad=True)
    loss = kl_from_hidden(h, W, target_h=torch.randn(5, 32), chunk_vocab=16) + ce_from_hidden(
        h, W, targets=torch.arange(5), chunk_vocab=16)
    loss.backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(W.grad).all()
    assert not _triton_available() and "triton" not in sys.modules
    print("ok", len(q))
""")


def test_capture_sparse_sae_and_lens_loss_work_without_triton(tiny_checkpoint, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", CHILD, tiny_checkpoint, str(tmp_path)], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == f"ok {len(ActivationStore.open(tmp_path / 'f32'))}"
