"""The bad-input table (docs/errors.md): each case through the CLI and the Python API.

Every case must end in a ``ReplabError`` subclass (exit code 2 and one ``replab: error:`` line on the
CLI, no traceback), name the file/hook/flag at fault and the fix, and leave existing stores untouched.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from replab.errors import ReplabError


def _tree_hash(path: Path) -> str:
    """One digest over every file's relative path and bytes under ``path``."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_checkpoint) -> dict[str, Path]:
    """Tiny prompt files (good and bad) and a tiny labelled store captured from the tiny model."""
    import replab

    d = tmp_path_factory.mktemp("bad")
    rows = [{"text": f"The movie was {w}.", "label": i % 2} for i, w in enumerate(["great", "bad"] * 6)]
    (d / "good.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (d / "empty.jsonl").write_text("")
    (d / "latin1.csv").write_bytes("text,label\nThe café was great.,1\n".encode("latin-1"))
    (d / "notext.jsonl").write_text("\n".join(json.dumps({"prompt": r["text"]}) for r in rows))
    (d / "one_class.jsonl").write_text("\n".join(json.dumps({"text": r["text"], "label": 1}) for r in rows))
    nan_rows = [dict(r, target=(None if i == 3 else float(i))) for i, r in enumerate(rows)]
    (d / "blank.jsonl").write_text("\n".join(json.dumps(r) for r in nan_rows))
    nan_rows[3]["target"] = float("nan")
    (d / "nan.jsonl").write_text("\n".join(json.dumps(r) for r in nan_rows))  # json writes a bare NaN
    long_row = {"text": " ".join(["The movie was great."] * 300), "label": 1}  # 1,501 tokens; the context is 64
    (d / "long.jsonl").write_text(json.dumps(long_row) + "\n" + json.dumps({"text": "ok", "label": 0}))
    model = replab.load_model(tiny_checkpoint)
    store = d / "store"
    replab.capture(model, replab.datasets.load(d / "good.jsonl"), ["blocks.0.hook_resid_post"], positions="last",
                   out=store)
    return {"dir": d, "ckpt": Path(tiny_checkpoint), "store": store, "model": model}


def _cli(argv: list[str], capsys) -> str:
    from replab.cli import main

    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and "replab: error:" in err, err  # progress bars may come first
    return err


def _copy_store(files, name: str) -> Path:
    import shutil

    dst = files["dir"] / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(files["store"], dst)
    return dst


def _flip_shard(store: Path, truncate: bool) -> None:
    shard = sorted(store.rglob("blocks.0.hook_resid_post.bin"))[0]
    data = bytearray(shard.read_bytes())
    if truncate:
        data = data[: len(data) // 2]
    else:
        data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))


# (case id, argv builder, API call, words the message must contain)
CASES = [
    ("missing file",
     lambda f: ["capture", "--model", f["ckpt"], "--prompts", f["dir"] / "missing.jsonl",
                "--hooks", "blocks.0.hook_resid_post", "--out", f["dir"] / "o1"],
     lambda f: __import__("replab").datasets.load(f["dir"] / "missing.jsonl"),
     ["missing.jsonl"]),
    ("empty file",
     lambda f: ["capture", "--model", f["ckpt"], "--prompts", f["dir"] / "empty.jsonl",
                "--hooks", "blocks.0.hook_resid_post", "--out", f["dir"] / "o2"],
     lambda f: __import__("replab").datasets.load(f["dir"] / "empty.jsonl"),
     ["empty.jsonl"]),
    ("file not in UTF-8",
     lambda f: ["capture", "--model", f["ckpt"], "--prompts", f["dir"] / "latin1.csv",
                "--hooks", "blocks.0.hook_resid_post", "--out", f["dir"] / "o-latin1"],
     lambda f: __import__("replab").datasets.load(f["dir"] / "latin1.csv"),
     ["latin1.csv", "line 2", "UTF-8"]),
    ("missing text column",
     lambda f: ["capture", "--model", f["ckpt"], "--prompts", f["dir"] / "notext.jsonl",
                "--hooks", "blocks.0.hook_resid_post", "--out", f["dir"] / "o3"],
     lambda f: __import__("replab").datasets.load(f["dir"] / "notext.jsonl"),
     ["notext.jsonl", "text"]),
    *[(f"{kind} target",
       lambda f, kind=kind: ["capture", "--model", f["ckpt"], "--prompts", f["dir"] / f"{kind}.jsonl",
                             "--hooks", "blocks.0.hook_resid_post", "--out", f["dir"] / f"o-{kind}"],
       lambda f, kind=kind: __import__("replab").datasets.load(f["dir"] / f"{kind}.jsonl"),
       [f"{kind}.jsonl", "row 4", "target"]) for kind in ("blank", "nan")],
    ("bad flag value",
     lambda f: ["capture", "--model", f["ckpt"], "--prompts", f["dir"] / "good.jsonl",
                "--hooks", "blocks.0.hook_resid_post", "--out", f["dir"] / "o4", "--batch-size", "0"],
     None,
     ["--batch-size"]),
    ("unknown hook",
     lambda f: ["capture", "--model", f["ckpt"], "--prompts", f["dir"] / "good.jsonl",
                "--hooks", "blocks.0.hook_resid_pots", "--out", f["dir"] / "o5"],
     lambda f: __import__("replab").capture(f["model"], __import__("replab").datasets.load(f["dir"] / "good.jsonl"),
                                            ["blocks.0.hook_resid_pots"], out=f["dir"] / "o5"),
     ["hook_resid_pots"]),
    ("glob matching nothing",
     lambda f: ["capture", "--model", f["ckpt"], "--prompts", f["dir"] / "good.jsonl",
                "--hooks", "blocks.*.hook_nothing", "--out", f["dir"] / "o6"],
     lambda f: __import__("replab").capture(f["model"], __import__("replab").datasets.load(f["dir"] / "good.jsonl"),
                                            ["blocks.*.hook_nothing"], out=f["dir"] / "o6"),
     ["blocks.*.hook_nothing"]),
    ("unknown model offline",
     lambda f: ["capture", "--model", "no-such-model-xyz", "--prompts", f["dir"] / "good.jsonl",
                "--hooks", "blocks.0.hook_resid_post", "--out", f["dir"] / "o7"],
     lambda f: __import__("replab").load_model("no-such-model-xyz"),
     ["no-such-model-xyz"]),
    ("existing store, other settings",
     lambda f: ["capture", "--model", f["ckpt"], "--prompts", f["dir"] / "good.jsonl",
                "--hooks", "blocks.0.hook_resid_post", "--out", f["store"], "--dtype", "float16",
                "--positions", "last"],
     lambda f: __import__("replab").capture(f["model"], __import__("replab").datasets.load(f["dir"] / "good.jsonl"),
                                            ["blocks.0.hook_resid_post"], positions="last", out=f["store"],
                                            dtype="float16"),
     ["store"]),
    ("cv larger than a class",
     lambda f: ["probe", "--store", f["store"], "--cv", "10", "--out", f["dir"] / "p1"],
     lambda f: __import__("replab").probes.sweep(__import__("replab").ActivationStore.open(f["store"]), cv=10),
     ["cv", "{0: 6, 1: 6}"]),
    ("unknown store hook",
     lambda f: ["probe", "--store", f["store"], "--hooks", "blocks.9.hook_resid_post", "--out", f["dir"] / "p2"],
     lambda f: __import__("replab").ActivationStore.open(f["store"])["blocks.9.hook_resid_post"],
     ["blocks.9.hook_resid_post"]),
    ("store without the SAE's hook",
     lambda f: ["train-sae", "--store", f["store"], "--hook", "blocks.1.hook_resid_post", "--d-sae", "8",
                "--no-model", "--out", f["dir"] / "sae1"],
     lambda f: __import__("replab").ActivationStore.open(f["store"])["blocks.1.hook_resid_post"],
     ["blocks.1.hook_resid_post", "capture this hook"]),
    ("store captured from another model",
     lambda f: ["lens", "train", "--kind", "tuned", "--store", f["store"], "--model", "world", "--steps", "1",
                "--out", f["dir"] / "lens1"],
     lambda f: __import__("replab").lenses.train("tuned", __import__("replab").load_model("world"),
                                                 __import__("replab").ActivationStore.open(f["store"]), steps=1),
     ["'world' has weights", "captured from", "the model the store was captured from"]),
    ("prompt longer than the context",
     lambda f: ["capture", "--model", f["ckpt"], "--prompts", f["dir"] / "long.jsonl",
                "--hooks", "blocks.0.hook_resid_post", "--out", f["dir"] / "o-long"],
     lambda f: __import__("replab").capture(f["model"], __import__("replab").datasets.load(f["dir"] / "long.jsonl"),
                                            ["blocks.0.hook_resid_post"], out=f["dir"] / "o-long"),
     ["Prompt 0", "1501 tokens", "context of 64", "Shorten"]),
    ("missing store",
     lambda f: ["probe", "--store", f["dir"] / "nostore", "--out", f["dir"] / "p3"],
     lambda f: __import__("replab").ActivationStore.open(f["dir"] / "nostore"),
     ["nostore"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, files, capsys):
    _, argv, api, words = case
    before = _tree_hash(files["store"])
    err = _cli(argv(files), capsys)
    for w in words:
        assert w in err, err
    if api is not None:
        with pytest.raises(ReplabError) as info:
            api(files)
        for w in words:
            if not w.startswith("--"):
                assert w in str(info.value), str(info.value)
    assert _tree_hash(files["store"]) == before


@pytest.mark.parametrize("truncate", [True, False], ids=["truncated", "byte-flipped"])
def test_damaged_shard(files, capsys, truncate):
    import replab

    store = _copy_store(files, "damaged")
    _flip_shard(store, truncate)
    err = _cli(["verify", store], capsys)
    assert "hook_resid_post.bin" in err and "--no-resume" in err, err
    if truncate:  # readers check sizes on open; byte flips are found by checksums (`replab verify`)
        with pytest.raises(ReplabError, match="hook_resid_post"):
            replab.ActivationStore.open(store)["blocks.0.hook_resid_post"][:]


def test_corrupt_json(files, capsys):
    from replab.runs import Run

    store = _copy_store(files, "corrupt")
    (store / "run.json").write_text("{not json")
    (store / "manifest.json").write_text("{not json")
    before = _tree_hash(store)
    err = _cli(["verify", store], capsys)
    assert "manifest.json" in err, err
    with pytest.raises(ReplabError, match="run.json"):
        Run.open(store)
    assert _tree_hash(store) == before


def test_app_runs_missing_or_empty(files, capsys, monkeypatch):
    import os

    err = _cli(["app", "--runs", files["dir"] / "no-runs-here"], capsys)
    assert "no-runs-here" in err and "--runs" in err, err
    started = []
    monkeypatch.setattr(os, "execve", lambda *a: started.append(a))  # the server itself is not started here
    empty = files["dir"] / "empty-runs"
    empty.mkdir()
    from replab.cli import main

    assert main(["app", "--runs", str(empty)]) == 0
    assert "holds no run directories" in capsys.readouterr().err and started


@pytest.fixture(scope="module")
def label_stores(files) -> dict[str, Path]:
    """Stores whose labels are one class, or whose regression target has a NaN."""
    import replab

    out = {}
    for name in ("one_class",):
        out[name] = files["dir"] / f"store_{name}"
        replab.capture(files["model"], replab.datasets.load(files["dir"] / f"{name}.jsonl"),
                       ["blocks.0.hook_resid_post"], positions="last", out=out[name])
    return out


def test_single_class_labels(label_stores, files, capsys):
    import replab

    store = label_stores["one_class"]
    before = _tree_hash(store)
    err = _cli(["probe", "--store", store, "--out", files["dir"] / "p-one"], capsys)
    assert "class" in err, err
    with pytest.raises(ReplabError, match="class"):
        replab.probes.sweep(replab.ActivationStore.open(store))
    assert _tree_hash(store) == before


def test_sae_and_probe_directories_of_another_width(files, capsys, tmp_path):
    """An SAE or probe saved for another activation width is refused by name, in the API and on resume."""
    import numpy as np

    import replab
    from replab import saes
    from replab.cli import main
    from replab.probes import LogisticProbe

    hook = "blocks.0.hook_resid_post"
    store = replab.ActivationStore.open(files["store"])
    d, before = store.d(hook), _tree_hash(files["store"])
    saes.create("topk", d_in=d + 3, d_sae=8, k=2).save(tmp_path / "sae")
    with pytest.raises(ReplabError, match=rf"width {d} but the SAE expects d_in={d + 3}"):
        saes.evaluate(saes.load(tmp_path / "sae"), store, hook=hook)
    err = _cli(["eval-sae", "--sae", tmp_path / "sae", "--store", files["store"], "--out", tmp_path / "ev"], capsys)
    assert f"SAE in {tmp_path / 'sae'} reads d_in={d + 3} but store hook '{hook}' has width {d}" in err, err
    assert not (tmp_path / "ev").exists()
    rng = np.random.default_rng(0)
    LogisticProbe().fit(rng.standard_normal((20, d + 3)), np.arange(20) % 2, hook="elsewhere").save(tmp_path / "p")
    with pytest.raises(ReplabError, match=rf"X has {d} features, but LogisticProbe is expecting {d + 3}.*'elsewhere'"):
        LogisticProbe.load(tmp_path / "p").predict(store[hook])

    argv = ["train-sae", "--store", files["store"], "--hook", hook, "--arch", "topk", "--k", "2", "--steps", "2",
            "--batch-size", "4", "--no-model", "--checkpoint-every", "1", "--out", tmp_path / "run"]
    assert main([str(a) for a in argv + ["--d-sae", "8"]]) == 0
    capsys.readouterr()
    run_before = _tree_hash(tmp_path / "run")
    err = _cli(argv + ["--d-sae", "16", "--resume"], capsys)  # a run directory of an SAE of another shape
    assert "d_sae=8" in err and "another --out" in err, err
    assert _tree_hash(tmp_path / "run") == run_before and _tree_hash(files["store"]) == before
