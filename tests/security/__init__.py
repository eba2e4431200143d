"""Who may see and change what: one file per concern; conftest.py lists them and holds what they share."""
