"""studies/probe_world.py end to end on the tiny model (the world model is not trained yet)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import plotly.io as pio
import pytest

from replab.probes import top_row
from replab.markdown import update_marked_section
from test_probes_causal import _prompts
from test_probes_fakes import tiny_capture

from replab.datasets import PromptSet
from replab.runs import Run

STUDY = Path(__file__).resolve().parent.parent / "studies" / "probe_world.py"


def _study():
    spec = importlib.util.spec_from_file_location("probe_world", STUDY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def _numeric(seed: int) -> PromptSet:
    subjects = ["France", "Japan", "Paris", "Tokyo", "Monday", "Wednesday", "dog", "cat", "movie", "book"]
    value = dict(zip(subjects, np.random.default_rng(seed).normal(size=len(subjects)) * 10))
    texts, subj = [], []
    for s in subjects:
        for template in ("The capital of {} is", "A {} is a mammal. The", "Two days after {} is"):
            texts.append(template.format(s))
            subj.append(s)
    return PromptSet(texts=texts, targets=[float(value[s]) for s in subj], subjects=subj, name=f"tiny:numeric{seed}")


def test_probe_world_writes_runs_and_docs_section(tiny_model, tmp_path):
    study = _study()
    docs = tmp_path / "probes.md"
    docs.write_text("# Probes\n\nIntro kept.\n")
    sets = {"sentiment": _prompts(2), **{name: _numeric(i) for i, name in enumerate(study.NUMERIC)}}
    captured = []

    def capture(model, prompts, hooks, *, positions, out):
        captured.append((prompts.name, positions))
        return tiny_capture(model, prompts, hooks, positions=positions, out=out)

    config = study.StudyConfig(out=str(tmp_path / "run"), cv=3, n_random=1, docs=str(docs))
    with pytest.warns(UserWarning, match="word types"):  # the tiny sentiment set has 2 adjectives
        study.probe_world(config, model=tiny_model, prompt_sets=sets, capture=capture)
    assert captured == [("tiny:sentiment", "last")] + [
        (f"tiny:numeric{i}", pos) for i in range(3) for pos in ("subject_last", "last")]
    back = Run.open(tmp_path / "run")
    assert back.kind == "probe-study"
    sentiment, numeric = back.read_table("sentiment"), back.read_table("numeric")
    assert set(sentiment.probe) == {"logistic", "meandiff"} and sentiment.selectivity.notna().any()
    assert set(numeric.dataset) == {f"{n}@{p}" for n in study.NUMERIC for p in ("subject_last", "last")}
    assert set(numeric.metric) == {"r2"}
    causal = back.read_json("causal.json")
    assert set(causal["results"]) == {"logistic", "meandiff"}
    for name, result in causal["results"].items():  # each probe type is ablated at its own best layer
        assert result["hook"] == top_row(sentiment, probe=name)["hook"]
    assert Run.open(tmp_path / "run" / "sentiment").read_json("causal.json")["random"]
    for name in ("sentiment_accuracy_by_layer", "sentiment_selectivity_by_layer", "numeric_r2_by_layer"):
        assert pio.from_json((tmp_path / "run" / "figures" / f"{name}.json").read_text()).data
    text = docs.read_text()
    assert text.startswith("# Probes\n\nIntro kept.") and text.count("## World model results") == 1
    assert "| 0 |" in text and "| 1 |" in text and "logistic" in text
    update_marked_section(docs, "probe_world", "## World model results\n\nsecond run\n")  # re-running replaces the section
    assert docs.read_text().count("## World model results") == 1 and "second run" in docs.read_text()
