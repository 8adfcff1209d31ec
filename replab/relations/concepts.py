"""Linear relational concepts (Chanin et al. 2023) and the baselines they are compared with.

An LRE from the subject layer to an earlier object layer gives, per object value o, the concept
v_o = W_r⁺(o_act − b) averaged over o's samples and normalised. Baselines give one direction per
object from the subject states alone: the centred mean activation of o's samples, a multinomial
logistic probe (``replab.probes.LogisticProbe``) and ridge regression on one-hot targets. All are
scored the same way on another phrasing of the prompts (``test_template``): as a classifier (the
highest-scoring concept on prompts the model answers) and causally (at the subject's last token,
remove the source concept's component and add the target concept scaled to ‖h‖; success when the
model then outputs the target object).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from replab.errors import DataError
from replab.relations.config import RelationConfig
from replab.relations.data import Relation, Sample
from replab.relations.evaluate import Score, _rate, apply_deltas, edit_pairs, test_set
from replab.relations.lre import LRE, fit_lre
from replab.relations.states import Prompts, build_prompts, layer_hook, states
from replab.protocols import HookedModel

BASELINES = ("mean", "logistic", "ridge")


@dataclass(frozen=True)
class Concepts:
    """Unit concept directions ``V [n_objects, d_h]`` at ``hook``, one per object in ``objects``;
    ``examples`` are the few-shot examples of every prompt they were fitted and are tested on."""

    V: torch.Tensor
    objects: tuple[str, ...]
    hook: str
    method: str
    examples: tuple[Sample, ...] = ()

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """``[n, n_objects]`` concept scores of subject states ``h [n, d_h]``."""
        return h.float() @ self.V.T


def _by_object(samples: tuple[Sample, ...], rows: torch.Tensor) -> tuple[tuple[str, ...], torch.Tensor]:
    objects = tuple(dict.fromkeys(s.object for s in samples))
    means = torch.stack([rows[[i for i, s in enumerate(samples) if s.object == o]].mean(0) for o in objects])
    return objects, means


def _unit(V: torch.Tensor) -> torch.Tensor:
    return V / V.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def test_template(relation: Relation) -> str:
    """The phrasing concepts are tested on: the first held-out template, else another (or the only) template."""
    return (relation.heldout_templates or relation.prompt_templates[1:] or relation.prompt_templates)[0]


def fit_concepts(model: HookedModel, relation: Relation, *, subject_layer: int, object_layer: int, rank: int = 8,
                 method: str = "lrc", n_train: int = RelationConfig.n_train, seed: int = 0) -> Concepts:
    """Concept directions for every object of ``relation``, from its samples in the first template.

    The LRE behind an LRC is fitted on ``split(relation, n_train, seed).train``, which also serve
    as the few-shot examples of every prompt; ``evaluate_concepts`` tests on another phrasing.

    Args:
        method: ``"lrc"`` or a baseline (``"mean"``, ``"logistic"``, ``"ridge"``).
    """
    if method not in ("lrc", *BASELINES):
        raise DataError(f"Unknown concept method {method!r}; use 'lrc' or one of {', '.join(BASELINES)}.")
    lre = fit_lre(model, relation, subject_layer=subject_layer, object_layer=object_layer, n_train=n_train, seed=seed,
                  method="jacobian" if method == "lrc" else "identity")
    samples = relation.samples
    prompts = build_prompts(model, relation, samples, lre.train)
    if method == "lrc":
        _, o, _ = states(model, prompts, lre.subject_hook, lre.object_hook)
        objects, means = _by_object(samples, (o - lre.b) @ lre.inverse(rank).T)
        return Concepts(_unit(means), objects, lre.subject_hook, method, lre.train)
    h, _, _ = states(model, prompts, lre.subject_hook)
    objects = tuple(dict.fromkeys(s.object for s in samples))
    if method == "mean":
        V = _by_object(samples, h - h.mean(0))[1]
    elif method == "logistic":
        from replab.probes import LogisticProbe

        if len(objects) < 3:
            raise DataError(f"Relation {relation.name!r} has {len(objects)} objects; the logistic baseline needs 3 or more.")
        probe = LogisticProbe().fit(h.numpy(), [s.object for s in samples])
        V = torch.as_tensor(probe.directions[[list(probe.classes_).index(o) for o in objects]], dtype=torch.float32)
    else:
        Y = torch.stack([torch.tensor([float(s.object == o) for o in objects]) for s in samples]).double()
        X = (h - h.mean(0)).double()
        lam = X.pow(2).sum() / len(X)  # ridge strength on the scale of the activations
        V = torch.linalg.solve(X.T @ X + lam * torch.eye(X.shape[1], dtype=X.dtype), X.T @ Y).T.float()
    return Concepts(_unit(V), objects, lre.subject_hook, method, lre.train)


def evaluate_concepts(concepts: Concepts, model, relation: Relation) -> dict[str, Score]:
    """``{"classification": ..., "causal": ...}`` on the samples in ``test_template`` the model answers correctly."""
    carrier = LRE(torch.zeros(1, 1), torch.zeros(1), 1.0, 0, 0, concepts.hook, layer_hook(model, model.cfg.n_layers),
                  relation.name, "none", concepts.examples)
    t = test_set(model, relation, carrier, relation.samples, test_template(relation))
    index = {o: i for i, o in enumerate(concepts.objects)}
    obj = torch.tensor([index[s.object] for s in t.prompts.samples])
    ok = t.correct
    cls = _rate(concepts.scores(t.h[ok]).argmax(-1) == obj[ok], len(obj))
    pairs = edit_pairs(t)
    if not pairs:
        return {"classification": cls, "causal": _rate(torch.zeros(0, dtype=torch.bool), len(obj))}
    src, dst = (torch.tensor(x) for x in zip(*pairs))
    h, v_src, v_dst = t.h[src], concepts.V[obj[src]], concepts.V[obj[dst]]
    delta = -(h * v_src).sum(-1, keepdim=True) * v_src + h.norm(dim=-1, keepdim=True) * v_dst
    sub = Prompts([t.prompts.texts[i] for i in src], [t.prompts.samples[i] for i in src],
                  [t.prompts.subject_pos[i] for i in src])
    logits = apply_deltas(model, sub, concepts.hook, delta)
    return {"classification": cls, "causal": _rate(logits.argmax(-1) == t.target[dst], len(obj))}
