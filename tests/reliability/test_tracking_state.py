"""The tracking table edited by hand into a state vezamig would never write.

``status`` must report it (exit 0, or 3 with ``--exit-code``), and ``up`` and
``down`` must refuse with an explanation, changing nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import history, invoke, query, recorded, table_exists, write_tree

pytestmark = pytest.mark.reliability

FILES = {
    "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
    "down/001_a_down.sql": "DROP TABLE a;\n",
    "up/002_b_up.sql": "CREATE TABLE b (id int);\n",
    "down/002_b_down.sql": "DROP TABLE b;\n",
}


@pytest.fixture
def applied(dsn: str, tree: Path) -> str:
    """Versions 1 and 2 applied by vezamig itself."""
    write_tree(tree, FILES)
    result = invoke(["up", "-d", dsn, "--dir", str(tree)])
    assert result.returncode == 0, result
    return dsn


def snapshot(dsn: str) -> tuple[object, ...]:
    """Everything a refused run must leave as it was."""
    return (
        query(dsn, "SELECT * FROM schema_migrations ORDER BY version, applied_at"),
        len(history(dsn)),
        table_exists(dsn, "a"),
        table_exists(dsn, "b"),
    )


def states(dsn: str, tree: Path) -> dict[int, list[str]]:
    result = invoke(["status", "--json", "-d", dsn, "--dir", str(tree)])
    assert result.returncode == 0, result
    out: dict[int, list[str]] = {}
    for m in json.loads(result.stdout)["migrations"]:
        out.setdefault(m["version"], []).append(m["state"])
    return out


def refuses(dsn: str, tree: Path, *reasons: str) -> None:
    before = snapshot(dsn)
    for command in (["up"], ["down", "--yes"], ["down", "--to", "0", "--yes"]):
        result = invoke([*command, "-d", dsn, "--dir", str(tree)])
        assert result.returncode == 3, result
        assert "Traceback" not in result.output
        for reason in reasons:
            assert reason in result.stderr, result
    assert snapshot(dsn) == before


def test_a_recorded_version_higher_than_every_file_is_missing_and_blocks_up_and_down(
    applied: str, tree: Path
) -> None:
    query(
        applied,
        "INSERT INTO schema_migrations (version, name, checksum, applied_by,"
        " duration_ms) VALUES (99, 'ghost', 'x', 'by hand', 0)",
    )
    write_tree(tree, {"up/003_c_up.sql": "CREATE TABLE c (id int);\n"})

    assert states(applied, tree) == {
        1: ["applied"],
        2: ["applied"],
        3: ["out-of-order"],
        99: ["missing"],
    }
    status = invoke(["status", "-d", applied, "--dir", str(tree), "--exit-code"])
    assert status.returncode == 3, status
    assert "ghost" in status.stdout and "missing" in status.stdout
    refuses(
        applied,
        tree,
        "version 99 (ghost) is missing: applied in the database but no up file has that version",
    )
    assert not table_exists(applied, "c")


@pytest.mark.parametrize("version", [0, -5])
def test_a_recorded_version_no_file_can_have_is_reported_and_refused(
    applied: str, tree: Path, version: int
) -> None:
    query(
        applied,
        "INSERT INTO schema_migrations (version, name, checksum, applied_by,"
        " duration_ms) VALUES (%s, 'impossible', 'x', 'by hand', 0)",
        (version,),
    )
    assert states(applied, tree)[version] == ["missing"]
    refuses(applied, tree, f"version {version} (impossible) is missing")


def test_a_version_recorded_twice_is_reported_and_blocks_up_and_down(
    applied: str, tree: Path
) -> None:
    # Only possible by hand: drop the primary key, then insert a second row.
    query(applied, "ALTER TABLE schema_migrations DROP CONSTRAINT schema_migrations_pkey")
    query(
        applied, "INSERT INTO schema_migrations SELECT * FROM schema_migrations WHERE version = 2"
    )
    write_tree(tree, {"up/003_c_up.sql": "CREATE TABLE c (id int);\n"})

    status = invoke(["status", "-d", applied, "--dir", str(tree)])
    assert "version 2" in status.output and "2 times" in status.output, status
    refuses(
        applied,
        tree,
        "version 2 (b) is recorded 2 times in schema_migrations",
        "ADD PRIMARY KEY (version)",
    )
    assert recorded(applied) == [(1, False), (2, False), (2, False)]
    assert not table_exists(applied, "c")


def test_a_dirty_row_written_by_hand_without_history_is_refused_with_the_repair_commands(
    applied: str, tree: Path
) -> None:
    query(applied, "UPDATE schema_migrations SET dirty = true WHERE version = 1")
    assert states(applied, tree)[1] == ["dirty"]
    refuses(
        applied,
        tree,
        "version 1 (a) is dirty",
        "vezamig repair --applied 1",
        "vezamig repair --rolled-back 1",
    )


def test_a_missing_history_table_is_reported_and_nothing_is_recreated(
    applied: str, tree: Path
) -> None:
    query(applied, "DROP TABLE schema_migrations_history")
    for command in (["status"], ["up"], ["down", "--yes"]):
        result = invoke([*command, "-d", applied, "--dir", str(tree)])
        assert result.returncode == 2, result
        assert (
            "schema_migrations_history is missing while its companion public.schema_migrations "
            "exists" in result.stderr
        )
    assert not table_exists(applied, "schema_migrations_history")
    assert recorded(applied) == [(1, False), (2, False)]


SKIP_ROW = (
    "CREATE FUNCTION vz_skip() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;"
)
UNTRUSTED = {
    "before-insert trigger": (
        SKIP_ROW + "CREATE TRIGGER skip_it BEFORE INSERT ON schema_migrations"
        " FOR EACH ROW EXECUTE FUNCTION vz_skip()",
        "table schema_migrations has trigger(s) that run before each row (skip_it)",
        'DROP TRIGGER skip_it ON "public"."schema_migrations";',
    ),
    "before-delete trigger on the history": (
        SKIP_ROW + "CREATE TRIGGER skip_it BEFORE DELETE OR INSERT ON schema_migrations_history"
        " FOR EACH ROW EXECUTE FUNCTION vz_skip()",
        "table schema_migrations_history has trigger(s) that run before each row (skip_it)",
        'DROP TRIGGER skip_it ON "public"."schema_migrations_history";',
    ),
    "do-instead-nothing rule": (
        "CREATE RULE nothing AS ON DELETE TO schema_migrations DO INSTEAD NOTHING",
        "table schema_migrations has rule(s) (nothing)",
        'DROP RULE nothing ON "public"."schema_migrations";',
    ),
}


@pytest.mark.parametrize(("setup", "found", "fix"), UNTRUSTED.values(), ids=list(UNTRUSTED))
def test_a_trigger_or_rule_that_could_skip_the_bookkeeping_is_refused_before_anything_runs(
    applied: str, tree: Path, setup: str, found: str, fix: str
) -> None:
    """Such a write would change no row while the run reported the version applied (or
    rolled back), and the next run would apply it twice."""
    query(applied, setup)
    write_tree(tree, {"up/003_c_up.sql": "CREATE TABLE c (id int);\n"})
    before = snapshot(applied)
    for command in (
        ["up"],
        ["down", "--yes"],
        ["baseline", "--version", "3"],
        ["repair", "--checksums", "--yes"],
    ):
        result = invoke([*command, "-d", applied, "--dir", str(tree)])
        assert result.returncode == 2, (command, result)
        assert found in result.stderr
        assert "vezamig would not know whether its own records are true" in result.stderr
        assert fix in result.stderr
    assert snapshot(applied) == before
    assert not table_exists(applied, "c")
    # Reading is still true: status and history work.
    assert states(applied, tree) == {1: ["applied"], 2: ["applied"], 3: ["pending"]}
    assert invoke(["history", "-d", applied, "--dir", str(tree)]).returncode == 0


def test_row_level_security_that_hides_applied_versions_is_refused_by_every_command(
    applied: str, tree: Path
) -> None:
    query(
        applied,
        "DROP ROLE IF EXISTS vz_rls_migrator; CREATE ROLE vz_rls_migrator LOGIN;"
        " GRANT SELECT, INSERT, UPDATE, DELETE ON schema_migrations,"
        " schema_migrations_history TO vz_rls_migrator;"
        " ALTER TABLE schema_migrations ENABLE ROW LEVEL SECURITY",
    )
    try:
        before = snapshot(applied)
        for command in (["status"], ["status", "--json"], ["up"], ["down", "--yes"]):
            result = invoke([*command, "-d", f"{applied} user=vz_rls_migrator", "--dir", str(tree)])
            assert result.returncode == 2, (command, result)
            assert result.stdout == ""
            assert "row-level security that can hide rows from vz_rls_migrator" in result.stderr
            assert 'ALTER TABLE "public"."schema_migrations" DISABLE ROW LEVEL SECURITY;' in (
                result.stderr
            )
        assert snapshot(applied) == before
        # The owner is not subject to it: its reads are whole.
        assert states(applied, tree) == {1: ["applied"], 2: ["applied"]}
    finally:
        query(
            applied,
            "REVOKE ALL ON schema_migrations, schema_migrations_history FROM vz_rls_migrator;"
            " DROP ROLE vz_rls_migrator",
        )


def test_a_foreign_table_earlier_in_search_path_is_named_with_its_schema(
    applied: str, tree: Path
) -> None:
    """vezamig's own table is in public; a table of the same name in a schema searched
    first hides it, and the message says where it found that one."""
    query(
        applied,
        "CREATE SCHEMA shadow; CREATE TABLE shadow.schema_migrations (version bigint, dirty bool);"
        " DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = shadow, public',"
        " current_database()); END$$",
    )
    for command in (["status"], ["up"]):
        result = invoke([*command, "-d", applied, "--dir", str(tree)])
        assert result.returncode == 2, result
        assert (
            "table schema_migrations (in schema shadow) exists but is not a vezamig tracking table"
        ) in result.stderr


def test_the_statements_that_remove_untrusted_objects_work_when_pasted(
    dsn: str, tree: Path
) -> None:
    """Every trigger and rule of both tables is named, with names and table quoted, so
    the printed statements are the fix, on the right table even beside a namesake."""
    write_tree(tree, FILES)
    table = ["--table", "My Schema.Mig Table"]
    assert invoke(["up", "-d", dsn, "--dir", str(tree), *table]).returncode == 0
    query(
        dsn,
        SKIP_ROW + 'CREATE TABLE "my schema_mig table" (x int);'
        ' CREATE TRIGGER "Skip It" BEFORE INSERT ON "My Schema"."Mig Table"'
        " FOR EACH ROW EXECUTE FUNCTION vz_skip();"
        ' CREATE TRIGGER second BEFORE UPDATE ON "My Schema"."Mig Table"'
        " FOR EACH ROW EXECUTE FUNCTION vz_skip();"
        ' CREATE RULE "R 1" AS ON DELETE TO "My Schema"."Mig Table_history" DO INSTEAD NOTHING;'
        ' CREATE TRIGGER "Skip It" BEFORE INSERT ON "my schema_mig table"'
        " FOR EACH ROW EXECUTE FUNCTION vz_skip()",
    )
    result = invoke(["up", "-d", dsn, "--dir", str(tree), *table])
    assert result.returncode == 2, result
    fixes = [line.strip() for line in result.stderr.splitlines() if line.startswith("    ")]
    assert fixes == [
        'DROP TRIGGER "Skip It" ON "My Schema"."Mig Table";',
        'DROP TRIGGER second ON "My Schema"."Mig Table";',
        'DROP RULE "R 1" ON "My Schema"."Mig Table_history";',
    ]
    query(dsn, " ".join(fixes))
    assert invoke(["up", "-d", dsn, "--dir", str(tree), *table]).returncode == 0
    # The namesake's trigger was not touched.
    assert query(dsn, "SELECT tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal") == [
        ('"my schema_mig table"',)
    ]


def test_row_level_security_that_hides_nothing_is_not_refused(applied: str, tree: Path) -> None:
    """A permissive USING (true) policy lets the role see every row; security on the
    history hides only audit rows, the DBA's choice."""
    query(
        applied,
        "DROP ROLE IF EXISTS vz_rls_reader; CREATE ROLE vz_rls_reader LOGIN;"
        " GRANT SELECT ON schema_migrations, schema_migrations_history TO vz_rls_reader;"
        " ALTER TABLE schema_migrations ENABLE ROW LEVEL SECURITY;"
        " CREATE POLICY everyone ON schema_migrations USING (true);"
        " ALTER TABLE schema_migrations_history ENABLE ROW LEVEL SECURITY;"
        " CREATE POLICY recent ON schema_migrations_history FOR SELECT USING (version > 1)",
    )
    try:
        result = invoke(["status", "-d", f"{applied} user=vz_rls_reader", "--dir", str(tree)])
        assert result.returncode == 0, result
        assert "current version 2" in result.stdout
        query(
            applied,
            "CREATE POLICY only_two ON schema_migrations AS RESTRICTIVE USING (version = 2)",
        )
        result = invoke(["status", "-d", f"{applied} user=vz_rls_reader", "--dir", str(tree)])
        assert result.returncode == 2, result
        assert "row-level security that can hide rows from vz_rls_reader" in result.stderr
    finally:
        query(
            applied,
            "DROP POLICY everyone ON schema_migrations; DROP POLICY IF EXISTS only_two ON"
            " schema_migrations; DROP POLICY recent ON schema_migrations_history;"
            " REVOKE ALL ON schema_migrations, schema_migrations_history FROM vz_rls_reader;"
            " DROP ROLE vz_rls_reader",
        )


# ---- the tables in another schema than the search_path's ------------------------------


def in_schema(dsn: str, schema: str) -> list[str]:
    rows = query(
        dsn,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1",
        (schema,),
    )
    return [r[0] for r in rows]


@pytest.mark.parametrize("how", ["a stray search_path", "the tables moved by a DBA"])
def test_tracking_tables_in_another_schema_refuse_a_run_instead_of_a_second_history(
    applied: str, tree: Path, how: str
) -> None:
    """Found by an audit: with the shell's search_path on another schema (or the tables
    moved there), `up` created new tracking tables and applied the whole history again
    on a migrated database; `status` showed it empty without a word."""
    from psycopg.conninfo import make_conninfo

    if how == "a stray search_path":
        query(applied, "CREATE SCHEMA other")
        dsn, here, there = make_conninfo(applied, options="-c search_path=other"), "other", "public"
    else:
        query(
            applied,
            "CREATE SCHEMA ops; ALTER TABLE schema_migrations SET SCHEMA ops;"
            " ALTER TABLE schema_migrations_history SET SCHEMA ops",
        )
        dsn, here, there = applied, "public", "ops"
    before = in_schema(applied, here)
    for command in (["up"], ["up", "--dry-run"], ["baseline", "--version", "2"]):
        result = invoke([*command, "-d", dsn, "--dir", str(tree)])
        assert result.returncode == 2, result
        assert (
            f"no schema_migrations in schema {here} (the first schema of the search_path), but "
            "vezamig's tracking tables schema_migrations and schema_migrations_history exist in "
            f"schema {there}; a run here would create new ones and apply every version again, "
            "so vezamig changed nothing"
        ) in result.stderr
        assert f"point vezamig at them with --table {there}.schema_migrations" in result.stderr
        assert f"--table {here}.schema_migrations" in result.stderr
    assert in_schema(applied, here) == before  # no second pair of tables, nothing applied
    status = invoke(["status", "-d", dsn, "--dir", str(tree)])
    assert status.returncode == 0, status
    assert f"warning: no schema_migrations in schema {here}" in status.stderr
    assert f"--table {there}.schema_migrations reads those" in status.stderr
    history_ = invoke(["history", "-d", dsn, "--dir", str(tree)])
    assert f"warning: no schema_migrations in schema {here}" in history_.stderr
    pointed = invoke(["status", "--json", "-d", dsn, "--table", f"{there}.schema_migrations"])
    assert json.loads(pointed.stdout)["current_version"] == 2


@pytest.mark.parametrize("typed", ["Schema_migrations", "SCHEMA_MIGRATIONS"])
def test_a_table_name_typed_in_another_case_refuses_a_run_instead_of_a_second_history(
    applied: str, tree: Path, typed: str
) -> None:
    """Found by an audit: PostgreSQL folds an unquoted name, vezamig takes --table
    literally, so `--table Schema_migrations` made a new, empty pair next to the real
    one and applied every version again (an idempotent history, twice)."""
    before = in_schema(applied, "public")
    for command in (["up"], ["up", "--dry-run"], ["baseline", "--version", "2"]):
        result = invoke([*command, "-d", applied, "--dir", str(tree), "--table", typed])
        assert result.returncode == 2, result
        assert (
            f"no {typed} in schema public (the first schema of the search_path), but vezamig's "
            "tracking tables schema_migrations and schema_migrations_history exist in schema "
            "public (--table is taken literally, case included); a run here would create new "
            "ones and apply every version again, so vezamig changed nothing"
        ) in result.stderr
        assert "point vezamig at them with --table public.schema_migrations" in result.stderr
        assert f"all the same: --table public.{typed}" in result.stderr
    assert in_schema(applied, "public") == before
    status = invoke(["status", "-d", applied, "--dir", str(tree), "--table", typed])
    assert status.returncode == 0, status
    assert "--table public.schema_migrations reads those" in status.stderr
    # Named with its schema, the new record is made as asked.
    made = invoke(["up", "-d", applied, "--dir", str(tree), "--table", f"public.{typed}"])
    assert made.returncode == 1, made  # the tables of the history exist already
    assert typed in in_schema(applied, "public")


def test_a_new_record_in_another_schema_is_made_when_table_names_it(
    applied: str, tree: Path
) -> None:
    from psycopg.conninfo import make_conninfo

    query(applied, "CREATE SCHEMA tenant")
    dsn = make_conninfo(applied, options="-c search_path=tenant")
    table = ["--table", "tenant.schema_migrations"]
    result = invoke(["up", "-d", dsn, "--dir", str(tree), *table])
    assert result.returncode == 0, result
    assert {"a", "b", "schema_migrations", "schema_migrations_history"} <= set(
        in_schema(applied, "tenant")
    )
