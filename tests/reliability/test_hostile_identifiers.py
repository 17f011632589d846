"""Hostile identifiers in ``--table`` and ``vezamig:lock``: quoted exactly, or rejected.

Each test checks the database afterwards: the intended object and nothing else
was created or locked, and the bystander table ``victim`` is untouched.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from .support import invoke, query, recorded, table_exists, write_tree

pytestmark = pytest.mark.reliability

FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def victim(dsn: str) -> str:
    query(dsn, "CREATE TABLE victim (id int); INSERT INTO victim VALUES (42)")
    return dsn


def victim_intact(dsn: str) -> bool:
    return table_exists(dsn, "victim") and query(dsn, "SELECT id FROM victim") == [(42,)]


def relations(dsn: str) -> set[tuple[str, str]]:
    """(schema, name) of every user relation, exactly as stored (no quoting, no folding)."""
    return {
        (s, n)
        for s, n in query(
            dsn,
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid ="
            " c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog',"
            " 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
        )
    }


def schemas(dsn: str) -> set[str]:
    return {r[0] for r in query(dsn, "SELECT nspname FROM pg_namespace")}


# ---- --table ----------------------------------------------------------------------------

QUOTED = [
    'x"; DROP TABLE victim; --',
    '"; DROP TABLE x; --',
    '\\"; DROP TABLE x; --',
    "robert'); DROP TABLE victim;--",
    "a;b",
    "Mixed Case Table",
    "évolutions_中",
    "x'y.z\"w",
    "new schema.track ing",
    "$1",
]
REJECTED = ["a.b.c", ".a", "a.", "", "x" * 60, "x\x00y"]


@pytest.mark.parametrize("table", QUOTED)
def test_a_hostile_table_name_is_quoted_and_only_that_table_is_created(
    victim: str, tree: Path, table: str
) -> None:
    write_tree(
        tree,
        {
            "up/001_made_up.sql": "CREATE TABLE made_by_step (id int);\n",
            "down/001_made_down.sql": "DROP TABLE made_by_step;\n",
        },
    )
    parts = table.split(".")
    schema, name = (parts[0], parts[1]) if len(parts) == 2 else ("public", parts[0])
    before = relations(victim)
    opts = ["-d", victim, "--dir", str(tree), "--table", table]

    up = invoke(["up", *opts])

    assert up.returncode == 0, up
    assert relations(victim) - before == {
        (schema, name),
        (schema, name + "_history"),
        ("public", "made_by_step"),
    }
    assert recorded(victim, (schema, name)) == [(1, False)]
    status = invoke(["status", "--json", *opts])
    assert status.returncode == 0, status
    assert '"current_version": 1' in status.stdout
    assert invoke(["history", *opts]).returncode == 0
    down = invoke(["down", "--yes", *opts])
    assert down.returncode == 0, down
    assert recorded(victim, (schema, name)) == []
    assert relations(victim) - before == {(schema, name), (schema, name + "_history")}
    assert victim_intact(victim)


@pytest.mark.parametrize(
    "table",
    REJECTED,
    ids=["three parts", "empty schema", "empty table", "empty", "too long", "NUL"],
)
def test_an_impossible_table_name_is_rejected_before_connecting(
    victim: str, tree: Path, table: str
) -> None:
    write_tree(tree, {"up/001_made_up.sql": "CREATE TABLE made_by_step (id int);\n"})
    before = relations(victim)
    result = invoke(["up", "-d", victim, "--dir", str(tree), "--table", table])
    assert result.returncode == 2, result
    assert "--table" in result.stderr
    assert relations(victim) == before and victim_intact(victim)


TABLE_NAMES = st.text(
    st.sampled_from([*"abcXYZ019_ .;'\"\\-$()*/=é中", "\n", "\t"]), min_size=1, max_size=24
)


@FUZZ
@given(table=TABLE_NAMES)
def test_any_table_name_is_quoted_exactly_or_rejected(victim: str, table: str) -> None:
    before, before_schemas = relations(victim), schemas(victim)
    with tempfile.TemporaryDirectory() as tmp:
        base = write_tree(Path(tmp), {"up/001_made_up.sql": "CREATE TABLE made_by_step ();\n"})
        result = invoke(["up", "-d", victim, "--dir", str(base), "--table", table])
    try:
        parts = table.split(".")
        schema, name = (parts[0], parts[1]) if len(parts) == 2 else ("public", parts[0])
        if result.returncode == 2:
            assert relations(victim) == before, result
        elif result.returncode == 0:
            assert relations(victim) - before == {
                (schema, name),
                (schema, name + "_history"),
                ("public", "made_by_step"),
            }
        else:
            # PostgreSQL itself refuses some names (e.g. a schema called pg_x): clearly.
            assert result.returncode == 1, result
            assert result.stderr.startswith("error: database error:"), result
            assert relations(victim) == before
        assert victim_intact(victim)
    finally:
        with psycopg.connect(victim, autocommit=True) as conn:
            for s, n in relations(victim) - before:
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(s, n)))
            for s in schemas(victim) - before_schemas:
                conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(s)))


# ---- vezamig:lock -----------------------------------------------------------------------


def holds_access_exclusive(quoted: str) -> str:
    """A guard: true only while this step holds ACCESS EXCLUSIVE on exactly that table."""
    return (
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() AND mode ="
        f" 'AccessExclusiveLock' AND relation = to_regclass({quoted}))"
    )


@pytest.mark.parametrize(
    "args",
    [
        "victim; DROP TABLE victim; --",
        '\\"; DROP TABLE victim; --',
        "victim NOWAIT",
        "victim IN SHARE MODE",
        "otherdb.public.victim",
        "victim, (SELECT 1)",
        "",
    ],
)
def test_a_lock_directive_that_is_not_a_list_of_names_is_exit_2_naming_file_and_line(
    victim: str, tree: Path, args: str
) -> None:
    write_tree(tree, {"up/001_locked_up.sql": f"-- note\n-- vezamig:lock {args}\nSELECT 1;\n"})
    for command in (["verify"], ["up", "-d", victim]):
        result = invoke([*command, "--dir", str(tree)])
        assert result.returncode == 2, result
        assert "001_locked_up.sql:2: lock" in result.stderr
    assert recorded(victim) == [] and victim_intact(victim)


@pytest.mark.parametrize(
    "schema_name",
    [
        ("public", "odd; DROP TABLE victim; --"),
        ("public", 'ta"ble'),
        ("we.ird", "Mixed Case"),
    ],
)
def test_a_lock_directive_locks_exactly_the_quoted_table_it_names(
    victim: str, tree: Path, schema_name: tuple[str, str]
) -> None:
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema_name[0]))
        )
        conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(*schema_name)))
        quoted = sql.Identifier(*schema_name).as_string(conn)
        literal = sql.Literal(quoted).as_string(conn)
    write_tree(
        tree,
        {
            "up/001_locked_up.sql": (
                f"-- vezamig:lock victim, {quoted}\n"
                f"-- vezamig:guard {holds_access_exclusive(literal)}\n"
                "-- vezamig:guard " + holds_access_exclusive("'victim'") + "\n"
                "SELECT 1;\n"
            )
        },
    )

    result = invoke(["up", "-d", victim, "--dir", str(tree)])

    assert result.returncode == 0, result
    assert recorded(victim) == [(1, False)]
    assert table_exists(victim, *schema_name) and victim_intact(victim)


IDENTIFIERS = st.text(
    st.sampled_from([*"abcXYZ019_ .;'\"\\-$()=,é中", "\n", "\t"]), min_size=1, max_size=30
)


@FUZZ
@given(name=IDENTIFIERS)
def test_any_quoted_table_name_in_a_lock_directive_locks_exactly_that_table(
    victim: str, name: str
) -> None:
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(name)))
        quoted = sql.Identifier(name).as_string(conn)
        literal = sql.Literal(quoted).as_string(conn)
    # The block form, since a quoted name may hold a newline.
    text = (
        f"/* vezamig:lock {quoted} */\n"
        f"/* vezamig:guard {holds_access_exclusive(literal)} */\nSELECT 1;\n"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = write_tree(Path(tmp), {"up/001_locked_up.sql": text})
            result = invoke(["up", "-d", victim, "--dir", str(base)])
        assert result.returncode == 0, result
        assert recorded(victim) == [(1, False)]
        assert table_exists(victim, name) and victim_intact(victim)
    finally:
        with psycopg.connect(victim, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            if table_exists(victim, "schema_migrations"):
                conn.execute("DELETE FROM schema_migrations")
