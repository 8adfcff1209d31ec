"""2 CPU processes (gloo, localhost) against one process: BatchTopK's global top-k under DDP (and its tie rule),
``train_store_sae`` with rank 0 as the only writer (also ``torchrun -m replab train-sae``), one SAE per hook spread over the ranks
(``--distribute-hooks``) and probe sweeps with the hooks spread over the ranks, merged on rank 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from replab.activations import ActivationStore, capture
from replab.datasets import PromptSet
from replab.runs import Run

from test_distributed import _free_port

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
SAE = dict(architecture="topk", d_sae=24, arch_config={"k": 3}, steps=12, batch_size=30, top_n=4, eval_prompts=8)
PROBE = dict(probes=("logistic", "meandiff"), cv=3, seed=1)
BATCHTOPK = dict(batch_size=50, steps=25, dead_after_tokens=300)  # 1020 rows: every epoch ends with a short batch
UNTIMED = ("train_seconds", "tokens_per_s")


def _texts() -> list[str]:
    words = ["Paris", "Tokyo", "dog", "cat", "great", "terrible", "Monday", "book"]
    return [f"The {words[i % 8]} is {words[(3 * i) % 8]} and {words[(5 * i + 1) % 8]}." for i in range(24)]


@pytest.fixture(scope="module")
def store(tiny_model, tmp_path_factory) -> ActivationStore:
    texts = _texts()
    prompts = PromptSet(texts=tuple(texts), labels=tuple(str(i % 2) for i in range(len(texts))), name="dist-words")
    return capture(tiny_model, prompts, "blocks.*.hook_resid_post", out=tmp_path_factory.mktemp("dist") / "store",
                   batch_size=8)


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(1020, 4, generator=g) @ torch.randn(4, 16, generator=g) + 0.1 * torch.randn(1020, 16, generator=g)


def _worker(rank: int, world: int, port: int, store_path: str, out: str) -> None:
    import torch.distributed as dist

    from replab.probes.runkind import probe_store
    from replab.saes import create, train
    from replab.saes.runkind import train_store_sae, train_store_saes

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    store = ActivationStore.open(store_path)
    sae = train(create("batchtopk", 16, 32, k=4, seed=0), _data(), progress=False, **BATCHTOPK).sae
    if rank == 0:
        from replab.saes import save

        save(sae, Path(out) / "batchtopk")
    ddp = train_store_sae(store, hook=HOOKS[1], out=Path(out) / "ddp", **SAE)
    assert ddp.info["status"] == "complete"  # every rank returns the finished run
    runs = train_store_saes(store, HOOKS, out=Path(out) / "per-hook", **SAE)
    assert list(runs) == [HOOKS[rank]]  # one hook each
    probe_store(store, Path(out) / "probe", **PROBE)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(2, _free_port(), str(store.path), str(out)), nprocs=2)
    return out


def _same_sae_run(got: Path, want: Run) -> None:
    from replab.saes import load

    a, b = load(got), load(want.path)
    for name, p in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[name], p, rtol=1e-4, atol=1e-5, msg=name)
    m_got, m_want = Run.open(got).info["metrics"], want.info["metrics"]
    assert set(m_got) == set(m_want)
    for k, v in m_want.items():
        if isinstance(v, float) and k not in UNTIMED:
            assert m_got[k] == pytest.approx(v, rel=1e-3, abs=1e-5), k
    assert (got / "features" / "summary.json").is_file()


def test_batchtopk_ddp_selects_over_the_global_batch(two_ranks):
    from replab.saes import create, load, train

    single = train(create("batchtopk", 16, 32, k=4, seed=0), _data(), progress=False, **BATCHTOPK).sae
    ddp = load(two_ranks / "batchtopk")
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(ddp, name), getattr(single, name), rtol=1e-4, atol=1e-5, msg=name)
    # the EMA of the global cuts (saved as a JumpReLU threshold on every latent)
    torch.testing.assert_close(ddp.threshold, torch.full((32,), float(single.threshold)), rtol=1e-5, atol=1e-7)
    assert float(single.threshold) > 0


def test_batchtopk_gives_ties_at_the_cut_to_the_earliest_entries():
    from replab.saes import create

    sae = create("batchtopk", 4, 3, k=2, seed=0)
    pre = torch.tensor([[5.0, 1.0, 1.0], [1.0, -2.0, 1.0], [1.0, 0.5, 1.0]])  # a 5 and six tied 1s for 6 places
    sel = sae.select(pre)
    assert sel.nnz == 6  # k * batch: five of the six ties, the first five in row-major order
    assert list(zip(sel.rows.tolist(), sel.cols.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0)]
    assert float(sae.threshold) == pytest.approx(0.01 * 1.0)  # EMA of the smallest kept value


def test_train_store_sae_ddp_writes_one_run_equal_to_one_process(store, two_ranks, tmp_path):
    from replab.saes.runkind import train_store_sae

    single = train_store_sae(store, hook=HOOKS[1], out=tmp_path / "single", **SAE)
    _same_sae_run(two_ranks / "ddp", single)
    info = Run.open(two_ranks / "ddp").info
    assert info["config"]["world_size"] == 2 and info["metrics"]["steps"] == SAE["steps"]


def test_distribute_hooks_gives_each_hook_its_one_process_sae(store, two_ranks, tmp_path):
    from replab.saes.runkind import train_store_sae

    assert sorted(p.name for p in (two_ranks / "per-hook").iterdir()) == HOOKS
    for hook in HOOKS:
        single = train_store_sae(store, hook=hook, out=tmp_path / hook, **SAE)
        _same_sae_run(two_ranks / "per-hook" / hook, single)
        assert Run.open(two_ranks / "per-hook" / hook).info["config"]["hook"] == hook


def test_probe_sweep_across_ranks_equals_one_process(store, two_ranks, tmp_path):
    from replab.probes.runkind import probe_store

    single = probe_store(store, tmp_path / "probe", **PROBE)
    got = Run.open(two_ranks / "probe")
    pd.testing.assert_frame_equal(got.read_table("results"), single.read_table("results"), rtol=1e-6)
    pd.testing.assert_frame_equal(got.read_table("best"), single.read_table("best"), rtol=1e-6)
    assert got.info["metrics"] == pytest.approx(single.info["metrics"])
    assert sorted(got.info["config"]["sweep"]["hooks"]) == HOOKS
    for rel in single.read_table("best")["file"]:
        assert json.loads((got.path / rel).read_text())["meta"]["cv_mean"] == pytest.approx(
            json.loads((single.path / rel).read_text())["meta"]["cv_mean"])
    assert (got.path / "figures" / "metric_by_layer.json").is_file()


def test_torchrun_train_sae_cli_equals_one_process(store, tmp_path):
    from replab.saes.runkind import train_store_sae

    args = ["--store", str(store.path), "--hook", HOOKS[0], "--arch", "batchtopk", "--d-sae", "24", "--k", "3",
            "--steps", "12", "--batch-size", "30", "--top-n", "4", "--eval-prompts", "8", "--no-model"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "replab", "train-sae", *args, "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    single = train_store_sae(store, hook=HOOKS[0], out=tmp_path / "single", architecture="batchtopk", d_sae=24,
                             arch_config={"k": 3}, steps=12, batch_size=30, top_n=4, eval_prompts=8)
    _same_sae_run(tmp_path / "ddp", single)
    assert Run.open(tmp_path / "ddp").info["config"]["command"] == "train-sae"
