"""Offline check of a migration folder: no database, no network (SPEC §5 verify).

Everything is collected in one pass so a pre-commit hook shows every problem
at once: layout, directives, PostgreSQL syntax errors, and authoring lint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vezamig.files import SqlFile, check_folders, collect, is_file, read_sql


@dataclass
class VerifyReport:
    files: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _check_file(f: SqlFile, direction: str, report: VerifyReport) -> None:
    from vezamig.lint import Linter
    from vezamig.runnable import copy_stdin_problems, parsed_run_problems, set_config_problems
    from vezamig.sqltext import analyze_pieces, excerpt, psql_hint

    report.files += 1
    d = f.directives
    label = str(f.path)

    def new_linter() -> Linter:
        return Linter(
            direction=direction, has_guard=bool(d.guards), no_transaction=d.no_transaction
        )

    # A large file is analysed in pieces (bounded memory); a piece that does not parse
    # makes the whole file be analysed at once, which supersedes the pieces before it.
    linter = new_linter()
    run: list[str] = set_config_problems(f.text, label) if d.no_transaction else []
    warnings: list[str] = []
    err = None
    for piece in analyze_pieces(f.text):
        if piece.whole:
            linter, warnings = new_linter(), []
            run = set_config_problems(f.text, label) if d.no_transaction else []
        parsed, base = piece.parsed, piece.line_base
        if parsed.error is not None:
            err = parsed.error
            break
        # What `up`/`down` would refuse outright (exit 2) is a problem here too.
        run += parsed_run_problems(parsed, label, no_transaction=d.no_transaction, line_base=base)
        for finding in linter.feed(parsed, base):
            if finding.code == "VZ006":
                continue  # reported as a problem, just above
            warnings.append(
                f"{f.path}:{finding.line}:{finding.column}: {finding.code} {finding.message}"
            )
    # A lexer error also stops the directive reader, which reports it in its own
    # words; the syntax error below says the same thing with the line's text.
    same = None if err is None else f"{f.path}:{err.line}:{err.column}: {err.one_line}"
    report.problems.extend(p for p in f.header.problems if p != same)
    if err is not None:
        # What `up` says of a pg_dump COPY with its rows, in its words, first.
        report.problems.extend(copy_stdin_problems(f.text, label, err.line))
        message = err.one_line
        if not message.startswith("syntax error"):
            message = f"syntax error: {message}"
        shown = excerpt(f.text, err.line, context=0, column=err.column)
        hint = psql_hint(message)
        report.problems.append(
            "\n".join(
                [
                    f"{f.path}:{err.line}:{err.column}: {message}",
                    *("    " + s for s in shown),
                    *([f"    hint: {hint}"] if hint else []),
                ]
            )
        )
        return
    report.problems.extend(run)
    report.warnings.extend(warnings)


def _unpaired(up_dir: Path, down_dir: Path, checked: set[Path]) -> list[tuple[Path, str]]:
    """`.sql` files that pairing left out (orphan downs, duplicates, bad names).

    They are parsed too, so a broken tree shows its syntax errors in the same
    run as its layout errors instead of one fix later.
    """
    shared = up_dir.resolve() == down_dir.resolve()
    found: list[tuple[Path, str]] = []
    for folder, direction in ((up_dir, "up"), (down_dir, "down")):
        if not folder.is_dir() or (shared and direction == "down"):
            continue
        try:
            paths = sorted(folder.iterdir())
        except OSError:  # collect reported it
            continue
        for path in paths:
            if path in checked or not path.name.endswith(".sql") or not is_file(path):
                continue
            kind = "down" if (shared and path.name.endswith("_down.sql")) else direction
            found.append((path, kind))
    return found


def verify_tree(up_dir: Path, down_dir: Path) -> VerifyReport:
    check_folders(up_dir, down_dir)
    migrations, problems = collect(up_dir, down_dir)
    report = VerifyReport(problems=list(problems))
    checked: set[Path] = set()
    for m in migrations:
        _check_file(m.up, "up", report)
        checked.add(m.up.path)
        if m.down is not None:
            _check_file(m.down, "down", report)
            checked.add(m.down.path)
    for path, direction in _unpaired(up_dir, down_dir, checked):
        f, problem = read_sql(path)
        if problem is not None:
            if problem not in report.problems:  # collect may have read it already
                report.problems.append(problem)
            continue
        assert f is not None
        _check_file(f, direction, report)
    return report
