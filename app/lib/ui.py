"""Shared page furniture: the runs root, cached readers, run pickers and readable errors.

Readers are cached with ``st.cache_data`` / ``st.cache_resource`` and keyed by the
modification time of the files they read, so a page load never redoes work and a re-run
command shows up on the next load.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from replab import viz
from replab.errors import ReplabError

def make_command(kind: str) -> str:
    """The example command that creates a run of ``kind`` (from its ``RunKind``)."""
    from replab.runs import kinds

    found = kinds().get(kind)
    return found.make if found is not None and found.make else f"the replab command that writes {kind!r} runs"


def runs_root() -> Path:
    """The runs root: ``--runs DIR`` (after ``--`` on the command line), else ``$REPLAB_RUNS``, else ``runs``."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runs")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.runs or os.environ.get("REPLAB_RUNS") or "runs")


def page(title: str, intro: str) -> Path:
    """Set up a page (title, intro, sidebar note on the runs root) and return the runs root."""
    st.set_page_config(page_title=f"replab: {title}", layout="wide")
    root = runs_root()
    st.title(title)
    st.caption(intro)
    st.sidebar.caption(f"Runs root: `{root}` (set with `replab app --runs DIR` or `REPLAB_RUNS`).")
    return root


def show_error(exc: BaseException) -> None:
    """A readable message for an exception: replab errors carry their own fix."""
    if isinstance(exc, ReplabError):
        st.error(str(exc))
    else:
        st.error(f"Unexpected error: {type(exc).__name__}: {exc}. This is a bug in replab's app or a file replab "
                 "did not write; please report it with the run directory.")


class guard:
    """``with guard():`` shows an exception raised inside as a message instead of a traceback.

    With ``stop=True`` (default) the page stops there; with ``stop=False`` it goes on.
    """

    def __init__(self, stop: bool = True) -> None:
        self.stop = stop

    def __enter__(self) -> "guard":
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if not isinstance(exc, Exception):  # no error, or Streamlit's own stop/rerun signals
            return False
        show_error(exc)
        if self.stop:
            st.stop()
        return True


def _mtime(*parts: str | Path) -> int:
    try:
        return Path(*parts).stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_data(show_spinner=False, max_entries=16)
def _index(root: str, stamp: tuple) -> pd.DataFrame:
    return viz.run_index(root)


@st.cache_data(show_spinner=False, max_entries=16)
def _cards(root: str, stamp: tuple) -> dict:
    return viz.world_cards(_index(root, stamp))


def _stamp(root: Path) -> tuple:
    """Every run.json under ``root`` with its modification time: the cache key of root-wide readers."""
    from replab.runs import find_runs

    return tuple((str(p), _mtime(p, "run.json")) for p in find_runs(root))


def run_index(root: Path) -> pd.DataFrame:
    """``replab.viz.run_index(root)``, recomputed only when a ``run.json`` under it changes."""
    return _index(str(root), _stamp(root))


def world_cards(root: Path) -> dict:
    """``replab.viz.world_cards`` of the runs under ``root``, re-read only when a ``run.json`` changes."""
    return _cards(str(root), _stamp(root))


def pick_run(index: pd.DataFrame, kind: str | tuple[str, ...], label: str, key: str) -> Path:
    """A selectbox of the runs of ``kind`` (one or a tuple; a ``?run=NAME`` query parameter preselects one).

    Stops the page with instructions when there is none.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    runs = index[index["kind"].isin(kinds)]
    if runs.empty:
        st.info(f"No {kinds[0]} runs under `{runs_root()}` yet. Make one with:\n\n```\n{make_command(kinds[0])}\n```")
        st.stop()
    names = runs["name"].tolist()
    wanted = st.query_params.get("run")
    status = dict(zip(runs["name"], runs["status"]))
    name = st.selectbox(label, names, index=names.index(wanted) if wanted in names else 0, key=key,
                        format_func=lambda n: n if status[n] == "complete" else f"{n} ({status[n]})")
    return Path(runs.loc[runs["name"] == name, "path"].iloc[0])


# ---- cached readers (keyed by the run's run.json mtime) -------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def _probe_run(path: str, stamp: int) -> viz.ProbeRun:
    return viz.read_probe_run(path)


def probe_run(path: str | Path) -> viz.ProbeRun:
    return _probe_run(str(path), _mtime(path, "run.json"))


@st.cache_data(show_spinner=False, max_entries=64)
def _sae_summary(path: str, name: str | None, stamp: int) -> dict[str, Any]:
    return viz.sae_summary(path, name)


def sae_summary(path: str | Path, name: str | None = None) -> dict[str, Any]:
    return _sae_summary(str(path), name, _mtime(path, "run.json"))


@st.cache_data(show_spinner="Reading the analysed features...", max_entries=16)
def _feature_table(path: str, stamp: int) -> pd.DataFrame:
    return viz.feature_table(path)


def feature_table(path: str | Path) -> pd.DataFrame:
    return _feature_table(str(path), _mtime(path, "run.json"))


@st.cache_data(show_spinner=False, max_entries=256)
def _latent(path: str, latent: int, stamp: int) -> dict[str, Any]:
    return viz.read_latent(path, latent)


def latent(path: str | Path, i: int) -> dict[str, Any]:
    return _latent(str(path), int(i), _mtime(path, "run.json"))


@st.cache_resource(show_spinner="Opening the activation store...", max_entries=8)
def _store(path: str, stamp: int):
    from replab.activations import ActivationStore

    viz.open_run(path, "capture")
    return ActivationStore.open(path)


def store(path: str | Path):
    """The capture run at ``path`` opened as an ``ActivationStore`` (memory-mapped, cached)."""
    return _store(str(path), _mtime(path, "manifest.json"))


@st.cache_resource(show_spinner="Loading the lens...", max_entries=8)
def _lens(path: str, stamp: int, _model):
    from replab.lenses import load

    return load(f"{path}/lens", _model)


def lens(path: str | Path, model):
    """The lens of the ``lens`` run at ``path`` for ``model`` (cached until the run changes)."""
    return _lens(str(path), _mtime(path, "run.json"), model)


@st.cache_data(show_spinner="Projecting activations (PCA)...", max_entries=32)
def _pca(path: str, hook: str, stamp: int) -> viz.Projection:
    return viz.pca_2d(store(Path(path))[hook])


def pca(path: str | Path, hook: str) -> viz.Projection:
    return _pca(str(path), hook, _mtime(path, "manifest.json"))


@st.cache_resource(show_spinner="Loading the model (first time only)...", max_entries=2, ttl=600)
def _model(name: str) -> tuple[Any, str | None]:
    from replab.models import load_model

    try:
        return load_model(name), None
    except ReplabError as exc:  # cached too, so a bad name is not retried on every widget change
        return None, str(exc)


def model(name: str):
    """The model ``name`` (loaded once per process); a load failure raises ``ModelLoadError``."""
    from replab.errors import ModelLoadError

    loaded, problem = _model(name)
    if problem:
        raise ModelLoadError(problem)
    return loaded


@st.cache_data(show_spinner=False, max_entries=64)
def prompt_views(_model, name: str, text: str, k: int) -> tuple[pd.DataFrame, pd.DataFrame, viz.AttentionPatterns]:
    """Top-k, logit lens and attention of ``text`` on the model loaded as ``name`` (cached by name and text)."""
    from replab.lenses import logit_lens

    return viz.next_token_topk(_model, text, k), logit_lens(_model, text), viz.attention_patterns(_model, text)
