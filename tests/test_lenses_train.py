"""Lens training mechanics: checkpoints resume to the uninterrupted lens; DDP over 2 gloo processes equals one
process with the same global batch (cached store and live corpus); step-addressed batches."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import replab
from replab import lenses
from replab.datasets import TextCorpus
from replab.errors import DataError, RunDirError
from replab.lenses import data as lens_data

TEXTS = [f"The capital of France is Paris. A dog is a mammal number {i}." for i in range(6)] + [
    "The movie was great, honestly. The book was terrible.", "Two days after Monday is Wednesday.",
    "The capital of Japan is Tokyo.", "A cat is a mammal. The cat is a mammal."]
HOOKS = ["blocks.0.hook_resid_pre", "blocks.*.hook_resid_post", "blocks.*.attn.hook_z"]
KW = dict(steps=9, batch_size=30, progress=False)


def _corpus() -> TextCorpus:
    return TextCorpus(tuple(TEXTS * 2), name="lens-tiny")


@pytest.fixture(scope="module")
def store(tiny_model, tmp_path_factory):
    return replab.capture(tiny_model, _corpus(), HOOKS, out=tmp_path_factory.mktemp("lens") / "acts", context=8)


def _same_lens(a: lenses.Lens, b: lenses.Lens, **tol) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(q, p, msg=name, **tol)


def test_step_addressed_batches_split_one_global_batch(tiny_model, store):
    rows = lens_data.row_stream(tiny_model, store, ["blocks.1.hook_resid_post"], 30, seed=3)
    live = lens_data.row_stream(tiny_model, _corpus(), ["blocks.1.hook_resid_post"], 30, context=8)
    assert rows.per_epoch == len(store) // 30 and live.total == len(store)
    for stream in (rows, live):
        for step in (0, 1, rows.per_epoch + 2):  # also a step of a later epoch (live: wraps around the corpus)
            whole = stream.batch(step)["blocks.1.hook_resid_post"]
            parts = [stream.batch(step, r, 3)["blocks.1.hook_resid_post"] for r in range(3)]
            assert whole.shape[0] == 30 and [len(p) for p in parts] == [10, 10, 10]
            got, want = torch.cat(parts), whole
            if stream is rows:  # a rank reads its rows in store order; compare as sets of rows
                got, want = got[torch.argsort(got[:, 0])], want[torch.argsort(want[:, 0])]
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # live rows are the store's rows in corpus order, cycled: step 0 is rows 0..29 of the capture
    torch.testing.assert_close(live.batch(0)["blocks.1.hook_resid_post"],
                               torch.from_numpy(np.asarray(store["blocks.1.hook_resid_post"][:30])).float(),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="positions"):
        lens_data.row_stream(tiny_model, _corpus(), ["blocks.1.hook_resid_post"], 30, positions="subject_last")


def test_resumed_training_equals_uninterrupted_training(tiny_model, store, tmp_path, monkeypatch):
    for kind in ("tuned", "attention"):
        whole = lenses.train(kind, tiny_model, store, out=tmp_path / f"{kind}-whole", **KW)
        read = lens_data.StoreRows.batch

        def interrupted(self, step, *a):
            if step == 6:
                raise KeyboardInterrupt
            return read(self, step, *a)

        monkeypatch.setattr(lens_data.StoreRows, "batch", interrupted)
        out = tmp_path / f"{kind}-resumed"
        with pytest.raises(KeyboardInterrupt):
            lenses.train(kind, tiny_model, store, out=out, checkpoint_every=2, keep_checkpoints=2, **KW)
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000004", "step_00000006"]
        assert {p.name for p in (out / "checkpoints" / "step_00000006").iterdir()} == {
            "model.safetensors", "optimizer.safetensors", "state.json"}
        monkeypatch.setattr(lens_data.StoreRows, "batch", read)
        resumed = lenses.train(kind, tiny_model, store, out=out, checkpoint_every=2, resume=True, **KW)
        assert resumed.metrics["resumed_from_step"] == 6 and resumed.metrics["tokens"] == 3 * 30
        _same_lens(whole, resumed, rtol=0, atol=0)
        assert not torch.equal(whole.state_dict()[next(iter(whole.state_dict()))],
                               _make_untrained(kind, tiny_model).state_dict()[next(iter(whole.state_dict()))])
        back = lenses.load(out / "lens", tiny_model)
        _same_lens(whole, back, rtol=0, atol=0)
    with pytest.raises(RunDirError, match="other settings"):
        lenses.train("tuned", tiny_model, store, out=tmp_path / "tuned-resumed", resume=True, steps=9, batch_size=20,
                     progress=False)
    with pytest.raises(DataError, match="out="):
        lenses.train("tuned", tiny_model, store, checkpoint_every=2, **KW)


def _make_untrained(kind, model):
    return lenses.TunedLens(model) if kind == "tuned" else lenses.AttentionLens(model)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, ckpt: str, store_path: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = replab.load_model(ckpt)
    with pytest.raises(replab.distributed.DistributedError, match="batch_size"):
        lenses.train("tuned", model, replab.ActivationStore.open(store_path), steps=2, batch_size=[30, 20][rank],
                     progress=False)
    lenses.train("tuned", model, replab.ActivationStore.open(store_path), out=f"{out}/cached", **KW)
    lenses.train("tuned", model, _corpus(), context=8, out=f"{out}/live", **KW)
    dist.destroy_process_group()


def test_ddp_lens_training_equals_one_process_with_the_same_global_batch(tiny_checkpoint, tiny_model, store, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), tiny_checkpoint, str(store.path), str(tmp_path)), nprocs=2)
    for name, data, extra in (("cached", store, {}), ("live", _corpus(), {"context": 8})):
        single = lenses.train("tuned", tiny_model, data, **extra, **KW)
        ddp = lenses.load(tmp_path / name / "lens", tiny_model)
        _same_lens(single, ddp, rtol=1e-4, atol=1e-6)
        info = json.loads((tmp_path / name / "run.json").read_text())
        assert info["config"]["world_size"] == 2 and info["metrics"]["tokens"] == KW["steps"] * KW["batch_size"]
        assert abs(info["metrics"]["train_kl"] - single.metrics["train_kl"]) < 1e-5
    assert not torch.equal(single.translators[1].weight, torch.zeros_like(single.translators[1].weight))


@pytest.mark.parametrize("make", [lambda m: lenses.TunedLens(m),
                                  lambda m: lenses.AttentionLens(m, lenses.AttentionLensConfig(form="full")),
                                  lambda m: lenses.AttentionLens(m, lenses.AttentionLensConfig(form="translator"))])
def test_chunked_kl_backward_equals_autograd_of_the_reference_loss(tiny_model, store, make):
    from replab.lenses.loss import kl_backward
    from replab.lenses.train import _target

    lens = make(tiny_model)
    with torch.no_grad():
        for p in lens.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hooks = sorted({lens.input_hook(l) for l in lens.layers()} | {lenses.final_hook(tiny_model)})
    acts = lens_data.row_stream(tiny_model, store, hooks, 77, seed=1).batch(0)
    ref = lenses.lens_loss(lens, acts)
    ref.backward()
    want = {k: p.grad.clone() for k, p in lens.named_parameters()}
    lens.zero_grad(set_to_none=True)
    kl = kl_backward([lens.decoder_inputs(acts[lens.input_hook(l)], l) for l in lens.layers()],
                     _target(tiny_model, acts), chunk_rows=20)  # 77 rows: three full chunks and a short one
    assert kl.shape == (len(lens.layers()),) and (kl > 0).all()
    torch.testing.assert_close(kl.sum(), ref.detach(), rtol=1e-5, atol=1e-6)
    for k, p in lens.named_parameters():
        assert want[k].abs().max() > 0, k
        torch.testing.assert_close(p.grad, want[k], rtol=1e-4, atol=1e-6, msg=k)
