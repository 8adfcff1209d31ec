"""A single LRE edit for inspection: the model's top-k next tokens on a subject's prompt before and after
steering it to a target subject's object (Δh = W_r⁺(z′ − z) at the subject's last token)."""

from __future__ import annotations

import torch

from replab.relations.data import Relation, Sample
from replab.relations.evaluate import apply_deltas
from replab.relations.lre import LRE
from replab.relations.states import build_prompts, states


def edit_topk(model, lre: LRE, relation: Relation, subject: str, target_subject: str, *, rank: int | None = None,
              k: int = 5) -> dict[str, list[tuple[str, float]]]:
    """``{"prompt": [text], "before": [(token, p)], "after": [(token, p)]}`` for one edit."""
    prompts = build_prompts(model, relation, [Sample(subject, "?"), Sample(target_subject, "?")], lre.train)
    _, z, logits = states(model, prompts, lre.subject_hook, lre.object_hook, logits=True)
    delta = torch.zeros(2, lre.W.shape[1])
    delta[0] = (z[1] - z[0]) @ lre.inverse(rank).T
    after = apply_deltas(model, prompts, lre.subject_hook, delta)

    def top(row: torch.Tensor) -> list[tuple[str, float]]:
        p = row.softmax(-1).topk(k)
        return [(model.tokenizer.decode([int(t)]), float(v)) for v, t in zip(p.values, p.indices)]

    return {"prompt": [prompts.texts[0]], "before": top(logits[0]), "after": top(after[0])}
