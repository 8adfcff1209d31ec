"""Cross-check replab's SAE files against SAELens itself, both directions.

SAELens lives in its own virtualenv (see docs/saes.md); this script has two halves, run by
two interpreters, and never imports replab and sae_lens in the same process:

    /tmp/saelens-venv/bin/python benchmarks/saelens_crosscheck.py saelens-write DIR
    python benchmarks/saelens_crosscheck.py replab-read DIR      # replab loads SAELens's files
    python benchmarks/saelens_crosscheck.py replab-write DIR
    /tmp/saelens-venv/bin/python benchmarks/saelens_crosscheck.py saelens-read DIR   # and back

Each writer saves one SAE per architecture under ``DIR/<arch>/`` with random weights, plus
``expected.safetensors`` holding a fixed input ``x`` and the writer's own ``encode(x)`` and
``forward(x)``; each reader loads the directory with its library and prints the largest
absolute differences.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

D_IN, D_SAE = 16, 48
ARCHS = {"standard": {}, "topk": {"k": 4}, "jumprelu": {}, "matching_pursuit": {"residual_threshold": 0.3,
                                                                               "max_iterations": 8}}
# SAELens-only variants: directory name -> (architecture, config)
SAELENS_EXTRA = {"topk-rescaled": ("topk", {"k": 4, "rescale_acts_by_decoder_norm": True})}


def _randomise(module, unit_rows: bool) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            value = torch.randn(p.shape, generator=g) * 0.5
            if name.endswith("threshold"):
                value = value.abs() + 0.05
            p.copy_(value.to(p.dtype))
        if unit_rows:
            module.W_dec /= module.W_dec.norm(dim=-1, keepdim=True)


def _expected(out: Path, sae) -> None:
    x = torch.randn(64, D_IN, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        save_file({"x": x, "encode": sae.encode(x).contiguous(), "forward": sae(x).contiguous()},
                  str(out / "expected.safetensors"))


def _compare(directory: Path, load) -> None:
    print("| architecture (as written) | loaded as | max abs diff encode | max abs diff forward |")
    print("|---|---|---|---|")
    for sub in sorted(p for p in directory.iterdir() if (p / "expected.safetensors").is_file()):
        expected = load_file(str(sub / "expected.safetensors"))
        sae, name = load(sub)
        with torch.no_grad():
            enc = (sae.encode(expected["x"]) - expected["encode"]).abs().max().item()
            fwd = (sae(expected["x"]) - expected["forward"]).abs().max().item()
        print(f"| {sub.name} | {name} | {enc:.2e} | {fwd:.2e} |")


def saelens_write(directory: Path) -> None:
    import sae_lens
    from sae_lens import SAE

    print(f"sae_lens {sae_lens.__version__}, torch {torch.__version__}")
    variants = {**{a: (a, c) for a, c in ARCHS.items()}, **SAELENS_EXTRA}
    for name, (arch, extra) in variants.items():
        sae = SAE.from_dict({"architecture": arch, "d_in": D_IN, "d_sae": D_SAE, **extra,
                             "metadata": {"model_name": "crosscheck", "hook_name": "blocks.0.hook_resid_post"}})
        _randomise(sae, unit_rows=arch == "matching_pursuit")
        sae.save_model(directory / name)
        _expected(directory / name, sae)


def saelens_read(directory: Path) -> None:
    import sae_lens
    from sae_lens import SAE

    print(f"sae_lens {sae_lens.__version__} reading replab's files")
    _compare(directory, lambda p: (lambda s: (s, type(s).__name__))(SAE.load_from_disk(str(p))))


def replab_write(directory: Path) -> None:
    from replab.saes import create

    for arch, extra in {**ARCHS, "batchtopk": {"k": 4}}.items():
        sae = create(arch, D_IN, D_SAE, metadata={"model_name": "crosscheck"}, **extra)
        _randomise(sae, unit_rows=sae.unit_norm_decoder)
        if arch == "batchtopk":
            with torch.no_grad():
                sae.threshold.fill_(0.2)
        sae.save(directory / arch)
        _expected(directory / arch, sae)


def replab_read(directory: Path) -> None:
    import replab
    from replab.saes import load

    print(f"replab {replab.__version__} reading SAELens's files")
    _compare(directory, lambda p: (lambda s: (s, type(s).__name__))(load(p)))


if __name__ == "__main__":
    modes = {"saelens-write": saelens_write, "saelens-read": saelens_read,
             "replab-write": replab_write, "replab-read": replab_read}
    if len(sys.argv) != 3 or sys.argv[1] not in modes:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(modes)}}} DIR")
    target = Path(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    modes[sys.argv[1]](target)
