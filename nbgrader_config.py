"""nbgrader configuration: this repository is the nbgrader course directory.

nbgrader's folders mapped to the course's (one language at a time):

    source     solutions/en    instructor notebooks (answers + hidden tests)
    release    exercises/en    student notebooks (made by `course build`, checked by `course release`)
    submitted, autograded, feedback   nbgrader's defaults, at the repository root
    gradebook  gradebook.db    at the repository root (git-ignored), shared with `course grade`

Record an assignment with `course release ASSIGNMENT` (never `nbgrader
generate_assignment`: exercises/ is committed, and its --force deletes the
committed notebooks first). To run nbgrader's own commands on the Korean
notebooks, set COURSE_LANG=ko for every command, or change LANG below. Both
languages have the same cells, grade ids and points, so one gradebook serves a
class that mixes them; `course grade` grades each submission in its own
language, which plain `nbgrader autograde` cannot (the instructors' guide says
what it does instead).
"""
import os
from pathlib import Path

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

ROOT = Path(__file__).resolve().parent
LANG = os.environ.get("COURSE_LANG", "en")
if LANG not in ("en", "ko"):
    raise ValueError(f"COURSE_LANG must be 'en' or 'ko', not {LANG!r}")

c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.source_directory = f"solutions/{LANG}"
c.CourseDirectory.release_directory = f"exercises/{LANG}"
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'gradebook.db'}"
# hidden tests and solution regions use nbgrader's default markers
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ExecutePreprocessor.timeout = 300
