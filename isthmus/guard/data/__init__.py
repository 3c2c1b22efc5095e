"""Data files shipped with the guard: the trained classifier artifact (see NOTICE.md)."""
