"""The command line: the parser in `main`, and one module per group of commands."""
