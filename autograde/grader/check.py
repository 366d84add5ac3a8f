"""`course check NOTEBOOK [--json]`: grade one notebook in the sandbox.

Prints a per-item table (or, with --json, a superset of Gradescope's
results.json) and exits 0 only when every graded item passes. A notebook that
cannot be graded at all (missing, a directory, a symbolic link (never
followed), unreadable, not UTF-8, invalid JSON, nbformat 3, unknown
assignment) is a CourseError, and so is the
grader's own trouble (a full disk, a sandbox that could not start): one line
on stderr, exit status 2.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from autograde.checks.messages import register_messages, message
from autograde.errors import CourseError, GraderFault
from autograde.grader.sandbox import Limits, prestart

register_messages({
    "table_item": {"en": "item", "ko": "항목"},
    "table_points": {"en": "points", "ko": "점수"},
    "table_result": {"en": "result", "ko": "결과"},
    "table_message": {"en": "message", "ko": "메시지"},
    "table_pass": {"en": "pass", "ko": "통과"},
    "table_fail": {"en": "fail", "ko": "실패"},
    "table_total": {"en": "total", "ko": "합계"},
    "table_tamper": {"en": "changed outside your cells (the original was used): {what}",
                     "ko": "여러분의 셀 밖에서 바뀐 것이 있습니다 (원본을 썼습니다): {what}"},
    "table_cell_error": {"en": "cell {cell} raised {error}", "ko": "{cell} 셀에서 오류가 났습니다: {error}"},
})


def check_notebook(path: Path, as_json: bool = False, limits: Limits | None = None, secret: Path | None = None,
                   student: str = "") -> int:
    """secret, student: grade as `course grade` grades that student (the same hidden cases); without a
    secret (or COURSE_SECRET_FILE) the hidden cases come from the public fixed stream."""
    from autograde.grader.secret import ENV, optional_secret

    path = Path(path)
    if not os.path.lexists(path):
        raise CourseError(f"{path} does not exist")
    if student and not secret and not os.environ.get(ENV):
        raise CourseError(f"--student {student} needs the course secret (--secret FILE, or {ENV}): without it "
                          "the hidden cases are the public ones, the same for every student")
    prestart()                          # the warm start's zygote imports torch while the grader does
    from autograde.grader.pipeline import grade_notebook
    key = optional_secret(Path(secret) if secret else None)
    hide = [Path(secret)] if secret else [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    try:
        result = grade_notebook(path, limits or Limits.from_env(), hide, strict=True, key=key, identity=student)
    except GraderFault as exc:          # the grader's machine, not the notebook: nothing was graded
        raise GraderFault(f"{exc}; nothing was graded: fix that, then run the check again") from None
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_table(result)
    passed = bool(result["tests"]) and all(t["status"] == "passed" for t in result["tests"])
    return 0 if passed else 1


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from autograde.grader.pipeline import cell_error_text

    lang = result.get("lang", "en")
    console = Console(highlight=False, soft_wrap=False, width=max(100, Console().width))
    table = Table(title=f"{result.get('assignment', '')} ({Path(result['notebook']).name})")
    table.add_column(message("table_item", lang), no_wrap=True)
    table.add_column(message("table_points", lang), justify="right", no_wrap=True)
    table.add_column(message("table_result", lang), no_wrap=True)
    # fold, not rich's default ellipsis: where a wrapped line ends on a wide (Hangul) character, the
    # ellipsis replaced characters of the message ("id를  …" for "id를 한 칸씩")
    table.add_column(message("table_message", lang), overflow="fold")
    for test in result["tests"]:
        ok = test["status"] == "passed"
        # what comes from the student's run (their exception's text, a cell's name) is plain text:
        # "[/]" in it would make rich raise, "[link=...]" would become a link
        table.add_row(Text(test["name"]), f"{test['score']:g} / {test['max_score']:g}",
                      f"[green]{message('table_pass', lang)}[/]" if ok else f"[red]{message('table_fail', lang)}[/]",
                      Text(test["output"]), end_section=False)
    table.add_row(f"[bold]{message('table_total', lang)}[/]", f"[bold]{result['score']:g} / {result['max_score']:g}[/]",
                  "", "")
    console.print(table)
    for kind, cells in _tamper_by_kind(result.get("tamper", [])).items():
        console.print("⚠ " + message("table_tamper", lang, what=f"{kind} {', '.join(cells)}".strip()), markup=False)
    for err in result.get("cell_errors", []):
        console.print("⚠ " + message("table_cell_error", lang, cell=err["cell"],
                                     error=cell_error_text(err["error"], lang)), markup=False)
    sys.stdout.flush()


def _tamper_by_kind(events: list[dict]) -> dict[str, list[str]]:
    """One line per kind of tamper event: its cells (the first few) and "(+N more)"."""
    kinds: dict[str, list[str]] = {}
    for event in events:
        cell = str(event.get("cell", ""))
        kinds.setdefault(str(event.get("event", "?")), []).extend([cell] if cell else [])
    return kinds
