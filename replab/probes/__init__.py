"""Linear probes with honest baselines and causal checks.

::

    from replab.probes import LogisticProbe, sweep, ablate, causal_check
    res = sweep(store, probes=["logistic", "meandiff"], cv=5)    # table, figures, best probe per hook
    res.table; res.figure.show()
    probe = res.probes["blocks.3.hook_resid_post"]                # fitted on all rows; .direction is unit
    with ablate(model, probe):                                    # project its direction out at its hook
        logits = model("The movie was wonderful. It was")
"""

from replab.probes.base import PROBES, Probe, ProbeNotFittedError, make_probe, probe_types
from replab.probes.config import SweepConfig
from replab.probes.baselines import control_labels, shuffled_labels
from replab.probes.causal import ablate, causal_check, causal_effect, random_directions, steer
from replab.probes.runkind import probe_store
from replab.probes.figures import probe_figures
from replab.probes.io import load_probe, save_probe
from replab.probes.logistic import LogisticProbe, fit_logistic
from replab.probes.mdl import VOITA_FRACTIONS, online_codelength
from replab.probes.meandiff import MeanDiffProbe
from replab.probes.ridge import RidgeProbe
from replab.probes.sweep import SweepResult, sweep, top_row

load = load_probe

__all__ = [
    "Probe",
    "SweepConfig",
    "LogisticProbe",
    "RidgeProbe",
    "MeanDiffProbe",
    "PROBES",
    "make_probe",
    "probe_types",
    "ProbeNotFittedError",
    "fit_logistic",
    "sweep",
    "top_row",
    "probe_store",
    "SweepResult",
    "control_labels",
    "shuffled_labels",
    "online_codelength",
    "VOITA_FRACTIONS",
    "probe_figures",
    "ablate",
    "steer",
    "causal_effect",
    "causal_check",
    "random_directions",
    "save_probe",
    "load_probe",
    "load",
]
