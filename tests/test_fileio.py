"""The file layer: atomic writes, and errors that name the file, the key and the fix."""

import json
import math
import os

import numpy as np
import pytest
import torch

from replab import fileio
from replab.errors import DataError, RunDirError


def test_json_round_trip_converts_numpy_and_nan(tmp_path):
    p = fileio.write_json(tmp_path / "a" / "x.json", {"a": np.float32(1.5), "b": np.arange(3), "c": math.nan,
                                                      "d": (1, 2), "e": tmp_path})
    assert fileio.read_json(p) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": [1, 2], "e": str(tmp_path)}


def test_missing_and_corrupt_json_name_the_file_and_fix(tmp_path):
    with pytest.raises(RunDirError, match=r"Store manifest .*nope\.json is missing; re-capture"):
        fileio.read_json(tmp_path / "nope.json", "Store manifest", fix="re-capture")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1')
    with pytest.raises(DataError, match=r"bad\.json is corrupt"):
        fileio.read_json(bad, error=DataError)


def test_require_names_the_file_and_key(tmp_path):
    assert fileio.require({"k": 3}, "k", tmp_path / "c.json") == 3
    with pytest.raises(RunDirError, match=r"c\.json has no 'kind' field"):
        fileio.require({"k": 3}, "kind", tmp_path / "c.json")
    with pytest.raises(RunDirError, match="does not hold a JSON object"):
        fileio.require([1], "kind", tmp_path / "c.json")


def test_tensors_round_trip_torch_and_numpy(tmp_path):
    t = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(), "s": np.array([1.0, 2.0])}  # non-contiguous
    p = fileio.write_tensors(tmp_path / "t.safetensors", t, metadata={"format": "x"})
    back = fileio.read_tensors(p, keys=("w", "s"))
    assert torch.equal(back["w"], t["w"]) and back["s"].dtype == torch.float64
    assert np.array_equal(fileio.read_tensors(p, numpy=True)["s"], t["s"])
    assert fileio.read_tensor_metadata(p) == {"format": "x"}
    with pytest.raises(RunDirError, match=r"t\.safetensors lacks tensor\(s\) 'b'"):
        fileio.read_tensors(p, "Probe file", keys=("b",))


def test_truncated_safetensors_is_a_named_error(tmp_path):
    p = fileio.write_tensors(tmp_path / "t.safetensors", {"w": torch.ones(100)})
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(RunDirError, match=r"SAE file .*t\.safetensors is corrupt.*re-save"):
        fileio.read_tensors(p, "SAE file", fix="re-save")
    p.write_bytes(b"not a safetensors file")
    with pytest.raises(RunDirError, match="is corrupt"):
        fileio.read_tensor_metadata(p)


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    p = fileio.write_json(tmp_path / "x.json", {"v": 1})

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        fileio.write_json(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 1}


def test_json_and_prompt_files_are_utf8_whatever_the_locale(tmp_path):
    """A peer's JSON (an LRE relation with "São Paulo") and a prompt file read the same under an ASCII locale."""
    import subprocess
    import sys

    (tmp_path / "rel.json").write_bytes(json.dumps({"city": "São Paulo"}, ensure_ascii=False).encode())
    (tmp_path / "p.jsonl").write_bytes('{"text": "Café au lait", "label": 1}\n'.encode())
    code = ("import sys, replab.fileio as f, replab.datasets as d; "
            "assert sys.getfilesystemencoding() and __import__('locale').getpreferredencoding() != 'UTF-8'; "
            f"print(f.read_json({str(tmp_path / 'rel.json')!r})['city'], d.load({str(tmp_path / 'p.jsonl')!r}).texts[0])")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0",
           "PYTHONIOENCODING": "utf-8"}
    out = subprocess.run([sys.executable, "-X", "utf8=0", "-c", code], env=env, capture_output=True, text=True,
                         encoding="utf-8")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "São Paulo Café au lait"
