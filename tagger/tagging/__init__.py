"""Tagging a library: plan (reads), run (computes), adopt and record (writes), for both front ends."""
