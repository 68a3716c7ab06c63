"""The classifier on cached features: the head, its fitting, calibration and evaluation (numpy only)."""
