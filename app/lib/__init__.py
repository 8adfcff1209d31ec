"""Streamlit glue shared by the explorer's pages: cached readers, run pickers, error display.

Computation and reading live in ``replab.viz``; this package only adds caching and widgets.
"""
