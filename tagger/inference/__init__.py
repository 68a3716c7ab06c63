"""Turning photos into features: preprocessing and backbone ids (a leaf), the backbone, the
engines and their runtimes, the GPU child, the pipeline; `choice` picks an engine and sits on top."""
