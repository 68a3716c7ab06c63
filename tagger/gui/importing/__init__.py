"""Importing folders of photos in the background."""
