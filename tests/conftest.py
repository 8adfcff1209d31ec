"""Shared fixtures: a tiny offline GPT-2 checkpoint (seconds) and the shipped world model."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_MAIN = sys.modules["__main__"]
_MAIN_STATE = {k: getattr(_MAIN, k, None) for k in ("__file__", "__spec__")}


@pytest.fixture(autouse=True)
def _restore_main():
    """Streamlit's AppTest runs a page as ``__main__``; restore the real one after every test, or a later
    ``torch.multiprocessing.spawn`` in the same worker would re-run the app page in its children."""
    yield
    sys.modules["__main__"] = _MAIN
    for key, value in _MAIN_STATE.items():
        setattr(_MAIN, key, value)

TINY_TEXTS = [
    "The capital of France is Paris.",
    "The capital of Japan is Tokyo.",
    "A dog is a mammal. A cat is a mammal.",
    "The movie was great, honestly. The book was terrible.",
    "Two days after Monday is Wednesday.",
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """A 2-layer, d_model 32 GPT-2 saved as a Hugging Face checkpoint directory."""
    from replab.world.tokenizer import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", TINY_TEXTS)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint loaded through ``replab.load_model`` (the same path as a user's checkpoint)."""
    import replab

    return replab.load_model(tiny_checkpoint)


@pytest.fixture(scope="session")
def world_model():
    """The shipped world model."""
    import replab

    return replab.load_model("world")
