"""Run kind ``capture``: an activation store is also a run directory (written by ``replab.capture``)."""

from replab.runs import RunKind, metric_summary

KIND = RunKind(
    name="capture", title="Activation stores", page="2_Activations", summary=metric_summary("rows", "tokens", "shards"),
    make="replab capture --model world --prompts world:sentiment --hooks 'blocks.*.hook_resid_post' --positions last "
         "--out runs/sentiment-acts",
)
