"""`vezamig verify` (SPEC §5): offline, every problem of a folder in one run, exit 0 or 2.

Every CLI run here points libpq and DATABASE_URL at addresses where nothing
listens, so a verify that tried to connect would fail loudly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import CliResult, run_cli, write_tree

from vezamig.errors import EXIT_OK, EXIT_USAGE
from vezamig.verify import verify_tree

REPO = Path(__file__).resolve().parent.parent
NO_DATABASE = {
    "PGHOST": "/nonexistent",
    "PGPORT": "1",
    "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
}


def verify(base: Path, *args: str) -> CliResult:
    return run_cli(["verify", "--dir", str(base), *args], env=NO_DATABASE)


GOOD = {
    "up/001_create_users_up.sql": "-- users\nCREATE TABLE users (id bigint PRIMARY KEY);\n",
    "up/002_add_email_up.sql": (
        "-- e-mail, filled for existing rows\n"
        "ALTER TABLE users ADD COLUMN email text NOT NULL DEFAULT '';\n"
    ),
    "down/002_add_email_down.sql": (
        "-- Roll back 2: only while no address was stored.\n"
        "-- vezamig:lock users\n"
        "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM users WHERE email <> '')\n"
        "ALTER TABLE users DROP COLUMN email;\n"
    ),
    "up/003_email_index_up.sql": (
        "-- vezamig:no-transaction\nCREATE INDEX CONCURRENTLY idx_users_email ON users (email);\n"
    ),
    "down/003_email_index_down.sql": (
        "/* vezamig:no-transaction */\nDROP INDEX CONCURRENTLY IF EXISTS idx_users_email;\n"
    ),
}


# ---- clean folders ------------------------------------------------------------------


def test_a_clean_folder_verifies_with_exit_0_and_no_database_reachable(tmp_path: Path) -> None:
    base = write_tree(tmp_path / "sql", GOOD)
    result = verify(base)
    assert result.returncode == EXIT_OK, result
    assert result.stdout.strip() == "verified 5 file(s): no problems"
    assert result.stderr == ""


def test_the_projects_own_corpus_verifies(tmp_path: Path) -> None:
    result = run_cli(["verify"], env=NO_DATABASE, cwd=REPO)
    assert result.returncode == EXIT_OK, result
    assert re.search(r"verified \d+ file\(s\): no problems", result.stdout)


def test_separate_up_and_down_folders_of_an_existing_tree_verify(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "migrations/001_users.sql": "CREATE TABLE users (id int);\n",
            "migrations/rollback/001_users_down.sql": (
                "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM users)\nDROP TABLE users;\n"
            ),
        },
    )
    result = run_cli(
        ["verify", "--up-dir", "migrations", "--down-dir", "migrations/rollback"],
        env=NO_DATABASE,
        cwd=tmp_path,
    )
    assert result.returncode == EXIT_OK, result
    assert "verified 2 file(s): no problems" in result.stdout


# ---- broken folders ------------------------------------------------------------------


def test_every_problem_of_a_broken_folder_is_listed_in_one_run(tmp_path: Path) -> None:
    base = write_tree(
        tmp_path / "sql",
        {
            "up/001_a_up.sql": "-- a\nCREATE TABLE a (id int);\nSELEC 1;\n",
            "down/001_a_down.sql": "-- vezamig:gaurd SELECT true\nDROP TABLE IF EXISTS a;\n",
            "up/002_b_up.sql": "CREATE TABLE b (id int);\n-- vezamig:no-transaction\n",
            "up/003_c_up.sql": "-- c\nSELECT 'never closed;\n",
            "up/004_d_up.sql": "-- vezamig:no-transaction\n-- vezamig:lock a\nVACUUM a;\n",
            "up/005_e_up.sql": "SELECT 1;\n",
            "down/005_other_down.sql": "SELECT 1;\n",
            "down/006_orphan_down.sql": "DROP TABLEE f;\n",
            "up/not-a-migration.sql": "SELECT 1;\n",
            "up/007_f_up.sql": "SELECT 1;\n",
            "up/0007_g_up.sql": "SELECT 1;\n",
        },
    )
    result = verify(base)
    assert result.returncode == EXIT_USAGE, result
    err = result.stderr
    expected = [
        f'{base}/up/001_a_up.sql:3:1: syntax error at or near "SELEC"',
        "> 3 | SELEC 1;",
        f"{base}/down/001_a_down.sql:1: unknown directive `vezamig:gaurd`",
        f"{base}/up/002_b_up.sql:2: directive `no-transaction` after the first SQL statement",
        f"{base}/up/003_c_up.sql:2:8: syntax error: unterminated quoted string",
        "> 2 | SELECT 'never closed;",
        f"{base}/up/004_d_up.sql:1: `vezamig:no-transaction` cannot be combined with "
        "`vezamig:lock`",
        f"{base}/down/005_other_down.sql: name `other` differs from the up file's `e`",
        f"{base}/down/006_orphan_down.sql: down file for version 6 has no up file",
        f'{base}/down/006_orphan_down.sql:1:6: syntax error at or near "TABLEE"',
        f"{base}/up/not-a-migration.sql: name does not match",
        "version 7 is also used by",
    ]
    missing = [e for e in expected if e not in err]
    assert missing == [], result
    assert "verify: 10 problem(s)" in err
    # A lexer error is reported once, not by the directive reader and the parser both.
    assert err.count("003_c_up.sql:2:8") == 1


def test_a_syntax_error_shows_file_line_column_the_line_and_a_caret(tmp_path: Path) -> None:
    up = "-- users\nCREATE TABLE users (\n  id int,\n  email text,\n);\n"
    base = write_tree(tmp_path / "sql", {"up/001_users_up.sql": up})
    result = verify(base)
    assert result.returncode == EXIT_USAGE, result
    lines = result.stderr.splitlines()
    i = next(n for n, line in enumerate(lines) if "001_users_up.sql:5:1:" in line)
    assert lines[i].endswith('001_users_up.sql:5:1: syntax error at or near ")"')
    assert lines[i + 1].strip() == "> 5 | );"
    assert lines[i + 2].strip() == "| ^"


def test_a_cr_only_file_reports_the_line_an_editor_shows(tmp_path: Path) -> None:
    up = b"-- users\rCREATE TABLE users (\r  id int,\r);\r"
    base = write_tree(tmp_path / "sql", {"up/001_users_up.sql": up})
    result = verify(base)
    assert result.returncode == EXIT_USAGE, result
    assert '001_users_up.sql:4:1: syntax error at or near ")"' in result.stderr
    assert "> 4 | );" in result.stderr


def test_a_missing_folder_is_exit_2(tmp_path: Path) -> None:
    result = verify(tmp_path / "nowhere")
    assert result.returncode == EXIT_USAGE, result
    assert "does not exist" in result.stderr


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    base = write_tree(tmp_path / "sql", {"up/001_a_up.sql": b"-- a\nSELECT '\xff';\n"})
    result = verify(base)
    assert result.returncode == EXIT_USAGE, result
    assert f"{base}/up/001_a_up.sql:2: not valid UTF-8" in result.stderr
    write_tree(base, {"up/001_a_up.sql": b"-- a\r\rSELECT '\xff';\r"})
    result = verify(base)
    assert f"{base}/up/001_a_up.sql:3: not valid UTF-8" in result.stderr, result


# ---- lint ------------------------------------------------------------------------------


EXISTING = "-- on a table an earlier migration created\n"

# (file, text, rule that must fire or None)
LINT_CASES = [
    # VZ001 CREATE INDEX without CONCURRENTLY on an existing table
    ("up/001_x_up.sql", EXISTING + "CREATE INDEX i ON tracks (album_id);\n", "VZ001"),
    (
        "up/001_x_up.sql",
        "-- vezamig:no-transaction\nCREATE INDEX CONCURRENTLY i ON tracks (album_id);\n",
        None,
    ),
    ("up/001_x_up.sql", "CREATE TABLE t (a int);\nCREATE INDEX i ON t (a);\n", None),
    # VZ002 ADD COLUMN … NOT NULL without a default on an existing table
    ("up/001_x_up.sql", EXISTING + "ALTER TABLE tracks ADD COLUMN bpm int NOT NULL;\n", "VZ002"),
    (
        "up/001_x_up.sql",
        EXISTING + "ALTER TABLE tracks ADD COLUMN bpm int NOT NULL DEFAULT 0;\n",
        None,
    ),
    ("up/001_x_up.sql", EXISTING + "ALTER TABLE tracks ADD COLUMN bpm int;\n", None),
    (
        "up/001_x_up.sql",
        "CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN b int NOT NULL;\n",
        None,
    ),
    # VZ003 ALTER COLUMN … TYPE on an existing table
    ("up/001_x_up.sql", EXISTING + "ALTER TABLE tracks ALTER COLUMN id TYPE bigint;\n", "VZ003"),
    (
        "up/001_x_up.sql",
        "CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a TYPE bigint;\n",
        None,
    ),
    # VZ004 a down that drops a table or column with no guard
    ("down/001_x_down.sql", "DROP TABLE tracks;\n", "VZ004"),
    ("down/001_x_down.sql", "ALTER TABLE tracks DROP COLUMN bpm;\n", "VZ004"),
    (
        "down/001_x_down.sql",
        "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM tracks)\nDROP TABLE tracks;\n",
        None,
    ),
    (
        "down/001_x_down.sql",
        "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM tracks WHERE bpm IS NOT NULL)\n"
        "ALTER TABLE tracks DROP COLUMN bpm;\n",
        None,
    ),
    ("up/001_x_up.sql", "DROP TABLE old_tracks;\n", None),  # only downs are checked
    ("down/001_x_down.sql", "DROP INDEX IF EXISTS idx_tracks_bpm;\n", None),
]


@pytest.mark.parametrize(("path", "text", "rule"), LINT_CASES)
def test_each_lint_rule_fires_exactly_when_it_should(
    tmp_path: Path, path: str, text: str, rule: str | None
) -> None:
    files = {path: text}
    if path.startswith("down/"):
        files["up/001_x_up.sql"] = "SELECT 1;\n"
    base = write_tree(tmp_path / "sql", files)
    report = verify_tree(base / "up", base / "down")
    assert report.problems == []
    codes = [w.split(" ", 2)[1] for w in report.warnings]
    assert codes == ([rule] if rule else []), report.warnings
    if rule:  # each case's risky statement is on its last line
        assert report.warnings[0].startswith(f"{base / path}:{text.count(chr(10))}:1: {rule} ")


def test_lint_findings_are_warnings_with_exit_0_and_errors_under_strict(tmp_path: Path) -> None:
    base = write_tree(
        tmp_path / "sql",
        {
            "up/001_tracks_up.sql": "CREATE TABLE tracks (id int);\n",
            "up/002_bpm_up.sql": "-- bpm\nALTER TABLE tracks ADD COLUMN bpm int NOT NULL;\n",
            "down/002_bpm_down.sql": "ALTER TABLE tracks DROP COLUMN bpm;\n",
        },
    )
    relaxed = verify(base)
    assert relaxed.returncode == EXIT_OK, relaxed
    assert f"warning: {base}/up/002_bpm_up.sql:2:1: VZ002 ADD COLUMN bpm NOT NULL" in (
        relaxed.stderr
    )
    assert f"warning: {base}/down/002_bpm_down.sql:1:1: VZ004 DROP COLUMN bpm" in relaxed.stderr
    assert "verified 3 file(s): no problems, 2 warning(s)" in relaxed.stdout

    strict = verify(base, "--strict")
    assert strict.returncode == EXIT_USAGE, strict
    assert f"error: {base}/up/002_bpm_up.sql:2:1: VZ002" in strict.stderr
    assert "2 lint finding(s) above (--strict)" in strict.stderr


def test_a_lint_rule_is_not_fooled_by_comments_or_strings(tmp_path: Path) -> None:
    up = (
        "-- CREATE INDEX i ON tracks (id);\n"
        "/* ALTER TABLE tracks ALTER COLUMN id TYPE bigint; */\n"
        "SELECT 'CREATE INDEX j ON tracks (id)';\n"
    )
    base = write_tree(tmp_path / "sql", {"up/001_x_up.sql": up})
    report = verify_tree(base / "up", base / "down")
    assert report.problems == [] and report.warnings == []


# ---- the pre-commit hook ---------------------------------------------------------------


def test_the_repository_ships_a_pre_commit_hook_that_runs_verify() -> None:
    text = (REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    fields = dict(re.findall(r"^\s*-?\s*([a-z_]+):\s*(.+?)\s*$", text, flags=re.MULTILINE))
    assert fields["id"] == "vezamig-verify"
    assert fields["entry"] == "vezamig verify"
    assert fields["language"] == "python"
    assert fields["pass_filenames"] == "false"
    assert fields["files"].strip("'\"") == r"\.sql$"


def test_transaction_control_in_a_transactional_file_fails_verify_as_up_would(
    tmp_path: Path,
) -> None:
    """`up` refuses such a file outright (exit 2): a pre-commit `verify` must too."""
    base = write_tree(
        tmp_path / "sql",
        {
            "up/001_a_up.sql": "CREATE TABLE q (id int);\nBEGIN;\nCOMMIT;\n",
            "up/002_b_up.sql": "-- vezamig:no-transaction\nBEGIN;\nSELECT 1;\nCOMMIT;\n",
        },
    )
    r = verify(base)
    assert r.returncode == EXIT_USAGE, r
    assert "verify: 4 problem(s) (2 file(s) parsed)" in r.stderr
    # The same words as the refusal of `up`/`down`.
    assert (
        f"{base}/up/001_a_up.sql:2: `BEGIN` is transaction control inside the step's own "
        "transaction" in r.stderr
    )
    assert (
        f"{base}/up/001_a_up.sql:3: `COMMIT` is transaction control inside the step's own "
        "transaction" in r.stderr
    )
    assert "VZ006 BEGIN in a migration" not in r.stderr  # not twice
    # In a no-transaction file too (vezamig's progress rows would commit it half-way),
    # in words that do not suggest what is already there.
    assert f"{base}/up/002_b_up.sql:2: `BEGIN` in a non-transactional file" in r.stderr
    assert f"{base}/up/002_b_up.sql:4: `COMMIT` in a non-transactional file" in r.stderr
    no_tx = [line for line in r.stderr.splitlines() if "002_b_up.sql" in line]
    assert no_tx and not any("use `-- vezamig:no-transaction`" in line for line in no_tx)
    assert "VZ006" not in r.stderr


def test_verify_reports_sql_entries_that_are_not_files_and_counts_problems_not_files(
    tmp_path: Path,
) -> None:
    base = write_tree(
        tmp_path / "sql", {"up/001_a_up.sql": "SELECT 1;\n", "up/003_c_up.sql": b"SELECT \xe9;\n"}
    )
    (base / "up" / "002_b_up.sql").symlink_to(tmp_path / "nowhere")
    (base / "up" / "005_dir_up.sql").mkdir()
    r = verify(base)
    assert r.returncode == EXIT_USAGE, r
    assert "verify: 3 problem(s) (1 file(s) parsed)" in r.stderr
    assert f"{base}/up/002_b_up.sql: not a regular file" in r.stderr
    assert f"{base}/up/005_dir_up.sql: not a regular file" in r.stderr
    assert f"{base}/up/003_c_up.sql:1: not valid UTF-8" in r.stderr


@pytest.mark.parametrize("no_transaction", [False, True])
def test_copy_from_stdin_or_to_stdout_fails_verify_as_up_would(
    tmp_path: Path, no_transaction: bool
) -> None:
    header = "-- vezamig:no-transaction\n" if no_transaction else ""
    base = write_tree(
        tmp_path / "sql",
        {
            "up/001_a_up.sql": f"{header}CREATE TABLE x (id int);\nCOPY x FROM stdin;\n",
            "up/002_b_up.sql": f"{header}COPY (SELECT 1) TO STDOUT;\nCOPY x TO '/tmp/x.csv';\n",
        },
    )
    r = verify(base)
    assert r.returncode == EXIT_USAGE, r
    line = 3 if no_transaction else 2
    assert f"{base}/up/001_a_up.sql:{line}: `COPY … FROM STDIN` exchanges rows" in r.stderr
    assert f"{base}/up/002_b_up.sql:{line - 1}: `COPY … TO STDOUT` exchanges rows" in r.stderr
    assert "verify: 2 problem(s)" in r.stderr  # a COPY to a server file is fine


def test_pg_dump_copy_with_its_rows_fails_verify_naming_the_copy_as_up_does(
    tmp_path: Path,
) -> None:
    # The rows do not parse as SQL: verify pointed only at the first row ("syntax error
    # at or near "1"") where `up` names the COPY. COPY text elsewhere (in a string) must
    # not hide a file's real syntax error.
    rows = "CREATE TABLE z (i int);\nCOPY z (i) FROM stdin;\n1\n2\n\\.\n\nCREATE TABLE y ();\n"
    quoted = "SELECT 'run\nCOPY t FROM stdin;\n';\nSELECT (;\n"
    base = write_tree(tmp_path / "sql", {"up/001_e_up.sql": rows, "up/002_q_up.sql": quoted})
    r = verify(base)
    assert r.returncode == EXIT_USAGE, r
    assert f"{base}/up/001_e_up.sql:2: `COPY … FROM STDIN` exchanges rows" in r.stderr
    assert f"{base}/up/001_e_up.sql:3:1: syntax error" in r.stderr
    assert f"{base}/up/002_q_up.sql:4:9: syntax error" in r.stderr
    assert "002_q_up.sql:2" not in r.stderr
