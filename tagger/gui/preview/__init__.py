"""The large preview of the current photo, with its probabilities."""
