"""The reference implementation every check and figure compares against."""
