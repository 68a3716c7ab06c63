"""Why the model said what it said: Grad-CAM heatmaps, the robustness probe (both torch, in a child
process), the torch-free overlay, and the review queue and suspects."""
