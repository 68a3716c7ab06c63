"""Adding, renaming and removing classes."""
