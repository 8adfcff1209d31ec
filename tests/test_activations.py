"""replab.capture and ActivationStore: values against run_with_cache, corpus packing, reading, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

import replab
from replab.activations import ActivationStore, capture
from replab.datasets import PromptSet, TextCorpus
from replab.errors import DataError, HookNameError
from replab.models import subject_last_index

PROMPTS = PromptSet(
    texts=["The capital of France is Paris.", "The capital of Japan is", "A dog is a mammal. A cat is a mammal.",
           "The movie was great.", "Two days after Monday is Wednesday."],
    labels=["capital", "capital", "animal", "sentiment", "day"],
    targets=[1.0, 2.0, 3.0, 4.0, 5.0],
    subjects=["France", "Japan", "dog", "movie", "Monday"],
    name="tiny-prompts",
)
HOOKS = ["hook_embed", "blocks.*.hook_resid_post", "blocks.0.attn.hook_z", "blocks.1.mlp.hook_post",
         "ln_final.hook_normalized"]


def _reference(model, hooks, positions_of):
    """Unbatched run_with_cache of each prompt, rows taken at ``positions_of(i, ids)``."""
    rows = {h: [] for h in hooks}
    meta = []
    for i, text in enumerate(PROMPTS.texts):
        ids = model.to_tokens(text)
        with torch.no_grad():
            _, cache = model.run_with_cache(ids, names_filter=hooks)
        for p in positions_of(i, ids[0].tolist()):
            meta.append((i, p, int(ids[0, p])))
            for h in hooks:
                rows[h].append(cache[h][0, p].reshape(-1))
    return {h: torch.stack(v).numpy() for h, v in rows.items()}, np.array(meta)


@pytest.mark.parametrize("positions", ["all", "last", "subject_last", "callable"])
def test_prompt_capture_equals_run_with_cache(tiny_model, tmp_path, positions):
    pick = {
        "all": lambda i, ids: list(range(len(ids))),
        "last": lambda i, ids: [len(ids) - 1],
        "subject_last": lambda i, ids: [subject_last_index(tiny_model, PROMPTS.texts[i], PROMPTS.subjects[i])],
        "callable": lambda i, ids: [1, -2],
    }[positions]
    spec = pick if positions == "callable" else positions
    # batch_size 2 puts prompts of different lengths into one right-padded batch
    store = capture(tiny_model, PROMPTS, HOOKS, positions=spec, out=tmp_path / "acts", batch_size=2,
                    shard_mb=2 * 128 * 4 / 2**20)  # two rows of the widest hook (mlp d=128) per shard
    hooks = replab.models.resolve_hooks(tiny_model, HOOKS)
    assert store.hooks == hooks
    ref, meta = _reference(tiny_model, hooks, lambda i, ids: [p % len(ids) for p in pick(i, ids)])
    for h in hooks:
        assert store[h].shape == ref[h].shape == (len(meta), store.d(h))
        np.testing.assert_allclose(np.asarray(store[h]), ref[h], rtol=0, atol=1e-5)
    md = store.metadata
    np.testing.assert_array_equal(md[["prompt_index", "position", "token_id"]].to_numpy(), meta)
    assert md["label"].tolist() == [PROMPTS.labels[i] for i in meta[:, 0]]
    assert md["target"].tolist() == [PROMPTS.targets[i] for i in meta[:, 0]]
    assert md["text"].tolist() == [PROMPTS.texts[i] for i in meta[:, 0]]
    assert len(store) == len(meta) and len(store.manifest["shards"]) > 1


def test_corpus_is_packed_into_bos_contexts_and_matches_run_with_cache(tiny_model, tmp_path):
    docs = [PROMPTS.texts[i % 5] + " " + PROMPTS.texts[(i + 2) % 5] for i in range(7)]
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(docs))
    store = capture(tiny_model, corpus_file, "blocks.1.hook_resid_post", out=tmp_path / "acts", context=8,
                    max_tokens=60, batch_size=3)
    md = store.metadata
    assert len(store) == 7 * 8  # max_tokens // context contexts, every position stored
    tokens = md["token_id"].to_numpy().reshape(7, 8)
    np.testing.assert_array_equal(md["position"].to_numpy().reshape(7, 8), np.tile(np.arange(8), (7, 1)))
    np.testing.assert_array_equal(md["prompt_index"].to_numpy(), np.repeat(np.arange(7), 8))
    bos = tiny_model.tokenizer.bos_token_id
    assert (tokens[:, 0] == bos).all() and (tokens[:, 1] != bos).all()  # one BOS per context, never two
    # read without BOS, the contexts are the documents' tokens in order
    words = [t for row in tokens for t in row.tolist() if t != bos]
    stream = [t for d in docs for t in tiny_model.to_tokens(d)[0].tolist() if t != bos]
    assert words == stream[: len(words)] and len(words) > 7 * 6
    with torch.no_grad():
        _, cache = tiny_model.run_with_cache(torch.tensor(tokens), names_filter=["blocks.1.hook_resid_post"])
    np.testing.assert_allclose(np.asarray(store["blocks.1.hook_resid_post"]),
                               cache["blocks.1.hook_resid_post"].reshape(56, -1).numpy(), rtol=0, atol=1e-5)
    assert store.manifest["source"]["context"] == 8 and "label" not in md


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_stores_round_float32_values(tiny_model, tmp_path, dtype):
    hooks = "blocks.*.hook_resid_post"
    full = capture(tiny_model, PROMPTS, hooks, out=tmp_path / "f32", batch_size=2)
    low = capture(tiny_model, PROMPTS, hooks, out=tmp_path / dtype, dtype=dtype, batch_size=2)
    for h in full.hooks:
        expected = torch.from_numpy(np.asarray(full[h])).to(getattr(torch, dtype)).float().numpy()
        got = np.asarray(low[h])
        assert got.dtype == (np.float16 if dtype == "float16" else np.float32)
        np.testing.assert_array_equal(got.astype(np.float32), expected)
    assert (tmp_path / dtype / "shards" / "00000" / f"{full.hooks[0]}.bin").stat().st_size == len(full) * 32 * 2


def test_store_reads_like_an_array_across_shards(tiny_model, tmp_path):
    store = capture(tiny_model, PROMPTS, "blocks.*.hook_resid_post", out=tmp_path / "acts", batch_size=2,
                    shard_mb=10 * 32 * 4 / 2**20)
    h = "blocks.1.hook_resid_post"
    a, full = store[h], np.asarray(store[h])
    n = len(store)
    assert len(store.manifest["shards"]) == -(-n // 10) and store.manifest["rows_per_shard"] == 10
    assert a.shape == (n, 32) and a.dtype == np.float32 and isinstance(store.path, type(tmp_path))
    np.testing.assert_array_equal(a[7:23], full[7:23])  # spans three shards
    np.testing.assert_array_equal(a[-1], full[-1])
    np.testing.assert_array_equal(a[::3], full[::3])
    idx = np.array([25, 3, 11, 3, -2])
    np.testing.assert_array_equal(a[idx], full[idx])
    mask = np.arange(n) % 4 == 1
    np.testing.assert_array_equal(a[mask], full[mask])
    np.testing.assert_array_equal(a[2:30, 5], full[2:30, 5])
    with pytest.raises(IndexError):
        a[n]
    batches = list(store.iter_batches(h, 8, seed=3))
    assert all(b.dtype == torch.float32 for b in batches) and [len(b) for b in batches][:-1] == [8] * (len(batches) - 1)
    order = np.random.default_rng(3).permutation(n)
    np.testing.assert_array_equal(torch.cat(batches).numpy(), full[order])
    assert all(torch.equal(x, y) for x, y in zip(batches, store.iter_batches(h, 8, seed=3)))
    np.testing.assert_array_equal(torch.cat(list(store.iter_batches(h, 8, shuffle=False))).numpy(), full)
    with pytest.raises(HookNameError, match="blocks.0.hook_resid_post"):
        store["blocks.0.hook_mlp_out"]
    reopened = ActivationStore.open(tmp_path / "acts")
    assert reopened.manifest["model_hash"] == replab.models.weights_hash(tiny_model)
    assert reopened.manifest["source"]["name"] == "tiny-prompts" and reopened.manifest["positions"] == "all"


def test_bad_requests_fail_before_writing(tiny_model, tmp_path):
    out = tmp_path / "acts"
    with pytest.raises(HookNameError, match="blocks.0.hook_resid_post"):
        capture(tiny_model, PROMPTS, "blocks.0.hook_resid_pots", out=out)
    with pytest.raises(DataError, match="per-token"):
        capture(tiny_model, PROMPTS, "blocks.0.attn.hook_pattern", out=out)
    with pytest.raises(DataError, match="subject"):
        capture(tiny_model, PromptSet(texts=PROMPTS.texts), "blocks.0.hook_resid_post", positions="subject_last", out=out)
    with pytest.raises(DataError, match="n_ctx"):
        capture(tiny_model, TextCorpus(PROMPTS.texts), "blocks.0.hook_resid_post", context=4096, out=out)
    assert not (out / "manifest.json").exists() and not (out / "run.json").exists()


def test_cli_capture_writes_a_run_directory_and_verify_passes(tiny_checkpoint, tmp_path, capsys):
    from replab.activations import cli
    from replab.runs import Run

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in PROMPTS.records()))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "runs" / "acts"
    args = parser.parse_args(["capture", "--model", tiny_checkpoint, "--prompts", str(prompts), "--hooks",
                              "blocks.*.hook_resid_post", "--positions", "last", "--out", str(out), "--dtype", "bfloat16"])
    assert args.func(args) == 0
    run = Run.open(out)
    assert run.kind == "capture" and run.info["metrics"]["rows"] == 5 and run.info["metrics"]["tokens"] > 5
    assert run.info["metrics"]["tokens_per_s"] > 0 and "capture" in run.info["timings"]
    assert {"manifest.json", "prompts.json"} <= set(run.info["artifacts"])
    store = ActivationStore.open(out)
    assert store.dtype == "bfloat16" and store.metadata["label"].tolist() == list(PROMPTS.labels)
    args = parser.parse_args(["verify", str(out)])
    assert args.func(args) == 0
    assert "OK" in capsys.readouterr().out


def test_capture_directory_completeness_is_the_manifest_flag(tmp_path):
    """run.json's status is not a second flag: a store whose manifest is complete lists as complete."""
    import json

    from replab.activations import shards
    from replab.runs import Run, run_status

    root = tmp_path / "s"
    run = Run.create(root, "capture", {})  # run.json says "running" ...
    manifest = {"format": shards.FORMAT, "complete": True}
    (root / shards.MANIFEST).write_text(json.dumps(manifest))
    assert run_status(root, run.info) == "complete"  # ... the manifest decides
    (root / shards.MANIFEST).write_text(json.dumps({**manifest, "complete": False}))
    run.finish()
    assert run_status(root, run.info) == "partial"
    (root / shards.MANIFEST).write_text("{")
    assert run_status(root, run.info) == "corrupt"


def test_a_bridge_and_a_store_satisfy_the_protocols(tiny_model, tmp_path):
    import replab
    from replab.protocols import ActivationSource, HookedModel

    assert isinstance(tiny_model, HookedModel)
    store = replab.capture(tiny_model, ["a b c", "d e"], "blocks.0.hook_resid_post", out=tmp_path / "s")
    assert isinstance(store, ActivationSource) and not isinstance(store, HookedModel)
    assert not isinstance(object(), ActivationSource)


def test_corpus_documents_are_separated_by_bos_when_the_model_prepends_none(tiny_model, tmp_path, monkeypatch):
    """Pythia-style models (``default_prepend_bos=False``): packing still puts BOS between documents."""
    from replab.models.tokens import encode

    monkeypatch.setattr(tiny_model.cfg, "default_prepend_bos", False)
    bos = tiny_model.tokenizer.bos_token_id
    docs = [PROMPTS.texts[i % 5] for i in range(6)]
    assert all(encode(tiny_model, d)[0] != bos for d in docs)
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(docs))
    store = capture(tiny_model, corpus_file, "blocks.0.hook_resid_post", out=tmp_path / "acts", context=6)
    stream = [t for d in docs for t in [bos, *encode(tiny_model, d)]]
    expected, at = [], 0
    while True:  # every context starts with BOS, reusing a document's own
        at += stream[at] == bos
        if len(stream) - at < 5:
            break
        expected.append([bos, *stream[at: at + 5]])
        at += 5
    got = store.metadata["token_id"].to_numpy().reshape(-1, 6).tolist()
    assert got == expected and sum(row[1:].count(bos) for row in got) >= 2
