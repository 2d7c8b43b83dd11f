"""Small helpers shared by every capability (paths, atomic writes)."""
