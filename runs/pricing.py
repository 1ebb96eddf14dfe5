"""Placeholder: filled in by the cheap-runs work (issue 16)."""
