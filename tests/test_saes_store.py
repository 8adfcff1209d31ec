"""SAEs on activation stores: streamed training, evaluation from store metadata, feature analysis, the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from replab.activations import capture
from replab.datasets import PromptSet
from replab.errors import HookNameError
from replab.runs import Run
from replab.saes import analyze_features, create, evaluate, load, train

from conftest import TINY_TEXTS

HOOK = "blocks.1.hook_resid_post"


def _texts(n: int = 40) -> list[str]:
    words = " ".join(TINY_TEXTS).replace(".", " .").replace(",", " ,").split()
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, size=int(rng.integers(4, 14)))) for _ in range(n)]


@pytest.fixture(scope="module")
def store(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("sae-store") / "acts"
    return capture(tiny_model, PromptSet(texts=_texts(), name="words"), "blocks.*.hook_resid_post",
                   positions="all", out=out, batch_size=16)


class CountingStore:
    """Wraps a store to record how its rows are read: by indexing ``store[hook]`` (``reads``: each index
    array) or whole (``whole_reads``)."""

    def __init__(self, store):
        self._store = store
        self.reads: list[np.ndarray] = []
        self.whole_reads = 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    def __len__(self):
        return len(self._store)

    def __getitem__(self, hook):
        outer, array = self, self._store[hook]

        class _Array:
            shape, dtype = array.shape, array.dtype

            def __getitem__(self, idx):
                block = np.asarray(array[idx])
                if isinstance(idx, np.ndarray):
                    outer.reads.append(idx.copy())
                return block

            def __array__(self, dtype=None, copy=None):
                outer.whole_reads += 1
                return np.asarray(array, dtype=dtype)

        return _Array()


def test_training_streams_shuffled_batches_from_the_store(store):
    counting = CountingStore(store)
    sae = create("topk", 32, 64, k=4, seed=0)
    n = len(store)
    steps = 2 * -(-n // 100) + 3  # into the third epoch
    result = train(sae, counting, hook=HOOK, batch_size=100, steps=steps, progress=False, log_every=steps)
    assert counting.whole_reads == 0  # batches of rows, never the whole store
    init, *batches = counting.reads  # one read samples rows for the scale and b_dec, then one per batch
    np.testing.assert_array_equal(init, np.random.default_rng(0).permutation(n))  # init_rows > n: every row
    per_epoch = -(-n // 100)
    assert len(batches) == 2 * per_epoch + 3 and all(len(b) <= 100 for b in batches)
    for epoch, lo in enumerate(range(0, len(batches), per_epoch)):  # epoch e: the store's order with seed e
        got = np.concatenate(batches[lo: lo + per_epoch])
        np.testing.assert_array_equal(got, np.random.default_rng(epoch).permutation(n)[: len(got)])
    assert result.metrics["tokens"] == 2 * n + 3 * 100
    assert sae.cfg.metadata["hook_name"] == HOOK and sae.cfg.metadata["model_name"] == store.manifest["model"]
    assert sae.cfg.metadata["hook_layer"] == 1
    untrained = create("topk", 32, 64, k=4, seed=0)
    assert evaluate(sae, store)["fvu"] < 0.7 * evaluate(untrained, store, hook=HOOK)["fvu"]


def test_input_scale_reads_the_store_statistics_and_equals_a_rescan(store):
    rescanned = float(np.linalg.norm(np.asarray(store[HOOK], dtype=np.float64), axis=1).mean())
    assert store.stats(HOOK)["mean_norm"] == pytest.approx(rescanned, rel=1e-12)
    result = train(create("topk", 32, 64, k=4, seed=0), store, hook=HOOK, batch_size=50, steps=1, init_rows=20,
                   progress=False)
    assert result.metrics["input_scale"] == pytest.approx(np.sqrt(32) / rescanned, rel=1e-12)  # every row, not 20
    sampled = create("topk", 32, 64, k=4, seed=0)
    no_stats = CountingStore(store)
    no_stats.stats = None  # a store without capture statistics: the scale comes from the init_rows sample
    sample_scale = train(sampled, no_stats, hook=HOOK, batch_size=50, steps=1, init_rows=20,
                         progress=False).metrics["input_scale"]
    assert sample_scale != pytest.approx(result.metrics["input_scale"], rel=1e-6)


def test_store_hook_errors(store):
    sae = create("topk", 32, 64, k=4)
    with pytest.raises(HookNameError, match="several hooks"):
        train(sae, store, steps=1, progress=False)
    with pytest.raises(HookNameError, match="'blocks.7.hook_resid_post' is not in store.*blocks.0.hook_resid_post"):
        train(sae, store, hook="blocks.7.hook_resid_post", steps=1, progress=False)


@pytest.fixture(scope="module")
def trained(store):
    sae = create("topk", 32, 48, k=3, seed=0)
    train(sae, store, hook=HOOK, batch_size=64, steps=150, lr=5e-3, progress=False)
    return sae


def test_evaluate_on_a_store_uses_its_texts_for_ce(store, trained, tiny_model):
    metrics = evaluate(trained, store, model=tiny_model)  # hook from the SAE's metadata
    x = torch.from_numpy(np.asarray(store[HOOK]))
    with torch.no_grad():
        x_hat = trained(x)
    assert metrics["n_rows"] == len(store)
    assert metrics["fvu"] == pytest.approx(float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()), rel=1e-4)
    assert metrics["n_prompts"] == len(_texts())
    assert np.isfinite(metrics["ce_recovered"]) and metrics["kl_with_sae"] >= 0


def test_feature_analysis_files(store, trained, tiny_model, tmp_path):
    summary = analyze_features(trained, store, model=tiny_model, out=tmp_path / "feat", top_n=5, n_contexts=3, window=2)
    run = Run.open(tmp_path / "feat")
    assert run.kind == "sae-features" and "figures/feature_frequency.json" in run.info["artifacts"]
    x = torch.from_numpy(np.asarray(store[HOOK]))
    with torch.no_grad():
        acts = trained.encode(x)
    freq = (acts > 0).float().mean(0)
    assert len(summary["latents"]) == 48
    np.testing.assert_allclose([e["frequency"] for e in summary["latents"]], freq.numpy(), rtol=1e-6)
    np.testing.assert_allclose([e["max_activation"] for e in summary["latents"]], acts.max(0).values.numpy(), rtol=1e-6)
    analysed = summary["analysed"]
    assert len(analysed) == 5 and analysed == sorted(analysed, key=lambda i: -float(freq[i]))
    assert set(analysed) == set(freq.argsort(descending=True, stable=True)[:5].tolist())
    on_disk = json.loads((tmp_path / "feat" / "features" / "summary.json").read_text())
    assert on_disk["analysed"] == analysed

    meta = store.metadata
    W_U = tiny_model.W_U.detach()
    tok = tiny_model.tokenizer
    for i in analysed:
        latent = run.read_json(f"features/latent_{i}.json")
        col = acts[:, i]
        top = col.topk(3)
        assert [c["row"] for c in latent["contexts"]] == top.indices.tolist()
        for c in latent["contexts"]:
            r = c["row"]
            p, pos = int(meta["prompt_index"][r]), int(meta["position"][r])
            window = meta[(meta.prompt_index == p) & (meta.position.between(pos - 2, pos + 2))].index.tolist()
            assert c["token_ids"] == meta["token_id"][window].tolist()
            assert c["tokens"] == [tok.decode([t]) for t in c["token_ids"]]
            np.testing.assert_allclose(c["activations"], col[window].numpy(), rtol=1e-5, atol=1e-6)
            assert c["activations"][c["center"]] == pytest.approx(float(col[r]), rel=1e-5)
        hist = latent["histogram"]
        assert len(hist["edges"]) == 51 and sum(hist["counts"]) == int((col > 0).sum())
        assert hist["edges"][-1] == pytest.approx(float(col.max()), rel=1e-6)
        effects = trained.W_dec[i].detach() @ W_U
        entry = summary["latents"][i]
        assert [e["token_id"] for e in entry["top_positive_logits"]] == effects.topk(10).indices.tolist()
        assert [e["token_id"] for e in entry["top_negative_logits"]] == (-effects).topk(10).indices.tolist()
        assert entry["top_positive_logits"][0]["token"] == tok.decode([effects.argmax().item()])
    not_analysed = next(e for e in summary["latents"] if not e["analysed"])
    assert "top_positive_logits" not in not_analysed


def test_train_sae_cli_end_to_end(store, tmp_path):
    from replab.saes.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "sae-topk"
    args = parser.parse_args(["train-sae", "--store", str(store.path), "--hook", HOOK, "--arch", "topk", "--d-sae", "48",
                              "--k", "3", "--steps", "60", "--batch-size", "64", "--out", str(out), "--top-n", "4"])
    assert args.func(args) == 0
    run = Run.open(out)
    assert run.kind == "sae" and run.info["model"]["weights_sha256"] == store.manifest["model_hash"]
    metrics = run.info["metrics"]
    for key in ("fvu", "l0", "dead_fraction", "dense_fraction", "ce_recovered", "kl_with_sae", "tokens_per_s"):
        assert key in metrics
    assert metrics["l0"] <= 3
    summary = run.read_json("features/summary.json")
    assert len(summary["analysed"]) == 4 and summary["logit_effects"]
    sae = load(out)
    assert sae.architecture == "topk" and sae.cfg.k == 3 and sae.cfg.metadata["hook_name"] == HOOK
    bad = parser.parse_args(["train-sae", "--store", str(store.path), "--hook", HOOK, "--arch", "standard",
                             "--d-sae", "8", "--k", "3", "--no-model"])
    from replab.errors import DataError

    with pytest.raises(DataError, match="--k applies to topk, batchtopk, matching_pursuit, not --arch standard"):
        bad.func(bad)


def test_ce_on_a_corpus_store_scores_the_stores_own_contexts(tiny_model, tmp_path):
    """A corpus store has no text column: CE metrics rebuild its contexts from the token metadata."""
    import torch.nn.functional as F

    from replab.datasets import TextCorpus

    corpus_store = capture(tiny_model, TextCorpus(tuple(_texts(20)), name="words"), HOOK, out=tmp_path / "c",
                           context=16, batch_size=8)
    contexts = corpus_store.token_contexts()
    assert len(contexts) == corpus_store.metadata["prompt_index"].nunique()
    assert sum(map(len, contexts)) == len(corpus_store)
    total, count = 0.0, 0
    with torch.no_grad():
        for ctx in contexts:
            toks = torch.tensor([ctx])
            logits = tiny_model(toks)[0, :-1]
            total += float(F.cross_entropy(logits, toks[0, 1:], reduction="sum"))
            count += len(ctx) - 1
    metrics = evaluate(create("topk", 32, 64, k=4, seed=0), corpus_store, model=tiny_model, hook=HOOK)
    assert metrics["ce_clean"] == pytest.approx(total / count, rel=1e-5)
    assert metrics["n_ce_tokens"] == count


def test_eval_sae_cli_scores_a_saved_sae_as_train_sae_would(store, trained, tmp_path, capsys):
    """``replab eval-sae`` on a saved SAE: the hook comes from its metadata, the run holds the same weights,
    the metrics ``evaluate`` gives and the feature analysis; a width mismatch is exit 2 before any model loads."""
    from replab.cli import main

    trained.save(tmp_path / "saved")
    out = tmp_path / "eval"
    assert main(["eval-sae", "--sae", str(tmp_path / "saved"), "--store", str(store.path), "--out", str(out),
                 "--top-n", "4"]) == 0
    run = Run.open(out)
    assert run.kind == "sae" and run.info["config"]["hook"] is None
    expected = evaluate(trained, store, hook=HOOK)
    for key in ("fvu", "l0", "dead_fraction"):
        assert run.info["metrics"][key] == pytest.approx(expected[key], rel=1e-5)
    assert "ce_recovered" in run.info["metrics"]  # the store's model (the tiny model, by checkpoint) was loaded
    assert len(run.read_json("features/summary.json")["analysed"]) == 4
    again = load(out)
    torch.testing.assert_close(again.W_dec, trained.W_dec)
    assert "evaluated into" in capsys.readouterr().out

    create("topk", 16, 8, k=2).save(tmp_path / "narrow")
    assert main(["eval-sae", "--sae", str(tmp_path / "narrow"), "--store", str(store.path), "--hook", HOOK,
                 "--out", str(tmp_path / "never")]) == 2
    assert f"reads d_in=16 but store hook '{HOOK}' has width 32" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
