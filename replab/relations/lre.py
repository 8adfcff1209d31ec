"""Linear relational embeddings (Hernandez et al. 2023): z ≈ β·W h + b from subject to object state.

``method="jacobian"``: W = ∂z/∂h and b = z − W h on each training prompt (each prompt states the
other training samples as few-shot examples), averaged. ``"regression"``: least squares of z on h
over the training samples. ``"identity"`` (z = h) and ``"translation"`` (z = h + mean(z − h)) are
the paper's baselines.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from replab.errors import DataError
from replab.relations.config import METHODS, RelationConfig
from replab.fileio import read_tensor_metadata, read_tensors, require, write_tensors
from replab.relations.data import Relation, Sample
from replab.relations.states import build_prompts, decode, jacobians, layer_hook, states
from replab.protocols import HookedModel



@dataclass(frozen=True)
class Split:
    """Training samples (the few-shot examples too) and held-out test samples."""

    train: tuple[Sample, ...]
    test: tuple[Sample, ...]


def split(relation: Relation, n_train: int = RelationConfig.n_train, seed: int = 0) -> Split:
    """A seeded split: ``n_train`` training samples, the rest for testing."""
    if n_train < 1 or n_train >= len(relation.samples):
        raise DataError(f"{relation.source or relation.name}: n_train={n_train} must be in 1..{len(relation.samples) - 1} "
                        f"(the relation has {len(relation.samples)} samples).")
    order = list(range(len(relation.samples)))
    random.Random(seed).shuffle(order)
    return Split(tuple(relation.samples[i] for i in order[:n_train]), tuple(relation.samples[i] for i in order[n_train:]))


@dataclass(frozen=True)
class LRE:
    """A fitted linear relational embedding.

    Attributes:
        W: ``[d_z, d_h]``. b: ``[d_z]``. beta: scale of W h at prediction time.
        subject_layer, object_layer: layer indices (``replab.relations.layer_hook``); hooks likewise.
        relation, method: what was fitted and how. train: the training samples (few-shot examples).
    """

    W: torch.Tensor
    b: torch.Tensor
    beta: float
    subject_layer: int
    object_layer: int
    subject_hook: str
    object_hook: str
    relation: str
    method: str
    train: tuple[Sample, ...] = ()

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """Predicted object state ``[n, d_z]`` from subject states ``h [n, d_h]``."""
        return self.beta * h.float() @ self.W.T + self.b

    def with_beta(self, beta: float) -> "LRE":
        return LRE(self.W, self.b, beta, self.subject_layer, self.object_layer, self.subject_hook, self.object_hook,
                   self.relation, self.method, self.train)

    def inverse(self, rank: int | None = None) -> torch.Tensor:
        """The rank-``rank`` pseudo-inverse of W from its SVD, ``[d_h, d_z]`` (all singular values by default)."""
        U, S, Vh = torch.linalg.svd(self.W.double(), full_matrices=False)
        r = S.numel() if rank is None else max(0, min(rank, S.numel()))
        return (Vh[:r].T @ torch.diag(1.0 / S[:r]) @ U[:, :r].T).float()

    def predict(self, model, relation: Relation, subjects, k: int = 1) -> list[list[str]]:
        """Top-``k`` decoded object tokens per subject, from the subject state in a few-shot prompt."""
        samples = [Sample(s, "?") if isinstance(s, str) else s for s in subjects]
        prompts = build_prompts(model, relation, samples, self.train)
        h, _, _ = states(model, prompts, self.subject_hook)
        top = decode(model, self(h)).topk(k, dim=-1).indices
        return [[model.tokenizer.decode([t]) for t in row] for row in top.tolist()]

    def save(self, path: str | os.PathLike) -> Path:
        """``lre.safetensors`` with W, b and the settings as metadata."""
        p = Path(path)
        meta = {"beta": str(self.beta), "subject_layer": str(self.subject_layer), "object_layer": str(self.object_layer),
                "subject_hook": self.subject_hook, "object_hook": self.object_hook, "relation": self.relation,
                "method": self.method, "train": json.dumps([[s.subject, s.object, list(s.fields)] for s in self.train])}
        write_tensors(p, {"W": self.W, "b": self.b}, metadata=meta)
        return p


def load_lre(path: str | os.PathLike) -> LRE:
    """Read an LRE written by ``LRE.save``."""
    p = Path(path)
    fix = "save the LRE again with lre.save(path) or `replab relations fit`"
    tensors = read_tensors(p, "LRE file", keys=("W", "b"), fix=fix, error=DataError)
    m = read_tensor_metadata(p, "LRE file", fix=fix, error=DataError)
    for key in ("beta", "subject_layer", "object_layer", "subject_hook", "object_hook", "relation", "method"):
        require(m, key, p, fix=fix, error=DataError)
    W, b = tensors["W"], tensors["b"]
    train = tuple(Sample(s, o, tuple(tuple(x) for x in fields)) for s, o, fields in json.loads(m.get("train", "[]")))
    return LRE(W, b, float(m["beta"]), int(m["subject_layer"]), int(m["object_layer"]), m["subject_hook"],
               m["object_hook"], m["relation"], m["method"], train)


def fit_lre(model: HookedModel, relation: Relation, *, subject_layer: int, object_layer: int | None = None,
            n_train: int = RelationConfig.n_train, beta: float = 1.0, method: str = "jacobian", seed: int = 0,
            train: tuple[Sample, ...] | None = None, batch_size: int = 8) -> LRE:
    """Fit an LRE of ``relation`` from ``subject_layer`` to ``object_layer`` (default: the last).

    Args:
        train: training samples (default: ``split(relation, n_train, seed).train``).
    """
    if method not in METHODS:
        raise DataError(f"Unknown LRE method {method!r}; use one of {', '.join(METHODS)}.")
    object_layer = model.cfg.n_layers if object_layer is None else object_layer
    sh, oh = layer_hook(model, subject_layer), layer_hook(model, object_layer)
    train = tuple(train) if train is not None else split(relation, n_train, seed).train
    prompts = build_prompts(model, relation, train, train)
    if method == "jacobian":
        J, h, z = jacobians(model, prompts, sh, oh)
        W = J.mean(0)
        b = (z - torch.einsum("nij,nj->ni", J, h)).mean(0)
    else:
        h, z, _ = states(model, prompts, sh, oh, batch_size=batch_size)
        if method == "regression":
            X = torch.cat([h, torch.ones(len(h), 1)], 1).double()
            sol = torch.linalg.lstsq(X, z.double(), driver="gelsd").solution  # min-norm when n < d
            W, b = sol[:-1].T.float(), sol[-1].float()
        else:
            W = torch.eye(z.shape[1], h.shape[1])
            b = (z - h).mean(0) if method == "translation" else torch.zeros(z.shape[1])
    return LRE(W.contiguous(), b.contiguous(), float(beta), subject_layer, object_layer, sh, oh, relation.name, method, train)
