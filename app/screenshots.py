"""Screenshots of every explorer page, taken in headless Chromium against a running app.

    python app/screenshots.py --runs runs/demo                  # -> docs/screenshots/<page>.png
    python app/screenshots.py --runs DIR --model PATH --out DIR # another model for the Model page

Starts ``streamlit run app/Home.py`` headless on a free port, drives Debian's ``chromium``
(``apt-get install chromium``; no browser download) with Playwright, waits until each page
has finished running and its Plotly charts are drawn, and saves a full-page PNG. The
end-to-end test (tests/test_browser.py) uses the same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

APP = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


@dataclass(frozen=True)
class Page:
    """A page to visit: a file stem for the PNG, its URL path and query parameters."""

    name: str
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)


def pages(model: str = "world", prompt: str = "The capital of France is") -> list[Page]:
    """Every page of the app (the Model page on ``model`` and ``prompt``)."""
    return [Page("home"), Page("model", "Model_and_prompt", {"model": model, "prompt": prompt}),
            Page("activations", "Activations"), Page("probes", "Probes"), Page("saes", "SAEs")]


@dataclass(frozen=True)
class Shot:
    """What a page showed: Plotly charts, how many were drawn (hold an SVG), tracebacks, error
    messages, the visible text and the PNG."""

    charts: int
    drawn: int
    exceptions: int
    errors: list[str]
    text: str
    png: Path


def chromium() -> str:
    """Path of Debian's Chromium.

    Raises:
        RuntimeError: it is not installed (with the command that installs it).
    """
    path = shutil.which("chromium")
    if not path:
        raise RuntimeError("Chromium is not installed: run `apt-get update && apt-get install -y chromium` "
                           "(Debian's package; Playwright drives it, nothing is downloaded).")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(runs: str | os.PathLike, port: int | None = None, timeout: float = 60.0,
          log: Path | None = None) -> Iterator[str]:
    """Run the app headless on ``port`` (default: a free one) reading ``runs``; yields its URL.

    Raises:
        RuntimeError: the server did not answer ``/_stcore/health`` within ``timeout`` seconds.
    """
    from replab.app_cli import app_env, streamlit_command

    port = port or free_port()
    cmd = streamlit_command(port) + ["--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
                                     "--client.toolbarMode", "minimal"]
    env = app_env(runs)
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start on port {port} (exit code {proc.poll()}); see {log}.")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log:
            out.close()


_STATE = """() => {
  const q = (sel) => document.querySelector(sel);
  const charts = [...document.querySelectorAll("[data-testid='stPlotlyChart']")];
  const busy = !q("[data-testid='stApp'] h1") || !!(q("[data-testid='stSkeleton']") || q("[data-testid='stSpinner']")
    || q("[data-testid='stStatusWidgetRunningIcon']"));
  const main = q("[data-testid='stMain']");
  return {busy, charts: charts.length, drawn: charts.filter(c => c.querySelector(".main-svg")).length,
          height: main ? main.scrollHeight : 0};
}"""


def settle(tab, timeout_s: float, quiet_s: float = 1.0) -> dict:
    """Wait until the page's script run is over and every chart is drawn, with the chart count
    unchanged for ``quiet_s`` (Plotly charts mount a moment after the run ends)."""
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        state = tab.evaluate(_STATE)
        key = (state["busy"], state["charts"], state["drawn"])
        if key != last:
            last, since = key, time.monotonic()
        elif not state["busy"] and state["charts"] == state["drawn"] and time.monotonic() - since >= quiet_s:
            return state
        tab.wait_for_timeout(250)
    raise TimeoutError(f"The page did not settle within {timeout_s} s (last state {last}).")


def shoot(url: str, out: str | os.PathLike, visit: Sequence[Page], timeout_s: float = 60.0,
          width: int = 1400, height: int = 1000) -> dict[str, Shot]:
    """Visit each page, wait until it settles, save ``<out>/<page.name>.png`` and report what it showed."""
    from playwright.sync_api import sync_playwright

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shots: dict[str, Shot] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": width, "height": height})
            for page in visit:
                query = f"?{urlencode(page.query)}" if page.query else ""
                tab.goto(f"{url}/{page.path}{query}", wait_until="domcontentloaded")
                state = settle(tab, timeout_s)
                # the app scrolls inside stMain: grow the window to the content so the PNG holds the whole page
                tab.set_viewport_size({"width": width, "height": max(height, state["height"] + 80)})
                state = settle(tab, timeout_s, quiet_s=0.5)
                png = out / f"{page.name}.png"
                tab.screenshot(path=str(png))
                tab.set_viewport_size({"width": width, "height": height})
                shots[page.name] = Shot(
                    charts=state["charts"],
                    drawn=state["drawn"],
                    exceptions=tab.locator("[data-testid='stException']").count(),
                    errors=tab.locator("[data-testid='stAlertContentError']").all_inner_texts(),
                    text=tab.locator("[data-testid='stMain']").inner_text(),
                    png=png,
                )
        finally:
            browser.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="runs root the app reads")
    parser.add_argument("--out", default=str(APP.parent / "docs" / "screenshots"), help="directory for the PNGs")
    parser.add_argument("--model", default="world", help="model for the Model & prompt page")
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    with serve(args.runs, args.port) as url:
        shots = shoot(url, args.out, pages(args.model, args.prompt))
    for name, s in shots.items():
        print(f"{s.png}: {s.drawn}/{s.charts} charts drawn" + (f"; errors: {s.errors}" if s.errors else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
