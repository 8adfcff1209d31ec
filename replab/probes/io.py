"""Probe files: ``<stem>.safetensors`` (tensors) + ``<stem>.json`` (type, hyperparameters, provenance).

No pickle: the JSON names the probe class by its registry ``kind``, and only tensors go
through safetensors, so loading a probe never executes code from the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from replab.errors import DataError
from replab.probes.base import Probe, probe_types
from replab.fileio import read_json, read_tensors, write_json, write_tensors

FORMAT = "replab.probe"
VERSION = 1


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


def probe_files(probe: Probe) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors and the JSON document that describe a fitted probe."""
    probe._check_fitted()
    tensors, fitted = probe._state()
    doc = {
        "format": FORMAT, "version": VERSION, "type": probe.kind, "name": probe.name,
        "params": probe.params(), "hook": probe.hook, "position": probe.position, "model": probe.model,
        "d": probe.d_, "fitted": fitted, "meta": probe.meta,
        "tensors": sorted(tensors),
        "directions": "unit direction(s) [k, d] in activation coordinates (k = 1 except multiclass logistic)",
    }
    tensors = {**tensors, "directions": probe.directions}
    return {k: np.ascontiguousarray(v if np.asarray(v).dtype == np.float64 else np.asarray(v, dtype=np.float32))
            for k, v in tensors.items()}, doc


def probe_from_files(tensors: dict[str, np.ndarray], doc: Any, where: str = "probe") -> Probe:
    """Rebuild a probe from ``probe_files`` output.

    Raises:
        DataError: the document is not a replab probe, names an unknown type, or lacks tensors.
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(
            f"{where} is not a replab probe file (no 'format': {FORMAT!r}); save probes with probe.save(path)."
        )
    types = probe_types()
    if doc.get("type") not in types:
        raise DataError(f"{where} holds an unknown probe type {doc.get('type')!r}; known: {', '.join(types)}.")
    missing = [k for k in doc.get("tensors", []) if k not in tensors]
    if missing:
        raise DataError(f"{where} lacks tensors {missing}; the file pair is incomplete, save the probe again.")
    probe = types[doc["type"]](**doc.get("params", {}))
    probe._provenance(doc.get("hook"), doc.get("position"), doc.get("model"))
    probe.meta = dict(doc.get("meta") or {})
    probe.d_ = int(doc["d"])
    probe._restore({k: np.asarray(v) for k, v in tensors.items()}, doc.get("fitted", {}))
    return probe


def save_probe(probe: Probe, path: str | os.PathLike) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json``; returns the JSON path."""
    stem = _stem(path)
    tensors, doc = probe_files(probe)
    write_tensors(stem.with_suffix(".safetensors"), tensors, metadata={"format": FORMAT, "type": probe.kind})
    write_json(stem.with_suffix(".json"), doc)
    return stem.with_suffix(".json")


def load_probe(path: str | os.PathLike) -> Probe:
    """Read a probe saved by ``save_probe`` (pass either file or their common stem).

    Raises:
        DataError: a file is missing or corrupt; the message names it.
    """
    stem = _stem(path)
    js, st = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    fix = "a saved probe is a .json + .safetensors pair (probe.save(path)); save the probe again"
    doc = read_json(js, "Probe file", fix=fix, error=DataError)
    tensors = read_tensors(st, "Probe file", numpy=True, fix=fix, error=DataError)
    return probe_from_files(tensors, doc, where=str(js))
