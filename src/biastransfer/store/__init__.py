"""The result store (SQLite) and its tidy export."""
