"""A library's state: the SQLite store (the only SQL), the one writer, its lock, the importer."""
