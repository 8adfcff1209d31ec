"""Run kind ``capture``: an activation store is also a run directory (written by ``replab.capture``).

The store's one completeness flag is its manifest's ``complete`` (set when the last shard commits);
``run.json``'s ``status`` is not consulted for capture directories, so the two can never disagree.
"""

from pathlib import Path
from typing import Any

from replab.runs import RunKind, metric_summary


def store_status(path: Path, info: dict[str, Any]) -> str:
    """``"complete"`` / ``"partial"`` from the store manifest (``"corrupt"`` when it cannot be read)."""
    from replab.activations import shards
    from replab.errors import StoreError

    try:
        return "complete" if shards.read_manifest(path)["complete"] else "partial"
    except StoreError:
        return "corrupt"


KIND = RunKind(
    name="capture", title="Activation stores", page="2_Activations", summary=metric_summary("rows", "tokens", "shards"),
    make="replab capture --model world --prompts world:sentiment --hooks 'blocks.*.hook_resid_post' --positions last "
         "--out runs/sentiment-acts",
    status=store_status,
)
