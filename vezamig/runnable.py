"""Statements a step cannot run, found before anything runs (`up`, `down`, `verify`).

Checked for every step of every run, so the common case costs one regular
expression: PostgreSQL's parser (pglast, tens of milliseconds to import, and
seconds for a seed file of 200,000 INSERTs) runs only for a body where one of the
words below could start a statement: at the start of the text or of a line, or
after `;` or `*/` (and blanks). A statement starts after the previous one's `;`,
blanks and comments, and a comment ends at a line end (`--`) or at `*/`, so no
statement is missed; data such as `'start'` or `'end'` inside a row is not a reason.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vezamig.sqltext import SqlFile

_COPY_STDIN = re.compile(r"^[ \t]*COPY\b[^;]*?\bFROM\s+STDIN\b", re.I | re.M)
_ENDS_HERE = re.compile(r"[ \t]*;")  # pg_dump: `COPY t (a, b) FROM stdin;` on one line
_COPY_PROBLEM = (
    "`COPY … {way}` exchanges rows with the client, which vezamig does not do; use "
    "INSERT … VALUES (or COPY from a file on the database server) to load rows, and drop "
    "a COPY TO STDOUT"
)
_ENDS_PROBLEM = (
    "`{what}` is transaction control inside the step's own transaction (a COMMIT or "
    "ROLLBACK there would end it before vezamig records the step); remove "
    "BEGIN/COMMIT/ROLLBACK (each step already runs in its own transaction; use "
    "`-- vezamig:no-transaction` for statements that cannot)"
)
# In a no-transaction file, vezamig's own progress rows commit between statements:
# inside an author's BEGIN … COMMIT, the first one would commit it half-way.
_NO_TX_ENDS_PROBLEM = (
    "`{what}` in a non-transactional file: vezamig records progress between its "
    "statements in transactions of its own, which would commit yours half-way; put the "
    "statements that must be atomic in a transactional file of their own, without "
    "BEGIN/COMMIT"
)
# DISCARD ALL ends every session-level lock, vezamig's run lock included (it cannot run
# in a transaction, so only a non-transactional file can hold it).
_DISCARD_ALL_PROBLEM = (
    "`DISCARD ALL` in a non-transactional file: it would release vezamig's run lock "
    "(and reset its session) while the step runs, letting another run in; use DISCARD "
    "TEMP, DISCARD PLANS or DEALLOCATE ALL for what you need (each step's session is "
    "reset after it anyway)"
)
# Settings a non-transactional file must not change for the statements after it:
# vezamig sends each of them as UTF-8 text that it split beforehand, reading '…'
# strings as standard_conforming_strings on reads them.
_SESSION_PROBLEMS = {
    "client_encoding": (
        "`SET {what}` in a non-transactional file: vezamig sends each of the file's "
        "statements as UTF-8 (its files are UTF-8), so after it a statement with a "
        "character that encoding lacks could not be sent; remove it (each step's session "
        "is reset after it anyway)"
    ),
    "standard_conforming_strings": (
        "`SET {what}` in a non-transactional file: vezamig splits the file into statements "
        "before it runs, reading '…' strings with standard_conforming_strings on; with it "
        "off, a backslash in a string would make the server read other statements than "
        "those vezamig checked and records; write such strings as E'…' instead"
    ),
}
# Values that keep things as vezamig reads them (PostgreSQL's spellings).
_HARMLESS = {
    "client_encoding": {"utf8", "utf-8", "unicode"},
    "standard_conforming_strings": {"on", "true", "yes", "1", "t", "y"},
}
_SESSION_WORDS = re.compile(r"\b(?:client_encoding|names|standard_conforming_strings)\b")
# The same settings changed by a function call, found in the text (a query can call it
# anywhere): set_config('client_encoding', …).
_SET_CONFIG = re.compile(
    r"set_config\s*\(\s*'(client_encoding|standard_conforming_strings)'", re.IGNORECASE
)
_WORDS = ("begin", "start", "commit", "rollback", "end", "abort", "prepare", "copy", "discard")
# On the lower-cased text (PostgreSQL folds keywords as ASCII): a `[;/\r\n]` to anchor
# on is ≈ 4 times faster than `^` with re.M, which is tried at every position.
_AFTER_BREAK = re.compile(r"[;/\r\n]\s*(?:" + "|".join(_WORDS) + r")\b")


def may_hold_run_words(text: str) -> bool:
    """Whether one of the words could start a statement (see the module's doc)."""
    low = text.lower()
    return low.lstrip().startswith(_WORDS) or _AFTER_BREAK.search(low) is not None


def run_problems(text: str, label: str, *, no_transaction: bool) -> list[str]:
    """Statements a step cannot run correctly, as ``file:line: …``; `up`/`down` refuse
    the plan on any (exit 2) and `verify` reports them as problems.

    - In a transactional body, transaction control (BEGIN, COMMIT, ROLLBACK, PREPARE
      TRANSACTION, …) would end the step's transaction before its bookkeeping: half a
      step committed without its record, or a record of changes thrown away. In a
      non-transactional one, vezamig's progress rows between statements would commit
      an author's open transaction half-way.
    - ``COPY … FROM STDIN`` / ``TO STDOUT`` exchange rows with the client, which
      vezamig does not do: the server would go on with the rest of the step while
      the client reports an error, so the outcome could not be told truthfully.
    """
    problems = set_config_problems(text, label) if no_transaction else []
    if not may_hold_run_words(text) and not (
        no_transaction and _SESSION_WORDS.search(text.lower()) is not None
    ):
        return problems
    from vezamig.sqltext import analyze_pieces

    found = problems
    problems = []
    for piece in analyze_pieces(text):
        if piece.whole:
            problems = []  # supersedes the pieces before it
        problems += parsed_run_problems(
            piece.parsed, label, no_transaction=no_transaction, line_base=piece.line_base
        )
    return found + problems


def set_config_problems(text: str, label: str) -> list[str]:
    """A non-transactional file's `set_config('client_encoding', …)` (or of
    standard_conforming_strings): the function-call spelling of the SETs refused in
    parsed_run_problems, found in the text wherever a query calls it."""
    problems = []
    for m in _SET_CONFIG.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        name = m.group(1).lower()
        template = _SESSION_PROBLEMS[name].replace("`SET {what}`", "`{what}`")
        problems.append(f"{label}:{line}: {template.format(what=f'set_config({name!r}, …)')}")
    return problems


def copy_stdin_problems(text: str, label: str, error_line: int, *, line_base: int = 0) -> list[str]:
    """pg_dump's `COPY t FROM stdin;` followed by its rows and `\\.` does not parse as
    SQL: when the file's syntax error (at ``error_line``, in ``text``) is on the line
    after such a COPY, its first row, name the COPY rather than leave only that error.
    Any other syntax error stays the file's problem, whatever COPY text is elsewhere."""
    from vezamig.sqltext import line_col

    for m in _COPY_STDIN.finditer(text):
        line = line_col(text, m.start()).line
        if _ENDS_HERE.match(text, m.end()) and line + 1 == error_line:
            return [f"{label}:{line + line_base}: " + _COPY_PROBLEM.format(way="FROM STDIN")]
    return []


def split_problems(text: str, label: str) -> list[str]:
    """A non-transactional file is split into statements by vezamig before it runs,
    with pglast: one it cannot parse is refused with the plan (exit 2, nothing run),
    not found when its step is reached, after the steps before it committed."""
    from vezamig.sqltext import analyze, psql_hint

    err = analyze(text).error
    if err is None:
        return []
    hint = psql_hint(err.one_line)
    if hint:
        return [f"{label}:{err.line}:{err.column}: {err.one_line}: {hint}"]
    return [
        f"{label}:{err.line}:{err.column}: {err.one_line}: a non-transactional file is split "
        "into statements by PostgreSQL's parser before it runs (pglast, PostgreSQL 18's "
        "grammar), so it must parse; if your server accepts this, quote the identifier a "
        'newer version reserves (such as "system_user")'
    ]


def parsed_run_problems(
    parsed: SqlFile, label: str, *, no_transaction: bool, line_base: int = 0
) -> list[str]:
    """``run_problems`` of a file (or a piece of one, ``line_base`` lines in) already
    analysed, as ``verify`` has it."""
    from pglast import ast
    from pglast.enums import DiscardMode, TransactionStmtKind, VariableSetKind

    from vezamig.lint import ENDS_PREPARED, TRANSACTION_CONTROL

    problems: list[str] = []
    if parsed.error is not None:
        problems = copy_stdin_problems(parsed.text, label, parsed.error.line, line_base=line_base)
        if problems:
            return problems
        # pglast's grammar may reject what the server accepts: look word by word.
        text = parsed.text
        return _word_by_word(text, label, no_transaction=no_transaction, line_base=line_base)
    for statement, node in zip(parsed.statements, parsed.nodes, strict=False):
        stmt = node.stmt
        line = statement.line + line_base
        if isinstance(stmt, ast.TransactionStmt):
            kind = None if stmt.kind is None else TransactionStmtKind(stmt.kind)
            if kind in TRANSACTION_CONTROL and not (no_transaction and kind in ENDS_PREPARED):
                words = " ".join(statement.text.rstrip(";").split())[:40]
                template = _NO_TX_ENDS_PROBLEM if no_transaction else _ENDS_PROBLEM
                problems.append(f"{label}:{line}: {template.format(what=words)}")
        elif (
            no_transaction
            and isinstance(stmt, ast.DiscardStmt)
            and stmt.target == DiscardMode.DISCARD_ALL
        ):
            problems.append(f"{label}:{line}: {_DISCARD_ALL_PROBLEM}")
        elif (
            no_transaction
            and isinstance(stmt, ast.VariableSetStmt)
            and stmt.name in _SESSION_PROBLEMS
            and stmt.kind == VariableSetKind.VAR_SET_VALUE
            and not stmt.is_local  # SET LOCAL outside a transaction: no effect
            and _set_value(stmt) not in _HARMLESS[stmt.name]
        ):
            words = " ".join(statement.text.rstrip(";").split())[:50]
            words = words[4:] if words[:4].lower() == "set " else words
            problems.append(f"{label}:{line}: {_SESSION_PROBLEMS[stmt.name].format(what=words)}")
        elif isinstance(stmt, ast.CopyStmt) and stmt.filename is None and not stmt.is_program:
            way = "FROM STDIN" if stmt.is_from else "TO STDOUT"
            problems.append(f"{label}:{line}: {_COPY_PROBLEM.format(way=way)}")
    return problems


def _set_value(stmt: Any) -> str | None:
    """The one value of a `SET name = value`, lower-cased, or None."""
    args: tuple[Any, ...] = tuple(stmt.args or ())
    val = getattr(args[0], "val", None) if len(args) == 1 else None
    value = getattr(val, "sval", None) or getattr(val, "ival", None)
    return None if value is None else str(value).lower()


# First tokens (pglast's names) of statements that end a transaction, and what the
# second must be for it to be one (START TRANSACTION, not START; ROLLBACK, not
# ROLLBACK TO SAVEPOINT).
_ENDS_TRANSACTION = {
    "BEGIN_P": "BEGIN",
    "START": "START TRANSACTION",
    "COMMIT": "COMMIT",
    "END_P": "END",
    "ABORT_P": "ABORT",
    "ROLLBACK": "ROLLBACK",
    "PREPARE": "PREPARE TRANSACTION",
}


def _word_by_word(text: str, label: str, *, no_transaction: bool, line_base: int) -> list[str]:
    """run_problems for a file pglast cannot parse, from the lexer's statements: the
    server may parse it, and would then run a COMMIT in it, half a step committed."""
    from vezamig.sqltext import LineIndex, lexical_statements

    statements = lexical_statements(text)
    if statements is None:
        return []  # the server's lexer refuses the message too: nothing of it runs
    lines = LineIndex(text)
    problems: list[str] = []
    for words in statements:
        names = [w.name for w in words[:4]]
        first = names[0]
        line = lines.position(words[0].start).line + line_base
        what = _ENDS_TRANSACTION.get(first)
        if (
            what is not None
            and not (first in ("START", "PREPARE") and names[1:2] != ["TRANSACTION"])
            and not (first in ("ROLLBACK", "ABORT_P") and "TO" in names[1:3])
            and not (
                no_transaction and first in ("COMMIT", "ROLLBACK") and names[1:2] == ["PREPARED"]
            )
        ):
            template = _NO_TX_ENDS_PROBLEM if no_transaction else _ENDS_PROBLEM
            problems.append(
                f"{label}:{line}: {template.format(what=what)} (found by the lexer: "
                "vezamig's parser, PostgreSQL 18's grammar, cannot read this file)"
            )
        elif first == "COPY" and {"STDIN", "STDOUT"} & {w.name for w in words}:
            way = "FROM STDIN" if any(w.name == "STDIN" for w in words) else "TO STDOUT"
            problems.append(f"{label}:{line}: {_COPY_PROBLEM.format(way=way)}")
    return problems


# Statements whose target is a table: (type name, attribute holding it). Reading the
# tracking tables is fine; writing, altering, dropping them or hanging a trigger, rule
# or policy on them is the bookkeeping's business alone.
_TARGETS = {
    "InsertStmt": "relation",
    "UpdateStmt": "relation",
    "DeleteStmt": "relation",
    "MergeStmt": "relation",
    "AlterTableStmt": "relation",
    "RenameStmt": "relation",
    "AlterObjectSchemaStmt": "relation",
    "CreateTrigStmt": "relation",
    "RuleStmt": "relation",
    "CreatePolicyStmt": "table",
    "AlterPolicyStmt": "table",
    "TruncateStmt": "relations",
    "DropStmt": "objects",
}
_OWN_TABLE_PROBLEM = (
    "`{what}` changes vezamig's tracking table {table}: its records, or the table they "
    "go to, would no longer be the ones vezamig keeps (a version applied twice, a record "
    "lost); leave it to vezamig (`vezamig repair`, `vezamig baseline` change what it "
    "records), or keep vezamig's records in another table: --table NAME"
)


def own_table_problems(
    text: str, label: str, names: tuple[str, str], schema: str | None
) -> list[str]:
    """Statements of a body that write or alter the tracking tables ``names`` (in
    ``schema``; an unqualified name counts, as search_path may lead there). Found by
    the parser, only in bodies whose text mentions a name (most never do); a DO block's
    or a function's statements are not seen."""
    low = text.lower()
    # As the name is written in SQL: `"we""ird"` for we"ird; a U&"…" escape may spell
    # any name, so it is parsed too.
    if not any(n.lower() in low or n.replace('"', '""').lower() in low for n in names) and (
        'u&"' not in low
    ):
        return []
    from pglast import ast
    from pglast.enums import ObjectType
    from pglast.visitors import Visitor

    from vezamig.sqltext import analyze_pieces

    def ours(schemaname: str | None, relname: str | None) -> str | None:
        if relname in names and schemaname in (None, schema):
            return f"{schema}.{relname}" if schema else relname
        return None

    def hits(node: ast.Node) -> list[str]:
        attr = _TARGETS.get(type(node).__name__)
        value = getattr(node, attr, None) if attr else None
        if isinstance(node, ast.DropStmt):
            if node.removeType != ObjectType.OBJECT_TABLE:
                return []
            parts = [tuple(s.sval for s in obj) for obj in value or ()]
            found = [ours(*p) if len(p) == 2 else ours(None, p[-1]) for p in parts if p]
        elif isinstance(value, tuple):
            found = [ours(r.schemaname, r.relname) for r in value if isinstance(r, ast.RangeVar)]
        elif isinstance(value, ast.RangeVar):
            found = [ours(value.schemaname, value.relname)]
        else:
            found = []
        return [t for t in found if t is not None]

    class Find(Visitor):
        def __init__(self) -> None:
            self.found: list[str] = []

        def visit(self, ancestors: object, node: ast.Node) -> None:
            self.found.extend(hits(node))

    problems: list[str] = []
    for piece in analyze_pieces(text):
        if piece.whole:
            problems = []
        parsed = piece.parsed
        if parsed.error is not None:
            continue  # not parsed: the server's own error will tell
        for statement, node in zip(parsed.statements, parsed.nodes, strict=False):
            find = Find()
            find(node)
            for table in dict.fromkeys(find.found):
                words = " ".join(statement.text.rstrip(";").split())[:60]
                line = statement.line + piece.line_base
                problems.append(
                    f"{label}:{line}: {_OWN_TABLE_PROBLEM.format(what=words, table=table)}"
                )
    return problems
