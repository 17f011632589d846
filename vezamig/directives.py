"""Directives in a migration's header comments (SPEC §2).

A directive is a comment whose text starts with ``vezamig:``. Only the header
(comments before the first SQL statement) may hold them, so the rules of a
step are visible at the top of its file; anywhere else they are an error, as
is an unknown name (``vezamig:gaurd``) — a typo must never silently disable a
guard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vezamig.files import PREFIX

if TYPE_CHECKING:
    from vezamig.sqltext import Comment

KNOWN = ("guard", "lock", "no-transaction")
# Almost a directive: another case, a space before the colon, a full-width colon, or
# up to three other characters that are not letters or digits (none at all, too)
# before a known name (`VEZAMIG:guard`, `vezamig guard …`, `vezamig-guard`,
# `vezamig;guard`, `vezamigguard`, `vezamig no_transaction`). Reported, so that a typo
# cannot silently switch a guard off; prose such as `-- vezamig runs this file …` or
# `-- vezamig guards it` is left alone.
_LOOKALIKE = re.compile(
    r"vezamig\s*[:\uff1a]|vezamig[\W_]{0,3}(?:guard|lock|no[\W_]{0,2}transaction)\b", re.I
)
# What may stand before a look-alike on its line: comment markers some styles add
# (`---`, `/**`, `--!`, `/*+`, ` * ` in a block), list marks, quotes, a zero-width
# space: anything but a letter. A directive in quotes that close on its line
# (`"-- vezamig:guard …"`, as `vezamig new` writes in its templates) is
# documentation, not a typo; a quote that does not close is a typo like any other.
_LEADING = re.compile(r"^[\W\d_]+")
_QUOTES = "\"'`"

_LINE_BREAK = re.compile(r"\r\n?|\n")  # line ends as in sqltext.line_col
# Where else a look-alike can start a row as a reader sees it: after a character an
# editor or a terminal shows as a line break (form feed, vertical tab, NEL, U+2028,
# U+2029; `str.splitlines` counts them too) and after a nested comment's `/*`.
_ROW_BREAK = re.compile(r"[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]|/\*")


@dataclass(frozen=True)
class Guard:
    """A query that must return exactly one row whose first column is true."""

    query: str
    line: int


@dataclass(frozen=True)
class TableLock:
    """Tables to lock ACCESS EXCLUSIVE at the start of the step's transaction."""

    tables: tuple[tuple[str, ...], ...]
    line: int


@dataclass(frozen=True)
class Directives:
    guards: tuple[Guard, ...] = ()
    locks: tuple[TableLock, ...] = ()
    no_transaction: bool = False

    @property
    def lock_tables(self) -> list[tuple[str, ...]]:
        return [t for lock in self.locks for t in lock.tables]


@dataclass
class ParsedHeader:
    directives: Directives
    problems: list[str] = field(default_factory=list)
    has_sql: bool = True
    # False: a plain header read without the lexer, whose body was not lexed
    # (parse_directives); SqlFile.body_lexer_problems lexes it for a file about to run.
    lexed: bool = True


def parse_directives(text: str, label: str, *, lex_body: bool = True) -> ParsedHeader:
    """Read the directives of one file; ``problems`` holds every error as ``file:line: …``.

    ``lex_body=False`` (for files the command will not run): a plain header is read
    without the lexer (sqltext.plain_header_comments), so a lexer error in the body
    is not reported, as for a file without directives (``lexed`` says so).
    """
    from vezamig.sqltext import directive_comments, line_col, plain_header_comments

    problems: list[str] = []
    found = None if lex_body else plain_header_comments(text)
    header, body, first, error = found or directive_comments(text)
    if error is not None:
        # The file is refused for its syntax, but its comments up to the error are
        # still checked, so one run shows every problem.
        problems.append(f"{label}:{error.line}:{error.column}: {error.one_line}")
    for comment in (*header, *body):
        if _is_directive(comment):
            continue
        raw = text[comment.start : comment.end]  # with its markers and line breaks
        rows = (
            (n, row)
            for n, line in enumerate(_LINE_BREAK.split(raw))
            for row in _ROW_BREAK.split(line)
        )
        for n, row in rows:
            # `--- …`, `/** …`, ` * …` inside a block, a closing `*/`
            lead = _LEADING.match(row)
            row = row[lead.end() :] if lead else row
            row = row.strip().removesuffix("*/").rstrip()
            quoted = lead is not None and any(q in lead[0] and q in row for q in _QUOTES)
            if not quoted and _LOOKALIKE.match(row):
                problems.append(
                    f"{label}:{comment.line + n}: `{row}` looks like a directive but is not "
                    "one; write directives as `vezamig:NAME` (lower case, a colon, no "
                    "space) at the start of a comment"
                )
                break
    for comment in body:
        if _is_directive(comment):
            problems.append(
                f"{label}:{comment.line}: directive `{_name(comment)}` after the first SQL "
                "statement; move it into the header comments at the top of the file"
            )
    guards: list[Guard] = []
    locks: list[TableLock] = []
    no_tx_line: int | None = None
    for comment in header:
        if not _is_directive(comment):
            continue
        name = _name(comment)
        args = _args(comment)
        where = f"{label}:{comment.line}"
        if name == "guard":
            if not args:
                problems.append(
                    f"{where}: `vezamig:guard` needs a query, e.g. "
                    "`-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM t)`"
                )
                continue
            # Where the query starts in the file: a syntax error in it is placed at the
            # file's line and column, as one in the body is.
            raw = text[comment.start : comment.end]
            after_name = max(raw.find(PREFIX), 0) + len(PREFIX) + len(name)
            start = comment.start + max(raw.find(args, after_name), 0)
            problem, offset = _check_guard_query(args)
            if problem:
                if offset is not None:
                    pos = line_col(text, start + offset)
                    where = f"{label}:{pos.line}:{pos.column}"
                problems.append(f"{where}: guard {problem}")
                continue
            # The line of `vezamig:guard` itself, which a block comment may open above.
            guards.append(
                Guard(args, line_col(text, comment.start + max(raw.find(PREFIX), 0)).line)
            )
        elif name == "lock":
            tables, problem = parse_lock_tables(args)
            if problem:
                problems.append(f"{where}: lock {problem}")
                continue
            locks.append(TableLock(tables, comment.line))
        elif name == "no-transaction":
            if args:
                problems.append(f"{where}: `vezamig:no-transaction` takes no arguments")
            no_tx_line = comment.line
        else:
            known = ", ".join(KNOWN)
            problems.append(f"{where}: unknown directive `vezamig:{name}` (known: {known})")
    if no_tx_line is not None and locks:
        problems.append(
            f"{label}:{no_tx_line}: `vezamig:no-transaction` cannot be combined with "
            f"`vezamig:lock` (line {locks[0].line}): a lock only lives as long as a transaction"
        )
    directives = Directives(tuple(guards), tuple(locks), no_tx_line is not None)
    problems.sort(key=lambda p: _line_of(p, label))  # in file order, whichever check found it
    return ParsedHeader(
        directives, problems, has_sql=first is not None or error is not None, lexed=found is None
    )


def _line_of(problem: str, label: str) -> int:
    """The line of a ``label:line[:column]: …`` problem."""
    head = problem[len(label) + 1 :].split(":", 1)[0]
    return int(head) if problem.startswith(label + ":") and head.isdigit() else 0


def _is_directive(comment: Comment) -> bool:
    return comment.text.strip().startswith(PREFIX)


def _name(comment: Comment) -> str:
    rest = comment.text.strip()[len(PREFIX) :]
    return rest.split(None, 1)[0] if rest and not rest[0].isspace() else ""


def _args(comment: Comment) -> str:
    rest = comment.text.strip()[len(PREFIX) :]
    parts = rest.split(None, 1)
    return parts[1].strip() if len(parts) == 2 and rest and not rest[0].isspace() else ""


def _check_guard_query(query: str) -> tuple[str | None, int | None]:
    """A guard must be one read-only query; PostgreSQL's parser decides. The problem,
    and for a syntax error where it is in the query (a character offset)."""
    from pglast import ast, parse_sql
    from pglast.parser import ParseError

    try:
        stmts = parse_sql(query)
    except ParseError as exc:
        location = exc.args[1] if len(exc.args) > 1 else None
        # No location means "at end of input" (e.g. `-- vezamig:guard (`); pglast gives
        # a 0-based character offset.
        offset = len(query) if location is None else max(0, min(int(location), len(query)))
        return f"query is not valid SQL ({exc.args[0]}): {query}", offset
    if len(stmts) != 1:
        return f"must be exactly one query, found {len(stmts)}: {query}", None
    stmt = stmts[0].stmt
    if not isinstance(stmt, ast.SelectStmt) or stmt.intoClause is not None:
        return f"must be a SELECT (or VALUES) query: {query}", None
    found = _writes(stmt(skip_none=True))
    if found:
        # Guards run read-only, so the server would refuse these every time (25006):
        # say so before the run, naming what is wrong.
        return f"must only read, but has {found} (guards run read-only): {query}", None
    return None, None


_WRITES = {
    "InsertStmt": "an INSERT",
    "UpdateStmt": "an UPDATE",
    "DeleteStmt": "a DELETE",
    "MergeStmt": "a MERGE",
    "LockingClause": "FOR UPDATE/SHARE",
}


def _writes(tree: object) -> str | None:
    """What in a guard's serialised tree would write or lock rows (a data-modifying
    WITH, FOR UPDATE), at any depth."""
    if isinstance(tree, dict):
        if tree.get("@") in _WRITES:
            return _WRITES[tree["@"]]
        tree = tuple(tree.values())
    if isinstance(tree, tuple | list):
        for item in tree:
            found = _writes(item)
            if found:
                return found
    return None


def parse_lock_tables(args: str) -> tuple[tuple[tuple[str, ...], ...], str | None]:
    """Parse ``t1, schema.t2`` with PostgreSQL's parser; names are quoted later, never pasted."""
    from pglast import ast, parse_sql
    from pglast.parser import ParseError

    if not args:
        return (), "needs at least one table name, e.g. `-- vezamig:lock tracks`"
    try:
        stmts = parse_sql(f"LOCK TABLE {args}")
    except ParseError:
        stmts = ()
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.LockStmt):
        return (), f"expects a comma-separated list of table names, got: {args}"
    stmt = stmts[0].stmt
    if stmt.mode != 8 or stmt.nowait:  # 8 = AccessExclusiveLock, the only mode we take
        return (), f"takes table names only (vezamig always locks ACCESS EXCLUSIVE): {args}"
    tables: list[tuple[str, ...]] = []
    for rel in stmt.relations or ():
        if rel.catalogname:
            return (), f"cannot name another database: {args}"
        parts = (rel.schemaname, rel.relname) if rel.schemaname else (rel.relname,)
        tables.append(tuple(parts))
    return tuple(tables), None
