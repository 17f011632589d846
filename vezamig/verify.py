"""Offline check of a migration folder: no database, no network (SPEC §5 verify).

Everything is collected in one pass so a pre-commit hook shows every problem
at once: layout, directives, PostgreSQL syntax errors, and authoring lint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vezamig.errors import LayoutError
from vezamig.files import SqlFile, collect


@dataclass
class VerifyReport:
    files: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _check_file(f: SqlFile, direction: str, report: VerifyReport) -> None:
    from vezamig.lint import lint_file
    from vezamig.sqltext import analyze

    report.files += 1
    parsed = analyze(f.text)
    report.problems.extend(f.header.problems)
    if parsed.error is not None:
        err = parsed.error
        report.problems.append(
            f"{f.path}:{err.line}:{err.column}: syntax error: {err.message}\n"
            f"      {err.line} | {err.line_text}")
        return
    d = f.directives
    for finding in lint_file(parsed, direction=direction, has_guard=bool(d.guards),
                             no_transaction=d.no_transaction):
        report.warnings.append(f"{f.path}:{finding.line}:{finding.column}: {finding.code} "
                               f"{finding.message}")


def verify_tree(up_dir: Path, down_dir: Path) -> VerifyReport:
    if not up_dir.is_dir():
        raise LayoutError(f"migration folder {up_dir} does not exist",
                          details=["pass --dir DIR (DIR/up, DIR/down) or --up-dir/--down-dir"])
    migrations, problems = collect(up_dir, down_dir)
    report = VerifyReport(problems=list(problems))
    for m in migrations:
        _check_file(m.up, "up", report)
        if m.down is not None:
            _check_file(m.down, "down", report)
    return report
