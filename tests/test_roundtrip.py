"""`vezamig roundtrip` (SPEC §7): every down must undo its up, and up again must redo it.

Each "forgotten X" test writes a tiny migration tree whose version 2 has a down
that forgets one kind of object, and asserts that the report names that object.
The throwaway-cluster tests check by pid that no server outlives the command,
whether it passes, fails, or is interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from vezamig.cluster import process_alive

_ISOLATE = ("DATABASE_URL", "VEZAMIG_DIR", "VEZAMIG_UP_DIR", "VEZAMIG_DOWN_DIR", "VEZAMIG_TABLE")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ISOLATE and not k.startswith("PG")}
    env.update(NO_COLOR="1", COLUMNS="200", **extra)
    return env


def write_tree(base: Path, files: Mapping[str, str]) -> Path:
    """``{"up/001_a_up.sql": "…"}`` under base; up/ and down/ always exist."""
    for sub in ("up", "down"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text, encoding="utf-8")
    return base


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def __str__(self) -> str:  # shown when an assertion fails
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


def vezamig(*args: str, env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "vezamig", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env or cli_env(),
        timeout=120,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def roundtrip_json(tree: Path, dsn: str, *extra: str) -> tuple[Result, dict[str, Any]]:
    result = vezamig("roundtrip", "-d", dsn, "--dir", str(tree), "--json", *extra)
    return result, result.json()


def problems_of(report: dict[str, Any], version: int) -> list[str]:
    (entry,) = [v for v in report["versions"] if v["version"] == version]
    problems: list[str] = entry["problems"]
    return problems


BASE = {
    "up/001_base_up.sql": (
        "CREATE TYPE mood AS ENUM ('sad', 'ok');\n"
        "CREATE TABLE tracks (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "                     title text NOT NULL, plays integer NOT NULL DEFAULT 0);\n"
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql\n"
        "  AS $$BEGIN NEW.plays := NEW.plays; RETURN NEW; END$$;\n"
    ),
}


# ---- a down that forgets something is caught, and the object is named ---------------

FORGOTTEN: dict[str, tuple[str, str, str]] = {
    # kind: (up of version 2, its incomplete down, the sentence that must appear)
    "index": (
        "CREATE INDEX idx_tracks_title ON tracks (title);\n"
        "CREATE INDEX idx_tracks_plays ON tracks (plays);\n",
        "DROP INDEX idx_tracks_plays;\n",
        "index idx_tracks_title still exists after down of 2",
    ),
    "column": (
        "ALTER TABLE tracks ADD COLUMN storage_backend text NOT NULL DEFAULT 'local',\n"
        "                   ADD COLUMN storage_key text;\n",
        "ALTER TABLE tracks DROP COLUMN storage_backend;\n",
        "column tracks.storage_key still exists after down of 2",
    ),
    "constraint": (
        "ALTER TABLE tracks ADD CONSTRAINT tracks_plays_not_negative CHECK (plays >= 0);\n",
        "SELECT 1;\n",
        "constraint tracks.tracks_plays_not_negative still exists after down of 2",
    ),
    "trigger": (
        "CREATE TRIGGER tracks_touch BEFORE UPDATE ON tracks\n"
        "  FOR EACH ROW EXECUTE FUNCTION touch();\n",
        "SELECT 1;\n",
        "trigger tracks.tracks_touch still exists after down of 2",
    ),
    "function": (
        "CREATE FUNCTION track_count() RETURNS bigint LANGUAGE sql\n"
        "  AS $$SELECT count(*) FROM tracks$$;\n",
        "SELECT 1;\n",
        "function track_count() still exists after down of 2",
    ),
    "enum value": (
        "ALTER TYPE mood ADD VALUE 'happy';\n",
        "SELECT 1;\n",
        "enum mood changed after down of 2: was \"ENUM ('sad', 'ok')\", "
        "now \"ENUM ('sad', 'ok', 'happy')\" (PostgreSQL cannot drop an enum value: if the "
        "up ran ALTER TYPE … ADD VALUE, rebuild the type in the down file, or make the "
        "version irreversible)",
    ),
    "table": (
        "CREATE TABLE playlists (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE);\n",
        "SELECT 1;\n",
        "table playlists still exists after down of 2 (with 2 columns, 2 constraints, 1 sequence)",
    ),
}


@pytest.mark.parametrize("kind", list(FORGOTTEN))
def test_a_down_that_forgets_an_object_fails_its_version_and_names_the_object(
    kind: str, tmp_path: Path, dsn: str
) -> None:
    up, down, sentence = FORGOTTEN[kind]
    tree = write_tree(
        tmp_path,
        {
            **BASE,
            "up/002_change_up.sql": up,
            "down/002_change_down.sql": down,
            "up/003_later_up.sql": "CREATE TABLE later (id int);\n",
            "down/003_later_down.sql": "DROP TABLE later;\n",
        },
    )
    result, report = roundtrip_json(tree, dsn)
    assert result.returncode == 1, result
    assert report["ok"] is False and report["failed"] == 1
    assert problems_of(report, 2)[0] == sentence, result
    assert [v["result"] for v in report["versions"]][:2] == ["irreversible", "fail"]


def test_a_migration_s_own_table_named_as_the_tracking_table_is_compared_not_left_out(
    tmp_path: Path, dsn: str
) -> None:
    """Found by an audit: the tracking tables were left out of each snapshot by their
    unqualified name, so a migration's schema_migrations in a schema ahead in the
    search_path (a role's own schema) was left out instead, and its leftover column
    passed; vezamig's own table was compared."""
    from psycopg.conninfo import make_conninfo

    tree = write_tree(
        tmp_path,
        {
            "up/001_base_up.sql": (
                "CREATE SCHEMA app;\nCREATE TABLE app.schema_migrations (x int);\n"
            ),
            "down/001_base_down.sql": "DROP SCHEMA app CASCADE;\n",
            "up/002_change_up.sql": (
                "ALTER TABLE app.schema_migrations ADD COLUMN IF NOT EXISTS y int;\n"
            ),
            "down/002_change_down.sql": "SELECT 1;\n",
        },
    )
    result, report = roundtrip_json(tree, make_conninfo(dsn, options="-c search_path=app,public"))
    assert result.returncode == 1, result
    assert [v["result"] for v in report["versions"]] == ["pass", "fail"]
    assert problems_of(report, 2) == ["column app.schema_migrations.y still exists after down of 2"]


def test_a_down_that_drops_too_much_names_the_missing_object(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            **BASE,
            "up/002_plays_index_up.sql": "CREATE INDEX idx_tracks_plays ON tracks (plays);\n",
            "down/002_plays_index_down.sql": (
                "DROP INDEX idx_tracks_plays;\nALTER TABLE tracks DROP COLUMN plays;\n"
            ),
        },
    )
    result, report = roundtrip_json(tree, dsn)
    assert result.returncode == 1, result
    assert "column tracks.plays is missing after down of 2" in problems_of(report, 2), result


def test_an_up_that_fails_the_second_time_is_reported_as_up_again(tmp_path: Path, dsn: str) -> None:
    # The down forgets the index, so the second CREATE INDEX collides with it.
    tree = write_tree(
        tmp_path,
        {
            **BASE,
            "up/002_title_index_up.sql": "CREATE INDEX idx_tracks_title ON tracks (title);\n",
            "down/002_title_index_down.sql": "SELECT 1;\n",
            "up/003_later_up.sql": "CREATE TABLE later (id int);\n",
        },
    )
    result, report = roundtrip_json(tree, dsn)
    problems = problems_of(report, 2)
    assert result.returncode == 1, result
    assert problems[0] == "index idx_tracks_title still exists after down of 2"
    assert problems[1].startswith("up again of 2: up 2 (title_index) failed"), problems
    assert any("already exists" in p for p in problems), problems
    # The schema is now between versions, so what follows is not run, and says why.
    assert problems_of(report, 3) == ["not run: up again of 2 failed"]
    assert report["not_run"] == 1


def test_an_up_that_is_not_repeatable_is_caught_by_the_second_comparison(
    tmp_path: Path, dsn: str
) -> None:
    # The down keeps the table (and adds to it); the up's IF NOT EXISTS then hides that,
    # so only the comparison after up again can tell that the schema is not the same.
    tree = write_tree(
        tmp_path,
        {
            **BASE,
            "up/002_genres_up.sql": (
                "CREATE TABLE IF NOT EXISTS genres (id int);\n"
                "CREATE INDEX IF NOT EXISTS idx_genres_id ON genres (id);\n"
            ),
            "down/002_genres_down.sql": (
                "DROP INDEX idx_genres_id;\nALTER TABLE genres ADD COLUMN name text;\n"
            ),
        },
    )
    result, report = roundtrip_json(tree, dsn)
    problems = problems_of(report, 2)
    assert result.returncode == 1, result
    assert "table genres still exists after down of 2 (with 2 columns)" in problems
    assert "column genres.name still exists after up again of 2" in problems


def test_a_correct_tree_passes_and_reports_irreversible_versions(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            **BASE,
            "up/002_everything_up.sql": "".join(
                up for up, _, _ in FORGOTTEN.values() if "ADD VALUE" not in up
            ),
            "down/002_everything_down.sql": (
                "DROP TABLE playlists;\n"
                "DROP FUNCTION track_count();\n"
                "DROP TRIGGER tracks_touch ON tracks;\n"
                "ALTER TABLE tracks DROP CONSTRAINT tracks_plays_not_negative;\n"
                "ALTER TABLE tracks DROP COLUMN storage_backend, DROP COLUMN storage_key;\n"
                "DROP INDEX idx_tracks_title, idx_tracks_plays;\n"
            ),
            "up/003_mood_up.sql": (
                "CREATE TYPE mood2 AS ENUM ('a', 'b');\nALTER TABLE tracks ADD COLUMN mood mood2;\n"
            ),
            "down/003_mood_down.sql": "ALTER TABLE tracks DROP COLUMN mood;\nDROP TYPE mood2;\n",
            "up/004_irreversible_up.sql": "ALTER TABLE tracks ALTER title TYPE varchar(200);\n",
            "up/005_view_up.sql": "CREATE VIEW popular AS SELECT title FROM tracks;\n",
            "down/005_view_down.sql": "DROP VIEW popular;\n",
        },
    )
    result, report = roundtrip_json(tree, dsn)
    assert result.returncode == 0, result
    assert report["ok"] is True
    assert [(v["version"], v["result"]) for v in report["versions"]] == [
        (1, "irreversible"),
        (2, "pass"),
        (3, "pass"),
        (4, "irreversible"),
        (5, "pass"),
    ]
    assert (report["passed"], report["failed"], report["irreversible"]) == (3, 0, 2)
    # The database is left with every version applied once.
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]


def test_human_output_lists_each_version_and_a_summary(tmp_path: Path, dsn: str) -> None:
    up, down, sentence = FORGOTTEN["column"]
    tree = write_tree(
        tmp_path,
        {
            **BASE,
            "up/002_storage_up.sql": up,
            "down/002_storage_down.sql": down,
        },
    )
    result = vezamig("roundtrip", "-d", dsn, "--dir", str(tree))
    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["irreversible", "1", "base"] for line in lines), result
    # A failing version is an error: on stderr, with what is wrong.
    errors = result.stderr.splitlines()
    assert any(line.split()[:3] == ["fail", "2", "storage"] for line in errors), result
    assert f"      {sentence}" in errors
    assert lines[-1] == "roundtrip: 0 passed, 1 failed, 1 irreversible (applied, not reversible)"


def test_quiet_keeps_the_failing_versions_and_why(tmp_path: Path, dsn: str) -> None:
    up, down, sentence = FORGOTTEN["column"]
    tree = write_tree(
        tmp_path, {**BASE, "up/002_storage_up.sql": up, "down/002_storage_down.sql": down}
    )
    result = vezamig("roundtrip", "-d", dsn, "--dir", str(tree), "-q")
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert any(line.split()[:3] == ["fail", "2", "storage"] for line in result.stderr.splitlines())
    assert sentence in result.stderr


def test_json_output_is_only_json_on_stdout(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "down/001_a_down.sql": "DROP TABLE a;\n",
        },
    )
    result, report = roundtrip_json(tree, dsn)
    assert result.returncode == 0, result
    assert report == {
        "ok": True,
        "passed": 1,
        "failed": 0,
        "irreversible": 0,
        "skipped": 0,
        "not_run": 0,
        "versions": [
            {
                "version": 1,
                "name": "a",
                "result": "pass",
                "problems": [],
                "duration_ms": report["versions"][0]["duration_ms"],
            }
        ],
    }


def test_from_and_to_limit_the_versions_that_are_checked(tmp_path: Path, dsn: str) -> None:
    bad_down = "SELECT 1;\n"  # every down forgets its table: only checked versions fail
    tree = write_tree(
        tmp_path,
        {
            **{f"up/00{v}_t{v}_up.sql": f"CREATE TABLE t{v} (id int);\n" for v in range(1, 6)},
            **{f"down/00{v}_t{v}_down.sql": bad_down for v in range(1, 6)},
            "down/003_t3_down.sql": "DROP TABLE t3;\n",
        },
    )
    result, report = roundtrip_json(tree, dsn, "--from", "3", "--to", "3")
    assert result.returncode == 0, result
    assert [(v["version"], v["result"]) for v in report["versions"]] == [
        (1, "skipped"),
        (2, "skipped"),
        (3, "pass"),
    ]


def test_a_refused_down_guard_fails_the_version_with_the_guard(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "down/001_a_down.sql": "-- vezamig:guard SELECT false\nDROP TABLE a;\n",
        },
    )
    result, report = roundtrip_json(tree, dsn)
    assert result.returncode == 1, result
    problems = problems_of(report, 1)
    assert problems[0] == "down 1 (a) refused by its guard; nothing of this step was changed"
    assert any("guard:    SELECT false" in p for p in problems)


def test_a_down_that_only_works_in_the_ups_session_fails_as_it_would_in_real_use(
    tmp_path: Path, dsn: str
) -> None:
    """Each step starts from the session's defaults, in a roundtrip as in a real run: a
    down that relies on the search_path its up set cannot pass here and fail later."""
    tree = write_tree(
        tmp_path,
        {
            "up/001_s_up.sql": "CREATE SCHEMA s;\n",
            "down/001_s_down.sql": "DROP SCHEMA s;\n",
            "up/002_x_up.sql": "SET search_path = s, public;\nCREATE TABLE x (i int);\n",
            "down/002_x_down.sql": "DROP TABLE x;\n",
        },
    )
    result = vezamig("roundtrip", "-d", dsn, "--dir", str(tree))
    assert result.returncode == 1, result
    assert 'table "x" does not exist' in result.stdout + result.stderr


def test_a_scratch_database_that_cannot_be_reached_is_exit_5_naming_only_d(
    tmp_path: Path,
) -> None:
    tree = write_tree(
        tmp_path,
        {"up/001_a_up.sql": "CREATE TABLE a ();\n", "down/001_a_down.sql": "DROP TABLE a;\n"},
    )
    result = vezamig("roundtrip", "-d", "postgresql://u:s3cret@127.0.0.1:1/x", "--dir", str(tree))
    assert result.returncode == 5, result
    assert "check -d (the scratch database's URL)" in result.stderr
    assert "DATABASE_URL" not in result.stderr  # which roundtrip deliberately ignores
    assert "s3cret" not in result.stdout + result.stderr


def test_the_text_output_names_the_versions_a_stopped_run_did_not_check(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_t_up.sql": "CREATE TABLE t (id int);\n",
            "down/001_t_down.sql": "DROP TABLE t;\n",
            "up/002_i_up.sql": "CREATE INDEX idx_x ON t (id);\n",
            "down/002_i_down.sql": "SELECT 1;\n",
            "up/003_u_up.sql": "CREATE TABLE u (id int);\n",
            "down/003_u_down.sql": "DROP TABLE u;\n",
            "up/004_w_up.sql": "CREATE TABLE w (id int);\n",
            "down/004_w_down.sql": "DROP TABLE w;\n",
        },
    )
    result = vezamig("roundtrip", "-d", dsn, "--dir", str(tree))
    assert result.returncode == 1, result
    assert "not run: 3, 4 (up again of 2 failed: the run stopped there)" in result.stderr
    assert "2 not run" in result.stdout


def test_an_extension_s_own_views_do_not_make_a_scratch_database_non_empty(
    tmp_path: Path, dsn: str
) -> None:
    # pg_buffercache (or pg_stat_statements, often in template1) brings views of its own.
    tree = write_tree(
        tmp_path,
        {"up/001_a_up.sql": "CREATE TABLE a (id int);\n", "down/001_a_down.sql": "DROP TABLE a;\n"},
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_buffercache")
    result = vezamig("roundtrip", "-d", dsn, "--dir", str(tree))
    assert result.returncode == 0, result


def test_roundtrip_refuses_a_database_that_is_not_empty(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "down/001_a_down.sql": "DROP TABLE a;\n",
        },
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int)")
    result = vezamig("roundtrip", "-d", dsn, "--dir", str(tree))
    assert result.returncode == 2, result
    assert "roundtrip needs an empty scratch database" in result.stderr
    assert "has tables (public.customers); vezamig changed nothing" in result.stderr
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(6):
            conn.execute(f"CREATE TABLE more_{i} (id int)")
    result = vezamig("roundtrip", "-d", dsn, "--dir", str(tree))
    assert result.returncode == 2, result
    assert "(public.customers, public.more_0, public.more_1, public.more_2, public.more_3, …)" in (
        result.stderr
    )
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT to_regclass('schema_migrations') IS NULL, to_regclass('a') IS NULL"
        ).fetchone()
    assert found == (True, True)  # nothing was created


def test_roundtrip_explains_a_pg_bin_folder_without_server_binaries(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path / "tree",
        {"up/001_a_up.sql": "CREATE TABLE a (id int);\n", "down/001_a_down.sql": "DROP TABLE a;\n"},
    )
    result = vezamig("roundtrip", "--dir", str(tree), "--pg-bin", str(tmp_path))
    assert result.returncode == 2, result
    assert f"--pg-bin {tmp_path}: no initdb, pg_ctl, postgres there" in result.stderr


def test_roundtrip_uses_the_server_binaries_of_an_explicit_pg_bin(
    tmp_path: Path, pg_bindir: Path, private_tmp: Path
) -> None:
    """`--pg-bin DIR` wins over PATH: with no PostgreSQL on PATH, the run still works."""
    tree = write_tree(
        tmp_path,
        {"up/001_a_up.sql": "CREATE TABLE a ();\n", "down/001_a_down.sql": "DROP TABLE a;\n"},
    )
    # Wrappers that note each use, in a folder the server's OS user can reach (as root
    # the cluster runs as another user).
    bindir = private_tmp / "bin"
    bindir.mkdir()
    bindir.chmod(0o755)
    used = private_tmp / "used.log"
    used.touch()
    used.chmod(0o666)
    for name in ("initdb", "pg_ctl"):
        wrapper = bindir / name
        wrapper.write_text(f'#!/bin/sh\necho {name} >> {used}\nexec {pg_bindir / name} "$@"\n')
        wrapper.chmod(0o755)
    (bindir / "postgres").symlink_to(pg_bindir / "postgres")
    env = cli_env(TMPDIR=str(private_tmp), PATH="/usr/bin:/bin")
    result = vezamig("roundtrip", "--dir", str(tree), "--pg-bin", str(bindir), env=env)
    assert result.returncode == 0, result
    assert "throwaway PostgreSQL in" in result.stderr
    assert {"initdb", "pg_ctl"} <= set(used.read_text().split())


def test_roundtrip_ignores_database_url_from_the_environment(
    tmp_path: Path, dsn: str, private_tmp: Path
) -> None:
    # DATABASE_URL may point at production: only an explicit -d is used.
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "down/001_a_down.sql": "DROP TABLE a;\n",
        },
    )
    result = vezamig(
        "roundtrip", "--dir", str(tree), env=cli_env(DATABASE_URL=dsn, TMPDIR=str(private_tmp))
    )
    assert result.returncode == 0, result
    assert "throwaway PostgreSQL in" in result.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass('a') IS NULL").fetchone() == (True,)
    # --quiet: only errors and refusals, so not where the throwaway server lives either
    result = vezamig("roundtrip", "-q", "--dir", str(tree), env=cli_env(TMPDIR=str(private_tmp)))
    assert result.returncode == 0, result
    assert result.stderr == "" and result.stdout == ""


# ---- the throwaway cluster never outlives the command -------------------------------


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    """TMPDIR for the command: its clusters land here, so leftovers can be seen.

    World-traversable: as root the server runs as another OS user.
    """
    folder = Path(tempfile.mkdtemp(prefix="vezamig-rt-test-"))
    folder.chmod(0o711)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    folder: Path  # the cluster's temporary folder (socket, data, log)
    pid: int  # the postmaster
    stderr_head: str

    def conninfo(self) -> str:
        return f"host={self.folder / 'sock'} user=postgres dbname=postgres"


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains text (servers in a folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def start_roundtrip(tree: Path, tmpdir: Path) -> Running:
    """Start `vezamig roundtrip` on a throwaway cluster; return once its server is up."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vezamig", "roundtrip", "--dir", str(tree)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(TMPDIR=str(tmpdir)),
        start_new_session=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "throwaway PostgreSQL in DIR/sock (removed afterwards)"
    assert line.startswith("throwaway PostgreSQL in "), line
    folder = Path(line.split(" in ", 1)[1].split(" (", 1)[0]).parent
    assert folder.parent == tmpdir
    pid = int((folder / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    assert process_alive(pid)
    return Running(proc, folder, pid, line)


def finish(running: Running) -> tuple[int, str, str]:
    out, err = running.proc.communicate(timeout=120)
    return running.proc.returncode, out, running.stderr_head + err


def assert_server_gone(running: Running, tmpdir: Path) -> None:
    assert not process_alive(running.pid), f"postmaster {running.pid} still running"
    assert processes_mentioning(str(running.folder)) == []
    assert not running.folder.exists()
    assert list(tmpdir.iterdir()) == []


SLOW_UP = "SELECT pg_sleep(0.3);\nCREATE TABLE slow (id int);\n"


def test_a_passing_roundtrip_stops_and_removes_its_server(
    tmp_path: Path, private_tmp: Path
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_slow_up.sql": SLOW_UP,
            "down/001_slow_down.sql": "DROP TABLE slow;\n",
        },
    )
    running = start_roundtrip(tree, private_tmp)
    code, out, err = finish(running)
    assert code == 0, out + err
    assert "roundtrip: 1 passed, 0 failed" in out
    assert_server_gone(running, private_tmp)


def test_a_failing_roundtrip_stops_and_removes_its_server(
    tmp_path: Path, private_tmp: Path
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_slow_up.sql": SLOW_UP,
            "down/001_slow_down.sql": "SELECT 1;\n",
        },
    )
    running = start_roundtrip(tree, private_tmp)
    code, out, err = finish(running)
    assert code == 1, out + err
    assert "table slow still exists after down of 1" in err
    assert_server_gone(running, private_tmp)


def test_a_failing_step_stops_and_removes_the_server(tmp_path: Path, private_tmp: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_slow_up.sql": SLOW_UP,
            "up/002_broken_up.sql": "CREATE TABLE broken (id no_such_type);\n",
            "down/002_broken_down.sql": "DROP TABLE broken;\n",
        },
    )
    running = start_roundtrip(tree, private_tmp)
    code, out, err = finish(running)
    assert code == 1, out + err
    assert "up 2 (broken) failed and was rolled back" in err
    assert_server_gone(running, private_tmp)


def wait_for_sleep(running: Running) -> None:
    """Block until the migration's pg_sleep is running on the server."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert running.proc.poll() is None, finish(running)
        with psycopg.connect(running.conninfo(), autocommit=True) as conn:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                " AND query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()"
            ).fetchone()
        if busy and busy[0]:
            return
        time.sleep(0.05)
    raise AssertionError("the slow migration never started")


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_an_interrupted_roundtrip_stops_and_removes_its_server(
    signum: int, code: int, tmp_path: Path, private_tmp: Path
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "down/001_a_down.sql": "DROP TABLE a;\n",
            "up/002_slow_up.sql": "SELECT pg_sleep(600);\n",
            "down/002_slow_down.sql": "SELECT 1;\n",
            "up/003_after_up.sql": "CREATE TABLE after_slow (id int);\n",
            "down/003_after_down.sql": "DROP TABLE after_slow;\n",
        },
    )
    running = start_roundtrip(tree, private_tmp)
    wait_for_sleep(running)
    # Ctrl-C on a terminal signals the whole foreground process group.
    os.killpg(running.proc.pid, signum)
    returncode, out, err = finish(running)
    assert returncode == code, out + err
    assert "interrupted during up 2 (slow)" in err, err
    assert "roundtrip:" not in out  # no summary: the run was abandoned, not judged
    assert "3 after" not in out
    assert_server_gone(running, private_tmp)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from", "3", "--to", "2"], "--from 3 is above --to 2"),
        (["--from", "99"], "no reversible migration in the --from/--to range"),
        (["--from", "2", "--to", "2"], "no reversible migration in the --from/--to range"),
    ],
)
def test_a_from_to_range_that_checks_nothing_is_a_usage_error(
    tmp_path: Path, dsn: str, args: list[str], says: str
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a ();\n",
            "down/001_a_down.sql": "DROP TABLE a;\n",
            "up/002_b_up.sql": "CREATE TABLE b ();\n",  # irreversible: nothing to prove
        },
    )
    result = vezamig("roundtrip", "-d", dsn, "--dir", str(tree), *args)
    assert result.returncode == 2, result
    assert says in result.stderr


@pytest.mark.parametrize(
    ("files", "says"),
    [
        (
            {"up/001_a_up.sql": "CREATE TABLE a ();\n", "rollback/001_a_down.sql": "SELECT 1;\n"},
            "none of the 1 up file(s) has a down file in",
        ),
        ({"up/.keep": ""}, "no migration in"),
    ],
    ids=["down-folder-under-another-name", "empty-up-folder"],
)
def test_a_roundtrip_that_would_check_no_version_is_a_usage_error(
    tmp_path: Path, dsn: str, files: dict[str, str], says: str
) -> None:
    tree = write_tree(tmp_path, files)
    result = vezamig("roundtrip", "-d", dsn, "--dir", str(tree))
    assert result.returncode == 2, result
    assert says in result.stderr
    assert "nothing would be checked" in result.stderr
    assert result.stdout == ""
