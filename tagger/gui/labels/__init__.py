"""Labeling photos by hand, with undo."""
