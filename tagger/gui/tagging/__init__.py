"""Automatic tagging: runs of the model over the library, and the first-launch engine preparation."""
