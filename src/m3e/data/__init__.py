"""Data: read user files into records, with errors that name file and line."""
