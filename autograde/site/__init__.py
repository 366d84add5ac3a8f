"""The course website: MkDocs hooks (hooks.py) and Korean search helpers (korean.py)."""
