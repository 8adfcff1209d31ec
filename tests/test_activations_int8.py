"""int8 activation stores: per-row codes + float32 scales, the documented error bound, transparent reads, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from replab.activations import ActivationStore, capture, shards, verify
from replab.datasets import PromptSet, load
from replab.errors import StoreError

HOOKS = "blocks.*.hook_resid_post"
ROWS_PER_SHARD = 120  # world model: d_model 256


@pytest.fixture(scope="module")
def world_stores(world_model, tmp_path_factory):
    """400 of the world model's sentiment prompts (one row each, the last position) as float32 and int8 stores."""
    tmp = tmp_path_factory.mktemp("int8")
    prompts = load("world:sentiment").subset(range(400))
    return {dtype: capture(world_model, prompts, HOOKS, positions="last", out=tmp / dtype, dtype=dtype,
                           batch_size=128, shard_mb=ROWS_PER_SHARD * 256 * size / 2**20)
            for dtype, size in {"float32": 4, "int8": 1}.items()}


def test_int8_world_store_is_within_the_bound_of_the_float32_store(world_stores):
    ref, q = world_stores["float32"], world_stores["int8"]
    assert len(q) == len(ref) == 400 and len(q.manifest["shards"]) == 4 and q.dtype == "int8"
    worst = 0.0
    for hook in ref.hooks:
        x, xq = np.asarray(ref[hook]), np.asarray(q[hook])
        assert xq.dtype == np.float32 and xq.shape == x.shape
        bound = np.abs(x).max(1, keepdims=True) / 254  # documented: |x - x_hat| <= max|x_row| / 254
        assert (np.abs(x - xq) <= bound * (1 + 1e-6)).all()
        worst = max(worst, float((np.abs(x - xq) / bound).max()))
        idx = np.array([399, 3, 3, 250, 0])  # gathers across shards, repeats, any order
        np.testing.assert_array_equal(q[hook][idx], xq[idx])
        np.testing.assert_array_equal(q[hook][118:245, 5], xq[118:245, 5])
        np.testing.assert_array_equal(next(q.iter_batches(hook, 400, shuffle=False)).numpy(), xq)
        assert q.manifest["stats"][hook] == ref.manifest["stats"][hook]  # statistics of the unquantised rows
    assert worst > 0.99  # the bound is tight: attained to within 1%
    shard = q.path / "shards" / "00000"
    assert (shard / f"{ref.hooks[0]}.bin").stat().st_size == ROWS_PER_SHARD * 256
    assert (shard / f"scale.{ref.hooks[0]}.bin").stat().st_size == ROWS_PER_SHARD * 4


def test_probe_and_sae_read_the_int8_store(world_stores):
    from replab.probes import LogisticProbe
    from replab.saes import create, evaluate, train

    ref, q = world_stores["float32"], world_stores["int8"]
    hook = "blocks.2.hook_resid_post"
    y = ref.metadata["label"].to_numpy()
    p_ref = LogisticProbe().fit_store(ref, hook)
    p_q = LogisticProbe().fit_store(q, hook)
    assert p_q.hook == hook
    agree = (p_q.predict(np.asarray(ref[hook])) == p_ref.predict(np.asarray(ref[hook]))).mean()
    assert agree >= 0.99 and p_q.score(np.asarray(q[hook]), y) >= p_ref.score(np.asarray(ref[hook]), y) - 0.01

    sae = create("topk", 256, 512, k=8, seed=0)
    result = train(sae, q, hook=hook, batch_size=100, steps=40, progress=False, log_every=40)
    assert result.metrics["input_scale"] == pytest.approx(math.sqrt(256) / q.stats(hook)["mean_norm"], rel=1e-12)
    fvu_q, fvu_ref = evaluate(sae, q, hook=hook)["fvu"], evaluate(sae, ref, hook=hook)["fvu"]
    assert fvu_q < 0.8 * evaluate(create("topk", 256, 512, k=8, seed=0), q, hook=hook)["fvu"]
    assert abs(fvu_q - fvu_ref) < 0.01  # trained on dequantised rows, it serves the float32 rows as well


def test_verify_checks_the_scales(world_stores, tmp_path):
    import shutil

    out = tmp_path / "q"
    shutil.copytree(world_stores["int8"].path, out)
    n_shards = len(world_stores["int8"].manifest["shards"])
    assert verify(out)["files"] == n_shards * (4 + 4 + 3) + 1  # codes, scales, metadata per shard; prompts
    scale = out / "shards" / "00002" / "scale.blocks.1.hook_resid_post.bin"
    data = bytearray(scale.read_bytes())
    data[9] ^= 0x01
    scale.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="shards/00002/scale.blocks.1.hook_resid_post.bin is corrupt"):
        verify(out)
    scale.write_bytes(bytes(data[:-4]))
    with pytest.raises(StoreError, match="scale.blocks.1.hook_resid_post.bin is truncated"):
        ActivationStore.open(out)


def test_interrupted_int8_capture_resumes_to_identical_bytes(tiny_model, tmp_path, monkeypatch):
    prompts = PromptSet(texts=["The capital of France is Paris.", "A dog is a mammal. A cat is a mammal.",
                               "The movie was great, honestly.", "The book was terrible."] * 3, name="resume-int8")
    kw = dict(dtype="int8", batch_size=3, shard_mb=7 * 32 / 2**20)  # 7 rows per shard: shards end inside batches
    ref = capture(tiny_model, prompts, HOOKS, out=tmp_path / "ref", **kw)
    append = shards.ShardWriter.append

    def interrupted(self, *args, **kwargs):
        append(self, *args, **kwargs)
        if len(self.manifest["shards"]) >= 2 and self.pending_rows:
            raise KeyboardInterrupt

    monkeypatch.setattr(shards.ShardWriter, "append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        capture(tiny_model, prompts, HOOKS, out=tmp_path / "acts", **kw)
    monkeypatch.setattr(shards.ShardWriter, "append", append)
    assert shards.read_manifest(tmp_path / "acts")["cursor"]["skip"] > 0  # it stopped inside a batch
    resumed = capture(tiny_model, prompts, HOOKS, out=tmp_path / "acts", **kw)
    files = lambda root: {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))  # noqa: E731
                          if p.is_file() and p.name != "run.json"}
    assert files(resumed.path) == files(ref.path)


def test_cli_captures_an_int8_store_and_verifies_it(tiny_checkpoint, tmp_path, capsys):
    import argparse

    from replab.activations import cli

    texts = tmp_path / "corpus.txt"
    texts.write_text("The capital of France is Paris.\nA dog is a mammal.\n")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "acts"
    args = parser.parse_args(["capture", "--model", tiny_checkpoint, "--text", str(texts), "--hooks", HOOKS,
                              "--context", "6", "--out", str(out), "--dtype", "int8"])
    assert args.func(args) == 0 and "(int8)" in capsys.readouterr().out
    store = ActivationStore.open(out)
    assert store.dtype == "int8" and store["blocks.0.hook_resid_post"].dtype == np.float32
    args = parser.parse_args(["verify", str(out)])
    assert args.func(args) == 0
    assert f"{len(store.manifest['shards']) * (2 + 2 + 3)} files verified" in capsys.readouterr().out
