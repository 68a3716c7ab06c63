"""Plumbing every layer may use: atomic writes, safe file access, cancellation, child processes."""
