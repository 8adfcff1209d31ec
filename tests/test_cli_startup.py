"""Start-up: ``replab --help`` and argument errors never import torch; the config-derived hook catalogue
equals the loaded model's (so the pre-load hook check accepts and refuses exactly what ``capture`` would)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import sys
from replab.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules, "tl": "transformer_lens" in sys.modules}))
"""


def _run(*argv: str) -> tuple[dict, str]:
    out = subprocess.run([sys.executable, "-c", "import json\n" + _PROBE, *argv], capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.parametrize("argv, rc, message", [
    (["--help"], 0, ""),
    (["capture", "--model", "world", "--hooks", "blocks.0.hook_resid_pots", "--prompts", "{good}", "--out", "{out}"],
     2, "Close matches: blocks.0.hook_resid_post"),
    (["capture", "--model", "world", "--hooks", "blocks.0.hook_resid_post", "--prompts", "{missing}", "--out",
      "{out}"], 2, "missing.jsonl does not exist"),
    (["capture", "--model", "world", "--hooks", "blocks.9.hook_resid_post", "--prompts", "{good}", "--out", "{out}"],
     2, "matches nothing"),
    (["capture", "--model", "world", "--hooks", "x", "--prompts", "{good}", "--batch-size", "0", "--out", "{out}"],
     2, "--batch-size must be positive"),
    (["hooks", "--model", "world", "blocks.*.hook_resid_post"], 0, ""),
    (["hooks", "--model", "world", "blocks.9.hook_resid_post"], 2, "matches nothing"),
    (["train-sae", "--help"], 0, ""),
    (["train-sae", "--store", "{out}", "--d-sae", "64", "--arch", "gated"], 2, "invalid choice: 'gated'"),
    (["probe", "--help"], 0, ""),
    (["lens", "train", "--help"], 0, ""),
    (["lens", "train", "--model", "world", "--text", "{missing}", "--out", "{out}"], 2, "missing.jsonl does not exist"),
    (["lens", "train", "--store", "{out}", "--out", "{out}"], 2, "No activation store"),
    (["lens", "eval", "--model", "world", "--lens", "{out}", "--text", "{good}"], 2, "no such directory"),
    (["relations", "fit", "--model", "world", "--relation", "bogus", "--out", "{out}"], 2,
     "Unknown world relation 'bogus'"),
])
def test_no_torch_before_the_error(tmp_path, argv, rc, message):
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "The movie was great.", "label": 1}\n')
    fill = {"good": good, "missing": tmp_path / "missing.jsonl", "out": tmp_path / "store"}
    result, err = _run(*[a.format(**fill) for a in argv])
    assert result == {"rc": rc, "torch": False, "tl": False}, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "store").exists()


def test_catalogue_from_config_equals_loaded_model(world_model, tiny_checkpoint, tiny_model):
    from replab.models import hook_names, resolve_hooks
    from replab.models.catalogue import checkpoint_hook_names, checkpoint_path

    for name, model in (("world", world_model), (tiny_checkpoint, tiny_model)):
        names, aliases = checkpoint_hook_names(checkpoint_path(name))
        assert names == hook_names(model)
        assert aliases | set(names) == set(model.hook_dict) | set(names)


@pytest.fixture(scope="module")
def small_store(tiny_model, tmp_path_factory):
    import replab

    d = tmp_path_factory.mktemp("startup")
    rows = [{"text": f"The movie was {w}.", "label": i % 2} for i, w in enumerate(["great", "bad"] * 6)]
    (d / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    replab.capture(tiny_model, replab.datasets.load(d / "p.jsonl"), "blocks.0.hook_resid_post", positions="last",
                   out=d / "store")
    return d / "store"


@pytest.mark.parametrize("argv, message", [
    (["probe", "--store", "{store}", "--cv", "10"], "the class counts are {0: 6, 1: 6}; lower cv to 6"),
    (["probe", "--store", "{store}", "--hooks", "blocks.5.hook_resid_post"], "matches nothing in the store"),
    (["probe", "--store", "{store}", "--target", "nope"], "'nope' is not a metadata column"),
    (["train-sae", "--store", "{store}", "--hook", "blocks.5.hook_resid_post", "--d-sae", "8", "--no-model"],
     "capture this hook first"),
    (["train-sae", "--store", "{store}", "--d-sae", "8", "--k", "9", "--no-model"], "k must be between 1 and d_sae=8"),
])
def test_store_commands_refuse_bad_input_before_torch(small_store, tmp_path, argv, message):
    """The store is read without torch, so a bad hook, target, cv or setting fails in well under a second."""
    result, err = _run(*[a.format(store=small_store) for a in argv], "--out", str(tmp_path / "run"))
    assert result == {"rc": 2, "torch": False, "tl": False}, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
