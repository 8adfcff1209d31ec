"""Hidden states of a relation's prompts: h at the subject's last token, z at the prompt's last token.

Layer index ``l`` of a ``d``-layer model names the residual stream entering block ``l``
(``blocks.l.hook_resid_pre``; 0 = the embedding output) and ``l = d`` the last block's output
(``blocks.{d-1}.hook_resid_post``, before the final norm). Every pass goes through
``replab.models.run_batches``; the subject's last token is found by ``subject_last_index``, the
same code as ``positions="subject_last"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from replab.errors import DataError
from replab.models import jacobian, run_batches, subject_last_index
from replab.models.tokens import encode
from replab.relations.data import Relation, Sample


def layer_hook(model, layer: int) -> str:
    """The residual hook of layer index ``layer`` (0 .. n_layers)."""
    n = model.cfg.n_layers
    if not 0 <= layer <= n:
        raise DataError(f"Layer {layer} is outside 0..{n} for this {n}-layer model (0 = embedding output).")
    return f"blocks.{layer}.hook_resid_pre" if layer < n else f"blocks.{n - 1}.hook_resid_post"


@dataclass(frozen=True)
class Prompts:
    """Few-shot prompts of some samples and where their subjects end.

    Attributes:
        texts: one prompt per sample.
        samples: the samples asked about.
        subject_pos: ``[n]`` token index of each subject's last token.
    """

    texts: list[str]
    samples: list[Sample]
    subject_pos: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def build_prompts(model, relation: Relation, samples: Sequence[Sample], examples: Sequence[Sample] = (),
                  template: str | None = None) -> Prompts:
    """Few-shot prompts: each sample asked after ``examples`` (itself and same-subject examples left out;
    the oldest dropped while the prompt exceeds the model's context).

    Raises:
        DataError: a subject whose tokens cannot be found, naming the file and the sample.
    """
    texts, pos = [], []
    n_ctx = getattr(model.cfg, "n_ctx", None)
    for s in samples:
        shots = tuple(e for e in examples if s.subject not in e.subject and e.subject not in s.subject
                      and s.subject not in e.object)
        text = relation.prompt(s, shots, template)
        while shots and n_ctx and len(encode(model, text)) > n_ctx:  # drop the oldest examples until it fits
            shots = shots[1:]
            text = relation.prompt(s, shots, template)
        try:
            pos.append(subject_last_index(model, text, s.subject))
        except DataError as exc:
            raise DataError(f"{relation.source or relation.name}: sample {s.subject!r} -> {s.object!r}: {exc}") from None
        texts.append(text)
    return Prompts(texts, list(samples), pos)


def object_token(model, obj: str) -> int:
    """The first token of ``" " + obj`` (what the model must predict next)."""
    ids = model.tokenizer.encode(" " + obj, add_special_tokens=False)
    if not ids:
        raise DataError(f"Object {obj!r} tokenises to nothing.")
    return int(ids[0])


def _two_positions(prompts: Prompts) -> Callable[[int, list[int]], list[int]]:
    return lambda i, ids: [prompts.subject_pos[i], len(ids) - 1]


def states(model, prompts: Prompts, subject_hook: str, object_hook: str | None = None, *, logits: bool = False,
           edits: Mapping[str, Callable] | None = None, batch_size: int = 32):
    """``(h [n, d], z [n, d] | None, logits [n, d_vocab] | None)``: h at the subject's last token, z and
    the logits at the last token; ``edits`` (``fn(x_rows, items)``) see rows ``[subject, last]`` per item."""
    hooks = [subject_hook] + ([object_hook] if object_hook else [])
    hs, zs, ls = [], [], []
    for fb in run_batches(model, prompts.texts, hooks, positions=_two_positions(prompts), logits=logits,
                          edits=edits, edit_positions="selected" if edits else None, batch_size=batch_size):
        hs.append(fb.acts[subject_hook][0::2].float().cpu())
        if object_hook:
            zs.append(fb.acts[object_hook][1::2].float().cpu())
        if logits:
            ls.append(fb.logits[1::2].cpu())
    return torch.cat(hs), torch.cat(zs) if zs else None, torch.cat(ls) if ls else None


def jacobians(model, prompts: Prompts, subject_hook: str, object_hook: str):
    """``(J [n, d_z, d_h], h [n, d_h], z [n, d_z])``: ∂z/∂h per prompt.

    ``replab.models.jacobian`` with the subject hook as the leaf: each prompt's few-shot prefix
    before the subject runs once into a KV cache, and only the few tokens from the subject on are
    differentiated, all output dimensions in one batched forward and backward.
    """
    Js, hs, zs = [], [], []
    for text, pos in zip(prompts.texts, prompts.subject_pos):
        J, h, z = jacobian(model, encode(model, text), subject_hook, pos, object_hook, -1)
        Js.append(J.float().cpu())
        hs.append(h.float().cpu())
        zs.append(z.float().cpu())
    return torch.stack(Js), torch.stack(hs), torch.stack(zs)


def decode(model, z: torch.Tensor) -> torch.Tensor:
    """Final norm + unembedding of last-layer states ``z [n, d]`` -> logits ``[n, d_vocab]``."""
    p = next(model.parameters())
    with torch.no_grad():
        return model.unembed(model.ln_final(z.to(p.device, p.dtype)[:, None, :]))[:, 0].float().cpu()
