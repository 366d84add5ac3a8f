"""The hardened grader: trusted parent, sandboxed child, nbgrader gradebook.

    rebuild.py   trusted   submission + pristine notebook -> the code to run, tamper events
    plan.py      trusted   which checks each test cell runs; their cases (seeds drawn now)
    wire.py      both      the only format that crosses the boundary (JSON + safetensors, never pickle)
    sandbox.py   trusted   starts the child: namespaces, unprivileged user, rlimits, timeout, capped output
    worker.py    UNTRUSTED runs inside the sandbox: the student's cells, then their functions on the cases
    judge.py     trusted   reads the child's outputs back, judges every case with Check.judge, scores cells
    check.py     trusted   `course check NOTEBOOK`: one notebook, a table or Gradescope JSON
    grade.py     trusted   `course grade ASSIGNMENT`: a class, in parallel, resumable
    gradebook.py trusted   writing scores into nbgrader's gradebook

Nothing under autograde.grader imports autograde.reference except through the
check modules in the parent; worker.py imports only torch, safetensors and wire.
"""

GRADER_VERSION = "1.0"
