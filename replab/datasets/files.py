"""Read prompt sets from JSONL or CSV files and corpora from plain text, with row-level errors."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from replab.datasets.promptset import PromptSet, TextCorpus
from replab.errors import DataError


def _read_text(path: Path) -> str:
    """The file's text: UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8" writes one).

    Raises:
        DataError: the bytes are not UTF-8; names the line and the fix.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}, line {line}: byte {data[exc.start]:#04x} is not UTF-8 text; save the file as UTF-8 "
                        f"(e.g. `iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}`).") from None


def _rows_jsonl(path: Path, text: str) -> list[dict]:
    rows = []
    for i, line in enumerate(text.split("\n"), start=1):  # (not splitlines: U+2028 may sit inside a string)
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


def _rows_json(path: Path, text: str) -> list[dict]:
    """A ``.json`` file: an array of objects, or JSON Lines (what ``datasets.Dataset.to_json`` writes)."""
    try:
        rows = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several top-level values: JSON Lines
            return _rows_jsonl(path, text)
        line = text.count("\n", 0, exc.pos) + 1
        raise DataError(f"{path}, line {line}: not valid JSON ({exc.msg}).") from None
    rows = [rows] if isinstance(rows, dict) else rows
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path}: expected an array of JSON objects with a 'text' field, or one object per line.")
    return rows


def _rows_csv(path: Path, text: str, delimiter: str = ",") -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


READERS = {".jsonl": _rows_jsonl, ".json": _rows_json, ".csv": _rows_csv,
           ".tsv": lambda path, text: _rows_csv(path, text, "\t")}
"""Prompt-file readers by extension: ``(path, text) -> rows``."""


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
    """Load a prompt file (``.jsonl``, ``.json`` array or lines, ``.csv`` or ``.tsv``; columns ``text``
    [+ ``label``, ``target``, ``subject``, ``answer``]) or a ``.txt`` corpus (one document per line).
    Files are UTF-8, a byte-order mark allowed.

    Raises:
        DataError: the file is missing, empty or not UTF-8, lacks a ``text`` column, or a row is
            malformed; the message names the file and the row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"File {path} does not exist; check the path, or use a world:<name> set (world:corpus for a "
                        "text corpus).")
    suffix = path.suffix.lower()
    if suffix != ".txt" and suffix not in READERS:
        raise DataError(f"{path}: unsupported extension {suffix!r}; use .jsonl, .json, .csv, .tsv (prompts) "
                        "or .txt (corpus).")
    text = _read_text(path)
    if suffix == ".txt":
        docs = text.splitlines()
        if not any(d.strip() for d in docs):
            raise DataError(f"{path} is empty; a text corpus needs one document per line.")
        return TextCorpus(tuple(docs), name=str(path))
    rows = READERS[suffix](path, text)
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
