"""lint: risky migration DDL found in PostgreSQL's parse tree."""

from __future__ import annotations

import pytest

from vezamig.lint import RULES, Finding, lint_file, lint_sql
from vezamig.sqltext import analyze


def codes(
    sql: str, *, direction: str = "up", has_guard: bool = False, no_transaction: bool = False
) -> list[str]:
    findings = lint_sql(
        sql, direction=direction, has_guard=has_guard, no_transaction=no_transaction
    )
    return [f.code for f in findings]


# --------------------------------------------------------------------------- VZ001


def test_create_index_on_an_existing_table_warns() -> None:
    findings = lint_sql(
        "-- add index\n\nCREATE INDEX users_email ON users (email);",
        direction="up",
        has_guard=False,
        no_transaction=False,
    )
    assert findings == [findings[0]]
    assert (findings[0].code, findings[0].line, findings[0].column) == ("VZ001", 3, 1)
    assert "CONCURRENTLY" in findings[0].message
    assert "vezamig:no-transaction" in findings[0].message


def test_create_index_concurrently_in_a_no_transaction_file_passes() -> None:
    assert codes("CREATE INDEX CONCURRENTLY i ON users (email);", no_transaction=True) == []


def test_create_index_on_a_table_created_earlier_in_the_file_passes() -> None:
    sql = "CREATE TABLE public.gear (id int, name text);\nCREATE INDEX ON gear (name);"
    assert codes(sql) == []


def test_create_index_before_its_create_table_still_warns() -> None:
    assert codes("CREATE INDEX ON gear (name);\nCREATE TABLE gear (name text);") == ["VZ001"]


def test_table_names_compare_as_postgresql_folds_them() -> None:
    sql = 'CREATE TABLE "Gear" (id int);\nCREATE INDEX ON "Gear" (id);\nCREATE INDEX ON Gear (id);'
    findings = lint_sql(sql, direction="up", has_guard=False, no_transaction=False)
    assert [(f.code, f.line) for f in findings] == [("VZ001", 3)]


def test_another_schema_is_another_table() -> None:
    assert codes("CREATE TABLE t (a int);\nCREATE INDEX ON audit.t (a);") == ["VZ001"]


def test_tables_from_create_table_as_select_into_and_renames_count_as_new() -> None:
    sql = (
        "CREATE TABLE a AS SELECT 1 AS x;\nCREATE INDEX ON a (x);\n"
        "SELECT 1 AS x INTO b;\nCREATE INDEX ON b (x);\n"
        "CREATE TABLE c (x int);\nALTER TABLE c RENAME TO d;\nCREATE INDEX ON d (x);\n"
    )
    assert codes(sql) == []


def test_a_down_file_recreating_an_index_needs_concurrently_too() -> None:
    assert codes("CREATE INDEX i ON tracks (storage_key);", direction="down") == ["VZ001"]


# --------------------------------------------------------------------------- VZ002


def test_add_column_not_null_without_default_warns() -> None:
    assert codes("ALTER TABLE users ADD COLUMN age int NOT NULL;") == ["VZ002"]


def test_add_column_not_null_with_default_passes() -> None:
    assert codes("ALTER TABLE users ADD COLUMN age int NOT NULL DEFAULT 0;") == []


def test_add_column_nullable_or_self_filling_passes() -> None:
    sql = (
        "ALTER TABLE users ADD COLUMN a int, ADD COLUMN b bigserial PRIMARY KEY,"
        " ADD COLUMN c int GENERATED ALWAYS AS IDENTITY NOT NULL;"
    )
    assert codes(sql) == []


def test_default_null_and_primary_key_do_not_fill_existing_rows() -> None:
    sql = "ALTER TABLE users ADD a int NOT NULL DEFAULT NULL, ADD b int PRIMARY KEY;"
    assert codes(sql) == ["VZ002", "VZ002"]


def test_add_column_not_null_on_a_table_created_in_the_file_passes() -> None:
    assert codes("CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN age int NOT NULL;") == []


# --------------------------------------------------------------------------- VZ003


def test_alter_column_type_on_an_existing_table_warns() -> None:
    assert codes("ALTER TABLE users ALTER COLUMN id TYPE bigint;") == ["VZ003"]
    assert codes("ALTER TABLE users ALTER id SET DATA TYPE bigint;", direction="down") == ["VZ003"]


def test_alter_column_type_on_a_table_created_in_the_file_passes() -> None:
    assert codes("CREATE TABLE t (id int);\nALTER TABLE t ALTER COLUMN id TYPE bigint;") == []


def test_other_alter_table_commands_pass() -> None:
    assert codes("ALTER TABLE users ALTER COLUMN id SET DEFAULT 0, ADD COLUMN note text;") == []


# --------------------------------------------------------------------------- VZ004


def test_drop_table_in_a_down_file_without_guard_warns_for_each_table() -> None:
    findings = lint_sql(
        "DROP TABLE IF EXISTS gear, archive.gear;",
        direction="down",
        has_guard=False,
        no_transaction=False,
    )
    assert [f.code for f in findings] == ["VZ004", "VZ004"]
    assert "archive.gear" in findings[1].message
    assert "vezamig:guard" in findings[0].message


def test_the_suggested_guard_quotes_names_as_sql_must_write_them() -> None:
    findings = lint_sql(
        'DROP TABLE "Users"; DROP TABLE "order"; DROP TABLE app.tracks;',
        direction="down",
        has_guard=False,
        no_transaction=False,
    )
    suggested = [f.message.split("for example ")[1] for f in findings]
    assert suggested == [
        'SELECT NOT EXISTS (SELECT 1 FROM "Users"))',
        'SELECT NOT EXISTS (SELECT 1 FROM "order"))',
        "SELECT NOT EXISTS (SELECT 1 FROM app.tracks))",
    ]


def test_drop_column_in_a_down_file_without_guard_warns() -> None:
    sql = "ALTER TABLE tracks DROP COLUMN IF EXISTS storage_key;"
    assert codes(sql, direction="down") == ["VZ004"]


def test_drop_table_in_a_down_file_with_a_guard_passes() -> None:
    sql = "DROP TABLE gear;\nALTER TABLE tracks DROP COLUMN storage_key;"
    assert codes(sql, direction="down", has_guard=True) == []


def test_drop_table_in_an_up_file_is_not_a_rollback_risk() -> None:
    assert codes("DROP TABLE gear;\nALTER TABLE t DROP COLUMN c;") == []


def test_dropping_other_objects_in_a_down_file_passes() -> None:
    assert codes("DROP INDEX i;\nDROP VIEW v;", direction="down") == []


# --------------------------------------------------------------------------- VZ005, VZ006


def test_statements_refused_in_a_transaction_block_warn_in_a_transactional_file() -> None:
    sql = (
        "CREATE INDEX CONCURRENTLY i ON t (a);\nDROP INDEX CONCURRENTLY j;\nVACUUM t;\n"
        "REINDEX INDEX CONCURRENTLY i;\nALTER TABLE p DETACH PARTITION c CONCURRENTLY;\n"
    )
    assert codes(sql) == ["VZ005"] * 5
    assert codes(sql, no_transaction=True) == []


def test_analyze_alone_is_fine_in_a_transaction() -> None:
    assert codes("ANALYZE t;") == []


def test_transaction_control_in_a_migration_warns() -> None:
    sql = "BEGIN;\nSAVEPOINT s;\nRELEASE s;\nCOMMIT;"
    findings = lint_sql(sql, direction="up", has_guard=False, no_transaction=False)
    assert [(f.code, f.line) for f in findings] == [("VZ006", 1), ("VZ006", 4)]
    assert findings[0].message.startswith("BEGIN")


# --------------------------------------------------------------------------- general


def test_a_file_with_a_syntax_error_has_no_findings() -> None:
    assert codes("CREATE INDEX i ON t (a;") == []


def test_lint_file_reuses_an_analysed_file() -> None:
    parsed = analyze("SELECT 1;\nALTER TABLE t ALTER c TYPE text;")
    findings = lint_file(parsed, direction="up", has_guard=False, no_transaction=False)
    assert findings == [Finding("VZ003", findings[0].message, 2, 1)]
    assert str(findings[0]).startswith("2:1: VZ003 ALTER COLUMN c TYPE on t")


def test_an_unknown_direction_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="direction"):
        lint_sql("SELECT 1", direction="sideways", has_guard=False, no_transaction=False)


def test_every_rule_has_a_stable_code_and_a_summary() -> None:
    assert sorted(RULES) == ["VZ001", "VZ002", "VZ003", "VZ004", "VZ005", "VZ006"]
    assert all(RULES.values())
