"""Labelled prompt sets and text corpora: from the world's ground truth or from user files."""

from replab.datasets.files import load_file
from replab.datasets.promptset import PromptSet, TextCorpus
from replab.datasets.registry import load

__all__ = ["PromptSet", "TextCorpus", "load", "load_file"]
