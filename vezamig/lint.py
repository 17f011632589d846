"""Migration authoring lint for ``vezamig verify``: risky DDL, found in the parse tree.

Each rule looks at pglast nodes (PostgreSQL's own raw parse tree), never at the
text, so comments, strings and odd spacing cannot fool it. The findings are
advice; the CLI shows them as warnings, or as errors under ``--strict``.

Rules (codes are stable; never renumber):

- VZ001 ``CREATE INDEX`` without ``CONCURRENTLY`` on a table this file did not create:
  it blocks writes to the table for the whole build.
- VZ002 ``ADD COLUMN … NOT NULL`` (or ``PRIMARY KEY``) without a ``DEFAULT`` on an
  existing table: fails as soon as the table has a row.
- VZ003 ``ALTER COLUMN … TYPE`` on an existing table: usually rewrites the table and
  its indexes under an ACCESS EXCLUSIVE lock.
- VZ004 a down file drops a table or column with no ``vezamig:guard``: the rollback
  silently destroys data.
- VZ005 a statement PostgreSQL refuses inside a transaction block (``CONCURRENTLY``,
  ``VACUUM``, ``CREATE DATABASE``, …) in a file without ``vezamig:no-transaction``:
  the step would fail every time.
- VZ006 ``BEGIN`` / ``COMMIT`` / ``ROLLBACK`` in a file: vezamig owns the step's
  transaction; a ``COMMIT`` in the body would commit half a step without its
  bookkeeping. In a transactional file ``runnable.run_problems`` reports it instead, as a
  problem (``up``/``down`` refuse such a file); in a no-transaction file it is a warning.

"Existing table" means one the same file did not create earlier (``CREATE TABLE``,
``CREATE TABLE … AS``, ``SELECT … INTO``, ``CREATE MATERIALIZED VIEW``, or a rename
of such a table). Names compare as PostgreSQL folds them; an unqualified name and
``public.name`` are the same table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pglast import ast
from pglast.enums import (
    AlterTableType,
    ConstrType,
    ObjectType,
    ReindexObjectType,
    TransactionStmtKind,
)

from vezamig.sqltext import SqlFile, analyze, written_name

__all__ = ["RULES", "Finding", "lint_file", "lint_sql"]

RULES: dict[str, str] = {
    "VZ001": "CREATE INDEX without CONCURRENTLY on an existing table",
    "VZ002": "ADD COLUMN NOT NULL without DEFAULT on an existing table",
    "VZ003": "ALTER COLUMN TYPE on an existing table",
    "VZ004": "down file drops a table or column without a guard",
    "VZ005": "statement that cannot run inside a transaction, in a transactional file",
    "VZ006": "transaction control statement in a migration file",
}

_SERIAL_TYPES = frozenset({"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"})
TRANSACTION_CONTROL = {
    TransactionStmtKind.TRANS_STMT_BEGIN: "BEGIN",
    TransactionStmtKind.TRANS_STMT_START: "START TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT: "COMMIT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
    TransactionStmtKind.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
}
# They finish a transaction prepared earlier, not the session's own: in autocommit (a
# no-transaction file) they open and end nothing of it.
ENDS_PREPARED = {
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED,
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED,
}

TableKey = tuple[str, str]


@dataclass(frozen=True)
class Finding:
    """One lint result; ``line``/``column`` are those of the statement (1-based)."""

    code: str
    message: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.code} {self.message}"


def lint_sql(sql: str, *, direction: str, has_guard: bool, no_transaction: bool) -> list[Finding]:
    """Lint one migration file's SQL. A file that does not parse yields no
    findings: its syntax error is ``verify``'s to report."""
    return lint_file(
        analyze(sql), direction=direction, has_guard=has_guard, no_transaction=no_transaction
    )


def lint_file(
    parsed: SqlFile, *, direction: str, has_guard: bool, no_transaction: bool
) -> list[Finding]:
    """Like ``lint_sql`` on an already analysed file, so ``verify`` parses once."""
    if parsed.error is not None:
        return []
    linter = Linter(direction=direction, has_guard=has_guard, no_transaction=no_transaction)
    return linter.feed(parsed)


class Linter:
    """Lints a file fed in order, whole or in pieces (sqltext.analyze_pieces): it
    remembers the tables created by the statements it has seen."""

    def __init__(self, *, direction: str, has_guard: bool, no_transaction: bool) -> None:
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
        self._checker = _Checker(direction == "down", has_guard, no_transaction)

    def feed(self, parsed: SqlFile, line_base: int = 0) -> list[Finding]:
        """Findings of the next piece (which parsed), at their lines in the file."""
        findings: list[Finding] = []
        for statement, raw in zip(parsed.statements, parsed.nodes, strict=True):
            if raw.stmt is None:
                continue
            for code, message in self._checker.check(raw.stmt):
                findings.append(
                    Finding(code, message, statement.line + line_base, statement.column)
                )
        return findings


def _key(schema: str | None, name: str) -> TableKey:
    return (schema or "public", name)


def _range_key(rel: ast.RangeVar | None) -> TableKey | None:
    if rel is None or rel.relname is None:
        return None
    return _key(rel.schemaname, rel.relname)


def _display(rel: ast.RangeVar | None) -> str:
    if rel is None or rel.relname is None:
        return "?"
    return f"{rel.schemaname}.{rel.relname}" if rel.schemaname else rel.relname


def _names_key(names: tuple[object, ...]) -> TableKey | None:
    """``DROP TABLE`` names come as String lists: (name) or (schema, name)."""
    parts = [n.sval for n in names if isinstance(n, ast.String) and n.sval is not None]
    if len(parts) == 1:
        return _key(None, parts[0])
    if len(parts) >= 2:
        return _key(parts[-2], parts[-1])
    return None


class _Checker:
    """Walks a file's statements in order, remembering the tables it created."""

    def __init__(self, down: bool, has_guard: bool, no_transaction: bool) -> None:
        self.down = down
        self.has_guard = has_guard
        self.no_transaction = no_transaction
        self.created: set[TableKey] = set()

    def is_new(self, key: TableKey | None) -> bool:
        return key is not None and key in self.created

    def check(self, node: ast.Node) -> Iterator[tuple[str, str]]:
        self._track(node)
        if isinstance(node, ast.IndexStmt):
            yield from self._index(node)
        elif isinstance(node, ast.AlterTableStmt):
            yield from self._alter_table(node)
        elif isinstance(node, ast.DropStmt):
            yield from self._drop(node)
        elif isinstance(node, ast.TransactionStmt):
            yield from self._transaction(node)
        yield from self._outside_transaction(node)

    # -- bookkeeping of tables created by this file

    def _track(self, node: ast.Node) -> None:
        key: TableKey | None = None
        if isinstance(node, ast.CreateStmt):
            key = _range_key(node.relation)
        elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
            key = _range_key(node.into.rel)
        elif isinstance(node, ast.SelectStmt) and node.intoClause is not None:
            key = _range_key(node.intoClause.rel)
        elif (
            isinstance(node, ast.RenameStmt)
            and node.renameType == ObjectType.OBJECT_TABLE
            and node.newname is not None
        ):
            old = _range_key(node.relation)
            if old is not None and old in self.created:
                key = (old[0], node.newname)
        if key is not None:
            self.created.add(key)

    # -- VZ001

    def _index(self, node: ast.IndexStmt) -> Iterator[tuple[str, str]]:
        if node.concurrent or self.is_new(_range_key(node.relation)):
            return
        table = _display(node.relation)
        where = (
            "run it"
            if self.no_transaction
            else "put it in its own migration with `-- vezamig:no-transaction` and run it"
        )
        yield (
            "VZ001",
            f"CREATE INDEX on existing table {table} blocks writes to it until the index "
            f"is built; {where} as CREATE INDEX CONCURRENTLY",
        )

    # -- VZ002, VZ003, VZ004 (DROP COLUMN)

    def _alter_table(self, node: ast.AlterTableStmt) -> Iterator[tuple[str, str]]:
        if node.objtype != ObjectType.OBJECT_TABLE:
            return
        key = _range_key(node.relation)
        new = self.is_new(key)
        table = _display(node.relation)
        for cmd in node.cmds or ():
            if not isinstance(cmd, ast.AlterTableCmd):
                continue
            if cmd.subtype == AlterTableType.AT_AddColumn and not new:
                col = cmd.def_
                if isinstance(col, ast.ColumnDef) and _needs_value_without_default(col):
                    yield (
                        "VZ002",
                        f"ADD COLUMN {col.colname} NOT NULL without DEFAULT fails on {table} "
                        "as soon as it has a row; add a DEFAULT, or add the column nullable, "
                        "backfill it, then SET NOT NULL",
                    )
            elif cmd.subtype == AlterTableType.AT_AlterColumnType and not new:
                yield (
                    "VZ003",
                    f"ALTER COLUMN {cmd.name} TYPE on {table} usually rewrites the table and "
                    "its indexes under an ACCESS EXCLUSIVE lock; add a new column, backfill "
                    "it in batches and switch over instead",
                )
            elif cmd.subtype == AlterTableType.AT_DropColumn and self._unguarded_down(new):
                yield (
                    "VZ004",
                    f"DROP COLUMN {cmd.name} on {table} in a down file destroys its data; add "
                    "a `-- vezamig:guard QUERY` that proves it is safe (for example that the "
                    "column holds nothing the up did not create)",
                )

    # -- VZ004 (DROP TABLE)

    def _unguarded_down(self, new: bool) -> bool:
        return self.down and not self.has_guard and not new

    def _drop(self, node: ast.DropStmt) -> Iterator[tuple[str, str]]:
        if node.removeType != ObjectType.OBJECT_TABLE:
            return
        for names in node.objects or ():
            if not isinstance(names, tuple):
                continue
            key = _names_key(names)
            if key is None or not self._unguarded_down(self.is_new(key)):
                continue
            table = ".".join(
                _pasteable(n.sval) for n in names if isinstance(n, ast.String) and n.sval
            )
            yield (
                "VZ004",
                f"DROP TABLE {table} in a down file destroys its rows; add a "
                "`-- vezamig:guard QUERY` that proves it is safe (for example "
                f"SELECT NOT EXISTS (SELECT 1 FROM {table}))",
            )

    # -- VZ005, VZ006

    def _transaction(self, node: ast.TransactionStmt) -> Iterator[tuple[str, str]]:
        kind = node.kind
        if kind is None or kind not in TRANSACTION_CONTROL:
            return
        what = TRANSACTION_CONTROL[TransactionStmtKind(kind)]
        if self.no_transaction and TransactionStmtKind(kind) in ENDS_PREPARED:
            return
        if self.no_transaction:
            yield (
                "VZ006",
                f"{what} in a no-transaction file: its statements already run one by one in "
                "autocommit, each recorded as it finishes; remove it",
            )
            return
        yield (
            "VZ006",
            f"{what} in a migration: vezamig runs each step in its own transaction and "
            "records it there; remove it (use `-- vezamig:no-transaction` for statements "
            "that must run outside a transaction)",
        )

    def _outside_transaction(self, node: ast.Node) -> Iterator[tuple[str, str]]:
        if self.no_transaction:
            return
        what = _needs_autocommit(node)
        if what is not None:
            yield (
                "VZ005",
                f"{what} cannot run inside a transaction block, so this step would always "
                "fail; move it to a migration of its own with `-- vezamig:no-transaction`",
            )


def _needs_value_without_default(col: ast.ColumnDef) -> bool:
    """NOT NULL / PRIMARY KEY with nothing that fills existing rows."""
    required = bool(col.is_not_null)
    filled = col.raw_default is not None
    for con in col.constraints or ():
        if not isinstance(con, ast.Constraint):
            continue
        if con.contype in (ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY):
            required = True
        elif con.contype == ConstrType.CONSTR_DEFAULT:
            # DEFAULT NULL fills nothing.
            expr = con.raw_expr
            filled = filled or not (isinstance(expr, ast.A_Const) and expr.isnull)
        elif con.contype in (ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED):
            filled = True
    type_names = col.typeName.names if col.typeName is not None else None
    if type_names and len(type_names) == 1:
        name = type_names[0]
        if isinstance(name, ast.String) and name.sval in _SERIAL_TYPES:
            filled = True  # serial types carry their own nextval() default
    return required and not filled


def _needs_autocommit(node: ast.Node) -> str | None:
    """Name of the statement if PostgreSQL refuses it in a transaction block."""
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(node, ast.DropStmt) and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(node, ast.ReindexStmt):
        params = node.params or ()
        if any(isinstance(p, ast.DefElem) and p.defname == "concurrently" for p in params):
            return "REINDEX CONCURRENTLY"
        if node.kind in (
            ReindexObjectType.REINDEX_OBJECT_SYSTEM,
            ReindexObjectType.REINDEX_OBJECT_DATABASE,
        ):
            return "REINDEX SYSTEM/DATABASE"
    if isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd:
        return "VACUUM"
    if isinstance(node, ast.ClusterStmt) and node.relation is None:
        return "CLUSTER without a table"
    if isinstance(node, ast.AlterTableStmt):
        for cmd in node.cmds or ():
            if (
                isinstance(cmd, ast.AlterTableCmd)
                and cmd.subtype == AlterTableType.AT_DetachPartition
                and isinstance(cmd.def_, ast.PartitionCmd)
                and cmd.def_.concurrent
            ):
                return "DETACH PARTITION CONCURRENTLY"
    simple = {
        ast.CreatedbStmt: "CREATE DATABASE",
        ast.DropdbStmt: "DROP DATABASE",
        ast.AlterSystemStmt: "ALTER SYSTEM",
        ast.CreateTableSpaceStmt: "CREATE TABLESPACE",
        ast.DropTableSpaceStmt: "DROP TABLESPACE",
    }
    for cls, name in simple.items():
        if isinstance(node, cls):
            return name
    return None


def _pasteable(name: str) -> str:
    """A name as a guard pasted from the suggestion must write it: quoted where it
    has capitals or odd characters (`"Users"` is not `users`) or is a keyword that
    cannot name a table unquoted (`"order"`)."""
    from pglast.keywords import RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

    if name in RESERVED_KEYWORDS or name in TYPE_FUNC_NAME_KEYWORDS:
        return '"' + name + '"'
    return written_name(name)
