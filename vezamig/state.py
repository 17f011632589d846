"""The tracking table and its append-only history (SPEC §4).

Read-only commands never create anything; the first write creates both
tables. A table of the same name with another shape (another tool's) is never
touched: we stop and explain.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from vezamig.config import Config, os_text
from vezamig.db import (
    Connection,
    error_lines,
    os_identity,
    server_codec,
    storable,
    table_lockers,
    tool_version,
)
from vezamig.errors import LockBusy, TrackingTableError, UsageError, VezamigError

# Why the first write cannot create the tracking tables: a missing privilege, a
# read-only session, no schema to create in (empty search_path, a missing schema).
# A history row's started_at, by default: the start of its transaction, on the
# server's clock (as applied_at).
TRANSACTION_START = sql.SQL("pg_catalog.now()")

_CANNOT_CREATE = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg.errors.InvalidSchemaName,
)

# In the error of a bookkeeping write that changed no row, or several (exactly_one).
SKIPPED_MARK = "[vezamig bookkeeping]"


def skipped_bookkeeping(exc: psycopg.Error) -> str | None:
    """What exactly_one's failure says, in words, or None for another error."""
    primary = exc.diag.message_primary or ""
    if SKIPPED_MARK not in primary or '"' not in primary:
        return None
    said = primary.split('"', 1)[1].rsplit(SKIPPED_MARK, 1)[0].strip()
    return (
        f"vezamig's own bookkeeping did not take: {said} (a trigger, a rule or row-level "
        "security on the tracking tables, created by this migration?)"
    )


EXPECTED_COLUMNS = {
    "version": "bigint",
    "name": "text",
    "checksum": "text",
    "applied_at": "timestamp with time zone",
    "applied_by": "text",
    "duration_ms": "integer",
    "dirty": "boolean",
}
NOT_NULL_COLUMNS = frozenset(EXPECTED_COLUMNS)
HISTORY_COLUMNS = {
    "id": "bigint",
    "version": "bigint",
    "name": "text",
    "direction": "text",
    "outcome": "text",
    "checksum": "text",
    "started_at": "timestamp with time zone",
    "duration_ms": "integer",
    "db_user": "text",
    "os_user": "text",
    "host": "text",
    "tool_version": "text",
    "message": "text",
}
HISTORY_NOT_NULL_COLUMNS = frozenset({"id", "direction", "outcome", "started_at", "db_user"})


def _iso(column: str, *, fraction: bool = False) -> str:
    """SQL: ``column`` (a timestamptz) in ISO 8601, in the session's TimeZone, formatted
    by the server; what ISO 8601 cannot say (infinity, a date BC) as PostgreSQL says it."""
    fmt = 'YYYY-MM-DD"T"HH24:MI:SS' + (".US" if fraction else "") + "TZH:TZM"
    # An offset of whole minutes since 1972 in every zone (Africa/Monrovia's -0:44:30
    # was the last): a row of this era costs one comparison. An older one may need
    # the offset's seconds, which TZM drops (Amsterdam in 1890: +00:19:32, not +00:19,
    # which would name another instant); then the era as the session's TimeZone sees
    # it, as to_char formats it.
    offset = f"pg_catalog.date_part('timezone', {column})::int"
    seconds = (
        f"CASE WHEN {offset} % 60 <> 0 THEN ':' || pg_catalog.lpad((pg_catalog.abs({offset})"
        " % 60)::text, 2, '0') ELSE '' END"
    )
    return (
        f"coalesce(CASE WHEN {column} >= '1973-01-01 00:00:00+00'"
        f" THEN to_char({column}, '{fmt}') WHEN {column} >= '0002-01-01 00:00:00+00'"
        f" OR to_char({column}, 'AD') = 'AD' THEN to_char({column}, '{fmt}') || {seconds}"
        f" END, {column}::text)"
    )


def grant_hint(table: str, history: str, role: str | None = None) -> str:
    """What a role needs on the tracking tables, said as the GRANTs an owner runs."""
    to = "<role>" if not role else sql.Identifier(role).as_string()
    return (
        f"the connecting role needs SELECT on the tracking tables to read them (GRANT "
        f"SELECT ON {table}, {history} TO {to}), and INSERT, UPDATE, DELETE on both "
        f"(plus USAGE on their schema) to run steps (GRANT SELECT, INSERT, UPDATE, DELETE "
        f"ON {table}, {history} TO {to})"
    )


# pg_class.relkind of what --table may name, but which is no table of ours to use.
_RELKINDS = {
    "i": "an index",
    "I": "a partitioned index",
    "S": "a sequence",
    "v": "a view",
    "m": "a materialized view",
    "c": "a composite type",
    "f": "a foreign table",
    "t": "a TOAST table",
}


def _edited(found: dict[str, str], expected: dict[str, str]) -> bool:
    """Most of vezamig's columns are there: our table, edited by hand, not a foreign one."""
    return len(found.keys() & expected.keys()) * 2 > len(expected)


def _differences(found: dict[str, str], expected: dict[str, str]) -> str:
    said = [
        f"{c} is {found[c]}, expected {t}"
        for c, t in expected.items()
        if c in found and found[c] != t
    ]
    missing = [f"{c} {t}" for c, t in expected.items() if c not in found]
    extra = [c for c in found if c not in expected]
    if missing:
        said.append("missing " + ", ".join(missing))
    if extra:
        said.append("extra column(s) " + ", ".join(extra))
    return "; ".join(said)


# Rows are NamedTuples: built by the thousand from query results, and cheaper than
# frozen dataclasses both to define at start-up and to create (issue 7).
class AppliedRow(NamedTuple):
    version: int
    name: str
    checksum: str
    # ISO 8601 in whole seconds and the session's TimeZone, as every output shows it,
    # formatted by the server: parsing a datetime and `isoformat` cost more than the
    # rest of a `status` line together (≈ 1 µs per version, issue 7). A hand-edited
    # `infinity` is shown as such (to_char gives NULL for it).
    applied_at: str
    applied_by: str
    duration_ms: int
    dirty: bool


_FRACTION = re.compile(r"\.[0-9]+")


class HistoryRow(NamedTuple):
    id: int
    version: int | None
    name: str | None
    direction: str
    outcome: str
    checksum: str | None
    # ISO 8601 with microseconds in the session's TimeZone, formatted by the server, as
    # applied_at is; a hand-edited `infinity` is shown as such.
    started_at: str
    duration_ms: int | None
    db_user: str
    os_user: str | None
    host: str | None
    tool_version: str | None
    message: str | None

    def as_json(self) -> dict[str, Any]:
        return self._asdict()

    @property
    def started_to_the_second(self) -> str:
        return _FRACTION.sub("", self.started_at, count=1)


def ident(parts: tuple[str, ...]) -> sql.Identifier:
    return sql.Identifier(*parts)


class _Fragments(NamedTuple):
    insert_applied: str
    applied_by: str
    delete_applied: str
    insert_history: str
    history_who: str
    one_row: dict[str, str]  # label -> the check of exactly_one


class Tracker:
    """Reads and writes the tracking tables named by ``config.table``."""

    def __init__(self, conn: Connection, config: Config, *, resolve_schema: bool = True) -> None:
        """``resolve_schema``: pin an unqualified table to its schema (see _shape_sql);
        a read-only command runs no migration that could change search_path, and its
        first query in a new session is cheaper without the catalog lookups."""
        self.conn = conn
        self.table = ident(config.table)
        self.history = ident(config.history_table)
        self.label = config.table_label
        self.history_label = ".".join(config.history_table)
        self.schema = config.table[0] if len(config.table) == 2 else None
        self._names = (config.table[-1], config.history_table[-1])
        self._resolved: str | None = None  # the schema of an unqualified --table, see _shape_sql
        self._resolve = resolve_schema and self.schema is None
        self._writing = resolve_schema  # read-only commands never resolve (see above)
        self._exists: bool | None = None
        self.duplicated: dict[int, tuple[str, int]] = {}  # version -> (name, rows), see applied()
        self.elsewhere: list[str] = []  # a read-only command's warning, see _look_elsewhere
        os_user, host = os_identity()
        self.os_user, self.host = os_user, host
        self.applied_by = f"{conn.info.user} ({os_user}@{host})"
        self._lock_timeout_ms = config.lock_timeout_ms
        self._codec = server_codec(conn)  # reported at connect: no round trip
        self._statement_timeout_ms = config.statement_timeout_ms
        self._read_timeout = (
            sql.SQL("SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}; ")
            .format(
                sql.Literal(f"{config.lock_timeout_ms}ms"),
                sql.Literal(f"{config.statement_timeout_ms}ms"),
            )
            .as_string(conn)
        )

    def _read(self, query: str) -> psycopg.Cursor[Any]:
        """Run a read of the tracking tables outside any step.

        Such a read waits at most --lock-timeout for a lock another session holds on
        the tables (an ALTER TABLE, VACUUM FULL or LOCK TABLE left open in psql), then
        says who (exit 4), where `vezamig status` would otherwise hang without a word.
        Not retried: --lock-retries is for steps, whose rollback lets the queue move.
        --statement-timeout too, as for a step: a role's or database's own (meant for the
        application's queries) would cancel vezamig's reads while they wait. The SET
        LOCALs ride in the read's own message (its implicit transaction), so nothing
        stays set for the steps. Inside a caller's transaction: as it is.
        """
        idle = self.conn.info.transaction_status == 0
        try:
            cur = self.conn.execute(self._read_timeout + query if idle else query)
        except psycopg.errors.LockNotAvailable:
            if not idle:
                raise
            raise self._locked() from None
        except psycopg.errors.QueryCanceled as exc:
            if not idle or "statement timeout" not in (exc.diag.message_primary or ""):
                raise
            raise self._timed_out() from None
        if idle:
            cur.nextset()  # past the SETs' own results
            cur.nextset()
        return cur

    def _timed_out(self) -> VezamigError:
        """--statement-timeout ended a read: one that waited for a lock (with
        --lock-timeout 0, or a longer one) is a lock wait, said as such; otherwise the
        read itself was slow: no step ran, so not exit 1 (a failed step) but a
        configuration error (exit 2), the timeout too short for the tool's own work."""
        limit = f"--statement-timeout {self._statement_timeout_ms} ms"
        found = self._lockers()
        if found:
            return self._locked(found, f"(waited until {limit} ended it)")
        return UsageError(
            f"reading the tracking tables took longer than {limit}; nothing was changed",
            details=["raise --statement-timeout (default: none), then run the command again"],
        )

    def _lockers(self) -> list[tuple[str, int | None, str]]:
        return table_lockers(
            self.conn,
            {
                self.label: self.table.as_string(self.conn),
                self.history_label: self.history.as_string(self.conn),
            },
        )

    def _locked(
        self, found: list[tuple[str, int | None, str]] | None = None, waited: str | None = None
    ) -> LockBusy:
        found = self._lockers() if found is None else found
        locked = [t for t in (self.label, self.history_label) if any(f[0] == t for f in found)]
        pids = sorted({pid for _, pid, _ in found if pid is not None})
        end = ""
        if len(pids) == 1:
            end = f", or end it if that is safe: SELECT pg_terminate_backend({pids[0]})"
        elif pids:
            end = ", or end them if that is safe: SELECT pg_terminate_backend(pid)"
        waited = waited or f"(waited {self._lock_timeout_ms / 1000:g}s, --lock-timeout)"
        if not found:
            head = (
                "cannot read the tracking tables: a lock another session held made the read "
                f"wait {waited}; it has just been released"
            )
        else:
            how = "holds" if any(" holds " in what for _, _, what in found) else "waits for"
            them = "it" if len(locked) == 1 else "them"
            head = (
                f"cannot read {' and '.join(locked)}: another session {how} a lock on {them} "
                f"{waited}"
            )
        return LockBusy(
            f"{head}; nothing was changed",
            details=[
                *(what for _, _, what in found),
                f"wait for the lock to go{end}; then run the command again "
                "(--lock-timeout sets how long vezamig waits)",
            ],
        )

    def _shape_sql(self) -> str:
        """Columns of both tables (a row with NULL columns for an absent table), and the
        schema of an unqualified table when asked to resolve it.

        An unqualified --table is resolved once, here, through the session's search_path
        (where the table is, else where it would be created), and used schema-qualified
        from then on: a step that changes search_path (`pg_dump` output sets it to '')
        cannot send the bookkeeping to another table of the same name, or to none.
        """
        name, history = self._names
        prefix: sql.Composable
        if self._resolve:
            prefix = sql.SQL(
                "WITH s(nsp) AS (SELECT coalesce((SELECT n.nspname FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass({})),"
                " current_schema())) "
            ).format(sql.Literal(self.table.as_string(self.conn)))
            schema: sql.Composable = sql.SQL("s.nsp")
            source = sql.SQL("s CROSS JOIN LATERAL (VALUES ('main', {}), ('history', {}))").format(
                *(
                    sql.SQL(
                        "CASE WHEN s.nsp IS NOT NULL"
                        " THEN to_regclass(format('%I.%I', s.nsp, {})) END"
                    ).format(sql.Literal(table))
                    for table in (name, history)
                )
            )
        else:
            prefix, schema = sql.SQL(""), sql.SQL("NULL")
            source = sql.SQL(
                "(VALUES ('main', to_regclass({})), ('history', to_regclass({})))"
            ).format(
                sql.Literal(self.table.as_string(self.conn)),
                sql.Literal(self.history.as_string(self.conn)),
            )
        return (
            sql.SQL(
                "{prefix}SELECT t.which, t.oid IS NOT NULL, a.attname,"
                " format_type(a.atttypid, a.atttypmod), a.attnotnull, {schema},"
                " (SELECT c.relkind FROM pg_class c WHERE c.oid = t.oid),"
                " (SELECT n.nspname FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE c.oid = t.oid),"
                " (SELECT array_agg(format('%I', g.tgname) ORDER BY g.tgname) FROM pg_trigger g"
                " WHERE g.tgrelid = t.oid AND NOT g.tgisinternal AND g.tgenabled <> 'D'"
                " AND g.tgtype & 3 = 3),"  # ROW | BEFORE
                " (SELECT array_agg(format('%I', r.rulename) ORDER BY r.rulename)"
                " FROM pg_rewrite r WHERE r.ev_class = t.oid),"
                # Row-level security that applies to this role, unless a permissive
                # `USING (true)` policy for it lets every row through and no restrictive
                # one holds any back.
                " CASE WHEN row_security_active(t.oid) THEN NOT ("
                " EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = t.oid AND p.polpermissive"
                " AND p.polcmd IN ('r', '*') AND pg_get_expr(p.polqual, p.polrelid) = 'true'"
                " AND EXISTS (SELECT FROM unnest(p.polroles) r(oid)"
                " WHERE r.oid = 0 OR pg_has_role(current_user, r.oid, 'MEMBER')))"
                " AND NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = t.oid"
                " AND NOT p.polpermissive AND p.polcmd IN ('r', '*')"
                " AND pg_get_expr(p.polqual, p.polrelid) IS DISTINCT FROM 'true'"
                " AND EXISTS (SELECT FROM unnest(p.polroles) r(oid)"
                " WHERE r.oid = 0 OR pg_has_role(current_user, r.oid, 'MEMBER')))) END"
                " FROM {source} t(which, oid)"
                " LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0"
                " AND NOT a.attisdropped"
            )
            .format(prefix=prefix, schema=schema, source=source)
            .as_string(self.conn)
        )

    def _rows_sql(self) -> str:
        return (
            sql.SQL(
                "SELECT version, name, checksum,"
                f" {_iso('applied_at')},"
                " applied_by, duration_ms, dirty FROM {} ORDER BY version"
            )
            .format(self.table)
            .as_string(self.conn)
        )

    def check(self) -> bool:
        """True when the tables exist with our shape; False when absent; raise when foreign."""
        if self.schema is not None:
            return self._check_shape(self._read(self._shape_sql()).fetchall())
        # With the pair of that name in other schemas, for when they are absent here
        # (see _look_elsewhere): in the same message, no round trip of its own.
        cur = self._read(f"{self._shape_sql()}; {self._elsewhere_sql()}")
        columns = cur.fetchall()
        cur.nextset()
        return self._check_shape(columns, cur.fetchone())

    def _check_shape(
        self, columns: list[tuple[Any, ...]], elsewhere: tuple[Any, ...] | None = None
    ) -> bool:
        shape: dict[str, dict[str, str] | None] = {"main": None, "history": None}
        nullable: dict[str, list[str]] = {"main": [], "history": []}
        schema: str | None = columns[0][5] if columns else None  # the same on every row
        found_in: dict[str, str] = {}
        untrusted: dict[str, tuple[list[str], list[str], bool]] = {}
        for which, exists, col, typ, notnull, _, kind, nsp, triggers, rules, hidden in columns:
            if not exists:
                continue
            found_in[which] = nsp
            if kind not in ("r", "p"):
                label = self._found(which, found_in)
                raise TrackingTableError(
                    f"{label} is {_RELKINDS.get(kind, 'a relation')}, not a table; "
                    "vezamig changed nothing",
                    details=["choose another name for vezamig's tracking table: --table NAME"],
                )
            # Row-level security on the history hides audit rows only: the DBA's choice.
            hidden = bool(hidden) and which == "main"
            if hidden or (self._writing and (triggers or rules)):
                untrusted[which] = (triggers or [], rules or [], hidden)
            cols = shape[which] or {}
            shape[which] = cols  # a table with no columns at all is still there
            if col is not None:
                cols[col] = typ
                if not notnull:
                    nullable[which].append(col)
        if untrusted:
            self._untrusted(untrusted, found_in)
        for key, expected, required, label in (
            ("main", EXPECTED_COLUMNS, NOT_NULL_COLUMNS, self.label),
            ("history", HISTORY_COLUMNS, HISTORY_NOT_NULL_COLUMNS, self.history_label),
        ):
            found = shape[key]
            twin = HISTORY_COLUMNS if key == "main" else EXPECTED_COLUMNS
            if found is not None and found == twin:
                self._twin(key, label)
            if found is not None and found != expected and _edited(found, expected):
                raise TrackingTableError(
                    f"table {self._found(key, found_in)} has vezamig's columns, but differs: "
                    f"{_differences(found, expected)}; vezamig changed nothing",
                    details=[
                        "the table was edited by hand: make it match again (ALTER TABLE "
                        f"{label} …); the README (Tracking tables) has the exact CREATE TABLE "
                        "statements vezamig runs"
                    ],
                )
            if found is not None and found != expected:
                described = ", ".join(f"{c} {t}" for c, t in found.items()) or "none"
                raise TrackingTableError(
                    f"table {self._found(key, found_in)} exists but is not a vezamig tracking "
                    "table "
                    f"(columns: {described}); vezamig changed nothing",
                    details=[
                        "it may belong to another migration tool (golang-migrate keeps "
                        "`version, dirty` there)",
                        "to adopt this database with vezamig, keep its records elsewhere: "
                        "--table vezamig_migrations (or VEZAMIG_TABLE), then "
                        "`vezamig baseline --version N` with N the last version already applied",
                    ],
                )
            loose = [c for c in nullable[key] if c in required]
            if found is not None and loose:
                raise TrackingTableError(
                    f"table {self._found(key, found_in)} has vezamig's columns, but "
                    f"{', '.join(loose)} "
                    "allow(s) NULL where vezamig creates them NOT NULL; vezamig changed "
                    "nothing",
                    details=[
                        "the table was edited by hand: fix any NULL values, then restore the "
                        f"constraint (ALTER TABLE {label} ALTER COLUMN {loose[0]} SET NOT NULL)"
                    ],
                )
        if (shape["main"] is None) != (shape["history"] is None):
            missing = self.history_label if shape["history"] is None else self.label
            present = "main" if shape["history"] is None else "history"
            name = self._names[0 if present == "main" else 1]
            companion = f"{found_in[present]}.{name}" if found_in.get(present) else name
            raise TrackingTableError(
                f"{missing} is missing while its companion {companion} exists; vezamig "
                "changed nothing",
                details=[
                    "restore it from a backup, or recreate it with the CREATE TABLE "
                    "statement in the README (Tracking tables), with your table's name"
                ],
            )
        self._exists = shape["main"] is not None
        if not self._exists and elsewhere is not None:
            self._look_elsewhere(elsewhere)
        if self._resolve and schema is not None and self._resolved is None:
            self._qualify(schema)
        return self._exists

    def _elsewhere_sql(self) -> str:
        """The search_path's schema, and the pairs of tables of this --table's names in
        other schemas, or of its name folded to lower case in any schema (see
        _look_elsewhere): by name, so the catalog's index answers, whatever its size."""
        name = self._names[0]
        names = list(dict.fromkeys([name, name.lower()]))
        return (
            sql.SQL(
                "SELECT pg_catalog.current_schema(), pg_catalog.array_agg(n.nspname ORDER BY"
                " n.nspname, c.relname) FILTER (WHERE n.nspname IS NOT NULL),"
                " pg_catalog.array_agg(c.relname::text ORDER BY n.nspname, c.relname)"
                " FILTER (WHERE n.nspname IS NOT NULL) FROM (SELECT 1) one"
                " LEFT JOIN pg_catalog.pg_class c ON c.relname = ANY({}::name[])"
                " AND c.relkind IN ('r', 'p') AND EXISTS (SELECT FROM pg_catalog.pg_class h"
                " WHERE h.relname = c.relname || '_history'"
                " AND h.relnamespace = c.relnamespace AND h.relkind IN ('r', 'p'))"
                " LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " AND (n.nspname IS DISTINCT FROM pg_catalog.current_schema()"
                " OR c.relname <> {}) AND n.nspname !~ '^pg_(temp|toast)'"
            )
            .format(sql.Literal(names), sql.Literal(name))
            .as_string(self.conn)
        )

    def _look_elsewhere(self, row: tuple[Any, ...]) -> None:
        """Neither table is where an unqualified --table points (the search_path's), but
        a pair of that name is in another schema (a shell's stray search_path, or a DBA
        who moved them), or a pair of its lower-case name is (`--table Schema_migrations`
        typed for schema_migrations: PostgreSQL folds unquoted names, vezamig does not).
        A run would create new tables and apply the whole history again on a migrated
        database, so it is refused (exit 2); a read-only command warns. Only looked up
        when the tables are absent: a fresh database's first run."""
        name, history = self._names
        if not row[1]:
            return
        here = row[0]
        pairs = list(zip(row[1], row[2], strict=True))
        from vezamig.config import shell_quote

        where = f"in schema {here} (the first schema of the search_path)" if here else "here"
        use = [f"--table {shell_quote(f'{nsp}.{rel}')}" for nsp, rel in pairs]
        if all(rel == name for _, rel in pairs):
            found = f"{name} and {history} exist in schema {', '.join(n for n, _ in pairs)}"
        else:
            found = ", ".join(
                f"{rel} and {rel}_history exist in schema {nsp}" for nsp, rel in pairs
            )
            found += " (--table is taken literally, case included)"
        head = f"no {self.label} {where}, but vezamig's tracking tables {found}"
        if not self._writing:
            self.elsewhere = [f"{head}: {' or '.join(use)} reads those"]
            return
        details = [
            f"this database's migrations are likely recorded there: point vezamig at them "
            f"with {' or '.join(use)}, or fix the search_path (PGOPTIONS, ALTER ROLE … SET "
            "search_path)",
        ]
        if here:
            details.append(
                f"to start a new record in schema {here} all the same: "
                f"--table {shell_quote(f'{here}.{name}')}"
            )
        raise TrackingTableError(
            f"{head}; a run here would create new ones and apply every version again, "
            "so vezamig changed nothing",
            details=details,
        )

    def _found(self, which: str, found_in: dict[str, str]) -> str:
        """The table's name for a message about what was found there: with the schema
        it was found in when --table did not name one (a table of that name in a schema
        earlier in search_path hides the one the operator looks at). Not for public, the
        usual place, where the short name says it all."""
        label = self.label if which == "main" else self.history_label
        if self.schema is None and found_in.get(which) not in (None, "public"):
            return f"{label} (in schema {found_in[which]})"
        return label

    def _untrusted(
        self, found: dict[str, tuple[list[str], list[str], bool]], found_in: dict[str, str]
    ) -> None:
        """Something on the tables could make them lie: a BEFORE trigger that returns
        NULL, or a DO INSTEAD rule, makes vezamig's write change no row, and the run would
        report a version applied that is not recorded (then applied twice); row-level
        security makes reads miss applied versions. Read-only commands mind only the
        last: their reads are true whatever the table's writes do. Every one is named,
        with a statement that removes it, ready to paste (names quoted)."""
        said, fixes = [], []
        hides = False
        for which, (triggers, rules, hidden) in found.items():
            name = self._names[0 if which == "main" else 1]
            schema = self.schema or found_in.get(which)
            parts = (schema, name) if schema else (name,)
            table = sql.Identifier(*parts).as_string(self.conn)
            what = []
            if triggers:
                what.append(f"trigger(s) that run before each row ({', '.join(triggers)})")
                fixes += [f"DROP TRIGGER {t} ON {table};" for t in triggers]
            if rules:
                what.append(f"rule(s) ({', '.join(rules)})")
                fixes += [f"DROP RULE {r} ON {table};" for r in rules]
            if hidden:
                hides = True
                what.append(f"row-level security that can hide rows from {self.conn.info.user}")
                fixes.append(
                    f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY; (or let the role see "
                    f"every row: a policy USING (true) for it, or ALTER ROLE … BYPASSRLS)"
                )
            said.append(f"table {self._found(which, found_in)} has {' and '.join(what)}")
        why = (
            "can hide applied versions"
            if hides and len(fixes) == 1
            else "can skip or rewrite the rows vezamig writes"
        )
        raise TrackingTableError(
            f"{'; '.join(said)}, which {why}; vezamig would not know whether its own records "
            "are true, so it changed nothing",
            details=[
                "remove them, or keep vezamig's records in a table of their own (--table NAME):",
                *(f"  {fix}" for fix in fixes),
            ],
        )

    def _twin(self, which: str, label: str) -> None:
        """The table is vezamig's, but the other one of a pair: --table named a history
        table (`a_history`: its own history would be `a_history_history`), or the
        tracking table of a name ending in `_history` sits where this one's history
        belongs. Either way the fix is another --table, never an ALTER TABLE."""
        if which == "main":
            what = "a vezamig history table (an audit log), not a tracking table"
            owner = label.removesuffix("_history")
            hint = f"did you mean --table {owner}? ({label} is its history)"
        else:
            what = (
                f"a vezamig tracking table (of --table {label}), not the history table "
                f"of --table {self.label}"
            )
            hint = f"did you mean --table {label}? (its history is {label}_history)"
        raise TrackingTableError(
            f"table {label} is {what}; vezamig changed nothing", details=[hint]
        )

    @property
    def resolved_schema(self) -> str | None:
        """Where an unqualified --table was found (or would be created), once read."""
        return self._resolved

    def _qualify(self, schema: str) -> None:
        name, history = self._names
        self.table = sql.Identifier(schema, name)
        self.history = sql.Identifier(schema, history)
        self._resolved = schema
        self.__dict__.pop("_fragments", None)  # rendered with the old names

    def ensure(self) -> None:
        """Create both tables on first write (inside the caller's run lock)."""
        if self._exists is None:
            self.check()
        if self._exists:
            return
        # Absent when last checked; CREATE … IF NOT EXISTS covers a creation since then
        # (callers hold the run lock, and check again under it before planning).
        stmts: list[sql.Composable] = []
        if self.schema and not self._schema_exists(self.schema):
            # Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database
            # even for a schema that exists (one the user owns, say).
            stmts.append(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
        stmts.append(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "version bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL,"
                " duration_ms integer NOT NULL, dirty boolean NOT NULL DEFAULT false)"
            ).format(self.table)
        )
        stmts.append(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, version bigint, name text,"
                " direction text NOT NULL CHECK (direction IN ('up','down','baseline','repair')),"
                " outcome text NOT NULL CHECK (outcome IN ('ok','failed','refused')),"
                " checksum text, started_at timestamptz NOT NULL, duration_ms integer,"
                " db_user text NOT NULL DEFAULT current_user, os_user text, host text,"
                " tool_version text, message text)"
            ).format(self.history)
        )
        # Under the reads' timeouts: a session that creates the same names, or holds a
        # lock on their schema, in a transaction left open must not hang the first run.
        script = sql.SQL("BEGIN; {}{}; COMMIT").format(
            sql.SQL(self._read_timeout), sql.SQL("; ").join(stmts)
        )
        try:
            self.conn.execute(script.as_string(self.conn))
        except psycopg.errors.LockNotAvailable:
            self.conn.execute("ROLLBACK")
            raise LockBusy(
                f"cannot create the tracking tables {self.label} and {self.history_label}: "
                "another session holds a lock this needs (waited "
                f"{self._lock_timeout_ms / 1000:g}s, --lock-timeout); nothing was changed",
                details=[
                    "a session creating or dropping the same names, or holding a lock on "
                    "their schema (a DROP SCHEMA left open in psql, say), has not finished",
                    "wait for it to finish; then run the command again (--lock-timeout sets "
                    "how long vezamig waits)",
                ],
            ) from None
        except _CANNOT_CREATE as exc:
            self.conn.execute("ROLLBACK")
            raise TrackingTableError(
                f"cannot create the tracking tables {self.label} and {self.history_label}: "
                f"{exc.diag.sqlstate} {exc.diag.message_primary}; nothing was changed",
                details=[self._cannot_create_hint(exc)],
            ) from None
        except psycopg.errors.DuplicateObject as exc:
            # A type (enum, domain, base type) holds the name: a table's row type
            # cannot be created beside it.
            self.conn.execute("ROLLBACK")
            raise TrackingTableError(
                f"cannot create the tracking tables {self.label} and {self.history_label}: "
                f"{exc.diag.message_primary}; nothing was changed",
                details=["choose another name for vezamig's tracking table: --table NAME"],
            ) from None
        except psycopg.Error as exc:
            if self.conn.broken or self.conn.closed:
                raise
            # An event trigger that freezes DDL, say: a database set up to refuse it.
            self.conn.execute("ROLLBACK")
            raise TrackingTableError(
                f"cannot create the tracking tables {self.label} and {self.history_label}; "
                "nothing was changed",
                details=error_lines(exc),
            ) from None
        except Exception:
            self.conn.execute("ROLLBACK")
            raise
        self._exists = True

    def _schema_exists(self, schema: str) -> bool:
        row = self.conn.execute(
            "SELECT to_regnamespace(%s) IS NOT NULL", (sql.Identifier(schema).as_string(),)
        ).fetchone()
        return bool(row and row[0])

    def _cannot_create_hint(self, exc: psycopg.Error) -> str:
        user = self.conn.info.user
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            return (
                f"the session is read-only (default_transaction_read_only for {user}, or a "
                "standby): connect as a user, or to a server, that may write"
            )
        if isinstance(exc, psycopg.errors.InvalidSchemaName):
            return (
                "no schema to create them in: search_path names no schema that exists; "
                "fix search_path, or name one with --table schema.table"
            )
        schema = self._resolved or self.schema
        where = f"on the schema {schema}" if schema else "on the schema"
        if self.schema and not self._schema_exists(self.schema):
            where = f"on the database, to create the schema {self.schema}"
        return (
            f"the database user {user} needs CREATE {where}; grant it, or point --table "
            "at a schema it may create tables in (--table schema.table)"
        )

    def applied(self) -> dict[int, AppliedRow]:
        """The tracking rows, checking the tables' shape first if not yet done.

        First read of a run: the shape check and the rows go in one message (one
        round trip, as `status` and every run start with it). When the table is
        absent or foreign the rows query fails; the shape check alone then
        decides (absent: nothing applied; foreign: refused). Inside a caller's
        transaction the two go separately, so that failure cannot abort it.
        """
        if not self._exists:  # absent may have changed: another run may have created them
            if self.conn.info.transaction_status != 0:  # not IDLE
                self.check()
            else:
                try:
                    cur = self._read(self._shape_sql() + "; " + self._rows_sql())
                except (
                    psycopg.errors.UndefinedTable,
                    psycopg.errors.UndefinedColumn,
                    psycopg.errors.WrongObjectType,  # an index or a composite type
                ):
                    self.check()
                    if self._exists:  # created, or its columns changed, just now: read again
                        return self.applied()
                    return {}
                columns = cur.fetchall()
                cur.nextset()
                rows = cur.fetchall()
                self._check_shape(columns)
                return self._rows(rows)
        if not self._exists:
            return {}
        return self._rows(self._read(self._rows_sql()).fetchall())

    def _rows(self, rows: list[tuple[Any, ...]]) -> dict[int, AppliedRow]:
        applied = {r[0]: AppliedRow._make(r) for r in rows}
        # A version recorded twice is only possible by hand (primary key dropped); it
        # shows as fewer versions than rows, so spotting it costs nothing otherwise.
        if len(applied) < len(rows):
            counts = Counter(r[0] for r in rows)
            self.duplicated = {v: (applied[v].name, n) for v, n in counts.items() if n > 1}
        else:
            self.duplicated = {}
        return applied

    def history_rows(self, limit: int | None = None) -> list[HistoryRow]:
        if not self._exists:  # absent may have changed: another run may have created them
            self.check()
        if not self._exists:
            return []
        q = sql.SQL(
            "SELECT id, version, name, direction, outcome, checksum,"
            f" {_iso('started_at', fraction=True)}, duration_ms,"
            " db_user, os_user, host, tool_version, message FROM {} ORDER BY id DESC"
        ).format(self.history)
        if limit is not None:
            q = sql.SQL("{} LIMIT {}").format(q, sql.Literal(limit))
        return [HistoryRow._make(r) for r in self._read(q.as_string(self.conn)).fetchall()]

    # --- statements composed client-side, so a step can send them in one message ---

    def record_sql(
        self,
        version: int,
        name: str,
        checksum: str,
        duration_ms: int | sql.Composable,
        dirty: bool = False,
    ) -> sql.SQL:
        f = self._fragments
        return sql.SQL(
            f"{f.insert_applied}{int(version)}, {self._literal(name)}, "
            f"{self._literal(checksum)}, pg_catalog.now(), {f.applied_by}, "
            f"{self._literal(duration_ms)}, {'true' if dirty else 'false'})"
        )

    def row_sql(self, version: int) -> sql.Composed:
        """The version's `dirty` flag: no row when it is not recorded."""
        return sql.SQL("SELECT dirty FROM {} WHERE version = {}").format(
            self.table, sql.Literal(version)
        )

    def clean_sql(self, version: int, duration_ms: int) -> sql.Composed:
        return sql.SQL(
            "UPDATE {} SET dirty = false, duration_ms = {}, applied_at = pg_catalog.now()"
            " WHERE version = {}"
        ).format(self.table, sql.Literal(duration_ms), sql.Literal(version))

    def set_dirty_sql(self, version: int, dirty: bool) -> sql.Composed:
        return sql.SQL("UPDATE {} SET dirty = {} WHERE version = {}").format(
            self.table, sql.Literal(dirty), sql.Literal(version)
        )

    def update_checksum_sql(self, version: int, checksum: str, name: str) -> sql.Composed:
        return sql.SQL("UPDATE {} SET checksum = {}, name = {} WHERE version = {}").format(
            self.table, sql.Literal(checksum), sql.Literal(name), sql.Literal(version)
        )

    def unrecord_sql(self, version: int) -> sql.SQL:
        return sql.SQL(f"{self._fragments.delete_applied}{int(version)}")

    def history_sql(
        self,
        *,
        version: int | None,
        name: str | None,
        direction: str,
        outcome: str,
        checksum: str | None,
        duration_ms: int | sql.Composable | None,
        message: str | None = None,
        started_at: sql.Composable = TRANSACTION_START,
    ) -> sql.SQL:
        """``started_at``: an expression on the server's clock, the one applied_at uses
        (the default: the start of the row's transaction)."""
        lit = self._literal
        return sql.SQL(
            f"{self._fragments.insert_history}{lit(version)}, {lit(name)}, {lit(direction)}, "
            f"{lit(outcome)}, {lit(checksum)}, {lit(started_at)}, {lit(duration_ms)}, "
            f"{self._fragments.history_who}{lit(message)})"
        )

    # A step's bookkeeping is built for every step of a run: the parts that are the
    # same for the whole run (quoted table names, who applies) are rendered once, and
    # only the step's own values are quoted per step (issue 7: client time per step).

    @functools.cached_property
    def _fragments(self) -> _Fragments:
        def text(c: sql.Composable) -> str:
            return c.as_string(self.conn)

        return _Fragments(
            insert_applied=text(
                sql.SQL(
                    "INSERT INTO {} (version, name, checksum, applied_at, applied_by,"
                    " duration_ms, dirty) VALUES ("
                ).format(self.table)
            ),
            applied_by=text(sql.Literal(self.applied_by)),
            delete_applied=text(sql.SQL("DELETE FROM {} WHERE version = ").format(self.table)),
            insert_history=text(
                sql.SQL(
                    "INSERT INTO {} (version, name, direction, outcome, checksum, started_at,"
                    " duration_ms, db_user, os_user, host, tool_version, message) VALUES ("
                ).format(self.history)
            ),
            history_who=text(
                sql.SQL("current_user, {}, {}, {}, ").format(
                    sql.Literal(self.storable(self.os_user)),
                    sql.Literal(self.storable(self.host)),
                    sql.Literal(tool_version()),
                )
            ),
            one_row={
                label: text(
                    sql.SQL(
                        "SELECT CASE WHEN pg_catalog.count(*) = 1 THEN pg_catalog.min(r)::bigint"
                        " ELSE pg_catalog.int8(pg_catalog.textcat(pg_catalog.count(*)::text, {}))"
                        " END FROM vezamig_row"
                    ).format(
                        sql.Literal(
                            f" row(s) of {label} changed where vezamig writes one {SKIPPED_MARK}"
                        )
                    )
                )
                for label in (self.label, self.history_label)
            },
        )

    def exactly_one(self, stmt: sql.Composable | str, label: str, returning: str = "1") -> str:
        """``stmt`` (an INSERT, UPDATE or DELETE of one row of the table ``label``
        names), failing its transaction unless it changed exactly one row: a trigger,
        rule or row-level security that a migration created on the tracking tables
        would otherwise skip vezamig's write while the run reports the step done (the
        start of a run refuses ones already there). In the same statement, so no round
        trip: the cast of the count's text fails only when run, since it depends on the
        count (a constant would be folded, and fail, at planning). The one row's
        ``returning`` value is the result."""
        text = stmt if isinstance(stmt, str) else stmt.as_string(self.conn)
        check = self._fragments.one_row[label]
        return f"WITH vezamig_row(r) AS ({text} RETURNING {returning}) {check}"

    @property
    def codec(self) -> str | None:
        """Python's codec for the database's encoding (db.server_codec)."""
        return self._codec

    def storable(self, text: str) -> str:
        """``text`` as the database's encoding can store it (db.storable)."""
        return storable(text, self._codec)

    def _literal(self, value: object) -> str:
        """A quoted value, or an SQL expression computed by the server (a duration)."""
        if isinstance(value, sql.Composable):
            return value.as_string(self.conn)
        if isinstance(value, str):
            value = self.storable(os_text(value))  # a path's bytes that are not UTF-8
        return sql.Literal(value).as_string(self.conn)

    def write_history(self, **kwargs: Any) -> None:
        """Append one history row on its own (autocommit), e.g. after a rollback."""
        self.ensure()
        self.conn.execute(self.history_sql(**kwargs).as_string(self.conn))
