"""Faithfulness and causality of an LRE, and sweeps over subject layer, β and rank.

Faithfulness: recall@k of the LRE's decoded object over test samples the model itself answers
(top-1) correctly. Causality: for a test pair (s, o) and another test sample (s', o'), add
Δh = W_r⁺(z′ − z) at s's last token (z, z′ the model's object states of the two prompts, W_r⁺ the
rank-r pseudo-inverse); success when the model then predicts o′.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from replab.relations.config import RelationConfig
from replab.relations.data import Relation, Sample
from replab.relations.lre import LRE, Split, fit_lre, split
from replab.relations.states import Prompts, build_prompts, decode, object_token, states
from replab.protocols import HookedModel


@dataclass(frozen=True)
class Score:
    """A rate and what it is over: ``value = hits / n``; ``n_test`` test samples, ``n`` of them counted."""

    value: float
    hits: int
    n: int
    n_test: int

    def as_dict(self) -> dict:
        return asdict(self)


def _rate(hits: torch.Tensor, n_test: int) -> Score:
    n = int(hits.numel())
    return Score(float(hits.float().mean()) if n else float("nan"), int(hits.sum()), n, n_test)


@dataclass(frozen=True)
class TestSet:
    """Test prompts with the model's own states and answers, computed once per (relation, layer, split)."""

    prompts: Prompts
    h: torch.Tensor        # [n, d_h] subject states
    z: torch.Tensor        # [n, d_z] object states
    target: torch.Tensor   # [n] first token of each true object
    correct: torch.Tensor  # [n] bool: the model's top-1 is the object


def test_set(model, relation: Relation, lre: LRE, samples: tuple[Sample, ...] | None = None,
             template: str | None = None) -> TestSet:
    """The held-out samples (default: those not in ``lre.train``) prompted with the training samples as examples."""
    train = set(lre.train)
    samples = tuple(s for s in relation.samples if s not in train) if samples is None else samples
    prompts = build_prompts(model, relation, samples, lre.train, template)
    h, z, logits = states(model, prompts, lre.subject_hook, lre.object_hook, logits=True)
    target = torch.tensor([object_token(model, s.object) for s in samples])
    return TestSet(prompts, h, z, target, logits.argmax(-1) == target)


def faithfulness(lre: LRE, model: HookedModel, relation: Relation, *, k: int = 1, tests: TestSet | None = None) -> Score:
    """Recall@k of the LRE's decoded object over test samples the model answers correctly."""
    t = tests or test_set(model, relation, lre)
    top = decode(model, lre(t.h[t.correct])).topk(k, dim=-1).indices
    return _rate((top == t.target[t.correct, None]).any(-1), len(t.target))


def edit_pairs(t: TestSet) -> list[tuple[int, int]]:
    """(source, target) test indices: each correctly answered sample edited towards the next one with another object."""
    ok = [i for i in range(len(t.target)) if t.correct[i]]
    pairs = []
    for a, i in enumerate(ok):
        j = next((ok[(a + d) % len(ok)] for d in range(1, len(ok)) if t.target[ok[(a + d) % len(ok)]] != t.target[i]), None)
        if j is not None:
            pairs.append((i, j))
    return pairs


def apply_deltas(model, prompts: Prompts, hook: str, delta: torch.Tensor) -> torch.Tensor:
    """Logits ``[n, d_vocab]`` at the last token with ``delta [n, d]`` added at each subject's last token."""
    delta = delta.to(next(model.parameters()).device)

    def edit(x_rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        out = x_rows.clone()
        out[0::2] = x_rows[0::2] + delta[items[0::2]].to(x_rows.dtype)  # rows are [subject, last] per item
        return out

    return states(model, prompts, hook, logits=True, edits={hook: edit})[2]


def causality(lre: LRE, model: HookedModel, relation: Relation, *, rank: int | None = None, tests: TestSet | None = None) -> Score:
    """Rate at which Δh = W_r⁺(z′ − z) at the subject's last token makes the model output the target object."""
    t = tests or test_set(model, relation, lre)
    pairs = edit_pairs(t)
    if not pairs:
        return _rate(torch.zeros(0, dtype=torch.bool), len(t.target))
    src, dst = (torch.tensor(x) for x in zip(*pairs))
    delta = (t.z[dst] - t.z[src]) @ lre.inverse(rank).T
    sub = Prompts([t.prompts.texts[i] for i in src], [t.prompts.samples[i] for i in src],
                  [t.prompts.subject_pos[i] for i in src])
    logits = apply_deltas(model, sub, lre.subject_hook, delta)
    return _rate(logits.argmax(-1) == t.target[dst], len(t.target))


def sweep(model: HookedModel, relation: Relation, *, layers=None, betas=(0.5, 1, 2, 3, 5), ranks=None,
          n_train: int = RelationConfig.n_train, seed: int = 0, method: str = "jacobian",
          progress: bool = True) -> list[dict]:
    """Faithfulness per (layer, β) and causality per (layer, rank): rows for one table.

    Rows: ``{"layer", "beta", "rank", "faithfulness", "causality", "n", "n_test"}`` (``rank``
    None / ``beta`` None where the row is about the other knob).
    """
    layers = range(model.cfg.n_layers + 1) if layers is None else layers
    d = model.cfg.d_model
    ranks = ranks if ranks is not None else sorted({0, *(2 ** i for i in range(d.bit_length())), d})
    sp: Split = split(relation, n_train, seed)
    rows = []
    for layer in tqdm(list(layers), desc=f"sweep {relation.name}", disable=not progress):
        lre = fit_lre(model, relation, subject_layer=layer, method=method, train=sp.train)
        tests = test_set(model, relation, lre, sp.test)
        for beta in betas:
            f = faithfulness(lre.with_beta(beta), model, relation, tests=tests)
            rows.append({"layer": layer, "beta": beta, "rank": None, "faithfulness": f.value, "causality": None,
                         "n": f.n, "n_test": f.n_test})
        for r in ranks:
            c = causality(lre, model, relation, rank=r, tests=tests)
            rows.append({"layer": layer, "beta": None, "rank": r, "faithfulness": None, "causality": c.value,
                         "n": c.n, "n_test": c.n_test})
    return rows
