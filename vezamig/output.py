"""Rendering for people: the only module that imports rich.

On a terminal: colour, tables and a plan panel. Anywhere else (pipes, CI
logs): plain, stable lines that scripts can grep, written without importing
rich at all (it costs tens of milliseconds of start-up). ``--json`` bypasses
this module's human output entirely.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TextIO

from vezamig.errors import OutputLost, VezamigError
from vezamig.sqltext import written_name

if TYPE_CHECKING:
    from rich.console import Console

    from vezamig.db import DatabaseInfo
    from vezamig.plan import Plan, StatusRow, Step
    from vezamig.roundtrip import RoundtripReport, VersionReport
    from vezamig.runner import GuardResult, StepResult
    from vezamig.state import HistoryRow

Part = tuple[str, str]  # (text, rich style)

# Control characters and bidirectional overrides that come from files and the database
# (a row value in an error message, a name, a guard): an ESC that clears the screen, a
# CR that writes over a version, a backspace that hides part of a query. They are
# shown as escapes, in a terminal as in a log; tabs and line breaks stay.
# A byte of a path that is not UTF-8 (Python keeps it as a lone surrogate, which no
# UTF-8 terminal can be sent) is shown as the byte it is, \xe9.
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def visible(text: str) -> str:
    if _CONTROL_RE.search(text) is None:
        return text
    return _CONTROL_RE.sub(lambda m: _escape(m[0]), text)


def _escape(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for a byte
        code -= 0xDC00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _text(part: Part | str) -> str:
    return visible(part if isinstance(part, str) else part[0])


@contextmanager
def _writing(stream: str) -> Iterator[None]:
    """A write to stdout that fails (a full disk, a reader gone) is one error of
    vezamig's own, naming the stream; a run stops at the next step boundary. One to
    stderr is dropped: nothing could say so, and the exit code still tells."""
    try:
        yield
    except OSError as exc:
        if stream == "stdout":
            raise OutputLost(exc, stream) from None


class _Plain:
    """A stream of plain lines, flushed at once so CI logs show progress live."""

    rich = False

    def __init__(self, file: TextIO, name: str) -> None:
        self.file = file
        self.name = name

    def write(self, *parts: Part | str, end: str = "\n") -> None:
        self.emit("".join(map(_text, parts)) + end)

    def emit(self, text: str) -> None:
        """Text already made visible, in one write (a table: not a flush per row)."""
        with _writing(self.name):
            self.file.write(text)
            self.file.flush()


class _Rich(_Plain):
    rich = True

    def __init__(self, file: TextIO, name: str, color: bool) -> None:
        from rich.console import Console

        super().__init__(file, name)
        # No colour means no escape codes at all (bold and dim too), as NO_COLOR asks.
        system: Literal["auto"] | None = "auto" if color else None
        self.console: Console = Console(
            file=file, no_color=not color, highlight=False, color_system=system, emoji=False
        )

    def write(self, *parts: Part | str, end: str = "\n") -> None:
        from rich.text import Text

        text = Text.assemble(*((_text(p), "" if isinstance(p, str) else p[1]) for p in parts))
        self.print(text, end=end)

    def print(self, renderable: Any, end: str = "\n", soft_wrap: bool = True) -> None:
        with _writing(self.name):
            self.console.print(renderable, end=end, soft_wrap=soft_wrap)

    def progress(self, text: str, style: str) -> None:
        """A line the next one overwrites (``\r``): cut to the terminal's width, since a
        wrapped line would leave its first rows behind."""
        from rich.text import Text

        line = Text(visible(text), style=style)
        line.truncate(max(self.console.width - 1, 1), overflow="ellipsis")
        self.print(line, end="\r")

    def clear_line(self) -> None:
        self.emit("\r" + " " * max(self.console.width - 1, 0) + "\r")


def _cell(text: str, style: str = "") -> Any:
    """A table cell: a rich Text (never read as markup), control characters shown."""
    from rich.text import Text

    return Text(visible(text), style=style)


def _stream(file: TextIO, name: str, color: bool) -> _Plain | _Rich:
    return _Rich(file, name, color) if file.isatty() else _Plain(file, name)


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
        self.out = _stream(out, "stdout", color)
        self.err = _stream(err, "stderr", color)
        self._progress = False  # a step's progress line is on the terminal

    def _end_progress(self) -> None:
        """Whatever comes next (on stdout or stderr: the same terminal) starts on a
        clean line, however short it is."""
        if self._progress and isinstance(self.out, _Rich):
            self.out.clear_line()
        self._progress = False

    # ---- plain lines ------------------------------------------------------------

    def line(self, text: str = "", style: str | None = None) -> None:
        if not self.quiet:
            self._end_progress()
            self.out.write((text, style or ""))

    def info(self, message: str) -> None:
        self._end_progress()
        self.err.write((message, "cyan"))

    def warn(self, message: str) -> None:
        self._end_progress()
        self.err.write((message, "yellow"))

    def error(self, exc: VezamigError) -> None:
        self._end_progress()
        style = "bold red" if exc.exit_code != 3 else "bold yellow"
        self.err.write((("refused: " if exc.exit_code == 3 else "error: ") + exc.message, style))
        for d in exc.details:
            # A message of several lines (a guard written over lines, a server detail)
            # stays indented under its line.
            self.err.write("  " + d.replace("\n", "\n    "))

    # ---- status -------------------------------------------------------------------

    def status(self, info: DatabaseInfo, table: str, rows: Sequence[StatusRow]) -> None:
        if self.quiet:  # `status --exit-code -q`: the exit code says it
            return
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
        if isinstance(self.out, _Rich) and self.out.console.width >= _table_width(
            [
                [str(r.version) for r in rows],
                [visible(r.name) for r in rows],
                ["out-of-order" if any(r.state == "out-of-order" for r in rows) else "dirty"],
                ["irreversible"],
                [r.applied.applied_at for r in rows if r.applied] or [""],
                [str(r.applied.duration_ms) for r in rows if r.applied] or [""],
            ],
            ["version", "name", "state", "reversible", "applied at", "ms"],
        ):
            from rich.table import Table

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
                    _cell(str(r.version)),
                    _cell(r.name),
                    _cell(r.state, STATE_STYLE[r.state]),
                    _cell("reversible" if r.reversible else "irreversible"),
                    _cell(a.applied_at if a else ""),
                    _cell(str(a.duration_ms) if a else ""),
                )
            self.out.print(t, soft_wrap=False)
        else:
            width = max(len(visible(r.name)) for r in rows)
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
            self.out.emit(visible("".join(lines)))

    # ---- plan ---------------------------------------------------------------------

    def plan(
        self,
        plan: Plan,
        guards: dict[tuple[int, str], list[GuardResult]] | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
        missing_locks: dict[tuple[int, str], list[tuple[int, str, str]]] | None = None,
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
        self, step: Step, results: list[GuardResult] | None, missing: list[tuple[int, str, str]]
    ) -> None:
        d = step.directives
        self.line(
            f"  {step.direction:<4} {step.version} {step.migration.name}  "
            f"[{step.mode}]  {step.file.path}"
        )
        for lock in d.locks:
            names = ", ".join(".".join(written_name(p) for p in t) for t in lock.tables)
            gone = [f"{name} {why}" for line, name, why in missing if line == lock.line]
            if gone:
                self.line(
                    f"         lock {names} (ACCESS EXCLUSIVE) → {'; '.join(gone)} now",
                    style="bold red",
                )
            else:
                self.line(f"         lock {names} (ACCESS EXCLUSIVE)")
        for i, g in enumerate(d.guards):
            # A block guard written over several lines: continued under its start.
            query = g.query.replace("\n", "\n" + " " * 11)
            res = results[i] if results else None
            if res is None and missing:
                self.line(
                    f"         guard (line {g.line}): {query} → not evaluated: its lock "
                    "cannot be taken now"
                )
            elif res is None:
                self.line(f"         guard (line {g.line}): {query}")
            else:
                if res.blocked:
                    style, verdict = "bold yellow", f"cannot be evaluated now: {res.returned}"
                elif res.passed:
                    style, verdict = "green", "passes now"
                else:
                    style, verdict = "bold red", f"REFUSES now: returned {res.returned}"
                self.line(f"         guard (line {g.line}): {query} → {verdict}", style=style)

    # ---- progress (Reporter protocol) ----------------------------------------------

    def step_started(self, step: Step) -> None:
        if not self.quiet and isinstance(self.out, _Rich):
            self._end_progress()
            self.out.progress(
                f"  {step.direction:<4} {step.version} {step.migration.name} …", "dim"
            )
            self._progress = True

    def step_finished(self, result: StepResult) -> None:
        if self.quiet:
            return
        self._end_progress()
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
        if self.quiet:
            return
        if not rows:
            self.line("no history yet")
            return
        who = [f"{r.db_user} ({r.os_user or ''}@{r.host or ''})" for r in rows]
        # A table only where every cell fits without breaking a word (a file:line, a
        # path, a name); else the tab-separated lines, which never cut anything.
        if isinstance(self.out, _Rich) and self.out.console.width >= _table_width(
            [
                [str(r.id) for r in rows],
                [r.started_to_the_second for r in rows],
                [_blank(r.version) for r in rows],
                [visible(r.name or "") for r in rows],
                [r.direction for r in rows],
                [r.outcome for r in rows],
                [_blank(r.duration_ms) for r in rows],
                [visible(w) for w in who],
                [visible(r.message or "") for r in rows],
            ],
            ["id", "when", "version", "name", "direction", "outcome", "ms", "who", "message"],
            wrap={7, 8},
        ):
            from rich.table import Table

            t = Table(show_edge=False, header_style="bold")
            for col in ("id", "when", "version"):
                t.add_column(col, no_wrap=True, justify="right" if col != "when" else "left")
            for col in ("name", "direction", "outcome", "ms", "who", "message"):
                t.add_column(col, overflow="fold", no_wrap=col in ("direction", "outcome"))
            for r, w in zip(rows, who, strict=True):
                style = {"ok": "green", "failed": "red", "refused": "yellow"}.get(r.outcome, "")
                # Text cells: stored names and messages are never read as rich markup.
                t.add_row(
                    _cell(str(r.id)),
                    _cell(r.started_to_the_second),
                    _cell(_blank(r.version)),
                    _cell(r.name or ""),
                    _cell(r.direction),
                    _cell(r.outcome, style),
                    _cell(_blank(r.duration_ms)),
                    _cell(w),
                    _cell(r.message or ""),
                )
            self.out.print(t, soft_wrap=False)
        else:
            lines = [
                # Tab-separated, for cut -f; a tab in a stored value would shift the
                # fields, so it is shown as an escape here.
                "\t".join(
                    visible(str(v)).replace("\t", "\\x09")
                    for v in (
                        r.id,
                        r.started_to_the_second,
                        _blank(r.version),
                        _blank(r.name),
                        r.direction,
                        r.outcome,
                        _blank(r.duration_ms),
                        r.db_user,
                        f"{_blank(r.os_user)}@{_blank(r.host)}",
                        r.message or "",
                    )
                )
                + "\n"
                for r in rows
            ]
            self.out.emit("".join(lines))

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


def _table_width(
    columns: list[list[str]], headers: list[str], wrap: frozenset[int] | set[int] = frozenset()
) -> int:
    """The terminal width a rich table needs so that no cell breaks inside a word:
    the widest cell of each column (its longest word for the ``wrap`` columns, which
    may wrap between words), plus rich's padding and separators (3 per column)."""
    from rich.cells import cell_len

    total = 0
    for i, (cells, header) in enumerate(zip(columns, headers, strict=True)):
        if i in wrap:
            widest = max((cell_len(w) for c in cells for w in c.split()), default=0)
        else:
            widest = max((cell_len(c) for c in cells), default=0)
        total += max(widest, cell_len(header)) + 3
    return total


def _blank(value: object) -> str:
    """A NULL (hand-edited history) as an empty field, never `None`."""
    return "" if value is None else str(value)
