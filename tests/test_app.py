"""The explorer app: replab.viz against reference computations, every page under AppTest, error states.

Run directories come from tests/app_runs.py (the real capture, probe, SAE commands on a tiny model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from app_runs import built, prompts
from streamlit.testing.v1 import AppTest

import replab
from replab import viz
from replab.errors import ReplabError
from replab.lenses import logit_lens

HOME = str(Path(__file__).resolve().parent.parent / "app" / "Home.py")
PROMPT = "The movie was great. It was"
N_PROMPTS = len(prompts())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return built(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return built(tmp_path_factory)[1]


@pytest.fixture(scope="module")
def model(runs):
    return replab.load_model(runs.checkpoint)


@pytest.fixture(scope="module")
def hf(runs):
    """The same checkpoint through plain transformers (eager attention, so attentions are returned)."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(runs.checkpoint, attn_implementation="eager").eval()


def app(root: Path, monkeypatch, page: str | None = None) -> AppTest:
    """The app on runs root ``root``, optionally switched to ``pages/<page>``, after one run."""
    monkeypatch.setenv("REPLAB_RUNS", str(root))
    at = AppTest.from_file(HOME, default_timeout=180).run()
    if page:
        at.switch_page(f"pages/{page}").run()
    assert not at.exception, at.exception
    return at


def values(data) -> np.ndarray:
    """A Plotly JSON array: a list, or a typed array ``{"dtype", "bdata"[, "shape"]}`` (Plotly >= 6)."""
    if isinstance(data, dict):
        import base64

        flat = np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
        shape = data.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.asarray(data)


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page, keyed by title (the element's proto.spec is the figure JSON)."""
    out = {}
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        out[spec["layout"]["title"]["text"]] = spec
    return out


def chart(at: AppTest, title_start: str) -> dict:
    found = [spec for title, spec in charts(at).items() if title.startswith(title_start)]
    assert len(found) == 1, f"{title_start!r} not among {list(charts(at))}"
    return found[0]


def frame(at: AppTest, *columns: str) -> pd.DataFrame:
    """The one dataframe on the page holding ``columns``."""
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert len(found) == 1, f"{len(found)} dataframes with columns {columns}"
    return found[0]


def messages(at: AppTest) -> str:
    return " | ".join(e.value for e in [*at.error, *at.warning, *at.info])


def no_unexpected(at: AppTest) -> None:
    assert not at.exception
    assert not [e.value for e in at.error if e.value.startswith("Unexpected error")]


# ---- replab.viz against references ---------------------------------------------------------------
def test_logit_lens_matches_transformers_hidden_states(model, hf):
    ids = model.to_tokens(PROMPT)
    lens = logit_lens(model, PROMPT)
    n_layers, seq = model.cfg.n_layers, ids.shape[1]
    assert len(lens) == n_layers * seq and list(lens["layer"].unique()) == list(range(n_layers))
    with torch.no_grad():
        out = hf(ids, output_hidden_states=True)
        lm = [hf.lm_head(hf.transformer.ln_f(h)) for h in out.hidden_states[1:-1]]
    for layer in range(n_layers):
        # HF's hidden_states[l + 1] is block l's output; the last one already went through ln_f
        logits = out.logits if layer == n_layers - 1 else lm[layer]
        probs = torch.softmax(logits[0].float(), -1)
        rows = lens[lens["layer"] == layer].sort_values("position")
        np.testing.assert_allclose(rows["top_prob"], probs.max(-1).values, rtol=1e-4, atol=1e-6)
        assert rows["top_token_id"].tolist() == probs.argmax(-1).tolist()
        following = ids[0, 1:]
        np.testing.assert_allclose(rows["next_token_prob"].iloc[:-1], probs[torch.arange(seq - 1), following],
                                   rtol=1e-4, atol=1e-6)
        assert np.isnan(rows["next_token_prob"].iloc[-1]) and pd.isna(rows["next_token"].iloc[-1])
    assert lens["token"].iloc[:seq].tolist() == model.to_str_tokens(PROMPT)


def test_topk_and_attention_match_transformers(model, hf):
    ids = model.to_tokens(PROMPT)
    with torch.no_grad():
        out = hf(ids, output_attentions=True)
    probs = torch.softmax(out.logits[0, -1].float(), -1)
    top = viz.next_token_topk(model, PROMPT, k=5)
    assert top["token_id"].tolist() == probs.topk(5).indices.tolist()
    np.testing.assert_allclose(top["prob"], probs.topk(5).values, rtol=1e-4)
    assert top["token"].tolist() == [model.tokenizer.decode([i]) for i in top["token_id"]]
    att = viz.attention_patterns(model, PROMPT)
    assert att.patterns.shape == (model.cfg.n_layers, model.cfg.n_heads, ids.shape[1], ids.shape[1])
    np.testing.assert_allclose(att.patterns, torch.stack(out.attentions)[:, 0].numpy(), atol=1e-5)
    assert list(att.tokens) == model.to_str_tokens(PROMPT)


def test_live_limits_refuse_long_prompts_and_big_models(model, monkeypatch):
    with pytest.raises(viz.LiveLimitError, match="201 tokens long; the model's context is 64 tokens"):
        viz.next_token_topk(model, " ".join(["great"] * 200))  # not silently truncated to the context
    with pytest.raises(ReplabError, match="201 tokens long; the model's context is 64 tokens"):
        logit_lens(model, " ".join(["great"] * 200))
    monkeypatch.setattr(viz.lens, "MAX_TOKENS", 5)
    with pytest.raises(viz.LiveLimitError, match="live analysis is limited to 5 tokens"):
        viz.attention_patterns(model, PROMPT)
    with pytest.raises(viz.LiveLimitError, match="empty"):
        viz.next_token_topk(model, "")
    monkeypatch.setattr(viz.lens, "MAX_PARAMS", 1000)
    with pytest.raises(viz.LiveLimitError, match=r"parameters; live analysis is limited"):
        viz.attention_patterns(model, PROMPT)


def test_pca_matches_sklearn_and_samples(runs):
    from sklearn.decomposition import PCA

    from replab.activations import ActivationStore

    X = np.asarray(ActivationStore.open(runs.tokens)["blocks.1.hook_resid_post"], dtype=np.float64)
    proj = viz.pca_2d(X)
    ref = PCA(n_components=2).fit(X)
    np.testing.assert_allclose(proj.explained, ref.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(np.abs(proj.coords), np.abs(ref.transform(X)), atol=1e-6)  # up to sign
    small = viz.pca_2d(X, max_rows=50)
    assert len(small.rows) == 50 and len(set(small.rows)) == 50 and (np.diff(small.rows) > 0).all()
    with pytest.raises(ReplabError, match="NaN"):
        viz.pca_2d(np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]))


def test_token_spans_escape_and_shade():
    html = viz.token_spans(["<|endoftext|>", " a", " b"], [0.0, 0.5, 2.0], scale=1.0, center=1)
    assert "&lt;|endoftext|&gt;" in html and "<|endoftext|>" not in html
    shades = [float(s.split(",")[-1].split(")")[0]) for s in html.split("rgba(")[1:]]
    assert shades == [0.0, 0.5, 1.0]  # clipped at full intensity
    assert html.count("underline") == 1 and 'title="0.5"' in html
    with pytest.raises(ValueError):
        viz.token_spans(["a"], [1.0, 2.0], 1.0)


def test_run_index_reports_each_problem(runs, broken):
    good = viz.run_index(runs.root)
    assert set(good["kind"]) == {"capture", "probe", "sae", "world-eval"}
    assert (good["status"] == "complete").all() and (good["problem"] == "").all()
    probe = good.set_index("name").loc["sentiment-probes"]
    assert "best_probe=logistic" in probe["key_metrics"] or "best_probe=meandiff" in probe["key_metrics"]
    bad = viz.run_index(broken).set_index("name")
    assert bad.loc["partial-probe", "status"] == "running" and "partial" in bad.loc["partial-probe", "problem"]
    assert bad.loc["corrupt-sae", "status"] == "corrupt" and "corrupt" in bad.loc["corrupt-sae", "problem"]
    assert "results.csv" in bad.loc["lost-probe", "problem"]
    with pytest.raises(ReplabError, match="is a 'capture' run, not a 'probe' run"):
        viz.open_run(runs.capture, "probe")


def test_feature_table_and_search(runs):
    table = viz.feature_table(runs.saes[0])
    summary = json.loads((runs.saes[0] / "features" / "summary.json").read_text())
    assert sorted(table["latent"]) == sorted(summary["analysed"])
    assert table["frequency"].is_monotonic_decreasing
    token = table["top_tokens"].iloc[0][0]
    hits = viz.find_latents(table, f"  {token.strip().upper()} ")
    assert len(hits) >= 1 and all(any(t.strip() == token.strip() for t in ts) for ts in hits["top_tokens"])
    assert viz.find_latents(table, "no-such-token").empty
    assert len(viz.find_latents(table, "")) == len(table)


def test_app_cli_command_and_environment(tmp_path, monkeypatch):
    from replab.app_cli import APP_SCRIPT, app_env, register, streamlit_command

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["app", "--runs", str(tmp_path), "--port", "9123"])
    assert (args.runs, args.port, args.headless) == (str(tmp_path), 9123, False)
    cmd = streamlit_command(args.port)
    assert cmd[1:5] == ["-m", "streamlit", "run", str(APP_SCRIPT)] and APP_SCRIPT.is_file()
    assert cmd[cmd.index("--server.port") + 1] == "9123"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = app_env("relative/runs")
    assert env["REPLAB_RUNS"] == str(Path("relative/runs").resolve()) and env["HF_HUB_OFFLINE"] == "1"


# ---- pages ---------------------------------------------------------------------------------------
def test_home_lists_runs_and_world_card(runs, monkeypatch):
    at = app(runs.root, monkeypatch)
    no_unexpected(at)
    table = frame(at, "name", "kind", "status")
    assert set(table["name"]) == {"sentiment-acts", "sentiment-probes", "tokens-acts", "sae-topk", "sae-standard",
                                  "world-eval"}
    assert "fvu=" in table.set_index("name").loc["sae-topk", "key_metrics"]
    shipped = frame(at, "relation", "held-out accuracy")  # the shipped card is shown first
    assert set(shipped["relation"]) >= {"capital", "sentiment"}
    at.selectbox(key="home_card").set_value("run world-eval").run()
    card = frame(at, "relation", "held-out accuracy")
    assert card.set_index("relation").loc["capital", "held-out accuracy"] == 0.5
    at.multiselect(key="home_kinds").set_value(["sae"]).run()
    assert set(frame(at, "name", "kind")["kind"]) == {"sae"}


def test_home_explains_broken_runs(broken, monkeypatch):
    at = app(broken, monkeypatch)
    no_unexpected(at)
    text = messages(at)
    assert "partial-probe" in text and "partial (status 'running')" in text
    assert "corrupt-sae" in text and "corrupt" in text
    assert "lost-probe" in text and "results.csv" in text
    from replab.world.evaluate import CARD_DIR

    if (CARD_DIR / "world_card.json").is_file():  # no world-eval run here: only the shipped card
        assert at.selectbox(key="home_card").options == ["shipped with replab"]
    else:
        assert "No world card yet" in text


def test_model_page_shows_topk_lens_and_attention(runs, model, monkeypatch):
    at = app(runs.root, monkeypatch, "1_Model_and_prompt.py")
    at.text_input(key="model_name").set_value(str(runs.checkpoint))
    at.text_input(key="prompt").set_value(PROMPT).run()
    no_unexpected(at)
    assert not at.error, messages(at)
    ref = torch.softmax(model(PROMPT)[0, -1].detach().float(), -1)
    top = frame(at, "rank", "token", "prob")
    assert len(top) == 10
    np.testing.assert_allclose(top["prob"], ref.topk(10).values, rtol=1e-4)
    lens = chart(at, "Logit lens")["data"][0]
    assert values(lens["z"]).shape == (model.cfg.n_layers, len(model.to_str_tokens(PROMPT)))
    np.testing.assert_allclose(values(lens["z"])[-1, -1], ref.max(), rtol=1e-4)  # last layer = the output
    assert lens["text"][-1][-1] == model.tokenizer.decode([int(ref.argmax())])

    _, cache = model.run_with_cache(model.to_tokens(PROMPT), names_filter="blocks.1.attn.hook_pattern")
    at.selectbox(key="attn_layer").set_value(1)
    at.selectbox(key="attn_head").set_value(1).run()
    att = chart(at, "Attention pattern, layer 1 head 1")["data"][0]
    np.testing.assert_allclose(values(att["z"]), cache["blocks.1.attn.hook_pattern"][0, 1].numpy(), atol=1e-5)
    at.slider(key="topk").set_value(3).run()
    assert len(frame(at, "rank", "token", "prob")) == 3


def test_model_page_explains_bad_model_and_long_prompt(runs, monkeypatch):
    at = app(runs.root, monkeypatch, "1_Model_and_prompt.py")
    at.text_input(key="model_name").set_value("no-such-model-xyz").run()
    no_unexpected(at)
    assert "Could not load model 'no-such-model-xyz'" in messages(at) and not at.get("plotly_chart")
    at.text_input(key="model_name").set_value(str(runs.checkpoint))
    at.text_input(key="prompt").set_value(" ".join(["great"] * 200)).run()
    no_unexpected(at)
    assert "201 tokens long; the model's context is 64 tokens" in messages(at)


def test_activations_page_manifest_rows_and_pca(runs, monkeypatch):
    from sklearn.decomposition import PCA

    from replab.activations import ActivationStore

    at = app(runs.root, monkeypatch, "2_Activations.py")
    no_unexpected(at)
    assert at.selectbox(key="acts_run").value == "sentiment-acts"
    store = ActivationStore.open(runs.capture)
    hooks = frame(at, "hook", "d")
    assert hooks["hook"].tolist() == store.hooks and hooks["d"].tolist() == [32, 32]
    meta = frame(at, "prompt_index", "position", "label")
    assert len(meta) == N_PROMPTS and set(meta["label"]) == {"positive", "negative"}
    pca = chart(at, f"blocks.1.hook_resid_post: {N_PROMPTS} rows")
    assert sorted(t["name"] for t in pca["data"]) == ["negative", "positive"]
    ref = PCA(n_components=2).fit_transform(np.asarray(store["blocks.1.hook_resid_post"], dtype=np.float64))
    for trace in pca["data"]:
        keep = (store.metadata["label"] == trace["name"]).to_numpy()
        np.testing.assert_allclose(np.abs(values(trace["x"])), np.abs(ref[keep, 0]), atol=1e-6)
    at.selectbox(key="acts_colour").set_value("(none)").run()
    assert [t["name"] for t in chart(at, "blocks.1.hook_resid_post")["data"]] == ["rows"]
    at.selectbox(key="acts_run").set_value("tokens-acts").run()
    no_unexpected(at)
    assert chart(at, f"blocks.1.hook_resid_post: {len(ActivationStore.open(runs.tokens)):,} rows")


def test_probes_page_metric_baselines_selectivity_and_causal(runs, monkeypatch):
    at = app(runs.root, monkeypatch, "3_Probes.py")
    no_unexpected(at)
    results = pd.read_csv(runs.probe / "results.csv")
    metric = chart(at, "Probe accuracy by layer")
    names = {t["name"] for t in metric["data"]}
    assert names == {f"{p}: {t}" for p in ("logistic", "meandiff") for t in ("task", "control", "shuffled")}
    trace = next(t for t in metric["data"] if t["name"] == "logistic: task")
    expected = results[(results["probe"] == "logistic") & (results["task"] == "task")].sort_values("layer")
    np.testing.assert_allclose(values(trace["y"]), expected["mean"])
    np.testing.assert_allclose(values(trace["error_y"]["array"]), expected["std"])
    assert chart(at, "Selectivity") and chart(at, "MDL compression")
    causal = json.loads((runs.probe / "causal.json").read_text())
    bars = chart(at, "Causal check")["data"]
    assert bars[0]["name"] == "probe direction"
    np.testing.assert_allclose(values(bars[0]["y"]), [causal["direction"]["delta"][k] for k in bars[0]["x"]])
    at.multiselect(key="probe_types").set_value(["meandiff"]).run()
    assert {t["name"].split(":")[0] for t in chart(at, "Probe accuracy by layer")["data"]} == {"meandiff"}


def test_probes_page_explains_partial_and_missing_runs(broken, monkeypatch):
    at = app(broken, monkeypatch, "3_Probes.py")
    at.selectbox(key="probe_run").set_value("partial-probe").run()
    no_unexpected(at)
    assert "is partial (status 'running')" in messages(at) and "Re-run it" in messages(at)
    at.selectbox(key="probe_run").set_value("lost-probe").run()
    no_unexpected(at)
    assert "results.csv" in messages(at) and "missing" in messages(at)


def test_activations_page_explains_damaged_store(broken, monkeypatch):
    at = app(broken, monkeypatch, "2_Activations.py")
    no_unexpected(at)
    assert "damaged" in messages(at) and "meta.token_id.bin is missing" in messages(at)


def test_saes_page_compares_runs_and_browses_features(runs, monkeypatch):
    at = app(runs.root, monkeypatch, "4_SAEs.py")
    no_unexpected(at)
    table = frame(at, "run", "architecture", "fvu").set_index("run")
    for path in runs.saes:
        metrics = json.loads((path / "run.json").read_text())["metrics"]
        assert table.loc[path.name, "fvu"] == pytest.approx(metrics["fvu"])
        assert table.loc[path.name, "ce_recovered"] == pytest.approx(metrics["ce_recovered"])
    compare = chart(at, "SAE metrics by run")
    assert {t["name"] for t in compare["data"]} == {"standard (sae-standard)", "topk (sae-topk)"}

    at.selectbox(key="sae_run").set_value("sae-topk").run()
    options = at.selectbox(key="sae_latent").options
    first = at.selectbox(key="sae_latent").value
    latent = json.loads((runs.saes[0] / "features" / f"latent_{first}.json").read_text())
    contexts = frame(at, "activation", "token", "context")
    np.testing.assert_allclose(contexts["activation"], [c["max"] for c in latent["contexts"]])
    hist = chart(at, f"Latent {first}:")["data"][0]
    assert values(hist["y"]).tolist() == latent["histogram"]["counts"]
    assert "Logit effects" in "".join(charts(at))
    assert at.get("html") and "rgba(255,140,0," in at.get("html")[0].proto.body

    other = int(options[1].split(":")[0].removeprefix("latent "))
    at.selectbox(key="sae_latent").set_value(other).run()
    changed = frame(at, "activation", "token", "context")
    other_file = json.loads((runs.saes[0] / "features" / f"latent_{other}.json").read_text())
    np.testing.assert_allclose(changed["activation"], [c["max"] for c in other_file["contexts"]])
    assert not changed.equals(contexts)

    token = latent["contexts"][0]["tokens"][latent["contexts"][0]["center"]]
    at.text_input(key="sae_search").set_value(token.strip()).run()
    found = [int(o.split(":")[0].removeprefix("latent ")) for o in at.selectbox(key="sae_latent").options]
    table = viz.feature_table(runs.saes[0]).set_index("latent")
    assert first in found and all(any(t.strip() == token.strip() for t in table.loc[i, "top_tokens"]) for i in found)
    at.text_input(key="sae_search").set_value("no-such-token").run()
    no_unexpected(at)
    assert "No analysed latent fires on 'no-such-token'" in messages(at)


def test_run_model_finds_a_relative_checkpoint_from_the_run_directory(runs, tmp_path, monkeypatch):
    """Runs that recorded a relative checkpoint path (before replab recorded absolute ones) still find their
    model when the app starts elsewhere; names that resolve as given are kept."""
    import shutil

    from replab.runs import Run

    shutil.copytree(runs.checkpoint, tmp_path / "base" / "ckpt")
    for name, model in (("old", {"id": "ckpt"}), ("world", {"id": "world"}), ("none", None)):
        Run.create(tmp_path / "base" / "runs" / name, "relation", {}, model=model).finish()
    monkeypatch.chdir(tmp_path)
    found = viz.run_model(Run.open(tmp_path / "base" / "runs" / "old"))
    assert Path(found) == (tmp_path / "base" / "ckpt").resolve()
    assert viz.run_model(Run.open(tmp_path / "base" / "runs" / "world")) == "world"
    assert viz.run_model(Run.open(tmp_path / "base" / "runs" / "none")) == "world"


def test_saes_page_names_runs_by_path_and_explains_unevaluated_ones(runs, tmp_path, monkeypatch):
    """Two SAE runs in directories both called ``sae`` stay apart; a run with training metrics only (from
    ``saes.train(..., out=)``) is named with the command that evaluates it, not drawn as an empty bar."""
    import shutil

    from replab import saes

    for name in ("x", "y"):
        shutil.copytree(runs.saes[0], tmp_path / name / "sae")
    saes.train(saes.create("topk", 32, 16, k=2), torch.randn(256, 32), steps=2, batch_size=64, progress=False,
               out=tmp_path / "z" / "sae")
    at = app(tmp_path, monkeypatch, "4_SAEs.py")
    no_unexpected(at)
    assert frame(at, "run", "architecture", "fvu")["run"].tolist() == ["x/sae", "y/sae", "z/sae"]
    assert "Not evaluated (training metrics only): z/sae" in messages(at) and "replab eval-sae" in messages(at)
    assert {t["name"] for t in chart(at, "SAE metrics by run")["data"]} == {"topk (x/sae)", "topk (y/sae)"}


def test_saes_page_explains_partial_and_corrupt_feature_runs(broken, monkeypatch):
    at = app(broken, monkeypatch, "4_SAEs.py")
    no_unexpected(at)
    assert at.multiselect(key="sae_compare").value == ["bad-latent-sae"]  # the partial run is not compared
    at.selectbox(key="sae_run").set_value("partial-sae").run()
    no_unexpected(at)
    assert "partial-sae is partial" in messages(at)
    at.selectbox(key="sae_run").set_value("bad-latent-sae").run()
    no_unexpected(at)
    assert "Feature file" in messages(at) and "is corrupt" in messages(at)


def test_pages_on_an_empty_root_say_how_to_make_runs(tmp_path, monkeypatch):
    root = tmp_path / "no-runs-here"
    at = app(root, monkeypatch)
    no_unexpected(at)
    assert "No run directories under" in messages(at)
    for page, expected in (("2_Activations.py", "replab capture"), ("3_Probes.py", "replab probe"),
                           ("4_SAEs.py", "replab train-sae")):
        at.switch_page(f"pages/{page}").run()
        no_unexpected(at)
        assert f"runs under `{root}` yet" in messages(at) and expected in messages(at)
