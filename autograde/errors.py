"""Errors meant for people, not stack traces.

Anything raised as a CourseError is printed by the `course` CLI as one clear
line (`error: ...`) with exit status 2; every other exception is a bug.
"""


class CourseError(Exception):
    """A problem with the user's input that the message fully explains."""
