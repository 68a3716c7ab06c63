"""Evidence heatmaps and robustness probes, computed in the explainer's child process."""
