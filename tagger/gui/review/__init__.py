"""The review queue and the suspects panel."""
