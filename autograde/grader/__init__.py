"""The hardened grader: trusted parent, sandboxed child, nbgrader gradebook.

    rebuild.py   trusted   submission + pristine notebook -> the code to run, tamper events
    pipeline.py  trusted   one notebook: plan the checks and their cases (seeds drawn now), run the
                           sandbox (restarting after a hang or crash), judge every case, score cells
    static.py    trusted   the parent's own reading of the student's cells: escape routes refused,
                           forbidden functions found within each step's reach
    secret.py    trusted   the course's secret key, from which hidden cases' seeds derive
    (autograde/protocol.py, both sides: the only format that crosses the boundary, JSON + safetensors,
     never pickle; the child's step reports; the model spy)
    sandbox.py   trusted   starts the child: namespaces, unprivileged user, rlimits, timeout, capped output
    warm.py      trusted   the warm start: a zygote that imported torch forks each sandbox into the same isolation
    worker.py    UNTRUSTED runs inside the sandbox: the student's cells, then their functions on the cases
    check.py     trusted   `course check NOTEBOOK`: one notebook, a table or Gradescope JSON
    grade.py     trusted   `course grade ASSIGNMENT`: a class, in parallel, resumable
    gradebook.py trusted   writing scores into nbgrader's gradebook

Nothing under autograde.grader imports autograde.reference except through the
check modules in the parent, and worker.py for a job that needs the reference
model (notebooks 4 and 5: it loads the model before any student code runs).
worker.py otherwise imports only torch, safetensors, autograde.protocol and the checks' runner.
"""

GRADER_VERSION = "1.0"
# The time limits count the sandbox's own CPU time (a neighbour's load does not make it run out); a
# cell or call that sleeps instead ends when wall time reaches WALL_FACTOR times its limit.
WALL_FACTOR = 3
