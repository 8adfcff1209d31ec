"""Read run directories for display: the index of a runs root and each kind's tables.

Every reader raises ``RunDirError`` (or ``StoreError`` for stores) with a message that says
what is wrong and how to fix it; the app shows that message instead of a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from replab.errors import ReplabError, RunDirError
from replab.runs import Run, find_runs, read_json, read_run_info, run_problem, run_status, summarize

# Runs holding analysed SAE features: training runs, and analyze_features runs of their own.
FEATURE_KINDS = ("sae", "sae-features")
# The SAE metrics compared side by side across runs (see docs/saes.md for definitions).
SAE_METRICS = ("fvu", "l0", "dead_fraction", "dense_fraction", "ce_recovered", "kl_score", "mse")
PROBE_COLUMNS = ("hook", "layer", "probe", "task", "metric", "mean", "std")
INDEX_COLUMNS = ["name", "kind", "status", "model", "created", "key_metrics", "problem", "path"]


def run_index(root: str | os.PathLike) -> pd.DataFrame:
    """One row per run directory under ``root`` (recursively), problems included.

    Returns:
        Columns ``name`` (path relative to ``root``), ``kind``, ``status`` (``complete``,
        ``running`` or ``corrupt``), ``model``, ``created``, ``key_metrics``, ``problem`` (why
        the run cannot be read, with the fix; empty when fine) and ``path``.
    """
    root = Path(root)
    rows = []
    for path in find_runs(root):
        row = {"name": str(path.relative_to(root)), "path": str(path), "problem": ""}
        try:
            info = read_run_info(path)
        except RunDirError as exc:
            rows.append({**row, "kind": "?", "status": "corrupt", "problem": str(exc)})
            continue
        row["problem"] = run_problem(path, info)
        model = info.get("model") or {}
        rows.append({**row, "kind": info["kind"], "status": run_status(path, info),
                     "model": model.get("id") or _config_model(info.get("config") or {}),
                     "created": info.get("created", ""), "key_metrics": summarize(info)})
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def _config_model(config: dict[str, Any]) -> str:
    """The model a run names in its config when it loaded none (a probe sweep records its store's)."""
    sweep = config.get("sweep") if isinstance(config.get("sweep"), dict) else {}
    return str(config.get("model") or sweep.get("store_model") or "")


def run_model(run: Run, default: str = "world") -> str:
    """The name to load ``run``'s model by: its recorded id; a relative checkpoint path (runs made before
    replab recorded absolute ones) is looked up from the run directory's ancestors when it is not found
    from the current directory."""
    from replab.models.catalogue import checkpoint_path

    name = str((run.info.get("model") or {}).get("id") or default)
    if Path(name).is_absolute() or checkpoint_path(name) is not None:
        return name
    found = next((p / name for p in Path(run.path).resolve().parents if (p / name / "config.json").is_file()), None)
    return str(found) if found is not None else name


def open_run(path: str | os.PathLike, kind: str | tuple[str, ...]) -> Run:
    """Open a complete run and check its kind (one kind or a tuple of accepted kinds).

    Raises:
        RunDirError: missing, partial or corrupt run, or a run of another kind.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    run = Run.open(path)
    if run.kind not in kinds:
        wanted = " or ".join(repr(k) for k in kinds)
        raise RunDirError(f"Run {path} is a {run.kind!r} run, not a {wanted} run; pick a {kinds[0]} run.")
    return run


@dataclass(frozen=True)
class ProbeRun:
    """A probe sweep's results.

    Attributes:
        results: the tidy sweep table (hook, layer, probe, task in task|control|shuffled,
            metric, mean, std, n[, selectivity, selectivity_std]).
        best: per hook, the best probe and its file.
        mdl: MDL table (hook, task, codelength, compression) or ``None``.
        causal: ``causal.json`` (ablating the best direction vs random ones) or ``None``.
        info: the run's ``run.json``.
    """

    results: pd.DataFrame
    best: pd.DataFrame | None
    mdl: pd.DataFrame | None
    causal: dict[str, Any] | None
    info: dict[str, Any]


def read_probe_run(path: str | os.PathLike) -> ProbeRun:
    """Read a ``replab probe`` run directory.

    Raises:
        RunDirError: the run is not a complete probe run or ``results.csv`` lacks columns.
    """
    run = open_run(path, "probe")
    results = run.read_table("results")
    missing = [c for c in PROBE_COLUMNS if c not in results.columns]
    if missing:
        raise RunDirError(f"{run.path / 'results.csv'} lacks columns {missing}; re-run `replab probe`.")
    optional = lambda name: run.read_table(name) if (run.path / f"{name}.csv").is_file() else None  # noqa: E731
    causal = run.read_json("causal.json") if (run.path / "causal.json").is_file() else None
    return ProbeRun(results=results, best=optional("best"), mdl=optional("mdl"), causal=causal, info=run.info)


def sae_summary(path: str | os.PathLike, name: str | None = None) -> dict[str, Any]:
    """One SAE run's architecture, size, hook and evaluation metrics (one row of the comparison), named
    ``name`` (the path under the runs root: several runs may share a directory name), else its directory's.

    Raises:
        RunDirError: the run is not a complete SAE run or its ``cfg.json`` is missing.
    """
    run = open_run(path, "sae")
    cfg = run.read_json("cfg.json")
    metrics = run.info.get("metrics") or {}
    meta = cfg.get("metadata") or {}
    # a BatchTopK SAE is saved as SAELens "jumprelu" and says what it was trained as
    return {"run": name or Path(path).name, "architecture": meta.get("replab_trained_as") or cfg.get("architecture"),
            "d_sae": cfg.get("d_sae"), "k": cfg.get("k"), "hook": meta.get("hook_name"),
            **{m: metrics.get(m) for m in SAE_METRICS}, "path": str(path)}


def feature_table(path: str | os.PathLike) -> pd.DataFrame:
    """The analysed latents of an SAE (or ``sae-features``) run, one row each, for browsing and search.

    Returns:
        Columns ``latent``, ``frequency``, ``mean_activation``, ``max_activation``,
        ``top_tokens`` (the tokens it fires most on, strongest first) and ``top_logits``
        (the tokens its decoder direction promotes most), sorted by frequency.

    Raises:
        RunDirError: no ``features/summary.json`` (features were not analysed) or a latent
            file listed in it is missing or corrupt.
    """
    run = open_run(path, FEATURE_KINDS)
    if not (run.path / "features" / "summary.json").is_file():
        raise RunDirError(
            f"SAE run {run.path} has no features/summary.json: its features were not analysed. "
            "Run replab.saes.analyze_features(sae, store, out=run_dir) or re-run `replab train-sae`."
        )
    summary = run.read_json("features/summary.json")
    rows = []
    for i in summary.get("analysed", []):
        entry = summary["latents"][i]
        contexts = sorted(read_latent(path, i)["contexts"], key=lambda c: -c["max"])
        fired_on = list(dict.fromkeys(c["tokens"][c["center"]] for c in contexts if c["tokens"]))
        rows.append({"latent": i, "frequency": entry["frequency"], "mean_activation": entry["mean_activation"],
                     "max_activation": entry["max_activation"], "top_tokens": fired_on,
                     "top_logits": [t["token"] for t in entry.get("top_positive_logits", [])]})
    table = pd.DataFrame(rows, columns=["latent", "frequency", "mean_activation", "max_activation", "top_tokens",
                                        "top_logits"])
    return table.sort_values("frequency", ascending=False, kind="stable").reset_index(drop=True)


def find_latents(table: pd.DataFrame, token: str, column: str = "top_tokens") -> pd.DataFrame:
    """Rows of ``feature_table`` whose ``column`` (``top_tokens``: fires on, ``top_logits``:
    promotes) contains ``token``, case-insensitive and ignoring surrounding spaces."""
    query = token.strip().lower()
    if not query:
        return table
    return table[table[column].map(lambda tokens: any(query == t.strip().lower() for t in tokens))]


def read_latent(path: str | os.PathLike, latent: int) -> dict[str, Any]:
    """``features/latent_<i>.json`` of an SAE run: contexts, histogram, frequency, logit effects.

    Raises:
        RunDirError: the latent was not analysed or its file is corrupt.
    """
    p = Path(path) / "features" / f"latent_{latent}.json"
    if not p.is_file():
        raise RunDirError(f"Latent {latent} of {path} was not analysed (no {p.name}); raise top_n in analyze_features.")
    data = read_json(p, "Feature file")
    missing = [k for k in ("contexts", "histogram", "frequency") if k not in data]
    if missing:
        raise RunDirError(f"{p} lacks {missing}; re-run the feature analysis.")
    return data


def world_cards(index: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """World cards to show: the one shipped with replab (when present), then each readable world-eval run's.

    Args:
        index: ``run_index`` of the runs root.
    """
    from replab.world.evaluate import CARD_DIR

    cards: dict[str, dict[str, Any]] = {}
    if (CARD_DIR / "world_card.json").is_file():
        from replab.world import load_card

        cards["shipped with replab"] = load_card()
    for _, row in index[(index["kind"] == "world-eval") & (index["problem"] == "")].iterrows():
        try:
            cards[f"run {row['name']}"] = open_run(row["path"], "world-eval").read_json("world_card.json")
        except ReplabError:
            continue  # listed with its problem in the index
    return cards


def card_tables(card: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A world card as (per-relation accuracy table incl. sentiment, canonical-prompt table)."""
    rows = [{"relation": name, "kind": r.get("kind"), "facts": r.get("n_facts"),
             "train accuracy": r.get("train_accuracy"), "held-out accuracy": r.get("heldout_accuracy")}
            for name, r in card.get("relations", {}).items()]
    if "sentiment" in card:
        s = card["sentiment"]
        rows.append({"relation": "sentiment", "kind": "sentiment", "facts": s.get("n_train_prompts"),
                     "train accuracy": s.get("train_accuracy"), "held-out accuracy": s.get("heldout_accuracy")})
    return pd.DataFrame(rows), pd.DataFrame(card.get("canonical", []))
