"""Schema snapshot and diff for `vezamig roundtrip` (SPEC §7).

A snapshot maps every schema object to a definition text read from the system
catalogs, so two snapshots taken around an up/down pair can be compared object
by object and the differences named in words a reviewer can act on.

Design decisions (see /work/notes/snapshot.md):

- One catalog query per call (a UNION ALL over all object kinds): the roundtrip
  takes thousands of snapshots, so round trips matter more than elegance.
- The query runs with ``search_path = pg_catalog``, so every name printed by
  ``pg_get_*def`` and ``format_type`` is schema-qualified (``public.tracks``).
  That is stable no matter what search_path the migrations set.
- Columns are compared by name, not position: ``DROP COLUMN`` + ``ADD COLUMN``
  cannot restore a position, so a position check would fail correct downs.
- No OIDs, no sequence values, no owners, grants or comments: data and
  environment are not schema.
- Objects that belong to an extension are left out; the extension itself is
  compared by name, version and schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

Key = tuple[str, str]

# Display and sort order: containers before their contents.
KIND_ORDER: tuple[str, ...] = (
    "schema",
    "extension",
    "access method",
    "enum",
    "type",
    "table",
    "column",
    "constraint",
    "index",
    "sequence",
    "view",
    "materialized view",
    "function",
    "procedure",
    "aggregate",
    "trigger",
    "event trigger",
)

_SYSTEM_SCHEMA = "(n.nspname !~ '^pg_' AND n.nspname <> 'information_schema')"


def _not_in_extension(catalog: str, oid: str) -> str:
    """SQL condition: the object is not a member of an extension."""
    return (
        "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = "
        f"'{catalog}'::regclass AND e.objid = {oid} AND e.deptype = 'e')"
    )


_QNAME = "quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
_RELKIND = "CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'table' END"
_MODIFY = "CASE {col} WHEN 'r' THEN 'READ_ONLY' WHEN 's' THEN 'SHAREABLE' ELSE 'READ_WRITE' END"

# Each branch yields (kind, name, owner_kind, owner_name, definition).
_BRANCHES: tuple[str, ...] = (
    # schemas
    f"""
    SELECT 'schema', quote_ident(n.nspname), NULL, NULL, 'SCHEMA'
    FROM pg_namespace n
    WHERE {_SYSTEM_SCHEMA} AND {_not_in_extension("pg_namespace", "n.oid")}
    """,
    # extensions
    """
    SELECT 'extension', quote_ident(x.extname), NULL, NULL,
           'version ' || x.extversion || ' in schema ' || quote_ident(n.nspname)
    FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
    """,
    # access methods a migration created (the built-in ones have OIDs below 16384)
    f"""
    SELECT 'access method', quote_ident(a.amname), NULL, NULL,
           CASE a.amtype WHEN 't' THEN 'TABLE' ELSE 'INDEX' END
           || ' HANDLER ' || a.amhandler::regproc::text
    FROM pg_am a
    WHERE a.oid >= 16384 AND {_not_in_extension("pg_am", "a.oid")}
    """,
    # tables (plain, partitioned, foreign)
    f"""
    SELECT 'table', {_QNAME}, 'schema', quote_ident(n.nspname),
           CASE c.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table'
                          ELSE 'table' END
           || CASE WHEN c.relpersistence = 'u' THEN ' UNLOGGED' ELSE '' END
           || CASE WHEN c.reloftype <> 0 THEN ' OF ' || c.reloftype::regtype::text ELSE '' END
           || CASE WHEN c.relkind = 'p' THEN ' PARTITION BY ' || pg_get_partkeydef(c.oid)
                   ELSE '' END
           || COALESCE((SELECT ' USING ' || quote_ident(am.amname) FROM pg_am am
                        WHERE am.oid = c.relam AND am.amname <> 'heap'), '')
           || COALESCE((SELECT ' PARTITION OF ' || p.oid::regclass::text || ' '
                               || pg_get_expr(c.relpartbound, c.oid)
                        FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                        WHERE i.inhrelid = c.oid AND c.relispartition), '')
           || COALESCE((SELECT ' INHERITS (' || string_agg(i.inhparent::regclass::text, ', '
                                                       ORDER BY i.inhseqno) || ')'
                        FROM pg_inherits i
                        WHERE i.inhrelid = c.oid AND NOT c.relispartition
                        HAVING count(*) > 0), '')
           || COALESCE(' WITH (' || array_to_string(c.reloptions, ', ') || ')', '')
           || CASE WHEN c.relrowsecurity THEN ' ROW LEVEL SECURITY' ELSE '' END
           || CASE WHEN c.relforcerowsecurity THEN ' FORCE ROW LEVEL SECURITY' ELSE '' END
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'f') AND {_SYSTEM_SCHEMA}
      AND c.oid <> ALL(%(excluded)s::oid[])
      AND {_not_in_extension("pg_class", "c.oid")}
    """,
    # columns of tables, compared by name (position is deliberately ignored)
    f"""
    SELECT 'column', {_QNAME} || '.' || quote_ident(a.attname), 'table', {_QNAME},
           format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attcollation <> t.typcollation
                   THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END
           || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
           || CASE WHEN a.attgenerated = 's'
                   THEN ' GENERATED ALWAYS AS (' || pg_get_expr(d.adbin, d.adrelid) || ') STORED'
                   WHEN d.adbin IS NOT NULL
                   THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid)
                   ELSE '' END
           || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                 WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY'
                                 ELSE '' END
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
      AND {_SYSTEM_SCHEMA}
      AND c.oid <> ALL(%(excluded)s::oid[])
      AND {_not_in_extension("pg_class", "c.oid")}
    """,
    # constraints of tables and domains
    f"""
    SELECT 'constraint',
           quote_ident(n.nspname) || '.'
           || quote_ident(COALESCE(c.relname, t.typname)) || '.' || quote_ident(k.conname),
           CASE WHEN k.conrelid <> 0 THEN 'table' ELSE 'type' END,
           quote_ident(n.nspname) || '.' || quote_ident(COALESCE(c.relname, t.typname)),
           pg_get_constraintdef(k.oid)
    FROM pg_constraint k
    LEFT JOIN pg_class c ON c.oid = k.conrelid AND k.conrelid <> 0
    LEFT JOIN pg_type t ON t.oid = k.contypid AND k.contypid <> 0
    JOIN pg_namespace n ON n.oid = k.connamespace
    WHERE (c.oid IS NOT NULL OR t.oid IS NOT NULL) AND {_SYSTEM_SCHEMA}
      AND k.conrelid <> ALL(%(excluded)s::oid[])
      AND {_not_in_extension("pg_class", "k.conrelid")}
      AND {_not_in_extension("pg_type", "k.contypid")}
    """,
    # indexes not backing a constraint (those are covered by the constraint)
    f"""
    SELECT 'index', quote_ident(n.nspname) || '.' || quote_ident(ic.relname), {_RELKIND},
           quote_ident(cn.nspname) || '.' || quote_ident(c.relname),
           pg_get_indexdef(i.indexrelid)
           || CASE WHEN NOT i.indisvalid THEN ' -- INVALID' ELSE '' END
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = ic.relnamespace
    JOIN pg_namespace cn ON cn.oid = c.relnamespace
    WHERE {_SYSTEM_SCHEMA}
      AND c.relkind IN ('r', 'p', 'f', 'm')
      AND i.indrelid <> ALL(%(excluded)s::oid[])
      AND {_not_in_extension("pg_class", "i.indrelid")}
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                      WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                        AND k.contype IN ('p', 'u', 'x'))
    """,
    # sequences: shape and owner, never the current value
    f"""
    SELECT 'sequence', {_QNAME},
           CASE WHEN o.refobjid IS NOT NULL THEN 'table' ELSE 'schema' END,
           CASE WHEN o.refobjid IS NOT NULL
                THEN quote_ident(on_.nspname) || '.' || quote_ident(oc.relname)
                ELSE quote_ident(n.nspname) END,
           CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END
           || format_type(s.seqtypid, NULL)
           || ' START ' || s.seqstart || ' INCREMENT ' || s.seqincrement
           || ' MINVALUE ' || s.seqmin || ' MAXVALUE ' || s.seqmax
           || ' CACHE ' || s.seqcache
           || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END
           || COALESCE(' OWNED BY ' || quote_ident(on_.nspname) || '.' || quote_ident(oc.relname)
                       || '.' || quote_ident(oa.attname), '')
    FROM pg_sequence s
    JOIN pg_class c ON c.oid = s.seqrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_depend o ON o.classid = 'pg_class'::regclass AND o.objid = c.oid
         AND o.refclassid = 'pg_class'::regclass AND o.refobjsubid > 0
         AND o.deptype IN ('a', 'i')
    LEFT JOIN pg_class oc ON oc.oid = o.refobjid
    LEFT JOIN pg_namespace on_ ON on_.oid = oc.relnamespace
    LEFT JOIN pg_attribute oa ON oa.attrelid = o.refobjid AND oa.attnum = o.refobjsubid
    WHERE {_SYSTEM_SCHEMA}
      AND c.oid <> ALL(%(excluded)s::oid[])
      AND COALESCE(o.refobjid, 0) <> ALL(%(excluded)s::oid[])
      AND {_not_in_extension("pg_class", "c.oid")}
    """,
    # views and materialized views
    f"""
    SELECT CASE c.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END,
           {_QNAME}, 'schema', quote_ident(n.nspname),
           COALESCE((SELECT 'USING ' || quote_ident(am.amname) || ' ' FROM pg_am am
                     WHERE am.oid = c.relam AND am.amname <> 'heap'), '')
           || COALESCE('WITH (' || array_to_string(c.reloptions, ', ') || ') ', '')
           || pg_get_viewdef(c.oid, true)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('v', 'm') AND {_SYSTEM_SCHEMA}
      AND {_not_in_extension("pg_class", "c.oid")}
    """,
    # functions, procedures, aggregates (pg_get_functiondef refuses aggregates);
    # a range type's constructors are internal to the type and left out
    f"""
    SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                          ELSE 'function' END,
           quote_ident(n.nspname) || '.' || quote_ident(p.proname)
           || '(' || pg_get_function_identity_arguments(p.oid) || ')',
           'schema', quote_ident(n.nspname),
           CASE WHEN p.prokind = 'a' THEN
                'AGGREGATE RETURNS ' || pg_get_function_result(p.oid)
                || ' (SFUNC = ' || g.aggtransfn::regprocedure::text
                || ', STYPE = ' || format_type(g.aggtranstype, NULL)
                || CASE WHEN g.aggtransspace <> 0 THEN ', SSPACE = ' || g.aggtransspace
                        ELSE '' END
                || CASE WHEN g.aggfinalfn <> 0
                        THEN ', FINALFUNC = ' || g.aggfinalfn::regprocedure::text ELSE '' END
                || CASE WHEN g.aggfinalextra THEN ', FINALFUNC_EXTRA' ELSE '' END
                || ', FINALFUNC_MODIFY = ' || {_MODIFY.format(col="g.aggfinalmodify")}
                || CASE WHEN g.aggcombinefn <> 0
                        THEN ', COMBINEFUNC = ' || g.aggcombinefn::regprocedure::text
                        ELSE '' END
                || CASE WHEN g.aggserialfn <> 0
                        THEN ', SERIALFUNC = ' || g.aggserialfn::regprocedure::text ELSE '' END
                || CASE WHEN g.aggdeserialfn <> 0
                        THEN ', DESERIALFUNC = ' || g.aggdeserialfn::regprocedure::text
                        ELSE '' END
                || COALESCE(', INITCOND = ' || quote_literal(g.agginitval), '')
                || CASE WHEN g.aggmtransfn <> 0
                        THEN ', MSFUNC = ' || g.aggmtransfn::regprocedure::text
                             || ', MINVFUNC = ' || g.aggminvtransfn::regprocedure::text
                             || ', MSTYPE = ' || format_type(g.aggmtranstype, NULL)
                             || CASE WHEN g.aggmtransspace <> 0
                                     THEN ', MSSPACE = ' || g.aggmtransspace ELSE '' END
                             || CASE WHEN g.aggmfinalfn <> 0
                                     THEN ', MFINALFUNC = ' || g.aggmfinalfn::regprocedure::text
                                     ELSE '' END
                             || CASE WHEN g.aggmfinalextra THEN ', MFINALFUNC_EXTRA' ELSE '' END
                             || ', MFINALFUNC_MODIFY = '
                             || {_MODIFY.format(col="g.aggmfinalmodify")}
                             || COALESCE(', MINITCOND = ' || quote_literal(g.aggminitval), '')
                        ELSE '' END
                || CASE WHEN g.aggsortop <> 0 THEN ', SORTOP = ' || g.aggsortop::regoperator::text
                        ELSE '' END
                || ', PARALLEL = ' || CASE p.proparallel WHEN 's' THEN 'SAFE'
                                                         WHEN 'r' THEN 'RESTRICTED'
                                                         ELSE 'UNSAFE' END
                || CASE WHEN g.aggnumdirectargs <> 0
                        THEN ', DIRECT ARGUMENTS ' || g.aggnumdirectargs ELSE '' END
                || ', KIND = ' || g.aggkind::text || ')'
                ELSE pg_get_functiondef(p.oid) END
    FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    LEFT JOIN pg_aggregate g ON g.aggfnoid = p.oid
    WHERE {_SYSTEM_SCHEMA} AND {_not_in_extension("pg_proc", "p.oid")}
      AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_proc'::regclass
                      AND i.objid = p.oid AND i.deptype = 'i')
    """,
    # triggers (internal ones, e.g. for foreign keys, belong to their constraint)
    f"""
    SELECT 'trigger', {_QNAME} || '.' || quote_ident(g.tgname), {_RELKIND}, {_QNAME},
           pg_get_triggerdef(g.oid)
           || CASE g.tgenabled WHEN 'D' THEN ' -- DISABLED'
                               WHEN 'R' THEN ' -- ENABLE REPLICA'
                               WHEN 'A' THEN ' -- ENABLE ALWAYS'
                               ELSE '' END
    FROM pg_trigger g
    JOIN pg_class c ON c.oid = g.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT g.tgisinternal AND {_SYSTEM_SCHEMA}
      AND c.oid <> ALL(%(excluded)s::oid[])
      AND {_not_in_extension("pg_class", "c.oid")}
    """,
    # event triggers (database-wide: no schema)
    f"""
    SELECT 'event trigger', quote_ident(t.evtname), NULL, NULL,
           'ON ' || t.evtevent
           || COALESCE(' WHEN TAG IN (' || array_to_string(t.evttags, ', ') || ')', '')
           || ' EXECUTE FUNCTION ' || t.evtfoid::regprocedure::text
           || CASE t.evtenabled WHEN 'D' THEN ' -- DISABLED'
                                WHEN 'R' THEN ' -- ENABLE REPLICA'
                                WHEN 'A' THEN ' -- ENABLE ALWAYS'
                                ELSE '' END
    FROM pg_event_trigger t
    WHERE {_not_in_extension("pg_event_trigger", "t.oid")}
    """,
    # enum types with their values in order
    f"""
    SELECT 'enum', quote_ident(n.nspname) || '.' || quote_ident(t.typname),
           'schema', quote_ident(n.nspname),
           'ENUM (' || COALESCE((SELECT string_agg(quote_literal(e.enumlabel), ', '
                                                   ORDER BY e.enumsortorder)
                                 FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE t.typtype = 'e' AND {_SYSTEM_SCHEMA} AND {_not_in_extension("pg_type", "t.oid")}
    """,
    # domains, stand-alone composite types, range types
    f"""
    SELECT 'type', quote_ident(n.nspname) || '.' || quote_ident(t.typname),
           'schema', quote_ident(n.nspname),
           CASE t.typtype
             WHEN 'd' THEN 'DOMAIN ' || format_type(t.typbasetype, t.typtypmod)
                  || CASE WHEN t.typcollation <> bt.typcollation
                          THEN ' COLLATE ' || t.typcollation::regcollation::text ELSE '' END
                  || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                  || COALESCE(' DEFAULT ' || pg_get_expr(t.typdefaultbin, 0), '')
             WHEN 'r' THEN 'RANGE (SUBTYPE = ' || format_type(r.rngsubtype, NULL)
                  || CASE WHEN r.rngcollation <> 0
                          THEN ', COLLATION = ' || r.rngcollation::regcollation::text
                          ELSE '' END
                  || ', SUBTYPE_OPCLASS = ' || quote_ident(oc.opcname)
                  || CASE WHEN r.rngcanonical <> 0
                          THEN ', CANONICAL = ' || r.rngcanonical::text ELSE '' END
                  || CASE WHEN r.rngsubdiff <> 0
                          THEN ', SUBTYPE_DIFF = ' || r.rngsubdiff::text ELSE '' END
                  || ')'
             ELSE 'COMPOSITE (' || COALESCE((
                    SELECT string_agg(quote_ident(a.attname) || ' '
                                      || format_type(a.atttypid, a.atttypmod), ', '
                                      ORDER BY a.attnum)
                    FROM pg_attribute a
                    WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped),
                  '') || ')'
           END
    FROM pg_type t
    JOIN pg_namespace n ON n.oid = t.typnamespace
    LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
    LEFT JOIN pg_range r ON r.rngtypid = t.oid
    LEFT JOIN pg_opclass oc ON oc.oid = r.rngsubopc
    LEFT JOIN pg_class tc ON tc.oid = t.typrelid
    WHERE (t.typtype IN ('d', 'r') OR (t.typtype = 'c' AND tc.relkind = 'c'))
      AND {_SYSTEM_SCHEMA} AND {_not_in_extension("pg_type", "t.oid")}
    """,
)

_SNAPSHOT_QUERY = "\nUNION ALL\n".join(b.strip() for b in _BRANCHES)


@dataclass(frozen=True)
class Snapshot:
    """Every schema object as (kind, qualified name) -> definition text.

    ``owners`` maps an object to the object it lives in (a column to its
    table, a table to its schema) so a summary can fold the contents of a
    leftover table into one line.
    """

    objects: Mapping[Key, str]
    owners: Mapping[Key, Key] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    """One object that differs between the expected and the actual snapshot."""

    kind: str
    name: str
    change: str  # "missing" | "extra" | "changed"
    expected: str | None
    actual: str | None
    owner: Key | None = None

    @property
    def display_name(self) -> str:
        return display_name(self.name)

    def describe(self, after: str) -> str:
        """One readable line, e.g. 'column tracks.storage_key still exists after down of 985'."""
        what = f"{self.kind} {self.display_name}"
        if self.change == "extra":
            return f"{what} still exists {after}"
        if self.change == "missing":
            return f"{what} is missing {after}"
        was, now = _excerpt(self.expected or "", self.actual or "")
        line = f"{what} changed {after}: {was}, {now}"
        if self.kind == "enum" and after.startswith("after down"):
            # The usual cause, and one a down file cannot undo in place.
            line += (
                " (PostgreSQL cannot drop an enum value: if the up ran ALTER TYPE … ADD VALUE, "
                "rebuild the type in the down file, or make the version irreversible)"
            )
        return line


def display_name(name: str) -> str:
    """Drop the ``public.`` prefix: it is noise in messages, not in keys."""
    return name.removeprefix("public.")


def take_snapshot(conn: psycopg.Connection[Any], *, exclude_tables: Iterable[str] = ()) -> Snapshot:
    """Read the schema from the catalogs in one query.

    ``exclude_tables`` names tables to leave out together with their columns,
    constraints, indexes, triggers and owned sequences (the tracking tables).
    Unqualified names resolve through the connection's search_path; names are
    taken literally (``Foo`` is the table "Foo"), as ``sql.Identifier`` would.
    """
    names = [_quoted_table(conn, name) for name in exclude_tables]
    objects: dict[Key, str] = {}
    owners: dict[Key, Key] = {}
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            "SELECT current_setting('search_path'),"
            " ARRAY(SELECT r FROM unnest(%s::text[]) AS x,"
            "       LATERAL to_regclass(x) AS r WHERE r IS NOT NULL)::oid[]",
            (names,),
        )
        row = cur.fetchone()
        assert row is not None
        old_path, excluded = row
        cur.execute("SELECT set_config('search_path', 'pg_catalog', true)")
        cur.execute(_SNAPSHOT_QUERY, {"excluded": excluded})
        for kind, name, owner_kind, owner_name, definition in cur.fetchall():
            key = (kind, name)
            objects[key] = definition
            if owner_kind is not None:
                owners[key] = (owner_kind, owner_name)
        # Restore it ourselves: inside a caller's transaction a savepoint
        # release would otherwise keep pg_catalog until that transaction ends.
        cur.execute("SELECT set_config('search_path', %s, true)", (old_path,))
    return Snapshot(objects=objects, owners=owners)


def _quoted_table(conn: psycopg.Connection[Any], name: str) -> str:
    schema, dot, table = name.partition(".")
    ident = sql.Identifier(schema, table) if dot else sql.Identifier(name)
    return ident.as_string(conn)


def _sort_key(key: Key) -> tuple[int, str]:
    kind, name = key
    try:
        rank = KIND_ORDER.index(kind)
    except ValueError:
        rank = len(KIND_ORDER)
    return rank, name


def diff_snapshots(expected: Snapshot, actual: Snapshot) -> list[Difference]:
    """Every object missing, extra or changed in ``actual``, containers first."""
    diffs: list[Difference] = []
    for key in sorted(expected.objects.keys() | actual.objects.keys(), key=_sort_key):
        want = expected.objects.get(key)
        got = actual.objects.get(key)
        if want == got:
            continue
        if got is None:
            change, owner = "missing", expected.owners.get(key)
        elif want is None:
            change, owner = "extra", actual.owners.get(key)
        else:
            change, owner = "changed", actual.owners.get(key)
        diffs.append(Difference(key[0], key[1], change, want, got, owner))
    return diffs


def summarize(diffs: list[Difference], after: str, limit: int = 20) -> list[str]:
    """At most ``limit`` lines (plus one 'and N more'), leftovers folded.

    The columns, indexes, … of a table that itself still exists (or is
    missing) are counted on the table's line instead of listed one by one.
    """
    by_key = {(d.kind, d.name): d for d in diffs}

    def reported_ancestor(d: Difference) -> Key | None:
        top: Key | None = None
        current = d
        seen: set[Key] = set()
        while current.owner is not None and current.owner not in seen:
            seen.add(current.owner)
            parent = by_key.get(current.owner)
            if parent is None or parent.change != d.change or d.change == "changed":
                break
            top = current.owner
            current = parent
        return top

    folded: dict[Key, dict[str, int]] = {}
    shown: list[Difference] = []
    for d in diffs:
        top = reported_ancestor(d)
        if top is None:
            shown.append(d)
        else:
            counts = folded.setdefault(top, {})
            counts[d.kind] = counts.get(d.kind, 0) + 1

    lines: list[str] = []
    for d in shown:
        line = d.describe(after)
        inside = folded.get((d.kind, d.name), {})
        if inside:
            parts = [
                _plural(inside[k], k) for k in sorted(inside, key=lambda k: _sort_key((k, "")))
            ]
            line += f" (with {', '.join(parts)})"
        lines.append(line)
    if len(lines) > limit:
        rest = len(lines) - limit
        lines = [*lines[:limit], f"… and {rest} more difference{'s' if rest != 1 else ''}"]
    return lines


def _plural(n: int, kind: str) -> str:
    if n == 1:
        return f"1 {kind}"
    return f"{n} {kind}es" if kind.endswith("x") else f"{n} {kind}s"


_SHORT = 100


def _excerpt(expected: str, actual: str) -> tuple[str, str]:
    """'was …' and 'now …' parts that show where two definitions differ."""
    if "\n" not in expected and "\n" not in actual:
        if len(expected) <= _SHORT and len(actual) <= _SHORT:
            return f"was {expected!r}", f"now {actual!r}"
        a, b = _window(expected, actual)
        return f"was {a!r}", f"now {b!r}"
    from difflib import SequenceMatcher

    old_lines = expected.splitlines()
    new_lines = actual.splitlines()
    # The first block of lines that differs, as a line diff sees it: a line that was
    # removed or added is named as such, not as every later line shifted by one.
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, old_lines, new_lines).get_opcodes():
        if tag == "equal":
            continue
        # The whole block (up to a few lines), so a line that came with the change
        # (a view's new WHERE) is not hidden behind the first one.
        a, b = _window(_block(old_lines[i1:i2]), _block(new_lines[j1:j2]))
        if j1 == j2:
            return f"{_lines(i1, i2)} {a!r} {'is' if i2 - i1 == 1 else 'are'} gone", (
                f"now {i2 - i1} line(s) fewer"
            )
        if i1 == i2:
            return f"{_lines(j1, j2)} {b!r} {'is' if j2 - j1 == 1 else 'are'} new", (
                f"now {j2 - j1} line(s) more"
            )
        return f"{_lines(i1, i2)} {'was' if i2 - i1 == 1 else 'were'} {a!r}", f"now {b!r}"
    return f"was {expected!r}", f"now {actual!r}"  # differ only in trailing newlines


_BLOCK_LINES = 4


def _block(lines: list[str]) -> str:
    shown = "\n".join(lines[:_BLOCK_LINES])
    return shown + ("\n…" if len(lines) > _BLOCK_LINES else "")


def _lines(start: int, end: int) -> str:
    return f"line {start + 1}" if end - start == 1 else f"lines {start + 1}–{end}"


def _window(a: str, b: str) -> tuple[str, str]:
    """Cut two long strings to the region around their first difference."""
    if len(a) <= _SHORT and len(b) <= _SHORT:
        return a, b
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    begin = max(0, start - 30)
    prefix = "…" if begin > 0 else ""

    def cut(s: str) -> str:
        piece = s[begin : begin + _SHORT]
        return prefix + piece + ("…" if begin + _SHORT < len(s) else "")

    return cut(a), cut(b)
