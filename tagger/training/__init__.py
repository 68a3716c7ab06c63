"""Retraining from the user's labels: quick (head only) and deep (in a child process), and judging the result."""
