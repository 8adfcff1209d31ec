"""Markdown helpers used by studies and benchmarks."""

import pandas as pd

from replab.markdown import markdown_table, update_marked_section


def test_markdown_table():
    table = markdown_table(pd.DataFrame({"arch": ["topk", "mp"], "fvu": [0.12345, float("nan")]}))
    assert table.splitlines() == ["| arch | fvu |", "|---|---|", "| topk | 0.1235 |", "| mp |  |"]


def test_marked_section_is_replaced_not_duplicated(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nintro\n")
    update_marked_section(doc, "study", "first")
    update_marked_section(doc, "study", "second")
    text = doc.read_text()
    assert text.startswith("# Title\n\nintro\n") and "second" in text and "first" not in text
    assert text.count("<!-- study:begin -->") == 1
