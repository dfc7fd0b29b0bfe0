"""Merge-field templates: the sandboxed engine and the fields it knows."""
