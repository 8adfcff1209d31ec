"""Activation stores survive SIGKILL, detect damage and refuse to mix settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from replab.activations import ActivationStore, capture, verify
from replab.errors import StoreError

HOOKS = ["blocks.*.hook_resid_post", "blocks.0.mlp.hook_pre"]
SHARD_MB = 10 * 128 * 4 / 2**20  # ten rows of the widest hook (mlp d=128, float32) per shard
CONTEXT, BATCH = 8, 3  # a batch is 24 rows, so shards end inside batches

# Runs the CLI in a child process and freezes it at a chosen moment, for the parent to SIGKILL:
#   "after_rename": shard N is renamed into place but the manifest does not list it yet;
#   "mid_shard":    shard N is half written in its temporary directory;
#   "sigint":       as mid_shard, through ``replab.cli.main``, for the parent to interrupt with SIGINT (Ctrl-C).
CHILD = textwrap.dedent("""
    import sys, time
    from replab.activations import cli, shards
    from replab.runs import Run
    import argparse
    mode, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

    def freeze():
        print("frozen", flush=True)
        time.sleep(600)

    if mode == "after_rename":
        write_json = Run.write_json
        def hooked(self, rel, obj):
            if rel == shards.MANIFEST and len(obj["shards"]) == n + 1:
                freeze()
            return write_json(self, rel, obj)
        Run.write_json = hooked
    else:  # mid_shard, sigint
        append = shards.ShardWriter.append
        def hooked(self, *args, **kwargs):
            append(self, *args, **kwargs)
            if len(self.manifest["shards"]) == n and self.pending_rows:
                freeze()
        shards.ShardWriter.append = hooked
    if mode == "sigint":  # through the real entry point, which turns Ctrl-C into a clean exit
        import signal
        from replab.cli import main
        # Ctrl-C as a terminal's foreground process gets it (a process started in the background inherits an
        # ignored SIGINT, and Python then installs no KeyboardInterrupt handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.exit(main(argv))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    args.func(args)
""")


def _corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(["The capital of France is Paris.", "A dog is a mammal. A cat is a mammal.",
                               "The movie was great, honestly. The book was terrible."] * 5))
    return path


def _capture(model, corpus: Path, out: Path, **kw) -> ActivationStore:
    return capture(model, corpus, HOOKS, out=out, context=CONTEXT, batch_size=BATCH, shard_mb=SHARD_MB, **kw)


def _files(root: Path) -> dict[str, bytes]:
    """Every byte of a store except run.json (which records wall-clock timings)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "run.json"}


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    corpus = _corpus(tmp)
    store = _capture(tiny_model, corpus, tmp / "acts")
    assert len(store.manifest["shards"]) >= 5
    return corpus, store


@pytest.mark.parametrize("mode", ["after_rename", "mid_shard"])
def test_sigkilled_capture_resumes_to_identical_bytes(tiny_checkpoint, tiny_model, reference, tmp_path, mode):
    corpus, ref = reference
    out = tmp_path / "acts"
    argv = ["capture", "--model", tiny_checkpoint, "--text", str(corpus), "--hooks", *HOOKS, "--out", str(out),
            "--context", str(CONTEXT), "--batch-size", str(BATCH), "--shard-mb", repr(SHARD_MB)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode, "2", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).parent.parent)
    try:
        assert child.stdout.readline().strip() == "frozen"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    debris = ["00002"] if mode == "after_rename" else [".00002.tmp"]
    assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(["00000", "00001", *debris])
    with pytest.raises(StoreError, match="partial"):
        ActivationStore.open(out)
    assert verify(out)["complete"] is False  # what was committed is intact

    resumed = _capture(tiny_model, corpus, out)
    assert _files(out) == _files(ref.path)
    assert resumed.metadata.equals(ref.metadata)


def test_interrupted_capture_exits_cleanly_and_resumes_to_identical_bytes(tiny_checkpoint, tiny_model, reference,
                                                                         tmp_path):
    """Ctrl-C mid-capture: exit 130 with one line (no traceback); the rerun resumes to the uninterrupted store."""
    corpus, ref = reference
    out = tmp_path / "acts"
    argv = ["capture", "--model", tiny_checkpoint, "--text", str(corpus), "--hooks", *HOOKS, "--out", str(out),
            "--context", str(CONTEXT), "--batch-size", str(BATCH), "--shard-mb", repr(SHARD_MB)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, "sigint", "2", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    assert child.stdout.readline().strip() == "frozen"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "replab: interrupted" in err and "Traceback" not in err, err
    with pytest.raises(StoreError, match="partial"):
        ActivationStore.open(out)
    from replab.cli import main

    assert main(argv) == 0  # the same command again resumes
    assert _files(out) == _files(ref.path)


def test_verify_and_open_name_damaged_shards(tiny_model, reference, tmp_path):
    corpus, _ = reference
    out = tmp_path / "acts"
    _capture(tiny_model, corpus, out)
    assert verify(out)["files"] == len(ActivationStore.open(out).manifest["shards"]) * 6

    flipped = out / "shards" / "00001" / "blocks.1.hook_resid_post.bin"
    data = bytearray(flipped.read_bytes())
    data[17] ^= 0x40
    flipped.write_bytes(bytes(data))
    truncated = out / "shards" / "00003" / "meta.token_id.bin"
    truncated.write_bytes(truncated.read_bytes()[:-8])
    missing = out / "shards" / "00002" / "blocks.0.mlp.hook_pre.bin"
    missing.unlink()

    with pytest.raises(StoreError) as err:
        verify(out)
    msg = str(err.value)
    assert "shards/00001/blocks.1.hook_resid_post.bin is corrupt" in msg
    assert "shards/00003/meta.token_id.bin is truncated" in msg
    assert "shards/00002/blocks.0.mlp.hook_pre.bin is missing" in msg
    with pytest.raises(StoreError) as err:
        ActivationStore.open(out)  # sizes are checked on open; checksums by verify
    assert "00002/blocks.0.mlp.hook_pre.bin is missing" in str(err.value) and "00003" in str(err.value)
    with pytest.raises(StoreError, match="damaged"):
        _capture(tiny_model, corpus, out)  # a resume refuses to build on damaged shards...
    rebuilt = _capture(tiny_model, corpus, out, resume=False)  # ...and resume=False rebuilds
    assert verify(rebuilt.path)["complete"]


def test_capture_refuses_to_mix_settings(tiny_model, reference, tmp_path):
    corpus, _ = reference
    out = tmp_path / "acts"
    _capture(tiny_model, corpus, out)
    before = _files(out)
    with pytest.raises(StoreError) as err:
        capture(tiny_model, corpus, "blocks.0.hook_resid_post", out=out, context=CONTEXT, batch_size=BATCH,
                shard_mb=SHARD_MB, dtype="bfloat16")
    msg = str(err.value)
    assert "refusing to mix" in msg and "hooks:" in msg and "dtype:" in msg and "--no-resume" in msg
    with pytest.raises(StoreError, match="source:"):
        capture(tiny_model, corpus, HOOKS, out=out, context=CONTEXT + 1, batch_size=BATCH, shard_mb=SHARD_MB)
    with pytest.raises(StoreError, match="positions:"):
        _capture(tiny_model, corpus, out, positions="last")
    assert _files(out) == before
    assert _capture(tiny_model, corpus, out).manifest == ActivationStore.open(out).manifest  # same settings: no-op
    assert _files(out) == before
