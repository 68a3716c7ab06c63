"""Tagging a library's photos on a Ray cluster (the optional `cluster` extra): workers decode
and run the model, and this process stores their results through the library's one writer."""
