"""Causal checks: does the model use the probe's direction?

``ablate`` and ``steer`` are thin wrappers over ``replab.models.ablate_direction`` /
``add_direction`` (the hook plumbing lives there) that also accept a fitted probe.
``causal_effect`` runs a prompt set with and without an intervention and reports how a
behavioural readout moves: the logit difference between two answer tokens at each prompt's
last real token, and the accuracy of the model's own two-way answer. ``causal_check`` does
this for a direction and for random directions of the same norm, the control that says
whether the effect is specific to the direction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch

from replab.errors import DataError
from replab.models.forward import run_batches
from replab.models.interventions import ablate_direction, add_direction
from replab.probes.base import Probe
from replab.protocols import HookedModel

POSITIVE_LABELS = ("positive", 1, True, "1", "true", "True")


def _direction_and_hooks(direction, hooks) -> tuple[np.ndarray, str | Sequence[str]]:
    if isinstance(direction, Probe):
        if hooks is None:
            hooks = direction.hook
        direction = direction.direction
    if hooks is None:
        raise DataError("No hook given; pass hooks=... (or a probe fitted with hook=...).")
    return np.asarray(direction, dtype=np.float32), hooks


def ablate(model: HookedModel, direction, hooks: str | Sequence[str] | None = None, positions=None):
    """Context manager projecting ``direction`` (unit-normed) out of ``hooks``: ``x - (x.d) d``.

    Args:
        model: a hooked model.
        direction: ``[d]`` vector or a fitted probe (its ``direction``; its ``hook`` by default).
        hooks: hook name(s) or globs.
        positions: ``None`` (all), int(s), or a ``[batch]`` tensor, as ``replab.models.intervene``.
    """
    d, hooks = _direction_and_hooks(direction, hooks)
    return ablate_direction(model, d, hooks, positions)


def steer(model: HookedModel, direction, scale: float, hooks: str | Sequence[str] | None = None, positions=None):
    """Context manager adding ``scale * direction`` (as given; a probe's direction is unit) at ``hooks``."""
    d, hooks = _direction_and_hooks(direction, hooks)
    return add_direction(model, d, scale, hooks, positions)


def _single_token(model, text: str) -> int:
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise DataError(f"Answer {text!r} is {len(ids)} tokens for this tokenizer; use single-token answers "
                        "(usually with a leading space, e.g. ' great').")
    unk = getattr(model.tokenizer, "unk_token_id", None)
    if unk is not None and ids[0] == unk:
        raise DataError(f"Answer {text!r} is not in the model's vocabulary (it tokenises to <unk>).")
    return ids[0]


def _answer_plan(model, prompts, answer_tokens, class_answers) -> tuple[np.ndarray, np.ndarray | None]:
    """Per prompt: the token ids ``[n, 2]`` of (A, B) and which of them is correct ``[n]`` (or None)."""
    n = len(prompts)
    if answer_tokens is None:
        answer_tokens = tuple(prompts.meta.get("answer_tokens", (" great", " terrible")))
    if len(answer_tokens) == 2 and all(isinstance(a, str) for a in answer_tokens):
        a, b = answer_tokens
        pair = np.array([[_single_token(model, a), _single_token(model, b)]] * n)
        if pair[0, 0] == pair[0, 1]:
            raise DataError(f"Answers {a!r} and {b!r} are the same token; pick two different answers.")
        if class_answers is not None:
            if prompts.labels is None:
                raise DataError("class_answers needs a prompt set with labels.")
            missing = sorted({str(lab) for lab in prompts.labels if lab not in class_answers})
            if missing:
                raise DataError(f"class_answers has no answer for labels {missing[:5]}.")
            answers = [class_answers[lab] for lab in prompts.labels]
        elif prompts.answers is not None and set(prompts.answers) <= {a, b}:
            answers = list(prompts.answers)
        elif prompts.labels is not None and len(set(prompts.labels)) == 2:
            answers = [a if lab in POSITIVE_LABELS else b for lab in prompts.labels]
            if len(set(answers)) != 2:
                raise DataError(f"Cannot tell which label goes with {a!r}; pass class_answers={{label: answer}}.")
        else:
            return pair, None
        bad = [x for x in answers if x not in (a, b)]
        if bad:
            raise DataError(f"Expected answers must be {a!r} or {b!r}; got {bad[0]!r}.")
        return pair, np.array([0 if x == a else 1 for x in answers])
    if len(answer_tokens) != n:
        raise DataError(f"answer_tokens: give one pair of strings, or one (correct, wrong) pair per prompt "
                        f"({len(answer_tokens)} given for {n} prompts).")
    pair = np.array([[_single_token(model, c), _single_token(model, w)] for c, w in answer_tokens])
    return pair, np.zeros(n, dtype=int)


def _readout(model, texts: Sequence[str], pair: np.ndarray, batch_size: int, desc: str, progress: bool) -> np.ndarray:
    """``logit[A] - logit[B]`` at each prompt's last real token ``[n]``."""
    ids = torch.from_numpy(pair)
    out = [(fb.logits.cpu().gather(1, ids[fb.items.cpu()]) @ torch.tensor([1.0, -1.0]))
           for fb in run_batches(model, list(texts), positions="last", logits=True, batch_size=batch_size,
                                 progress=desc if progress and len(texts) >= 4 * batch_size else False)]
    return torch.cat(out).numpy().astype(np.float64)


def _summary(diff: np.ndarray, correct: np.ndarray | None, labels) -> dict[str, Any]:
    s: dict[str, Any] = {"logit_diff": float(diff.mean())}
    if labels is not None:
        lab = np.asarray([str(x) for x in labels])
        s["logit_diff_by_class"] = {str(c): float(diff[lab == c].mean()) for c in sorted(set(lab))}
    if correct is not None:
        signed = np.where(correct == 0, diff, -diff)  # correct minus wrong answer
        s["correct_logit_diff"] = float(signed.mean())
        s["accuracy"] = float((signed > 0).mean())
    return s


def _delta(clean: dict, edited: dict) -> dict[str, Any]:
    d = {k: edited[k] - clean[k] for k in ("logit_diff", "correct_logit_diff", "accuracy") if k in clean}
    if "logit_diff_by_class" in clean:
        by_class = edited["logit_diff_by_class"]
        d["logit_diff_by_class"] = {c: by_class[c] - v for c, v in clean["logit_diff_by_class"].items()}
    if "accuracy" in clean and clean["accuracy"] > 0.5:
        # Tigges et al.: share of the above-chance accuracy the intervention removes
        d["above_chance_accuracy_removed"] = (clean["accuracy"] - edited["accuracy"]) / (clean["accuracy"] - 0.5)
    return d


def _effects(model, prompts, interventions: Sequence[Callable[[], AbstractContextManager]], answer_tokens,
             class_answers, batch_size: int, progress: bool, names: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One clean pass, then one pass inside each intervention (``names``: their progress-bar labels)."""
    pair, correct = _answer_plan(model, prompts, answer_tokens, class_answers)
    texts = list(prompts.texts)
    clean = _summary(_readout(model, texts, pair, batch_size, "clean", progress), correct, prompts.labels)
    out = []
    for i, make in enumerate(interventions):
        with make():
            desc = f"intervened ({names[i]})" if i < len(names) else "intervened"
            edited = _summary(_readout(model, texts, pair, batch_size, desc, progress), correct, prompts.labels)
        out.append({"n": len(texts), "clean": clean, "intervened": edited, "delta": _delta(clean, edited)})
    return out


def causal_effect(model: HookedModel, prompts, intervention: Callable[[], AbstractContextManager], *,
                  answer_tokens: Sequence | None = None, class_answers: dict | None = None,
                  batch_size: int = 32, progress: bool = True) -> dict[str, Any]:
    """Behaviour with and without an intervention.

    Args:
        model: a hooked model.
        prompts: a ``PromptSet``.
        intervention: a zero-argument factory returning a context manager, e.g.
            ``lambda: ablate(model, probe)``.
        answer_tokens: two answer strings for every prompt (default: ``prompts.meta
            ["answer_tokens"]``, else ``(" great", " terrible")``), or one ``(correct, wrong)``
            pair per prompt. With a shared pair the correct answer comes from ``class_answers``
            ({label: answer}), else ``prompts.answers``, else the convention that the first
            answer goes with the positive label (``"positive"``, 1, True).
        class_answers: label -> expected answer string.
        batch_size: prompts per forward pass.
        progress: show a progress bar for long runs.

    Returns:
        ``{"clean": s, "intervened": s, "delta": intervened - clean, "n": n}`` where ``s`` has
        ``logit_diff`` (mean of logit[A] - logit[B]), ``logit_diff_by_class`` and, when the
        correct answers are known, ``correct_logit_diff`` and ``accuracy`` (argmax over the
        two answers vs the expected one); ``delta`` adds ``above_chance_accuracy_removed``.
    """
    return _effects(model, prompts, [intervention], answer_tokens, class_answers, batch_size, progress)[0]


def random_directions(d: int, norm: float, n: int, seed: int = 0) -> np.ndarray:
    """``[n, d]`` Gaussian directions rescaled to ``norm`` (seeded)."""
    v = np.random.default_rng(seed).standard_normal((n, d))
    return (v / np.linalg.norm(v, axis=1, keepdims=True) * norm).astype(np.float32)


def causal_check(model: HookedModel, prompts, direction, hooks: str | Sequence[str] | None = None, *, mode: str = "ablate",
                 scale: float = 1.0, positions=None, n_random: int = 3, seed: int = 0,
                 answer_tokens: Sequence | None = None, class_answers: dict | None = None,
                 batch_size: int = 32, progress: bool = True) -> dict[str, Any]:
    """The effect of ablating (or steering along) a direction next to random directions of the same norm.

    Args:
        model, prompts, answer_tokens, class_answers, batch_size: as ``causal_effect``.
        direction: ``[d]`` vector or a fitted probe (hook taken from it by default).
        hooks: where to intervene.
        mode: ``"ablate"`` (project out) or ``"steer"`` (add ``scale * direction``).
        positions: as ``ablate``/``steer``.
        n_random: random control directions.
        seed: seeds the random directions.

    Returns:
        ``{"direction": effect, "random": [effects], "random_mean_delta": {...}, "config": {...}}``
        with each effect as ``causal_effect`` returns it.
    """
    if mode not in ("ablate", "steer"):
        raise DataError(f"mode must be 'ablate' or 'steer', got {mode!r}.")
    d, hooks = _direction_and_hooks(direction, hooks)

    def factory(vec: np.ndarray) -> Callable[[], AbstractContextManager]:
        if mode == "ablate":
            return lambda: ablate(model, vec, hooks, positions)
        return lambda: steer(model, vec, scale, hooks, positions)

    vectors = random_directions(d.shape[0], float(np.linalg.norm(d)), n_random, seed)
    names = ["direction", *(f"random {i + 1}/{n_random}" for i in range(n_random))]
    main, *randoms = _effects(model, prompts, [factory(d), *map(factory, vectors)], answer_tokens, class_answers,
                              batch_size, progress, names)
    keys = [k for k, v in main["delta"].items() if isinstance(v, float)]
    mean_delta = {k: float(np.mean([r["delta"][k] for r in randoms]))
                  for k in keys if randoms and all(k in r["delta"] for r in randoms)}
    return {"direction": main, "random": randoms, "random_mean_delta": mean_delta,
            "config": {"mode": mode, "scale": scale if mode == "steer" else None, "hooks": hooks,
                       "positions": positions if positions is None or isinstance(positions, (int, list)) else "custom",
                       "n_random": n_random, "seed": seed, "direction_norm": float(np.linalg.norm(d))}}
