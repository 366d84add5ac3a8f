"""LLMs from the token up: reference implementation, checks and grader."""

__version__ = "0.1.0"
