"""End to end in a real browser: the app served by ``streamlit run``, every page loaded in Debian's Chromium.

Screenshots land in tests/artifacts/browser/ (gitignored) for a human to look at.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
import sys
from pathlib import Path

import pytest
from app_runs import built

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "browser"
# page -> (Plotly charts it must draw, a text it must show)
EXPECTED = {
    "home": (0, "World model card"),
    "model": (3, "Logit lens"),
    "activations": (1, "PCA"),
    "probes": (4, "Causal check"),
    "saes": (3, "Top-activating contexts"),
}


def _screenshots():
    spec = importlib.util.spec_from_file_location("app_screenshots", ROOT / "app" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.browser
def test_every_page_draws_in_chromium(tmp_path_factory):
    if shutil.which("chromium") is None:
        pytest.fail("Chromium is not installed, so the app cannot be tested in a browser. "
                    "Install Debian's package: apt-get update && apt-get install -y chromium")
    runs, _ = built(tmp_path_factory)
    shots = _screenshots()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with shots.serve(runs.root, log=ARTIFACTS / "streamlit.log") as url:
        seen = shots.shoot(url, ARTIFACTS, shots.pages(str(runs.checkpoint), "The movie was great. It was"))
    assert set(seen) == set(EXPECTED)
    for name, (n_charts, text) in EXPECTED.items():
        shot = seen[name]
        assert (shot.exceptions, shot.errors) == (0, []), f"{name}: {shot.errors}"
        assert shot.charts == n_charts and shot.drawn == n_charts, f"{name}: {shot.drawn}/{shot.charts} charts drawn"
        assert text in shot.text, f"{name} does not show {text!r}"
        width, height = _png_size(shot.png)
        assert width == 1400 and height >= 1000
