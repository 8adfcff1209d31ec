"""``run_batches``: the one forward pass every method runs through.

It iterates a prompt set, a corpus or token ids in right-padded batches and yields, per batch,
the requested hooks' activations at the requested positions, optionally the logits (or
log-probs) there, with edits applied during the forward and, for Jacobians and attribution,
one hook's activation turned into a leaf that requires grad. When no logits are needed the
forward stops right after the deepest requested hook, so no layer runs for nothing.

Capture, the probe causal checks, the world evaluation, SAE CE/KL evaluation, the lenses and
the linear-relation estimators all read the model through it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from replab.errors import DataError, StoreError
from replab.models.hooks import resolve_hooks
from replab.models.interventions import Edit, intervene
from replab.models.positions import PositionFn, Positions
from replab.models.sources import Data, Source, as_source
from replab.protocols import HookedModel

Take = Callable[[str, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
RowEdit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOGIT_MODES = (False, True, "logits", "logprobs")


@dataclass(frozen=True)
class ForwardBatch:
    """One batch of a forward pass.

    Attributes:
        start: absolute index of the batch's first item.
        tokens: ``[batch, seq]`` right-padded token ids, on the model's device.
        lengths: ``[batch]`` real tokens per row.
        item: ``[rows]`` batch row of each selected position.
        pos: ``[rows]`` position of each selected row.
        acts: hook -> ``[rows, *rest]`` activations at the selected rows (``rest`` is the hook's
            trailing shape, e.g. ``[d_model]``; the bridge gives ``attn.hook_z`` as ``[n_heads * d_head]``).
        logits: ``[rows, d_vocab]`` float32 logits or log-probs, when asked for.
        leaf: with ``grad_at``: that hook's full activation ``[batch, seq, ...]``, a leaf that
            requires grad; everything downstream of it is differentiable with respect to it.
    """

    start: int
    tokens: torch.Tensor
    lengths: torch.Tensor
    item: torch.Tensor
    pos: torch.Tensor
    acts: dict[str, torch.Tensor]
    logits: torch.Tensor | None = None
    leaf: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def items(self) -> torch.Tensor:
        """``[rows]`` absolute item index of each selected row."""
        return self.item + self.start

    @property
    def attention_mask(self) -> torch.Tensor:
        """``[batch, seq]`` 1 for real tokens, 0 for padding."""
        seq = self.tokens.shape[1]
        return (torch.arange(seq, device=self.lengths.device)[None, :] < self.lengths[:, None]).long()


class _Stop(Exception):
    """Raised by the deepest requested hook when nothing after it is needed."""


def take_rows(hook: str, output: torch.Tensor, item: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The default ``take``: ``output[item, pos]``, ``[rows, *rest]``."""
    return output[item, pos]


class _Taps:
    """The forward hooks of one pass: the ``grad_at`` leaf, then the readers of each requested hook."""

    def __init__(self, model, hooks: list[str], grad_at: str | None, take: Take, stop: bool):
        self.model, self.hooks, self.grad_at, self.take, self.stop = model, hooks, grad_at, take, stop
        self.out: dict[str, torch.Tensor] = {}
        self.leaf: torch.Tensor | None = None
        self.select: tuple[torch.Tensor, torch.Tensor] = (torch.empty(0), torch.empty(0))
        self.shape: tuple[int, int] = (0, 0)
        self._handles: list = []

    def __enter__(self) -> "_Taps":
        hook_dict = self.model.hook_dict
        if self.grad_at is not None:
            self._handles.append(hook_dict[self.grad_at].register_forward_hook(self._make_leaf))
        self._handles += [hook_dict[h].register_forward_hook(partial(self._read, h)) for h in self.hooks]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _check(self, name: str, output: torch.Tensor) -> None:
        if output.ndim < 3 or tuple(output.shape[:2]) != self.shape:
            raise DataError(
                f"Hook {name} has shape {tuple(output.shape)}, not [batch, position, ...] for tokens of shape "
                f"{self.shape}; only per-token hooks can be read at positions "
                "(e.g. attn.hook_z rather than attn.hook_pattern)."
            )

    def _make_leaf(self, module, inputs, output: torch.Tensor) -> torch.Tensor:
        self._check(self.grad_at, output)
        self.leaf = output.detach().requires_grad_(True)
        return self.leaf

    def _read(self, name: str, module, inputs, output: torch.Tensor) -> None:
        self._check(name, output)
        self.out[name] = self.take(name, output, *self.select)
        if self.stop and len(self.out) == len(self.hooks):
            raise _Stop

    def run(self, tokens: torch.Tensor, mask: torch.Tensor | None, item: torch.Tensor, pos: torch.Tensor, **kwargs):
        """Forward ``tokens`` (``kwargs`` go to the model, e.g. a KV cache); the model's output logits
        ``[batch, seq, d_vocab]`` or ``None`` when stopped early."""
        self.out, self.leaf, self.shape, self.select = {}, None, tuple(tokens.shape), (item, pos)
        try:
            logits = self.model(tokens, attention_mask=mask, **kwargs)
        except _Stop:
            logits = None
        missing = [h for h in self.hooks if h not in self.out]
        if missing:
            raise StoreError(f"Hooks {missing} did not fire during the forward pass; they cannot be read.")
        return logits


def _row_edit(fn: RowEdit, item: torch.Tensor, pos: torch.Tensor, items: torch.Tensor) -> Edit:
    """An ``intervene`` edit applying ``fn(x[item, pos], items)`` at exactly the selected rows."""

    def edit(x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        out[item, pos] = fn(x[item, pos], items).to(x.dtype)
        return out

    return edit


def _edits(model, edits: Mapping[str, Edit | RowEdit] | None, edit_positions, item, pos, items):
    """The context manager applying ``edits`` to one batch (a no-op without edits)."""
    if not edits:
        return contextlib.nullcontext()
    if edit_positions == "selected":
        return intervene(model, {h: _row_edit(fn, item, pos, items) for h, fn in edits.items()})
    return intervene(model, edits, edit_positions)


def run_batches(
    model: HookedModel,
    data: Data | Source,
    hooks: str | Sequence[str] = (),
    *,
    positions: str | PositionFn | Positions = "all",
    logits: bool | str = False,
    edits: Mapping[str, Edit | RowEdit] | None = None,
    edit_positions=None,
    grad_at: str | None = None,
    take: Take = take_rows,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    context: int | None = None,
    max_tokens: int | None = None,
    start: int = 0,
    progress: bool | str = False,
) -> Iterator[ForwardBatch]:
    """Run ``model`` over ``data`` in batches and yield what was asked for at the chosen positions.

    Args:
        model: a hooked model from ``replab.load_model``.
        data: a ``PromptSet``; a ``TextCorpus`` (packed into contexts of ``context`` tokens, each
            starting with BOS); a ``replab.datasets.load`` spec or path; a list of texts; token
            ids as a ``[n, seq]`` tensor or a list of id lists.
        hooks: hook names or globs to read (``replab.hook_names``).
        positions: ``"all"`` (every real token, never padding), ``"last"``, ``"subject_last"``
            (a prompt set with subjects) or ``fn(item_index, token_ids) -> positions``.
        logits: ``False``; ``True``/``"logits"`` or ``"logprobs"``: the model's output at the
            selected positions, ``[rows, d_vocab]`` float32.
        edits: hook (or glob) -> edit applied during the forward (``replab.models.intervene``).
        edit_positions: where edits apply: ``None`` (every position; ``fn(x) -> x``), ints or a
            ``[batch]`` tensor as ``intervene``; ``"selected"``: ``fn(x_rows, items) -> x_rows``
            at exactly the selected rows, with their absolute item indices (per-item edits).
        grad_at: a hook whose activation becomes a leaf requiring grad (``ForwardBatch.leaf``);
            without it the pass runs under ``torch.no_grad``.
        take: ``fn(hook, output, item, pos)`` -> what ``acts[hook]`` holds (default
            ``output[item, pos]``); the fused capture kernel plugs in here.
        batch_size: items per forward pass.
        device: where the tokens go (default: the model's device).
        context, max_tokens: corpus packing.
        start: first item (a resumed capture starts where it stopped).
        progress: ``True`` or a description: a progress bar in tokens per second.

    Yields:
        One ``ForwardBatch`` per batch, in item order.

    Raises:
        HookNameError: a hook matches nothing. DataError: positions the data cannot supply, a
            hook that is not per-token, bad options.
    """
    if logits not in LOGIT_MODES:
        raise DataError(f"logits must be False, True, 'logits' or 'logprobs'; got {logits!r}.")
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}.")
    if isinstance(edit_positions, str) and edit_positions != "selected":
        raise DataError(f"edit_positions must be None, 'selected', ints or a [batch] tensor; got {edit_positions!r}.")
    source = as_source(data, model, context=context, max_tokens=max_tokens)
    spec = positions if isinstance(positions, Positions) else Positions.parse(positions)
    spec.check(source)
    names = resolve_hooks(model, hooks) if hooks else []
    grad_name = resolve_hooks(model, grad_at)[0] if grad_at is not None else None
    device = torch.device(device) if device is not None else next(model.parameters()).device
    taps = _Taps(model, names, grad_name, take, stop=not logits and bool(names))
    bar = tqdm(total=source.expected_tokens(model), unit="tok", unit_scale=True, leave=False,
               desc=progress if isinstance(progress, str) else "forward", disable=not progress)
    grad = torch.enable_grad() if grad_name is not None else torch.no_grad()
    with bar, taps:
        for batch in source.batches(model, start, batch_size):
            item, pos = spec.select(model, source, batch)
            tokens = batch.tokens.tokens.to(device)
            lengths = batch.tokens.lengths.to(device)
            item, pos = item.to(device), pos.to(device)
            mask = batch.tokens.attention_mask.to(device)
            with grad, _edits(model, edits, edit_positions, item, pos, item + batch.start):
                out = taps.run(tokens, mask, item, pos)
                selected = None
                if logits:
                    selected = out[item, pos].float()
                    if logits == "logprobs":
                        selected = F.log_softmax(selected, dim=-1)
            bar.update(int(batch.tokens.lengths.sum()))
            yield ForwardBatch(batch.start, tokens, lengths, item, pos, taps.out, selected, taps.leaf)


def hook_widths(model, hooks: str | Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Trailing shape of each hook's per-token activation (e.g. ``(d_model,)``).

    Two tiny forwards of different lengths, which also reject hooks whose second axis is not
    the token position (e.g. attention patterns).
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for n in (3, 4):
        for fb in run_batches(model, torch.zeros((1, n), dtype=torch.long), hooks):
            for h, x in fb.acts.items():
                if shapes.setdefault(h, tuple(x.shape[1:])) != tuple(x.shape[1:]):
                    raise DataError(f"Hook {h} changes shape with the sequence length; it is not a per-token activation.")
    return shapes


def _cache_kwarg(module, args, kwargs):
    """Hand an attention bridge the HF cache under the name it reads (``past_key_values``); HF 5 passes ``cache``."""
    if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None:
        kwargs["past_key_values"] = kwargs["cache"]
    return args, kwargs


@contextlib.contextmanager
def _kv_cache(model):
    """A fresh HF ``DynamicCache`` that the model's attention layers fill during the ``with`` block."""
    from transformers import DynamicCache

    handles = [b.attn.register_forward_pre_hook(_cache_kwarg, with_kwargs=True)
               for b in getattr(model, "blocks", ()) if hasattr(b, "attn")]
    try:
        yield DynamicCache()
    finally:
        for h in handles:
            h.remove()


def jacobian(model, tokens: Sequence[int] | torch.Tensor, grad_at: str, at: int, hook: str, of: int = -1, *,
             chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(J [d_out, d_in], x [d_in], y [d_out])``: ∂ ``hook[of]`` / ∂ ``grad_at[at]`` on one token row.

    ``x``, ``y`` are the two activations themselves. Only the tokens from ``at`` on depend on
    ``x``, so the row runs once without grad into a KV cache, and then only the tokens from
    ``at`` on run again (on the cached prefix) with ``grad_at[at]`` as the leaf, stopping after
    ``hook``; one batched backward (``is_grads_batched``) per ``chunk`` output dimensions gives
    the Jacobian's rows, never one backward per dimension. The cached pass is checked against
    the full one; a model whose attention ignores the cache is differentiated over the whole row.

    Args:
        tokens: one row of token ids. grad_at, hook: hook names (``grad_at`` as in ``run_batches``).
        at, of: positions, ``at <= of`` (``of`` may be negative).
        chunk: output dimensions per backward (memory: ``chunk`` × the differentiated tokens).
    """
    ids = torch.as_tensor(tokens, dtype=torch.long).reshape(1, -1)
    seq = ids.shape[1]
    of = of + seq if of < 0 else of
    if not 0 <= at <= of < seq:
        raise DataError(f"jacobian: positions at={at}, of={of} must satisfy 0 <= at <= of < {seq} (the row's length).")
    if chunk < 1:
        raise DataError(f"jacobian: chunk must be at least 1, got {chunk}.")
    leaf_name, name = resolve_hooks(model, grad_at)[0], resolve_hooks(model, hook)[0]
    ids = ids.to(next(model.parameters()).device)
    taps = _Taps(model, [name], leaf_name, take_rows, stop=True)
    zero = torch.zeros(1, dtype=torch.long, device=ids.device)
    with _kv_cache(model) as cache:
        with taps, torch.no_grad():
            taps.run(ids, None, zero, zero + of, cache=cache)
        y, x = taps.out[name][0].detach(), taps.leaf[0, at].detach()
        start = at if cache.get_seq_length() == seq else 0  # every layer the pass ran filled the cache
        with taps, torch.enable_grad():
            if start:
                cache.crop(start - seq)  # keep the prefix before `at`
                taps.run(ids[:, start:], None, zero, zero + of - start, cache=cache)
            if not start or not torch.allclose(taps.out[name][0].detach(), y, rtol=1e-3, atol=1e-3):
                start = 0  # no usable cache: differentiate the whole row
                taps.run(ids, None, zero, zero + of)
            out, leaf = taps.out[name].reshape(-1), taps.leaf
            eye = torch.eye(out.numel(), dtype=out.dtype, device=out.device)
            rows = [torch.autograd.grad(out, leaf, eye[k:k + chunk], retain_graph=k + chunk < out.numel(),
                                        is_grads_batched=True)[0][:, 0, at - start].reshape(len(eye[k:k + chunk]), -1)
                    for k in range(0, out.numel(), chunk)]
    return torch.cat(rows), x, y
