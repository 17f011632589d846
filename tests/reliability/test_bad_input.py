"""Bad input: fuzzed names, directives and headers; huge, empty, odd-encoded files.

The property throughout: vezamig never crashes with a traceback; a problem in
the folder is exit 2 and names the file; a guard can never be switched off by
the shape of the file around it.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from .support import (
    Result,
    history,
    invoke,
    query,
    recorded,
    run_cli,
    table_exists,
    versions,
    write_tree,
)

pytestmark = pytest.mark.reliability

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def victim(dsn: str) -> str:
    """A table no migration in this module may touch."""
    query(dsn, "CREATE TABLE victim (id int); INSERT INTO victim VALUES (42)")
    return dsn


def victim_intact(dsn: str) -> bool:
    return table_exists(dsn, "victim") and query(dsn, "SELECT id FROM victim") == [(42,)]


def fresh_tree(files: dict[str, str | bytes]) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vezamig-fuzz-") as tmp:
        yield write_tree(Path(tmp) / "sql", files)


# ---- fuzzed file names ----------------------------------------------------------------

NAME_CHARS = st.sampled_from(list("0123456789abcXYZ_.- ;'\"\\[]*?$(){}#%&~=+,@!é中🙂"))
VERSIONS = st.one_of(
    st.just(""),
    st.integers(0, 10**25).map(str),
    st.from_regex(r"0{0,3}[0-9]{1,4}_", fullmatch=True),
)
SUFFIXES = st.sampled_from(["_up.sql", "_down.sql", ".sql", ".SQL", ".sql.orig", "", "_up.sql "])
FILE_NAMES = st.builds(
    lambda v, s, x: v + s + x, VERSIONS, st.text(NAME_CHARS, max_size=25), SUFFIXES
).filter(lambda n: n not in ("", ".", "..") and len(n.encode()) <= 200)


@FUZZ
@given(name=FILE_NAMES, folder=st.sampled_from(["up", "down"]))
def test_any_file_name_is_accepted_or_is_exit_2_naming_the_file(
    dsn: str, name: str, folder: str
) -> None:
    for base in fresh_tree({"up/1_base_up.sql": "SELECT 1;\n", f"{folder}/{name}": "SELECT 1;\n"}):
        checked = invoke(["verify", "--dir", str(base)])
        planned = invoke(["up", "--dry-run", "-d", dsn, "--dir", str(base)])
        for result in (checked, planned):
            assert result.returncode in (0, 2), result
            if result.returncode == 2:
                assert name in result.stderr, result
        assert (checked.returncode == 2) == (planned.returncode == 2), (checked, planned)


def test_a_file_name_that_is_not_utf8_is_exit_2_naming_the_file(dsn: str, tree: Path) -> None:
    write_tree(tree, {"up/1_base_up.sql": "SELECT 1;\n"})
    (tree / "up").joinpath(b"2_caf\xe9_up.sql".decode("utf-8", "surrogateescape")).write_text(
        "SELECT 1;\n"
    )
    for command in (["verify"], ["status", "-d", dsn], ["up", "-d", dsn]):
        result = run_cli([*command, "--dir", str(tree)])
        assert result.returncode == 2, result
        assert "Traceback" not in result.output
        assert "2_caf" in result.stderr and "_up.sql" in result.stderr
    assert recorded(dsn) == []


def test_a_folder_whose_path_is_not_utf8_refuses_fails_and_applies_as_any_other(
    dsn: str, tree: Path
) -> None:
    """Python keeps such a byte as a lone surrogate, which can be sent neither to the
    server (a history message names the file) nor to a UTF-8 terminal."""
    base = tree / b"lat\xe9".decode("utf-8", "surrogateescape")
    write_tree(
        base,
        {
            "up/1_z_up.sql": "CREATE TABLE z (x int);\n",
            "up/2_y_up.sql": "-- vezamig:guard SELECT false\nCREATE TABLE y (x int);\n",
        },
    )
    step = base / "up" / "2_y_up.sql"
    refused = run_cli(["up", "-d", dsn, "--dir", str(base)])
    step.write_text("SELECT 1/0;\n")
    failed = run_cli(["up", "-d", dsn, "--dir", str(base)])
    step.write_text("-- vezamig:no-transaction\nCREATE TABLE y (x int);\n")
    applied = run_cli(["up", "-d", dsn, "--dir", str(base)])

    assert (refused.returncode, failed.returncode, applied.returncode) == (3, 1, 0), (
        refused,
        failed,
        applied,
    )
    for result in (refused, failed, applied):
        assert "Traceback" not in result.output
    assert "lat\\xe9/up/2_y_up.sql:1" in refused.stderr
    assert "lat\\xe9/up/2_y_up.sql:1:1: 22012 division by zero" in failed.stderr
    rows = [(r["version"], r["outcome"], r["message"]) for r in history(dsn)]
    assert [r[:2] for r in rows] == [(1, "ok"), (2, "refused"), (2, "failed"), (2, "ok")]
    assert "lat\\xe9/up/2_y_up.sql" in rows[1][2] and "lat\\xe9/up/2_y_up.sql" in rows[2][2]
    assert recorded(dsn) == [(1, False), (2, False)]


def test_a_table_name_that_is_not_utf8_is_exit_2(dsn: str) -> None:
    result = run_cli(["status", "-d", dsn, "--table", b"t\xe9".decode("utf-8", "surrogateescape")])
    assert result.returncode == 2, result
    assert "--table: `t\\xe9` holds a byte that is not valid UTF-8" in result.stderr


# ---- fuzzed directive lines -------------------------------------------------------------

DIRECTIVE_NAMES = st.one_of(
    st.sampled_from(["guard", "lock", "no-transaction", "gaurd", "Guard", "", "lock:", "guard;"]),
    st.text(st.sampled_from(list("abglockuardn-:;_ ")), max_size=12),
)
ARGS = st.one_of(
    st.sampled_from(
        [
            "SELECT true",
            "SELECT false",
            "SELECT NULL",
            "SELECT 1",
            "SELECT true, false",
            "SELECT true UNION ALL SELECT true",
            "SELECT * FROM victim",
            "victim",
            "victim, b.c",
            '"x""y"',
            "x; DROP TABLE victim; --",
            "SELECT 1; DROP TABLE victim",
            "DELETE FROM victim",
            "DROP TABLE victim",
            "victim IN SHARE MODE",
            "victim NOWAIT",
            "",
            "(",
            "'",
            "$$",
            "*/",
            '\\"; DROP TABLE x; --',
            "SELECT true FROM nosuch",
            "VALUES (true)",
        ]
    ),
    st.text(st.sampled_from(list("abc xyz_01;'\"()*/-$,.=\\é")), max_size=40),
)
DIRECTIVES = st.builds(
    lambda block, name, args: (
        f"/* vezamig:{name} {args} */" if block else f"-- vezamig:{name} {args}"
    ),
    st.booleans(),
    DIRECTIVE_NAMES,
    ARGS,
)


@FUZZ
@given(header=st.lists(DIRECTIVES, min_size=1, max_size=4), trailing=st.booleans())
def test_any_directive_line_is_accepted_or_is_exit_2_naming_the_file(
    victim: str, header: list[str], trailing: bool
) -> None:
    text = "\n".join(header) + "\nSELECT 1;\n" + (header[0] + "\n" if trailing else "")
    for base in fresh_tree({"up/001_fuzzed_up.sql": text}):
        path = str(base / "up" / "001_fuzzed_up.sql")
        checked = invoke(["verify", "--dir", str(base)])
        planned = invoke(["up", "--dry-run", "-d", victim, "--dir", str(base)])
        assert checked.returncode in (0, 2), checked
        assert planned.returncode in (0, 2, 3), planned
        for result in (checked, planned):
            if result.returncode == 2:
                assert path in result.stderr, result
        if planned.returncode == 2:
            assert checked.returncode == 2, (checked, planned)
    assert victim_intact(victim)
    assert recorded(victim) == []


# ---- fuzzed headers ---------------------------------------------------------------------

HEADER_PIECES = st.sampled_from(
    [
        "-- a plain comment",
        "--",
        "",
        "   ",
        "\t",
        "/* block */",
        "/* nested /* inner */ still */",
        "/*\n multi\n line\n*/",
        "-- vezamig:guard SELECT true",
        "/* vezamig:guard SELECT true */",
        "/* vezamig:guard\n   SELECT true */",
        "--vezamig:guard SELECT true",
        "-- vezamig:",
        "-- vezamig:no-transaction",
        "/* vezamig:lock victim */",
        "-- VEZAMIG:guard SELECT false",
        "SELECT 1;",
        "'a string -- not a comment';",
        "$$ unterminated dollar",
        "/* unterminated",
        "E'\\'';",
        "-- é中🙂",
        "/* -- vezamig:guard SELECT false */",
    ]
)


@FUZZ
@given(pieces=st.lists(HEADER_PIECES, max_size=6), crlf=st.booleans(), bom=st.booleans())
def test_any_header_is_accepted_or_is_exit_2_naming_the_file(
    victim: str, pieces: list[str], crlf: bool, bom: bool
) -> None:
    text = "\n".join([*pieces, "SELECT 1;", ""])
    if crlf:
        text = text.replace("\n", "\r\n")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    for base in fresh_tree({"up/001_fuzzed_up.sql": data}):
        path = str(base / "up" / "001_fuzzed_up.sql")
        checked = invoke(["verify", "--dir", str(base)])
        planned = invoke(["up", "--dry-run", "-d", victim, "--dir", str(base)])
        assert checked.returncode in (0, 2), checked
        assert planned.returncode in (0, 2, 3), planned
        for result in (checked, planned):
            if result.returncode == 2:
                assert path in result.stderr, result
    assert victim_intact(victim)


COMPLETE_COMMENTS = st.sampled_from(
    [
        "-- a plain comment",
        "--",
        "",
        "   ",
        "\t",
        "/* block */",
        "/* nested /* inner */ */",
        "/*\n multi\n line\n*/",
        "-- vezamig:guard SELECT true",
        "/* vezamig:guard SELECT true */",
        "-- é中🙂",
        "/* vezamig:lock victim */",
    ]
)


@FUZZ
@given(
    before=st.lists(COMPLETE_COMMENTS, max_size=4),
    after=st.lists(COMPLETE_COMMENTS, max_size=4),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
    guard=st.sampled_from(
        [
            "-- vezamig:guard SELECT false",
            "/* vezamig:guard SELECT false */",
            "/*vezamig:guard\nSELECT false\n*/",
        ]
    ),
)
def test_no_header_shape_switches_a_guard_off(
    victim: str, before: list[str], after: list[str], newline: str, bom: bool, guard: str
) -> None:
    text = "\n".join([*before, guard, *after, "DROP TABLE victim;", ""])
    data = (b"\xef\xbb\xbf" if bom else b"") + text.replace("\n", newline).encode()
    for base in fresh_tree({"up/001_guarded_up.sql": data}):
        result = invoke(["up", "-d", victim, "--dir", str(base)])
        assert result.returncode == 3, result
        assert "refused by its guard" in result.stderr
    assert victim_intact(victim)
    assert recorded(victim) == []


# ---- odd files -------------------------------------------------------------------------


def test_a_10_mb_file_applies_in_one_transaction_with_its_checksum(dsn: str, tree: Path) -> None:
    chunk = "é" + "abcdefghij" * 5000  # 50 KB, not only ASCII
    text = "CREATE TABLE big (id int, pad text);\n" + "".join(
        f"INSERT INTO big VALUES ({i}, '{chunk}');\n" for i in range(200)
    )
    data = text.encode()
    assert len(data) >= 10_000_000
    write_tree(tree, {"up/001_big_up.sql": data})

    result = run_cli(["up", "-d", dsn, "--dir", str(tree)])

    assert result.returncode == 0, result
    assert query(dsn, "SELECT count(*), min(length(pad)) FROM big") == [(200, 50_001)]
    assert query(dsn, "SELECT checksum FROM schema_migrations") == [
        (hashlib.sha256(data).hexdigest(),)
    ]


def test_a_10_mb_file_that_fails_at_its_end_names_the_line_and_changes_nothing(
    dsn: str, tree: Path
) -> None:
    chunk = "x" * 50_000
    text = (
        "CREATE TABLE big (id int, pad text);\n"
        + "".join(f"INSERT INTO big VALUES ({i}, '{chunk}');\n" for i in range(200))
        + "SELECT 1/0;\n"
    )
    write_tree(tree, {"up/001_big_up.sql": text})

    result = run_cli(["up", "-d", dsn, "--dir", str(tree)])

    assert result.returncode == 1, result
    assert "001_big_up.sql:202" in result.stderr
    assert "22012" in result.stderr  # division_by_zero
    assert len(result.output) < 1_000_000  # the offending lines, not the whole file
    assert recorded(dsn) == [] and not table_exists(dsn, "big")


def test_a_file_that_is_not_utf8_is_exit_2_naming_file_and_line(dsn: str, tree: Path) -> None:
    write_tree(tree, {"up/001_latin1_up.sql": "-- ok\nSELECT 'caf\xe9';\n".encode("latin-1")})
    for command in (["verify"], ["status", "-d", dsn], ["up", "-d", dsn]):
        result = run_cli([*command, "--dir", str(tree)])
        assert result.returncode == 2, result
        assert "001_latin1_up.sql:2: not valid UTF-8" in result.stderr
    assert recorded(dsn) == []


def test_a_down_file_that_is_not_utf8_stops_the_runs_that_use_it(dsn: str, tree: Path) -> None:
    latin1 = "-- ok\nDROP TABLE {t}; -- caf\xe9\n".encode("latin-1")
    write_tree(
        tree,
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "down/001_a_down.sql": "DROP TABLE a;\n",
            "up/002_b_up.sql": "CREATE TABLE b (id int);\n",
            "down/002_b_down.sql": latin1.replace(b"{t}", b"b"),
        },
    )

    def run(*command: str) -> Result:
        return run_cli([*command, "-d", dsn, "--dir", str(tree)])

    # up checks the rollback of what it applies before applying anything.
    refused = run("up")
    assert refused.returncode == 2, refused
    assert "002_b_down.sql:2: not valid UTF-8" in refused.stderr
    assert recorded(dsn) == []
    assert run("up", "--to", "1").returncode == 0
    # Broken after it was applied: down refuses before changing anything ...
    write_tree(tree, {"down/001_a_down.sql": latin1.replace(b"{t}", b"a")})
    for command in (["down", "--yes"], ["verify"]):
        result = run(*command)
        assert result.returncode == 2, result
        assert "001_a_down.sql:2: not valid UTF-8" in result.stderr
    assert recorded(dsn) == [(1, False)]
    # ... while status (which only lists down files) still reports.
    status = run("status")
    assert status.returncode == 0, status
    assert "applied" in status.stdout and "pending" in status.stdout


@pytest.mark.parametrize(
    "content",
    ["", "-- only a comment\n/* and a block */\n", "\n\n  \n"],
    ids=["empty", "only comments", "only blank lines"],
)
def test_a_file_without_sql_is_recorded_as_applied_and_rolled_back_without_running_anything(
    dsn: str, tree: Path, content: str
) -> None:
    write_tree(tree, {"up/001_nothing_up.sql": content, "down/001_nothing_down.sql": content})
    applied = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    assert applied.returncode == 0, applied
    assert recorded(dsn) == [(1, False)]
    assert run_cli(["verify", "--dir", str(tree)]).returncode == 0
    rolled_back = run_cli(["down", "-d", dsn, "--dir", str(tree), "--yes"])
    assert rolled_back.returncode == 0, rolled_back
    assert recorded(dsn) == []
    assert [(h["direction"], h["outcome"]) for h in history(dsn)] == [("up", "ok"), ("down", "ok")]


def test_a_bom_neither_breaks_the_sql_nor_hides_a_guard(victim: str, tree: Path) -> None:
    bom = b"\xef\xbb\xbf"
    write_tree(
        tree,
        {
            "up/001_bom_up.sql": bom + b"CREATE TABLE with_bom (id int);\n",
            "up/002_guarded_up.sql": bom + b"-- vezamig:guard SELECT false\nDROP TABLE victim;\n",
        },
    )
    result = run_cli(["up", "-d", victim, "--dir", str(tree)])
    assert result.returncode == 3, result
    assert "002_guarded_up.sql:1" in result.stderr
    assert recorded(victim) == [(1, False)]
    assert table_exists(victim, "with_bom") and victim_intact(victim)


def test_crlf_files_apply_and_their_checksum_equals_the_lf_version(victim: str, tree: Path) -> None:
    lf = (
        "-- vezamig:guard SELECT count(*) = 1 FROM victim\n"
        "CREATE TABLE crlf_t (id int);\n"
        "INSERT INTO crlf_t VALUES (1);\n"
    )
    write_tree(
        tree,
        {
            "up/001_crlf_up.sql": lf.replace("\n", "\r\n"),
            "down/001_crlf_down.sql": "DROP TABLE crlf_t;\r\n",
        },
    )
    result = run_cli(["up", "-d", victim, "--dir", str(tree)])
    assert result.returncode == 0, result
    assert query(victim, "SELECT checksum FROM schema_migrations") == [
        (hashlib.sha256(lf.encode()).hexdigest(),)
    ]

    # The same file checked out with LF endings is the same migration, not drift.
    write_tree(tree, {"up/001_crlf_up.sql": lf})
    status = run_cli(["status", "-d", victim, "--dir", str(tree), "--exit-code"])
    assert status.returncode == 0, status
    assert "modified" not in status.stdout
    down = run_cli(["down", "-d", victim, "--dir", str(tree), "--yes"])
    assert down.returncode == 0, down
    assert not table_exists(victim, "crlf_t") and victim_intact(victim)


@pytest.fixture
def encoded_database(pg_server: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database in the encoding the test is parametrized with."""
    name = f"vezamig_enc_{request.param.lower()}"
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} ENCODING {} LOCALE 'C' TEMPLATE template0").format(
                sql.Identifier(name), sql.Literal(request.param)
            )
        )
    yield pg_server.conninfo(name)
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("encoded_database", ["SQL_ASCII", "LATIN1"], indirect=True)
def test_a_database_not_in_utf8_runs_utf8_files_and_names_what_it_cannot_store(
    encoded_database: str, tree: Path
) -> None:
    """vezamig speaks UTF-8 to every database: a LATIN1 one converts, and a character it
    has no room for (€) fails its step as an SQL error; an SQL_ASCII one stores the bytes."""
    dsn = encoded_database
    write_tree(
        tree,
        {
            "up/001_items_up.sql": "CREATE TABLE items (name text);  -- café\n",
            "down/001_items_down.sql": "DROP TABLE items;\n",
            "up/002_prices_up.sql": "INSERT INTO items VALUES ('5 €');\n",
            "down/002_prices_down.sql": (
                "-- vezamig:guard SELECT count(*) = 1 FROM items WHERE name = '5 €'\n"
                "DELETE FROM items;\n"
            ),
        },
    )
    up = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    status = run_cli(["status", "--json", "-d", dsn, "--dir", str(tree)])
    assert "Traceback" not in up.stderr + status.stderr
    assert status.returncode == 0, status
    if "latin1" in dsn:
        assert up.returncode == 1, up
        assert "up 2 (prices) failed and was rolled back" in up.stderr
        # The server names the bytes only; the place is found in the file.
        assert "002_prices_up.sql:1:30: 22P05" in up.stderr
        assert "> 1 | INSERT INTO items VALUES ('5 €');" in up.stderr
        assert versions(dsn) == [1]
        assert [h["outcome"] for h in history(dsn)] == ["ok", "failed"]
        return
    assert up.returncode == 0, up
    assert versions(dsn) == [1, 2]
    assert query(dsn, "SELECT convert_to(name, 'SQL_ASCII') FROM items") == [("5 €".encode(),)]
    down = run_cli(["down", "--yes", "-d", dsn, "--dir", str(tree)])
    assert down.returncode == 0, down
    assert versions(dsn) == [1]


@pytest.mark.parametrize("encoded_database", ["LATIN1"], indirect=True)
def test_history_rows_fit_a_database_that_lacks_some_characters(
    encoded_database: str, tmp_path: Path
) -> None:
    """A guard's text or a folder's name with `☃` is quoted in history rows: a LATIN1
    database stores it escaped instead of refusing the row (or the dirty mark of a
    non-transactional step, which then could never run)."""
    dsn = encoded_database
    folder = tmp_path / "up☃"
    write_tree(
        tmp_path,
        {
            "up☃/001_a_up.sql": "-- vezamig:no-transaction\nCREATE TABLE a (x int);\n",
            "up☃/002_b_up.sql": "-- vezamig:guard SELECT $$☃$$ IS NULL\nCREATE TABLE b ();\n",
        },
    )
    result = run_cli(
        ["up", "-d", dsn, "--up-dir", str(folder), "--down-dir", str(tmp_path / "down")]
    )
    assert result.returncode == 3, result  # the guard's query itself fails there: a refusal
    assert "could not be recorded" not in result.stderr
    rows = [(h["version"], h["outcome"]) for h in history(dsn)]
    assert rows == [(1, "ok"), (2, "refused")]
    assert "\\u2603" in history(dsn)[-1]["message"]


@pytest.mark.parametrize("encoded_database", ["LATIN1"], indirect=True)
def test_a_character_the_database_lacks_is_placed_in_a_non_transactional_statement(
    encoded_database: str, tree: Path
) -> None:
    body = (
        "-- vezamig:no-transaction\nCREATE TABLE c (x int);\nCOMMENT ON TABLE c IS   $$bad ☃$$;\n"
    )
    write_tree(tree, {"up/001_c_up.sql": body})
    result = run_cli(["up", "-d", encoded_database, "--dir", str(tree)])
    assert result.returncode == 1, result
    assert "001_c_up.sql:3:31: 22P05" in result.stderr
    assert result.stderr.count("> 3 | COMMENT ON TABLE c") == 1  # one excerpt, at the ☃
