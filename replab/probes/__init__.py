"""Linear probes with honest baselines and causal checks.

::

    from replab.probes import LogisticProbe, sweep, ablate, causal_check
    res = sweep(store, probes=["logistic", "meandiff"], cv=5)    # table, figures, best probe per hook
    res.table; res.figure.show()
    probe = res.probes["blocks.3.hook_resid_post"]                # fitted on all rows; .direction is unit
    with ablate(model, probe):                                    # project its direction out at its hook
        logits = model("The movie was wonderful. It was")
"""

from replab.lazy import lazy_exports

_EXPORTS = {
    "Probe": "replab.probes.base",
    "SweepConfig": "replab.probes.config",
    "LogisticProbe": "replab.probes.logistic",
    "RidgeProbe": "replab.probes.ridge",
    "MeanDiffProbe": "replab.probes.meandiff",
    "PROBES": "replab.probes.base",
    "make_probe": "replab.probes.base",
    "probe_types": "replab.probes.base",
    "ProbeNotFittedError": "replab.probes.base",
    "fit_logistic": "replab.probes.logistic",
    "sweep": "replab.probes.sweep",
    "top_row": "replab.probes.sweep",
    "probe_store": "replab.probes.runkind",
    "SweepResult": "replab.probes.sweep",
    "control_labels": "replab.probes.baselines",
    "shuffled_labels": "replab.probes.baselines",
    "online_codelength": "replab.probes.mdl",
    "VOITA_FRACTIONS": "replab.probes.mdl",
    "probe_figures": "replab.probes.figures",
    "ablate": "replab.probes.causal",
    "steer": "replab.probes.causal",
    "causal_effect": "replab.probes.causal",
    "causal_check": "replab.probes.causal",
    "random_directions": "replab.probes.causal",
    "save_probe": "replab.probes.io",
    "load_probe": "replab.probes.io",
    "load": "replab.probes.io:load_probe",
}
__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
