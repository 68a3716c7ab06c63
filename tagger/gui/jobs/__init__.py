"""Background work for the GUI: generator jobs run in threads, results delivered on the GUI thread."""
