"""Retraining, the training dialog and chart, and the model versions (history, switching)."""
