"""The project's own corpus (sql/up + sql/down) on a real PostgreSQL, through the CLI.

This is the proof asked for by the corpus issue: the whole history applies on an
empty database, every down restores the schema exactly (`vezamig roundtrip`),
the history can be rolled back to its last irreversible version and replayed,
and 985's guard keeps a track stored on S3 from being forgotten.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from vezamig.files import discover
from vezamig.snapshot import Snapshot, diff_snapshots, summarize, take_snapshot

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "sql"
MIGRATIONS = discover(CORPUS / "up", CORPUS / "down", check_directives=True)
VERSIONS = [m.version for m in MIGRATIONS]
REVERSIBLE = [m.version for m in MIGRATIONS if m.reversible]
IRREVERSIBLE = [m.version for m in MIGRATIONS if not m.reversible]
# The lowest point `down --to` can reach: everything above the last irreversible version.
FOUNDATION = max(IRREVERSIBLE)
TRACKING = ("schema_migrations", "schema_migrations_history")


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:  # shown when an assertion fails
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


def vezamig(*args: str, dsn: str) -> Result:
    """`python -m vezamig ARGS -d DSN --dir sql`, without a terminal, as CI runs it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "VEZAMIG_")) and k != "DATABASE_URL"
    }
    env["NO_COLOR"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "vezamig", *args, "-d", dsn, "--dir", str(CORPUS)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def schema(dsn: str) -> Snapshot:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return take_snapshot(conn, exclude_tables=TRACKING)


def differences(expected: Snapshot, actual: Snapshot) -> list[str]:
    return summarize(diff_snapshots(expected, actual), "", limit=50)


def rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def applied(dsn: str) -> list[int]:
    return [r[0] for r in rows(dsn, "SELECT version FROM schema_migrations ORDER BY 1")]


def up(dsn: str, *args: str) -> None:
    result = vezamig("up", *args, dsn=dsn)
    assert result.returncode == 0, result


def add_track(dsn: str, backend: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (username, email, password_hash)"
            " VALUES ('ada', 'ada@example.com', 'x')"
        )
        key = "tracks/1/night-drive.flac" if backend == "s3" else None
        conn.execute(
            "INSERT INTO tracks (user_id, title, slug, file_path, storage_backend, storage_key)"
            " SELECT id, 'Night Drive', 'night-drive', 'uploads/ada/night-drive.flac', %s, %s"
            " FROM users",
            (backend, key),
        )


def test_the_corpus_has_the_expected_shape() -> None:
    assert (len(REVERSIBLE), VERSIONS[-1]) == (37, 985)
    # Everything reversible sits above the irreversible foundation.
    assert min(REVERSIBLE) > FOUNDATION


def test_the_whole_corpus_applies_on_an_empty_database(dsn: str) -> None:
    result = vezamig("up", dsn=dsn)
    assert result.returncode == 0, result
    assert f"applied {len(VERSIONS)} version(s)" in result.stdout
    assert applied(dsn) == VERSIONS
    status = vezamig("status", "--json", "--exit-code", dsn=dsn)
    assert status.returncode == 0, status
    report = json.loads(status.stdout)
    assert (report["current_version"], report["pending"]) == (985, 0)


def test_rolling_back_to_the_foundation_restores_its_schema_and_up_replays_it(
    dsn: str,
) -> None:
    up(dsn, "--to", str(FOUNDATION))
    foundation = schema(dsn)
    up(dsn)
    full = schema(dsn)

    result = vezamig("down", "--to", str(FOUNDATION), "--yes", dsn=dsn)
    assert result.returncode == 0, result
    assert f"rolled back {len(REVERSIBLE)} version(s)" in result.stdout
    assert applied(dsn) == IRREVERSIBLE
    assert differences(foundation, schema(dsn)) == []

    up(dsn)
    assert applied(dsn) == VERSIONS
    assert differences(full, schema(dsn)) == []


def test_down_to_984_is_refused_while_a_track_is_stored_on_s3(dsn: str) -> None:
    up(dsn)
    add_track(dsn, "s3")
    before = schema(dsn)
    guard = "SELECT NOT EXISTS (SELECT 1 FROM tracks WHERE storage_backend <> 'local')"

    for args in (("--dry-run",), ("--yes",)):
        result = vezamig("down", "--to", "984", *args, dsn=dsn)
        assert result.returncode == 3, result
        assert guard in result.stderr
    assert "down 985 (tracks_storage_backend) refused by its guard" in result.stderr
    assert "returned: false" in result.stderr

    assert differences(before, schema(dsn)) == []
    assert applied(dsn) == VERSIONS
    assert rows(dsn, "SELECT storage_backend, storage_key FROM tracks") == [
        ("s3", "tracks/1/night-drive.flac")
    ]
    last = rows(
        dsn,
        "SELECT version, direction, outcome FROM schema_migrations_history"
        " ORDER BY id DESC LIMIT 1",
    )
    assert last == [(985, "down", "refused")]


def test_down_to_984_with_only_local_tracks_drops_the_columns_and_the_index(dsn: str) -> None:
    up(dsn)
    add_track(dsn, "local")

    result = vezamig("down", "--to", "984", "--yes", dsn=dsn)
    assert result.returncode == 0, result
    assert applied(dsn) == VERSIONS[:-1]
    columns = rows(
        dsn,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_name = 'tracks' AND column_name LIKE 'storage%'",
    )
    assert columns == []
    assert rows(dsn, "SELECT to_regclass('idx_tracks_storage_backend_s3')") == [(None,)]
    assert (
        rows(
            dsn, "SELECT conname FROM pg_constraint WHERE conname = 'tracks_storage_backend_check'"
        )
        == []
    )
    assert rows(dsn, "SELECT title FROM tracks") == [("Night Drive",)]  # the data stays


def test_roundtrip_proves_every_down_of_the_corpus_restores_the_schema(dsn: str) -> None:
    result = vezamig("roundtrip", "--json", dsn=dsn)
    assert result.returncode == 0, result
    report = json.loads(result.stdout)
    results = {v["version"]: v["result"] for v in report["versions"]}
    assert results == {v: "pass" if v in REVERSIBLE else "irreversible" for v in VERSIONS}
    assert (report["passed"], report["failed"], report["irreversible"]) == (
        len(REVERSIBLE),
        0,
        len(IRREVERSIBLE),
    )
    assert all(v["problems"] == [] for v in report["versions"])
    assert applied(dsn) == VERSIONS
