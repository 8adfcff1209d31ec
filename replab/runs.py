"""Run directories: what every command and study writes, and all the app reads.

A run directory ``runs/<name>/`` holds ``run.json`` (kind, config, model, versions, metrics,
timings, status) plus artifacts: tables (CSV + JSON), Plotly figures (JSON), tensors
(safetensors) and free-form JSON. Files are written atomically through ``replab.fileio``,
and ``run.json`` says ``"status": "complete"`` only once ``finish`` ran, so a reader can tell a
partial run from a finished one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from replab.errors import RunDirError
from replab.fileio import atomic_write_bytes, jsonable, read_json, write_json, write_tensors

RUN_FILE = "run.json"


def versions() -> dict[str, str]:
    """Versions of replab and the libraries whose behaviour a result depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("replab", "torch", "transformer-lens", "transformers", "numpy", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def read_run_info(path: Path) -> dict[str, Any]:
    """A run directory's ``run.json``.

    Raises:
        RunDirError: it is missing, unreadable, or not a replab run.json.
    """
    info = read_json(path / RUN_FILE, "run.json of")
    if not isinstance(info, dict) or "kind" not in info:
        raise RunDirError(f"{path / RUN_FILE} is not a replab run.json (no 'kind'); re-run the command.")
    return info


def run_status(path: Path, info: dict[str, Any]) -> str:
    """``"complete"``, ``"running"``, ... : the run's kind decides where its one completeness flag lives.

    Most kinds use ``run.json``'s ``status`` (``Run.finish`` sets it); a kind with its own flag (an
    activation store's manifest) declares ``RunKind.status``, and nothing else is consulted.
    """
    kind = kinds().get(info.get("kind"))
    return kind.status(Path(path), info) if kind is not None and kind.status is not None else info.get("status", "?")


def run_problem(path: Path, info: dict[str, Any], *, require_complete: bool = True) -> str:
    """Why the run with this ``run.json`` cannot be read ("" when it can): partial, or artifacts missing."""
    status = run_status(path, info)
    if require_complete and status != "complete":
        return (f"Run {path} is partial (status {status!r}): the command that writes it did not finish. "
                "Re-run it to complete the run.")
    missing = [a for a in info.get("artifacts", []) if not (path / a).exists()]
    if missing:
        return f"Run {path} lists artifacts that are missing: {', '.join(missing[:5])}. Re-run it."
    return ""


@dataclass
class Run:
    """A run directory being written or read."""

    path: Path
    info: dict[str, Any] = field(default_factory=dict)

    # ---- writing -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, kind: str, config: Mapping[str, Any], *, model=None) -> "Run":
        """Start a run: make the directory and write ``run.json`` with ``status: running``.

        Args:
            path: the run directory (created if missing; existing artifacts are overwritten
                one by one as the run rewrites them).
            kind: what ran, e.g. ``"capture"``, ``"probe"``, ``"sae"``, ``"world-eval"``.
            config: the settings, as given (JSON-serialisable).
            model: optional model description (``replab.identity.describe(model)``: name and weights
                hash), or the model itself, which is described that way.
        """
        if model is not None and not isinstance(model, Mapping):
            from replab.identity import describe

            model = describe(model)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        info = {
            "kind": kind,
            "name": path.name,
            "status": "running",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": dict(config),
            "model": dict(model) if model is not None else None,
            "versions": versions(),
            "metrics": {},
            "timings": {},
            "artifacts": [],
        }
        run = cls(path, info)
        run._save()
        return run

    def _save(self) -> None:
        write_json(self.path / RUN_FILE, self.info)

    def _artifact(self, rel: str) -> Path:
        if rel not in self.info["artifacts"]:
            self.info["artifacts"].append(rel)
        return self.path / rel

    def write_json(self, rel: str, obj: Any) -> Path:
        """Write a JSON artifact at ``rel`` (relative to the run directory)."""
        p = self._artifact(rel)
        write_json(p, obj)
        return p

    def write_figure(self, name: str, fig) -> Path:
        """Write a Plotly figure as ``figures/<name>.json`` (``plotly.io.from_json`` reads it)."""
        p = self._artifact(f"figures/{name}.json")
        atomic_write_bytes(p, fig.to_json().encode())
        return p

    def write_table(self, name: str, df) -> Path:
        """Write a pandas DataFrame as ``<name>.csv`` and ``<name>.json`` (records)."""
        csv = self._artifact(f"{name}.csv")
        atomic_write_bytes(csv, df.to_csv(index=False).encode())
        self.write_json(f"{name}.json", df.to_dict(orient="records"))
        return csv

    def write_tensors(self, rel: str, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Path:
        """Write tensors (torch or numpy) as safetensors at ``rel``."""
        return write_tensors(self._artifact(rel), tensors, metadata)

    @contextlib.contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Record the wall time of a block under ``timings[name]`` (seconds)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.info["timings"][name] = round(time.perf_counter() - t0, 4)
            self._save()

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Merge metrics into ``run.json`` now (useful for long runs)."""
        self.info["metrics"].update(jsonable(dict(metrics)))
        self._save()

    def finish(self, metrics: Mapping[str, Any] | None = None) -> "Run":
        """Record final metrics and mark the run complete."""
        if metrics:
            self.info["metrics"].update(jsonable(dict(metrics)))
        self.info["status"] = "complete"
        self.info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._save()
        return self

    # ---- reading -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, require_complete: bool = True) -> "Run":
        """Open a run directory for reading.

        Raises:
            RunDirError: the directory or its ``run.json`` is missing or corrupt, the run did
                not finish (``require_complete``), or a listed artifact is missing.
        """
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"Run directory {path} does not exist. Run the replab command that creates it first.")
        info = read_run_info(path)
        problem = run_problem(path, info, require_complete=require_complete)
        if problem:
            raise RunDirError(problem)
        return cls(path, info)

    @property
    def kind(self) -> str:
        return self.info["kind"]

    def read_json(self, rel: str) -> Any:
        """Read a JSON artifact."""
        return read_json(self.path / rel, f"Artifact of run {self.path.name}:")

    def read_table(self, name: str):
        """Read ``<name>.csv`` back as a DataFrame."""
        import pandas as pd

        p = self.path / f"{name}.csv"
        if not p.is_file():
            raise RunDirError(f"Table {p} is missing; re-run the command that made run {self.path.name}.")
        return pd.read_csv(p)


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Every directory under ``root`` (recursively) that holds a ``run.json``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob(RUN_FILE))


@dataclass(frozen=True)
class RunKind:
    """What one kind of run directory is, for everything that lists or shows runs.

    Each method package declares its kinds in one module, ``replab/<package>/runkind.py``
    (``KIND = RunKind(...)`` or ``KINDS = (...)``), next to that kind's writer and readers;
    ``kinds()`` finds them, so adding a kind touches no table elsewhere.

    Attributes:
        name: ``run.json``'s ``kind``, e.g. ``"lens"``.
        title: label in the app, e.g. ``"Lenses"``.
        summary: ``run.json`` info -> a one-line summary of its headline metrics (Home page).
        page: the app page that shows it (``"5_Lenses"`` for ``app/pages/5_Lenses.py``).
        make: an example command that creates one (shown when a page finds none).
        figures: names of the figures it stores under ``figures/<name>.json``.
        status: ``(path, run.json info) -> "complete" | "partial" | ...`` for a kind whose completeness
            flag is not ``run.json``'s ``status`` (default: that status).
    """

    name: str
    title: str
    summary: Callable[[dict[str, Any]], str]
    page: str | None = None
    make: str = ""
    figures: tuple[str, ...] = ()
    status: Callable[[Path, dict[str, Any]], str] | None = None


def metric_summary(*keys: str) -> Callable[[dict[str, Any]], str]:
    """A ``RunKind.summary`` listing the given metrics as ``"fvu=0.047, l0=4"``."""

    def summary(info: dict[str, Any]) -> str:
        metrics = info.get("metrics") or {}
        return ", ".join(f"{k}={_fmt(metrics[k])}" for k in keys if metrics.get(k) is not None)

    return summary


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@cache
def kinds() -> dict[str, RunKind]:
    """Every run kind, by name: the ``KIND``/``KINDS`` of each ``replab.<subpackage>.runkind`` module."""
    import pkgutil
    from importlib import import_module
    from importlib.util import find_spec

    import replab

    found: dict[str, RunKind] = {}
    for sub in pkgutil.iter_modules(replab.__path__):
        name = f"replab.{sub.name}.runkind"
        if not sub.ispkg or find_spec(name) is None:
            continue
        module = import_module(name)
        for kind in getattr(module, "KINDS", ()) or (getattr(module, "KIND", None),):
            if kind is not None:
                found[kind.name] = kind
    return found


def summarize(info: dict[str, Any]) -> str:
    """The one-line summary of a run: its kind's ``summary``, else its first five metrics."""
    kind = kinds().get(info.get("kind"))
    if kind is not None:
        return kind.summary(info)
    return metric_summary(*list(info.get("metrics") or {})[:5])(info)
