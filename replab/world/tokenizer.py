"""A case-preserving word-level tokenizer in GPT-2's style (``" Paris"`` is one token).

Words are split with GPT-2's byte-level pre-tokenizer, so a word carries its leading space
(``Ġ`` internally, a plain space when decoded) and punctuation is its own token. The tokenizer
prepends BOS (``<|endoftext|>``) itself, so ``model("text")``, ``tokenizer("text")`` and
training all see the same ids.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

BOS = "<|endoftext|>"
PAD = "<pad>"
UNK = "<unk>"
SPECIALS = (BOS, PAD, UNK)


def _pre_tokenizer():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def word_counts(texts: Iterable[str]) -> Counter:
    """Count pre-tokenized words (``Ġ``-prefixed where preceded by a space)."""
    pre = _pre_tokenizer()
    counts: Counter = Counter()
    for t in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(t))
    return counts


def build_tokenizer(texts: Iterable[str]):
    """Build a ``PreTrainedTokenizerFast`` whose vocabulary is every word in ``texts``.

    Args:
        texts: the corpus (and any prompts that must tokenise without ``<unk>``).

    Returns:
        A fast tokenizer; save it with ``save_pretrained(dir)`` next to the model.
    """
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    counts = word_counts(texts)
    words = sorted(counts, key=lambda w: (-counts[w], w))
    vocab = {w: i for i, w in enumerate([*SPECIALS, *[w for w in words if w not in SPECIALS]])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=BOS, unk_token=UNK, pad_token=PAD,
        padding_side="right", model_max_length=1024,
    )


def save_tiny_checkpoint(path: str | os.PathLike, texts: Iterable[str], *, n_layer: int = 2, d_model: int = 32,
                         n_head: int = 2, n_ctx: int = 64, seed: int = 0) -> str:
    """Save an untrained GPT-2 with a word-level tokenizer over ``texts`` (for tests and examples)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    texts = list(texts)
    tok = build_tokenizer(texts)
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_ctx, n_embd=d_model, n_layer=n_layer, n_head=n_head,
                     bos_token_id=0, eos_token_id=0, pad_token_id=1)
    model = GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
