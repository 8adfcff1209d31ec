"""Read prompt sets from JSONL or CSV files and corpora from plain text, with row-level errors."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from replab.datasets.promptset import PromptSet, TextCorpus
from replab.errors import DataError


def _rows_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {i}: not valid JSON ({exc.msg}).") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {i}: expected a JSON object with a 'text' field.")
            rows.append(row)
    return rows


def _rows_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _column(rows: list[dict], name: str, path: Path, convert=None):
    present = [name in r and r[name] not in (None, "") for r in rows]
    if not any(present):
        return None
    if not all(present):
        i = present.index(False)
        raise DataError(f"{path}, row {i + 1}: column {name!r} is empty while other rows have it; fill it or drop the column.")
    vals = []
    for i, r in enumerate(rows):
        v = r[name]
        if convert is not None:
            try:
                v = convert(v)
            except (TypeError, ValueError):
                raise DataError(f"{path}, row {i + 1}: {name} {v!r} is not a number.") from None
        vals.append(v)
    return vals


def load_file(path: str | os.PathLike) -> PromptSet | TextCorpus:
    """Load a ``.jsonl``/``.csv`` prompt file (columns ``text`` [+ ``label``, ``target``, ``subject``,
    ``answer``]) or a ``.txt`` corpus (one document per line).

    Raises:
        DataError: the file is missing or empty, lacks a ``text`` column, or a row is malformed;
            the message names the file and the row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Prompt file {path} does not exist; check the path, or use a world:<name> prompt set.")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        docs = path.read_text(encoding="utf-8").splitlines()
        if not any(d.strip() for d in docs):
            raise DataError(f"{path} is empty; a text corpus needs one document per line.")
        return TextCorpus(tuple(docs), name=str(path))
    if suffix not in (".jsonl", ".csv"):
        raise DataError(f"{path}: unsupported extension {suffix!r}; use .jsonl, .csv (prompts) or .txt (corpus).")
    rows = _rows_jsonl(path) if suffix == ".jsonl" else _rows_csv(path)
    if not rows:
        raise DataError(f"{path} is empty; it needs at least one row with a 'text' column.")
    texts = _column(rows, "text", path)
    if texts is None:
        raise DataError(f"{path} has no 'text' column (columns: {sorted(rows[0])}); "
                        "rename the column holding the prompts to 'text'.")
    return PromptSet(  # checks subjects occur in their texts and targets are finite (rows 1-based)
        texts=texts,
        labels=_column(rows, "label", path),
        targets=_column(rows, "target", path, float),
        subjects=_column(rows, "subject", path),
        answers=_column(rows, "answer", path),
        name=str(path),
        meta={"source": "file", "path": str(path)},
    )
