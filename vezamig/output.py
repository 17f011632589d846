"""Rendering for people: the only module that imports rich.

On a terminal: colour, tables and a plan panel. Anywhere else (pipes, CI
logs): plain, stable lines that scripts can grep, written without importing
rich at all (it costs tens of milliseconds of start-up). ``--json`` bypasses
this module's human output entirely.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TextIO

from vezamig.db import DatabaseInfo
from vezamig.errors import VezamigError
from vezamig.plan import Plan, StatusRow, Step
from vezamig.runner import GuardResult, StepResult
from vezamig.sqltext import written_name
from vezamig.state import HistoryRow

if TYPE_CHECKING:
    from rich.console import Console

    from vezamig.roundtrip import RoundtripReport, VersionReport

Part = tuple[str, str]  # (text, rich style)


class _Plain:
    """A stream of plain lines, flushed at once so CI logs show progress live."""

    rich = False

    def __init__(self, file: TextIO) -> None:
        self.file = file

    def write(self, *parts: Part | str, end: str = "\n") -> None:
        self.file.write("".join(p if isinstance(p, str) else p[0] for p in parts) + end)
        self.file.flush()


class _Rich:
    rich = True

    def __init__(self, file: TextIO, color: bool) -> None:
        from rich.console import Console

        # No colour means no escape codes at all (bold and dim too), as NO_COLOR asks.
        system: Literal["auto"] | None = "auto" if color else None
        self.file = file
        self.console: Console = Console(
            file=file, no_color=not color, highlight=False, color_system=system, emoji=False
        )

    def write(self, *parts: Part | str, end: str = "\n") -> None:
        from rich.text import Text

        self.console.print(Text.assemble(*parts), end=end, soft_wrap=True)


def _stream(file: TextIO, color: bool) -> _Plain | _Rich:
    return _Rich(file, color) if file.isatty() else _Plain(file)


RESULT_STYLE = {
    "pass": "green",
    "fail": "bold red",
    "irreversible": "cyan",
    "skipped": "dim",
    "not run": "dim",
}
STATE_STYLE = {
    "applied": "green",
    "pending": "yellow",
    "out-of-order": "bold yellow",
    "modified": "bold red",
    "missing": "bold red",
    "dirty": "bold red",
}


class Output:
    """Human output to stdout, errors to stderr; also a runner Reporter."""

    def __init__(
        self,
        *,
        color: bool = True,
        quiet: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        out = stdout or sys.stdout
        err = stderr or sys.stderr
        self.rich = out.isatty()
        self.quiet = quiet
        self.out = _stream(out, color)
        self.err = _stream(err, color)

    # ---- plain lines ------------------------------------------------------------

    def line(self, text: str = "", style: str | None = None) -> None:
        if not self.quiet:
            self.out.write((text, style or ""))

    def info(self, message: str) -> None:
        self.err.write((message, "cyan"))

    def warn(self, message: str) -> None:
        self.err.write((message, "yellow"))

    def error(self, exc: VezamigError) -> None:
        style = "bold red" if exc.exit_code != 3 else "bold yellow"
        self.err.write((("refused: " if exc.exit_code == 3 else "error: ") + exc.message, style))
        for d in exc.details:
            self.err.write("  " + d)

    # ---- status -------------------------------------------------------------------

    def status(self, info: DatabaseInfo, table: str, rows: Sequence[StatusRow]) -> None:
        current = max((r.version for r in rows if r.applied is not None), default=0)
        pending = sum(1 for r in rows if r.state in ("pending", "out-of-order"))
        self.line(
            f"database {info} · table {table} · current version {current} · {pending} pending"
        )
        if not rows:
            self.line("no migrations found and none recorded")
            return
        # A table only where it fits: a narrow terminal gets the plain lines, which
        # wrap but never cut a version or a state.
        if isinstance(self.out, _Rich) and self.out.console.width >= (
            max(len(str(r.version)) + len(r.name) for r in rows) + 75
        ):
            from rich.table import Table
            from rich.text import Text

            # Every cell is a Text: names come from files and the database, and a plain
            # string would be read as rich markup (`[/]` in a name must not crash).
            t = Table(show_edge=False, header_style="bold")
            t.add_column("version", justify="right", no_wrap=True)
            t.add_column("name", overflow="fold")
            t.add_column("state", no_wrap=True)
            t.add_column("reversible", no_wrap=True)
            t.add_column("applied at", no_wrap=True)
            t.add_column("ms", justify="right", no_wrap=True)
            for r in rows:
                a = r.applied
                t.add_row(
                    Text(str(r.version)),
                    Text(r.name),
                    Text(r.state, style=STATE_STYLE[r.state]),
                    Text("reversible" if r.reversible else "irreversible"),
                    Text(a.applied_at if a else ""),
                    Text(str(a.duration_ms) if a else ""),
                )
            self.out.console.print(t)
        else:
            width = max(len(r.name) for r in rows)
            kind = {True: f"{'reversible':<12}  ", False: f"{'irreversible':<12}  "}
            state = {s: f"{s:<12}  " for s in STATE_STYLE}
            lines = []
            for r in rows:
                a = r.applied
                applied = a.applied_at if a else "-"
                lines.append(
                    f"{r.version:>6}  {r.name.ljust(width)}  {state[r.state]}"
                    f"{kind[r.reversible]}{applied}\n"
                )
            # One write for the table: a flush per row is a system call per version.
            self.out.file.write("".join(lines))
            self.out.file.flush()

    # ---- plan ---------------------------------------------------------------------

    def plan(
        self,
        plan: Plan,
        guards: dict[tuple[int, str], list[GuardResult]] | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
        missing_locks: dict[tuple[int, str], list[tuple[int, str]]] | None = None,
    ) -> None:
        if force and self.quiet:
            self.quiet = False
            try:
                self.plan(plan, guards, dry_run=dry_run, missing_locks=missing_locks)
            finally:
                self.quiet = True
            return
        title = "dry run: " if dry_run else ""
        if not plan.steps and not plan.irreversible:
            self.line(f"{title}nothing to " + ("apply" if plan.direction == "up" else "roll back"))
            return
        if plan.direction == "down":
            stays = (
                "nothing stays applied (every version is rolled back)"
                if plan.stays == 0
                else f"{plan.stays} stays applied"
            )
            n = len(plan.steps) + len(plan.irreversible)
            self.line(
                f"{title}roll back {n} version(s), from {plan.current}; {stays}",
                style="bold",
            )
        else:
            target = f" up to {plan.target}" if plan.target is not None else ""
            self.line(
                f"{title}apply {len(plan.steps)} pending version(s){target}; current "
                f"version {plan.current}",
                style="bold",
            )
        blocked = sorted(plan.irreversible, reverse=True)  # down: descending, as the steps
        for step in plan.steps:
            while blocked and blocked[0][0] > step.version:
                self._plan_irreversible(*blocked.pop(0))
            key = (step.version, step.direction)
            self._plan_step(step, (guards or {}).get(key), (missing_locks or {}).get(key, []))
        for version, name in blocked:
            self._plan_irreversible(version, name)

    def _plan_irreversible(self, version: int, name: str) -> None:
        self.line(f"  down {version} {name}  [irreversible: no down file]", style="bold red")

    def _plan_step(
        self, step: Step, results: list[GuardResult] | None, missing: list[tuple[int, str]]
    ) -> None:
        d = step.directives
        self.line(
            f"  {step.direction:<4} {step.version} {step.migration.name}  "
            f"[{step.mode}]  {step.file.path}"
        )
        for lock in d.locks:
            names = ", ".join(".".join(written_name(p) for p in t) for t in lock.tables)
            gone = [name for line, name in missing if line == lock.line]
            if gone:
                self.line(
                    f"         lock {names} (ACCESS EXCLUSIVE) → {', '.join(gone)} "
                    f"{'does' if len(gone) == 1 else 'do'} not exist now",
                    style="bold red",
                )
            else:
                self.line(f"         lock {names} (ACCESS EXCLUSIVE)")
        for i, g in enumerate(d.guards):
            res = results[i] if results else None
            if res is None and missing:
                self.line(
                    f"         guard (line {g.line}): {g.query} → not evaluated: its lock "
                    "table does not exist now"
                )
            elif res is None:
                self.line(f"         guard (line {g.line}): {g.query}")
            else:
                if res.blocked:
                    style, verdict = "bold yellow", f"cannot be evaluated now: {res.returned}"
                elif res.passed:
                    style, verdict = "green", "passes now"
                else:
                    style, verdict = "bold red", f"REFUSES now: returned {res.returned}"
                self.line(f"         guard (line {g.line}): {g.query} → {verdict}", style=style)

    # ---- progress (Reporter protocol) ----------------------------------------------

    def step_started(self, step: Step) -> None:
        if not self.quiet and self.rich:
            self.out.write(
                (f"  {step.direction:<4} {step.version} {step.migration.name} …", "dim"), end="\r"
            )

    def step_finished(self, result: StepResult) -> None:
        if self.quiet:
            return
        mark = "✓" if self.rich else "ok"
        self.out.write(
            (f"  {mark} ", "green"),
            f"{result.direction:<4} {result.version} {result.name}  ",
            (
                f"{result.duration_ms} ms" + (f" ({result.message})" if result.message else ""),
                "dim",
            ),
        )

    def summary(
        self, results: Sequence[StepResult], direction: str, current: int, elapsed_ms: int = 0
    ) -> None:
        """``elapsed_ms``: the run's wall time, lock-timeout pauses included (the steps'
        own durations leave those out)."""
        if not results:
            self.line("nothing to do" if direction == "up" else "nothing to roll back")
            return
        total = max(elapsed_ms, sum(r.duration_ms for r in results))
        verb = "applied" if direction == "up" else "rolled back"
        self.line(
            f"{verb} {len(results)} version(s) in {total} ms; current version {current}",
            style="bold green",
        )

    # ---- history ------------------------------------------------------------------

    def history(self, rows: Sequence[HistoryRow]) -> None:
        if not rows:
            self.line("no history yet")
            return
        # Nine columns: below 100 characters the table would squeeze versions into one
        # digit per line; the tab-separated lines are clearer there.
        if isinstance(self.out, _Rich) and self.out.console.width >= 100:
            from rich.table import Table
            from rich.text import Text

            t = Table(show_edge=False, header_style="bold")
            for col in ("id", "when", "version"):
                t.add_column(col, no_wrap=True, justify="right" if col != "when" else "left")
            for col in ("name", "direction", "outcome", "ms", "who", "message"):
                t.add_column(col, overflow="fold", no_wrap=col in ("direction", "outcome"))
            for r in rows:
                style = {"ok": "green", "failed": "red", "refused": "yellow"}.get(r.outcome, "")
                # Text cells: stored names and messages are never read as rich markup.
                t.add_row(
                    Text(str(r.id)),
                    Text(r.started_to_the_second),
                    Text(str(r.version if r.version is not None else "")),
                    Text(r.name or ""),
                    Text(r.direction),
                    Text(r.outcome, style=style),
                    Text(str(r.duration_ms if r.duration_ms is not None else "")),
                    Text(f"{r.db_user} ({r.os_user or ''}@{r.host or ''})"),
                    Text(r.message or ""),
                )
            self.out.console.print(t)
        else:
            for r in rows:
                # Tab-separated, for cut -f.
                self.out.file.write(
                    f"{r.id}\t{r.started_to_the_second}\t{_blank(r.version)}\t"
                    f"{_blank(r.name)}\t{r.direction}\t{r.outcome}\t{_blank(r.duration_ms)}\t"
                    f"{r.db_user}\t{_blank(r.os_user)}@{_blank(r.host)}\t{r.message or ''}\n"
                )

    # ---- roundtrip ------------------------------------------------------------------

    def roundtrip_progress(self, v: VersionReport) -> None:
        # A failing version is an error: on stderr, also with --quiet.
        failed = v.result == "fail"
        if self.quiet and not failed:
            return
        stream = self.err if failed else self.out
        stream.write(
            (f"  {v.result:<12}", RESULT_STYLE.get(v.result, "")),
            f" {v.version} {v.name}  ",
            (f"{v.duration_ms} ms", "dim"),
        )
        for p in v.problems:
            stream.write(("      " + p, "red"))

    def roundtrip_summary(self, report: RoundtripReport) -> None:
        # Each version's line was printed as it finished (roundtrip_progress): the
        # summary is one line, on a terminal as in a pipe.
        style = "bold green" if report.ok else "bold red"
        extra = "".join(
            f", {report.count(r)} {r}" for r in ("skipped", "not run") if report.count(r)
        )
        not_run = [v for v in report.versions if v.result == "not run"]
        if not_run:
            # Named, not only counted: which versions this run did not check, and why.
            why = not_run[0].problems[0].removeprefix("not run: ") if not_run[0].problems else ""
            shown = ", ".join(str(v.version) for v in not_run[:10])
            more = f" and {len(not_run) - 10} more" if len(not_run) > 10 else ""
            self.err.write((f"  not run: {shown}{more} ({why}: the run stopped there)", "dim"))
        self.line(
            f"roundtrip: {report.count('pass')} passed, {report.count('fail')} failed, "
            f"{report.count('irreversible')} irreversible (applied, not reversible)"
            f"{extra}",
            style=style,
        )


def _blank(value: object) -> str:
    """A NULL (hand-edited history) as an empty field, never `None`."""
    return "" if value is None else str(value)
