"""``replab app``: open the Streamlit explorer (``app/Home.py``) on a runs directory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from replab.errors import ReplabError, RunDirError

APP_SCRIPT = Path(__file__).resolve().parent.parent / "app" / "Home.py"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="open the explorer app (Streamlit) on a runs directory")
    p.add_argument("--runs", default=os.environ.get("REPLAB_RUNS", "runs"),
                   help="runs root to explore (default: $REPLAB_RUNS or ./runs)")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--headless", action="store_true", help="do not open a browser window")
    p.set_defaults(func=run_app)


def streamlit_command(port: int, headless: bool = True) -> list[str]:
    """The ``python -m streamlit run app/Home.py ...`` command line serving the explorer on ``port``.

    Raises:
        ReplabError: ``app/Home.py`` is not next to the package (replab installed from a wheel
            rather than a source checkout).
    """
    if not APP_SCRIPT.is_file():
        raise ReplabError(
            f"The explorer app is not at {APP_SCRIPT}: `replab app` runs from a source checkout. "
            "Clone the repository and `pip install -e .`, then run `replab app` again."
        )
    return [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT), "--server.port", str(port),
            "--server.headless", "true" if headless else "false", "--browser.gatherUsageStats", "false"]


def app_env(runs: str | os.PathLike) -> dict[str, str]:
    """The environment the app runs in: ``REPLAB_RUNS`` set to ``runs`` (absolute) and the Hugging
    Face hub offline unless the caller set otherwise (the app never downloads)."""
    env = {**os.environ, "REPLAB_RUNS": str(Path(runs).resolve())}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def run_app(args: argparse.Namespace) -> None:
    """Serve the explorer until interrupted; this process becomes the Streamlit server (exec),
    so stopping it stops the server."""
    runs = Path(args.runs)
    if not runs.is_dir():
        raise RunDirError(f"--runs {runs}: no such directory. Pass the runs root that holds your run directories "
                          "(e.g. --runs runs), or create one with `replab demo`.")
    if not any(runs.rglob("run.json")):
        print(f"replab app: {runs} holds no run directories yet; the app will say so until runs are written there "
              "(e.g. by `replab demo`).", file=sys.stderr)
    cmd = streamlit_command(args.port, args.headless)
    print(f"replab app: http://localhost:{args.port} (runs root {Path(args.runs).resolve()})", flush=True)
    os.execve(cmd[0], cmd, app_env(args.runs))
