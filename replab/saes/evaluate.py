"""SAE evaluation: reconstruction and sparsity on activations, CE/KL with the SAE spliced into the model.

Definitions (see docs/saes.md):
    mse            mean over rows and dimensions of (x - x_hat)^2
    fvu            sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, mean taken per dimension over the data
                   (sparsify / dictionary_learning; NOT SAELens's ``explained_variance``)
    l0             mean number of non-zero latents per row
    dead_fraction  latents that never fire on the data
    dense_fraction latents that fire on more than 10% of rows
    ce_recovered   (CE_zero - CE_sae) / (CE_zero - CE_clean)
    kl_*           KL(clean || spliced), per predicted token
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from replab.errors import DataError
from replab.saes.base import SAE
from replab.saes.data import Rows, is_store, rows

DENSE_FREQUENCY = 0.1


def resolve_rows(sae: SAE, data, hook: str | None) -> Rows:
    """``rows(data, hook)``, defaulting a store's hook to the SAE's ``metadata.hook_name``."""
    if hook is None and is_store(data) and sae.cfg.metadata.get("hook_name") in list(data.hooks):
        hook = sae.cfg.metadata["hook_name"]
    return rows(data, hook, sae.d_in)


@torch.no_grad()
def activation_metrics(sae: SAE, source: Rows, *, batch_size: int = 4096, max_rows: int | None = None) -> dict[str, float]:
    """mse, fvu, l0, dead/dense fractions over the rows of ``source`` (streamed, float64 sums)."""
    n, sq_err = 0, 0.0
    sum_x = torch.zeros(sae.d_in, dtype=torch.float64)
    sum_sq, l0_sum = 0.0, 0
    fired = torch.zeros(sae.d_sae, dtype=torch.long)
    for _, x in source.chunks(batch_size, max_rows):
        acts = sae.encode(x)
        x_hat = sae.decode(acts).to(x.device, torch.float64)
        xd = x.double()
        sq_err += float((x_hat - xd).pow(2).sum())
        sum_x += xd.sum(0).cpu()
        sum_sq += float(xd.pow(2).sum())
        active = acts != 0
        l0_sum += int(active.sum())
        fired += active.sum(0).cpu()
        n += x.shape[0]
    total_var = sum_sq - float(sum_x.pow(2).sum()) / n
    frequency = fired.double() / n
    return {
        "n_rows": n,
        "mse": sq_err / (n * sae.d_in),
        "fvu": sq_err / total_var if total_var > 0 else float("nan"),
        "l0": l0_sum / n,
        "dead_fraction": float((fired == 0).double().mean()),
        "dense_fraction": float((frequency > DENSE_FREQUENCY).double().mean()),
    }


def has_own_prompts(source: Rows | None) -> bool:
    """Whether a store can be scored for CE by itself: it holds its prompts' ``text``, or it was
    captured at every position of its contexts (which ``token_contexts`` then rebuilds)."""
    meta = source.metadata if source is not None else None
    return meta is not None and ("text" in meta.columns or source.store.manifest.get("positions") == "all")


def prompt_texts(prompts, source: Rows | None, max_prompts: int) -> list[str] | list[list[int]]:
    """What to compute CE on: a list, a TextCorpus/PromptSet, the store's ``text`` metadata, or
    (a corpus store captured at every position) the store's own token contexts."""
    from replab.datasets import PromptSet, TextCorpus

    if prompts is None:
        if not has_own_prompts(source):
            raise DataError(
                "CE metrics need prompts: pass prompts=[...] (texts or a TextCorpus); this data has no 'text' metadata."
            )
        meta = source.metadata
        if "text" not in meta.columns:
            return source.store.token_contexts(limit=max_prompts)
        texts = meta.drop_duplicates("prompt_index").sort_values("prompt_index")["text"].astype(str).tolist()
    elif isinstance(prompts, TextCorpus):
        texts = list(prompts.documents)
    elif isinstance(prompts, PromptSet):
        texts = list(prompts.texts)
    elif isinstance(prompts, str):
        texts = [prompts]
    else:
        texts = [str(t) for t in prompts]
    if not texts:
        raise DataError("prompts is empty; pass at least one text to compute CE metrics.")
    return texts[:max_prompts]


@torch.no_grad()
def ce_metrics(sae: SAE, model, hook: str, texts: Sequence[str] | Sequence[Sequence[int]], *,
               batch_size: int = 16) -> dict[str, float]:
    """Next-token CE clean / with the SAE spliced at ``hook`` / with ``hook`` zero-ablated, and KLs.

    ``texts`` are strings or already tokenised rows (token-id lists). Padding is masked out:
    only positions whose next token is real count.
    """
    from replab.models import run_batches

    def through_sae(x: torch.Tensor) -> torch.Tensor:
        return sae(x).to(device=x.device, dtype=x.dtype)

    passes = {"clean": None, "with_sae": {hook: through_sae}, "zero_ablation": {hook: torch.zeros_like}}
    scored = lambda i, ids: range(len(ids) - 1)  # noqa: E731  (positions whose next token is real)
    runs = [run_batches(model, list(texts), positions=scored, logits="logprobs", edits=edits, batch_size=batch_size)
            for edits in passes.values()]
    sums = {"ce_clean": 0.0, "ce_with_sae": 0.0, "ce_zero_ablation": 0.0, "kl_with_sae": 0.0, "kl_zero_ablation": 0.0}
    count = 0
    for batches in zip(*runs):
        logp = {name: fb.logits for name, fb in zip(passes, batches)}
        fb = batches[0]
        targets = fb.tokens[fb.item, fb.pos + 1]
        p_clean = logp["clean"].exp()
        for name, lp in logp.items():
            sums[f"ce_{name}"] += float(-lp.gather(-1, targets[:, None]).sum())
            if name != "clean":
                sums[f"kl_{name}"] += float((p_clean * (logp["clean"] - lp)).sum())
        count += len(targets)
    if count == 0:
        raise DataError("Every prompt is a single token, so there is no next token to score; use longer prompts.")
    out = {k: v / count for k, v in sums.items()}
    gap = out["ce_zero_ablation"] - out["ce_clean"]
    out["ce_recovered"] = (out["ce_zero_ablation"] - out["ce_with_sae"]) / gap if gap != 0 else float("nan")
    kz = out["kl_zero_ablation"]
    out["kl_score"] = (kz - out["kl_with_sae"]) / kz if kz != 0 else float("nan")
    out["n_ce_tokens"] = count
    out["n_prompts"] = len(texts)
    return out


def evaluate(
    sae: SAE,
    data,
    *,
    model=None,
    hook: str | None = None,
    prompts=None,
    batch_size: int = 4096,
    max_rows: int | None = None,
    max_prompts: int = 256,
    prompt_batch_size: int = 16,
) -> dict[str, Any]:
    """Evaluate ``sae`` on activations and, given a model, inside the model's forward pass.

    Args:
        sae: the SAE (takes raw activations).
        data: ``[n, d_in]`` tensor or ActivationStore.
        model: optional hooked model; adds ``ce_clean``, ``ce_with_sae``, ``ce_zero_ablation``,
            ``ce_recovered``, ``kl_with_sae``, ``kl_zero_ablation``, ``kl_score``.
        hook: store hook and the model hook to splice at (default: the SAE's ``metadata.hook_name``).
        prompts: texts, a TextCorpus or a PromptSet for the CE metrics (default: the store's
            ``text`` metadata).
        batch_size: rows per encoding batch.
        max_rows: evaluate on the first ``max_rows`` rows only.
        max_prompts: at most this many prompts for CE.
        prompt_batch_size: prompts per forward pass.

    Returns:
        ``{"n_rows", "mse", "fvu", "l0", "dead_fraction", "dense_fraction", ...CE metrics}``.
    """
    source = resolve_rows(sae, data, hook)
    was_training = sae.training
    sae.eval()
    try:
        metrics: dict[str, Any] = activation_metrics(sae, source, batch_size=batch_size, max_rows=max_rows)
        if model is not None:
            splice_hook = hook or source.hook or sae.cfg.metadata.get("hook_name")
            if not splice_hook:
                raise DataError("CE metrics need the hook to splice the SAE at: pass hook=... or set metadata hook_name.")
            if prompts is None and source.store is not None:  # the store's own texts: its own model
                source.store.check_model(model, "pass the model the store was captured from")
            texts = prompt_texts(prompts, source, max_prompts)
            metrics.update(ce_metrics(sae, model, splice_hook, texts, batch_size=prompt_batch_size))
    finally:
        sae.train(was_training)
    return metrics
