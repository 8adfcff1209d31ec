"""The on-disk format of an activation store: manifest, shard layout, encoding, commits and checks.

A store is a directory::

    manifest.json            settings, shard list with one SHA-256 per file, committed-row cursor
    prompts.json             per-prompt columns (text, label, target, ...) of a prompt-set source
    shards/00000/<hook>.bin  raw little-endian rows [rows, d] of one hook (float32, float16,
                             bfloat16 kept as uint16 bits, or int8 codes)
    shards/00000/scale.<hook>.bin   int8 stores only: float32 [rows, 1], each row's scale
                             (value = code * scale; checksummed like every other file)
    shards/00000/meta.<col>.bin   int64 rows of prompt_index, position, token_id
    shards/00000/stats.safetensors   float64 per hook: ``<hook>.sum`` / ``<hook>.sumsq`` [d] and
                             ``<hook>.norm_sum`` [1] of the shard's rows as captured (float32, before the
                             cast or quantisation to the store dtype; summed into the manifest's ``stats``
                             when the store completes, so resumes and merges keep them)

Every shard holds the same rows for every hook: ``rows_per_shard`` of them, except the last one
(and, in a store merged from ranks' parts by ``merge``, the last one of each part).
A shard is written into ``shards/.NNNNN.tmp/`` and renamed into place once complete; only then
is it listed in the manifest, so a capture killed at any moment leaves either a committed shard
or debris that the next run deletes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from replab import dtypes
from replab.errors import StoreError
from replab.fileio import read_json, read_tensors, write_json, write_tensors

if TYPE_CHECKING:
    import torch

FORMAT = "replab.activation-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROMPTS = "prompts.json"
SHARDS = "shards"
META_COLUMNS = ("prompt_index", "position", "token_id")
# Settings that must match for a capture to continue an existing store (dims and rows_per_shard
# follow from them).
IDENTITY = ("format_version", "model", "model_hash", "hooks", "dtype", "positions", "source", "shard_mb")

_STORAGE = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2"), "int8": np.dtype("i1")}
_META = np.dtype("<i8")
_SCALE = np.dtype("<f4")
STATS = "stats.safetensors"
_HASH_CHUNK = 1 << 24


def check_dtype(dtype: str) -> str:
    """Validate a store dtype name (``float32``, ``float16``, ``bfloat16``, ``int8``)."""
    if dtype not in _STORAGE:
        raise StoreError(f"Unsupported store dtype {dtype!r}; use one of {', '.join(_STORAGE)}.")
    return dtype


def itemsize(dtype: str) -> int:
    """Bytes per stored value."""
    return _STORAGE[check_dtype(dtype)].itemsize


def scale_column(hook: str) -> str:
    """File stem of an int8 store's per-row scales of ``hook``."""
    return f"scale.{hook}"


def encode(x: "torch.Tensor", dtype: str) -> np.ndarray:
    """``x`` [rows, d] in the store dtype (as ``gather_cast`` returns it; floats are rounded here if not)
    -> its bytes' numpy view (bf16 as uint16 bits, int8 codes as they are)."""
    import torch  # here, so that opening and verifying a store imports no torch

    if dtype == "int8" and x.dtype != torch.int8:
        raise StoreError(f"int8 stores take quantised codes (replab.kernels.gather_cast), got {x.dtype} rows.")
    t = x.detach().to(dtypes.STORE_DTYPES[dtype]).cpu().contiguous()
    return t.view(torch.int16).numpy().view(np.uint16) if dtype == "bfloat16" else t.numpy()


def decode(raw: np.ndarray, dtype: str, scale: np.ndarray | None = None) -> np.ndarray:
    """Stored values -> numpy: float32 for float32, bfloat16 and int8 stores, float16 for float16.

    int8 codes need their rows' ``scale`` ``[rows, 1]`` and return ``code * scale`` in float32, the same
    product as ``replab.kernels.dequantise_int8``.
    """
    if dtype == "bfloat16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype == "int8":
        return raw.astype(np.float32) * np.asarray(scale, dtype=np.float32)
    return np.asarray(raw, dtype=_STORAGE[dtype].newbyteorder("="))


def value_dtype(dtype: str) -> np.dtype:
    """The numpy dtype reads return for a store dtype (numpy has no bfloat16, so float32)."""
    return np.dtype(np.float16 if dtype == "float16" else np.float32)


def column_layout(manifest: Mapping[str, Any]) -> dict[str, tuple[np.dtype, int]]:
    """File name stem -> (storage dtype, values per row) for every file of a shard."""
    layout = {h: (_STORAGE[manifest["dtype"]], int(manifest["dims"][h])) for h in manifest["hooks"]}
    if manifest["dtype"] == "int8":
        layout.update({scale_column(h): (_SCALE, 1) for h in manifest["hooks"]})
    layout.update({f"meta.{c}": (_META, 1) for c in META_COLUMNS})
    return layout


def split_rows(first: int, n: int, capacity: int) -> list[int]:
    """Sizes of the pieces that ``n`` rows starting at store row ``first`` fill, cut at shard boundaries.

    Capture computes each piece's statistics separately (on the device, before the cast) so that every
    shard's statistics file covers exactly its own rows.
    """
    sizes = []
    while n > 0:
        take = min(n, capacity - first % capacity)
        sizes.append(take)
        first, n = first + take, n - take
    return sizes


def shard_dir(root: Path, k: int) -> Path:
    return Path(root) / SHARDS / f"{k:05d}"


def column_file(root: Path, k: int, column: str) -> Path:
    return shard_dir(root, k) / f"{column}.bin"


def read_manifest(root: Path) -> dict[str, Any]:
    """Read ``manifest.json``.

    Raises:
        StoreError: no store at ``root``, or the manifest is unreadable.
    """
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise StoreError(
            f"No activation store at {root}: {MANIFEST} is missing. Create one with replab.capture(...) "
            "or `replab capture ... --out PATH`."
        )
    manifest = read_json(path, "Store manifest", fix="re-run the capture with resume=False (--no-resume)",
                         error=StoreError)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"{path} is not an activation-store manifest; point at a directory made by replab.capture.")
    return manifest


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def problems(root: Path, manifest: Mapping[str, Any], *, checksums: bool) -> list[str]:
    """Name every missing, truncated or (with ``checksums``) corrupt file the manifest lists."""
    root = Path(root)
    out: list[str] = []
    prompts = manifest.get("prompts")
    if prompts:
        p = root / PROMPTS
        if not p.is_file():
            out.append(f"{PROMPTS} is missing")
        elif checksums and file_sha256(p) != prompts["sha256"]:
            out.append(f"{PROMPTS} is corrupt (checksum mismatch)")
    layout = column_layout(manifest)
    for k, shard in enumerate(manifest["shards"]):
        for col, (dt, width) in layout.items():
            p = column_file(root, k, col)
            rel = p.relative_to(root)
            expected = shard["rows"] * width * dt.itemsize
            if not p.is_file():
                out.append(f"shard {k} of {col}: {rel} is missing")
            elif (size := p.stat().st_size) != expected:
                out.append(f"shard {k} of {col}: {rel} is truncated or padded ({size} bytes, expected {expected})")
            elif checksums and file_sha256(p) != shard["sha256"][col]:
                out.append(f"shard {k} of {col}: {rel} is corrupt (checksum mismatch)")
    return out


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    def short(v: Any) -> str:
        s = json.dumps(v, sort_keys=True)
        return s if len(s) <= 160 else s[:157] + "..."

    return [f"{k}: store has {short(old.get(k))}, this capture asks for {short(new[k])}"
            for k in IDENTITY if old.get(k) != new[k]]


def prepare(root: Path, settings: Mapping[str, Any], *, resume: bool) -> dict[str, Any]:
    """The manifest a capture continues from, with uncommitted debris removed.

    With ``resume`` and a store already at ``root``, its committed shards are kept when its
    settings match; otherwise a fresh, empty manifest is written (old shards are deleted).

    Raises:
        StoreError: the existing store was made with different settings (the message lists
            them), or its committed shards are damaged.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root} is a file; captures write a directory. Choose another --out.")
    manifest = None
    if resume and (root / MANIFEST).exists():
        manifest = read_manifest(root)
        diffs = _differences(manifest, settings)
        if diffs:
            raise StoreError(
                f"{root} holds an activation store made with different settings; refusing to mix them.\n  "
                + "\n  ".join(diffs)
                + "\nCapture into another directory, or pass resume=False (--no-resume) to overwrite it."
            )
        damaged = problems(root, manifest, checksums=False)
        if damaged:
            raise StoreError(
                f"Cannot resume {root}: committed files are damaged ({'; '.join(damaged[:5])}). "
                "Pass resume=False (--no-resume) to capture again from scratch."
            )
    if manifest is None:
        manifest = {"format": FORMAT, **settings, "prompts": None, "shards": [], "n_rows": 0,
                    "cursor": {"item": 0, "skip": 0}, "complete": False}
        write_json(root / MANIFEST, manifest)
        (root / PROMPTS).unlink(missing_ok=True)
    committed = {shard_dir(root, k).name for k in range(len(manifest["shards"]))}
    if (root / SHARDS).is_dir():
        for p in (root / SHARDS).iterdir():
            if p.name not in committed:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    return manifest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardWriter:
    """Appends rows to the open shard and commits each full shard atomically.

    Args:
        root: the store directory.
        manifest: the manifest from ``prepare`` (mutated as shards commit).
        save: writes the manifest atomically (called after every commit).
    """

    def __init__(self, root: Path, manifest: dict[str, Any], save: Callable[[dict[str, Any]], Any]):
        self.root = Path(root)
        self.manifest = manifest
        self._save = save
        self._layout = column_layout(manifest)
        self._capacity = int(manifest["rows_per_shard"])
        self._rows = 0
        self._files: dict[str, tuple[Any, Any]] | None = None
        self._stats: dict[str, np.ndarray] = {}
        self._stats_width = {h: 2 * int(manifest["dims"][h]) + 1 for h in manifest["hooks"]}

    @property
    def pending_rows(self) -> int:
        """Rows written to the open, not yet committed shard."""
        return self._rows

    def _open(self) -> None:
        k = len(self.manifest["shards"])
        tmp = self.root / SHARDS / f".{k:05d}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self._tmp = tmp
        self._files = {c: (open(tmp / f"{c}.bin", "wb"), hashlib.sha256()) for c in self._layout}

    def append(self, columns: Mapping[str, np.ndarray], stats: Mapping[str, np.ndarray], *, item: int,
               n_items: int, skip: int = 0) -> None:
        """Write rows produced by one batch.

        Args:
            columns: file stem (hook, ``scale.<hook>`` or ``meta.<col>``) -> encoded rows ``[rows, width]``.
            stats: hook -> ``[pieces, 2 d + 1]`` float64 per-dimension sum, sum of squares and sum of row norms
                of the rows of each piece ``split_rows(n_rows, rows, rows_per_shard)`` cuts ``columns`` into.
            item: index of the batch's first source item (prompt or context).
            n_items: items in the batch.
            skip: rows of this batch already committed before (``columns`` starts after them).
        """
        n = len(next(iter(columns.values())))
        pieces = split_rows(self.manifest["n_rows"] + self._rows, n, self._capacity)
        for hook, width in self._stats_width.items():
            if stats[hook].shape != (len(pieces), width):
                raise RuntimeError(f"Statistics of {hook} cover {stats[hook].shape[0]} pieces of the batch, "
                                   f"not {len(pieces)}: capture and the shard boundaries disagree (a replab bug).")
        off = 0
        for k, take in enumerate(pieces):
            if self._files is None:
                self._open()
            for col, (f, h) in self._files.items():
                chunk = np.ascontiguousarray(columns[col][off:off + take])
                f.write(chunk.data)
                h.update(chunk.data)
            for hook, width in self._stats_width.items():
                self._stats.setdefault(hook, np.zeros(width))
                self._stats[hook] += stats[hook][k]
            self._rows += take
            off += take
            if self._rows == self._capacity:
                done = off == n
                self._commit({"item": item + n_items, "skip": 0} if done else {"item": item, "skip": skip + off})

    def _commit(self, cursor: dict[str, int]) -> None:
        assert self._files is not None
        write_tensors(self._tmp / STATS, {f"{h}.{name}": part for h, acc in self._stats.items()
                                          for name, part in _split(acc)})
        self._stats = {}
        hashes = {}
        for col, (f, h) in self._files.items():
            f.flush()
            os.fsync(f.fileno())
            f.close()
            hashes[col] = h.hexdigest()
        k = len(self.manifest["shards"])
        os.replace(self._tmp, shard_dir(self.root, k))
        _fsync_dir(self.root / SHARDS)
        self.manifest["shards"].append({"rows": self._rows, "sha256": hashes})
        self.manifest["n_rows"] += self._rows
        self.manifest["cursor"] = cursor
        self._save(self.manifest)
        self._files, self._rows = None, 0

    def finish(self, n_items: int) -> dict[str, Any]:
        """Commit the last, partial shard and mark the store complete (``n_items`` items in all)."""
        end = {"item": n_items, "skip": 0}
        if self._files is not None:
            self._commit(end)
        self.manifest["cursor"] = end
        self.manifest["complete"] = True
        self.manifest["stats"] = summarise_stats(self.root, self.manifest)
        self._save(self.manifest)
        return self.manifest


def _split(acc: np.ndarray) -> list[tuple[str, np.ndarray]]:
    d = (acc.shape[0] - 1) // 2
    return [("sum", acc[:d]), ("sumsq", acc[d:2 * d]), ("norm_sum", acc[-1:])]


def summarise_stats(root: Path, manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per hook ``{"rows", "mean" [d], "var" [d] (population), "mean_norm"}`` from the shards' stats files.

    Shards written before statistics existed (no stats file) make the summary empty rather than wrong.
    """
    totals = {h: np.zeros(2 * int(manifest["dims"][h]) + 1) for h in manifest["hooks"]}
    for k in range(len(manifest["shards"])):
        path = shard_dir(Path(root), k) / STATS
        if not path.is_file():
            return {}
        part = read_tensors(path, "Shard statistics", numpy=True, error=StoreError,
                            fix="run `replab verify` on the store and re-capture the shard") if manifest["shards"][k]["rows"] else {}
        for h, acc in totals.items():
            if f"{h}.sum" in part:
                acc += np.concatenate([part[f"{h}.sum"], part[f"{h}.sumsq"], part[f"{h}.norm_sum"]])
    n = max(int(manifest["n_rows"]), 1)
    out = {}
    for h, acc in totals.items():
        d = (acc.shape[0] - 1) // 2
        mean = acc[:d] / n
        out[h] = {"rows": int(manifest["n_rows"]), "mean": mean.tolist(),
                  "var": np.maximum(acc[d:2 * d] / n - mean ** 2, 0).tolist(), "mean_norm": float(acc[-1] / n)}
    return out


def _link(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (no copy, and the source stays valid); copy where links fail."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def merge(root: Path, manifest: dict[str, Any], parts: list[Path], n_items: int,
          save: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Adopt the committed shards of complete part stores, in order, as the shards of ``root``.

    Ranks of a distributed capture each write a part store over their own item range; this
    links every part's shard files into ``root/shards/NNNNN`` (atomic rename of a temporary
    directory per shard, as ``ShardWriter`` commits) and saves the merged, complete manifest last,
    so a merge killed half way leaves debris that ``prepare`` removes and intact parts to redo it.

    Args:
        root: the store directory (``manifest`` from ``prepare``; its shard list is replaced).
        manifest: the store's manifest (mutated and returned).
        parts: part store directories in item order (every one complete, same settings).
        n_items: source items in all.
        save: writes the manifest atomically.
    """
    manifest["shards"], manifest["n_rows"] = [], 0
    (Path(root) / SHARDS).mkdir(parents=True, exist_ok=True)
    for part in parts:
        pm = read_manifest(part)
        for k, shard in enumerate(pm["shards"]):
            j = len(manifest["shards"])
            tmp = Path(root) / SHARDS / f".{j:05d}.tmp"
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            for f in shard_dir(part, k).iterdir():
                _link(f, tmp / f.name)
            os.replace(tmp, shard_dir(root, j))
            manifest["shards"].append(shard)
            manifest["n_rows"] += shard["rows"]
    _fsync_dir(Path(root) / SHARDS)
    manifest["cursor"] = {"item": n_items, "skip": 0}
    manifest["complete"] = True
    manifest["stats"] = summarise_stats(root, manifest)
    save(manifest)
    return manifest
