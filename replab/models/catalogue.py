"""The hook catalogue of a local GPT-2-style checkpoint, read from its ``config.json`` without loading weights.

``replab capture`` checks ``--hooks`` against this before it loads the model, so a typo fails in well under
a second. The lists mirror ``replab.models.hooks.hook_names`` (and the bridge's alias names) for
``model_type == "gpt2"``; tests compare them with the loaded world and tiny models. Other model types
return ``None`` and are checked after load. This module imports neither torch nor transformer-lens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from replab.models.patterns import match_hooks

# hook_names(model) for a GPT-2 bridge, one block written as blocks.{l}
_GPT2_CATALOGUE = (
    'hook_embed',
    'hook_pos_embed',
    'blocks.{l}.hook_resid_pre',
    'blocks.{l}.ln1.hook_scale',
    'blocks.{l}.ln1.hook_normalized',
    'blocks.{l}.ln1.hook_out',
    'blocks.{l}.attn.hook_q',
    'blocks.{l}.attn.hook_k',
    'blocks.{l}.attn.hook_v',
    'blocks.{l}.attn.hook_attn_scores',
    'blocks.{l}.attn.hook_pattern',
    'blocks.{l}.attn.hook_z',
    'blocks.{l}.hook_attn_out',
    'blocks.{l}.hook_resid_mid',
    'blocks.{l}.ln2.hook_scale',
    'blocks.{l}.ln2.hook_normalized',
    'blocks.{l}.ln2.hook_out',
    'blocks.{l}.mlp.hook_pre',
    'blocks.{l}.mlp.hook_post',
    'blocks.{l}.hook_mlp_out',
    'blocks.{l}.hook_resid_post',
    'ln_final.hook_scale',
    'ln_final.hook_normalized',
    'ln_final.hook_out',
    'unembed.hook_out',
)
# further names in model.hook_dict that resolve_hooks also accepts
_GPT2_ALIASES = (
    'blocks.{l}.attn.hook_attn_in',
    'blocks.{l}.attn.hook_hidden_states',
    'blocks.{l}.attn.hook_in',
    'blocks.{l}.attn.hook_k_input',
    'blocks.{l}.attn.hook_out',
    'blocks.{l}.attn.hook_q_input',
    'blocks.{l}.attn.hook_result',
    'blocks.{l}.attn.hook_v_input',
    'blocks.{l}.attn.k.hook_in',
    'blocks.{l}.attn.k.hook_out',
    'blocks.{l}.attn.o.hook_in',
    'blocks.{l}.attn.o.hook_out',
    'blocks.{l}.attn.q.hook_in',
    'blocks.{l}.attn.q.hook_out',
    'blocks.{l}.attn.qkv.hook_in',
    'blocks.{l}.attn.qkv.hook_out',
    'blocks.{l}.attn.v.hook_in',
    'blocks.{l}.attn.v.hook_out',
    'blocks.{l}.hook_attn_in',
    'blocks.{l}.hook_in',
    'blocks.{l}.hook_k_input',
    'blocks.{l}.hook_mlp_in',
    'blocks.{l}.hook_out',
    'blocks.{l}.hook_q_input',
    'blocks.{l}.hook_v_input',
    'blocks.{l}.ln1.hook_in',
    'blocks.{l}.ln2.hook_in',
    'blocks.{l}.mlp.hook_in',
    'blocks.{l}.mlp.hook_out',
    'blocks.{l}.mlp.in.hook_in',
    'blocks.{l}.mlp.in.hook_out',
    'blocks.{l}.mlp.out.hook_in',
    'blocks.{l}.mlp.out.hook_out',
    'embed.hook_in',
    'embed.hook_out',
    'hook_unembed',
    'ln_final.hook_in',
    'pos_embed.hook_in',
    'pos_embed.hook_out',
    'unembed.hook_in',
)


def _expand(templates: Iterable[str], n_layer: int) -> list[str]:
    return [t.format(l=i) for t in templates for i in (range(n_layer) if "{l}" in t else [0])]


def _order(templates: tuple[str, ...], n_layer: int) -> list[str]:
    """Forward order: pre-block names, each block's names, then post-block names."""
    pre, block, post, seen_block = [], [], [], False
    for t in templates:
        if "{l}" in t:
            block.append(t)
            seen_block = True
        else:
            (post if seen_block else pre).append(t)
    return pre + [t.format(l=i) for i in range(n_layer) for t in block] + post


def checkpoint_hook_names(checkpoint: str | Path) -> tuple[list[str], set[str]] | None:
    """``(hook_names, alias names)`` of the checkpoint directory, or ``None`` when it cannot be derived."""
    config = Path(checkpoint) / "config.json"
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if cfg.get("model_type") != "gpt2" or not isinstance(cfg.get("n_layer"), int):
        return None
    n = cfg["n_layer"]
    return _order(_GPT2_CATALOGUE, n), set(_expand(_GPT2_ALIASES, n))


def check_hooks(checkpoint: str | Path, hooks: str | Iterable[str]) -> None:
    """Raise ``HookNameError`` for a hook or glob that matches nothing on the checkpoint (no weights loaded).

    Does nothing when the catalogue cannot be derived from ``config.json``; the check then happens after load.
    """
    derived = checkpoint_hook_names(checkpoint)
    if derived is not None:
        match_hooks(hooks, *derived)


def checkpoint_dir(name: str | Path) -> Path:
    """Where a model name lives on disk: a registered checkpoint (``replab.plugins``), or the path itself."""
    from replab import plugins

    return plugins.checkpoint(str(name)) or Path(name).expanduser()


def checkpoint_path(name: str | Path) -> Path | None:
    """The local checkpoint directory ``load_model(name)`` would read, or ``None`` (a hub name, a typo)."""
    path = checkpoint_dir(name)
    return path if (path / "config.json").is_file() else None
