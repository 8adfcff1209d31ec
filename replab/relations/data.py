"""Relation data: a name, prompt templates with ``{}`` for the subject, and ``(subject, object)`` samples.

Built from the world's knowledge base (``world("capital")``) or read from a file in the LRE
paper's JSON format (``load(path)``: ``name``, ``prompt_templates``, ``samples: [{subject, object}]``
plus optional fields, kept in ``properties``). Few-shot prompts follow the paper: each prompt
states other samples as examples, one per line, then asks about its own subject.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replab.errors import DataError
from replab.fileio import read_json, write_json

SEPARATOR = "\n"


@dataclass(frozen=True)
class Sample:
    """One fact; ``fields`` fill extra template slots (articles, offsets) of world templates."""

    subject: str
    object: str
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Relation:
    """A relation: templates ``"The capital of {} is"`` and samples.

    Attributes:
        name: relation name.
        prompt_templates: templates with one ``{}`` for the subject (the paper's format); world
            templates may also hold named slots filled from ``Sample.fields``.
        samples: the ``(subject, object)`` pairs.
        heldout_templates: templates never used for fitting (world relations).
        suffix: appended after the object in few-shot examples (``"."`` for world sentences).
        kind: ``factual`` / ``linguistic`` / ``arithmetic`` / ``category`` / the file's ``relation_type``.
        source: the file it came from, or ``world:<name>`` (named in every error).
        properties: the file's other fields, kept for the round trip.
    """

    name: str
    prompt_templates: tuple[str, ...]
    samples: tuple[Sample, ...]
    heldout_templates: tuple[str, ...] = ()
    suffix: str = ""
    kind: str = ""
    source: str = field(default="", compare=False)
    properties: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        where = self.source or self.name
        if not self.samples:
            raise DataError(f"Relation {self.name!r} ({where}) has no samples; add 'samples': [{{subject, object}}].")
        if not self.prompt_templates:
            raise DataError(f"Relation {self.name!r} ({where}) has no prompt_templates; add one such as 'The X of {{}} is'.")
        for t in (*self.prompt_templates, *self.heldout_templates):
            if "{}" not in t:
                raise DataError(f"Relation {self.name!r} ({where}): template {t!r} has no '{{}}' for the subject; add one.")
        for i, s in enumerate(self.samples):
            if not s.subject.strip() or not s.object.strip():
                raise DataError(f"Relation {self.name!r} ({where}), sample {i} {s}: empty subject or object.")

    @property
    def objects(self) -> list[str]:
        """Distinct objects in first-seen order."""
        return list(dict.fromkeys(s.object for s in self.samples))

    def render(self, template: str, sample: Sample) -> str:
        """The template with the sample's subject (and fields) filled in, without the object."""
        text = template
        for key, value in sample.fields:
            text = text.replace("{" + key + "}", value)
        return text.replace("{}", sample.subject)

    def prompt(self, sample: Sample, examples: tuple[Sample, ...] = (), template: str | None = None) -> str:
        """A few-shot prompt: each example stated with its object, one per line, then the query."""
        template = template or self.prompt_templates[0]
        lines = [f"{self.render(template, e)} {e.object}{self.suffix}" for e in examples]
        return SEPARATOR.join([*lines, self.render(template, sample)])

    def subset(self, indices) -> "Relation":
        """The relation restricted to some samples."""
        return Relation(self.name, self.prompt_templates, tuple(self.samples[i] for i in indices),
                        self.heldout_templates, self.suffix, self.kind, self.source, self.properties)


def _check_list(obj: Any, key: str, path: str) -> list:
    value = obj.get(key)
    if not isinstance(value, list):
        raise DataError(f"{path}: field {key!r} must be a list; got {type(value).__name__}.")
    return value


def from_dict(obj: dict[str, Any], source: str = "") -> Relation:
    """A relation from the LRE paper's JSON structure (``name``, ``prompt_templates``, ``samples``)."""
    if not isinstance(obj, dict):
        raise DataError(f"{source}: a relation file holds one JSON object, got {type(obj).__name__}.")
    samples = []
    for i, s in enumerate(_check_list(obj, "samples", source)):
        if not isinstance(s, dict) or not isinstance(s.get("subject"), str) or not isinstance(s.get("object"), str):
            raise DataError(f"{source}: sample {i} ({s!r}) needs string 'subject' and 'object'.")
        samples.append(Sample(s["subject"], s["object"]))
    known = {"name", "prompt_templates", "samples", "prompt_templates_zs"}
    props = {k: v for k, v in obj.items() if k not in known}
    return Relation(
        name=str(obj.get("name") or Path(source).stem), prompt_templates=tuple(_check_list(obj, "prompt_templates", source)),
        samples=tuple(samples), heldout_templates=tuple(obj.get("prompt_templates_zs", ())),
        kind=str(obj.get("properties", {}).get("relation_type", "")) if isinstance(obj.get("properties"), dict) else "",
        source=source, properties=props)


def load(path: str | os.PathLike) -> Relation:
    """Read a relation file in the LRE paper's JSON format.

    Raises:
        DataError: missing file, bad JSON, no samples, a template without ``{}``.
    """
    p = Path(path)
    obj = read_json(p, "Relation file", fix="give the path of a relation JSON file in the LRE paper's format "
                    "(name, prompt_templates, samples)", error=DataError)
    return from_dict(obj, str(p))


def to_dict(relation: Relation) -> dict[str, Any]:
    """The LRE paper's JSON structure (world samples' slots are rendered into per-sample fields)."""
    out: dict[str, Any] = {"name": relation.name, "prompt_templates": list(relation.prompt_templates)}
    if relation.heldout_templates:
        out["prompt_templates_zs"] = list(relation.heldout_templates)
    out.update(relation.properties)
    out["samples"] = [{"subject": s.subject, "object": s.object} for s in relation.samples]
    return out


def save(relation: Relation, path: str | os.PathLike) -> Path:
    """Write ``relation`` in the LRE paper's JSON format (``load`` reads it back)."""
    if any(s.fields for s in relation.samples):
        raise DataError(f"Relation {relation.name!r} has per-sample template slots the paper's format cannot hold.")
    p = Path(path)
    write_json(p, to_dict(relation), indent=2)
    return p


# Arithmetic facts depend on an offset as well as the subject: one offset makes it a relation of the subject.
ARITHMETIC_FIELDS = {"n": "two", "dir": "after"}


def world(name: str) -> Relation:
    """A world relation (``replab.world.relations``), templates rewritten to ``{}`` form.

    Arithmetic relations keep the facts of one offset (``ARITHMETIC_FIELDS``): "two days after X".
    """
    from replab.world.relations import relations

    rels = relations()
    if name not in rels:
        raise DataError(f"Unknown world relation {name!r}. Known: {', '.join(rels)}.")
    rel = rels[name]
    facts = rel.facts
    if rel.kind == "arithmetic":
        facts = tuple(f for f in facts if all(dict(f.fields).get(k) == v for k, v in ARITHMETIC_FIELDS.items()))

    def template(t: str) -> str:
        head, _, _ = t.partition("{o}")
        return head[:-1].replace("{s}", "{}")

    return Relation(
        name=name, prompt_templates=tuple(template(t) for t in rel.train_templates),
        samples=tuple(Sample(f.subject, f.object, f.fields) for f in facts),
        heldout_templates=tuple(template(t) for t in rel.heldout_templates), suffix=".", kind=rel.kind,
        source=f"world:{name}")


def world_names() -> list[str]:
    """Every world relation's name."""
    from replab.world.relations import relations

    return list(relations())
