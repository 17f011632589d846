"""The command line as a whole: help, version, options, folders, layout and
directive errors, tracking-table options, connections and password redaction
(SPEC §1, §2, §4, §5)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner
from helpers import (
    UNPRIVILEGED,
    CliResult,
    applied_versions,
    cli_env,
    execute,
    history,
    migrate,
    query,
    run_cli,
    run_cli_on_terminal,
    table_exists,
    user_tables,
    write_tree,
)
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict

from vezamig import __version__
from vezamig.cli import cli

DB_COMMANDS = ["up", "down", "status", "baseline", "repair", "history", "roundtrip"]
# SPEC §5: every command that touches the database *or the files* takes the shared options.
FILE_COMMANDS = ["verify", "new"]


def vz(dsn: str, tree: Path, command: str, *args: str) -> CliResult:
    return run_cli([command, "-d", dsn, "--dir", str(tree), *args])


# ---- help, version, option placement -------------------------------------------------------


def test_version_prints_the_version() -> None:
    r = run_cli(["--version"])
    assert r.returncode == 0, r
    assert __version__ in r.stdout


def test_top_level_help_lists_the_commands() -> None:
    r = run_cli(["--help"])
    assert r.returncode == 0, r
    for name in ("up", "down", "status"):
        assert re.search(rf"^\s+{name}\s", r.stdout, re.M), name


@pytest.mark.parametrize("name", sorted(cli.commands))  # type: ignore[attr-defined]
def test_every_command_has_help(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {name}" in result.output or f"Usage: vezamig {name}" in result.output
    command = cli.commands[name]  # type: ignore[attr-defined]
    assert isinstance(command, click.Command) and command.help


@pytest.mark.parametrize("name", DB_COMMANDS + FILE_COMMANDS)
def test_every_database_command_accepts_the_shared_options(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--database-url", "-d,", "--table", "--dir", "--up-dir", "--down-dir"):
        assert option in result.output, (name, option)


@pytest.mark.parametrize("name", ["up", "down"])
def test_up_and_down_accept_the_step_options(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    for option in (
        "--to",
        "--dry-run",
        "--lock-timeout",
        "--lock-retries",
        "--statement-timeout",
        "--lock-wait",
        "--no-color",
        "--quiet",
    ):
        assert option in result.output, (name, option)


def test_help_works_from_the_real_entry_point() -> None:
    r = run_cli(["down", "--help"])
    assert r.returncode == 0, r
    assert "--yes" in r.stdout


def test_options_come_after_the_command_name_in_any_order(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a ();",
            "down/001_a_down.sql": "DROP TABLE a;",
            "up/002_b_up.sql": "CREATE TABLE b ();",
            "down/002_b_down.sql": "DROP TABLE b;",
        },
    )
    assert run_cli(["up", "--dir", str(tree), "-d", dsn]).returncode == 0
    r = run_cli(["down", "--to", "1", "-d", dsn, "--yes", "--dir", str(tree)])
    assert r.returncode == 0, r
    assert applied_versions(dsn) == [1]


def test_an_unknown_option_is_a_usage_error() -> None:
    r = run_cli(["up", "--frobnicate"])
    assert r.returncode == 2, r
    assert "--frobnicate" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--lock-timeout", "soon"],
        ["--statement-timeout", "5 parsecs"],
        ["--lock-wait", "-1s"],
        ["--lock-retries", "-1"],
        ["--to", "-3"],
        ["--to", "\u0663"],  # an Arabic-Indic three, which Python's int() reads as 3
        ["--to", "9_84"],
        ["--lock-retries", "\u0663"],
        ["--table", "a.b.c"],
        ["--table", "schema_migrations "],
        ["--lock-timeout", "0.4ms"],  # rounded: 0, no timeout at all
    ],
)
def test_bad_option_values_are_usage_errors_before_any_connection(
    tmp_path: Path, args: list[str]
) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE a ();"})
    # Port 1 refuses connections: exit 2, not 5, proves nothing was even tried.
    r = run_cli(["up", "-d", "host=127.0.0.1 port=1", "--dir", str(tree), *args])
    assert r.returncode == 2, r
    assert f"Invalid value for '{args[0]}'" in r.stderr or f"{args[0]}: " in r.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["down", "--to", "984", "--yes", "--to", "0"], "--to was given more than once"),
        (["down", "--to=984", "--to", "0"], "--to was given more than once"),
        (
            ["up", "-d", "x", "--database-url", "y"],
            "--database-url was given more than once (as -d)",
        ),
        (["status", "--table", "a", "--table=b"], "--table was given more than once"),
        # in a cluster of short options, as click reads it: -q, then -d and its value
        (["status", "--json", "-d", "x", "-qd", "y"], "-d was given more than once"),
        (["down", "-yd", "x", "-d", "y"], "-d was given more than once"),
        (["down", "-ydx", "--to", "0", "-d", "y"], "-d was given more than once"),
    ],
)
def test_an_option_given_twice_is_refused_not_the_last_one_silently_taken(
    tmp_path: Path, dsn: str, args: list[str], says: str
) -> None:
    # `down --to 984 … --to 0` would otherwise roll back every version.
    tree = write_tree(tmp_path, SIMPLE)
    migrate(dsn, tree)
    r = run_cli([*args, "--dir", str(tree)])
    assert r.returncode == 2, r
    assert f"{says}; give it once" in r.stderr
    assert applied_versions(dsn) == [1]


def test_help_wins_over_an_option_given_twice() -> None:
    for args in (
        ["status", "--table", "a", "--table", "b", "--help"],
        ["up", "-h", "--to", "1", "--to", "2"],
    ):
        r = run_cli(args)
        assert r.returncode == 0, r
        assert "Usage: vezamig" in r.stdout


def test_a_value_that_looks_like_an_option_and_repeated_flags_are_not_refused(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    r = run_cli(["up", "-d", dsn, "--dir", str(tree), "--table", "--to", "--quiet", "--quiet"])
    assert r.returncode == 0, r
    assert applied_versions(dsn, "--to") == [1]


def test_a_bad_table_name_from_the_environment_is_named_as_the_variable(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE a ();"})
    for value in ("schema_migrations ", "a.b.c"):
        r = run_cli(
            ["status", "-d", "host=127.0.0.1 port=1", "--dir", str(tree)],
            env={"VEZAMIG_TABLE": value},
        )
        assert r.returncode == 2, r
        assert r.stderr.startswith("error: VEZAMIG_TABLE (--table): "), r.stderr
    r = run_cli(["status", "-d", "host=127.0.0.1 port=1", "--dir", str(tree), "--table", "a.b.c"])
    assert r.returncode == 2 and r.stderr.startswith("error: --table: "), r


# ---- folders ----------------------------------------------------------------------------------


SIMPLE = {"up/001_a_up.sql": "CREATE TABLE a ();", "down/001_a_down.sql": "DROP TABLE a;"}


def test_the_default_folder_is_sql_in_the_working_directory(tmp_path: Path, dsn: str) -> None:
    write_tree(tmp_path / "sql", SIMPLE)
    r = run_cli(["up", "-d", dsn], cwd=tmp_path)
    assert r.returncode == 0, r
    assert table_exists(dsn, "a")


def test_a_missing_folder_is_a_usage_error(tmp_path: Path, dsn: str) -> None:
    r = run_cli(["up", "-d", dsn], cwd=tmp_path)
    assert r.returncode == 2, r
    assert "does not exist" in r.stderr
    assert user_tables(dsn) == []


@pytest.mark.parametrize("folder", ["up", "down"])
def test_a_folder_the_user_cannot_list_is_a_layout_error_naming_it(
    tmp_path: Path, dsn: str, folder: str
) -> None:
    """Not "cannot write the output" (exit 74), which an OSError escaping used to say."""
    tree = write_tree(tmp_path / "sql", SIMPLE)
    (tree / folder).chmod(0)
    try:
        for args in (["status"], ["up", "--dry-run"], ["up"], ["verify"], ["new", "b"]):
            r = run_cli([*args, "-d", dsn, "--dir", str(tree)], prefix=UNPRIVILEGED)
            assert r.returncode == 2, (args, r)
            assert f"{tree / folder}: cannot read the folder (Permission denied)" in r.stderr
            assert "chmod u+rx" in r.stderr
            assert "output" not in r.stderr
    finally:
        (tree / folder).chmod(0o755)
    assert user_tables(dsn) == []
    assert sorted(p.name for p in (tree / "up").iterdir()) == ["001_a_up.sql"]


@pytest.mark.parametrize("folder", ["up", "down"])
def test_a_folder_the_user_may_list_but_not_search_names_what_it_cannot_read(
    tmp_path: Path, dsn: str, folder: str
) -> None:
    """Mode 444: the names are listed, the files cannot be opened; never a traceback
    or the 'cannot write the output' of an OSError escaping."""
    tree = write_tree(tmp_path / "sql", SIMPLE)
    (tree / folder).chmod(0o444)
    try:
        # (`up` reads a down file only for a step that runs it)
        for args in [["verify"]] + ([["up", "--dry-run"]] if folder == "up" else []):
            r = run_cli([*args, "-d", dsn, "--dir", str(tree)], prefix=UNPRIVILEGED)
            assert r.returncode == 2, (args, r)
            assert (
                f"{tree / folder}/001_a_{folder}.sql: cannot read (Permission denied)" in r.stderr
            )
        r = run_cli(["new", "b", "--dir", str(tree)], prefix=UNPRIVILEGED)
        assert r.returncode == 2, r
        assert f"{tree / folder}: cannot read the folder (Permission denied)" in r.stderr
        assert "no file was created" in r.stderr
    finally:
        (tree / folder).chmod(0o755)
    assert user_tables(dsn) == []


def test_a_migration_folder_that_is_a_broken_link_is_a_layout_error(
    tmp_path: Path, dsn: str
) -> None:
    """Not an absent down folder (every version irreversible), nor a traceback from a
    link that loops."""
    tree = write_tree(tmp_path / "sql", {"up/001_a_up.sql": "CREATE TABLE a ();"})
    (tree / "down").rmdir()  # write_tree makes both folders
    (tree / "down").symlink_to(tree / "down")  # a loop
    for args in (["status"], ["up"], ["verify"], ["new", "b"]):
        r = run_cli(
            [*args, "-d", dsn, "--dir", str(tree)]
            if args[0] != "new"
            else [*args, "--dir", str(tree)]
        )
        assert r.returncode == 2, (args, r)
        assert (
            f"migration folder {tree / 'down'} is a symbolic link to nothing (or a loop)"
            in r.stderr
        )
    assert user_tables(dsn) == []


def test_vezamig_dir_sets_the_folder(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path / "db", SIMPLE)
    r = run_cli(["up", "-d", dsn], env={"VEZAMIG_DIR": str(tree)}, cwd=tmp_path)
    assert r.returncode == 0, r
    assert table_exists(dsn, "a")


def test_up_dir_and_down_dir_override_the_folder(tmp_path: Path, dsn: str) -> None:
    write_tree(
        tmp_path,
        {
            "migrations/001_create_users.sql": "CREATE TABLE users (id int);",
            "migrations/002_add_email.sql": "ALTER TABLE users ADD email text;",
            "migrations/rollback/001_create_users_down.sql": "DROP TABLE users;",
            "migrations/rollback/002_add_email_down.sql": "ALTER TABLE users DROP email;",
        },
    )
    up_dir, down_dir = tmp_path / "migrations", tmp_path / "migrations" / "rollback"
    r = run_cli(["up", "-d", dsn, "--up-dir", str(up_dir), "--down-dir", str(down_dir)])
    assert r.returncode == 0, r
    assert applied_versions(dsn) == [1, 2]
    r = run_cli(
        ["down", "-d", dsn, "--yes", "--to", "0"],
        env={"VEZAMIG_UP_DIR": str(up_dir), "VEZAMIG_DOWN_DIR": str(down_dir)},
    )
    assert r.returncode == 0, r
    assert applied_versions(dsn) == []
    assert not table_exists(dsn, "users")


def test_up_dir_overrides_only_the_up_half_of_dir(tmp_path: Path, dsn: str) -> None:
    write_tree(tmp_path / "base", {"down/001_a_down.sql": "DROP TABLE a;"})
    write_tree(tmp_path / "other", {"up/001_a_up.sql": "CREATE TABLE a ();"})
    r = run_cli(
        ["status", "--json", "-d", dsn, "--dir", str(tmp_path / "base"),
         "--up-dir", str(tmp_path / "other" / "up")]
    )  # fmt: skip
    assert r.returncode == 0, r
    assert '"reversible": true' in r.stdout


def test_a_down_dir_named_outright_that_does_not_exist_is_exit_2(tmp_path: Path, dsn: str) -> None:
    # A typo here made every version quietly irreversible (verify: "no problems").
    tree = write_tree(tmp_path, SIMPLE)
    typo = tree / "dwon"
    for args, env in (
        (["verify", "--dir", str(tree), "--down-dir", str(typo)], {}),
        (["status", "-d", dsn, "--dir", str(tree), "--down-dir", str(typo)], {}),
        (["up", "-d", dsn, "--up-dir", str(tree / "up")], {"VEZAMIG_DOWN_DIR": str(typo)}),
    ):
        r = run_cli(args, env=env)
        assert r.returncode == 2, r
        assert f"migration folder {typo} (--down-dir) does not exist" in r.stderr
        assert f"mkdir -p {typo}" in r.stderr
    assert user_tables(dsn) == []
    # DIR/down may be absent: every version is then irreversible, as before.
    (tree / "down" / "001_a_down.sql").unlink()
    (tree / "down").rmdir()
    assert run_cli(["verify", "--dir", str(tree)]).returncode == 0


def test_options_beat_environment_variables(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path / "right", SIMPLE)
    r = run_cli(["up", "-d", dsn, "--dir", str(tree)], env={"VEZAMIG_DIR": "/nonexistent"})
    assert r.returncode == 0, r
    assert table_exists(dsn, "a")


# ---- layout and directive errors through the CLI ---------------------------------------------


def test_layout_errors_exit_2_listing_every_problem_and_change_nothing(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a ();",
            "up/000_zero_up.sql": "SELECT 1;",
            "up/oops.sql": "SELECT 1;",
            "up/002_b_up.sql": "SELECT 1;",
            "up/2_bb_up.sql": "SELECT 1;",
            "down/003_c_down.sql": "SELECT 1;",
            "down/001_x_down.sql": "SELECT 1;",
        },
    )
    for command in (["up"], ["down", "--yes"], ["status"], ["up", "--dry-run"]):
        r = vz(dsn, tree, *command)
        assert r.returncode == 2, (command, r)
        for needle in (
            "000_zero_up.sql",
            "oops.sql",
            "2_bb_up.sql",
            "003_c_down.sql",
            "001_x_down.sql",
        ):
            assert needle in r.stderr, (command, needle)
    assert user_tables(dsn) == []


@pytest.mark.parametrize(
    ("content", "line", "needle"),
    [
        ("-- vezamig:gaurd SELECT true\nCREATE TABLE t ();\n", 1, "vezamig:gaurd"),
        ("CREATE TABLE t ();\n-- vezamig:guard SELECT true\n", 2, "after the first SQL"),
        (
            "-- vezamig:no-transaction\n-- vezamig:lock t\nCREATE TABLE t ();\n",
            1,
            "cannot be combined",
        ),
    ],
)
def test_directive_errors_exit_2_with_file_and_line_before_anything_runs(
    tmp_path: Path, dsn: str, content: str, line: int, needle: str
) -> None:
    tree = write_tree(
        tmp_path, {"up/001_first_up.sql": "CREATE TABLE first ();", "up/002_t_up.sql": content}
    )
    r = vz(dsn, tree, "up")
    assert r.returncode == 2, r
    assert f"{tree / 'up' / '002_t_up.sql'}:{line}:" in r.stderr
    assert needle in r.stderr
    assert user_tables(dsn) == []


def test_directive_errors_in_down_files_are_found_too(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_t_up.sql": "CREATE TABLE t ();",
            "down/001_t_down.sql": "-- vezamig:gaurd SELECT true\nDROP TABLE t;",
        },
    )
    r = vz(dsn, tree, "up")
    assert r.returncode == 2, r
    assert "001_t_down.sql:1:" in r.stderr
    assert user_tables(dsn) == []


def test_a_down_file_broken_after_its_up_ran_stops_its_rollback_not_other_runs(
    tmp_path: Path, dsn: str
) -> None:
    # A run checks the down files of the versions it touches: the rollback of what
    # `up` applies, the files `down` runs. `verify` checks them all.
    tree = write_tree(
        tmp_path,
        {
            "up/001_t_up.sql": "CREATE TABLE t ();",
            "down/001_t_down.sql": "DROP TABLE t;",
            "up/002_u_up.sql": "CREATE TABLE u ();",
            "down/002_u_down.sql": "DROP TABLE u;",
        },
    )
    assert vz(dsn, tree, "up", "--to", "1").returncode == 0
    write_tree(tree, {"down/001_t_down.sql": "-- vezamig:gaurd SELECT true\nDROP TABLE t;"})
    assert vz(dsn, tree, "up").returncode == 0  # 002 and its down are fine
    assert applied_versions(dsn) == [1, 2]
    refused = vz(dsn, tree, "down", "--to", "0", "--yes")
    assert refused.returncode == 2, refused
    assert "001_t_down.sql:1: unknown directive `vezamig:gaurd`" in refused.stderr
    assert applied_versions(dsn) == [1, 2]  # not even 002 was rolled back
    assert run_cli(["verify", "--dir", str(tree)]).returncode == 2


def test_a_run_stopped_by_its_own_down_file_lists_every_broken_down_file(
    tmp_path: Path, dsn: str
) -> None:
    files: dict[str, str] = {}
    for v in (1, 2, 3):
        files[f"up/00{v}_t{v}_up.sql"] = f"CREATE TABLE t{v} ();"
        files[f"down/00{v}_t{v}_down.sql"] = f"DROP TABLE t{v};"
    tree = write_tree(tmp_path, files)
    assert vz(dsn, tree, "up").returncode == 0
    write_tree(
        tree,
        {
            "down/001_t1_down.sql": "-- vezamig:gaurd SELECT true\nDROP TABLE t1;",
            "down/003_t3_down.sql": "-- vezamig:lokc t3\nDROP TABLE t3;",
        },
    )
    refused = vz(dsn, tree, "down", "--yes")  # runs 003 only; 001 is broken too
    assert refused.returncode == 2, refused
    assert "down: 2 problem(s) in the down files; nothing was changed" in refused.stderr
    err = refused.stderr
    assert err.index("001_t1_down.sql:1: unknown directive") < err.index("003_t3_down.sql:1:")
    assert applied_versions(dsn) == [1, 2, 3]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            "CREATE TABLE audit_log (system_user text);\nCOMMIT;\nCREATE TABLE b ();\n",
            "002_b_up.sql:2: `COMMIT` is transaction control inside the step's own transaction",
        ),
        (
            "CREATE TABLE audit_log (system_user int); COPY audit_log FROM STDIN;\n",
            "002_b_up.sql:1: `COPY … FROM STDIN` exchanges rows with the client",
        ),
        (
            # The lexer's ASCII copy makes `$é$` match `$q$`: the slow way then.
            "CREATE TABLE audit_log (id int);\nSELECT $é$ a $q$ b $é$;\nCOMMIT;\n",
            "002_b_up.sql:3: `COMMIT` is transaction control inside the step's own transaction",
        ),
        (
            "CREATE TABLE audit_log (system_user text);\nSELECT $é$ a $q$ b $é$;\nCOMMIT;\n",
            "002_b_up.sql:3: `COMMIT` is transaction control inside the step's own transaction",
        ),
    ],
    ids=["commit", "copy", "non-ascii-tag", "non-ascii-tag-unparsable"],
)
def test_a_body_pglast_cannot_parse_is_still_checked_word_by_word(
    tmp_path: Path, dsn: str, body: str, said: str
) -> None:
    # `system_user` is reserved in pglast's grammar (PostgreSQL 18), not in the test
    # server's: the server would run the COMMIT, half a step committed.
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE a ();", "up/002_b_up.sql": body})
    r = vz(dsn, tree, "up")
    assert r.returncode == 2, r
    assert said in r.stderr
    assert user_tables(dsn) == []


def test_an_unparsable_body_with_begin_atomic_is_not_refused(tmp_path: Path, dsn: str) -> None:
    # The word-by-word check must not read the END of a SQL-standard body as COMMIT.
    body = (
        "CREATE TABLE audit_log (id int, system_user text);\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n  SELECT CASE WHEN true THEN 1 END;\n  SELECT 2;\nEND;\n"
    )
    tree = write_tree(tmp_path, {"up/001_a_up.sql": body})
    r = vz(dsn, tree, "up")
    assert r.returncode == 0, r
    assert query(dsn, "SELECT f()") == [(2,)]


def test_an_escape_before_a_non_ascii_character_is_not_a_syntax_error(
    tmp_path: Path, dsn: str
) -> None:
    body = (
        "-- vezamig:guard SELECT true\n"
        "CREATE TABLE e (a text);\n"
        "INSERT INTO e VALUES (E'\\éab');\n"  # one backslash: the escape `\é`
    )
    tree = write_tree(tmp_path, {"up/001_e_up.sql": body})
    assert "E'\\éab'" in (tree / "up" / "001_e_up.sql").read_text()
    assert run_cli(["verify", "--dir", str(tree)]).returncode == 0
    r = vz(dsn, tree, "up")
    assert r.returncode == 0, r
    assert query(dsn, "SELECT a FROM e") == [("éab",)]


@pytest.mark.parametrize("lock", ['"; DROP TABLE users; --', "tracks; DROP TABLE users"])
def test_a_hostile_lock_directive_is_rejected_and_touches_nothing(
    tmp_path: Path, dsn: str, lock: str
) -> None:
    execute(dsn, "CREATE TABLE users (id int); CREATE TABLE tracks (id int)")
    tree = write_tree(tmp_path, {"up/001_a_up.sql": f"-- vezamig:lock {lock}\nSELECT 1;\n"})
    r = vz(dsn, tree, "up")
    assert r.returncode == 2, r
    assert "001_a_up.sql:1:" in r.stderr
    assert user_tables(dsn) == ["public.tracks", "public.users"]


def test_a_body_with_commit_is_a_layout_error_before_anything_runs(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a ();",
            "up/002_b_up.sql": "BEGIN;\nCREATE TABLE b ();\nCOMMIT;\n",
        },
    )
    r = vz(dsn, tree, "up")
    assert r.returncode == 2, r
    assert "002_b_up.sql:1:" in r.stderr and "002_b_up.sql:3:" in r.stderr
    assert not table_exists(dsn, "a") and not table_exists(dsn, "b")


# ---- tracking table options ---------------------------------------------------------------------


def test_table_option_may_name_a_schema_which_is_created(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    r = vz(dsn, tree, "up", "--table", "myschema.mytable")
    assert r.returncode == 0, r
    assert user_tables(dsn) == [
        "myschema.mytable",
        "myschema.mytable_history",
        "public.a",
    ]
    assert applied_versions(dsn, "myschema.mytable") == [1]
    r = run_cli(["down", "-d", dsn, "--dir", str(tree), "--yes"], env={
        "VEZAMIG_TABLE": "myschema.mytable"})  # fmt: skip
    assert r.returncode == 0, r
    assert applied_versions(dsn, "myschema.mytable") == []
    assert [h["direction"] for h in history(dsn, "myschema.mytable_history")] == ["up", "down"]


def test_a_table_name_is_an_identifier_not_sql(tmp_path: Path, dsn: str) -> None:
    execute(dsn, "CREATE TABLE users (id int)")
    tree = write_tree(tmp_path, SIMPLE)
    r = vz(dsn, tree, "up", "--table", 'm"; DROP TABLE users; --')
    assert r.returncode == 0, r
    assert table_exists(dsn, "users")
    assert applied_versions(dsn, 'm"; DROP TABLE users; --') == [1]


def test_a_foreign_tracking_table_stops_up_with_exit_2_and_changes_nothing(
    tmp_path: Path, dsn: str
) -> None:
    execute(
        dsn,
        "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY,"
        " dirty boolean NOT NULL); INSERT INTO schema_migrations VALUES (42, false)",
    )
    tree = write_tree(tmp_path, SIMPLE)
    r = vz(dsn, tree, "up")
    assert r.returncode == 2, r
    assert "schema_migrations exists but is not a vezamig tracking table" in r.stderr
    assert "version bigint, dirty boolean" in r.stderr
    assert "--table" in r.stderr
    assert user_tables(dsn) == ["public.schema_migrations"]
    assert query(dsn, "SELECT * FROM schema_migrations") == [(42, False)]
    r = vz(dsn, tree, "up", "--table", "vezamig_migrations")
    assert r.returncode == 0, r
    assert applied_versions(dsn, "vezamig_migrations") == [1]


# ---- connection and passwords --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:s3cretpw@127.0.0.1:1/db",
        "host=127.0.0.1 port=1 user=u password=s3cretpw dbname=db",
        "host=127.0.0.1 port=1 user=u password='s3cretpw' dbname=db",
        "postgresql://u:s3cretpw@no-such-host.invalid/db",
    ],
)
@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_an_unreachable_server_exits_5_and_never_shows_the_password(
    tmp_path: Path, url: str, command: str
) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    extra = ["--yes"] if command == "down" else []
    r = run_cli([command, "-d", url, "--dir", str(tree), *extra])
    assert r.returncode == 5, r
    assert "cannot connect" in r.stderr
    assert "s3cretpw" not in r.output


def test_database_url_comes_from_the_environment_too(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    r = run_cli(
        ["status", "--dir", str(tree)],
        env={"DATABASE_URL": "postgresql://u:s3cretpw@127.0.0.1:1/db"},
    )
    assert r.returncode == 5, r
    assert "s3cretpw" not in r.output


@pytest.mark.parametrize(
    "url",
    [
        "host=x password=s3cretpw bogus",
        # libpq quotes the token it cannot decode: the raw password, unparsed.
        "postgresql://u:s3cretpw%zz@/db?host=/tmp",
        "postgresql://u@/db?host=/tmp&password=s3cretpw%zz",
        "postgresql://u:s3cret%41pw@/db?host=/tmp&bogus=%zz",
    ],
)
def test_an_unreadable_database_url_is_a_usage_error_without_the_password(
    tmp_path: Path, url: str
) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    for r in (
        run_cli(["status", "--dir", str(tree), "-d", url]),
        run_cli(["up", "--dir", str(tree)], env={"DATABASE_URL": url}),
    ):
        assert r.returncode == 2, r
        assert "cannot read the database URL" in r.stderr
        assert "check -d/--database-url or DATABASE_URL" in r.stderr
        assert "s3cret" not in r.output
        assert "\n\n" not in r.stderr  # libpq's trailing newline is not passed on


@pytest.mark.parametrize(
    ("url", "code", "pieces"),
    [
        # libpq cannot parse these, and its message quotes what it may be the password
        ("postgresql://app:my s3cret@127.0.0.1:1/db", 2, ["my s3cret"]),
        ("host=127.0.0.1 port=1 user=app password=my s3cret", 2, ["s3cret"]),
        ("host=127.0.0.1 port=1 password=my s3cret dbname=db", 2, ["s3cret"]),
        # a piece after a space that looks like a key is still the password's
        ("dbname=x password=Wk7v Rb2n=Pm4t", 2, ["Wk7v", "Rb2n", "Pm4t"]),
        # `#`, `?` or `password=` inside a URL's raw password
        ("postgresql://app:my pass#1@127.0.0.1:1/x", 2, ["my pass#1", "pass"]),
        ("postgresql://u:Zq9x?Wk7v Pm4t@127.0.0.1:1/x", 2, ["Zq9x", "Wk7v", "Pm4t"]),
        ("postgresql://u:Zq9x Wk7v password=Pm4t@h/db", 2, ["Zq9x", "Wk7v", "Pm4t"]),
        # an `@` then `#`: libpq takes the rest for the host
        ("postgresql://app:p@ss#w0rd@127.0.0.1:1/x", 5, ["ss#w0rd", "w0rd"]),
        # parsed at the first @: the rest of the password taken for the host
        ("postgresql://app:my@s3cret@127.0.0.1:1/db", 5, ["s3cret@"]),
        # an unencoded / (base64): the part before it taken for the port
        ("postgresql://app:Ab3s3cret/Yz9=@127.0.0.1:1/db", 5, ["Ab3s3cret"]),
        # an unencoded & or # in ?password=: the rest taken for other parameters
        ("postgresql://app@127.0.0.1:1/db?password=Qw8&s3cret#Ty6", 2, ["s3cret", "Ty6"]),
    ],
)
def test_a_password_libpq_cuts_elsewhere_is_not_shown_in_any_piece(
    tmp_path: Path, url: str, code: int, pieces: list[str]
) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    for r in (
        run_cli(["status", "--dir", str(tree), "-d", url]),
        run_cli(["up", "--dir", str(tree)], env={"DATABASE_URL": url}),
    ):
        assert r.returncode == code, r
        for piece in pieces:
            assert piece not in r.output


@pytest.mark.parametrize(
    ("url", "said", "secret"),
    [
        # a quoted value is the password, exactly: what follows it is a key
        ("host=127.0.0.1 password='Wk7v Rb2n' sslmod=require", '"sslmod"', "Wk7v Rb2n"),
        # after a key libpq knows: `bogus=1` right after `password=s3cret` could be the
        # rest of a password with a space (`password=Wk7v Rb2n=Pm4t`)
        ("host=127.0.0.1 password=s3cret dbname=x bogus=1", '"bogus"', "s3cret"),
        # and so it stays masked there, with advice
        ("host=127.0.0.1 password=Wk7v sslmod=x", '"***"', "Wk7v"),
    ],
    ids=["after-a-quoted-password", "after-a-known-key", "may-be-the-password"],
)
def test_an_unknown_key_is_named_where_it_cannot_be_part_of_the_password(
    tmp_path: Path, url: str, said: str, secret: str
) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    r = run_cli(["status", "--dir", str(tree), "-d", url])
    assert r.returncode == 2, r
    assert f"invalid connection option {said}" in r.stderr
    assert all(piece not in r.output for piece in secret.split())
    if said == '"***"':
        assert "quote a password that has spaces" in r.stderr


@pytest.mark.parametrize(
    "url", ["postgresql://app:pa\udcffss@127.0.0.1:1/db", "host=127.0.0.1 password=pa\udcffss"]
)
def test_a_database_url_with_a_byte_that_is_not_utf8_is_exit_2(tmp_path: Path, url: str) -> None:
    # A Latin-1 password typed on a Latin-1 terminal: was a UnicodeEncodeError traceback.
    import subprocess
    import sys

    tree = write_tree(tmp_path, SIMPLE)
    raw = os.fsencode(url)  # the \udcff surrogate is the undecodable byte 0xff
    proc = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"vezamig", b"status", b"--dir",
         os.fsencode(tree), b"-d", raw],
        capture_output=True, env=cli_env(), timeout=60,
    )  # fmt: skip
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert "it holds a byte that is not valid UTF-8" in err
    assert "Traceback" not in err and b"pa\xffss" not in proc.stderr + proc.stdout


def test_a_password_that_is_a_common_word_is_not_masked_in_libpq_s_own_words(
    tmp_path: Path,
) -> None:
    # Password "failed": "connection ***: … password authentication *** for user" told it.
    tree = write_tree(tmp_path, SIMPLE)
    r = run_cli(["status", "--dir", str(tree), "-d", "postgresql://app:failed@127.0.0.1:1/db"])
    assert r.returncode == 5, r
    assert "connection to server at" in r.stderr and " failed: " in r.stderr
    assert "***" not in r.stderr


def test_masking_a_password_never_wrecks_other_words(tmp_path: Path, dsn: str) -> None:
    # PGPASSWORD=1 (unused: trust) once made `001_a_up.sql:2:15: 42P01` read
    # `00***_a_up.sql:2:***5: 42P0***`; a password equal to the user name masked it.
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;\nSELECT * FROM nosuch;\n"})
    r = run_cli(["up", "-d", dsn, "--dir", str(tree)], env={"PGPASSWORD": "1"})
    assert r.returncode == 1, r
    assert "001_a_up.sql:2:15: 42P01" in r.stderr
    assert "***" not in r.output


def test_a_connect_timeout_that_is_not_a_number_is_a_usage_error_not_a_failed_step(
    tmp_path: Path,
) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    for r in (
        run_cli(
            ["status", "--dir", str(tree), "-d", "dbname=x password=s3cret connect_timeout=abc"]
        ),
        run_cli(["up", "--dir", str(tree), "-d", "dbname=x"], env={"PGCONNECT_TIMEOUT": "abc"}),
    ):
        assert r.returncode == 2, r
        assert "cannot use the database URL: bad value for connect_timeout: 'abc'" in r.stderr
        assert "PGCONNECT_TIMEOUT" in r.stderr
        assert "s3cret" not in r.output


def test_a_password_in_a_working_url_appears_nowhere(tmp_path: Path, dsn: str) -> None:
    """The test server trusts local users, so the password is accepted and ignored."""
    params = conninfo_to_dict(dsn)
    if params.get("password"):
        pytest.skip("the test server needs a real password")
    url = (
        f"postgresql://{params['user']}:s3cretpw@/{params['dbname']}"
        f"?host={params['host']}&port={params['port']}"
    )
    kv = f"{dsn} password=s3cretpw"
    tree = write_tree(
        tmp_path,
        {
            "up/001_seen_up.sql": (
                "CREATE TABLE seen AS SELECT current_setting('application_name') AS app;\n"
            ),
            "up/002_fails_up.sql": "SELECT no_such_column FROM seen;\n",
        },
    )
    outputs = [
        vz(url, tree, "up", "--to", "1"),
        vz(kv, tree, "status"),
        vz(url, tree, "status", "--json"),
        vz(kv, tree, "up"),  # fails: the error path must not show it either
        vz(url, tree, "history"),
        vz(kv, tree, "up", "--dry-run"),
    ]
    assert [r.returncode for r in outputs] == [0, 0, 0, 1, 0, 0]
    for r in outputs:
        assert "s3cretpw" not in r.output, r
    [(app,)] = query(dsn, "SELECT app FROM seen")
    assert "s3cretpw" not in app
    for row in history(dsn):
        assert "s3cretpw" not in repr(row)
    for row in query(dsn, "SELECT * FROM schema_migrations"):
        assert "s3cretpw" not in repr(row)


# ---- output --------------------------------------------------------------------------------------


def test_quiet_prints_nothing_on_success(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    r = vz(dsn, tree, "up", "--quiet")
    assert r.returncode == 0, r
    assert r.stdout == "" and r.stderr == ""
    assert table_exists(dsn, "a")


def test_quiet_still_reports_errors_on_stderr(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_bad_up.sql": "SELEC 1;"})
    r = vz(dsn, tree, "up", "-q")
    assert r.returncode == 1, r
    assert r.stdout == ""
    assert "42601" in r.stderr


def test_errors_go_to_stderr_and_normal_output_to_stdout(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_bad_up.sql": "SELEC 1;"})
    r = vz(dsn, tree, "up")
    assert r.returncode == 1, r
    assert "42601" in r.stderr and "42601" not in r.stdout


COLOR = re.compile(r"\x1b\[[0-9;]*(3[0-7]|38;[0-9;]+|9[0-7])m")


def test_a_terminal_gets_colour_unless_no_color_is_asked_for(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    migrate(dsn, tree)
    args = ["status", "-d", dsn, "--dir", str(tree)]
    colour = {"NO_COLOR": None, "TERM": "xterm-256color"}
    r = run_cli_on_terminal(args, "", env=colour)
    assert r.returncode == 0, r
    assert COLOR.search(r.stdout), repr(r.stdout)
    r = run_cli_on_terminal([*args, "--no-color"], "", env=colour)
    assert r.returncode == 0, r
    assert not COLOR.search(r.stdout), repr(r.stdout)
    r = run_cli_on_terminal(args, "", env={"NO_COLOR": "1", "TERM": "xterm-256color"})
    assert not COLOR.search(r.stdout), repr(r.stdout)


# ---- step settings and libpq defaults ---------------------------------------------------------


SETTINGS = {
    "up/001_seen_up.sql": (
        "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout,"
        " current_setting('statement_timeout') AS statement_timeout,"
        " current_setting('application_name') AS app;\n"
    )
}


def test_each_step_runs_with_the_default_timeouts(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, SETTINGS)
    assert vz(dsn, tree, "up").returncode == 0
    assert query(dsn, "SELECT lock_timeout, statement_timeout, app FROM seen") == [
        ("5s", "0", "vezamig up")
    ]
    # SET LOCAL: nothing is left behind on the session's defaults.
    assert query(dsn, "SHOW lock_timeout") == [("0",)]


@pytest.mark.parametrize(
    ("lock", "statement", "expected"),
    [("2min", "1h", ("2min", "1h")), ("500ms", "10s", ("500ms", "10s")), ("0", "0", ("0", "0"))],
)
def test_each_step_runs_with_the_timeouts_it_was_given(
    tmp_path: Path, dsn: str, lock: str, statement: str, expected: tuple[str, str]
) -> None:
    tree = write_tree(tmp_path, SETTINGS)
    r = vz(dsn, tree, "up", "--lock-timeout", lock, "--statement-timeout", statement)
    assert r.returncode == 0, r
    assert query(dsn, "SELECT lock_timeout, statement_timeout FROM seen") == [expected]


def test_without_a_url_libpq_environment_variables_are_used(tmp_path: Path, dsn: str) -> None:
    params = conninfo_to_dict(dsn)
    env = {
        "PGHOST": str(params["host"]),
        "PGPORT": str(params["port"]),
        "PGUSER": str(params["user"]),
        "PGDATABASE": str(params["dbname"]),
    }
    tree = write_tree(tmp_path, SIMPLE)
    r = run_cli(["up", "--dir", str(tree)], env=env)
    assert r.returncode == 0, r
    assert applied_versions(dsn) == [1]


def test_a_libpq_service_file_works_too(tmp_path: Path, dsn: str) -> None:
    params = conninfo_to_dict(dsn)
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text(
        "[vezamig_test]\n"
        + "".join(f"{k}={params[k]}\n" for k in ("host", "port", "user", "dbname"))
    )
    tree = write_tree(tmp_path / "tree", SIMPLE)
    env = {"PGSERVICEFILE": str(service_file)}
    r = run_cli(["up", "--dir", str(tree), "-d", "service=vezamig_test"], env=env)
    assert r.returncode == 0, r
    r = run_cli(["down", "--dir", str(tree), "--yes"], env={**env, "PGSERVICE": "vezamig_test"})
    assert r.returncode == 0, r
    assert [h["direction"] for h in history(dsn)] == ["up", "down"]


def test_pgpassword_is_never_shown(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    r = run_cli(
        ["status", "--dir", str(tree), "-d", "host=127.0.0.1 port=1 user=u dbname=db"],
        env={"PGPASSWORD": "s3cretpw"},
    )
    assert r.returncode == 5, r
    assert "s3cretpw" not in r.output


def test_verify_accepts_the_database_options_and_still_never_connects(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "-- a\nCREATE TABLE a (id int);\n"})
    result = CliRunner().invoke(
        cli,
        [
            "verify",
            "-d",
            "postgresql://nobody@127.0.0.1:1/none",
            "--table",
            "t",
            "--dir",
            str(tree),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "verified 1 file(s)" in result.output


def test_dir_on_the_command_line_beats_up_and_down_dirs_from_the_environment(
    tmp_path: Path,
) -> None:
    """`--dir right` with VEZAMIG_UP_DIR exported reads right/up, not half of each; an
    environment variable still beats another one (VEZAMIG_UP_DIR over VEZAMIG_DIR)."""
    right = write_tree(tmp_path / "right", {"up/001_a_up.sql": "SELECT 1;\n"})
    wrong = write_tree(tmp_path / "wrong", {"up/001_a_up.sql": "SELEC 1;\n"})
    env = {"VEZAMIG_UP_DIR": str(wrong / "up"), "VEZAMIG_DOWN_DIR": str(wrong / "down")}
    r = run_cli(["verify", "--dir", str(right)], env=env)
    assert r.returncode == 0, r
    r = run_cli(["verify"], env={**env, "VEZAMIG_DIR": str(right)})
    assert r.returncode == 2 and f"{wrong / 'up' / '001_a_up.sql'}:1:1" in r.stderr, r
    r = run_cli(["verify", "--dir", str(right), "--up-dir", str(wrong / "up")], env=env)
    assert r.returncode == 2, r


def test_help_names_the_environment_variables() -> None:
    r = run_cli(["status", "--help"])
    assert r.returncode == 0, r
    for env in (
        "DATABASE_URL",
        "VEZAMIG_TABLE",
        "VEZAMIG_DIR",
        "VEZAMIG_UP_DIR",
        "VEZAMIG_DOWN_DIR",
    ):
        assert f"env var: {env}" in " ".join(r.stdout.split()), env


def test_libpq_finds_the_password_in_a_pgpass_file_and_it_is_never_shown(
    tmp_path: Path, pg_bindir: Path
) -> None:
    """Without -d or a password, libpq's own lookup (PGPASSFILE, ~/.pgpass) is used."""
    from vezamig.cluster import ThrowawayCluster

    tree = write_tree(tmp_path, SIMPLE)
    with ThrowawayCluster(pg_bindir) as cluster:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE ROLE pwuser LOGIN PASSWORD 'pa55-in-file'")
            (hba,) = conn.execute("SHOW hba_file").fetchone() or ("",)
            rules = Path(hba).read_text()
            Path(hba).write_text("local all pwuser scram-sha-256\n" + rules)
            conn.execute("SELECT pg_reload_conf()")
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"*:{cluster.port}:*:pwuser:pa55-in-file\n")
        pgpass.chmod(0o600)
        env = {"PGHOST": cluster.host, "PGPORT": str(cluster.port), "PGUSER": "pwuser",
               "PGDATABASE": "postgres"}  # fmt: skip
        r = run_cli(["status", "--dir", str(tree)], env={**env, "PGPASSFILE": str(pgpass)})
        assert r.returncode == 0, r
        assert "pending" in r.stdout
        refused = run_cli(["status", "--dir", str(tree)], env={**env, "PGPASSFILE": "/nonexistent"})
    assert refused.returncode == 5, refused
    assert "password" in refused.stderr
    assert "pa55-in-file" not in r.output + refused.output


def test_closed_standard_streams_never_crash(tmp_path: Path, dsn: str) -> None:
    """`>&-`, `2>&-`, `<&-`: output goes nowhere, `down` without stdin refuses."""
    import subprocess
    import sys

    from helpers import cli_env

    tree = write_tree(tmp_path, SIMPLE)
    base = [sys.executable, "-m", "vezamig"]

    def run(args: list[str], close: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args, "-d", dsn, "--dir", str(tree)],
            capture_output=close != 1 and close != 2, text=True, env=cli_env(),
            pass_fds=(), timeout=60,
            stdin=subprocess.DEVNULL if close != 0 else None,
            preexec_fn=lambda: os.close(close),
        )  # fmt: skip

    assert run(["status"], 1).returncode == 0
    assert run(["status"], 2).returncode == 0
    from helpers import migrate

    migrate(dsn, tree)
    down = run(["down", "--to", "0"], 0)
    assert down.returncode == 3, down.stderr
    assert "no confirmation" in down.stderr and "Traceback" not in down.stderr


def test_an_output_that_cannot_encode_utf8_gets_question_marks_not_a_traceback(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, SIMPLE)
    r = run_cli(["status", "-d", dsn, "--dir", str(tree)], env={"PYTHONIOENCODING": "ascii"})
    assert r.returncode == 0, r
    assert "? table schema_migrations ?" in r.stdout


def test_a_reader_that_goes_away_ends_the_command_as_sigpipe_does(tmp_path: Path, dsn: str) -> None:
    """`vezamig status | head -1` exits 141 (128 + SIGPIPE), never 1 ("a step failed")."""
    import subprocess
    import sys

    from helpers import cli_env

    # ≈ 360 KB of status: far more than a pipe holds, whatever the reader's buffering
    # (3000 versions, 135 KB, once ended with exit 0 under load).
    files = {f"up/{v:04d}_m{v}_up.sql": "SELECT 1;\n" for v in range(1, 8001)}
    tree = write_tree(tmp_path, files)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vezamig", "status", "-d", dsn, "--dir", str(tree)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    with proc.stderr:
        proc.stdout.readline()
        proc.stdout.close()  # as `head -1` does
        assert proc.wait(timeout=60) == 141
        assert "Traceback" not in proc.stderr.read().decode()


TWO_STEPS = {"up/001_a_up.sql": "CREATE TABLE a ();\n", "up/002_b_up.sql": "CREATE TABLE b ();\n"}


def run_with_streams(args: list[str], stdout: Any, stderr: Any) -> tuple[int, str]:
    """The real entry point with stdout/stderr on the given files; (exit code, stderr
    when it was captured)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "vezamig", *args],
        stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=cli_env(), timeout=120,
    )  # fmt: skip
    err = proc.stderr.decode() if isinstance(proc.stderr, bytes) else ""
    return proc.returncode, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_run_whose_stdout_fills_up_stops_between_steps_and_says_where(
    tmp_path: Path, dsn: str
) -> None:
    import subprocess

    tree = write_tree(tmp_path, TWO_STEPS)
    with open("/dev/full", "w") as full:
        code, err = run_with_streams(["up", "-d", dsn, "--dir", str(tree)], full, subprocess.PIPE)
        json_code, json_err = run_with_streams(
            ["status", "--json", "-d", dsn, "--dir", str(tree)], full, subprocess.PIPE
        )
    assert code == 74, err
    assert (
        "error: cannot write to stdout (No space left on device) after up 1 (a) finished; "
        "it is applied; no later step was run" in err
    )
    assert "this run applied 1 (a); not run: 2 (b); current version 1" in err
    assert applied_versions(dsn) == [1]
    assert json_code == 74, json_err
    assert "cannot write to stdout (No space left on device)" in json_err
    assert "Traceback" not in err + json_err


def test_a_run_whose_reader_went_away_exits_141_and_says_where_it_stopped(
    tmp_path: Path, dsn: str
) -> None:
    import subprocess

    tree = write_tree(tmp_path, TWO_STEPS)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    with os.fdopen(write_end, "w") as gone:
        code, err = run_with_streams(["up", "-d", dsn, "--dir", str(tree)], gone, subprocess.PIPE)
    assert code == 141, err
    assert "cannot write to stdout (its reader went away) after up 1 (a) finished" in err
    assert "not run: 2 (b); current version 1" in err
    assert applied_versions(dsn) == [1]


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["up", "--help"]])
def test_click_s_own_output_to_a_reader_that_went_away_exits_141(args: list[str]) -> None:
    import subprocess

    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as gone:
        code, _ = run_with_streams(args, gone, subprocess.DEVNULL)
    assert code == 141


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_stderr_that_cannot_be_written_keeps_every_exit_code(tmp_path: Path, dsn: str) -> None:
    import subprocess

    tree = write_tree(tmp_path, {"up/001_a_up.sql": "-- vezamig:guard SELECT false\nSELECT 1;\n"})
    cases = {
        ("up", "--bogus"): 2,
        ("status", "-d", "postgresql://u:s3cret@127.0.0.1:1/x", "--dir", str(tree)): 5,
        ("up", "-d", dsn, "--dir", str(tree)): 3,
    }
    with open("/dev/full", "w") as full:
        for args, expected in cases.items():
            code, _ = run_with_streams(list(args), subprocess.DEVNULL, full)
            assert code == expected, args


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_output_that_fails_around_the_work_says_whether_it_was_done(
    tmp_path: Path, dsn: str
) -> None:
    import subprocess

    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE a ();\n"})
    with open("/dev/full", "w") as full:
        baseline = run_with_streams(
            ["baseline", "--version", "1", "-d", dsn, "--dir", str(tree)], full, subprocess.PIPE
        )
        dry = {
            command: run_with_streams(
                [command, "--dry-run", "-d", dsn, "--dir", str(tree)], full, subprocess.PIPE
            )
            for command in ("up", "down")
        }
        created = run_with_streams(["new", "b", "--dir", str(tree)], full, subprocess.PIPE)
    for command, (code, err) in dry.items():
        assert code == 74, (command, err)
        assert "during a dry run; nothing was changed" in err
    assert baseline[0] == 74, baseline
    assert "before anything was done; nothing was changed" in baseline[1]
    assert applied_versions(dsn) == []
    assert created[0] == 74, created
    up, down = tree / "up" / "002_b_up.sql", tree / "down" / "002_b_down.sql"
    assert f"after {up} and {down} were created" in created[1]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-d", "postgresql:///x", "status"], "`vezamig status -d …`"),
        (["--json", "status"], "`vezamig status --json …`"),
        (["--quiet", "up"], "`vezamig up --quiet …`"),
        (["--json", "up"], "`vezamig up` has no option --json (it is an option of: history,"),
    ],
)
def test_an_option_written_before_the_command_is_told_where_it_goes(
    args: list[str], says: str
) -> None:
    r = run_cli(args)
    assert r.returncode == 2, r
    assert says in r.stderr


def test_an_empty_no_color_does_not_turn_colour_off() -> None:
    from vezamig.cli import _no_color

    os.environ.pop("NO_COLOR", None)
    try:
        os.environ["NO_COLOR"] = ""
        assert _no_color(False) is False
        os.environ["NO_COLOR"] = "1"
        assert _no_color(False) is True
    finally:
        os.environ.pop("NO_COLOR", None)


def test_a_printed_command_repeats_a_d_without_its_password(tmp_path: Path, dsn: str) -> None:
    """Commands vezamig tells the operator to run can be pasted; a -d holding a password is
    replaced by a placeholder, never printed."""
    from helpers import migrate

    tree = write_tree(tmp_path, SIMPLE)
    migrate(dsn, tree)
    (tree / "up" / "001_a_up.sql").write_text("CREATE TABLE a (id int); -- edited\n")
    for secret in ("password", "sslpassword"):
        r = run_cli(["up", "-d", f"{dsn} {secret}=s3cretpw", "--dir", str(tree)])
        assert r.returncode == 3, r
        hint = f"`vezamig repair --checksums -d '<the -d URL of this run>' --dir {tree}`"
        assert hint in r.stderr, r
        assert "s3cretpw" not in r.output
    r = run_cli(["up", "--dir", str(tree)], env={"DATABASE_URL": dsn})  # from the environment
    assert f"`vezamig repair --checksums --dir {tree}`" in r.stderr, r


def test_the_cycle_collector_is_off_for_status_and_on_while_steps_run(
    tmp_path: Path, dsn: str
) -> None:
    """Start-up garbage (click, psycopg, files, rows) lives until exit, so collecting
    it is pure cost (issue 7): `status` never collects; a run turns the collector back
    on before its steps, whose garbage grows with the run."""
    import subprocess
    import sys

    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;\n"})
    probe = (
        "import gc, sys\n"
        "from vezamig import cli, plan, runner\n"
        "real = runner.Runner.execute\n"
        "def execute(self, p):\n"
        "    print('steps with gc', gc.isenabled(), file=sys.stderr)\n"
        "    return real(self, p)\n"
        "runner.Runner.execute = execute\n"
        "real_rows = plan.status_rows\n"
        "def status_rows(*a):\n"
        "    print('status with gc', gc.isenabled(), file=sys.stderr)\n"
        "    return real_rows(*a)\n"
        "runner.status_rows = status_rows\n"
        "sys.argv = ['vezamig'] + sys.argv[1:]\n"
        "cli.main()\n"
    )
    for command, expected in (("up", "steps with gc True"), ("status", "status with gc False")):
        r = subprocess.run(
            [sys.executable, "-c", probe, command, "-d", dsn, "--dir", str(tree)],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=60,
        )
        assert r.returncode == 0, r
        assert expected in r.stderr, r.stderr


def test_a_role_without_rights_on_the_tracking_tables_is_a_configuration_error(
    tmp_path: Path, dsn: str
) -> None:
    from psycopg.conninfo import make_conninfo

    tree = write_tree(tmp_path, SIMPLE)
    assert run_cli(["up", "--dir", str(tree), "-d", dsn]).returncode == 0
    role = f"vz_monitor_{os.getpid()}"
    execute(dsn, f"CREATE ROLE {role} LOGIN")
    try:
        monitor = make_conninfo(dsn, user=role)
        for args in (["status", "--dir", str(tree)], ["history"], ["up", "--dir", str(tree)]):
            r = run_cli([*args, "-d", monitor])
            assert r.returncode == 2, r  # not 1: no step ran, nothing failed
            assert "permission denied for table schema_migrations" in r.stderr
            assert (
                f'GRANT SELECT ON schema_migrations, schema_migrations_history TO "{role}"'
                in r.stderr
            )
    finally:
        execute(dsn, f"DROP ROLE {role}")


def test_what_psycopg_logs_while_vezamig_reports_an_error_stays_off_stderr() -> None:
    # A guard's error ends its pipeline, and psycopg logs "error ignored terminating
    # <Pipeline>" (timing-dependent); without a handler Python prints it on stderr.
    import subprocess
    import sys

    probe = (
        "import logging, vezamig.db\n"
        "logging.getLogger('psycopg._pipeline').warning('error ignored terminating x')\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_ctrl_c_at_any_moment_of_start_up_exits_130_without_a_traceback(
    tmp_path: Path, dsn: str
) -> None:
    # Ctrl-C during `import psycopg` used to surface as an AttributeError or an
    # ImportError ("couldn't import psycopg 'python' implementation"): exit 1.
    import signal
    import subprocess
    import sys
    import time

    from helpers import cli_env

    tree = write_tree(tmp_path, SIMPLE)
    args = [sys.executable, "-m", "vezamig", "status", "--dir", str(tree), "-d", dsn]
    for delay in (0.03, 0.045, 0.06, 0.09, 0.12, 0.15, 0.18, 0.21, 0.25):
        proc = subprocess.Popen(
            args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        if "init_import_site" in err:
            # Before any of vezamig runs: on a loaded machine the signal can land while
            # Python imports `site`, and Python itself then ends with its fatal error
            # (exit 1). Nothing a program can change; this delay says nothing of it.
            continue
        # Never 1. (A signal while Python itself starts, before vezamig's entry point
        # runs, still ends the way Python ends on Ctrl-C: its traceback, killed by
        # SIGINT, which a shell reports as 130.)
        assert proc.returncode in (0, 130, -signal.SIGINT), (delay, proc.returncode, err)
        assert "AttributeError" not in err and "couldn't import" not in err, (delay, err)


def test_ctrl_c_while_python_imports_the_cli_says_interrupted_and_exits_130() -> None:
    # The window before cli.main() installs its handlers (importing click and
    # vezamig's modules, ≈ 40 ms): made deterministic by a Ctrl-C at `import click`.
    import subprocess
    import sys

    probe = (
        "import builtins\n"
        "real = builtins.__import__\n"
        "def ctrl_c_at_click(name, *args, **kwargs):\n"
        "    if name == 'click':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = ctrl_c_at_click\n"
        "from vezamig.__main__ import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, proc
    assert proc.stderr == "interrupted\n"


def test_a_role_that_may_read_but_not_write_the_tracking_tables_is_exit_2(
    tmp_path: Path, dsn: str
) -> None:
    from psycopg.conninfo import make_conninfo

    tree = write_tree(tmp_path, {**SIMPLE, "up/009_more_up.sql": "CREATE TABLE more ();\n"})
    assert run_cli(["up", "--dir", str(tree), "-d", dsn, "--to", "1"]).returncode == 0
    role = f"vz_reader_{os.getpid()}"
    execute(
        dsn,
        f"CREATE ROLE {role} LOGIN; GRANT SELECT ON schema_migrations,"
        f" schema_migrations_history TO {role}; GRANT CREATE ON SCHEMA public TO {role}",
    )
    try:
        r = run_cli(["up", "--dir", str(tree), "-d", make_conninfo(dsn, user=role)])
        assert r.returncode == 2, r  # the body ran, but could not be recorded: rolled back
        assert "may not write vezamig's tracking tables" in r.stderr
        assert "INSERT, UPDATE, DELETE on both" in r.stderr
        assert (
            "GRANT SELECT, INSERT, UPDATE, DELETE ON schema_migrations,"
            f' schema_migrations_history TO "{role}"' in r.stderr
        )
        assert not table_exists(dsn, "more")
    finally:
        execute(dsn, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_a_server_without_standard_conforming_strings_is_refused_before_anything_runs(
    tmp_path: Path, dsn: str
) -> None:
    # With it off, `'\' || '; COMMIT; --'` hides a COMMIT from a lexer that reads
    # strings the standard way: the server would half-commit the step.
    from psycopg.conninfo import make_conninfo

    body = "CREATE TABLE t (id int);\nSELECT '\\' || '; COMMIT; --';\n"
    tree = write_tree(tmp_path, {"up/001_a_up.sql": body})
    legacy = make_conninfo(dsn, options="-c standard_conforming_strings=off")
    for args in (["up"], ["up", "--dry-run"]):
        r = run_cli([*args, "--dir", str(tree), "-d", legacy])
        assert r.returncode == 2, r
        assert "standard_conforming_strings = off" in r.stderr
    assert not table_exists(dsn, "t")
    assert run_cli(["up", "--dir", str(tree), "-d", dsn]).returncode == 0  # on: it runs


@pytest.mark.parametrize(
    ("error", "code", "said"),
    [
        (pgerrors.LockNotAvailable("canceling statement due to lock timeout"), 4, "lock timeout"),
        (pgerrors.QueryCanceled("canceling statement due to user request"), 1, "cancelled"),
        (psycopg.OperationalError("server closed the connection"), 5, "lost the database"),
    ],
)
def test_a_database_error_outside_any_step_keeps_its_own_exit_code(
    error: psycopg.Error, code: int, said: str
) -> None:
    """A cancelled query or a lock timeout (both OperationalErrors to psycopg) is not a
    lost connection (exit 5)."""
    from vezamig.cli import _database_error

    mapped = _database_error(error, {})
    assert mapped.exit_code == code
    assert said in mapped.message
    assert "no step was in progress" in mapped.details[0]


@pytest.mark.parametrize(
    ("opts", "says"),
    [
        ({"statement_timeout": 5}, "raise --statement-timeout (now 5 ms; default: none)"),
        ({"statement_timeout": None}, "the database role's or the server's statement_timeout"),
    ],
)
def test_a_statement_timeout_on_vezamig_s_own_query_says_which_timeout_to_raise(
    opts: dict[str, Any], says: str
) -> None:
    # Outside a step (the plan's reads): "run the command again" alone would fail again.
    from vezamig.cli import _database_error

    err = _database_error(
        pgerrors.QueryCanceled("canceling statement due to statement timeout"), opts
    )
    assert err.exit_code == 2  # no step ran: a timeout too short for vezamig's own work
    assert err.message.startswith("the server cancelled vezamig's own query")
    assert says in err.details[0] and err.details[0].startswith("no step was in progress")
    other = _database_error(pgerrors.QueryCanceled("canceling statement due to user request"), opts)
    assert other.details == ["no step was in progress; run the command again"]
    assert other.exit_code == 1  # someone's pg_cancel_backend


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["up"], ["history"]])
def test_a_statement_timeout_too_short_for_vezamig_s_own_reads_is_exit_2(
    tmp_path: Path, dsn: str, command: list[str]
) -> None:
    """No step ran, so not exit 1 ("a step failed"): the option is too short for the
    tool's own work, and the message says which one to raise."""
    tree = write_tree(tmp_path, SIMPLE)
    migrate(dsn, tree)
    # A history long enough that reading it takes well over a millisecond.
    execute(
        dsn,
        "INSERT INTO schema_migrations SELECT v, 'x', 'c', now(), 'u', 0, false"
        " FROM generate_series(1000, 300000) v;"
        " INSERT INTO schema_migrations_history (version, direction, outcome, started_at)"
        " SELECT v, 'up', 'ok', now() FROM generate_series(1000, 300000) v",
    )
    r = run_cli([*command, "-d", dsn, "--dir", str(tree), "--statement-timeout", "1ms"])
    assert r.returncode == 2, r
    assert "--statement-timeout" in r.stderr and "Traceback" not in r.stderr
    if "--json" in command:
        assert r.stdout == ""
