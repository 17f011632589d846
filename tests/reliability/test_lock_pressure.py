"""A long transaction holds a lock a step needs: give up cleanly, retry, never queue everyone.

An ``ALTER TABLE`` waiting for its ACCESS EXCLUSIVE lock makes every later query
on that table queue behind it. ``--lock-timeout`` bounds that wait; the step is
rolled back and retried after growing pauses (the pgroll / GitLab approach).
The proof that other sessions are not blocked for longer than the lock
timeout is made by the server: the probing session's own ``lock_timeout``
(several times vezamig's) would cancel its query if it queued any longer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .support import Running, history, query, recorded, start_cli, wait_for, write_tree

pytestmark = pytest.mark.reliability

VEZAMIG_LOCK_TIMEOUT = "500ms"
PROBE_LOCK_TIMEOUT = "3s"  # six times vezamig's


@pytest.fixture
def tracks(dsn: str) -> str:
    query(dsn, "CREATE TABLE tracks (id int PRIMARY KEY); INSERT INTO tracks VALUES (1), (2)")
    return dsn


@pytest.fixture
def blocker(tracks: str) -> Iterator[psycopg.Connection[Any]]:
    """A long read transaction: its ACCESS SHARE lock conflicts with any ALTER TABLE."""
    with psycopg.connect(tracks) as conn:
        conn.execute("SELECT count(*) FROM tracks")
        yield conn
        conn.rollback()


def waiting_for_lock(dsn: str) -> bool:
    rows = query(
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
        " 'vezamig up' AND wait_event_type = 'Lock'",
    )
    return bool(rows[0][0])


def probe(dsn: str) -> int:
    """Another application's query on the table, which gives up after PROBE_LOCK_TIMEOUT."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{PROBE_LOCK_TIMEOUT}'")
        row = conn.execute("SELECT count(*) FROM tracks").fetchone()
        assert row is not None
        return int(row[0])


def probe_while_vezamig_waits(dsn: str, run: Running) -> int:
    """Probe once during each of vezamig's lock waits; return how many probes ran."""
    probes = 0
    while run.proc.poll() is None:
        wait_for(
            lambda: waiting_for_lock(dsn) or run.proc.poll() is not None,
            timeout=60,
            what="vezamig to wait for its lock (or to finish)",
        )
        if run.proc.poll() is not None:
            break
        assert probe(dsn) == 2  # queued behind vezamig's request, but not for long
        probes += 1
        wait_for(
            lambda: not waiting_for_lock(dsn),
            timeout=60,
            what="vezamig to stop waiting for its lock",
        )
    return probes


STEPS = {
    "alter": "ALTER TABLE tracks ADD COLUMN bpm int;\n",
    "lock directive": "-- vezamig:lock tracks\nALTER TABLE tracks ADD COLUMN bpm int;\n",
}


@pytest.mark.parametrize("body", STEPS.values(), ids=list(STEPS))
def test_a_step_that_cannot_get_its_lock_gives_up_after_retries_with_nothing_changed(
    tracks: str, blocker: psycopg.Connection[Any], tree: Path, body: str
) -> None:
    write_tree(tree, {"up/001_bpm_up.sql": body})
    run = start_cli(
        [
            "up",
            "-d",
            tracks,
            "--dir",
            str(tree),
            "--lock-timeout",
            VEZAMIG_LOCK_TIMEOUT,
            "--lock-retries",
            "2",
        ]
    )

    probes = probe_while_vezamig_waits(tracks, run)
    result = run.wait()

    assert result.returncode == 4, result
    assert 1 <= probes <= 3  # at most one per attempt; none was blocked for long
    assert "retry 1/2 in 1s" in result.stderr and "retry 2/2 in 2s" in result.stderr
    assert "up 1 (bpm) gave up: lock timeout (500 ms) after 3 attempt(s)" in result.stderr
    assert "the step was rolled back" in result.stderr
    assert recorded(tracks) == []
    assert query(
        tracks,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'tracks' AND column_name = 'bpm'",
    ) == [(0,)]
    [row] = history(tracks)
    assert (row["version"], row["outcome"]) == (1, "failed")
    assert "lock timeout" in row["message"]
    # The long transaction that held the lock was never disturbed.
    assert blocker.execute("SELECT count(*) FROM tracks").fetchone() == (2,)


def test_a_step_succeeds_when_the_lock_frees_up_before_its_retries_run_out(
    tracks: str, blocker: psycopg.Connection[Any], tree: Path
) -> None:
    write_tree(tree, {"up/001_bpm_up.sql": STEPS["alter"]})
    run = start_cli(
        [
            "up",
            "-d",
            tracks,
            "--dir",
            str(tree),
            "--lock-timeout",
            VEZAMIG_LOCK_TIMEOUT,
            "--lock-retries",
            "3",
        ]
    )
    wait_for(lambda: "retry 1/3" in run.output_so_far(), what="the first lock timeout")
    blocker.commit()  # the long transaction ends during vezamig's pause
    result = run.wait()

    assert result.returncode == 0, result
    assert "retry 2/3" not in result.output
    assert recorded(tracks) == [(1, False)]
    assert query(
        tracks,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'tracks' AND column_name = 'bpm'",
    ) == [(1,)]
    # A retried step has one history row, for its final outcome.
    assert [(h["version"], h["outcome"]) for h in history(tracks)] == [(1, "ok")]


def test_without_a_lock_timeout_other_sessions_would_queue_behind_the_step(
    tracks: str, blocker: psycopg.Connection[Any], tree: Path
) -> None:
    """The control experiment: the probe above does detect queueing when there is some."""
    write_tree(tree, {"up/001_bpm_up.sql": STEPS["alter"]})
    run = start_cli(["up", "-d", tracks, "--dir", str(tree), "--lock-timeout", "0"])
    wait_for(lambda: waiting_for_lock(tracks), what="vezamig to wait for its lock")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        probe(tracks)
    blocker.commit()
    result = run.wait()
    assert result.returncode == 0, result
    assert recorded(tracks) == [(1, False)]
