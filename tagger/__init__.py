"""Tagger: tag photos with a neural network that learns from your corrections."""

__version__ = "0.1.0"
APP_NAME = "Tagger"
